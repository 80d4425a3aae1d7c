"""A clinic for scheduler tests: the running app, its people, and the hand-driven clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from appkit import Running
from helpers import bearer, patient_token, staff_token
from live import Live

from scheduler.runner import SchedulerRunner
from telemed.app import SCHEDULER
from telemed.roles import Role

ADULT = "A-1,2026-01-01,2026-01-01,2027-12-31,Иванов Иван,1980-03-01,M,+79161234567"
CHILD = "C-1,2026-01-01,2026-01-01,2027-12-31,Петрова Аня,2015-06-01,F,+79167654321"
# The manual clock starts on Thursday 2026-01-15 09:00 UTC = 12:00 in Moscow.
THURSDAY = 3


class Clinic:
    """The running app and the people in it, for scheduler tests."""

    def __init__(self, app: Running, push_file: Path, url: str) -> None:
        self.app = app
        self.push_file = push_file
        self.url = url
        self.clients: list[Live] = []
        self.admin = ""
        self.consultant = ""
        self.consultant_id = ""

    @property
    def runner(self) -> SchedulerRunner:
        return self.app.client.server.app[SCHEDULER]

    async def tick(self) -> dict[str, int]:
        fired = await self.runner.tick()
        return fired.counts

    def pushes(self) -> list[dict[str, Any]]:
        if not self.push_file.exists():
            return []
        return [json.loads(line) for line in self.push_file.read_text().splitlines()]

    async def join(self, token: str, name: str) -> Live:
        client = Live(self.url, token, name)
        self.clients.append(client)
        return await client.connect()

    async def doctor(self, role: Role, login: str, hours: str = "13:00-17:00") -> tuple[str, str]:
        """A doctor with Thursday hours (Moscow); returns (token, id)."""
        token, doctor_id = await staff_token(self.app, role, login)
        starts, ends = hours.split("-")
        resp = await self.app.client.put(
            f"/api/v1/doctors/{doctor_id}/working-hours",
            json={
                "time_zone": "Europe/Moscow",
                "slot_minutes": 15,
                "hours": [{"weekday": THURSDAY, "starts": starts, "ends": ends}],
            },
            headers=bearer(self.admin),
        )
        assert resp.status == 200, await resp.text()
        return token, doctor_id

    async def patient(self, phone: str = "+79161234567") -> str:
        return await patient_token(self.app, phone)

    async def book(
        self, token: str, doctor_id: str, starts_at: str, **extra: Any
    ) -> dict[str, Any]:
        """The consultant books a patient (by patient token's user id) at a time."""
        me = await (await self.app.client.get("/api/v1/me", headers=bearer(token))).json()
        resp = await self.app.client.post(
            "/api/v1/appointments",
            json={
                "patient_id": me["user_id"],
                "doctor_id": doctor_id,
                "starts_at": starts_at,
                "channel": "video",
                **extra,
            },
            headers=bearer(self.consultant),
        )
        assert resp.status == 201, await resp.text()
        return dict(await resp.json())
