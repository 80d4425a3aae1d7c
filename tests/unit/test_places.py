"""Waiting patients' places: a pass reads a queue only when a patient here could be told."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from telemed.clock import ManualClock
from telemed.roles import Role
from telemed.services.places import PlaceNotifier
from telemed.services.queue import QueueService, Waiting


class CountingQueue:
    """The two QueueService calls a pass makes; counts the reads of the whole queue."""

    def __init__(self, waiting: list[Waiting]) -> None:
        self.items = waiting
        self.reads = 0

    async def waiting(self, role: Role) -> list[Waiting]:
        self.reads += 1
        return self.items

    def estimate(self, position: int, staff_online: int) -> int:
        return 60 * position


def waiting(n: int) -> Waiting:
    return Waiting(f"c{n}", f"p{n}", "waiting_consultant", "urgent", "video", None, False, n)


def notifier(queue: CountingQueue, connected: set[str], told: list[Any]) -> PlaceNotifier:
    async def tell(patient_id: str, state: dict[str, Any]) -> None:
        told.append((patient_id, state["queue_position"]))

    return PlaceNotifier(
        queue,  # type: ignore[arg-type]  # the two calls a pass makes
        ManualClock(datetime(2026, 11, 26, tzinfo=UTC)),
        1.0,
        here=lambda user_id: user_id in connected,
        patients_here=lambda: bool(connected),
        staff_online=lambda role: 1,
        tell=tell,
    )


async def test_a_pass_with_no_patient_connected_here_reads_no_queue() -> None:
    queue = CountingQueue([waiting(n) for n in range(1, 1001)])
    told: list[Any] = []
    await notifier(queue, set(), told).tell_places(Role.CONSULTANT)
    assert queue.reads == 0 and told == []


async def test_a_connected_patient_is_told_a_new_place_once() -> None:
    queue = CountingQueue([waiting(1), waiting(2)])
    told: list[Any] = []
    places = notifier(queue, {"p2"}, told)
    await places.tell_places(Role.CONSULTANT)
    await places.tell_places(Role.CONSULTANT)  # nothing moved: nothing told again
    queue.items = [Waiting("c2", "p2", "waiting_consultant", "urgent", "video", None, False, 1)]
    await places.tell_places(Role.CONSULTANT)
    assert told == [("p2", 2), ("p2", 1)]
    assert queue.reads == 3


def test_the_counting_queue_has_the_calls_a_pass_makes() -> None:
    for name in ("waiting", "estimate"):
        assert callable(getattr(QueueService, name))
