"""The patient calendar, "My records" and the iCalendar export (R-CAL-1, R-CONCL-1): a signed
conclusion shows at once in the patient's time zone, times follow a change of zone, the .ics
holds the same events with stable UIDs, growing SEQUENCEs and no medical text, and the secret
feed works without a header until it is rotated or revoked."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from appkit import Running
from conclusion_kit import (
    ADVICE,
    FINDINGS,
    MINUTE,
    OTHER_PHONE,
    add_appointment,
    cancel_appointment,
    cast,
    finished_consultation,
    get_json,
    patient,
    write,
)
from icalendar import Calendar
from sqlalchemy import select

from telemed.consultation import Channel
from telemed.models import CalendarFeed

MOSCOW = ZoneInfo("Europe/Moscow")


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def ics_of(app: Running, token_headers: dict[str, str], **params: str) -> Calendar:
    resp = await app.client.get("/api/v1/calendar.ics", headers=token_headers, params=params)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/calendar"
    return Calendar.from_ical(await resp.read())


def vevents(cal: Calendar) -> dict[str, Any]:
    return {str(e["UID"]): e for e in cal.walk("VEVENT")}


async def test_a_signed_conclusion_reaches_the_calendar_in_the_patients_time_zone_and_follows_it(
    any_db_url: str, start_app: object
) -> None:
    """R-CONCL-1, R-CAL-1: the end-to-end path of the issue, on SQLite and PostgreSQL."""
    app: Running = await start_app(any_db_url)  # type: ignore[operator]
    c = await cast(app)
    t_start = app.clock.now()
    cid = await finished_consultation(c)
    t_closed = app.clock.now()
    booked_at = datetime(2026, 1, 20, 7, 30, tzinfo=UTC)
    appointment = await add_appointment(app, c.patient.id, c.therapist.id, booked_at)

    _, cal = await get_json(app, c.patient, "/api/v1/calendar")
    assert cal["timezone"] == "Europe/Moscow"
    consultation, booking = cal["events"]
    assert consultation["conclusion"] is None  # nothing signed yet

    _, draft = await write(app, c.therapist, cid)
    _, cal = await get_json(app, c.patient, "/api/v1/calendar")
    assert cal["events"][0]["conclusion"] is None  # a draft is not shown

    app.clock.advance(3 * MINUTE)
    await write(app, c.therapist, cid, sign=True)
    _, cal = await get_json(app, c.patient, "/api/v1/calendar")
    consultation, booking = cal["events"]
    assert consultation["type"] == "consultation" and consultation["consultation_id"] == cid
    assert consultation["starts_at"] == "2026-01-15T12:00:00+03:00"  # 09:00 UTC in Moscow
    assert instant(consultation["starts_at"]) == t_start
    assert instant(consultation["ends_at"]) == t_closed
    summary = consultation["conclusion"]
    assert summary["conclusion_id"] == draft["conclusion_id"]
    assert (summary["text"], summary["recommendations"]) == (FINDINGS, ADVICE)
    assert summary["signed_at"].endswith("+03:00")
    assert consultation["title"] == "Срочная консультация (видео): заключение готово"
    assert booking["type"] == "appointment" and booking["appointment_id"] == appointment
    assert booking["starts_at"] == "2026-01-20T10:30:00+03:00"
    assert booking["status"] == "booked" and booking["conclusion"] is None

    resp = await app.client.patch(
        "/api/v1/me", json={"timezone": "Asia/Vladivostok"}, headers=c.patient.auth
    )
    assert resp.status == 200
    _, moved = await get_json(app, c.patient, "/api/v1/calendar")
    assert moved["timezone"] == "Asia/Vladivostok"
    assert [e["starts_at"] for e in moved["events"]] == [
        "2026-01-15T19:00:00+10:00",
        "2026-01-20T17:30:00+10:00",
    ]
    for before, after in zip(cal["events"], moved["events"], strict=True):
        assert instant(before["starts_at"]) == instant(after["starts_at"])  # the same instants
        assert instant(before["ends_at"]) == instant(after["ends_at"])
    assert moved["events"][0]["conclusion"]["signed_at"].endswith("+10:00")

    ics = await ics_of(app, c.patient.auth)
    assert str(ics["X-WR-TIMEZONE"]) == "Asia/Vladivostok"
    assert ics.walk("VTIMEZONE") == []  # times in UTC: every client reads them alike
    events = vevents(ics)
    assert set(events) == {f"consultation-{cid}@telemed", f"appointment-{appointment}@telemed"}
    for json_event in moved["events"]:
        key = json_event["consultation_id"] if json_event["type"] == "consultation" else None
        uid = f"consultation-{key}@telemed" if key else f"appointment-{appointment}@telemed"
        vevent = events[uid]
        start = vevent.decoded("DTSTART")
        assert start == instant(json_event["starts_at"])
        assert start.utcoffset() == timedelta(0)
        assert vevent.decoded("DTEND") == instant(json_event["ends_at"])
        assert str(vevent["SUMMARY"]) == json_event["title"]


async def test_the_feed_and_the_ics_carry_no_medical_text_only_titles_and_links(
    app: Running,
) -> None:
    """The iCalendar export holds a title and a link per event, never the conclusion."""
    c = await cast(app)
    cid = await finished_consultation(c)
    await write(app, c.therapist, cid, sign=True, follow_up="Контроль анализа крови")
    raw = await (await app.client.get("/api/v1/calendar.ics", headers=c.patient.auth)).read()
    text = Calendar.from_ical(raw).to_ical().decode()
    for medical in (FINDINGS, ADVICE, "Контроль анализа крови", "ринофарингит"):
        assert medical not in text and medical not in raw.decode()
    (event,) = Calendar.from_ical(raw).walk("VEVENT")
    base = str(app.client.make_url("/")).rstrip("/")
    assert str(event["URL"]) == f"{base}/#/records/{cid}"
    assert set(event) == {
        "UID",
        "DTSTAMP",
        "LAST-MODIFIED",
        "DTSTART",
        "DTEND",
        "SUMMARY",
        "URL",
        "DESCRIPTION",
        "SEQUENCE",
        "STATUS",
        "TRANSP",
    }


async def test_uids_stay_and_sequence_grows_when_an_event_changes(app: Running) -> None:
    """A cancelled appointment stays with STATUS:CANCELLED and a higher SEQUENCE; a correction
    of the conclusion bumps the consultation's SEQUENCE (subscribed phones update)."""
    c = await cast(app)
    cid = await finished_consultation(c)
    await write(app, c.therapist, cid, sign=True)
    appointment = await add_appointment(
        app, c.patient.id, c.therapist.id, app.clock.now() + timedelta(days=2)
    )
    before = vevents(await ics_of(app, c.patient.auth))

    await cancel_appointment(app, appointment)
    await write(app, c.therapist, cid, text="уточнено", sign=True, reason="уточнение")
    after = vevents(await ics_of(app, c.patient.auth))

    assert set(before) == set(after)
    a_uid, c_uid = f"appointment-{appointment}@telemed", f"consultation-{cid}@telemed"
    assert (str(before[a_uid]["STATUS"]), str(after[a_uid]["STATUS"])) == (
        "CONFIRMED",
        "CANCELLED",
    )
    assert int(after[a_uid]["SEQUENCE"]) > int(before[a_uid]["SEQUENCE"])
    assert int(after[c_uid]["SEQUENCE"]) > int(before[c_uid]["SEQUENCE"])
    assert str(after[a_uid]["SUMMARY"]).startswith("Отменено")

    _, cal = await get_json(app, c.patient, "/api/v1/calendar")
    cancelled = next(e for e in cal["events"] if e["type"] == "appointment")
    assert cancelled["status"] == "cancelled"


