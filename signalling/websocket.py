"""An Engine.IO socket whose WebSocket runs in the one task aiohttp gives its request.

Over a WebSocket python-engineio keeps two tasks per socket besides aiohttp's own: a
writer waiting on the socket's queue, and a task per read that its reader awaits under
`wait_for` (with their frames, futures and timers, ~3.5 KB traced per idle socket).
`LightSocket` reads in aiohttp's request task and writes from whoever sends
(bench/idle_memory.py, 10,000 clients: 31.3 -> 25.9 KB of RSS per connection).

What is sent to one socket within one turn of the event loop leaves in one write: a
connect's welcome (`session`, `consultation:state`, `chat:history`) is one `send()` to the
kernel instead of one per frame, and on loopback each of those wakes the client (most of
a connect's cost in socket writes before; docs/performance.md). Frames are text and not
compressed (as Socket.IO's own server does by default: its frames are small, and
compressing each costs more CPU than the bytes it saves).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import deque
from collections.abc import Awaitable
from typing import Any

from aiohttp import web
from engineio import async_socket, exceptions, packet


class LightSocket(async_socket.AsyncSocket):  # type: ignore[misc]
    """python-engineio's socket, whose WebSocket runs in the one task aiohttp gives its
    request: the reader loop awaits the WebSocket itself (the library starts a task per
    read, under `wait_for`), and what is sent goes to an outbox that is written, all of it
    in one write, at the end of the event loop's turn (the library's writer task wakes for
    each packet and writes each alone). Packets that cannot be written now (the peer not
    reading: the transport over its high-water mark) wait in order for a short-lived
    flusher task, so a broadcast never waits for one slow client. Polling keeps the
    library's queue and code."""

    connected: bool  # the library's attributes used here (it is untyped)
    upgraded: bool
    _ws: web.WebSocketResponse | None = None  # set once the socket writes to a WebSocket
    _outbox: list[str] | None = None  # sent in this turn of the loop, written at its end
    _pending: deque[str] | None = None  # waiting for the flusher (the peer not reading)
    _flusher: asyncio.Task[None] | None = None

    async def send(self, pkt: Any) -> None:
        """Send a packet to the client (queued while polling, as the library does)."""
        if not await self.check_ping_timeout():
            return
        ws = self._ws
        if ws is None:
            await self.queue.put(pkt)
            return
        self._put(ws, pkt.encode())  # Engine.IO v4 packets here are text

    def _put(self, ws: web.WebSocketResponse, text: str) -> None:
        if self._outbox is None:
            self._outbox = []
            asyncio.get_running_loop().call_soon(self._write_outbox, ws)
        self._outbox.append(text)

    def _write_outbox(self, ws: web.WebSocketResponse) -> None:
        """Write what this turn sent, in one write; behind the flusher while it runs."""
        texts, self._outbox = self._outbox, None
        if not texts or ws.closed:  # closed: nothing more may follow its close frame
            return
        if self._flusher is not None or _backlogged(ws):
            if self._pending is None:
                self._pending = deque()
            self._pending.extend(texts)
            if self._flusher is None:
                self._flusher = asyncio.ensure_future(self._flush(ws))
            return
        try:
            ws._req.transport.write(b"".join(map(_text_frame, texts)))  # type: ignore[union-attr]
        except Exception:
            self._lost(ws)

    async def _flush(self, ws: web.WebSocketResponse) -> None:
        try:
            while self._pending:
                await ws.send_str(self._pending.popleft())  # waits for the peer to read
        except Exception:
            self._lost(ws)
        finally:
            self._pending = None
            self._flusher = None

    def _lost(self, ws: web.WebSocketResponse) -> None:
        """A write failed: close the WebSocket, as the library's writer does (its reader
        then ends the socket); what was still to be sent is dropped with it."""
        self._pending = None
        if not ws.closed:
            task = asyncio.ensure_future(ws.close())
            _CLOSING.add(task)
            task.add_done_callback(_CLOSING.discard)

    async def _written(self) -> None:
        """Until what was sent to the WebSocket is written (or given up)."""
        ws = self._ws
        if ws is not None and self._outbox:
            self._write_outbox(ws)  # now, not at the end of the turn: the socket is ending
        flusher = self._flusher
        if flusher is not None:
            await asyncio.wait([flusher])

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        if self._ws is None:
            await super().close(wait=wait, abort=abort, reason=reason)
            return
        await super().close(wait=False, abort=abort, reason=reason)
        if wait:  # the library joins its queue here
            await self._written()

    def _upgrade_websocket(self, environ: dict[str, Any]) -> Awaitable[Any]:
        """The WebSocket transport on aiohttp (telemed's only async mode). Not a coroutine
        itself: the caller awaits `_serve` directly, one frame less per idle socket."""
        if self.server.async_mode != "aiohttp":
            return super()._upgrade_websocket(environ)  # type: ignore[no-any-return]
        return self._serve(environ["aiohttp.request"])

    async def _receive(self, ws: web.WebSocketResponse, seconds: float | None) -> Any:
        """The next frame's data, None once the WebSocket is closing or closed (what the
        library's `websocket_wait` raises for)."""
        return self._data((await ws.receive(seconds)).data)

    def _data(self, data: Any) -> Any:
        if not isinstance(data, (str, bytes)):
            return None
        if data and len(data) > self.server.max_http_buffer_size:
            return None  # "packet is too large": the socket ends
        return data

    async def _serve(self, request: web.Request) -> web.WebSocketResponse:
        """`AsyncSocket._upgrade_websocket` and `_websocket_handler` in one task: the
        upgrade handshake (polling to WebSocket), then read until the client goes, writing
        as packets are sent."""
        if self.upgraded:
            raise OSError("Socket has been upgraded already")
        ws = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=False)
        await ws.prepare(request)
        if self.connected:  # an upgrade from polling
            self.upgrading = True  # sends stay queued for the poll until it is done
            try:
                pkt = packet.Packet(encoded_packet=await self._receive(ws, None))
            except Exception:
                self.upgrading = False
                return ws
            if pkt.packet_type != packet.PING or pkt.data != "probe":
                self.server.logger.info("%s: Failed websocket upgrade, no PING packet", self.sid)
                self.upgrading = False
                return ws
            await ws.send_str(packet.Packet(packet.PONG, data="probe").encode())
            await self.queue.put(packet.Packet(packet.NOOP))  # end the pending poll
            try:
                pkt = packet.Packet(encoded_packet=await self._receive(ws, None))
            except Exception:
                self.upgrading = False
                return ws
            if pkt.packet_type != packet.UPGRADE:
                self.upgraded = False
                self.server.logger.info(
                    "%s: Failed websocket upgrade, expected UPGRADE packet", self.sid
                )
                self.upgrading = False
                return ws
            self.upgraded = True
            self.upgrading = False
        else:
            self.connected = True
            self.upgraded = True
        self._ws = ws
        while not self.queue.empty():  # sent before the WebSocket took over (the OPEN)
            item = self.queue.get_nowait()
            self.queue.task_done()
            if item is not None:
                self._put(ws, item.encode())
        timeout = self.server.ping_interval + self.server.ping_timeout
        while True:
            try:  # not through `_receive`: one frame less while idle
                data = self._data((await ws.receive(timeout)).data)
            except (Exception, asyncio.CancelledError):  # no pong in time; connection lost
                break
            if data is None:
                break
            try:
                await self.receive(packet.Packet(encoded_packet=data))
            except exceptions.UnknownPacketError:
                pass
            except exceptions.SocketIsClosedError:
                self.server.logger.info("Receive error -- socket is closed")
                break
            except asyncio.CancelledError:  # aiohttp cancels a handler whose peer went
                break
            except Exception:
                self.server.logger.exception("Unknown receive error")
        # The end (the application's disconnect handler among it) runs in a task of its
        # own: aiohttp may cancel this one once the connection is gone (the library's
        # reader swallows that cancel in its `wait_for`, the end then runs undisturbed).
        end = asyncio.ensure_future(self._end(ws))
        _CLOSING.add(end)
        end.add_done_callback(_CLOSING.discard)
        await asyncio.shield(end)
        return ws

    async def _end(self, ws: web.WebSocketResponse) -> None:
        """The library's end of a WebSocket: what is queued is written, the WebSocket is
        closed, and the socket closes (`transport close`)."""
        await self._written()
        with contextlib.suppress(Exception):
            await ws.close()
        await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)


_CLOSING: set[asyncio.Task[Any]] = set()  # WebSockets being closed, sockets ending


def _text_frame(text: str) -> bytes:
    """A final, unmasked text frame (RFC 6455 5.2), as a server sends one."""
    data = text.encode()
    size = len(data)
    if size < 126:
        return bytes((0x81, size)) + data
    if size < 65536:
        return struct.pack("!BBH", 0x81, 126, size) + data
    return struct.pack("!BBQ", 0x81, 127, size) + data


def _backlogged(ws: web.WebSocketResponse) -> bool:
    """Whether a write would wait for the peer to read (aiohttp then drains)."""
    transport = ws._req.transport if ws._req is not None else None
    return transport is None or transport.is_closing() or transport.get_write_buffer_size() > 0
