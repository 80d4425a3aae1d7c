"""Call quality over REST: the pages send each leg's summary; the console reads them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from telemed.context import client_addr, services
from telemed.http.api import Api, Body, Call, Out
from telemed.roles import STAFF_ROLES, Role
from telemed.services.audit import Who
from telemed.services.call_quality import QualitySummary, of_consultation, report


class QualityIn(Body):
    leg_id: Annotated[str, Field(min_length=1, max_length=32)]
    path: Literal["direct", "relay"]
    median_rtt_ms: Annotated[float, Field(ge=0, le=600_000)] | None = None
    loss_percent: Annotated[float, Field(ge=0, le=100)]
    bitrate_kbps: Annotated[float, Field(ge=0, le=1_000_000)]
    # counts, taken as numbers (a page may write 12.0) and rounded
    freezes: Annotated[float, Field(ge=0, le=1_000_000)] = 0
    seconds: Annotated[float, Field(ge=0, le=86_400)] = 0
    final: bool = False  # the page closed the call: the summary is also audited


class QualityOut(Out):
    leg_id: str
    leg_role: str
    reporter_role: str
    path: Literal["direct", "relay"]
    median_rtt_ms: float | None
    loss_percent: float
    bitrate_kbps: float
    freezes: int
    seconds: int
    reported_at: datetime


class QualityList(Out):
    items: list[QualityOut]


def register(api: Api) -> None:
    """POST (the two people of a leg) and GET (the staff of the consultation) a summary."""

    @api.route(
        "POST",
        "/consultations/{consultation_id}/quality",
        roles={Role.PATIENT, *STAFF_ROLES},
        body=QualityIn,
        response=QualityOut,
        tag="consultations",
    )
    async def report_quality(call: Call[QualityIn]) -> QualityOut:
        """My side's summary of a leg's call (path, median round trip, loss, bitrate,
        freezes), replacing my last one for that leg; `final: true` also audits it."""
        svc = services(call.request)
        body = call.body
        who = Who(call.me.role, call.me.id, client_addr(call.request))
        summary = QualitySummary(
            path=body.path,
            median_rtt_ms=body.median_rtt_ms,
            loss_percent=body.loss_percent,
            bitrate_kbps=body.bitrate_kbps,
            freezes=round(body.freezes),
            seconds=round(body.seconds),
        )
        row, leg_role = await report(
            svc.db,
            svc.clock,
            consultation_id=call.request.match_info["consultation_id"],
            leg_id=body.leg_id,
            who=who,
            summary=summary,
            final=body.final,
        )
        return QualityOut(
            leg_id=row.leg_id,
            leg_role=leg_role,
            reporter_role=row.reporter_role,
            path=body.path,
            median_rtt_ms=row.median_rtt_ms,
            loss_percent=row.loss_percent,
            bitrate_kbps=row.bitrate_kbps,
            freezes=row.freezes,
            seconds=row.seconds,
            reported_at=row.reported_at,
        )

    @api.route(
        "GET",
        "/consultations/{consultation_id}/quality",
        roles=STAFF_ROLES,
        response=QualityList,
        tag="consultations",
    )
    async def consultation_quality(call: Call[Body]) -> QualityList:
        """Each leg's call quality as both sides measured it, oldest leg first."""
        svc = services(call.request)
        who = Who(call.me.role, call.me.id, client_addr(call.request))
        rows = await of_consultation(svc.db, call.request.match_info["consultation_id"], who)
        return QualityList(
            items=[
                QualityOut(
                    leg_id=q.leg_id,
                    leg_role=leg.role,
                    reporter_role=q.reporter_role,
                    path="relay" if q.path == "relay" else "direct",
                    median_rtt_ms=q.median_rtt_ms,
                    loss_percent=q.loss_percent,
                    bitrate_kbps=q.bitrate_kbps,
                    freezes=q.freezes,
                    seconds=q.seconds,
                    reported_at=q.reported_at,
                )
                for q, leg in rows
            ]
        )
