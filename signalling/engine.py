"""The Engine.IO server under python-socketio, lighter per idle connection.

python-engineio gives every socket an `asyncio.Queue` for its outgoing packets: four
deques (getters, putters, items, and the `join` event's waiters) of ~760 bytes each
before anything is queued, and its writer waits with `asyncio.wait_for(queue.get())`,
which on Python 3.11 wraps the `get()` coroutine in a Task of its own: ~4 KB per idle
connection, about an eighth of what the library costs per socket (bench/idle_memory.py).
`create_queue` is the library's documented hook for the queue it uses; `SocketQueue`
keeps the same contract for its one consumer with nothing allocated while idle but the
waiting writer's future, and `get()` returns that future, so `wait_for` makes no task.

Over a WebSocket the library also keeps two tasks per socket besides aiohttp's own: a
writer waiting on that queue, and a task per read that its reader awaits under `wait_for`
(with their frames, futures and timers, ~3.5 KB traced). `LightSocket` reads in aiohttp's
request task and writes from whoever sends (bench/idle_memory.py, 10,000 clients: 31.3 ->
25.9 KB of RSS per connection).

Each socket also keeps a task asleep for `ping_interval` between two pings (~1 KB with its
frames, future and timer); here the ping is a timer that starts the send when it is due.

python-socketio has Engine.IO hand it each socket's messages one at a time, in the
socket's reader, so a namespace connect waiting for the database (signalling/admission.py)
kept that socket's pongs unread: in a reconnect storm of 10,000 clients the server closed
3,188 sockets for a ping timeout while their connects waited (bench/reconnect_storm.py).
Here a socket's namespace connect runs beside its reader, and what the socket sends after
it (and its disconnect) runs after it, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable
from typing import Any

import engineio
from aiohttp import web
from engineio import async_socket, exceptions, packet

# The coroutine python-engineio starts per socket to sleep until the next ping (None if a
# later version drops it: then its own task runs, as before).
SEND_PING = getattr(async_socket.AsyncSocket, "_send_ping", None)


class SocketQueue:
    """An unbounded FIFO with asyncio.Queue's methods as python-engineio uses them (`put`,
    `put_nowait`, `get`, `get_nowait`, `task_done`, `join`, `qsize`, `empty`)."""

    __slots__ = ("_finished", "_getters", "_items", "_unfinished")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None  # made on the first packet that has to wait
        self._getters: list[asyncio.Future[Any]] | None = None  # one writer: one entry
        self._unfinished = 0
        self._finished: asyncio.Event | None = None  # made by the first join() that waits

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Any) -> None:
        self._unfinished += 1
        getters = self._getters
        while getters:
            getter = getters.pop(0)
            if not getter.done():  # a getter given up on (wait_for's timeout) is skipped
                getter.set_result(item)
                return
        if self._items is None:
            self._items = deque()
        self._items.append(item)

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._take(self._items)

    def _take(self, items: deque[Any]) -> Any:
        item = items.popleft()
        if not items:
            self._items = None  # an idle socket keeps no empty deque
        return item

    def get(self) -> asyncio.Future[Any]:
        """A future of the next item (awaitable like asyncio.Queue.get(); cancelling it
        takes nothing off the queue)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._items:
            future.set_result(self._take(self._items))
            return future
        if self._getters is None:
            self._getters = []
        elif self._getters and self._getters[0].done():  # given up on, never handed one
            self._getters = [g for g in self._getters if not g.done()]
        self._getters.append(future)
        return future

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0 and self._finished is not None:
            self._finished.set()

    async def join(self) -> None:
        if self._unfinished == 0:
            return
        if self._finished is None or self._finished.is_set():
            self._finished = asyncio.Event()
        await self._finished.wait()


