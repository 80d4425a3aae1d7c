"""A real Socket.IO client for tests: records every event so a test can wait for one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import socketio

Predicate = Callable[[Any], bool]


class Live:
    """One participant's Socket.IO connection (python-socketio's AsyncClient)."""

    def __init__(self, base_url: str, token: str, name: str = "") -> None:
        self.base_url = base_url
        self.token = token
        self.name = name
        self.sio = socketio.AsyncClient(reconnection=False)
        self.received: list[tuple[str, Any]] = []
        self._taken: set[int] = set()
        self._arrived = asyncio.Event()
        self._snapshot: tuple[int, str, list[dict[str, Any]]] | None = None  # index, role, items

        async def record(event: str, data: Any = None) -> None:
            self.received.append((event, data))
            self._arrived.set()

        self.sio.on("*", record)

    async def connect(self, **auth: Any) -> Live:
        await self.sio.connect(
            self.base_url,
            auth={"token": self.token, **auth},
            transports=["websocket"],
            wait_timeout=5,
        )
        return self

    async def call(self, event: str, data: Any = None, within: float = 5) -> dict[str, Any]:
        """Emit and return the ack."""
        mark = len(self.received)
        ack = await self.sio.call(event, data if data is not None else {}, timeout=within)
        assert isinstance(ack, dict), ack
        if event == "queue:watch" and ack.get("ok"):
            self._snapshot = (mark, ack["role"], list(ack["items"]))
        return ack

    async def ok(self, event: str, data: Any = None) -> dict[str, Any]:
        ack = await self.call(event, data)
        assert ack["ok"] is True, (self.name, event, ack)
        return ack

    async def wait(self, event: str, where: Predicate | None = None, within: float = 5) -> Any:
        """The first event of that name (matching `where`) not yet taken by a wait."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            for index, (name, data) in enumerate(self.received):
                if index in self._taken or name != event:
                    continue
                if where is None or where(data):
                    self._taken.add(index)
                    return data
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.name}: no {event} within {within}s; got {[n for n, _ in self.received]}"
                )
            self._arrived.clear()
            # Not `wait_for`: under Python 3.11 it returns normally when the event fires in
            # the same tick as a cancel, swallowing the cancel; a waiter inside a `while
            # True` (a media peer's signal listener) then never stops and its closer hangs.
            arrived = asyncio.ensure_future(self._arrived.wait())
            try:
                await asyncio.wait({arrived}, timeout=remaining)
            finally:
                arrived.cancel()

    def queue(self) -> list[dict[str, Any]]:
        """The watched queue as a console keeps it: the `queue:watch` snapshot with every
        delta received since applied (`queue:update` replaces it), oldest first."""
        if self._snapshot is None:
            raise AssertionError(f"{self.name}: call queue:watch first")
        start, _, snapshot = self._snapshot
        items = {i["consultation_id"]: i for i in snapshot}
        for name, data in self.received[start:]:
            if name == "queue:joined" or name == "queue:changed":
                items[data["item"]["consultation_id"]] = data["item"]
            elif name == "queue:left":
                items.pop(data["consultation_id"], None)
            elif name == "queue:update":
                items = {i["consultation_id"]: i for i in data["items"]}
        return sorted(items.values(), key=lambda i: (i["queued_at"], i["consultation_id"]))

    async def wait_queue(
        self, where: Callable[[list[dict[str, Any]]], bool], within: float = 5
    ) -> dict[str, Any]:
        """Wait until the watched queue matches `where`; returns `{"role", "items"}`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            items = self.queue()
            if where(items) and self._snapshot is not None:
                return {"role": self._snapshot[1], "items": items}
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"{self.name}: queue never matched; it is {items}")
            self._arrived.clear()
            arrived = asyncio.ensure_future(self._arrived.wait())
            try:
                await asyncio.wait({arrived}, timeout=remaining)
            finally:
                arrived.cancel()

    def state(self, consultation_id: str, state: str) -> Predicate:
        return lambda d: d.get("consultation_id") == consultation_id and d.get("state") == state

    async def wait_state(self, consultation_id: str, state: str, within: float = 5) -> Any:
        return await self.wait(
            "consultation:state", self.state(consultation_id, state), within=within
        )

    def events(self, name: str) -> list[Any]:
        return [d for n, d in self.received if n == name]

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()
