"""Two (or more) telemed nodes sharing PostgreSQL and Redis, for scale-out tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from appkit import Running
from live import Live
from prometheus_client.parser import text_string_to_metric_families

from signalling.server import Signalling
from telemed.app import SIGNALLING

REDIS_URL = "redis://127.0.0.1:6379/0"
ADULT = "A-1,2026-01-01,2026-01-01,2027-12-31,Иванов Иван,1980-03-01,M,+79161234567"
CHILD = "C-1,2026-01-01,2026-01-01,2027-12-31,Петрова Аня,2015-06-01,F,+79167654321"


def node_config(prefix: str, presence_ttl: str = "1.5s") -> dict[str, Any]:
    """The settings every node of one test shares: the same Redis names, fast refreshes."""
    return {
        "redis": {"url": REDIS_URL, "prefix": prefix, "presence_ttl": presence_ttl},
        "scheduler": {"lease_key": f"{prefix}:lease"},
        "signalling": {"queue_refresh_interval": "10ms"},
    }


def signalling_of(node: Running) -> Signalling:
    return node.client.server.app[SIGNALLING]


async def metric_value(
    node: Running, name: str, absent: float | None = None, **labels: str
) -> float:
    """One sample of the node's /metrics, as Prometheus would scrape it. A sample that is not
    exported fails the test, so `== 0` can never pass on a missing metric; only a baseline
    read before anything happened (a labelled counter appears on first use) passes `absent`
    for the value it stands for."""
    async with node.client.get("/metrics") as resp:
        assert resp.status == 200, await resp.text()
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    if absent is None:
        raise AssertionError(f"{name}{labels or ''} is not exported by /metrics")
    return absent


def url_of(node: Running) -> str:
    return str(node.client.make_url("/"))


async def until(check: Callable[[], bool], within: float, what: str) -> None:
    """Wait (bounded) for something another node does in the background."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Nodes:
    """Node `a` and node `b` of one deployment, and the clients connected to them."""

    a: Running
    b: Running
    clients: list[Live] = field(default_factory=list)

    async def join(self, node: Running, token: str, name: str, **auth: Any) -> Live:
        client = Live(url_of(node), token, name)
        self.clients.append(client)
        return await client.connect(**auth)

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """One real `telemed serve` process, as a load balancer would see it."""

    def __init__(self, workdir: Path, name: str, settings: dict[str, Any]) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        config = workdir / f"{name}.yaml"
        config.write_text(yaml.safe_dump(settings))
        self.log_path = workdir / f"{name}.log"
        self.log = self.log_path.open("w")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMED_")}
        command = [sys.executable, "-m", "telemed.cli", "serve", "--config", str(config)]
        self.proc = subprocess.Popen(
            [*command, "--port", str(self.port)],
            cwd=workdir,
            stdout=self.log,
            stderr=self.log,
            env=env,
        )

    async def ready(self, within: float = 60) -> None:
        """Wait (bounded) for /healthz to answer 200."""
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(self.url + "healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError(f"{self.name} did not start: {self.log_path.read_text()}")
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as when a machine dies."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


async def staff_login(base_url: str, login: str, password: str = "secret-pass") -> str:
    """A staff token from a node's REST API (a real node runs on the real clock)."""
    async with aiohttp.ClientSession(base_url) as http:
        body = {"login": login, "password": password}
        async with http.post("/api/v1/auth/staff", json=body) as resp:
            assert resp.status == 200, await resp.text()
            return str((await resp.json())["token"])


def last_code(sms_file: Path, phone: str) -> str | None:
    lines = sms_file.read_text().splitlines() if sms_file.exists() else []
    codes = [m["code"] for m in map(json.loads, lines) if m["to"] == phone and m["code"]]
    return str(codes[-1]) if codes else None


async def patient_login(base_url: str, phone: str, sms_file: Path) -> str:
    """Phone + SMS code (read from the node's `file` SMS backend), then the consent."""
    async with aiohttp.ClientSession(base_url) as http:
        async with http.post("/api/v1/auth/otp", json={"phone": phone}) as resp:
            assert resp.status == 202, await resp.text()
        code = None
        deadline = time.monotonic() + 10
        while code is None:
            code = last_code(sms_file, phone)
            if code is None:
                assert time.monotonic() < deadline, "no SMS code"
                await asyncio.sleep(0.05)
        async with http.post("/api/v1/auth/otp/verify", json={"phone": phone, "code": code}) as r:
            assert r.status == 200, await r.text()
            token = str((await r.json())["token"])
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get("/api/v1/consent") as resp:
            version = (await resp.json())["version"]
        async with http.post("/api/v1/me/consent", json={"version": version}, headers=headers) as r:
            assert r.status == 201, await r.text()
        return token
