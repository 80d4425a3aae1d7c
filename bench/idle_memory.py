"""Where does an idle connection's memory go? telemed against python-socketio and aiohttp.

Connects `--clients` light Socket.IO clients (half patients, half their consultants, in
`with_consultant`, as bench/signalling_relay.py does) to each target in turn, waits for the
server to go quiet, and prints the server's RSS growth per connection. Targets:

  bare     bench/bare_relay.py: an aiohttp WebSocket per client, nothing else
  sio      bench/sio_relay.py: python-socketio with a token map, GC tuned (the library)
  telemed  telemed serve (SQLite, GC tuned as by default)

With `--tracemalloc` the Python targets run under bench/traced_serve.py: a tracemalloc
snapshot is taken before and after the connects, each also after a full `gc.collect()`,
so the output splits the growth into live objects and uncollected cyclic garbage, and
lists the source lines that hold the most per connection (telemed's lines next to the
library's). RSS under tracemalloc is inflated by its own bookkeeping: read the RSS
figure from a run without it.

    .venv/bin/python bench/idle_memory.py --clients 1000
    .venv/bin/python bench/idle_memory.py --clients 1000 --targets telemed,sio --tracemalloc
    .venv/bin/python bench/idle_memory.py --clients 1000 --targets telemed --tracemalloc \\
        --frames 12 --group traceback --top 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchkit as kit

HERE = Path(__file__).resolve().parent


@dataclass
class Result:
    name: str
    connected: int
    connect_s: float
    rss_per_conn: float
    traced: dict[str, float] | None = None  # live / post-gc traced bytes per connection


def ignore(event: str, data: Any) -> None:
    pass


async def settle(pid: int, seconds: float = 1.0, limit: float = 60.0) -> None:
    """Wait until the server uses under 5 % of a core (welcomes sent, tasks done)."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        cpu0 = kit.cpu_seconds(pid)
        await asyncio.sleep(seconds)
        if kit.cpu_seconds(pid) - cpu0 < 0.05 * seconds:
            return


async def snapshot(server: kit.Server, folder: Path, n: int) -> dict[str, Any]:
    """Ask bench/traced_serve.py for snapshot n and wait for it."""
    os.kill(server.pid, signal.SIGUSR1)
    done = folder / f"{n}.json"
    for _ in range(1200):
        if done.exists():
            return dict(json.loads(done.read_text()))
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{server.name}: no snapshot {n}")


async def measure(
    target: str,
    argv: Sequence[str],
    env: dict[str, str],
    tmp: Path,
    seeded: kit.Seeded,
    args: argparse.Namespace,
    ready: str,
) -> tuple[Result, Path | None]:
    folder = tmp / f"snap-{target}" if args.tracemalloc and target != "bare" else None
    if folder is not None:
        if argv[0] == sys.executable:  # the wrapper runs the script itself
            argv = argv[1:]
        argv = [sys.executable, str(HERE / "traced_serve.py"), str(folder), str(args.frames), *argv]
    server = await kit.start_process(target, argv, env, tmp, ready, wait=300)  # tracemalloc: slow
    try:
        await settle(server.pid)
        before = await snapshot(server, folder, 0) if folder else None
        rss0 = kit.rss_bytes(server.pid)
        async with kit.client_session() as http:
            t0 = time.perf_counter()
            clients = await connect(target, http, server, seeded, args.connect_limit)
            took = time.perf_counter() - t0
            await asyncio.sleep(2.0)
            await settle(server.pid)
            rss1 = kit.rss_bytes(server.pid)
            n = max(1, len(clients))
            result = Result(target, len(clients), took, (rss1 - rss0) / n)
            if folder is not None and before is not None:
                after = await snapshot(server, folder, 1)
                result.traced = {
                    "live": (after["live"] - before["live"]) / n,
                    "post": (after["post"] - before["post"]) / n,
                    "collected": after["collected"] / n,
                }
            await kit.gather_limited((c.close() for c in clients), 500)
        print(
            f"  {target}: {len(clients)} connected in {took:.1f} s, "
            f"RSS +{(rss1 - rss0) / 2**20:.1f} MB = {result.rss_per_conn / 1024:.1f} KB/conn",
            flush=True,
        )
        return result, folder
    finally:
        await server.stop()


async def connect(
    target: str, http: Any, server: kit.Server, seeded: kit.Seeded, limit: int
) -> list[Any]:
    if target == "bare":
        people = [u for p in seeded.pairs for u in (p.consultant, p.patient)]
        coros = [
            kit.connected_or_none(kit.BareClient.connect(http, server.url, u.user_id, ignore))
            for u in people
        ]
    else:
        tokens = [p.consultant.token for p in seeded.pairs] + [
            p.patient.token for p in seeded.pairs
        ]
        coros = [
            kit.connected_or_none(kit.SioClient.connect(http, server.url, {"token": t}, ignore))
            for t in tokens
        ]
    return [c for c in await kit.gather_limited(coros, limit) if c is not None]