async def test_the_window_bounds_the_events_and_local_times_are_the_patients(
    app: Running,
) -> None:
    """R-CAL-1: `from`/`to` without an offset are the patient's local times."""
    c = await cast(app)
    # 2026-01-20 00:30 in Moscow is 2026-01-19 21:30 UTC.
    early = await add_appointment(
        app, c.patient.id, c.therapist.id, datetime(2026, 1, 19, 21, 30, tzinfo=UTC)
    )
    late = await add_appointment(
        app, c.patient.id, c.therapist.id, datetime(2026, 1, 21, 9, tzinfo=UTC)
    )

    _, cal = await get_json(
        app, c.patient, "/api/v1/calendar", **{"from": "2026-01-20T00:00:00", "to": "2026-01-21"}
    )
    assert [e["appointment_id"] for e in cal["events"]] == [early]
    assert cal["from"] == "2026-01-20T00:00:00+03:00" and cal["to"] == "2026-01-21T00:00:00+03:00"

    _, cal = await get_json(
        app,
        c.patient,
        "/api/v1/calendar",
        **{"from": "2026-01-20T00:00:00+00:00", "to": "2026-01-22T00:00:00+00:00"},
    )
    assert [e["appointment_id"] for e in cal["events"]] == [late]

    _, cal = await get_json(app, c.patient, "/api/v1/calendar")
    assert [e["appointment_id"] for e in cal["events"]] == [early, late]

    for bad in (
        {"from": "2026-01-21", "to": "2026-01-20"},
        {"from": "2026-01-01", "to": "2027-03-01"},
    ):
        status, body = await get_json(app, c.patient, "/api/v1/calendar", **bad)
        assert status == 422 and body["error"]["code"] == "bad_range"
    status, body = await get_json(app, c.patient, "/api/v1/calendar", **{"from": "soon"})
    assert status == 422 and body["error"]["code"] == "validation_error"


