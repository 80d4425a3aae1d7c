"""What services need from the live layer, without depending on Socket.IO.

`signalling.server.Signalling` implements it; the scheduler and REST views
use it to tell connected people about changes.
"""

from __future__ import annotations

from typing import Any, Protocol

from telemed.roles import Role
from telemed.services.consultations import Change


class Live(Protocol):
    async def publish(self, change: Change) -> None:
        """Tell everyone concerned about a change of a consultation."""

    async def to_user(self, user_id: str, event: str, data: dict[str, Any]) -> None:
        """Emit an event to every connection of one user."""

    async def to_role(self, role: Role, event: str, data: dict[str, Any]) -> None:
        """Emit an event to the staff of a role watching their queue."""

    def is_online(self, user_id: str | None) -> bool:
        """Whether the user has a live connection."""
