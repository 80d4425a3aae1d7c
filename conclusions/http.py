"""REST endpoints of conclusions, the calendar, second opinions and the audit log; plus the
routes outside /api/v1: the secret iCalendar feed and the FHIR export.

Handlers are thin: parse, call a service of this package, shape the answer.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from aiohttp import web
from pydantic import AwareDatetime, Field

from conclusions import audit, calendar, ical
from conclusions.fhir import (
    FHIR_JSON,
    MAX_PAGE_SIZE,
    PAGE_SIZE,
    SEARCHABLE,
    FhirExport,
    Reader,
    Resource,
    bundle_resource,
    capability_statement,
    outcome_resource,
)
from conclusions.second_opinion import CaseView, SecondOpinionService
from conclusions.service import (
    ConclusionService,
    ConclusionText,
    Due,
    SubjectKind,
    SubjectRef,
    WriteRequest,
)
from telemed.consultation import Channel
from telemed.context import LIVE, REPLAN, client_addr, services
from telemed.errors import (
    ConsentRequired,
    Forbidden,
    NotFound,
    TelemedError,
    ValidationFailed,
)
from telemed.events import UserMessage
from telemed.http.api import Api, Body, Call, Out, QueryTime, bearer_token, error_headers
from telemed.models import AuditEntry, Conclusion
from telemed.roles import DOCTOR_ROLES, STAFF_ROLES, Role
from telemed.services.audit import Who, record
from telemed.services.auth import Caller
from telemed.services.care import BREAK_GLASS, CareAccess, access_detail
from telemed.text import has_control

PATIENT = {Role.PATIENT}
CONSULTANT = {Role.CONSULTANT}
CASE_READERS = {Role.PATIENT, Role.CONSULTANT, Role.SPECIALIST}
RECORD_READERS = STAFF_ROLES | PATIENT
FHIR_READERS = STAFF_ROLES | {Role.PATIENT}  # admin too: the access policy answers 404
LongText = Annotated[str, Field(max_length=20_000)]
Id = Annotated[str, Field(min_length=1, max_length=64)]


# --- payloads ---------------------------------------------------------------------------


class ConclusionBody(Body):
    text: Annotated[str, Field(min_length=1, max_length=20_000)]
    recommendations: LongText
    follow_up: LongText = ""
    sign: bool = False
    reason: Annotated[str, Field(min_length=1, max_length=2_000)] | None = None

    def request(self) -> WriteRequest:
        text = ConclusionText(self.text, self.recommendations, self.follow_up)
        return WriteRequest(text, self.sign, self.reason)


class ConclusionOut(Out):
    conclusion_id: str
    consultation_id: str | None
    second_opinion_id: str | None
    version: int
    status: str
    text: str
    recommendations: str
    follow_up: str
    reason: str | None
    supersedes_id: str | None
    latest_signed_id: str | None
    doctor_id: str
    doctor_name: str | None = None
    due_at: datetime | None
    signed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class DueOut(Out):
    consultation_id: str
    patient_id: str
    patient_name: str
    leg_ended_at: datetime
    due_at: datetime
    draft_conclusion_id: str | None


class PendingOut(Out):
    pending: list[DueOut]
    overdue: list[DueOut]


class CalendarQuery(Body):
    start: QueryTime | None = Field(default=None, alias="from")
    end: QueryTime | None = Field(default=None, alias="to")
    patient_id: Id | None = None  # staff: whose calendar (the access policy decides)


class RecordsQuery(Body):
    patient_id: Id | None = None  # staff: whose records (the access policy decides)


class BreakGlassBody(Body):
    reason: Annotated[str, Field(min_length=10, max_length=500)]


class BreakGlassOut(Out):
    patient_id: str
    expires_at: datetime


class SummaryOut(Out):
    conclusion_id: str
    version: int
    text: str
    recommendations: str
    follow_up: str
    signed_at: datetime
    doctor_name: str


class EventOut(Out):
    type: str
    starts_at: datetime
    ends_at: datetime
    title: str
    status: str
    consultation_id: str | None = None
    appointment_id: str | None = None
    second_opinion_id: str | None = None
    conclusion: SummaryOut | None = None


class CalendarOut(Out):
    timezone: str
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    events: list[EventOut]


class RecordFollowUpOut(Out):
    """The consultant's record after the doctor (R-URG-5)."""

    needs: list[str]
    outcome: str
    note: str
    recorded_at: datetime


