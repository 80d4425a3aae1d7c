"""Process-level tuning of a serving node: the garbage collector (PERFORMANCE.md, trap 1).

With thousands of connections CPython's full collections walk every long-lived object
(sockets, sessions, SQLAlchemy state) and stall the event loop for tens to hundreds of
milliseconds; they were the whole p99 of the signal relay. After start-up we move what
exists into the permanent generation (`gc.freeze()`) and collect the young generation
less often. bench/signalling_relay.py measures both ways in one run.
"""

from __future__ import annotations

import gc
import logging

from aiohttp import web

log = logging.getLogger("telemed.runtime")
GC_THRESHOLD = (50_000, 50, 100)  # gen-0 allocations, gen-0 runs per gen-1, gen-1 per gen-2


def tune_gc(threshold: tuple[int, int, int] = GC_THRESHOLD) -> None:
    """Collect once, freeze the survivors of start-up, and raise the thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*threshold)
    log.info("gc tuned: %d objects frozen, threshold %s", gc.get_freeze_count(), threshold)


def tune_gc_after_startup(app: web.Application) -> None:
    """Run `tune_gc` once the app's start-up (engines, schema, Socket.IO) is done."""

    async def tune(app: web.Application) -> None:
        tune_gc()

    app.on_startup.append(tune)  # after the cleanup contexts, which aiohttp starts first
