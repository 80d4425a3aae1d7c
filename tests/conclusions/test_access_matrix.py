"""Medical data only to the care team (issue 14, telemed/access.py), end to end on SQLite and
PostgreSQL: every staff role x care relationship x resource, over REST and FHIR. Without a
relationship each read answers 404; with one, 200 and an audit entry of the read; a
break-the-glass needs a reason, is audited and flagged in the admin's listing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from appkit import Running
from conclusion_kit import (
    Cast,
    Person,
    add_appointment,
    add_document,
    cast,
    finished_consultation,
    get_json,
    staff,
    write,
)
from sqlalchemy import func, select

from telemed.models import AuditEntry
from telemed.roles import STAFF_ROLES as STAFF
from telemed.roles import Role

CARE_WINDOW = timedelta(hours=2)
STAFF_ROLES = sorted(STAFF)


@dataclass
class Record:
    """A patient's record with one of each kind of medical data."""

    c: Cast
    consultation_id: str
    conclusion_id: str
    document_id: str
    appointment_id: str

    def paths(self) -> list[str]:
        pid = self.c.patient.id
        return [
            f"/api/v1/conclusions/{self.conclusion_id}",
            f"/api/v1/documents?patient_id={pid}",
            f"/api/v1/documents/{self.document_id}",
            f"/api/v1/documents/{self.document_id}/content",
            f"/api/v1/consultations/{self.consultation_id}/documents",
            f"/api/v1/calendar?patient_id={pid}",
            f"/api/v1/records?patient_id={pid}",
            f"/fhir/Encounter/{self.consultation_id}",
            f"/fhir/Composition/{self.conclusion_id}",
            f"/fhir/Appointment/{self.appointment_id}",
            f"/fhir/Patient/{pid}/$everything",
        ]


async def a_record(app: Running) -> Record:
    c = await cast(app)
    cid = await finished_consultation(c)
    _, signed = await write(app, c.therapist, cid, sign=True)
    document_id = await add_document(app, c.patient.id)
    # The card's file: the content route streams it, so it must exist on disk.
    row_path = app.services.documents.root / await _storage_name(app, document_id)
    row_path.parent.mkdir(parents=True, exist_ok=True)
    row_path.write_bytes(b"%PDF-1.4\n")
    at = app.clock.now() - timedelta(days=30)  # a past, cancelled booking: no relationship
    appointment = await add_appointment(app, c.patient.id, c.therapist.id, at, "cancelled")
    return Record(c, cid, signed["conclusion_id"], document_id, appointment)


async def _storage_name(app: Running, document_id: str) -> str:
    from telemed.models import Document

    async with app.services.db.read() as session:
        doc = await session.get(Document, document_id)
        assert doc is not None
        return doc.storage_name


async def status_of(app: Running, who: Person, path: str) -> int:
    resp = await app.client.get(path, headers=who.auth)
    await resp.read()
    return resp.status


async def audited_reads(app: Running, actor_id: str, outcome: str) -> int:
    async with app.services.db.read() as session:
        count = await session.scalar(
            select(func.count(AuditEntry.id)).where(
                AuditEntry.actor_id == actor_id,
                AuditEntry.outcome == outcome,
                AuditEntry.action.not_like("login%"),
            )
        )
    return int(count or 0)


async def test_staff_of_every_role_without_a_care_relationship_get_404_everywhere(
    any_db_url: str, start_app: object
) -> None:
    """Issue 14: REST and FHIR alike, and each refusal is audited."""
    app: Running = await start_app(any_db_url)  # type: ignore[operator]
    record = await a_record(app)
    for role in STAFF_ROLES:
        outsider = await staff(app, role, f"outsider-{role.value}")
        for path in record.paths():
            assert await status_of(app, outsider, path) == 404, (role, path)
        assert await audited_reads(app, outsider.id, "ok") == 0
        refused = await audited_reads(app, outsider.id, "forbidden")
        refused += await audited_reads(app, outsider.id, "not_found")
        assert refused >= len(record.paths()), role


