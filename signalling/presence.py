"""Who is connected to this node: sockets per user, and the user behind each socket.

A cache of live connections, never the source of truth: consultations,
queues and chat live in the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from signalling.budget import Budget
from telemed.roles import Role


@dataclass(slots=True)
class Participant:
    """A connected socket and who is behind it (one per socket: slots, and no set of its
    own until the staff member watches a queue)."""

    sid: str
    user_id: str
    role: Role
    token: str
    token_id: str
    expires_at: datetime
    checked_at: datetime
    budget: Budget
    watching: frozenset[Role] = frozenset()


class Presence:
    def __init__(self) -> None:
        self._by_sid: dict[str, Participant] = {}
        self._by_user: dict[str, set[str]] = {}

    def add(self, participant: Participant) -> list[str]:
        """Register a socket; returns the user's other sockets (a second tab takes over)."""
        others = sorted(self._by_user.get(participant.user_id, set()))
        self._by_sid[participant.sid] = participant
        self._by_user.setdefault(participant.user_id, set()).add(participant.sid)
        return others

    def remove(self, sid: str) -> tuple[Participant | None, bool]:
        """Forget a socket; returns it and whether its user has no socket left."""
        participant = self._by_sid.pop(sid, None)
        if participant is None:
            return None, False
        sids = self._by_user.get(participant.user_id, set())
        sids.discard(sid)
        if not sids:
            self._by_user.pop(participant.user_id, None)
            return participant, True
        return participant, False

    async def claim(self, participant: Participant) -> list[str]:
        """The user's sockets elsewhere that this (connected) socket replaces: none on one
        node, where `add` already named them."""
        return []

    async def release(self, participant: Participant) -> bool:
        """Drop a removed socket's claim; whether a newer connection of its user holds it
        on another node (the user is still online). Never on one node."""
        return False

    def get(self, sid: str) -> Participant | None:
        return self._by_sid.get(sid)

    def online(self, user_id: str | None) -> bool:
        return user_id is not None and bool(self._by_user.get(user_id))

    def sids(self, user_id: str) -> list[str]:
        return sorted(self._by_user.get(user_id, set()))

    def any_here(self, role: Role) -> bool:
        """Whether a socket of this role is connected to this node (a scan: asked by the
        place pass, at most once a second)."""
        return any(p.role is role for p in self._by_sid.values())

    def count(self, role: Role) -> int:
        """Users of a role with at least one socket (for the wait estimate)."""
        return len({p.user_id for p in self._by_sid.values() if p.role is role})

    def __len__(self) -> int:
        return len(self._by_sid)
