"""The `telemed` command as users run it: real processes, a real port, the real log."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TELEMED = [sys.executable, "-m", "telemed.cli"]


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        TELEMED + args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=SERVE_START_WITHIN * 2,  # `demo` took 78 s on the loaded machine
        env={**_base_env(), **env},
    )


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("TELEMED_")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(
    method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


# A cold start imports aiortc, SQLAlchemy and the migrations: seconds on an idle machine,
# far more on a loaded 2-core CI box; a process that exits fails at once instead.
SERVE_START_WITHIN = 120.0


def healthy(base: str) -> bool:
    """Whether /healthz answers 200 (not yet listening counts as no)."""
    try:
        return http("GET", base + "/healthz")[0] == 200
    except OSError:
        return False


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty directory, as after a fresh clone: no config file, default SQLite path."""
    return tmp_path


@pytest.fixture
def served(workdir: Path) -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    """`telemed demo` then `telemed serve` on the embedded default, as the README says."""
    demo = run(["demo"], workdir)
    assert demo.returncode == 0, demo.stderr
    port = free_port()
    log_path = workdir / "serve.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [*TELEMED, "serve", "--port", str(port)],
        cwd=workdir,
        stdout=log,
        stderr=log,
        text=True,
        env=_base_env(),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVE_START_WITHIN
    while not healthy(base):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            proc.wait(timeout=10)
            pytest.fail("telemed serve did not become healthy: " + log_path.read_text())
        time.sleep(0.1)
    yield base, proc, log_path
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def test_demo_prints_how_to_log_in_as_the_patient_and_each_staff_role(workdir: Path) -> None:
    out = run(["demo"], workdir)
    assert out.returncode == 0, out.stderr
    for word in [
        "+79161110001",
        "consultant",
        "therapist",
        "paediatrician",
        "specialist",
        "psychologist",
        "admin",
    ]:
        assert word in out.stdout
    assert re.search(r"\b[1-9]\d* free slots", out.stdout)  # doctors have bookable times
    again = run(["demo"], workdir)  # loading twice is harmless
    assert again.returncode == 0, again.stderr
    assert (workdir / "data" / "telemed.db").is_file()


def test_a_demo_patient_logs_in_with_the_code_from_the_log(
    served: tuple[str, subprocess.Popen[str], Path],
) -> None:
    """R-AUTH-1 on the embedded default: SMS goes to the log, the patient enters the code."""
    base, _, log_path = served
    status, _ = http("POST", base + "/api/v1/auth/otp", {"phone": "+79161110001"})
    assert status == 202
    code = None
    for _ in range(50):
        found = re.findall(r"DEV SMS to \+7916\*\*\*0001: \D*(\d{6})", log_path.read_text())
        if found:
            code = found[-1]
            break
        time.sleep(0.1)
    assert code, log_path.read_text()
    status, body = http(
        "POST", base + "/api/v1/auth/otp/verify", {"phone": "+79161110001", "code": code}
    )
    assert status == 200 and body["role"] == "patient"
    status, staff = http(
        "POST", base + "/api/v1/auth/staff", {"login": "consultant", "password": "demo-consultant"}
    )
    assert status == 200 and staff["role"] == "consultant"
    # The token itself never reaches the log.
    assert body["token"] not in log_path.read_text()
    assert staff["token"] not in log_path.read_text()


def test_the_service_keeps_its_data_across_a_restart(
    served: tuple[str, subprocess.Popen[str], Path],
    workdir: Path,
) -> None:
    base, proc, _ = served
    status, staff = http(
        "POST", base + "/api/v1/auth/staff", {"login": "admin", "password": "demo-admin"}
    )
    assert status == 200
    proc.terminate()
    proc.wait(timeout=10)
    port = base.rsplit(":", 1)[1]
    again = subprocess.Popen(
        [*TELEMED, "serve", "--port", port],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_base_env(),
    )
    try:
        deadline = time.monotonic() + SERVE_START_WITHIN
        while not healthy(base):
            assert again.poll() is None, "the restarted serve exited"
            assert time.monotonic() < deadline, "the restarted serve did not become healthy"
            time.sleep(0.1)
        status, me = http("GET", base + "/api/v1/me", token=staff["token"])
        assert status == 200 and me["role"] == "admin"
    finally:
        again.terminate()
        again.wait(timeout=10)


def test_import_insured_reports_bad_rows_by_line_and_keeps_good_ones(workdir: Path) -> None:
    """R-ID-1: bad rows are reported with their line numbers; good rows are imported."""
    csv = workdir / "insured.csv"
    csv.write_text(
        "policy_number,purchased_on,valid_from,valid_to,full_name,birth_date,sex,phone\n"
        "A-1,2026-01-01,2026-01-01,2026-12-31,Сидоров Пётр,1970-01-02,M,+79161230001\n"
        "A-2,2026-01-01,2026-01-01,2026-12-31,Кто-то,1970-13-40,M,+79161230002\n"
        "A-3,2026-01-01,2026-01-01,2026-12-31,Орлова Вера,1990-05-05,F,not-a-phone\n"
        "A-4,2026-01-01,2026-01-01,2026-12-31,Лебедев Олег,2001-07-07,M,89161230004\n",
        encoding="utf-8",
    )
    first = run(["import-insured", str(csv)], workdir)
    assert first.returncode == 1  # some rows were bad
    assert "created 2" in first.stdout
    assert re.search(r"line 3\b.*birth_date", first.stdout)
    assert re.search(r"line 4\b.*phone", first.stdout)
    assert "+79161230004" not in first.stdout  # no personal data echoed
    second = run(["import-insured", str(csv)], workdir)
    assert "created 0" in second.stdout and "unchanged 2" in second.stdout


def test_staff_add_creates_an_account_that_can_log_in(workdir: Path) -> None:
    out = run(
        [
            "staff",
            "add",
            "--role",
            "therapist",
            "--login",
            "dr-house",
            "--password",
            "vicodin-42",
            "--name",
            "Dr House",
        ],
        workdir,
    )
    assert out.returncode == 0, out.stderr
    dup = run(
        ["staff", "add", "--role", "therapist", "--login", "dr-house", "--password", "vicodin-42"],
        workdir,
    )
    assert dup.returncode == 1 and "login_taken" in dup.stderr
    bad = run(
        ["staff", "add", "--role", "surgeon", "--login", "x", "--password", "12345678"], workdir
    )
    assert bad.returncode == 2


def test_a_bad_config_value_stops_the_start_naming_the_key(workdir: Path) -> None:
    (workdir / "bad.yaml").write_text("rules:\n  urgent_limit: forever\n")
    out = run(["serve", "--config", "bad.yaml"], workdir)
    assert out.returncode == 2
    assert "rules.urgent_limit" in out.stderr
    env_out = run(["migrate"], workdir, TELEMED_RULES__NO_SHOW_AFTER="-1m")
    assert env_out.returncode == 2 and "rules.no_show_after" in env_out.stderr


def test_migrate_creates_the_schema(workdir: Path) -> None:
    out = run(["migrate"], workdir)
    assert out.returncode == 0, out.stderr
    assert (workdir / "data" / "telemed.db").is_file()