async def test_every_care_relationship_reads_the_record_and_each_read_is_audited(
    any_db_url: str, start_app: object
) -> None:
    """Issue 14: a leg (consultant, duty therapist), a booked appointment (every doctor
    role), an open consultation awaiting a doctor; each read: 200 and an audit entry."""
    app: Running = await start_app(any_db_url)  # type: ignore[operator]
    record = await a_record(app)
    readers = [record.c.consultant, record.c.therapist]
    starts = app.clock.now() + timedelta(days=1)
    for role in (Role.PAEDIATRICIAN, Role.SPECIALIST, Role.PSYCHOLOGIST, Role.THERAPIST):
        doctor = await staff(app, role, f"booked-{role.value}")
        await add_appointment(app, record.c.patient.id, doctor.id, starts)
        readers.append(doctor)
    for reader in readers:
        for path in record.paths():
            before = await audited_reads(app, reader.id, "ok")
            assert await status_of(app, reader, path) == 200, path
            assert await audited_reads(app, reader.id, "ok") > before, path


async def test_a_finished_leg_counts_only_within_the_care_window(
    any_db_url: str, start_app: object
) -> None:
    """Issue 14: `rules.care_window` after the leg ended, the doctor reads no more."""
    app: Running = await start_app(  # type: ignore[operator]
        any_db_url, rules={"care_window": "2h"}
    )
    record = await a_record(app)
    therapist = record.c.therapist
    fhir = f"/fhir/Encounter/{record.consultation_id}"
    rest = f"/api/v1/records?patient_id={record.c.patient.id}"
    app.clock.advance(CARE_WINDOW - timedelta(minutes=20))
    assert (await status_of(app, therapist, fhir), await status_of(app, therapist, rest)) == (
        200,
        200,
    )
    app.clock.advance(timedelta(minutes=21))
    assert (await status_of(app, therapist, fhir), await status_of(app, therapist, rest)) == (
        404,
        404,
    )
    # The author still reads their own conclusion.
    own = f"/api/v1/conclusions/{record.conclusion_id}"
    assert await status_of(app, therapist, own) == 200


async def test_break_the_glass_needs_a_reason_is_audited_and_flagged(
    any_db_url: str, start_app: object
) -> None:
    """Issue 14: a consultant outside the care team states why; reads then pass for
    `rules.break_glass_ttl`, each flagged in the admin's audit listing."""
    app: Running = await start_app(  # type: ignore[operator]
        any_db_url, rules={"break_glass_ttl": "30m"}
    )
    record = await a_record(app)
    pid = record.c.patient.id
    outsider = await staff(app, Role.CONSULTANT, "night-consultant")
    doctor = await staff(app, Role.THERAPIST, "other-therapist")
    admin = await staff(app, Role.ADMIN)
    path = f"/fhir/Patient/{pid}/$everything"
    glass = f"/api/v1/patients/{pid}/break-glass"
    assert await status_of(app, outsider, path) == 404

    for body in ({}, {"reason": ""}, {"reason": "short"}):
        resp = await app.client.post(glass, json=body, headers=outsider.auth)
        assert resp.status == 422, body
    resp = await app.client.post(glass, json={"reason": "x" * 20}, headers=doctor.auth)
    assert resp.status == 403  # only consultants break the glass
    resp = await app.client.post(
        "/api/v1/patients/nobody/break-glass",
        json={"reason": "Пациент без сознания, звонок родственника"},
        headers=outsider.auth,
    )
    assert resp.status == 404

    reason = "Пациент без сознания, звонок родственника"
    resp = await app.client.post(glass, json={"reason": reason}, headers=outsider.auth)
    assert resp.status == 201, await resp.text()
    assert await status_of(app, outsider, path) == 200
    conclusion = f"/api/v1/conclusions/{record.conclusion_id}"
    assert await status_of(app, outsider, conclusion) == 200

    status, listing = await get_json(app, admin, "/api/v1/audit", limit="50")
    assert status == 200
    mine = [e for e in listing["items"] if e["actor_id"] == outsider.id]
    granted = [e for e in mine if e["action"] == "break_glass" and e["outcome"] == "ok"]
    assert len(granted) == 1 and granted[0]["break_glass"] is True
    assert granted[0]["detail"]["reason"] == reason
    reads = [e for e in mine if e["action"] in ("fhir_read", "conclusion_read")]
    flagged = [e for e in reads if e["outcome"] == "ok"]
    assert len(flagged) >= 2 and all(e["break_glass"] for e in flagged)
    unflagged = [e for e in listing["items"] if e["actor_id"] == record.c.therapist.id]
    assert not any(e["break_glass"] for e in unflagged)

    app.clock.advance(timedelta(minutes=31))
    assert await status_of(app, outsider, path) == 404
