"""The library's floor for bench/signalling_relay.py: a minimal python-socketio relay.

The same routing as telemed's `signal` (a token names the user; a signal goes to the
other side's user room with an ack), but no database, no sessions, no budgets, no
metrics: what python-socketio itself costs on this machine, GC tuned like telemed serve.
`--peers FILE` is JSON `{token: [user_id, peer_id]}`. Run by the benchmark, or by hand:

    .venv/bin/python bench/sio_relay.py --port 8766 --peers peers.json
"""

from __future__ import annotations

import argparse
import gc
import json
from typing import Any

import socketio
from aiohttp import web


def build(peers: dict[str, list[str]]) -> web.Application:
    sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False)
    app = web.Application()
    sio.attach(app)
    users: dict[str, tuple[str, str]] = {}

    async def connect(sid: str, environ: Any, auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        found = peers.get(str(token))
        if found is None:
            raise socketio.exceptions.ConnectionRefusedError("unauthorized")
        users[sid] = (found[0], found[1])
        await sio.enter_room(sid, f"u:{found[0]}")

    async def disconnect(sid: str, reason: Any = None) -> None:
        users.pop(sid, None)

    async def signal(sid: str, data: Any) -> dict[str, Any]:
        _, peer = users[sid]
        payload = {"consultation_id": data["consultation_id"], "data": data["data"]}
        await sio.emit("signal", payload, room=f"u:{peer}")
        return {"ok": True}

    sio.on("connect", connect)
    sio.on("disconnect", disconnect)
    sio.on("signal", signal)

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/ready", ready)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--peers", required=True)
    args = parser.parse_args()
    with open(args.peers, encoding="utf-8") as f:
        app = build(json.load(f))

    async def tune(app: web.Application) -> None:  # as telemed serve does by default
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)

    app.on_startup.append(tune)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
