"""Call quality per leg (issue 17): `consultation:state` names the leg of the call now on;
the patient and the staff member of that leg (and nobody else) send their page's summary
(path, median round trip, loss, bitrate, freezes); it is kept per leg and reporter, read by
the staff of the consultation, and a final one is in the consultation's audit."""

from __future__ import annotations

from typing import Any

from helpers import CHILD_PHONE, bearer, patient_token, staff_token

from telemed.roles import Role

SUMMARY = {
    "path": "relay",
    "median_rtt_ms": 42.5,
    "loss_percent": 4.8,
    "bitrate_kbps": 1450.0,
    "freezes": 2,
    "seconds": 30,
}


async def test_each_side_reports_its_leg_and_the_staff_read_it_per_leg(live: Any) -> None:
    """The consultant's leg and the therapist's leg get a summary from each side; the
    staff of the consultation read all four, oldest leg first; finals are audited."""
    app = live.running
    client = app.client
    consultant_token, _ = await staff_token(app, Role.CONSULTANT)
    therapist_token, _ = await staff_token(app, Role.THERAPIST)
    admin_token, _ = await staff_token(app, Role.ADMIN)
    consultant = await live.join(consultant_token, "consultant")
    therapist = await live.join(therapist_token, "therapist")
    await therapist.ok("queue:watch")
    token = await patient_token(app)
    patient = await live.join(token, "patient")
    cid = (await patient.ok("consultation:start", {"channel": "video"}))["consultation_id"]
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    first = (await patient.wait_state(cid, "with_consultant"))["leg_id"]
    assert (await consultant.wait_state(cid, "with_consultant"))["leg_id"] == first

    url = f"/api/v1/consultations/{cid}/quality"
    for who, loss in ((token, 4.8), (consultant_token, 0.5)):
        body = {**SUMMARY, "leg_id": first, "loss_percent": loss, "final": True}
        resp = await client.post(url, json=body, headers=bearer(who))
        assert resp.status == 200, await resp.text()
        kept = await resp.json()
        assert (kept["leg_role"], kept["loss_percent"]) == ("consultant", loss)

    await consultant.ok("consultation:transfer", {"consultation_id": cid, "to": "duty_doctor"})
    await therapist.ok("consultation:accept", {"consultation_id": cid})
    second = (await patient.wait_state(cid, "with_doctor"))["leg_id"]
    assert second != first
    interim = {**SUMMARY, "leg_id": second, "path": "direct", "seconds": 10}
    assert (await client.post(url, json=interim, headers=bearer(therapist_token))).status == 200
    again = {**interim, "seconds": 20, "final": True}  # replaces the interim one
    assert (await client.post(url, json=again, headers=bearer(therapist_token))).status == 200

    resp = await client.get(url, headers=bearer(consultant_token))
    assert resp.status == 200, await resp.text()
    items = (await resp.json())["items"]
    seen = [(i["leg_role"], i["reporter_role"], i["path"], i["seconds"]) for i in items]
    assert seen == [
        ("consultant", "consultant", "relay", 30),
        ("consultant", "patient", "relay", 30),
        ("therapist", "therapist", "direct", 20),
    ]
    assert [i["loss_percent"] for i in items[:2]] == [0.5, 4.8]

    resp = await client.get(
        "/api/v1/audit",
        params={"object_type": "consultation", "object_id": cid},
        headers=bearer(admin_token),
    )
    audited = [e for e in (await resp.json())["items"] if e["action"] == "call_quality"]
    assert len(audited) == 3  # the finals only
    assert {e["detail"]["leg_id"] for e in audited} == {first, second}
    assert {e["detail"]["loss_percent"] for e in audited} == {4.8, 0.5}


async def test_only_the_people_of_the_leg_report_and_only_its_staff_read(live: Any) -> None:
    """Another patient, a staff member who was not on the leg, a leg of another
    consultation: refused; the patient reads no staff view."""
    app = live.running
    client = app.client
    consultant_token, _ = await staff_token(app, Role.CONSULTANT)
    other_staff, _ = await staff_token(app, Role.CONSULTANT, "other-consultant")
    consultant = await live.join(consultant_token, "consultant")
    token = await patient_token(app)
    patient = await live.join(token, "patient")
    cid = (await patient.ok("consultation:start", {"channel": "video"}))["consultation_id"]
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    leg = (await patient.wait_state(cid, "with_consultant"))["leg_id"]
    url = f"/api/v1/consultations/{cid}/quality"
    body = {**SUMMARY, "leg_id": leg}

    stranger = await patient_token(app, CHILD_PHONE)
    for who in (stranger, other_staff):
        resp = await client.post(url, json=body, headers=bearer(who))
        assert resp.status == 403, await resp.text()
        assert (await resp.json())["error"]["code"] == "forbidden"
    resp = await client.post(url, json={**body, "leg_id": "nope"}, headers=bearer(token))
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "leg_not_found"
    resp = await client.post(url, json={**body, "loss_percent": 120}, headers=bearer(token))
    assert resp.status == 422 or resp.status == 400, await resp.text()
    assert (await client.get(url, headers=bearer(other_staff))).status == 403
    assert (await client.get(url, headers=bearer(token))).status == 403
