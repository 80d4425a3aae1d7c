"""The Engine.IO server under python-socketio, lighter per idle connection.

python-engineio gives every socket an `asyncio.Queue` for its outgoing packets: four
deques (getters, putters, items, and the `join` event's waiters) of ~760 bytes each
before anything is queued, and its writer waits with `asyncio.wait_for(queue.get())`,
which on Python 3.11 wraps the `get()` coroutine in a Task of its own: ~4 KB per idle
connection, about an eighth of what the library costs per socket (bench/idle_memory.py).
`create_queue` is the library's documented hook for the queue it uses; `SocketQueue`
keeps the same contract for its one consumer with nothing allocated while idle but the
waiting writer's future, and `get()` returns that future, so `wait_for` makes no task.

Over a WebSocket a socket is a `LightSocket` (signalling/websocket.py): one task, and
what one turn of the event loop sends leaves in one write.

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
import time
from collections import deque
from typing import Any

import engineio
from engineio import async_socket, packet

from signalling.websocket import LightSocket

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
