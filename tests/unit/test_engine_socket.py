"""signalling/websocket.py: a WebSocket Engine.IO socket lives in aiohttp's request task, writes
in order whoever sends, and polling (with its upgrade) still works."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp import web

from signalling import websocket
from signalling.transport import DirectEmit, StrictServer
from signalling.websocket import LightSocket


@pytest.fixture
async def served() -> AsyncIterator[tuple[StrictServer, str]]:
    sio = StrictServer(  # as signalling/server.py makes it, with short polls
        client_manager=DirectEmit(), async_mode="aiohttp", ping_interval=1, ping_timeout=2
    )
    app = web.Application()
    sio.attach(app)

    @sio.on("burst")  # type: ignore[misc]
    async def burst(sid: str, n: int) -> int:
        for i in range(n):
            await sio.emit("n", i, to=sid)
        return n

    @sio.on("echo")  # type: ignore[misc]
    async def echo(sid: str, data: Any) -> Any:
        return data

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield sio, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def open_socket(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    """A bare Engine.IO v4 WebSocket with its namespace connected (no client task)."""
    ws = await http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket")
    assert (await ws.receive_str(timeout=5)).startswith("0")
    await ws.send_str("40")
    assert (await ws.receive_str(timeout=5)).startswith("40")
    return ws


async def test_an_idle_websocket_costs_only_the_tasks_aiohttp_gives_its_request(
    served: tuple[StrictServer, str],
) -> None:
    sio, url = served
    async with aiohttp.ClientSession() as http:
        await (await open_socket(http, url)).close()  # the server's own tasks started
        await asyncio.sleep(0.1)
        before = len(asyncio.all_tasks())
        sockets = [await open_socket(http, url) for _ in range(5)]
        await asyncio.sleep(0.1)
        # aiohttp: one task per connection and one per request; nothing of Engine.IO's
        assert len(asyncio.all_tasks()) - before <= 2 * len(sockets)
        assert all(type(s) is LightSocket for s in sio.eio.sockets.values())
        for ws in sockets:
            await ws.close()


async def test_packets_sent_while_the_peer_is_backlogged_arrive_in_order(
    served: tuple[StrictServer, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = served
    backlogged = itertools.cycle([False, True, True, False, True])
    monkeypatch.setattr(websocket, "_backlogged", lambda ws: next(backlogged))
    async with aiohttp.ClientSession() as http:
        ws = await open_socket(http, url)
        await ws.send_str('421["burst",40]')
        seen: list[int] = []
        while True:
            frame = await ws.receive_str(timeout=5)
            if frame.startswith("431"):
                break
            if frame.startswith("42"):
                seen.append(json.loads(frame[2:])[1])
        assert seen == list(range(40))
        await ws.close()


@pytest.mark.parametrize("transports", [["polling"], ["polling", "websocket"], ["websocket"]])
async def test_every_transport_connects_answers_and_disconnects(
    served: tuple[StrictServer, str], transports: list[str]
) -> None:
    sio, url = served
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, transports=transports, wait_timeout=5)
    try:
        assert await client.call("echo", {"a": 1}, timeout=5) == {"a": 1}
        assert client.transport() == transports[-1]
    finally:
        await client.disconnect()
    for _ in range(50):
        if not sio.eio.sockets:
            break
        await asyncio.sleep(0.05)
    assert not sio.eio.sockets


async def test_a_client_that_stops_answering_pings_is_closed(
    served: tuple[StrictServer, str],
) -> None:
    sio, url = served  # pings every second, two to answer
    async with aiohttp.ClientSession() as http:
        ws = await open_socket(http, url)
        frames = []
        while not ws.closed:
            msg = await ws.receive(timeout=10)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            frames.append(msg.data)
        assert "2" in frames  # pinged, never answered
        for _ in range(50):
            if not sio.eio.sockets:
                break
            await asyncio.sleep(0.05)
        assert not sio.eio.sockets


async def test_what_one_turn_sends_leaves_in_one_write_uncompressed(
    served: tuple[StrictServer, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of emits within one turn of the event loop (a connect's welcome) is one
    write to the kernel, not one per frame; frames are never compressed."""
    _, url = served
    writes: list[int] = []
    original = LightSocket._write_outbox

    def counted(self: LightSocket, ws: Any) -> None:
        writes.append(len(self._outbox or []))
        original(self, ws)

    monkeypatch.setattr(LightSocket, "_write_outbox", counted)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket", compress=15)
        assert (await ws.receive_str(timeout=5)).startswith("0")
        await ws.send_str("40")
        assert (await ws.receive_str(timeout=5)).startswith("40")
        assert ws.compress == 0  # permessage-deflate offered, not taken
        writes.clear()
        await ws.send_str('421["burst",20]')
        seen = [json.loads((await ws.receive_str(timeout=5))[2:])[1] for _ in range(20)]
        assert seen == list(range(20))
        assert (await ws.receive_str(timeout=5)).startswith("431")
        assert writes[0] >= 20, writes  # the twenty events (and the ack, when it is ready)
        await ws.close()
