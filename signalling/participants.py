"""Who is in a consultation, cached for the signal relay.

The relay checks on every `signal` that the sender talks to the consultation's current
counterpart; a call setup is 25-45 signals, and a database read for each was most of the
relay's cost (docs/performance.md). Entries are dropped on every change this node
publishes and, through the Redis manager, on every change another node publishes. With
several nodes an entry also lives at most `ttl` seconds (each a random part of it less, so
entries stored together are not all read again together), so a change whose notice was
lost (a Redis outage) is seen within that time anyway; a single node hears of every
change itself and keeps entries until they change (a 5 s lifetime for all entries made
1,000 clients' relay read the database in bursts and fall behind, docs/performance.md).
The database stays the source of truth.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

# (patient id, current staff counterpart or None)
Participants = tuple[str, str | None]


class ParticipantsCache:
    """Consultation id -> participants, with a generation so a read that raced with a
    change is used once but never stored."""

    def __init__(
        self,
        ttl: float | None = None,
        max_entries: int = 100_000,
        monotonic: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.ttl = ttl
        self._now = monotonic
        self._jitter = jitter
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Participants]] = {}
        self._generation = 0

    def get(self, consultation_id: str) -> Participants | None:
        entry = self._entries.get(consultation_id)
        if entry is None:
            return None
        expires_at, participants = entry
        if self._now() > expires_at:
            del self._entries[consultation_id]
            return None
        return participants

    def ticket(self) -> int:
        """Take before reading the database; `put` stores only if nothing changed since."""
        return self._generation

    def put(self, consultation_id: str, participants: Participants, ticket: int) -> None:
        if ticket != self._generation:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # bounded memory; entries are cheap to read again
        lifetime = float("inf") if self.ttl is None else self.ttl * (1 - self._jitter() / 2)
        self._entries[consultation_id] = (self._now() + lifetime, participants)

    def forget(self, consultation_id: str) -> None:
        """The consultation changed: its entry, and any read in flight, are stale."""
        self._entries.pop(consultation_id, None)
        self._generation += 1

    def clear(self) -> None:
        """Forget everything (after a Redis outage other nodes' notices may be lost)."""
        self._entries.clear()
        self._generation += 1
