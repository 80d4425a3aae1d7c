"""Logs an operator can read: `telemed serve` writes one JSON object per line, libraries'
routine INFO (APScheduler's job runs, alembic's migration context) stays out, so a node left
idle writes nothing; `--log-level DEBUG` lets it back in. The scheduler sweeps and renews its
lease many times a second here (short intervals from the config) instead of a minute of
waiting."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

TELEMED = [sys.executable, "-m", "telemed.cli"]
START_WITHIN = 120.0
IDLE = 3.0  # seconds: 30 sweeps and about 20 lease renewals at the intervals below


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=5) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def serve(tmp_path: Path, *extra: str) -> Iterator[Path]:
    """A node with a 0.1 s sweep and a 0.5 s lease; yields its log once it is healthy."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f"database: {{url: 'sqlite+aiosqlite:///{tmp_path / 't.db'}'}}\n"
        "scheduler: {sweep_interval: 100ms, lease_ttl: 500ms}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMED_")}
    port = _free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [*TELEMED, "--config", str(config), "serve", "--port", str(port), *extra],
            cwd=tmp_path,
            stdout=log,
            stderr=log,
            env=env,
        )
        deadline = time.monotonic() + START_WITHIN
        while not _healthy(f"http://127.0.0.1:{port}"):
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("telemed serve did not start: " + log_path.read_text())
            time.sleep(0.1)
        try:
            yield log_path
        finally:
            proc.terminate()
            proc.wait(timeout=20)


@pytest.fixture
def quiet(tmp_path: Path) -> Iterator[Path]:
    yield from serve(tmp_path)


@pytest.fixture
def verbose(tmp_path: Path) -> Iterator[Path]:
    yield from serve(tmp_path, "--log-level", "DEBUG")


def lines(log: Path) -> list[dict[str, object]]:
    """Every line of the log, each of which must be one JSON object."""
    entries = []
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        assert isinstance(entry, dict) and {"at", "level", "logger", "message"} <= set(entry)
        entries.append(entry)
    return entries


def settled(log: Path, still: float = 1.0, within: float = 15.0) -> None:
    """Wait for the start-up to finish logging (its first scheduler pass may come just after
    /healthz answers): the log unchanged for `still` seconds."""
    deadline = time.monotonic() + within
    size, since = log.stat().st_size, time.monotonic()
    while time.monotonic() - since < still:
        if time.monotonic() > deadline:
            pytest.fail("the start-up never stopped logging: " + log.read_text()[-2000:])
        time.sleep(0.1)
        now = log.stat().st_size
        if now != size:
            size, since = now, time.monotonic()


def test_an_idle_node_writes_no_log_line(quiet: Path) -> None:
    settled(quiet)
    started = lines(quiet)
    assert not [e for e in started if str(e["logger"]).split(".")[0] in ("apscheduler", "alembic")]
    time.sleep(IDLE)
    assert lines(quiet) == started


def test_log_level_debug_shows_the_scheduler_at_work(verbose: Path) -> None:
    time.sleep(1.0)
    loggers = {str(e["logger"]).split(".")[0] for e in lines(verbose)}
    assert "apscheduler" in loggers
