"""Shared steps of the conclusion tests: people logged in through the real API, finished
consultations made by the real consultation service, and rows the other services own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from appkit import Running
from helpers import add_adult, bearer, patient_token, staff_token
from sqlalchemy import select, update

from telemed.consultation import Actor, Channel, Event
from telemed.models import Appointment, AuditEntry, Document, new_id
from telemed.roles import Role

MINUTE = timedelta(minutes=1)
OTHER_PHONE = "+79169990000"
FINDINGS = "Острый ринофарингит, без признаков бактериальной инфекции."
ADVICE = "Обильное тёплое питьё, промывание носа, контроль температуры."


@dataclass
class Person:
    """Someone logged in: their bearer token and id."""

    token: str
    id: str

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)

    def actor(self, role: Role) -> Actor:
        return Actor(role, self.id)


@dataclass
class Cast:
    """The people of a consultation: a patient, a consultant and a duty therapist."""

    app: Running
    patient: Person
    consultant: Person
    therapist: Person


async def patient(app: Running, phone: str | None = None, policy: str = "P-1") -> Person:
    """An insured adult who has logged in and accepted the consent."""
    if phone is None:
        await add_adult(app)
        token = await patient_token(app)
    else:
        await add_adult(app, phone=phone, policy=policy)
        token = await patient_token(app, phone=phone)
    me = await (await app.client.get("/api/v1/me", headers=bearer(token))).json()
    return Person(token, me["user_id"])


async def staff(app: Running, role: Role, login: str | None = None) -> Person:
    token, staff_id = await staff_token(app, role, login)
    return Person(token, staff_id)


async def cast(app: Running) -> Cast:
    return Cast(
        app,
        await patient(app),
        await staff(app, Role.CONSULTANT),
        await staff(app, Role.THERAPIST),
    )


async def finished_consultation(
    c: Cast,
    *,
    patient: Person | None = None,
    doctor: Person | None = None,
    close: bool = True,
    talk: timedelta = 10 * MINUTE,
) -> str:
    """An urgent consultation through the real service: consultant, duty therapist for
    `talk`, back to the consultant, then (unless `close=False`) closed as finished."""
    svc = c.app.services.consultations
    clock = c.app.clock
    doctor = doctor or c.therapist
    started = await svc.start((patient or c.patient).id, Channel.VIDEO)
    cid = started.consultation.id
    consultant = c.consultant.actor(Role.CONSULTANT)
    clock.advance(MINUTE)
    await svc.accept(consultant, cid)
    clock.advance(MINUTE)
    await svc.transfer_to_duty_doctor(cid, consultant)
    clock.advance(MINUTE)
    await svc.accept(doctor.actor(Role.THERAPIST), cid)
    clock.advance(talk)
    await svc.end_doctor_leg(cid, doctor.actor(Role.THERAPIST), consultant_online=True)
    if close:
        clock.advance(2 * MINUTE)
        await svc.fire(cid, Event.CLOSE, consultant)
    return cid


async def write(
    app: Running, who: Person, consultation_id: str, **body: Any
) -> tuple[int, dict[str, Any]]:
    """POST a conclusion; returns (status, json)."""
    payload = {"text": FINDINGS, "recommendations": ADVICE, **body}
    resp = await app.client.post(
        f"/api/v1/consultations/{consultation_id}/conclusion", json=payload, headers=who.auth
    )
    return resp.status, await resp.json()


async def get_json(
    app: Running, who: Person, path: str, **params: str
) -> tuple[int, dict[str, Any]]:
    resp = await app.client.get(path, headers=who.auth, params=params)
    return resp.status, await resp.json()


async def add_document(app: Running, patient_id: str, filename: str = "analysis.pdf") -> str:
    """A medical-card document row (the upload service owns the files)."""
    doc_id = new_id()
    async with app.services.db.write() as session:
        session.add(
            Document(
                id=doc_id,
                patient_id=patient_id,
                filename=filename,
                content_type="application/pdf",
                size=1234,
                sha256="0" * 64,
                storage_name=new_id(),
                uploaded_by_role="patient",
                uploaded_by_id=patient_id,
                created_at=app.clock.now(),
            )
        )
    return doc_id


async def add_appointment(
    app: Running, patient_id: str, doctor_id: str, starts_at: datetime, state: str = "booked"
) -> str:
    """A booked appointment row (the booking service owns the real booking)."""
    appointment_id = new_id()
    async with app.services.db.write() as session:
        session.add(
            Appointment(
                id=appointment_id,
                patient_id=patient_id,
                doctor_id=doctor_id,
                starts_at=starts_at,
                ends_at=starts_at + 15 * MINUTE,
                channel="video",
                kind="scheduled",
                state=state,
                created_at=app.clock.now(),
            )
        )
    return appointment_id


async def cancel_appointment(app: Running, appointment_id: str) -> None:
    async with app.services.db.write() as session:
        await session.execute(
            update(Appointment)
            .where(Appointment.id == appointment_id)
            .values(state="cancelled", cancelled_at=app.clock.now())
        )


async def audit_of(app: Running, object_type: str, object_id: str) -> list[AuditEntry]:
    async with app.services.db.read() as session:
        rows = await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.object_type == object_type, AuditEntry.object_id == object_id)
            .order_by(AuditEntry.id)
        )
        return list(rows)
