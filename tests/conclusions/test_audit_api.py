"""The audit log through the admin's REST endpoint: every read and write of a conclusion or
document, with actor, action, object, time and outcome; nobody else may list it."""

from __future__ import annotations

from appkit import Running
from conclusion_kit import (
    FINDINGS,
    MINUTE,
    OTHER_PHONE,
    cast,
    finished_consultation,
    get_json,
    patient,
    staff,
    write,
)

from telemed.roles import Role


async def test_an_admin_lists_who_read_and_wrote_a_conclusion(app: Running) -> None:
    c = await cast(app)
    cid = await finished_consultation(c)
    t_write = app.clock.now()
    _, signed = await write(app, c.therapist, cid, sign=True)
    conclusion_id = signed["conclusion_id"]
    stranger = await patient(app, OTHER_PHONE, "P-2")
    t_read = app.clock.advance(MINUTE)
    await get_json(app, c.patient, f"/api/v1/conclusions/{conclusion_id}")
    await get_json(app, stranger, f"/api/v1/conclusions/{conclusion_id}")
    admin = await staff(app, Role.ADMIN)

    status, body = await get_json(
        app, admin, "/api/v1/audit", object_type="conclusion", object_id=conclusion_id
    )
    assert status == 200
    rows = [
        (i["actor_role"], i["actor_id"], i["action"], i["object_id"], i["outcome"])
        for i in body["items"]
    ]
    assert rows == [  # newest first
        ("patient", stranger.id, "conclusion_read", conclusion_id, "not_found"),
        ("patient", c.patient.id, "conclusion_read", conclusion_id, "ok"),
        ("therapist", c.therapist.id, "conclusion_sign", conclusion_id, "ok"),
    ]
    assert [i["at"] for i in body["items"]][1:] == [
        t_read.isoformat().replace("+00:00", "Z"),
        t_write.isoformat().replace("+00:00", "Z"),
    ]
    assert FINDINGS not in str(body)

    _, limited = await get_json(app, admin, "/api/v1/audit", limit="1")
    assert len(limited["items"]) == 1
    _, everything = await get_json(app, admin, "/api/v1/audit", object_type="conclusion")
    assert {i["object_id"] for i in everything["items"]} == {conclusion_id}


async def test_only_an_admin_reads_the_audit_log(app: Running) -> None:
    c = await cast(app)
    for who in (c.patient, c.consultant, c.therapist):
        status, body = await get_json(app, who, "/api/v1/audit")
        assert status == 403 and body["error"]["code"] == "forbidden"
    admin = await staff(app, Role.ADMIN)
    status, body = await get_json(app, admin, "/api/v1/audit", limit="5000")
    assert status == 422 and body["error"]["code"] == "validation_error"
