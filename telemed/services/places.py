"""Waiting patients' places, told as they change and at most once a second each (R-URG-2).

A queue change moves everyone behind it; telling each patient at once would cost
O(queue) messages per accept. Changes only mark their queue; a pass, at most every
`signalling.queue_refresh_interval`, reads each marked queue once (one light query) and
tells the patients connected to this node whose place or estimate changed since they were
last told. Every node does this for its own patients; a change on another node marks the
queues here too. A node with no patient connected reads nothing: a long queue costs its
accepts nothing then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from telemed.clock import Clock
from telemed.roles import DOCTOR_ROLES, Role
from telemed.services.queue import QueueService, Waiting

log = logging.getLogger("telemed.places")

Tell = Callable[[str, dict[str, Any]], Awaitable[None]]


class PlaceNotifier:
    """Marks queues as moved and, in a coalescing pass, tells waiting patients their place."""

    def __init__(
        self,
        queue: QueueService,
        clock: Clock,
        interval: float,
        here: Callable[[str], bool],
        patients_here: Callable[[], bool],
        staff_online: Callable[[Role], int],
        tell: Tell,
    ) -> None:
        self.queue = queue
        self.clock = clock
        self.interval = interval
        self.here = here  # whether a patient has a socket on this node
        self.patients_here = patients_here  # whether any patient has one
        self.staff_online = staff_online
        self.tell = tell  # (patient_id, consultation:state payload)
        self._dirty: set[Role] = set()
        self._wakeup = asyncio.Event()
        self._told: dict[Role, dict[str, tuple[int, int]]] = {}

    def moved(self, role: Role) -> None:
        """A consultation joined or left the queue of `role`."""
        self._dirty.add(role)
        self._wakeup.set()

    def moved_everywhere(self) -> None:
        """Another node changed something (it does not say which queue)."""
        self._dirty.update((Role.CONSULTANT, *DOCTOR_ROLES))
        self._wakeup.set()

    async def run_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            dirty, self._dirty = self._dirty, set()
            for role in dirty:
                try:
                    await self.tell_places(role)
                except Exception:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise
                    log.exception("place updates of %s failed", role.value)
            await asyncio.sleep(self.interval)

    async def tell_places(self, role: Role) -> None:
        """One read of the queue; one `consultation:state` per patient here whose place
        moved."""
        if not self.patients_here():  # nobody here to tell: no read of the whole queue
            self._told[role] = {}
            return
        waiting = await self.queue.waiting(role)
        online = self.staff_online(role)
        server_time = self.clock.now().isoformat()
        before = self._told.get(role, {})
        told: dict[str, tuple[int, int]] = {}  # only those still waiting are remembered
        for item in waiting:
            if not self.here(item.patient_id):
                continue
            place = (item.position, self.queue.estimate(item.position, online))
            told[item.consultation_id] = place
            if before.get(item.consultation_id) != place:
                await self.tell(item.patient_id, place_state(item, place, server_time))
        self._told[role] = told


def place_state(item: Waiting, place: tuple[int, int], server_time: str) -> dict[str, Any]:
    """A waiting patient's `consultation:state` (nobody is with them, no limit runs)."""
    state: dict[str, Any] = {
        "consultation_id": item.consultation_id,
        "state": item.state,
        "kind": item.kind,
        "channel": item.channel,
        "server_time": server_time,
        "queue_position": place[0],
        "estimated_wait_seconds": place[1],
    }
    if item.appointment_id is not None:
        state["appointment_id"] = item.appointment_id
        if item.documents_required:
            state["documents_required"] = True
    return state
