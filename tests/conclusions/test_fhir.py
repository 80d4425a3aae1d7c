"""FHIR R4 export: a booking as Appointment, a consultation as Encounter, a conclusion as
Composition, a patient's record as a Bundle; every resource validates against the official R4
JSON schema, errors are OperationOutcomes, and only staff who serve patients and the patient
themselves read."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from appkit import Running
from conclusion_kit import (
    FINDINGS,
    OTHER_PHONE,
    Person,
    add_appointment,
    audit_of,
    cancel_appointment,
    cast,
    finished_consultation,
    patient,
    staff,
    write,
)
from fhir_schema import assert_r4

from telemed.roles import Role


async def fhir(app: Running, who: Person | None, path: str) -> tuple[int, dict[str, Any]]:
    resp = await app.client.get(path, headers=who.auth if who else {})
    assert resp.content_type == "application/fhir+json", await resp.text()
    return resp.status, assert_r4(await resp.json())


async def test_a_consultation_and_its_conclusion_export_as_valid_resources(
    any_db_url: str, start_app: object
) -> None:
    app: Running = await start_app(any_db_url)  # type: ignore[operator]
    c = await cast(app)
    cid = await finished_consultation(c)
    _, signed = await write(app, c.therapist, cid, sign=True)

    status, body = await fhir(app, c.patient, f"/fhir/Encounter/{cid}")
    assert status == 200
    encounter = body
    assert (encounter["id"], encounter["status"], encounter["class"]["code"]) == (
        cid,
        "finished",
        "VR",
    )
    assert encounter["subject"]["reference"] == f"Patient/{c.patient.id}"
    assert [p["individual"]["reference"] for p in encounter["participant"]] == [
        f"Practitioner/{c.consultant.id}",
        f"Practitioner/{c.therapist.id}",
        f"Practitioner/{c.consultant.id}",
    ]
    codes = [p["type"][0]["coding"][0]["code"] for p in encounter["participant"]]
    assert codes == ["PART", "PPRF", "PART"]
    assert encounter["period"]["start"] and encounter["period"]["end"]

    status, body = await fhir(app, c.consultant, f"/fhir/Composition/{signed['conclusion_id']}")
    assert status == 200
    composition = body
    assert composition["status"] == "final"
    assert composition["type"]["coding"][0]["code"] == "11488-4"
    assert composition["encounter"]["reference"] == f"Encounter/{cid}"
    assert composition["author"][0]["reference"] == f"Practitioner/{c.therapist.id}"
    assert composition["attester"][0]["mode"] == "legal"
    assert [s["title"] for s in composition["section"]] == ["Заключение", "Рекомендации"]
    assert FINDINGS in composition["section"][0]["text"]["div"]
    assert 'xmlns="http://www.w3.org/1999/xhtml"' in composition["section"][0]["text"]["div"]


async def test_a_correction_is_an_amended_composition_that_replaces_the_first(
    app: Running,
) -> None:
    c = await cast(app)
    cid = await finished_consultation(c)
    _, first = await write(app, c.therapist, cid, sign=True)
    _, second = await write(
        app, c.therapist, cid, text="<b>исправлено</b> & уточнено", sign=True, reason="опечатка"
    )
    _, body = await fhir(app, c.patient, f"/fhir/Composition/{second['conclusion_id']}")
    composition = body
    assert composition["status"] == "amended"
    assert composition["relatesTo"][0]["code"] == "replaces"
    assert composition["relatesTo"][0]["targetReference"]["reference"] == (
        f"Composition/{first['conclusion_id']}"
    )
    assert (
        "&lt;b&gt;исправлено&lt;/b&gt; &amp; уточнено" in composition["section"][0]["text"]["div"]
    )
    _, body = await fhir(app, c.patient, f"/fhir/Composition/{first['conclusion_id']}")
    assert body["status"] == "final"


async def test_a_draft_is_a_preliminary_composition_for_its_author_only(app: Running) -> None:
    c = await cast(app)
    cid = await finished_consultation(c)
    _, draft = await write(app, c.therapist, cid, recommendations="")
    path = f"/fhir/Composition/{draft['conclusion_id']}"
    status, body = await fhir(app, c.therapist, path)
    assert status == 200
    assert body["status"] == "preliminary" and "attester" not in body
    assert [s["title"] for s in body["section"]] == ["Заключение"]  # empty sections left out
    status, body = await fhir(app, c.patient, path)
    assert status == 404
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "not-found"
    assert body["issue"][0]["diagnostics"] == "not_found"
    reads = await audit_of(app, "conclusion", draft["conclusion_id"])
    assert [(e.actor_id, e.outcome) for e in reads] == [
        (c.therapist.id, "ok"),  # writing the draft
        (c.therapist.id, "ok"),
        (c.patient.id, "not_found"),
    ]


async def test_appointments_export_with_their_status(app: Running) -> None:
    c = await cast(app)
    at = datetime(2026, 1, 22, 8, 0, tzinfo=UTC)
    appointment = await add_appointment(app, c.patient.id, c.therapist.id, at)
    _, body = await fhir(app, c.patient, f"/fhir/Appointment/{appointment}")
    assert (body["status"], datetime.fromisoformat(body["start"])) == ("booked", at)
    assert {p["actor"]["reference"] for p in body["participant"]} == {
        f"Patient/{c.patient.id}",
        f"Practitioner/{c.therapist.id}",
    }
    await cancel_appointment(app, appointment)
    _, body = await fhir(app, c.patient, f"/fhir/Appointment/{appointment}")
    assert body["status"] == "cancelled"


async def test_a_patients_record_is_a_bundle_of_signed_documents_only(app: Running) -> None:
    c = await cast(app)
    first = await finished_consultation(c)
    _, signed = await write(app, c.therapist, first, sign=True)
    second = await finished_consultation(c)
    await write(app, c.therapist, second)  # a draft: not part of the record
    appointment = await add_appointment(
        app, c.patient.id, c.therapist.id, datetime(2026, 2, 2, 8, tzinfo=UTC)
    )
    status, body = await fhir(app, c.patient, f"/fhir/Patient/{c.patient.id}/$everything")
    assert status == 200
    assert body["type"] == "searchset" and body["total"] == 7
    kinds = [(e["resource"]["resourceType"], e["resource"]["id"]) for e in body["entry"]]
    assert kinds == [
        ("Patient", c.patient.id),
        ("Appointment", appointment),
        ("Encounter", first),
        ("Encounter", second),
        ("Composition", signed["conclusion_id"]),
        # the Practitioners the record names, each once, in the order first named
        ("Practitioner", c.therapist.id),
        ("Practitioner", c.consultant.id),
    ]
    base = str(app.client.make_url("/")).rstrip("/")
    assert body["entry"][0]["fullUrl"] == f"{base}/fhir/Patient/{c.patient.id}"
    assert body["entry"][0]["resource"]["gender"] == "male"
    assert body["entry"][0]["resource"]["birthDate"] == "1980-03-01"


async def test_fhir_reads_are_limited_to_the_patient_and_the_staff_who_serve_patients(
    app: Running,
) -> None:
    c = await cast(app)
    cid = await finished_consultation(c)
    _, signed = await write(app, c.therapist, cid, sign=True)
    stranger = await patient(app, OTHER_PHONE, "P-2")
    admin = await staff(app, Role.ADMIN)
    paths = [
        f"/fhir/Encounter/{cid}",
        f"/fhir/Composition/{signed['conclusion_id']}",
        f"/fhir/Patient/{c.patient.id}/$everything",
    ]
    for path in paths:
        status, body = await fhir(app, stranger, path)
        assert status == 404, path
        assert body["issue"][0]["code"] == "not-found"
        status, body = await fhir(app, admin, path)
        assert status == 404 and body["issue"][0]["code"] == "not-found"
        status, body = await fhir(app, None, path)
        assert status == 401 and body["issue"][0]["code"] == "login"
        for reader in (c.patient, c.consultant, c.therapist):
            assert (await fhir(app, reader, path))[0] == 200
    status, body = await fhir(app, c.patient, "/fhir/Encounter/nope")
    assert status == 404 and body["resourceType"] == "OperationOutcome"

    await app.client.delete("/api/v1/me/consent", headers=c.patient.auth)
    status, body = await fhir(app, c.patient, paths[0])
    assert status == 403 and body["issue"][0]["diagnostics"] == "consent_required"
