"""docs/realtime.md says exactly what is sent: a recorded urgent flow (start, queue, accept,
chat, transfer by age, the doctor's leg to its limit, back to the consultant, close) emits
only documented events, each with only documented fields, and every event the flow is
meant to show is among them."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from appkit import Running
from helpers import patient_token, staff_token

from telemed.app import SCHEDULER
from telemed.roles import Role

DOC = Path(__file__).resolve().parents[2] / "docs" / "realtime.md"


def documented_server_events() -> dict[str, set[str]]:
    """The "Server -> client" table: event name -> the top-level fields of its payload."""
    text = DOC.read_text(encoding="utf-8")
    table = text.split("## Server -> client", 1)[1].split("\n## ", 1)[0]
    events: dict[str, set[str]] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`([a-z:]+)`", cells[0]) if len(cells) > 1 else None
        if match is None:
            continue
        events[match.group(1)] = top_level_fields("|".join(cells[1:]))
    return events


def top_level_fields(cell: str) -> set[str]:
    """The keys of the first `{...}` in a cell, without those of nested objects."""
    start = cell.index("{")
    depth, inner = 0, []
    for char in cell[start:]:
        depth += char == "{"
        depth -= char == "}"
        if depth == 1 and char != "{":
            inner.append(char)
        elif depth == 0:
            break
    fields = set()
    for part in "".join(inner).split(","):
        name = part.split(":", 1)[0].strip().rstrip("?")
        if name:
            fields.add(name)
    return fields


def test_the_doc_table_is_read() -> None:
    events = documented_server_events()
    assert events["consultation:state"] >= {"consultation_id", "state", "server_time"}
    assert events["queue:left"] == {"role", "consultation_id", "reason", "server_time"}


@pytest.fixture
def live_config() -> dict[str, Any]:
    return {"signalling": {"queue_refresh_interval": "10ms"}, "scheduler": {"enabled": False}}


async def test_a_recorded_urgent_flow_emits_only_what_the_doc_says(live: Any) -> None:
    """R-URG-1..5 as the wire carries it, checked against docs/realtime.md."""
    app: Running = live.running
    consultant = await live.join((await staff_token(app, Role.CONSULTANT))[0], "consultant")
    therapist = await live.join((await staff_token(app, Role.THERAPIST))[0], "therapist")
    await consultant.ok("queue:watch")
    await therapist.ok("queue:watch")
    patient = await live.join(await patient_token(app, "+79161234567"), "patient")
    cid = (await patient.ok("consultation:start", {"channel": "video"}))["consultation_id"]
    await consultant.wait("queue:joined")
    await consultant.ok("consultation:accept", {})
    await patient.wait_state(cid, "with_consultant")
    await patient.ok("consultation:start", {"channel": "video"})  # a second start: same one
    await patient.ok("chat:send", {"consultation_id": cid, "text": "hello"})
    await consultant.wait("chat:message")
    await consultant.ok("signal", {"consultation_id": cid, "data": {"type": "offer", "sdp": "x"}})
    await patient.wait("signal")
    await consultant.ok("consultation:transfer", {"consultation_id": cid, "to": "duty_doctor"})
    await therapist.wait("queue:joined")
    await therapist.ok("consultation:accept", {"consultation_id": cid})
    await patient.wait_state(cid, "with_doctor")
    app.clock.advance(timedelta(minutes=28, seconds=30))
    runner = app.client.server.app[SCHEDULER]
    await runner.tick()
    await patient.wait("limit:warning")
    app.clock.advance(timedelta(minutes=2))
    await runner.tick()
    await patient.wait("limit:reached")
    await patient.wait_state(cid, "with_consultant")
    await consultant.ok("consultation:close", {"consultation_id": cid})
    await patient.wait("consultation:closed")

    documented = documented_server_events()
    seen: dict[str, set[str]] = {}
    for client in (patient, consultant, therapist):
        for name, data in client.received:
            assert name in documented, f"{name} is sent but not in docs/realtime.md"
            extra = set(data) - documented[name]
            assert not extra, f"{name} carries undocumented fields {sorted(extra)}"
            seen.setdefault(name, set()).update(data)
    expected = {
        "session",
        "consultation:state",
        "queue:joined",
        "queue:left",
        "chat:message",
        "chat:history",
        "signal",
        "call:hangup",
        "limit:warning",
        "limit:reached",
        "consultation:closed",
    }
    assert expected <= set(seen), sorted(expected - set(seen))
