"""The OpenAPI document describes exactly what is served, checked by a client the project did
not write: schemathesis (Python API, every check) against a real `telemed serve` node with the
demo data, as a patient and as a consultant. Any failure fails the test, with schemathesis's
own report of it (a curl command that reproduces it).

What the document cannot say, and the run is told instead:
- `POST /auth/logout` and `DELETE /me/consent` are left out: they end the very session (or
  the consent) the run calls with, and have their own tests (test_auth_api, test_consent).
- Answers that depend on stored data or on rules across fields are expected as well as 2xx
  for schema-valid input of a few operations (listed in RULE_ANSWERS with the rule).
- `format: phone` (a number of the numbering plan) is generated as Russian mobile numbers
  written in the forms people type.
"""

from __future__ import annotations

import json
import os
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
import schemathesis
from hypothesis import strategies as st
from schemathesis.engine import Status, events, from_schema

TELEMED = [sys.executable, "-m", "telemed.cli"]
START_WITHIN = 120.0
EXAMPLES = 25  # per operation and phase: the whole run stays well under 5 minutes here
DEMO_PHONE = "+79161110001"

# operation id -> answers the schema cannot predict for schema-valid input, and why.
RULE_ANSWERS: dict[str, tuple[list[str], str]] = {
    "get_calendar": (["422"], "bad_range: `to` after `from`, at most 400 days later"),
    "get_calendar_ics": (["422"], "bad_range: `to` after `from`, at most 400 days later"),
    "list_slots": (["422"], "bad_range: `to` after `from`"),
    "book": (["422"], "which of the two bodies a caller sends follows the role"),
    "start_test_call": (["422"], "bad_offer: the SDP must parse as a WebRTC offer"),
    "upload_document": (
        ["415", "400"],
        "unsupported_type: PDF, JPEG, PNG, HEIC by content; 400 for part headers the"
        " multipart parser cannot read (field names in raw non-ASCII bytes)",
    ),
    "request_otp": (["422"], "format phone: a number of the numbering plan"),
    "verify_otp": (["422"], "format phone: a number of the numbering plan"),
    "request_second_opinion": (["422"], "unknown_documents: documents of my card only"),
    "register_patient": (["422"], "valid_from before valid_to; a birth date in the past"),
    "identify_patient": (["422"], "a birth date in the past"),
    "put_follow_up": (["422"], "needs: `none` stands alone"),
    "add_subscription": (["422"], "the endpoint's host must be on push.endpoint_hosts"),
    "break_glass": (["422"], "the reason is stripped (Unicode white space) before its length"),
}
LEFT_OUT = ("logout", "withdraw_consent")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TELEMED_")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        url, data=None if body is None else json.dumps(body).encode(), method=method
    )
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _healthy(base: str) -> bool:
    try:
        return _http("GET", base + "/healthz")[0] == 200
    except OSError:
        return False


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`telemed demo` then `telemed serve` on SQLite, SMS codes written to a file."""
    sms = tmp_path / "sms.jsonl"
    config = tmp_path / "config.yaml"
    config.write_text(
        f"database: {{url: 'sqlite+aiosqlite:///{tmp_path / 't.db'}'}}\n"
        f"sms: {{backend: file, path: '{sms}'}}\n"
        f"storage: {{documents_dir: '{tmp_path / 'docs'}'}}\n"
    )
    demo = subprocess.run(
        [*TELEMED, "--config", str(config), "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=START_WITHIN * 2,
        env=_env(),
    )
    assert demo.returncode == 0, demo.stderr
    port = _free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [*TELEMED, "--config", str(config), "serve", "--port", str(port)],
            cwd=tmp_path,
            stdout=log,
            stderr=log,
            env=_env(),
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_WITHIN
        while not _healthy(base):
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("telemed serve did not start: " + log_path.read_text())
            time.sleep(0.1)
        try:
            yield base, sms
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def patient_token(base: str, sms: Path) -> str:
    """The demo patient, logged in with the SMS code and with the consent accepted."""
    status, _ = _http("POST", base + "/api/v1/auth/otp", {"phone": DEMO_PHONE})
    assert status == 202
    deadline = time.monotonic() + 10
    while not sms.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    code = json.loads(sms.read_text().splitlines()[-1])["code"]
    status, body = _http(
        "POST", base + "/api/v1/auth/otp/verify", {"phone": DEMO_PHONE, "code": code}
    )
    assert status == 200, body
    token = str(body["token"])
    _, consent = _http("GET", base + "/api/v1/consent")
    status, _ = _http("POST", base + "/api/v1/me/consent", {"version": consent["version"]}, token)
    assert status == 201
    return token


def staff_token(base: str, login: str, password: str) -> str:
    status, body = _http(
        "POST", base + "/api/v1/auth/staff", {"login": login, "password": password}
    )
    assert status == 200, body
    return str(body["token"])


PHONES = st.builds(
    lambda n, form: form.format(n // 10000, n // 100 % 100, n % 100),
    st.integers(100_0000, 999_9999),
    st.sampled_from(
        ["+7916{:03d}{:02d}{:02d}", "+7 916 {:03d}-{:02d}-{:02d}", "8 (916) {:03d}-{:02d}-{:02d}"]
    ),
)


def run_schemathesis(base: str, token: str) -> tuple[int, list[str]]:
    """Every operation, every phase, every check; returns (cases run, failure reports)."""
    schemathesis.openapi.format("phone", PHONES)
    operations: list[dict[str, Any]] = [{"include-operation-id": list(LEFT_OUT), "enabled": False}]
    for operation_id, (statuses, _why) in RULE_ANSWERS.items():
        operations.append(
            {
                "include-operation-id": operation_id,
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2XX", "401", "403", "404", "409", "429", *statuses]
                    }
                },
            }
        )
    config = schemathesis.Config.from_dict(
        {
            "seed": 16,
            "headers": {"Authorization": f"Bearer {token}"},
            "checks": {"enabled": True},
            "generation": {"max-examples": EXAMPLES},
            "operations": operations,
            "warnings": False,
        }
    )
    schema = schemathesis.openapi.from_url(base + "/api/v1/openapi.json", config=config)
    failures: list[str] = []
    cases = 0
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            cases += len(event.recorder.cases)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        failures.append(
                            f"{event.label}: {check.name}: {failure.title}\n"
                            f"  {failure.message}\n  {check.failure_info.code_sample}"
                        )
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            failures.append(f"error: {event.info.format() if hasattr(event, 'info') else event}")
    return cases, failures


def test_the_openapi_document_holds_for_every_call_of_a_patient_and_a_consultant(
    node: tuple[str, Path],
) -> None:
    """Zero schemathesis failures as the demo patient and as the demo consultant."""
    base, sms = node
    reports: list[str] = []
    total = 0
    for who, token in (
        ("patient", patient_token(base, sms)),
        ("consultant", staff_token(base, "consultant", "demo-consultant")),
    ):
        cases, failures = run_schemathesis(base, token)
        total += cases
        reports += [f"[{who}] {f}" for f in failures]
    assert total > 2000
    assert not reports, "\n\n".join(dict.fromkeys(reports))
