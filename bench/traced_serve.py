"""Run a server under tracemalloc, dumping snapshots on SIGUSR1 (bench/idle_memory.py).

    python bench/traced_serve.py DIR FRAMES telemed serve --port 8080 ...
    python bench/traced_serve.py DIR FRAMES bench/sio_relay.py --port 8766 --peers p.json

Each SIGUSR1 writes `DIR/<n>.live` (a tracemalloc snapshot as the process stands, cyclic
garbage included), then runs `gc.collect()` and writes `DIR/<n>.post` (what survives a
full collection) and `DIR/<n>.json` (traced bytes before/after, objects collected), n
counting from 0. Nothing here is part of the product: the server code is unchanged.
"""

from __future__ import annotations

import gc
import json
import runpy
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType


def main() -> None:
    out, frames, *rest = sys.argv[1:]
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    tracemalloc.start(int(frames))
    taken = 0

    def dump(signum: int, frame: FrameType | None) -> None:
        nonlocal taken
        n, taken = taken, taken + 1
        live = tracemalloc.get_traced_memory()[0]
        tracemalloc.take_snapshot().dump(str(folder / f"{n}.live"))
        collected = gc.collect()
        post = tracemalloc.get_traced_memory()[0]
        tracemalloc.take_snapshot().dump(str(folder / f"{n}.post"))
        info = {"live": live, "post": post, "collected": collected, "gc": gc.get_count()}
        (folder / f"{n}.json").write_text(json.dumps(info))

    signal.signal(signal.SIGUSR1, dump)
    if rest[0] == "telemed":
        from telemed.cli import main as telemed_main

        sys.argv = ["telemed", *rest[1:]]
        sys.exit(telemed_main(rest[1:]))
    sys.argv = rest
    runpy.run_path(rest[0], run_name="__main__")


if __name__ == "__main__":
    main()
