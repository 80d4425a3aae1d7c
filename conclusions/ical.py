"""The patient calendar as iCalendar (RFC 5545), for `calendar.ics` and the subscription feed.

The same events as the JSON calendar. Times are written in UTC (`...Z`), which every
client reads the same way: a VTIMEZONE built from the time-zone database (past
transitions as multi-value RDATEs) was read an hour off for Europe/Moscow by ical.js and
vobject. `X-WR-TIMEZONE` still names the patient's zone for clients that show it.
Each event keeps a stable UID; its SEQUENCE grows when it changes and its DTSTAMP is the
time of that change, so a refetch of an unchanged feed is byte-for-byte the same;
a cancelled appointment stays with STATUS:CANCELLED so that subscribed phones
remove it. No medical text goes into the feed: a title and a link only.

A patient may also have one secret feed URL (`/ical/{secret}.ics`) that a
phone calendar subscribes to without a header; only the secret's SHA-256 is
stored, and rotating or revoking it closes the old URL at once.
"""

from __future__ import annotations

from datetime import UTC, timedelta

from icalendar import Calendar, vDuration
from icalendar import Event as VEvent
from sqlalchemy import delete, select

from conclusions.calendar import Event, PatientCalendar
from telemed.clock import Clock
from telemed.db import Database
from telemed.models import CalendarFeed
from telemed.security import new_token, token_digest
from telemed.services.audit import Who, record

PRODID = "-//telemed//calendar//RU"
REFRESH = timedelta(hours=1)


def render(calendar: PatientCalendar, *, base_url: str) -> bytes:
    """The events of `calendar` as an iCalendar document; links are made absolute."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", "Telemed")
    cal.add("x-wr-timezone", calendar.timezone)
    cal.add("refresh-interval", REFRESH, parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", vDuration(REFRESH))
    for event in calendar.events:
        cal.add_component(_vevent(event, base_url.rstrip("/")))
    ical: bytes = cal.to_ical()
    return ical


def _vevent(event: Event, base_url: str) -> VEvent:
    link = base_url + event.link
    vevent = VEvent()
    vevent.add("uid", event.uid)
    vevent.add("dtstamp", event.changed_at.astimezone(UTC))
    vevent.add("last-modified", event.changed_at.astimezone(UTC))
    vevent.add("dtstart", event.starts_at.astimezone(UTC))
    vevent.add("dtend", event.ends_at.astimezone(UTC))
    vevent.add("summary", event.title)
    vevent.add("url", link)
    vevent.add("description", f"Подробности в приложении: {link}")
    vevent.add("sequence", event.sequence)
    vevent.add("status", "CANCELLED" if event.cancelled else "CONFIRMED")
    vevent.add("transp", "TRANSPARENT" if event.cancelled else "OPAQUE")
    return vevent


async def rotate_feed(db: Database, clock: Clock, who: Who) -> str:
    """Create or replace the patient's secret feed; the old URL stops working at once.
    Returns the new secret (only its SHA-256 is stored)."""
    secret = new_token()
    now = clock.now()
    async with db.write() as session:
        feed = await session.scalar(select(CalendarFeed).where(CalendarFeed.patient_id == who.id))
        if feed is None:
            session.add(
                CalendarFeed(patient_id=who.id, secret_hash=token_digest(secret), created_at=now)
            )
        else:
            feed.secret_hash = token_digest(secret)
            feed.created_at = now
        record(
            session,
            at=now,
            who=who,
            action="calendar_feed_rotate",
            object_type="calendar_feed",
            object_id=str(who.id),
        )
    return secret


async def revoke_feed(db: Database, clock: Clock, who: Who) -> None:
    """Delete the patient's secret feed (its URL then answers not found)."""
    async with db.write() as session:
        await session.execute(delete(CalendarFeed).where(CalendarFeed.patient_id == who.id))
        record(
            session,
            at=clock.now(),
            who=who,
            action="calendar_feed_revoke",
            object_type="calendar_feed",
            object_id=str(who.id),
        )


async def feed_owner(db: Database, secret: str) -> str | None:
    """The patient whose feed this secret opens, if any."""
    async with db.read() as session:
        return await session.scalar(
            select(CalendarFeed.patient_id).where(CalendarFeed.secret_hash == token_digest(secret))
        )