class RecordOut(Out):
    consultation_id: str
    kind: str
    channel: str
    state: str
    created_at: datetime
    closed_at: datetime | None
    close_reason: str | None
    conclusion_id: str | None
    conclusion_signed_at: datetime | None
    follow_up: RecordFollowUpOut | None = None
    second_opinion_id: str | None = None


class RecordsOut(Out):
    timezone: str
    items: list[RecordOut]


class FeedOut(Out):
    url: str
    webcal_url: str
    created_at: datetime


class CaseRequest(Body):
    consultation_id: Id
    question: Annotated[str, Field(max_length=4_000)] = ""
    document_ids: Annotated[list[Id], Field(min_length=1, max_length=50)]


class AssignBody(Body):
    specialist_id: Id


class BookBody(Body):
    starts_at: AwareDatetime
    channel: Channel


class CaseQuery(Body):
    overdue: bool = False


class CaseDocumentOut(Out):
    document_id: str
    filename: str
    content_type: str
    size: int


class CaseOut(Out):
    second_opinion_id: str
    patient_id: str
    patient_name: str
    consultation_id: str
    question: str
    state: str
    requested_at: datetime
    specialist_id: str | None
    specialist_name: str | None
    assigned_at: datetime | None
    due_on: date | None
    overdue: bool
    working_days_left: int | None
    delivered_at: datetime | None
    conclusion_id: str | None
    appointment_id: str | None
    documents: list[CaseDocumentOut] | None = None


class CaseList(Out):
    items: list[CaseOut]


class AppointmentOut(Out):
    appointment_id: str
    doctor_id: str
    starts_at: datetime
    ends_at: datetime
    channel: str
    kind: str
    state: str


class AuditQuery(Body):
    object_type: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    object_id: Id | None = None
    limit: Annotated[int, Field(ge=1, le=audit.MAX_LIMIT)] = 100


class AuditOut(Out):
    id: int
    at: datetime
    actor_role: str
    actor_id: str | None
    action: str
    object_type: str
    object_id: str | None
    outcome: str
    client_addr: str | None
    detail: dict[str, Any] | None
    break_glass: bool = False  # a break-the-glass, or a read made under one: for review


class AuditList(Out):
    items: list[AuditOut]


# --- shaping ----------------------------------------------------------------------------


