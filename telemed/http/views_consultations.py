"""Patient-facing consultation endpoints over REST (the live flow runs on Socket.IO)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from telemed.consultation import Actor, Channel, Kind, State
from telemed.context import LIVE, services
from telemed.http.api import Api, Body, Call, Out
from telemed.models import Consultation
from telemed.roles import Role


class StartRequest(Body):
    channel: Channel


class ConsultationOut(Out):
    consultation_id: str
    state: State
    kind: Kind
    channel: Channel
    created_at: datetime
    closed_at: datetime | None = None
    close_reason: str | None = None


class ConsultationList(Out):
    items: list[ConsultationOut]


def consultation_out(row: Consultation) -> ConsultationOut:
    return ConsultationOut(
        consultation_id=row.id,
        state=State(row.state),
        kind=Kind(row.kind),
        channel=Channel(row.channel),
        created_at=row.created_at,
        closed_at=row.closed_at,
        close_reason=row.close_reason,
    )


def register(api: Api) -> None:
    @api.route(
        "POST",
        "/consultations",
        roles={Role.PATIENT},
        body=StartRequest,
        response=ConsultationOut,
        status=201,
        tag="consultations",
    )
    async def start_consultation(call: Call[StartRequest]) -> ConsultationOut:
        """Ask for an urgent consultation: wait in the consultant queue (R-URG-1, R-URG-2)."""
        change = await services(call.request).consultations.start(call.me.id, call.body.channel)
        return consultation_out(change.consultation)

    @api.route(
        "GET",
        "/consultations",
        roles={Role.PATIENT},
        response=ConsultationList,
        tag="consultations",
    )
    async def list_consultations(call: Call[Body]) -> ConsultationList:
        """My consultations, newest first ("My records")."""
        async with services(call.request).db.read() as session:
            rows = (
                await session.scalars(
                    select(Consultation)
                    .where(Consultation.patient_id == call.me.id)
                    .order_by(Consultation.created_at.desc())
                    .limit(200)
                )
            ).all()
        return ConsultationList(items=[consultation_out(r) for r in rows])

    @api.route(
        "POST",
        "/consultations/{consultation_id}/hang-up",
        roles={Role.PATIENT},
        response=ConsultationOut,
        tag="consultations",
    )
    async def hang_up(call: Call[Body]) -> ConsultationOut:
        """The patient's hang-up button: during the doctor's leg it returns them to the
        consultant (R-URG-2, R-URG-5), otherwise it leaves the consultation (`left`)."""
        svc = services(call.request)
        live = call.request.app[LIVE]
        consultation_id = call.request.match_info["consultation_id"]
        current = await svc.consultations.get(consultation_id)
        change = await svc.consultations.hang_up(
            consultation_id,
            Actor(Role.PATIENT, call.me.id),
            consultant_online=live.is_online(current.consultant_id),
        )
        return consultation_out(change.consultation)
