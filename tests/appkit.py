"""The running app as tests see it: its HTTP client, clock, services and the SMS sent."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from telemed.clock import ManualClock
from telemed.config import Settings, settings_from_mapping
from telemed.context import SERVICES, Services


@dataclass
class Running:
    """A running app: its HTTP client, clock, services and the SMS the patient would get."""

    client: TestClient  # type: ignore[type-arg]
    clock: ManualClock
    sms_file: Path
    settings: Settings

    @property
    def services(self) -> Services:
        return self.client.server.app[SERVICES]

    def sms(self) -> list[dict[str, Any]]:
        if not self.sms_file.exists():
            return []
        return [json.loads(line) for line in self.sms_file.read_text().splitlines()]

    async def last_code(self, phone: str) -> str:
        await self.services.auth.drain()
        codes = [m["code"] for m in self.sms() if m["to"] == phone and m["code"]]
        assert codes, f"no SMS code was sent to {phone}"
        return str(codes[-1])


def make_settings(db_url: str, sms_file: Path, **overrides: Any) -> Settings:
    data: dict[str, Any] = {
        "database": {"url": db_url},
        "sms": {"backend": "file", "path": str(sms_file)},
        "logging": {"json": False},
    }
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return settings_from_mapping(data)