def conclusion_out(
    row: Conclusion, *, doctor_name: str | None = None, latest_signed_id: str | None = None
) -> ConclusionOut:
    """A stored version; for the newest one, the newest signed is itself or the one it
    supersedes (a draft only ever follows a signed version)."""
    if latest_signed_id is None:
        latest_signed_id = row.id if row.status == "signed" else row.supersedes_id
    return ConclusionOut(
        conclusion_id=row.id,
        consultation_id=row.consultation_id,
        second_opinion_id=row.second_opinion_id,
        version=row.version,
        status=row.status,
        text=row.findings,
        recommendations=row.recommendations,
        follow_up=row.follow_up,
        reason=row.reason,
        supersedes_id=row.supersedes_id,
        latest_signed_id=latest_signed_id,
        doctor_id=row.doctor_id,
        doctor_name=doctor_name,
        due_at=row.due_at,
        signed_at=row.signed_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def due_out(item: Due) -> DueOut:
    return DueOut(
        consultation_id=item.consultation_id,
        patient_id=item.patient_id,
        patient_name=item.patient_name,
        leg_ended_at=item.leg_ended_at,
        due_at=item.due_at,
        draft_conclusion_id=item.draft_id,
    )


def event_out(event: calendar.Event) -> EventOut:
    summary = event.conclusion
    return EventOut(
        type=event.type,
        starts_at=event.starts_at,
        ends_at=event.ends_at,
        title=event.title,
        status=event.status,
        consultation_id=event.consultation_id,
        appointment_id=event.appointment_id,
        second_opinion_id=event.second_opinion_id,
        conclusion=None
        if summary is None
        else SummaryOut(
            conclusion_id=summary.id,
            version=summary.version,
            text=summary.findings,
            recommendations=summary.recommendations,
            follow_up=summary.follow_up,
            signed_at=summary.signed_at,
            doctor_name=summary.doctor_name,
        ),
    )


def case_out(view: CaseView) -> CaseOut:
    data = asdict(view)
    data["second_opinion_id"] = data.pop("id")
    return CaseOut.model_validate(data)


def who(call: Call[Any]) -> Who:
    """The audit identity of the caller."""
    return Who(call.me.role, call.me.id, client_addr(call.request))


def base_url(request: web.Request) -> str:
    """Where this service was reached, for absolute links."""
    return str(request.url.origin())


def audit_out(row: AuditEntry) -> AuditOut:
    out = AuditOut.model_validate(row, from_attributes=True)
    return out.model_copy(update={"break_glass": bool((row.detail or {}).get(BREAK_GLASS))})


def _access(request: web.Request) -> CareAccess:
    svc = services(request)
    return CareAccess(svc.db, svc.clock, svc.settings.rules)


async def _record_of(call: Call[Any], patient_id: str | None, action: str) -> str:
    """Whose record this call reads, through the access policy (audited; else 404)."""
    wanted, _ = await _access(call.request).read_record(who(call), call.me.role, patient_id, action)
    return wanted


def _conclusions(request: web.Request) -> ConclusionService:
    svc = services(request)
    return ConclusionService(svc.db, svc.clock, svc.settings.rules)


def _cases(request: web.Request) -> SecondOpinionService:
    svc = services(request)
    return SecondOpinionService(svc.db, svc.clock, svc.settings.rules)


def _ics(body: bytes) -> web.Response:
    response = web.Response(body=body, content_type="text/calendar", charset="utf-8")
    response.headers["Content-Disposition"] = 'inline; filename="calendar.ics"'
    response.headers["Cache-Control"] = "no-store"
    return response


# --- /api/v1 ----------------------------------------------------------------------------


def register(api: Api) -> None:
    """Declare the /api/v1 endpoints of this package."""

    @api.route(
        "POST",
        "/consultations/{consultation_id}/conclusion",
        roles=DOCTOR_ROLES,
        body=ConclusionBody,
        response=ConclusionOut,
        tag="conclusions",
    )
    async def write_conclusion(call: Call[ConclusionBody]) -> ConclusionOut:
        """The doctor of the consultation saves a draft, signs, or corrects with a reason
        (R-CONCL-1)."""
        ref = SubjectRef(SubjectKind.CONSULTATION, call.request.match_info["consultation_id"])
        row = await _conclusions(call.request).write(ref, who(call), call.body.request())
        return conclusion_out(row)

    @api.route(
        "GET",
        "/conclusions/pending",
        roles=DOCTOR_ROLES,
        response=PendingOut,
        tag="conclusions",
    )
    async def pending_conclusions(call: Call[Body]) -> PendingOut:
        """My conclusions still to sign: pending, and overdue past `conclusion_due_after`."""
        pending, overdue = await _conclusions(call.request).pending(call.me.id)
        return PendingOut(
            pending=[due_out(d) for d in pending], overdue=[due_out(d) for d in overdue]
        )

    @api.route(
        "GET",
        "/conclusions/{conclusion_id}",
        roles=STAFF_ROLES | PATIENT,
        response=ConclusionOut,
        tag="conclusions",
    )
    async def get_conclusion(call: Call[Body]) -> ConclusionOut:
        """One conclusion version; a patient sees only their own signed ones (audited)."""
        read = await _conclusions(call.request).read(
            call.request.match_info["conclusion_id"], call.me.role, who(call)
        )
        return conclusion_out(
            read.row, doctor_name=read.doctor_name, latest_signed_id=read.latest_signed_id
        )

    @api.route(
        "GET",
        "/calendar",
        roles=RECORD_READERS,
        query=CalendarQuery,
        response=CalendarOut,
        tag="calendar",
    )
    async def get_calendar(call: Call[CalendarQuery]) -> CalendarOut:
        """My appointments and past consultations with their conclusions, in my time zone
        (R-CAL-1); `from`/`to` without an offset are my local times. Staff name the patient
        (`patient_id`) and read it only in a care relationship (else 404)."""
        svc = services(call.request)
        patient_id = await _record_of(call, call.body.patient_id, "calendar_read")
        cal = await calendar.load_calendar(
            svc.db, patient_id, call.body.start, call.body.end, svc.clock.now()
        )
        return CalendarOut(
            timezone=cal.timezone,
            start=cal.starts_at,
            end=cal.ends_at,
            events=[event_out(e) for e in cal.events],
        )

    @api.route(
        "GET",
        "/calendar.ics",
        roles=PATIENT,
        query=CalendarQuery,
        tag="calendar",
        produces="text/calendar",
    )
    async def get_calendar_ics(call: Call[CalendarQuery]) -> web.Response:
        """The same events as iCalendar (RFC 5545): titles and links, no medical text."""
        svc = services(call.request)
        now = svc.clock.now()
        await _record_of(call, None, "calendar_read")
        cal = await calendar.load_calendar(svc.db, call.me.id, call.body.start, call.body.end, now)
        return _ics(ical.render(cal, base_url=base_url(call.request)))

    @api.route(
        "POST",
        "/calendar/feed",
        roles=PATIENT,
        response=FeedOut,
        status=201,
        tag="calendar",
    )
    async def rotate_feed(call: Call[Body]) -> FeedOut:
        """Create or replace my secret calendar URL for a phone to subscribe to; the old one
        stops working."""
        svc = services(call.request)
        secret = await ical.rotate_feed(svc.db, svc.clock, who(call))
        url = f"{base_url(call.request)}/ical/{secret}.ics"
        return FeedOut(
            url=url,
            webcal_url="webcal://" + url.split("://", 1)[1],
            created_at=svc.clock.now(),
        )

    @api.route("DELETE", "/calendar/feed", roles=PATIENT, tag="calendar")
    async def revoke_feed(call: Call[Body]) -> None:
        """Revoke my secret calendar URL."""
        svc = services(call.request)
        await ical.revoke_feed(svc.db, svc.clock, who(call))

    @api.route(
        "GET",
        "/records",
        roles=RECORD_READERS,
        query=RecordsQuery,
        response=RecordsOut,
        tag="calendar",
    )
    async def get_records(call: Call[RecordsQuery]) -> RecordsOut:
        """My records: every consultation with its state and signed conclusion, newest first.
        Staff name the patient (`patient_id`) and read it only in a care relationship."""
        patient_id = await _record_of(call, call.body.patient_id, "records_read")
        zone, records = await calendar.load_records(services(call.request).db, patient_id)
        return RecordsOut(
            timezone=zone,
            items=[RecordOut.model_validate(r, from_attributes=True) for r in records],
        )

    @api.route(
        "POST",
        "/second-opinions",
        roles=PATIENT,
        body=CaseRequest,
        response=CaseOut,
        status=201,
        tag="second-opinions",
    )
    async def request_second_opinion(call: Call[CaseRequest]) -> CaseOut:
        """Ask for a second opinion in one of my consultations, with documents of my medical
        card (R-SECOND)."""
        b = call.body
        view = await _cases(call.request).request(
            who(call), b.consultation_id, b.question, b.document_ids
        )
        return case_out(view)

    @api.route(
        "GET",
        "/second-opinions",
        roles=CASE_READERS,
        query=CaseQuery,
        response=CaseList,
        tag="second-opinions",
    )
    async def list_second_opinions(call: Call[CaseQuery]) -> CaseList:
        """Mine (patient), assigned to me (specialist), or all open ones with the overdue first
        (consultant); `overdue=true` for the overdue only."""
        views = await _cases(call.request).list_for(
            call.me.role, who(call), overdue_only=call.body.overdue
        )
        return CaseList(items=[case_out(v) for v in views])

    @api.route(
        "GET",
        "/second-opinions/{case_id}",
        roles=CASE_READERS,
        response=CaseOut,
        tag="second-opinions",
    )
    async def get_second_opinion(call: Call[Body]) -> CaseOut:
        """One second opinion with its documents (each read audited)."""
        view = await _cases(call.request).get(
            call.request.match_info["case_id"], call.me.role, who(call)
        )
        return case_out(view)

    @api.route(
        "POST",
        "/second-opinions/{case_id}/assign",
        roles=CONSULTANT,
        body=AssignBody,
        response=CaseOut,
        tag="second-opinions",
    )
    async def assign_second_opinion(call: Call[AssignBody]) -> CaseOut:
        """Send the package to a specialist; the working-day deadline starts (R-SECOND)."""
        view = await _cases(call.request).assign(
            call.request.match_info["case_id"], call.body.specialist_id, who(call)
        )
        return case_out(view)

    @api.route(
        "POST",
        "/second-opinions/{case_id}/conclusion",
        roles={Role.SPECIALIST},
        body=ConclusionBody,
        response=ConclusionOut,
        tag="second-opinions",
    )
    async def write_second_opinion(call: Call[ConclusionBody]) -> ConclusionOut:
        """The assigned specialist drafts, signs or corrects the conclusion."""
        row = await _cases(call.request).write_conclusion(
            call.request.match_info["case_id"], who(call), call.body.request()
        )
        return conclusion_out(row)

    @api.route(
        "POST",
        "/second-opinions/{case_id}/deliver",
        roles=CONSULTANT,
        response=CaseOut,
        tag="second-opinions",
    )
    async def deliver_second_opinion(call: Call[Body]) -> CaseOut:
        """Put the signed conclusion into the patient's chat and notify them; whoever is in
        that chat now gets the message (with its /#/conclusions/ID link) at once."""
        cases = _cases(call.request)
        view = await cases.deliver(call.request.match_info["case_id"], who(call))
        message = await cases.delivered_message(view.id)
        if message is not None:
            told = [
                UserMessage(user, "chat:message", message.to_event())
                for user in {view.patient_id, call.me.id}
            ]
            await call.request.app[LIVE].publish(told)
        return case_out(view)

    @api.route(
        "POST",
        "/second-opinions/{case_id}/appointment",
        roles=CONSULTANT | PATIENT,
        body=BookBody,
        response=AppointmentOut,
        status=201,
        tag="second-opinions",
    )
    async def book_second_opinion(call: Call[BookBody]) -> AppointmentOut:
        """Book a consultation with the specialist of the opinion at one of their free slots:
        the consultant on the patient's request, or the patient from the conclusion."""
        svc = services(call.request)
        row = await _cases(call.request).book(
            call.request.match_info["case_id"],
            who(call),
            call.body.starts_at,
            call.body.channel,
            svc.appointments,
        )
        replan = call.request.app.get(REPLAN)
        if replan is not None:
            replan()  # a reminder deadline was written: the scheduler re-plans its wake-up
        return AppointmentOut(
            appointment_id=row.id,
            doctor_id=row.doctor_id,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            channel=row.channel,
            kind=row.kind,
            state=row.state,
        )

    @api.route(
        "POST",
        "/patients/{patient_id}/break-glass",
        roles=CONSULTANT,
        body=BreakGlassBody,
        response=BreakGlassOut,
        status=201,
        tag="audit",
    )
    async def break_glass(call: Call[BreakGlassBody]) -> BreakGlassOut:
        """Read a patient's record outside a care relationship, stating why: audited and
        flagged for review; lasts `rules.break_glass_ttl` (telemed/access.py)."""
        patient_id = call.request.match_info["patient_id"]
        expires_at = await _access(call.request).break_glass(
            who(call), call.me.role, patient_id, call.body.reason
        )
        return BreakGlassOut(patient_id=patient_id, expires_at=expires_at)

    @api.route(
        "GET", "/audit", roles={Role.ADMIN}, query=AuditQuery, response=AuditList, tag="audit"
    )
    async def list_audit(call: Call[AuditQuery]) -> AuditList:
        """The audit log, newest first: who read or wrote what, when, with what outcome."""
        q = call.body
        rows = await audit.list_entries(
            services(call.request).db,
            object_type=q.object_type,
            object_id=q.object_id,
            limit=q.limit,
        )
        return AuditList(items=[audit_out(r) for r in rows])


# --- outside /api/v1: the secret feed and FHIR -------------------------------------------


async def ical_feed(request: web.Request) -> web.Response:
    """The calendar behind a secret URL, for phones that subscribe without a header."""
    svc = services(request)
    patient_id = await ical.feed_owner(svc.db, request.match_info["secret"])
    if patient_id is None:
        raise NotFound("No such calendar.")
    if await svc.consent.accepted_at(patient_id) is None:
        raise ConsentRequired()
    now = svc.clock.now()
    cal = await calendar.load_calendar(svc.db, patient_id, None, None, now)
    return _ics(ical.render(cal, base_url=base_url(request)))


async def fhir_reader(request: web.Request) -> Reader:
    """The bearer caller of a FHIR route, held to the same role and consent rules as /api/v1."""
    svc = services(request)
    caller: Caller = await svc.auth.authenticate(bearer_token(request))
    if caller.role not in FHIR_READERS:
        raise Forbidden("FHIR records are not available to this role.")
    if caller.role is Role.PATIENT and await svc.consent.accepted_at(caller.id) is None:
        raise ConsentRequired()
    grants = await _access(request).grants(caller.role, caller.id)
    return Reader(caller.role, Who(caller.role, caller.id, client_addr(request)), grants)


async def audit_fhir_read(request: web.Request, reader: Reader, outcome: str) -> None:
    """Every FHIR read leaves an audit entry with its outcome and, when the policy let the
    reader in, why (a break-the-glass read is flagged)."""
    svc = services(request)
    kind = request.path.split("/")[2][:32] if request.path.count("/") >= 2 else "fhir"
    allowed = [d for d in reader.decisions if d.allowed]
    detail = access_detail(allowed[0]) if allowed else None
    if any(d.break_glass for d in allowed) and detail is not None:
        detail[BREAK_GLASS] = True
    async with svc.db.write() as session:
        record(
            session,
            at=svc.clock.now(),
            who=reader.who,
            action="fhir_read",
            object_type=kind.lower(),
            object_id=request.match_info.get("id", "")[:64] or None,
            outcome=outcome,
            detail=detail,
        )


class NotAcceptable(TelemedError):
    code = "not_acceptable"
    status = 406
    default_message = "This server speaks FHIR JSON only (application/fhir+json)."


_JSON_FORMATS = {"json", "application/json", "application/fhir+json"}
_JSON_ACCEPTS = {"*/*", "application/*", "application/json", "application/fhir+json"}


def negotiate(request: web.Request) -> None:
    """406 unless the client takes JSON: `_format` wins over `Accept` (FHIR R4 http.html)."""
    wanted = request.query.get("_format")
    if wanted is not None:
        if wanted.split(";")[0].strip().lower() not in _JSON_FORMATS:
            raise NotAcceptable()
        return
    accept = request.headers.get("Accept", "").strip()
    if accept:
        types = {part.split(";")[0].strip().lower() for part in accept.split(",")}
        if not types & _JSON_ACCEPTS:
            raise NotAcceptable()


def fhir_response(resource: Resource, status: int = 200, **headers: str) -> web.Response:
    return web.Response(
        text=json.dumps(resource, ensure_ascii=False),
        status=status,
        content_type=FHIR_JSON,
        charset="utf-8",
        headers=headers,
    )


def fhir_error(error: TelemedError, request: web.Request) -> web.Response:
    """Every error under /fhir, as an OperationOutcome (with the HTTP error headers)."""
    return fhir_response(outcome_resource(error), error.status, **error_headers(error, request))


FhirRead = Callable[[FhirExport, Reader, web.Request], Awaitable[Resource]]


def fhir_view(read: FhirRead) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A FHIR GET: resources in application/fhir+json (errors go to the error middleware,
    which answers OperationOutcome under /fhir)."""

    async def view(request: web.Request) -> web.Response:
        negotiate(request)
        if has_control(request.match_info.get("id", "")):
            raise ValidationFailed("Invalid fields: id.")
        reader = await fhir_reader(request)
        svc = services(request)
        export = FhirExport(svc.db, svc.clock, svc.settings.rules)
        try:
            resource = await read(export, reader, request)
        except TelemedError as exc:  # refused or missing: audited with its outcome
            await audit_fhir_read(request, reader, exc.code)
            raise
        await audit_fhir_read(request, reader, "ok")
        return fhir_response(resource)

    return view


def _id(request: web.Request) -> str:
    return request.match_info["id"]


async def _metadata(request: web.Request) -> web.Response:
    """The CapabilityStatement: open to anyone (FHIR clients read it before logging in)."""
    negotiate(request)
    return fhir_response(capability_statement(base_url(request)))


async def _appointment(e: FhirExport, r: Reader, request: web.Request) -> Resource:
    return await e.appointment(_id(request), r)


async def _encounter(e: FhirExport, r: Reader, request: web.Request) -> Resource:
    return await e.encounter(_id(request), r)


async def _composition(e: FhirExport, r: Reader, request: web.Request) -> Resource:
    return await e.composition(_id(request), r)


async def _patient(e: FhirExport, r: Reader, request: web.Request) -> Resource:
    return await e.patient(_id(request), r)


async def _practitioner(e: FhirExport, r: Reader, request: web.Request) -> Resource:
    return await e.practitioner(_id(request), r)


async def _practitioner_role(e: FhirExport, r: Reader, request: web.Request) -> Resource:
    return await e.practitioner_role(_id(request), r)


async def _everything(e: FhirExport, r: Reader, request: web.Request) -> Resource:
    return await e.everything(_id(request), r, base_url(request))


_SEARCH_PARAMS = {"patient", "_count", "_offset", "_format"}


def _search(kind: str) -> FhirRead:
    """`GET /fhir/{kind}?patient=` (also `Patient/{id}`): a searchset Bundle of one page,
    with `self`, `first`, `previous` and `next` links."""

    async def read(e: FhirExport, r: Reader, request: web.Request) -> Resource:
        query = request.query
        unknown = sorted(set(query) - _SEARCH_PARAMS)
        if unknown:
            raise ValidationFailed(f"Unsupported search parameters: {', '.join(unknown)}.")
        patient = query.get("patient", "").removeprefix("Patient/")
        if not patient:
            raise ValidationFailed("Search by patient: ?patient={id}.")
        count = _number(query.get("_count"), PAGE_SIZE, "_count", 1, MAX_PAGE_SIZE)
        offset = _number(query.get("_offset"), 0, "_offset", 0, 10**9)
        found, total = await e.search(kind, patient, r, count, offset)
        base = base_url(request)

        def page(at: int) -> str:
            params = {"patient": patient, "_count": str(count), "_offset": str(at)}
            return f"{base}/fhir/{kind}?{urlencode(params)}"

        links = [("self", page(offset)), ("first", page(0))]
        if offset > 0:
            links.append(("previous", page(max(offset - count, 0))))
        if offset + count < total:
            links.append(("next", page(offset + count)))
        return bundle_resource(found, base, total=total, links=links)

    return read


def _number(raw: str | None, default: int, name: str, low: int, high: int) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ValidationFailed(f"{name} must be a whole number from {low} to {high}.")
    return int(raw)


def add_routes(app: web.Application) -> None:
    """Mount the secret iCalendar feed and the FHIR facade (outside /api/v1)."""
    app.router.add_get("/ical/{secret:[A-Za-z0-9_-]{20,128}}.ics", ical_feed)
    app.router.add_get("/fhir/metadata", _metadata)
    reads: dict[str, FhirRead] = {
        "Patient": _patient,
        "Practitioner": _practitioner,
        "PractitionerRole": _practitioner_role,
        "Appointment": _appointment,
        "Encounter": _encounter,
        "Composition": _composition,
    }
    for kind, read in reads.items():
        app.router.add_get(f"/fhir/{kind}/{{id}}", fhir_view(read))
    for kind in SEARCHABLE:
        app.router.add_get(f"/fhir/{kind}", fhir_view(_search(kind)))
    app.router.add_get("/fhir/Patient/{id}/$everything", fhir_view(_everything))
