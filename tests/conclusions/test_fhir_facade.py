"""The FHIR R4 facade as a FHIR client uses it: the CapabilityStatement lists exactly what is
served, Patient, Practitioner and PractitionerRole read, `$everything` names only resources
that can be read, the `patient` searches page with links, and every error under /fhir
(404, 405, 401, 403, 406, 422) is an OperationOutcome. Every body validates against the
official R4 JSON schema."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from appkit import Running
from conclusion_kit import (
    OTHER_PHONE,
    Person,
    add_appointment,
    cast,
    finished_consultation,
    patient,
    staff,
    write,
)
from fhir_schema import assert_r4

from telemed.roles import Role

FHIR_JSON = "application/fhir+json"


async def fhir(
    app: Running, who: Person | None, path: str, **headers: str
) -> tuple[int, dict[str, Any]]:
    """GET a FHIR path: the body must be R4 JSON whatever the status."""
    if who is not None:
        headers = {**who.auth, **headers}
    resp = await app.client.get(path, headers=headers)
    assert resp.content_type == FHIR_JSON, (path, resp.status, await resp.text())
    return resp.status, assert_r4(await resp.json())


def references(value: Any) -> list[str]:
    """Every `reference` inside a resource."""
    found: list[str] = []
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            found.append(value["reference"])
        for item in value.values():
            found += references(item)
    elif isinstance(value, list):
        for item in value:
            found += references(item)
    return found


async def test_the_capability_statement_lists_exactly_what_is_served(app: Running) -> None:
    """/fhir/metadata: R4 4.0.1, JSON only, and one entry per route the app mounts."""
    status, cs = await fhir(app, None, "/fhir/metadata")
    assert status == 200
    assert (cs["resourceType"], cs["fhirVersion"], cs["kind"]) == (
        "CapabilityStatement",
        "4.0.1",
        "instance",
    )
    assert set(cs["format"]) == {"json", FHIR_JSON}
    (rest,) = cs["rest"]
    listed: set[str] = set()
    for resource in rest["resource"]:
        kind = resource["type"]
        for interaction in resource["interaction"]:
            listed.add({"read": f"{kind}/{{id}}", "search-type": kind}[interaction["code"]])
        for operation in resource.get("operation", []):
            listed.add(f"{kind}/{{id}}/${operation['name']}")
        assert [p["name"] for p in resource.get("searchParam", [])] in ([], ["patient"])
    served = {
        r.resource.canonical.removeprefix("/fhir/")  # type: ignore[union-attr]
        for r in app.client.server.app.router.routes()
        if r.resource is not None
        and r.resource.canonical.startswith("/fhir/")
        and r.method == "GET"
    } - {"metadata"}
    assert listed == served


async def test_everything_names_only_what_can_be_read_and_includes_its_practitioners(
    any_db_url: str, start_app: object
) -> None:
    """Follow every reference of `$everything` as the patient: each one reads (200, valid
    R4), and each Practitioner it names is in the Bundle itself."""
    app: Running = await start_app(any_db_url)  # type: ignore[operator]
    c = await cast(app)
    cid = await finished_consultation(c)
    await write(app, c.therapist, cid, sign=True)
    await add_appointment(app, c.patient.id, c.therapist.id, datetime(2026, 2, 2, 8, tzinfo=UTC))
    status, bundle = await fhir(app, c.patient, f"/fhir/Patient/{c.patient.id}/$everything")
    assert status == 200
    inside = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}
    named = {ref for e in bundle["entry"] for ref in references(e["resource"])}
    assert {f"Practitioner/{c.therapist.id}", f"Practitioner/{c.consultant.id}"} <= named
    assert {r for r in named if r.startswith("Practitioner/")} <= inside
    for ref in sorted(named | inside):
        status, body = await fhir(app, c.patient, f"/fhir/{ref}")
        assert status == 200, (ref, body)
        assert f"{body['resourceType']}/{body['id']}" == ref
    for who in (c.consultant, c.therapist):
        assert (await fhir(app, who, f"/fhir/Patient/{c.patient.id}"))[0] == 200


async def test_practitioner_and_practitioner_role_read_as_directory_entries(
    app: Running,
) -> None:
    c = await cast(app)
    status, practitioner = await fhir(app, c.patient, f"/fhir/Practitioner/{c.therapist.id}")
    assert status == 200 and practitioner["active"] is True
    assert set(practitioner) == {"resourceType", "id", "active", "name"}  # a name, no contact
    status, role = await fhir(app, c.patient, f"/fhir/PractitionerRole/{c.therapist.id}")
    assert status == 200
    assert role["practitioner"]["reference"] == f"Practitioner/{c.therapist.id}"
    codings = role["code"][0]["coding"]
    assert {"system": "urn:telemed:staff-role", "code": "therapist"} in codings
    status, body = await fhir(app, c.patient, "/fhir/Practitioner/nobody")
    assert status == 404 and body["issue"][0]["code"] == "not-found"


async def test_searches_by_patient_page_with_links_and_find_what_everything_holds(
    app: Running,
) -> None:
    """Appointment?patient=, Encounter?patient=, Composition?patient=: searchset Bundles; with
    _count=1 the `next` links walk every match once, `previous` walks back."""
    c = await cast(app)
    for _ in range(3):
        cid = await finished_consultation(c)
        await write(app, c.therapist, cid, sign=True)
    for day in (3, 4):
        at = datetime(2026, 2, day, 8, tzinfo=UTC)
        await add_appointment(app, c.patient.id, c.therapist.id, at)
    _, everything = await fhir(app, c.consultant, f"/fhir/Patient/{c.patient.id}/$everything")
    base = str(app.client.make_url("/")).rstrip("/")
    for kind, expected in (("Appointment", 2), ("Encounter", 3), ("Composition", 3)):
        wanted = [
            e["resource"]["id"]
            for e in everything["entry"]
            if e["resource"]["resourceType"] == kind
        ]
        assert len(wanted) == expected
        status, page = await fhir(app, c.patient, f"/fhir/{kind}?patient={c.patient.id}&_count=1")
        assert status == 200 and page["type"] == "searchset"
        seen: list[str] = []
        while True:
            assert page["total"] == expected
            links = {link["relation"]: link["url"] for link in page["link"]}
            assert {"self", "first"} <= set(links)
            seen += [e["resource"]["id"] for e in page["entry"]]
            assert all(e["search"]["mode"] == "match" for e in page["entry"])
            if "next" not in links:
                break
            _, page = await fhir(app, c.patient, links["next"].removeprefix(base))
        assert seen == wanted
        assert "previous" in links
        _, back = await fhir(app, c.patient, links["previous"].removeprefix(base))
        assert [e["resource"]["id"] for e in back["entry"]] == wanted[-2:-1]
        status, full = await fhir(app, c.consultant, f"/fhir/{kind}?patient=Patient/{c.patient.id}")
        assert [e["resource"]["id"] for e in full["entry"]] == wanted


async def test_every_fhir_error_is_an_operation_outcome(app: Running) -> None:
    """404 (no such route or resource, or no care relationship), 405 with Allow, 401 with a
    Bearer challenge, 406 for XML by Accept or _format, 422 for a search without a patient:
    OperationOutcome."""
    c = await cast(app)
    stranger = await patient(app, OTHER_PHONE, "P-2")
    admin = await staff(app, Role.ADMIN)
    everything = f"/fhir/Patient/{c.patient.id}/$everything"
    cases: list[tuple[Person | None, str, dict[str, str], int, str]] = [
        (c.patient, "/fhir/Observation/1", {}, 404, "not-found"),
        (c.patient, "/fhir/Patient/nope", {}, 404, "not-found"),
        (stranger, f"/fhir/Patient/{c.patient.id}", {}, 404, "not-found"),
        (stranger, f"/fhir/Encounter?patient={c.patient.id}", {}, 404, "not-found"),
        (None, everything, {}, 401, "login"),
        (admin, everything, {}, 404, "not-found"),  # no care relationship: as if absent
        (c.patient, everything, {"Accept": "application/fhir+xml"}, 406, "not-supported"),
        (c.patient, everything + "?_format=xml", {}, 406, "not-supported"),
        (None, "/fhir/metadata?_format=application/fhir+xml", {}, 406, "not-supported"),
        (c.patient, "/fhir/Encounter", {}, 422, "invalid"),
        (c.patient, f"/fhir/Encounter?patient={c.patient.id}&_count=0", {}, 422, "invalid"),
        (c.patient, f"/fhir/Encounter?patient={c.patient.id}&date=2026", {}, 422, "invalid"),
    ]
    for who, path, headers, status, code in cases:
        got, body = await fhir(app, who, path, **headers)
        assert (got, body["resourceType"], body["issue"][0]["code"]) == (
            status,
            "OperationOutcome",
            code,
        ), path
    resp = await app.client.post(everything, headers=c.patient.auth)
    assert resp.status == 405 and resp.headers["Allow"] == "GET, HEAD"
    assert resp.content_type == FHIR_JSON
    body = assert_r4(await resp.json())
    assert body["issue"][0]["code"] == "not-supported"
    resp = await app.client.get(everything)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    for accept in ("application/json", "application/fhir+json; fhirVersion=4.0", "*/*"):
        assert (await fhir(app, c.patient, everything, Accept=accept))[0] == 200
