"""Who may read a patient's medical record: the one access policy, as pure code.

Every path that reads medical data (the medical card, conclusions, the calendar and
"My records", second opinions, FHIR) asks `decide` and nothing else. The facts it decides
on are loaded by `telemed.services.care`; the rule itself has no I/O, so every case is a
table row in the tests.

- The patient reads their own record.
- Staff read it only within a care relationship (`Relation`): a leg on one of the
  patient's consultations, now or ended within `rules.care_window`; the consultant, the
  doctor or the awaited doctor of an open consultation; the doctor of a booked appointment
  not yet started (to prepare, R-DOCS-1); the specialist assigned to one of the patient's
  second opinions (while open, or delivered within the care window; of the medical card
  they read only the documents sent with a case, R-SECOND), and the consultants
  while a second opinion waits to be assigned or delivered (they handle it, R-SECOND).
- Break-the-glass: a consultant with no relationship states a reason; for
  `rules.break_glass_ttl` afterwards they read the record, each read audited and flagged.
- The administrator manages lists and staff and reads no medical record.
- Everyone else is refused; callers answer 404, as for a record that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from telemed.roles import STAFF_ROLES, Role

BREAK_GLASS_ROLES = frozenset({Role.CONSULTANT})


class Relation(StrEnum):
    """Why a reader may read a record (recorded in the audit entry of the read)."""

    SELF = "self"
    LEG = "leg"
    OPEN_CONSULTATION = "open_consultation"
    BOOKED_APPOINTMENT = "booked_appointment"
    SECOND_OPINION = "second_opinion"
    BREAK_GLASS = "break_glass"


@dataclass(frozen=True)
class CareFacts:
    """What the database says about one staff member and one patient.

    `leg_open`: a leg of theirs on the patient's consultations has not ended;
    `leg_last_ended`: when the latest ended one ended. `assigned_open`: they are the
    consultant, doctor or awaited doctor of an open consultation. `booked`: they are the
    doctor of a booked appointment not yet started. `case_open` / `case_last_delivered`:
    second opinions of the patient assigned to them (specialist), open or delivered;
    `case_pending`: the patient has a second opinion not yet delivered (consultants).
    `break_glass_at`: their latest break-the-glass on this patient.
    """

    leg_open: bool = False
    leg_last_ended: datetime | None = None
    assigned_open: bool = False
    booked: bool = False
    case_open: bool = False
    case_last_delivered: datetime | None = None
    case_pending: bool = False
    break_glass_at: datetime | None = None


NO_FACTS = CareFacts()


@dataclass(frozen=True)
class Decision:
    """The policy's answer; `relation` says why when allowed."""

    allowed: bool
    relation: Relation | None = None
    case_documents_only: bool = False  # of the medical card, only what a case sent them

    @property
    def break_glass(self) -> bool:
        return self.relation is Relation.BREAK_GLASS


DENIED = Decision(False)


@dataclass(frozen=True)
class Windows:
    """The policy's durations, from `rules` in config.yaml."""

    care_window: timedelta
    break_glass_ttl: timedelta


def _within(moment: datetime | None, now: datetime, window: timedelta) -> bool:
    """`moment` lies at most `window` before now (a moment ahead of this node's clock, from
    another node's, counts as now)."""
    return moment is not None and moment >= now - window


def decide(
    role: Role,
    actor_id: str,
    patient_id: str,
    facts: CareFacts,
    *,
    now: datetime,
    windows: Windows,
) -> Decision:
    """May this reader read this patient's record, and why."""
    if role is Role.PATIENT:
        return Decision(True, Relation.SELF) if actor_id == patient_id else DENIED
    if role not in STAFF_ROLES or role is Role.ADMIN:
        return DENIED
    if facts.leg_open or _within(facts.leg_last_ended, now, windows.care_window):
        return Decision(True, Relation.LEG)
    if facts.assigned_open:
        return Decision(True, Relation.OPEN_CONSULTATION)
    if facts.booked:
        return Decision(True, Relation.BOOKED_APPOINTMENT)
    if role is Role.SPECIALIST and (
        facts.case_open or _within(facts.case_last_delivered, now, windows.care_window)
    ):
        return Decision(True, Relation.SECOND_OPINION, case_documents_only=True)
    if role is Role.CONSULTANT and facts.case_pending:
        return Decision(True, Relation.SECOND_OPINION)
    if role in BREAK_GLASS_ROLES and _within(facts.break_glass_at, now, windows.break_glass_ttl):
        return Decision(True, Relation.BREAK_GLASS)
    return DENIED


def may_break_glass(role: Role) -> bool:
    """Only consultants may state a reason to read a record outside a care relationship."""
    return role in BREAK_GLASS_ROLES
