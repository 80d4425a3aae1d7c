"""What changed, as data: services record events in the transaction that makes the change,
and one publisher turns them into Socket.IO events after the commit.

A service never talks to the live layer. It calls `record(session, event)` inside
`Database.write()`; the unit of work hands the events of a committed transaction to the
publisher (`Database.on_commit`), and drops them when the transaction rolls back, so
nothing is announced that did not happen and nothing that happened goes unannounced,
whether the change came from a REST call, a socket event or a scheduler job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from telemed.consultation import ConsultationView, Transition
from telemed.models import Consultation
from telemed.roles import Role

if TYPE_CHECKING:
    from telemed.services.chat import Message
    from telemed.services.live_facts import Facts

EVENTS_KEY = "telemed_events"


@dataclass(frozen=True)
class Change:
    """A consultation after a move, the move itself and the snapshot before it
    (both None when the consultation was created or found already open). `shown`: when the
    move brought the patient a new counterpart, what that counterpart is shown (the facts
    and the chat so far), read in the move's own transaction rather than in another
    session after it."""

    consultation: Consultation
    transition: Transition | None
    before: ConsultationView | None = None
    shown: tuple[Facts, list[Message]] | None = None


@dataclass(frozen=True)
class ConsultationChanged:
    """A consultation was opened or moved: its people, queues and counterparts learn it."""

    change: Change


@dataclass(frozen=True)
class PatientAway:
    """The patient's last connection dropped; their counterparts are told."""

    consultation_id: str
    counterpart_id: str | None


@dataclass(frozen=True)
class UserMessage:
    """A message for every connection of one user (a reminder, a limit warning)."""

    user_id: str
    name: str
    data: dict[str, Any]


@dataclass(frozen=True)
class StaffMessage:
    """A message for the staff of a role watching their queue (a cancellation, a no-show)."""

    role: Role
    name: str
    data: dict[str, Any]


class EndReason(StrEnum):
    """Why a live session ends (`session:ended {reason}`)."""

    LOGOUT = "logout"
    EXPIRED = "expired"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    ACCOUNT_DISABLED = "account_disabled"


@dataclass(frozen=True)
class AccessEnded:
    """A user's access ended: their live sockets (those of one token, or all) must close."""

    user_id: str
    reason: EndReason
    token_id: str | None = None


@dataclass(frozen=True)
class DeadlineSet:
    """A deadline row was written or moved: the scheduler plans its next pass anew."""


DomainEvent = (
    ConsultationChanged | PatientAway | UserMessage | StaffMessage | AccessEnded | DeadlineSet
)


@dataclass
class Recorded:
    """The events of one transaction, in the order they were recorded."""

    events: list[DomainEvent] = field(default_factory=list)


def record(session: AsyncSession, event: DomainEvent) -> None:
    """Record an event of the change being made in `session`'s transaction."""
    recorded = session.info.get(EVENTS_KEY)
    if not isinstance(recorded, Recorded):
        raise RuntimeError("events are recorded only inside Database.write()")
    recorded.events.append(event)
