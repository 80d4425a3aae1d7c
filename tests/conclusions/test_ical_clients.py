"""The iCalendar feed as clients the project did not write read it (R-CAL-1): Mozilla's
ical.js (Thunderbird and many web calendars, run through node), vobject and icalendar all
put every event at the instant the JSON calendar gives, in zones with and without summer
time and with a history of changes (Moscow, Vladivostok, Kaliningrad, Berlin); DTSTAMP is
the time of the event's last change, so refetching an unchanged feed gives the same bytes."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import vobject
from appkit import Running
from conclusion_kit import (
    MINUTE,
    add_appointment,
    cancel_appointment,
    cast,
    finished_consultation,
    get_json,
    write,
)
from icalendar import Calendar

ZONES = ("Europe/Moscow", "Asia/Vladivostok", "Europe/Kaliningrad", "Europe/Berlin")
READER = Path(__file__).with_name("ical_read.mjs")
REPO = Path(__file__).resolve().parents[2]

Times = dict[str, tuple[datetime, datetime, datetime]]


def read_with_ical_js(raw: bytes) -> Times:
    """Every event's start, end and stamp as ical.js (the npm devDependency) reads them."""
    node = shutil.which("node")
    assert node, "the iCalendar client test needs Node.js (npm ci installs ical.js)"
    assert (REPO / "node_modules" / "ical.js").is_dir(), "run npm ci (ical.js is a devDependency)"
    done = subprocess.run(
        [node, str(READER)], input=raw, capture_output=True, check=True, timeout=60
    )
    return {
        uid: (_iso(start), _iso(end), _iso(stamp))
        for uid, (start, end, stamp) in json.loads(done.stdout).items()
    }


def read_with_vobject(raw: bytes) -> Times:
    cal = vobject.readOne(raw.decode())
    return {
        str(ev.uid.value): (
            ev.dtstart.value.astimezone(UTC),
            ev.dtend.value.astimezone(UTC),
            ev.dtstamp.value.astimezone(UTC),
        )
        for ev in cal.vevent_list
    }


def read_with_icalendar(raw: bytes) -> Times:
    return {
        str(ev["UID"]): (
            ev.decoded("DTSTART").astimezone(UTC),
            ev.decoded("DTEND").astimezone(UTC),
            ev.decoded("DTSTAMP").astimezone(UTC),
        )
        for ev in Calendar.from_ical(raw).walk("VEVENT")
    }


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def ics_bytes(app: Running, headers: dict[str, str]) -> bytes:
    resp = await app.client.get("/api/v1/calendar.ics", headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.read()


async def test_ical_js_vobject_and_icalendar_put_every_event_at_the_same_instant(
    app: Running,
) -> None:
    """R-CAL-1: the feed's times mean the same instant to every common reader, in four zones
    (a 16:00 Moscow booking once came out an hour early in ical.js and vobject)."""
    c = await cast(app)
    cid = await finished_consultation(c)
    await write(app, c.therapist, cid, sign=True)
    for at in (
        datetime(2026, 1, 20, 13, 0, tzinfo=UTC),  # 16:00 in Moscow
        datetime(2026, 3, 28, 15, 0, tzinfo=UTC),  # the day before Berlin's summer time
        datetime(2026, 3, 30, 15, 0, tzinfo=UTC),  # the day after
    ):
        await add_appointment(app, c.patient.id, c.therapist.id, at)

    for zone in ZONES:
        resp = await app.client.patch("/api/v1/me", json={"timezone": zone}, headers=c.patient.auth)
        assert resp.status == 200
        _, cal = await get_json(app, c.patient, "/api/v1/calendar")
        assert cal["timezone"] == zone and len(cal["events"]) == 4
        expected = {
            (e["appointment_id"] if e["type"] == "appointment" else e["consultation_id"]): (
                datetime.fromisoformat(e["starts_at"]),
                datetime.fromisoformat(e["ends_at"]),
            )
            for e in cal["events"]
        }
        raw = await ics_bytes(app, c.patient.auth)
        readers = {
            "ical.js": read_with_ical_js(raw),
            "vobject": read_with_vobject(raw),
            "icalendar": read_with_icalendar(raw),
        }
        for name, times in readers.items():
            got = {
                uid.split("-", 1)[1].removesuffix("@telemed"): (start, end)
                for uid, (start, end, _) in times.items()
            }
            assert got == expected, (zone, name)
        assert readers["ical.js"] == readers["vobject"] == readers["icalendar"], zone


async def test_dtstamp_is_the_last_change_and_an_unchanged_feed_refetches_identically(
    app: Running,
) -> None:
    """RFC 5545 3.8.7.2: without METHOD, DTSTAMP is when the event last changed in the store;
    a refetch later gives the same feed, a cancellation stamps its own time."""
    c = await cast(app)
    cid = await finished_consultation(c)
    app.clock.advance(5 * MINUTE)
    await write(app, c.therapist, cid, sign=True)
    signed_at = app.clock.now()
    booked_at = app.clock.now()
    appointment = await add_appointment(
        app, c.patient.id, c.therapist.id, app.clock.now() + timedelta(days=3)
    )

    first = await ics_bytes(app, c.patient.auth)
    app.clock.advance(timedelta(hours=2))
    assert await ics_bytes(app, c.patient.auth) == first

    stamps = {uid: stamp for uid, (_, _, stamp) in read_with_icalendar(first).items()}
    assert stamps[f"appointment-{appointment}@telemed"] == booked_at
    assert stamps[f"consultation-{cid}@telemed"] == signed_at

    cancelled_at = app.clock.now()
    await cancel_appointment(app, appointment)
    after = read_with_ical_js(await ics_bytes(app, c.patient.auth))
    assert after[f"appointment-{appointment}@telemed"][2] == cancelled_at
    assert after[f"consultation-{cid}@telemed"][2] == signed_at
