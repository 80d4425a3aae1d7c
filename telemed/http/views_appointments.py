"""Appointments over REST (R-SCH, R-CANCEL-1): doctors' hours, free slots, booking, cancelling.

Times go out in the patient's time zone (R-CAL-1) for patients, in UTC for staff.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from pydantic import AwareDatetime, ConfigDict, Field, field_validator
from sqlalchemy import select

from telemed.consultation import Channel, Kind, State
from telemed.context import LIVE, REPLAN, Services, client_addr, services
from telemed.errors import Forbidden, ValidationFailed
from telemed.events import UserMessage
from telemed.http.api import TIME_ZONES, Api, AwareQueryTime, Body, Call, Out
from telemed.models import Appointment, Consultation, Patient, Staff
from telemed.roles import DOCTOR_ROLES, STAFF_ROLES, Role
from telemed.services.appointments import ChatNeedsConsultation, Hours, booking_text
from telemed.services.audit import Who

Id = Annotated[str, Field(min_length=1, max_length=64)]
BOOKERS = {Role.PATIENT, Role.CONSULTANT, Role.ADMIN}
CONSULTANTS = {Role.CONSULTANT, Role.ADMIN}


class SlotsQuery(Body):
    role: Literal["therapist", "paediatrician", "specialist", "psychologist"]
    from_: AwareQueryTime | None = Field(default=None, alias="from")
    to: AwareQueryTime | None = None
    doctor_id: Id | None = None
    patient_id: Id | None = Field(
        default=None, description="Staff: show the times in this patient's time zone (R-CAL-1)."
    )


class SlotOut(Out):
    slot_id: str
    doctor_id: str
    doctor_name: str
    role: str
    starts_at: datetime
    ends_at: datetime


class SlotList(Out):
    slots: list[SlotOut]
    time_zone: str | None = None  # the zone the times are shown in (patients, or patient_id)


_PATIENT_BOOKING = ("slot_id", "channel")
_STAFF_BOOKING = ("patient_id", "doctor_id", "starts_at", "channel")
_STAFF_OPTIONAL = ("kind", "requires_documents", "notify_via")


def _booking_shapes(schema: dict[str, Any]) -> None:
    """The two bodies this call takes, as OpenAPI `oneOf`: a patient's `{slot_id, channel}`,
    a consultant's `{patient_id, doctor_id, starts_at, channel, ...}` (each field required
    where the handler requires it; which one a caller may send follows the role)."""
    props = schema.pop("properties")
    schema.pop("required", None)
    schema.pop("additionalProperties", None)

    def shape(required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
        fields = {}
        for name in required + optional:
            prop = dict(props[name])
            branches = prop.pop("anyOf", None)
            if branches is not None:  # required here: never null
                prop.update(next(b for b in branches if b != {"type": "null"}))
                prop.pop("default", None)
            fields[name] = prop
        return {
            "type": "object",
            "properties": fields,
            "required": list(required),
            "additionalProperties": False,
        }

    schema["oneOf"] = [shape(_PATIENT_BOOKING), shape(_STAFF_BOOKING, _STAFF_OPTIONAL)]


class BookRequest(Body):
    """A patient sends `slot_id` + `channel`; a consultant sends the rest."""

    model_config = ConfigDict(json_schema_extra=_booking_shapes)

    slot_id: Id | None = None
    channel: Channel
    patient_id: Id | None = None
    doctor_id: Id | None = None
    starts_at: AwareDatetime | None = None
    kind: Literal["scheduled", "second_opinion"] = "scheduled"
    requires_documents: bool = False
    notify_via: Literal["chat", "call", "phone", "push"] = "chat"
    consultation_id: Id | None = Field(
        default=None, description="notify_via=chat: the consultation with the patient I am in."
    )


class AppointmentOut(Out):
    appointment_id: str
    patient_id: str
    doctor_id: str
    starts_at: datetime
    ends_at: datetime
    channel: str
    kind: str
    state: str
    requires_documents: bool
    notify_via: str
    consultation_id: str | None = None
    doctor_name: str | None = None
    doctor_role: str | None = None
    patient_name: str | None = None  # staff only
    informed_at: datetime | None = None
    informing: Literal["done", "due"] = "due"  # R-SCH-1: has the patient been told


class AppointmentList(Out):
    items: list[AppointmentOut]


class HoursBlock(Body):
    weekday: Annotated[int, Field(ge=0, le=6, description="0 = Monday")]
    starts: time
    ends: time


class WorkingHoursRequest(Body):
    time_zone: Annotated[
        str, Field(min_length=1, max_length=64, json_schema_extra={"enum": TIME_ZONES})
    ] = "Europe/Moscow"
    slot_minutes: Annotated[int, Field(ge=5, le=240)] = 15
    hours: Annotated[list[HoursBlock], Field(max_length=50)]

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not an IANA time zone name") from None
        return value


class SlotsOpened(Out):
    open_slots: int


class DoctorOut(Out):
    doctor_id: str
    name: str
    role: str


class DoctorList(Out):
    doctors: list[DoctorOut]


class DoctorsQuery(Body):
    role: Literal["therapist", "paediatrician", "specialist", "psychologist"] | None = None


async def _zone_of(svc: Services, patient_id: str) -> ZoneInfo:
    async with svc.db.read() as session:
        patient = await session.get(Patient, patient_id)
    return ZoneInfo(patient.timezone if patient else "Europe/Moscow")


def appointment_out(
    a: Appointment,
    zone: ZoneInfo | None,
    *,
    doctor: Staff | None = None,
    patient_name: str | None = None,
    sent: bool = False,
) -> AppointmentOut:
    def shown(t: datetime) -> datetime:
        return t.astimezone(zone) if zone else t

    return AppointmentOut(
        doctor_name=doctor.full_name if doctor else None,
        doctor_role=doctor.role if doctor else None,
        patient_name=patient_name,
        informed_at=shown(a.informed_at) if a.informed_at else None,
        informing="done" if a.informed_at is not None or sent else "due",
        appointment_id=a.id,
        patient_id=a.patient_id,
        doctor_id=a.doctor_id,
        starts_at=shown(a.starts_at),
        ends_at=shown(a.ends_at),
        channel=a.channel,
        kind=a.kind,
        state=a.state,
        requires_documents=a.requires_documents,
        notify_via=a.notify_via,
        consultation_id=a.consultation_id,
    )


async def _check_chat(
    svc: Services, consultation_id: str, patient_id: str, consultant_id: str
) -> None:
    """Informing by chat needs the patient in a consultation with this consultant now
    (without a consultation_id the booking stands and the informing stays due)."""
    async with svc.db.read() as session:
        row = await session.get(Consultation, consultation_id)
    if (
        row is None
        or row.patient_id != patient_id
        or row.consultant_id != consultant_id
        or row.state != State.WITH_CONSULTANT.value
    ):
        raise ChatNeedsConsultation()


def _poke(request: web.Request) -> None:
    """A booking wrote a new deadline: let the scheduler re-plan its next wake-up."""
    replan = request.app.get(REPLAN)
    if replan is not None:
        replan()


def register(api: Api) -> None:
    @api.route(
        "GET",
        "/slots",
        roles=BOOKERS | DOCTOR_ROLES,
        query=SlotsQuery,
        response=SlotList,
        tag="appointments",
    )
    async def list_slots(call: Call[SlotsQuery]) -> SlotList:
        """Free slots of a role's doctors (patients see them in their time zone)."""
        svc = services(call.request)
        now = svc.clock.now()
        q = call.body
        found = await svc.appointments.free_slots(
            Role(q.role), q.from_ or now, q.to or now + timedelta(days=14), q.doctor_id
        )
        if call.me.role is Role.PATIENT:
            zone: ZoneInfo | None = await _zone_of(svc, call.me.id)
        elif q.patient_id is not None:
            zone = await _zone_of(svc, q.patient_id)
        else:
            zone = None
        return SlotList(
            time_zone=zone.key if zone else None,
            slots=[
                SlotOut(
                    slot_id=slot.id,
                    doctor_id=staff.id,
                    doctor_name=staff.full_name,
                    role=staff.role,
                    starts_at=slot.starts_at.astimezone(zone) if zone else slot.starts_at,
                    ends_at=slot.ends_at.astimezone(zone) if zone else slot.ends_at,
                )
                for slot, staff in found
            ],
        )

    @api.route(
        "POST",
        "/appointments",
        roles=BOOKERS,
        body=BookRequest,
        response=AppointmentOut,
        status=201,
        tag="appointments",
    )
    async def book(call: Call[BookRequest]) -> AppointmentOut:
        """Book: a patient from a free slot of a psychologist or specialist; a consultant any
        doctor at a free time, with kind, documents and how to tell the patient (R-SCH-1)."""
        svc = services(call.request)
        b = call.body
        who = Who(call.me.role, call.me.id, client_addr(call.request))
        if call.me.role is Role.PATIENT:
            if b.slot_id is None:
                raise ValidationFailed("Choose a free slot: slot_id.", field="slot_id")
            if b.patient_id or b.doctor_id or b.starts_at:
                raise ValidationFailed("Patients book by slot_id and channel only.")
            appointment = await svc.appointments.book_for_patient(
                patient_id=call.me.id, slot_id=b.slot_id, channel=b.channel, who=who
            )
        else:
            missing = [n for n in ("patient_id", "doctor_id", "starts_at") if not getattr(b, n)]
            if missing:
                raise ValidationFailed(f"Missing: {', '.join(missing)}.", fields=missing)
            assert b.patient_id and b.doctor_id and b.starts_at
            if b.notify_via == "chat" and b.consultation_id is not None:
                await _check_chat(svc, b.consultation_id, b.patient_id, call.me.id)
            appointment = await svc.appointments.book_by_consultant(
                patient_id=b.patient_id,
                doctor_id=b.doctor_id,
                starts_at=b.starts_at,
                channel=b.channel,
                kind=Kind(b.kind),
                requires_documents=b.requires_documents,
                notify_via=b.notify_via,
                who=who,
            )
        _poke(call.request)
        zone = await _zone_of(svc, appointment.patient_id)
        async with svc.db.read() as session:
            doctor = await session.get(Staff, appointment.doctor_id)
        if call.me.role is not Role.PATIENT and b.notify_via == "chat" and b.consultation_id:
            # R-SCH-1: the date, time and zone go to the patient in the consultation's chat.
            text = booking_text(
                appointment.starts_at,
                zone.key,
                doctor.full_name if doctor else "",
                doctor.role if doctor else "",
            )
            message = await svc.chat.post(b.consultation_id, call.me.role.value, call.me.id, text)
            await call.request.app[LIVE].publish(
                [
                    UserMessage(user, "chat:message", message.to_event())
                    for user in (appointment.patient_id, call.me.id)
                ]
            )
            appointment = await svc.appointments.mark_informed(appointment.id, who)
        return appointment_out(
            appointment, zone if call.me.role is Role.PATIENT else None, doctor=doctor
        )

    @api.route(
        "POST",
        "/appointments/{appointment_id}/informed",
        roles=CONSULTANTS,
        response=AppointmentOut,
        tag="appointments",
    )
    async def informed(call: Call[Body]) -> AppointmentOut:
        """The consultant confirms they told the patient the date and time by the agreed call
        (R-SCH-1); the day's list then shows the informing as done."""
        svc = services(call.request)
        who = Who(call.me.role, call.me.id, client_addr(call.request))
        appointment = await svc.appointments.mark_informed(
            call.request.match_info["appointment_id"], who
        )
        async with svc.db.read() as session:
            doctor = await session.get(Staff, appointment.doctor_id)
        return appointment_out(appointment, None, doctor=doctor)

    @api.route(
        "GET",
        "/appointments",
        roles=BOOKERS | DOCTOR_ROLES,
        response=AppointmentList,
        tag="appointments",
    )
    async def list_appointments(call: Call[Body]) -> AppointmentList:
        """A patient's own appointments; a doctor's own; all upcoming for consultants."""
        svc = services(call.request)
        me = call.me
        if me.role is Role.PATIENT:
            zone = await _zone_of(svc, me.id)
            return AppointmentList(
                items=[appointment_out(a, zone) for a in await svc.appointments.for_patient(me.id)]
            )
        query = select(Appointment).order_by(Appointment.starts_at).limit(500)
        if me.role in DOCTOR_ROLES:
            query = query.where(Appointment.doctor_id == me.id)
        else:
            query = query.where(Appointment.starts_at >= svc.clock.now() - timedelta(hours=1))
        async with svc.db.read() as session:
            rows = (await session.scalars(query)).all()
            people = {a.doctor_id for a in rows}
            staff = {
                s.id: s for s in await session.scalars(select(Staff).where(Staff.id.in_(people)))
            }
            found = await session.execute(
                select(Patient.id, Patient.full_name).where(
                    Patient.id.in_({a.patient_id for a in rows})
                )
            )
            names: dict[str, str] = {pid: name for pid, name in found.all()}
        sent = await svc.appointments.informed_by_outbox(
            [a.id for a in rows if a.notify_via == "push" and a.informed_at is None]
        )
        return AppointmentList(
            items=[
                appointment_out(
                    a,
                    None,
                    doctor=staff.get(a.doctor_id),
                    patient_name=names.get(a.patient_id),
                    sent=a.id in sent,
                )
                for a in rows
            ]
        )

    @api.route(
        "POST",
        "/appointments/{appointment_id}/cancel",
        roles=BOOKERS,
        response=AppointmentOut,
        tag="appointments",
    )
    async def cancel(call: Call[Body]) -> AppointmentOut:
        """Cancel before the start; the consultant is told (R-CANCEL-1). After: already_started."""
        svc = services(call.request)
        appointment = await svc.appointments.cancel(
            call.request.match_info["appointment_id"],
            Who(call.me.role, call.me.id, client_addr(call.request)),
            call.me.role,
        )
        zone = await _zone_of(svc, appointment.patient_id) if call.me.role is Role.PATIENT else None
        return appointment_out(appointment, zone)

    @api.route(
        "PUT",
        "/doctors/{doctor_id}/working-hours",
        roles={Role.ADMIN},
        body=WorkingHoursRequest,
        response=SlotsOpened,
        tag="appointments",
    )
    async def set_hours(call: Call[WorkingHoursRequest]) -> SlotsOpened:
        """Set a doctor's weekly hours; free slots are cut for the coming days."""
        svc = services(call.request)
        b = call.body
        for block in b.hours:
            if block.ends <= block.starts:
                raise ValidationFailed("Each block must end after it starts.", field="hours")
        opened = await svc.appointments.set_working_hours(
            call.request.match_info["doctor_id"],
            [Hours(h.weekday, h.starts, h.ends) for h in b.hours],
            zone=b.time_zone,
            slot_minutes=b.slot_minutes,
            days_ahead=svc.settings.scheduler.slot_horizon_days,
            who=Who(call.me.role, call.me.id, client_addr(call.request)),
        )
        return SlotsOpened(open_slots=opened)

    @api.route(
        "GET",
        "/doctors",
        roles=STAFF_ROLES | {Role.PATIENT},
        query=DoctorsQuery,
        response=DoctorList,
        tag="appointments",
    )
    async def list_doctors(call: Call[DoctorsQuery]) -> DoctorList:
        """Doctors by role; patients see only those they may book themselves."""
        svc = services(call.request)
        roles = [call.body.role] if call.body.role else [r.value for r in DOCTOR_ROLES]
        if call.me.role is Role.PATIENT:
            allowed = {"psychologist", "specialist"}
            if call.body.role and call.body.role not in allowed:
                raise Forbidden("Patients book psychologists and specialists themselves.")
            roles = [r for r in roles if r in allowed]
        async with svc.db.read() as session:
            rows = (
                await session.scalars(
                    select(Staff)
                    .where(Staff.role.in_(roles), Staff.active.is_(True))
                    .order_by(Staff.full_name)
                )
            ).all()
        return DoctorList(
            doctors=[DoctorOut(doctor_id=s.id, name=s.full_name, role=s.role) for s in rows]
        )
