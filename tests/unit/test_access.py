"""The access policy of medical data (telemed/access.py), table-driven: every role against
every care relationship, the windows at their edges (issue 14)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from telemed.access import (
    DENIED,
    CareFacts,
    Decision,
    Relation,
    Windows,
    decide,
    may_break_glass,
)
from telemed.roles import STAFF_ROLES, Role

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
WINDOWS = Windows(care_window=timedelta(hours=72), break_glass_ttl=timedelta(hours=1))
STAFF = sorted(STAFF_ROLES)
DOCTORS = [Role.THERAPIST, Role.PAEDIATRICIAN, Role.SPECIALIST, Role.PSYCHOLOGIST]
CARERS = [Role.CONSULTANT, *DOCTORS]


def run(role: Role, facts: CareFacts, actor: str = "staff-1") -> Decision:
    return decide(role, actor, "patient-1", facts, now=NOW, windows=WINDOWS)


def test_a_patient_reads_their_own_record_and_no_other() -> None:
    assert run(Role.PATIENT, CareFacts(), actor="patient-1") == Decision(True, Relation.SELF)
    assert run(Role.PATIENT, CareFacts(leg_open=True), actor="patient-2") == DENIED


@pytest.mark.parametrize("role", STAFF)
def test_staff_without_a_care_relationship_are_refused(role: Role) -> None:
    assert run(role, CareFacts()) == DENIED


@pytest.mark.parametrize("role", CARERS)
@pytest.mark.parametrize(
    ("facts", "relation"),
    [
        (CareFacts(leg_open=True), Relation.LEG),
        (CareFacts(leg_last_ended=NOW - timedelta(hours=72)), Relation.LEG),
        (CareFacts(assigned_open=True), Relation.OPEN_CONSULTATION),
        (CareFacts(booked=True), Relation.BOOKED_APPOINTMENT),
    ],
)
def test_staff_in_a_care_relationship_read(
    role: Role, facts: CareFacts, relation: Relation
) -> None:
    assert run(role, facts) == Decision(True, relation)


@pytest.mark.parametrize("role", CARERS)
def test_a_leg_ended_longer_ago_than_the_care_window_no_longer_counts(role: Role) -> None:
    ended = NOW - timedelta(hours=72, seconds=1)
    assert run(role, CareFacts(leg_last_ended=ended)) == DENIED


@pytest.mark.parametrize(
    "facts",
    [
        CareFacts(leg_open=True),
        CareFacts(assigned_open=True),
        CareFacts(booked=True),
        CareFacts(break_glass_at=NOW),
        CareFacts(case_pending=True),
    ],
)
def test_the_administrator_never_reads_a_medical_record(facts: CareFacts) -> None:
    assert run(Role.ADMIN, facts) == DENIED


def test_the_specialist_of_a_second_opinion_reads_only_what_the_case_sent_of_the_card() -> None:
    """R-SECOND: open, or delivered within the care window."""
    for facts in (
        CareFacts(case_open=True),
        CareFacts(case_last_delivered=NOW - timedelta(hours=1)),
    ):
        decision = run(Role.SPECIALIST, facts)
        assert decision == Decision(True, Relation.SECOND_OPINION, case_documents_only=True)
    late = CareFacts(case_last_delivered=NOW - timedelta(hours=73))
    assert run(Role.SPECIALIST, late) == DENIED
    assert run(Role.THERAPIST, CareFacts(case_open=True)) == DENIED


def test_consultants_handle_a_pending_second_opinion_and_doctors_do_not() -> None:
    pending = CareFacts(case_pending=True)
    assert run(Role.CONSULTANT, pending) == Decision(True, Relation.SECOND_OPINION)
    for role in DOCTORS:
        assert run(role, pending) == DENIED


def test_break_the_glass_is_for_consultants_and_lasts_its_ttl() -> None:
    fresh = CareFacts(break_glass_at=NOW - timedelta(minutes=59))
    stale = CareFacts(break_glass_at=NOW - timedelta(minutes=61))
    decision = run(Role.CONSULTANT, fresh)
    assert decision == Decision(True, Relation.BREAK_GLASS) and decision.break_glass
    assert run(Role.CONSULTANT, stale) == DENIED
    for role in DOCTORS:
        assert run(role, fresh) == DENIED
        assert not may_break_glass(role)
    assert may_break_glass(Role.CONSULTANT)


def test_a_care_relationship_comes_before_a_break_the_glass() -> None:
    """A read by a consultant who serves the patient is not flagged for review."""
    facts = CareFacts(leg_open=True, break_glass_at=NOW)
    assert run(Role.CONSULTANT, facts).relation is Relation.LEG