class LightSocket(async_socket.AsyncSocket):  # type: ignore[misc]
    """python-engineio's socket, whose WebSocket runs in the one task aiohttp gives its
    request: the reader loop awaits the WebSocket itself (the library starts a task per
    read, under `wait_for`), and a packet is written by whoever sends it when nothing is
    in flight (the library's writer task waits on the queue for each). A send that would
    wait (a packet in flight, or the peer not reading: the transport over its high-water
    mark) is queued for a short-lived flusher task, so a broadcast never waits for one
    slow client. Polling keeps the library's queue and code."""

    connected: bool  # the library's attributes used here (it is untyped)
    upgraded: bool
    _ws: web.WebSocketResponse | None = None  # set once the socket writes to a WebSocket
    _pending: deque[Any] | None = None  # packets waiting for the one in flight
    _sending = False  # a packet is being written (directly or by the flusher)
    _flusher: asyncio.Task[None] | None = None

    async def send(self, pkt: Any) -> None:
        """Send a packet to the client (queued while polling, as the library does)."""
        if not await self.check_ping_timeout():
            return
        ws = self._ws
        if ws is None:
            await self.queue.put(pkt)
            return
        if self._sending or _backlogged(ws):
            self._later(ws, pkt)
            return
        self._sending = True
        try:
            await ws.send_str(pkt.encode())  # Engine.IO v4 packets here are text
        except Exception:
            self._lost(ws)
        finally:
            self._sending = False
        if self._pending:
            self._later(ws, None)

    def _later(self, ws: web.WebSocketResponse, pkt: Any) -> None:
        """Queue a packet behind the one in flight; start the flusher if none runs."""
        if pkt is not None:
            if self._pending is None:
                self._pending = deque()
            self._pending.append(pkt)
        if not self._sending:
            self._sending = True
            self._flusher = asyncio.ensure_future(self._flush(ws))

    async def _flush(self, ws: web.WebSocketResponse) -> None:
        try:
            while self._pending:
                await ws.send_str(self._pending.popleft().encode())
        except Exception:
            self._lost(ws)
        finally:
            self._sending = False
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
        """Until what was queued for the WebSocket is written (or given up)."""
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
        ws = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size)
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
                self._later(ws, item)
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


def _backlogged(ws: web.WebSocketResponse) -> bool:
    """Whether a write would wait for the peer to read (aiohttp then drains)."""
    transport = ws._req.transport if ws._req is not None else None
    return transport is None or transport.is_closing() or transport.get_write_buffer_size() > 0


def _is_connect(data: Any) -> bool:
    """A Socket.IO CONNECT packet (type 0), to any namespace."""
    return isinstance(data, str) and data[:1] == "0"


class LightEngineServer(engineio.AsyncServer):  # type: ignore[misc]
    """python-engineio's server with `SocketQueue` as each socket's outgoing queue, and its
    pings on timers instead of a sleeping task per socket."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sending: set[asyncio.Task[Any]] = set()
        self._connecting: dict[str, asyncio.Task[Any]] = {}  # sid -> its last pending work

    async def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        sid = args[0] if args and isinstance(args[0], str) else None
        if event == "connect" and sid is not None:
            self._lighten(sid)
        pending = self._connecting.get(sid) if sid is not None else None
        if sid is None or event not in ("message", "disconnect"):
            return await super()._trigger_event(event, *args, **kwargs)
        if pending is not None:  # after the socket's pending connect, in order
            work = super()._trigger_event(event, *args, **kwargs)
            self._beside(sid, self._after(pending, work))
            return None
        if event == "message" and len(args) > 1 and _is_connect(args[1]):
            self._beside(sid, super()._trigger_event(event, *args, **kwargs))
            return None
        return await super()._trigger_event(event, *args, **kwargs)

    def _lighten(self, sid: str) -> None:
        """Make the socket python-engineio just made (`_handle_connect` names its class) a
        `LightSocket`, before it sends anything but the OPEN packet it has queued."""
        socket = self.sockets.get(sid)
        if type(socket) is async_socket.AsyncSocket:
            socket.__class__ = LightSocket

    def _beside(self, sid: str, work: Any) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(work)
        self._connecting[sid] = task

        def done(task: asyncio.Task[Any]) -> None:
            if self._connecting.get(sid) is task:
                del self._connecting[sid]

        task.add_done_callback(done)

    @staticmethod
    async def _after(previous: asyncio.Task[Any], work: Any) -> Any:
        await asyncio.wait([previous])
        return await work

    def start_background_task(self, target: Any, *args: Any, **kwargs: Any) -> Any:
        if SEND_PING is not None and getattr(target, "__func__", None) is SEND_PING:
            loop = asyncio.get_running_loop()
            loop.call_later(self.ping_interval, self._ping_due, target.__self__)
            return None  # python-engineio does not keep the ping's task
        return super().start_background_task(target, *args, **kwargs)

    def _ping_due(self, socket: Any) -> None:
        """What `AsyncSocket._send_ping` does after its sleep."""
        if not socket.closing and not socket.closed:
            socket.last_ping = time.time()
            task = super().start_background_task(socket.send, packet.Packet(packet.PING))
            self._sending.add(task)  # referenced until done (a short send)
            task.add_done_callback(self._sending.discard)

    def create_queue(self, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:  # a bounded queue was asked for: the library's own
            return super().create_queue(*args, **kwargs)
        return SocketQueue()
