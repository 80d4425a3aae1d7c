"""The pure conclusion rules (R-CONCL-1): what a save does to a chain of versions, who reads
which version, and what is pending or overdue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conclusions.second_opinion import CaseState, case_state, is_overdue
from conclusions.service import (
    AlreadySigned,
    ConclusionText,
    Due,
    IncompleteConclusion,
    NothingToCorrect,
    Status,
    Version,
    WriteRequest,
    may_read,
    plan_write,
    split_due,
)
from telemed.access import DENIED, Decision, Relation
from telemed.errors import Forbidden
from telemed.models import SecondOpinion
from telemed.roles import Role

TEXT = ConclusionText("findings", "advice")
DRAFT = WriteRequest(TEXT)
SIGN = WriteRequest(TEXT, sign=True)
DOC = "doctor-1"


def v(n: int, status: Status, doctor: str = DOC, reason: str | None = None) -> Version:
    return Version(f"c{n}", n, status, doctor, reason)


def test_the_first_save_starts_the_chain_as_a_draft_or_signed() -> None:
    plan = plan_write([], DRAFT, DOC)
    assert (plan.action, plan.version, plan.sign, plan.audit_action) == (
        "create",
        1,
        False,
        "conclusion_draft",
    )
    plan = plan_write([], SIGN, DOC)
    assert (plan.action, plan.version, plan.sign, plan.audit_action) == (
        "create",
        1,
        True,
        "conclusion_sign",
    )


def test_a_draft_is_updated_in_place_by_its_author_only() -> None:
    plan = plan_write([v(1, Status.DRAFT)], SIGN, DOC)
    assert (plan.action, plan.target_id, plan.version, plan.supersedes_id) == (
        "update",
        "c1",
        1,
        None,
    )
    with pytest.raises(Forbidden):
        plan_write([v(1, Status.DRAFT)], DRAFT, "doctor-2")


@pytest.mark.parametrize("request_", [DRAFT, SIGN])
def test_a_signed_version_is_never_changed_without_a_reason(request_: WriteRequest) -> None:
    with pytest.raises(AlreadySigned):
        plan_write([v(1, Status.SIGNED)], request_, DOC)


def test_a_reason_after_signing_makes_a_new_version_that_supersedes() -> None:
    chain = [v(1, Status.SIGNED)]
    plan = plan_write(chain, WriteRequest(TEXT, sign=True, reason="typo"), DOC)
    assert (plan.action, plan.version, plan.supersedes_id, plan.reason, plan.audit_action) == (
        "create",
        2,
        "c1",
        "typo",
        "conclusion_amend",
    )
    # Another doctor of the consultation may correct too (the service checks who may write).
    assert plan_write(chain, WriteRequest(TEXT, reason="r"), "doctor-2").version == 2


def test_a_correction_draft_keeps_its_reason_and_supersedes_the_signed_one() -> None:
    chain = [v(1, Status.SIGNED), v(2, Status.DRAFT, reason="typo")]
    plan = plan_write(chain, SIGN, DOC)
    assert (plan.action, plan.target_id, plan.reason, plan.supersedes_id) == (
        "update",
        "c2",
        "typo",
        "c1",
    )
    assert plan.audit_action == "conclusion_amend"
    plan = plan_write(chain, WriteRequest(TEXT, reason="better reason"), DOC)
    assert plan.reason == "better reason"


def test_a_reason_with_nothing_signed_is_refused() -> None:
    with pytest.raises(NothingToCorrect):
        plan_write([], WriteRequest(TEXT, reason="r"), DOC)
    with pytest.raises(NothingToCorrect):
        plan_write([v(1, Status.DRAFT)], WriteRequest(TEXT, reason="r"), DOC)


@pytest.mark.parametrize(
    "text", [ConclusionText("", "advice"), ConclusionText("findings", ""), ConclusionText("", "")]
)
def test_signing_needs_findings_and_recommendations(text: ConclusionText) -> None:
    with pytest.raises(IncompleteConclusion):
        plan_write([], WriteRequest(text, sign=True), DOC)
    assert plan_write([], WriteRequest(text), DOC).action == "create"  # a draft may be partial


IN_CARE = Decision(True, Relation.LEG)


@pytest.mark.parametrize(
    ("role", "actor", "status", "access", "allowed"),
    [
        (Role.PATIENT, "patient-1", Status.SIGNED, DENIED, True),
        (Role.PATIENT, "patient-1", Status.DRAFT, DENIED, False),
        (Role.PATIENT, "patient-2", Status.SIGNED, DENIED, False),
        (Role.THERAPIST, DOC, Status.DRAFT, DENIED, True),
        (Role.THERAPIST, "doctor-2", Status.DRAFT, IN_CARE, False),
        (Role.THERAPIST, "doctor-2", Status.SIGNED, IN_CARE, True),
        (Role.THERAPIST, "doctor-2", Status.SIGNED, DENIED, False),
        (Role.SPECIALIST, "doctor-3", Status.SIGNED, IN_CARE, True),
        (Role.SPECIALIST, "doctor-3", Status.SIGNED, DENIED, False),
        (Role.CONSULTANT, "consultant-1", Status.SIGNED, IN_CARE, True),
        (Role.CONSULTANT, "consultant-1", Status.SIGNED, DENIED, False),
        (Role.CONSULTANT, "consultant-1", Status.DRAFT, IN_CARE, False),
        (Role.ADMIN, "admin-1", Status.SIGNED, IN_CARE, False),
    ],
)
def test_who_reads_which_version(
    role: Role, actor: str, status: Status, access: Decision, allowed: bool
) -> None:
    """Staff read a signed conclusion only when the access policy allows it (issue 14)."""
    assert may_read(role, actor, "patient-1", v(1, status), access) is allowed


def test_due_conclusions_split_into_pending_and_overdue_by_deadline() -> None:
    now = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

    def due(cid: str, minutes: int) -> Due:
        at = now + timedelta(minutes=minutes)
        return Due(cid, "p", "name", at - timedelta(minutes=15), at, None)

    pending, overdue = split_due([due("b", 5), due("a", -1), due("c", 0), due("d", -30)], now)
    assert [d.consultation_id for d in pending] == ["c", "b"]  # due exactly now is in time
    assert [d.consultation_id for d in overdue] == ["d", "a"]


def test_a_second_opinion_moves_through_its_states() -> None:
    row = SecondOpinion(specialist_id=None, delivered_at=None)
    assert case_state(row, concluded=False) is CaseState.REQUESTED
    row.specialist_id = "s"
    assert case_state(row, concluded=False) is CaseState.ASSIGNED
    assert case_state(row, concluded=True) is CaseState.CONCLUDED
    row.delivered_at = datetime(2026, 2, 1, tzinfo=UTC)
    assert case_state(row, concluded=True) is CaseState.DELIVERED


def test_a_second_opinion_is_overdue_only_after_its_due_date_and_until_delivered() -> None:
    due_on = datetime(2026, 2, 4).date()
    assert not is_overdue(due_on, delivered=False, today=due_on)
    assert is_overdue(due_on, delivered=False, today=due_on + timedelta(days=1))
    assert not is_overdue(due_on, delivered=True, today=due_on + timedelta(days=1))
    assert not is_overdue(None, delivered=False, today=due_on)