def top_lines(folder: Path, n: int, group: str, top: int) -> list[str]:
    """The source lines (or tracebacks) that grew most between snapshots 0 and 1, after a
    full collection, per connection."""
    old = tracemalloc.Snapshot.load(str(folder / "0.post"))
    new = tracemalloc.Snapshot.load(str(folder / "1.post"))
    keep = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = new.filter_traces(keep).compare_to(old.filter_traces(keep), group)
    lines = []
    for stat in stats[:top]:
        where = stat.traceback.format(limit=None if group == "traceback" else 1)
        lines.append(
            f"  {stat.size_diff / n:8.0f} B/conn {stat.count_diff / n:6.1f} blocks/conn  "
            + ("\n" + "\n".join(where) if group == "traceback" else where[0].strip())
        )
    by_package: dict[str, int] = {}
    for stat in new.compare_to(old, "filename"):
        by_package[package_of(stat.traceback[0].filename)] = (
            by_package.get(package_of(stat.traceback[0].filename), 0) + stat.size_diff
        )
    lines.append(
        "  by package (post-gc, B/conn): "
        + ", ".join(
            f"{k} {v / n:.0f}"
            for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])
            if abs(v) / n >= 50
        )
    )
    return lines


def package_of(filename: str) -> str:
    parts = Path(filename).parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    for name in ("telemed", "signalling", "bench", "scheduler", "conclusions"):
        if name in parts:
            return name
    return "stdlib/other"


async def main(args: argparse.Namespace) -> None:
    kit.raise_fd_limit()
    tmp = kit.new_tmp("telemed-idle-")
    url = f"sqlite+aiosqlite:///{tmp}/telemed.db"
    env = kit.telemed_env(tmp, url)
    await kit.run_telemed(["migrate"], env, tmp)
    seeded = await kit.seed(url, pairs=args.clients // 2)
    peers = tmp / "peers.json"
    peers.write_text(
        json.dumps(
            {
                t: [u, v]
                for p in seeded.pairs
                for t, u, v in (
                    (p.patient.token, p.patient.user_id, p.consultant.user_id),
                    (p.consultant.token, p.consultant.user_id, p.patient.user_id),
                )
            }
        )
    )
    commands: dict[str, tuple[list[str], str]] = {
        "bare": ([sys.executable, str(HERE / "bare_relay.py"), "--port", "{port}"], "/ready"),
        "sio": (
            [sys.executable, str(HERE / "sio_relay.py"), "--port", "{port}", "--peers", str(peers)],
            "/ready",
        ),
        "telemed": (
            ["telemed", "serve", "--host", "127.0.0.1", "--port", "{port}", *args.serve_args],
            "/healthz",
        ),
    }
    results = []
    for target in args.targets.split(","):
        argv, ready = commands[target]
        if argv[0] == "telemed" and not args.tracemalloc:
            argv = [kit.telemed_exe(), *argv[1:]]
        print(
            f"{target}: {args.clients} clients (load average {os.getloadavg()[0]:.1f})", flush=True
        )
        result, folder = await measure(target, argv, env, tmp, seeded, args, ready)
        results.append(result)
        if folder is not None:
            t = result.traced or {}
            print(
                f"  traced: live +{t.get('live', 0):.0f} B/conn, after gc.collect() "
                f"+{t.get('post', 0):.0f} B/conn, {t.get('collected', 0):.1f} objects/conn "
                "were cyclic garbage",
                flush=True,
            )
            for line in top_lines(folder, max(1, result.connected), args.group, args.top):
                print(line, flush=True)
    print()
    print(f"{args.clients} clients, load average {os.getloadavg()}")
    rows = []
    for r in results:
        t = r.traced
        rows.append(
            (
                r.name,
                r.connected,
                f"{r.connect_s:.1f} s",
                f"{r.rss_per_conn / 1024:.1f} KB" + (" (traced run)" if t else ""),
                f"{t['live'] / 1024:.1f} KB" if t else "-",
                f"{t['post'] / 1024:.1f} KB" if t else "-",
            )
        )
    print(
        kit.table(
            (
                "server",
                "connected",
                "connect all",
                "RSS / conn",
                "traced live / conn",
                "traced after gc / conn",
            ),
            rows,
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000, help="sockets (half patients)")
    parser.add_argument("--targets", default="bare,sio,telemed")
    parser.add_argument("--connect-limit", type=int, default=100, help="connects at once")
    parser.add_argument("--tracemalloc", action="store_true", help="snapshot sio and telemed")
    parser.add_argument("--frames", type=int, default=1, help="tracemalloc frames kept")
    parser.add_argument("--group", default="lineno", choices=("lineno", "filename", "traceback"))
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--serve-arg",
        dest="serve_args",
        action="append",
        default=[],
        help="extra argument for telemed serve (repeat), e.g. --serve-arg=--no-gc-tune",
    )
    asyncio.run(main(parser.parse_args()))
