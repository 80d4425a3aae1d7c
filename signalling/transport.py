"""The Socket.IO server as the rest of signalling sees it: typed emits to users, queues and
sockets, and a server that keeps the library's reserved event names to itself.

python-socketio dispatches a client frame `42["disconnect",{}]` to the server's own
`disconnect` handler (and `connect` likewise), so a client could mark itself away while
staying connected, or switch identities. `StrictServer` answers such frames, and every
other name the library reserves, as unknown events.

telemed's events are JSON only. Socket.IO's binary events (packet types 5 and 6, whose
attachments follow as separate frames) are refused with `bad_request`, and so packets
never carry bytes: `TextPacket` spares python-socketio's walk through every payload
looking for them (on each relayed SDP, a twentieth of the relay's CPU). An event frame
over `signalling.max_event_bytes` is answered `payload_too_large` from its length before
it is decoded, so no payload is serialised again to be measured.
"""

from __future__ import annotations

from typing import Any

import socketio
from engineio import packet as eio_packet
from socketio import packet

from signalling.engine import LightEngineServer
from telemed.roles import Role

# Names python-socketio gives meaning to on the server side; clients may not send them.
RESERVED = frozenset(
    {"connect", "disconnect", "connect_error", "message", "error", "*", "newListener"}
)


def user_room(user_id: str) -> str:
    """Every socket of one user, on whichever node: events follow people."""
    return f"u:{user_id}"


def queue_room(role: Role) -> str:
    """The staff of a role watching their queue."""
    return f"q:{role.value}"


def doctor_queue_room(doctor_id: str) -> str:
    """A doctor watching their queue: patients named for them (a booked consultation)."""
    return f"qd:{doctor_id}"


BINARY_PACKETS = (str(packet.BINARY_EVENT), str(packet.BINARY_ACK))
EVENT_PACKET = str(packet.EVENT)


class TextPacket(packet.Packet):  # type: ignore[misc]
    """A Socket.IO packet that never looks for binary attachments (none are accepted)."""

    uses_binary_events = False


class StrictServer(socketio.AsyncServer):  # type: ignore[misc]
    """An AsyncServer whose client events never reach the handlers of reserved names,
    which takes no binary events (pass `serializer=TextPacket`), on an Engine.IO server
    that costs less per idle socket."""

    on_reserved: Any = None  # async (event, sid, id) -> None, set by the handlers
    on_binary: Any = None  # async (sid) -> ack, set by the handlers
    on_too_large: Any = None  # async (sid) -> ack, set by the handlers
    max_event_bytes: int | None = None  # signalling.max_event_bytes, set by the handlers

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        if not isinstance(data, str):
            return  # an attachment frame of a refused binary event
        kind = data[:1]
        if kind in BINARY_PACKETS:
            await self._refuse(eio_sid, data, self.on_binary)
            return
        limit = self.max_event_bytes
        if kind == EVENT_PACKET and limit is not None and over_limit(data, limit):
            await self._refuse(eio_sid, data, self.on_too_large)
            return
        await super()._handle_eio_message(eio_sid, data)

    async def _refuse(self, eio_sid: str, data: str, answer: Any) -> None:
        """Answer a frame no handler gets, when it asked for an ack."""
        header = packet.Packet(encoded_packet=data)  # namespace and ack id
        sid = self.manager.sid_from_eio_sid(eio_sid, header.namespace or "/")
        if answer is None or sid is None or header.id is None:
            return
        ack = await answer(sid)
        reply = self.packet_class(packet.ACK, namespace=header.namespace, id=header.id, data=[ack])
        await self._send_packet(eio_sid, reply)

    def _engineio_server_class(self) -> type[LightEngineServer]:
        return LightEngineServer  # lighter per idle socket (signalling/engine.py)

    async def _handle_event(self, eio_sid: str, namespace: str, id: Any, data: Any) -> None:
        name = data[0] if isinstance(data, list) and data else None
        if isinstance(name, str) and name not in RESERVED:
            await super()._handle_event(eio_sid, namespace, id, data)
            return
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace or "/")
        if self.on_reserved is None or sid is None:
            return
        ack = await self.on_reserved(str(name)[:64], sid)
        if id is not None:
            reply = self.packet_class(packet.ACK, namespace=namespace, id=id, data=[ack])
            await self._send_packet(eio_sid, reply)


def over_limit(frame: str, limit: int) -> bool:
    """Whether a text frame is over `limit` bytes as UTF-8, mostly without encoding it (a
    frame is never fewer bytes than characters, nor more than four per character)."""
    if len(frame) > limit:
        return True
    if len(frame) * 4 <= limit:
        return False
    return len(frame.encode("utf-8", "surrogatepass")) > limit


class DirectEmit(socketio.AsyncManager):  # type: ignore[misc]
    """The library's local delivery without a task per recipient.

    python-socketio's `AsyncManager.emit` starts a task for every socket it sends to and
    waits for them all: on each relayed signal a task, its scheduling and an
    `asyncio.wait`, for a send that does not wait (an Engine.IO socket queues what it cannot
    write now, signalling/engine.py). Here the packet is encoded once and handed to each
    socket in turn. Emits that ask for an ack per recipient keep the library's path."""

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        if callback is not None:
            await super().emit(event, data, namespace, room, skip_sid, callback, to, **kwargs)
            return
        if namespace not in self.rooms:
            return
        args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        # The recipients first: a room may change while a send is awaited.
        targets = [e for sid, e in self.get_participants(namespace, to or room) if sid not in skip]
        if not targets:
            return
        encoded = self.server.packet_class(
            packet.EVENT, namespace=namespace, data=[event, *args]
        ).encode()
        frames = [
            eio_packet.Packet(eio_packet.MESSAGE, p)
            for p in (encoded if isinstance(encoded, list) else [encoded])
        ]
        for eio_sid in targets:
            for frame in frames:
                await self.server._send_eio_packet(eio_sid, frame)


class Transport:
    """Emits by target; one place that knows rooms and sids."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self.sio = sio

    async def to_user(self, user_id: str, event: str, data: dict[str, Any]) -> None:
        await self.sio.emit(event, data, room=user_room(user_id))

    async def to_room(self, room: str, event: str, data: dict[str, Any]) -> None:
        await self.sio.emit(event, data, room=room)

    async def to_sid(self, sid: str, event: str, data: dict[str, Any]) -> None:
        await self.sio.emit(event, data, to=sid)

    async def disconnect(self, sid: str) -> None:
        await self.sio.disconnect(sid)
