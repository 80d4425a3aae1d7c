"""Queue snapshots for the staff console: who waits where, and start-target breaches."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from telemed.context import services
from telemed.http.api import Api, Body, Call, Out
from telemed.roles import DOCTOR_ROLES, Role

WATCHERS = {Role.CONSULTANT, Role.ADMIN, *DOCTOR_ROLES}


class QueueEntry(Out):
    consultation_id: str
    position: int
    patient_name: str
    age: int
    channel: str
    kind: str
    queued_at: datetime
    waited_seconds: int
    past_target: bool
    device_check: dict[str, Any] | None = None  # the last connection check (R-DEV)


class QueueSnapshot(Out):
    role: Role
    items: list[QueueEntry]


class QueuesOut(Out):
    queues: list[QueueSnapshot]
    start_target_seconds: int
    breaches_last_24h: int


def register(api: Api) -> None:
    @api.route("GET", "/queues", roles=WATCHERS, response=QueuesOut, tag="queues")
    async def list_queues(call: Call[Body]) -> QueuesOut:
        """Every waiting queue, and how many patients waited past the start target (R-URG-2)."""
        svc = services(call.request)
        roles = [Role.CONSULTANT, Role.THERAPIST, Role.PAEDIATRICIAN]
        if call.me.role in DOCTOR_ROLES and call.me.role not in roles:
            roles.append(call.me.role)
        snapshots = []
        for role in roles:
            items = await svc.queue.items(role)
            snapshots.append(
                QueueSnapshot(
                    role=role,
                    items=[QueueEntry.model_validate(i, from_attributes=True) for i in items],
                )
            )
        since = svc.clock.now() - timedelta(hours=24)
        return QueuesOut(
            queues=snapshots,
            start_target_seconds=int(svc.settings.rules.urgent_start_target.total_seconds()),
            breaches_last_24h=await svc.queue.breaches(since),
        )
