"""Cross-node Socket.IO bursts: how many of N concurrent emits on node A reach node B?

Two server processes (aiohttp + python-socketio, nothing of telemed but the manager)
share one Redis; C clients connect to node B and each joins a room; node A emits N
messages at once (`asyncio.gather`) to those rooms, for R rounds. Reports the share
delivered and the time until the last one arrived.

Baseline, measured in the same run: python-socketio's stock `AsyncRedisManager`
(PERFORMANCE.md trap 2). Candidate: `signalling.manager.RedisManager` (blocking pool).

    .venv/bin/python bench/redis_burst.py [--n 1000] [--clients 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from typing import Any

REDIS_URL = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(port: int, manager: str, channel: str) -> None:
    """One node: a Socket.IO server whose /burst emits N messages concurrently."""
    import socketio
    from aiohttp import web

    from signalling.manager import RedisManager

    async def main() -> None:
        if manager == "stock":
            client_manager = socketio.AsyncRedisManager(REDIS_URL, channel=channel)
        else:
            client_manager = RedisManager(REDIS_URL, channel, max_connections=32, wait=10.0)
        sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=client_manager)
        app = web.Application()
        sio.attach(app)

        async def join(sid: str, room: str) -> bool:
            await sio.enter_room(sid, room)
            return True

        sio.on("join", join)

        async def burst(request: web.Request) -> web.Response:
            n, rooms = int(request.query["n"]), int(request.query["rooms"])
            base = int(request.query["base"])
            await asyncio.gather(
                *(sio.emit("m", {"i": base + i}, room=f"r{i % rooms}") for i in range(n))
            )
            return web.json_response({"ok": True})

        app.router.add_post("/burst", burst)

        async def up(request: web.Request) -> web.Response:
            return web.json_response({"ok": True})

        app.router.add_get("/up", up)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        if manager != "stock":
            client_manager.initialize()
        await asyncio.Event().wait()

    asyncio.run(main())


def start(manager: str, channel: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [sys.executable, __file__, "--serve", str(port)]
    proc = subprocess.Popen(
        [*command, "--manager", manager, "--channel", channel], stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/up", timeout=1)
            return proc, port
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


async def measure(manager: str, n: int, clients: int, rounds: int) -> list[tuple[float, float]]:
    """(share delivered, seconds to the last delivery) per round."""
    import aiohttp
    import socketio

    channel = f"bench-{uuid.uuid4().hex[:8]}"
    (proc_a, port_a), (proc_b, port_b) = start(manager, channel), start(manager, channel)
    got: set[int] = set()
    all_in = asyncio.Event()
    last = [0.0]
    socks = []
    try:
        for c in range(clients):
            sio = socketio.AsyncClient()

            def record(data: Any) -> None:
                got.add(int(data["i"]))
                last[0] = time.perf_counter()
                if len(got) >= n:
                    all_in.set()

            sio.on("m", record)
            await sio.connect(f"http://127.0.0.1:{port_b}", transports=["websocket"])
            await sio.call("join", f"r{c}")
            socks.append(sio)
        await asyncio.sleep(0.5)
        results = []
        async with aiohttp.ClientSession() as http:
            for r in range(rounds):
                got.clear()
                all_in.clear()
                began = time.perf_counter()
                url = f"http://127.0.0.1:{port_a}/burst?n={n}&rooms={clients}&base={r * n}"
                async with http.post(url) as resp:
                    await resp.read()
                with contextlib.suppress(TimeoutError):  # the stock manager may never get there
                    await asyncio.wait_for(all_in.wait(), 10)
                await asyncio.sleep(0.3)
                results.append((len(got) / n, (last[0] or began) - began))
        return results
    finally:
        for sio in socks:
            await sio.disconnect()
        for proc in (proc_a, proc_b):
            proc.terminate()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=int)
    parser.add_argument("--manager", default="telemed")
    parser.add_argument("--channel", default="bench")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.manager, args.channel)
        return
    report: dict[str, Any] = {}
    for manager in ("stock", "telemed"):
        rounds = asyncio.run(measure(manager, args.n, args.clients, args.rounds))
        share = statistics.median(s for s, _ in rounds)
        seconds = statistics.median(t for _, t in rounds)
        report[manager] = {"delivered": share, "seconds_to_last": seconds, "rounds": rounds}
        print(f"{manager:8} delivered {share:7.1%}  last arrival after {seconds * 1000:7.1f} ms")
    base, ours = report["stock"], report["telemed"]
    print(
        f"ratio telemed/stock: delivered x{ours['delivered'] / max(base['delivered'], 1e-9):.2f}, "
        f"time to last x{ours['seconds_to_last'] / max(base['seconds_to_last'], 1e-9):.2f}"
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
