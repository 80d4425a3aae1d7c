"""What services and the scheduler need from the live layer, without depending on Socket.IO.

`signalling.server.Signalling` implements it. Nothing here announces changes: services
record domain events (`telemed.events`) and the live layer publishes them after commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from telemed.events import DomainEvent


class Live(Protocol):
    async def publish(self, events: Sequence[DomainEvent]) -> None:
        """Deliver the committed events of one transaction."""

    def is_online(self, user_id: str | None) -> bool:
        """Whether the user has a live connection."""
