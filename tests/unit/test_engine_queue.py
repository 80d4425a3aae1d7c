"""signalling/engine.py: the light per-socket queue keeps asyncio.Queue's contract as
python-engineio uses it."""

from __future__ import annotations

import asyncio

import pytest

from signalling.engine import LightEngineServer, SocketQueue
from signalling.transport import StrictServer


async def test_items_come_out_in_order_whether_a_getter_waits_or_not() -> None:
    queue = SocketQueue()
    waiting = queue.get()
    queue.put_nowait("a")
    await queue.put("b")
    queue.put_nowait("c")
    assert await waiting == "a"
    assert queue.qsize() == 2
    assert await queue.get() == "b"
    assert queue.get_nowait() == "c"
    assert queue.empty()
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()


async def test_a_getter_given_up_on_by_wait_for_loses_nothing() -> None:
    queue = SocketQueue()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get(), 0.01)
    queue.put_nowait("kept")
    assert await asyncio.wait_for(queue.get(), 1) == "kept"


async def test_waiting_for_an_item_makes_no_task() -> None:
    queue = SocketQueue()
    before = len(asyncio.all_tasks())
    waiter = asyncio.ensure_future(asyncio.wait_for(queue.get(), 5))
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == before + 1  # the waiter itself, nothing for get()
    queue.put_nowait(1)
    assert await waiter == 1


async def test_join_waits_until_every_item_is_done() -> None:
    queue = SocketQueue()
    await queue.join()  # nothing queued: at once
    queue.put_nowait("x")
    joined = asyncio.ensure_future(queue.join())
    await asyncio.sleep(0)
    assert not joined.done()
    assert queue.get_nowait() == "x"
    queue.task_done()
    await asyncio.wait_for(joined, 1)
    with pytest.raises(ValueError):
        queue.task_done()


def test_the_socketio_server_runs_on_the_light_engine() -> None:
    sio = StrictServer(async_mode="aiohttp")
    assert isinstance(sio.eio, LightEngineServer)
    assert isinstance(sio.eio.create_queue(), SocketQueue)
    assert isinstance(sio.eio.create_queue(maxsize=3), asyncio.Queue)


async def test_a_ping_is_a_timer_not_a_sleeping_task_and_is_sent_when_due() -> None:
    from engineio import async_socket
    from engineio import packet as eio_packet

    server = LightEngineServer(async_mode="aiohttp", ping_interval=0.05)
    sock = async_socket.AsyncSocket(server, "sid")
    tasks = len(asyncio.all_tasks())
    sock.schedule_ping()  # what the library does after the handshake and after each pong
    assert len(asyncio.all_tasks()) == tasks
    ping = await asyncio.wait_for(sock.queue.get(), 1)
    assert ping.packet_type == eio_packet.PING
    assert sock.last_ping is not None
    sock.closed = True
    sock.last_ping = 1.0  # a pong came: the next ping is scheduled, then the socket closed
    sock.schedule_ping()
    await asyncio.sleep(0.1)
    assert sock.queue.empty()


async def test_a_namespace_connect_runs_beside_the_reader_and_what_follows_waits_for_it() -> None:
    server = LightEngineServer(async_mode="aiohttp")
    database = asyncio.Event()
    seen: list[str] = []

    async def message(sid: str, data: str) -> None:
        if data.startswith("0"):
            await database.wait()  # the connect waits for its turn at the database
        seen.append(data)

    async def disconnect(sid: str, reason: str) -> None:
        seen.append("disconnect")

    server.on("message", message)
    server.on("disconnect", disconnect)
    # the reader hands these on one by one: none of them may block it
    await asyncio.wait_for(server._trigger_event("message", "a", '0{"token":"t"}'), 1)
    await asyncio.wait_for(server._trigger_event("message", "a", '2["chat:send",{}]'), 1)
    await asyncio.wait_for(server._trigger_event("disconnect", "a", "ping timeout"), 1)
    await asyncio.wait_for(server._trigger_event("message", "b", '2["other",{}]'), 1)
    assert seen == ['2["other",{}]']  # another socket is not held up
    database.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert seen == ['2["other",{}]', '0{"token":"t"}', '2["chat:send",{}]', "disconnect"]
    assert not server._connecting
