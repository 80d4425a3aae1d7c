"""The baseline of bench/signalling_relay.py: a bare aiohttp WebSocket relay.

Each client connects to `/ws?id=<user id>`; a text frame `{"to": ID, "data": ...}` goes to
that user's socket as `{"from": ID, "data": ...}`. JSON in and out like Socket.IO, but no
Engine.IO framing, no auth, no rooms, no database: the floor a Python relay can reach on
this machine. `/ready` answers once it listens. Run by the benchmark, or by hand:

    .venv/bin/python bench/bare_relay.py --port 8765 [--gc-tune]
"""

from __future__ import annotations

import argparse
import gc
import json

from aiohttp import WSMsgType, web

SOCKETS = web.AppKey("sockets", dict[str, web.WebSocketResponse])


async def relay(request: web.Request) -> web.WebSocketResponse:
    """Hold one client's socket and forward each of its frames to the named peer."""
    user = request.query["id"]
    ws = web.WebSocketResponse(heartbeat=25, max_msg_size=65536)
    await ws.prepare(request)
    sockets = request.app[SOCKETS]
    sockets[user] = ws
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            peer = sockets.get(frame.get("to"))
            if peer is not None:
                await peer.send_str(json.dumps({"from": user, "data": frame.get("data")}))
    finally:
        if sockets.get(user) is ws:
            del sockets[user]
    return ws


async def ready(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gc-tune", action="store_true", help="gc.freeze() + high threshold")
    args = parser.parse_args()
    app = web.Application()
    app[SOCKETS] = {}
    app.router.add_get("/ws", relay)
    app.router.add_get("/ready", ready)
    if args.gc_tune:

        async def tune(app: web.Application) -> None:
            gc.collect()
            gc.freeze()
            gc.set_threshold(50_000, 50, 100)

        app.on_startup.append(tune)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