async def test_another_patients_events_never_show_and_staff_have_no_calendar_of_their_own(
    app: Running,
) -> None:
    """Staff read a calendar only by naming a patient they care for (issue 14): none else."""
    c = await cast(app)
    cid = await finished_consultation(c)
    await write(app, c.therapist, cid, sign=True)
    stranger = await patient(app, OTHER_PHONE, "P-2")
    _, cal = await get_json(app, stranger, "/api/v1/calendar")
    assert cal["events"] == []
    _, records = await get_json(app, stranger, "/api/v1/records")
    assert records["items"] == []
    status, _ = await get_json(app, c.therapist, "/api/v1/calendar")
    assert status == 404
    status, _ = await get_json(app, c.patient, f"/api/v1/calendar?patient_id={stranger.id}")
    assert status == 404


async def test_the_calendar_needs_the_consent(app: Running) -> None:
    """R-CONSENT-1: the api layer gates the patient routes."""
    c = await cast(app)
    resp = await app.client.delete("/api/v1/me/consent", headers=c.patient.auth)
    assert resp.status == 204
    for path in ("/api/v1/calendar", "/api/v1/calendar.ics", "/api/v1/records"):
        status, body = await get_json(app, c.patient, path)
        assert status == 403 and body["error"]["code"] == "consent_required"


async def test_my_records_list_every_consultation_with_its_state(app: Running) -> None:
    """ "My records": closed and open consultations, newest first, with the signed conclusion."""
    c = await cast(app)
    first = await finished_consultation(c)
    _, signed = await write(app, c.therapist, first, sign=True)
    app.clock.advance(timedelta(hours=2))
    started = await app.services.consultations.start(c.patient.id, Channel.CHAT)
    _, records = await get_json(app, c.patient, "/api/v1/records")
    assert records["timezone"] == "Europe/Moscow"
    assert [(r["consultation_id"], r["state"], r["conclusion_id"]) for r in records["items"]] == [
        (started.consultation.id, "waiting_consultant", None),
        (first, "closed", signed["conclusion_id"]),
    ]
    assert records["items"][1]["close_reason"] == "finished"
    assert records["items"][1]["created_at"].endswith("+03:00")

    _, cal = await get_json(app, c.patient, "/api/v1/calendar")
    assert [e["consultation_id"] for e in cal["events"]] == [first]  # only past ones


async def test_the_secret_feed_opens_without_a_header_until_rotated_or_revoked(
    app: Running,
) -> None:
    """A phone subscribes to a secret URL; the secret is stored only as its SHA-256."""
    c = await cast(app)
    cid = await finished_consultation(c)
    await write(app, c.therapist, cid, sign=True)

    resp = await app.client.post("/api/v1/calendar/feed", headers=c.patient.auth)
    assert resp.status == 201
    feed = await resp.json()
    path = feed["url"].split(str(app.client.make_url("/")).rstrip("/"), 1)[1]
    secret = path.removeprefix("/ical/").removesuffix(".ics")
    assert feed["webcal_url"].startswith("webcal://") and feed["webcal_url"].endswith(path)

    async with app.services.db.read() as session:
        stored = (await session.scalars(select(CalendarFeed))).one()
    assert stored.patient_id == c.patient.id
    assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest() != secret

    resp = await app.client.get(path)  # no Authorization header
    assert resp.status == 200 and resp.content_type == "text/calendar"
    from_feed = vevents(Calendar.from_ical(await resp.read()))
    from_api = vevents(await ics_of(app, c.patient.auth))
    assert set(from_feed) == set(from_api) == {f"consultation-{cid}@telemed"}

    resp = await app.client.post("/api/v1/calendar/feed", headers=c.patient.auth)
    rotated = (await resp.json())["url"]
    assert rotated != feed["url"]
    assert (await app.client.get(path)).status == 404
    new_path = "/ical/" + rotated.rsplit("/ical/", 1)[1]
    assert (await app.client.get(new_path)).status == 200

    resp = await app.client.delete("/api/v1/calendar/feed", headers=c.patient.auth)
    assert resp.status == 204
    assert (await app.client.get(new_path)).status == 404
    assert (await app.client.get("/ical/short.ics")).status == 404


async def test_the_feed_stops_when_the_consent_is_withdrawn(app: Running) -> None:
    """R-CONSENT-1: no service, the feed included, without the consent."""
    c = await cast(app)
    resp = await app.client.post("/api/v1/calendar/feed", headers=c.patient.auth)
    url = (await resp.json())["url"]
    path = "/ical/" + url.rsplit("/ical/", 1)[1]
    assert (await app.client.get(path)).status == 200
    await app.client.delete("/api/v1/me/consent", headers=c.patient.auth)
    resp = await app.client.get(path)
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "consent_required"


async def test_times_in_moscow_are_shown_in_the_default_zone(app: Running) -> None:
    """R-CAL-1: a patient who never set a zone sees Moscow times (the insurer's)."""
    c = await cast(app)
    at = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
    await add_appointment(app, c.patient.id, c.therapist.id, at)
    _, cal = await get_json(app, c.patient, "/api/v1/calendar")
    (event,) = cal["events"]
    assert instant(event["starts_at"]) == at.astimezone(MOSCOW)
    assert event["starts_at"] == "2026-03-01T09:00:00+03:00"
    assert event["title"] == "Запись: терапевт, видео"
