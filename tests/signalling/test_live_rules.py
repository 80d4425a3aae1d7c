"""Who may do what over Socket.IO, races, reconnects and bad events (R-URG-*, R-ROUTE-1)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import socketio
from appkit import Running
from helpers import add_patients, patient_token, staff_token
from live import Live
from sqlalchemy import func, select

from telemed.models import Consultation, ConsultationLeg
from telemed.roles import Role

ADULT_PHONE = "+79161234567"
CHILD_PHONE = "+79167654321"


async def patient(live: Any, phone: str = ADULT_PHONE, name: str = "patient") -> Live:
    return await live.join(await patient_token(live.running, phone), name)


async def staff(live: Any, role: Role, login: str | None = None) -> tuple[Live, str]:
    token, staff_id = await staff_token(live.running, role, login)
    return await live.join(token, login or role.value), staff_id


async def start(client: Live, channel: str = "video") -> str:
    ack = await client.ok("consultation:start", {"channel": channel})
    return str(ack["consultation_id"])


def error_code(ack: dict[str, Any]) -> str:
    assert ack["ok"] is False, ack
    assert ack["error"]["message"]
    return str(ack["error"]["code"])


# --- who may connect ------------------------------------------------------------------------


async def refusal(url: str, auth: dict[str, Any]) -> dict[str, Any]:
    """Connect and return what the server said when it refused the handshake."""
    client = socketio.AsyncClient(reconnection=False)
    said: list[dict[str, Any]] = []

    async def connect_error(data: Any) -> None:
        said.append(data)

    client.on("connect_error", connect_error)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(url, auth=auth, transports=["websocket"], wait_timeout=5)
    assert len(said) == 1
    return said[0]


async def test_a_missing_or_bad_token_is_refused_with_a_message(live: Any) -> None:
    for auth in [{}, {"token": "forged"}, {"token": 42}]:
        said = await refusal(live.url, auth)
        assert said["data"]["code"] == "unauthorized" and said["message"], auth


async def test_a_patient_without_consent_cannot_connect(live: Any) -> None:
    """R-CONSENT-1: no service before consent, live ones included."""
    token = await patient_token(live.running, ADULT_PHONE, consent=False)
    said = await refusal(live.url, {"token": token})
    assert said["data"]["code"] == "consent_required"


async def test_a_foreign_origin_is_refused(live: Any) -> None:
    token = await patient_token(live.running, ADULT_PHONE)
    client = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            live.url,
            auth={"token": token},
            transports=["websocket"],
            headers={"Origin": "https://evil.example"},
            wait_timeout=5,
        )
    same = socketio.AsyncClient(reconnection=False)
    await same.connect(
        live.url,
        auth={"token": token},
        transports=["websocket"],
        headers={"Origin": live.url.rstrip("/")},
    )
    assert same.connected
    await same.disconnect()


async def test_a_revoked_token_ends_the_live_session(live: Any) -> None:
    app: Running = live.running
    token, _ = await staff_token(app, Role.CONSULTANT)
    consultant = await live.join(token, "consultant")
    await consultant.ok("queue:watch")
    await app.client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert await consultant.wait("session:ended", within=2) == {"reason": "logout"}
    again = Live(live.url, token, "again")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await again.connect()


# --- who may act -----------------------------------------------------------------------------


async def test_a_patient_cannot_signal_chat_or_read_another_patients_consultation(
    live: Any,
) -> None:
    adult = await patient(live)
    child = await patient(live, CHILD_PHONE, "other patient")
    consultant, _ = await staff(live, Role.CONSULTANT)
    cid = await start(adult)
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    for event, data in [
        ("signal", {"consultation_id": cid, "data": {"type": "offer", "sdp": "x"}}),
        ("chat:send", {"consultation_id": cid, "text": "hi"}),
        ("chat:history", {"consultation_id": cid}),
        ("consultation:leave", {"consultation_id": cid}),
    ]:
        assert error_code(await child.call(event, data)) == "forbidden", event
    assert adult.events("signal") == [] and consultant.events("chat:message") == []


async def test_staff_who_are_not_with_the_patient_cannot_signal_or_chat(live: Any) -> None:
    adult = await patient(live)
    consultant, _ = await staff(live, Role.CONSULTANT)
    other, _ = await staff(live, Role.CONSULTANT, "consultant-2")
    therapist, _ = await staff(live, Role.THERAPIST)
    cid = await start(adult)
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    for client in (other, therapist):
        ack = await client.call("signal", {"consultation_id": cid, "data": {"type": "offer"}})
        assert error_code(ack) == "forbidden"
        ack = await client.call("chat:send", {"consultation_id": cid, "text": "hello"})
        assert error_code(ack) == "forbidden"
        ack = await client.call("consultation:close", {"consultation_id": cid})
        assert error_code(ack) in {"forbidden"}
    assert adult.events("signal") == []


async def test_signal_goes_only_to_the_current_counterpart(live: Any) -> None:
    adult = await patient(live)
    consultant, _ = await staff(live, Role.CONSULTANT)
    bystander, _ = await staff(live, Role.CONSULTANT, "consultant-2")
    cid = await start(adult)
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    await consultant.ok("signal", {"consultation_id": cid, "data": {"type": "offer", "sdp": "v=0"}})
    got = await adult.wait("signal")
    assert got == {
        "consultation_id": cid,
        "from_role": "consultant",
        "data": {"type": "offer", "sdp": "v=0"},
    }
    await adult.ok("signal", {"consultation_id": cid, "data": {"type": "answer", "sdp": "v=0"}})
    assert (await consultant.wait("signal"))["from_role"] == "patient"
    await asyncio.sleep(0.1)
    assert bystander.events("signal") == []


async def test_a_patient_cannot_signal_while_nobody_is_with_them(live: Any) -> None:
    adult = await patient(live)
    cid = await start(adult)
    ack = await adult.call("signal", {"consultation_id": cid, "data": {"type": "offer"}})
    assert error_code(ack) == "invalid_state"


async def test_a_consultant_cannot_accept_a_patient_already_taken(live: Any) -> None:
    adult = await patient(live)
    first, _ = await staff(live, Role.CONSULTANT)
    second, _ = await staff(live, Role.CONSULTANT, "consultant-2")
    cid = await start(adult)
    await first.ok("consultation:accept", {"consultation_id": cid})
    ack = await second.call("consultation:accept", {"consultation_id": cid})
    assert error_code(ack) == "already_taken"
    assert error_code(await second.call("consultation:accept", {})) == "queue_empty"


async def test_a_therapist_cannot_take_a_child(live: Any) -> None:
    """R-ROUTE-1: a child waits for the paediatrician; the therapist is refused."""
    child = await patient(live, CHILD_PHONE)
    consultant, _ = await staff(live, Role.CONSULTANT)
    therapist, _ = await staff(live, Role.THERAPIST)
    await therapist.ok("queue:watch")
    cid = await start(child)
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    await consultant.ok("consultation:transfer", {"consultation_id": cid, "to": "duty_doctor"})
    ack = await therapist.call("consultation:accept", {"consultation_id": cid})
    assert error_code(ack) == "forbidden"
    assert error_code(await therapist.call("consultation:accept", {})) == "queue_empty"


async def test_patients_cannot_use_staff_events_and_staff_cannot_start(live: Any) -> None:
    adult = await patient(live)
    consultant, _ = await staff(live, Role.CONSULTANT)
    for event in [
        "queue:watch",
        "consultation:accept",
        "consultation:transfer",
        "consultation:close",
    ]:
        assert error_code(await adult.call(event, {})) == "forbidden", event
    ack = await consultant.call("consultation:start", {"channel": "video"})
    assert error_code(ack) == "forbidden"


BIG_BUDGET = {"rate": 1, "burst": 1000}


@pytest.mark.parametrize(
    "live_config",
    # Accepts as fast as the loop allows: far past a person's budget, not what is tested here.
    [
        {
            "signalling": {
                "queue_refresh_interval": "10ms",
                "budgets": {"other": {"rate": 1, "burst": 1000}},
            }
        }
    ],
)
async def test_twenty_consultants_racing_for_two_hundred_patients_never_double_assign(
    live: Any,
) -> None:
    """R-URG-2: every waiting patient is taken by exactly one consultant."""
    app: Running = live.running
    rows = [
        f"R-{i},2026-01-01,2026-01-01,2027-12-31,Пациент {i},1980-01-01,M,+791650{i:05d}"
        for i in range(200)
    ]
    await add_patients(app, rows)
    from telemed.consultation import Channel
    from telemed.models import Patient

    async with app.services.db.read() as session:
        ids = await session.scalars(select(Patient.id).where(Patient.phone.like("+791650%")))
        patient_ids = list(ids.all())
    for pid in patient_ids:  # the patients start over the same service the socket uses
        await app.services.consultations.start(pid, Channel.CHAT)
        app.clock.advance(timedelta(seconds=1))
    consultants = [await staff(live, Role.CONSULTANT, f"c{i}") for i in range(20)]

    async def take_all(client: Live) -> list[str]:
        taken = []
        while True:
            ack = await client.call("consultation:accept", {}, within=30)
            if not ack["ok"]:
                assert ack["error"]["code"] == "queue_empty", ack
                return taken
            taken.append(ack["consultation_id"])

    results = await asyncio.gather(*(take_all(c) for c, _ in consultants))
    everything = [cid for taken in results for cid in taken]
    assert len(everything) == 200 and len(set(everything)) == 200
    async with app.services.db.read() as session:
        legs = await session.scalar(select(func.count()).select_from(ConsultationLeg))
        waiting = await session.scalar(
            select(func.count())
            .select_from(Consultation)
            .where(Consultation.state == "waiting_consultant")
        )
    assert legs == 200 and waiting == 0


# --- second tabs and reconnects ---------------------------------------------------------------


async def test_a_second_tab_takes_over_and_the_first_is_told_why(live: Any) -> None:
    token = await patient_token(live.running, ADULT_PHONE)
    first = await live.join(token, "tab 1")
    cid = await start(first)
    second = await live.join(token, "tab 2")
    replaced = await first.wait("session:replaced")
    assert replaced["reason"] == "taken_over"
    state = await second.wait_state(cid, "waiting_consultant")
    assert state["queue_position"] == 1
    for _ in range(50):
        if not first.sio.connected:
            break
        await asyncio.sleep(0.05)
    assert not first.sio.connected and second.sio.connected


async def test_a_patient_who_drops_in_the_queue_comes_back_to_the_same_place(
    live: Any,
) -> None:
    """Reconnect within no_show_after: same consultation, same place in the queue."""
    app: Running = live.running
    first = await patient(live, CHILD_PHONE, "first")
    first_id = await start(first)
    app.clock.advance(timedelta(seconds=5))
    token = await patient_token(app, ADULT_PHONE)
    adult = await live.join(token, "adult")
    cid = await start(adult)
    assert (await adult.wait_state(cid, "waiting_consultant"))["queue_position"] == 2
    await adult.close()
    app.clock.advance(timedelta(minutes=5))
    back = await live.join(token, "adult again")
    state = await back.wait_state(cid, "waiting_consultant")
    assert state["queue_position"] == 2
    assert first_id != cid
    again = await back.call("consultation:start", {"channel": "video"})
    assert again["consultation_id"] == cid  # starting again gives the same consultation


async def test_a_patient_who_drops_with_the_doctor_comes_back_to_the_same_doctor(
    live: Any,
) -> None:
    """Reconnect: same state and counterpart; the doctor is told to renegotiate; the chat
    missed meanwhile is replayed from the database."""
    token = await patient_token(live.running, ADULT_PHONE)
    adult = await live.join(token, "patient")
    consultant, _ = await staff(live, Role.CONSULTANT)
    therapist, therapist_id = await staff(live, Role.THERAPIST)
    cid = await start(adult)
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    await consultant.ok("consultation:transfer", {"consultation_id": cid, "to": "duty_doctor"})
    await therapist.ok("consultation:accept", {"consultation_id": cid})
    await adult.wait_state(cid, "with_doctor")
    seen = await adult.ok("chat:send", {"consultation_id": cid, "text": "до обрыва"})
    await adult.close()
    away = await therapist.wait("peer:away")
    assert away["consultation_id"] == cid
    await therapist.ok("chat:send", {"consultation_id": cid, "text": "вы меня слышите?"})
    back = await live.join(token, "patient again", last_message_id=int(seen["message_id"]))
    state = await back.wait_state(cid, "with_doctor")
    assert state["counterpart"]["role"] == "therapist"
    rejoined = await therapist.wait("peer:rejoined")
    assert rejoined == {"consultation_id": cid, "role": "patient"}
    history = await back.wait("chat:history")
    assert [m["text"] for m in history["messages"]] == ["вы меня слышите?"]
    row = await live.running.services.consultations.get(cid)
    assert row.doctor_id == therapist_id and row.patient_away_since is None


# --- bad events -------------------------------------------------------------------------------


async def test_malformed_oversized_and_unknown_events_get_an_error_ack(live: Any) -> None:
    adult = await patient(live)
    cid = await start(adult)
    cases = [
        ("consultation:start", "not an object", "bad_request"),
        ("consultation:start", [1, 2], "bad_request"),
        ("consultation:start", {"channel": "smoke"}, "validation_error"),
        ("consultation:start", {"channel": "video", "extra": 1}, "validation_error"),
        ("chat:send", {"consultation_id": cid, "text": "x" * 70_000}, "payload_too_large"),
        ("signal", {"consultation_id": cid, "data": {"blob": "y" * 70_000}}, "payload_too_large"),
        ("chat:send", {"consultation_id": 5, "text": "hi"}, "validation_error"),
        ("chat:history", {"consultation_id": cid, "after_message_id": -1}, "validation_error"),
        ("no:such:event", {}, "unknown_event"),
    ]
    for event, data, code in cases:
        assert error_code(await adult.call(event, data)) == code, (event, data)
    # Out of order: leaving a consultation that does not exist, closing before accepting.
    assert error_code(await adult.call("consultation:leave", {"consultation_id": "nope"})) in {
        "not_found",
        "forbidden",
    }
    consultant, _ = await staff(live, Role.CONSULTANT)
    assert error_code(await consultant.call("consultation:close", {"consultation_id": cid})) in {
        "forbidden",
        "invalid_state",
    }
    assert (
        error_code(
            await consultant.call("consultation:transfer", {"consultation_id": cid, "to": "doctor"})
        )
        == "bad_request"
    )
    # The connection survived all of it and still works.
    assert (await adult.ok("chat:send", {"consultation_id": cid, "text": "ещё тут"}))["message_id"]


# --- chat with medical-card documents ------------------------------------------------------


async def upload(app: Running, token: str, size: int = 0) -> str:
    import aiohttp
    from helpers import bearer

    body = b"%PDF-1.4\n" + b"0" * size + b"\n%%EOF\n"
    form = aiohttp.FormData()
    form.add_field("file", body, filename="analysis.pdf", content_type="application/pdf")
    resp = await app.client.post("/api/v1/documents", data=form, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["document_id"])


async def test_chat_carries_documents_of_the_patients_card_up_to_25_mb_per_message(
    live: Any,
) -> None:
    """RULES "Documents and chat": files ride with chat messages, 25 MB in all per message;
    only the patient's own card documents can be attached."""
    app: Running = live.running
    token = await patient_token(app, ADULT_PHONE)
    adult = await live.join(token, "patient")
    consultant, _ = await staff(live, Role.CONSULTANT)
    cid = await start(adult)
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    small = await upload(app, token, 1000)
    ack = await adult.ok(
        "chat:send", {"consultation_id": cid, "text": "анализы", "document_ids": [small]}
    )
    got = await consultant.wait("chat:message", lambda d: d["message_id"] == ack["message_id"])
    assert [d["document_id"] for d in got["documents"]] == [small]
    big = [await upload(app, token, 13 * 1024 * 1024) for _ in range(2)]  # 26 MB together
    too_much = await adult.call("chat:send", {"consultation_id": cid, "document_ids": big})
    assert error_code(too_much) == "attachments_too_large"
    other = await upload(app, await patient_token(app, CHILD_PHONE), 10)
    foreign = await adult.call("chat:send", {"consultation_id": cid, "document_ids": [other]})
    assert error_code(foreign) == "not_found"
    staff_attach = await consultant.call(
        "chat:send", {"consultation_id": cid, "text": "x", "document_ids": [small]}
    )
    assert error_code(staff_attach) == "forbidden"
    history = await adult.ok("chat:history", {"consultation_id": cid})
    assert [m["text"] for m in history["messages"]] == ["анализы"]
    assert history["messages"][0]["documents"][0]["document_id"] == small
