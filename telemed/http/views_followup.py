"""The consultant's follow-up over REST (R-URG-5): the doctor's recommendations as the
consultant may see them, and the record of the patient's needs and the outcome."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from telemed.context import client_addr, services
from telemed.http.api import Api, Body, Call, Out
from telemed.models import ConsultationFollowUp
from telemed.roles import Role
from telemed.services.audit import Who
from telemed.services.followup import MAX_NOTE, FollowUpService

CONSULTANTS = {Role.CONSULTANT, Role.ADMIN}


Need = Literal[
    "none",
    "specialist",
    "tests",
    "clinic_visit",
    "home_visit",
    "hospital",
    "medicines",
    "second_opinion",
]
Outcome = Literal["finished", "booked", "referred", "emergency", "declined"]


class FollowUpIn(Body):
    """The closed lists of services/followup.py (NEEDS, OUTCOMES), as the schema says."""

    needs: Annotated[list[Need], Field(max_length=16)]
    outcome: Outcome
    note: Annotated[str, Field(max_length=MAX_NOTE)] = ""


class FollowUpOut(Out):
    needs: list[str]
    outcome: str
    note: str
    recorded_at: datetime


class AdviceOut(Out):
    state: str  # signed | draft | none | no_doctor
    doctor_name: str
    conclusion_id: str | None = None
    text: str = ""
    recommendations: str = ""
    signed_at: datetime | None = None


class FollowUpView(Out):
    conclusion: AdviceOut
    follow_up: FollowUpOut | None = None


def follow_up_out(row: ConsultationFollowUp | None) -> FollowUpOut | None:
    if row is None:
        return None
    return FollowUpOut(
        needs=list(row.needs), outcome=row.outcome, note=row.note, recorded_at=row.recorded_at
    )


def _service(call: Call[FollowUpIn] | Call[Body]) -> tuple[FollowUpService, Who, str]:
    svc = services(call.request)
    who = Who(call.me.role, call.me.id, client_addr(call.request))
    return FollowUpService(svc.db, svc.clock), who, call.request.match_info["consultation_id"]


def register(api: Api) -> None:
    @api.route(
        "GET",
        "/consultations/{consultation_id}/follow-up",
        roles=CONSULTANTS,
        response=FollowUpView,
        tag="consultations",
    )
    async def get_follow_up(call: Call[Body]) -> FollowUpView:
        """The doctor's recommendations (signed conclusion, or the draft's state) and the
        follow-up recorded so far; for the consultation's consultant."""
        service, who, consultation_id = _service(call)
        advice = await service.advice(consultation_id, who)
        return FollowUpView(
            conclusion=AdviceOut.model_validate(advice, from_attributes=True),
            follow_up=follow_up_out(await service.get(consultation_id, who)),
        )

    @api.route(
        "PUT",
        "/consultations/{consultation_id}/follow-up",
        roles=CONSULTANTS,
        body=FollowUpIn,
        response=FollowUpOut,
        tag="consultations",
    )
    async def put_follow_up(call: Call[FollowUpIn]) -> FollowUpOut:
        """Record the patient's needs (closed list), the outcome and a note (R-URG-5)."""
        service, who, consultation_id = _service(call)
        b = call.body
        row = await service.save(
            consultation_id, who, needs=list(b.needs), outcome=b.outcome, note=b.note
        )
        out = follow_up_out(row)
        assert out is not None
        return out
