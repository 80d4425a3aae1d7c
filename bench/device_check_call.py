"""What does one test call of the connection check cost the server? (R-DEV)

Starts a real `telemed serve` process, logs patients in through the real OTP flow, and
runs test calls from aiortc clients in this process (a 440 Hz tone and a moving test
pattern, like the tests): first one at a time at 1280x720, then `--concurrent` at once at
640x480. For each it prints the wall time (offer -> answer, answer -> verdict) and the
server process's CPU time read from /proc, against a baseline measured in the same run:
the server's CPU over the same wall time with nobody calling.

    .venv/bin/python bench/device_check_call.py [--calls 3] [--concurrent 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from asyncio.subprocess import DEVNULL
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [
    str(ROOT / "tests" / "devices"),
    str(ROOT / "tests" / "signalling"),
    str(ROOT / "tests"),
]
from devicekit import check_body, start_call  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def codes_sent(sms: Path, phone: str) -> list[str]:
    """The SMS codes the file backend has written for a phone so far."""
    if not sms.exists():
        return []
    sent = map(json.loads, sms.read_text().splitlines())
    return [str(m["code"]) for m in sent if m["to"] == phone and m["code"]]


async def login(http: aiohttp.ClientSession, phone: str, sms: Path) -> dict[str, str]:
    """Phone + SMS code (read from the file backend), then the consent."""
    assert (await http.post("/api/v1/auth/otp", json={"phone": phone})).status == 202
    codes: list[str] = []
    for _ in range(100):
        codes = await asyncio.to_thread(codes_sent, sms, phone)
        if codes:
            break
        await asyncio.sleep(0.05)
    resp = await http.post("/api/v1/auth/otp/verify", json={"phone": phone, "code": codes[-1]})
    headers = {"Authorization": f"Bearer {(await resp.json())['token']}"}
    version = (await (await http.get("/api/v1/consent")).json())["version"]
    await http.post("/api/v1/me/consent", json={"version": version}, headers=headers)
    return headers


async def one_check(
    http: aiohttp.ClientSession, headers: dict[str, str], size: tuple[int, int]
) -> dict[str, Any]:
    began = time.monotonic()
    call = await start_call(http, headers, video=size)
    answered = time.monotonic()
    try:
        assert call.status == 201, call.body
        resp = await http.post(
            "/api/v1/device-check", json=check_body(call_id=call.call_id), headers=headers
        )
        verdict = await resp.json()
    finally:
        await call.close()
    return {
        "answer_s": answered - began,
        "verdict_s": time.monotonic() - answered,
        "ok": verdict["ok"],
        "call": verdict["call"],
    }


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="telemed-bench-"))
    sms, port = tmp / "sms.jsonl", free_port()
    env = {
        **os.environ,
        "TELEMED_DATABASE__URL": f"sqlite+aiosqlite:///{tmp}/telemed.db",
        "TELEMED_SMS__BACKEND": "file",
        "TELEMED_SMS__PATH": str(sms),
        "TELEMED_AUTH__OTP_PER_ADDRESS_PER_HOUR": "1000",
        "TELEMED_DEVICE__CALLS_PER_MINUTE": "1000",
        "TELEMED_DEVICE__MAX_CONCURRENT_CALLS": str(max(10, args.concurrent)),
        "TELEMED_LOGGING__LEVEL": "WARNING",
        "TELEMED_STORAGE__DOCUMENTS_DIR": str(tmp / "documents"),
    }
    count = max(args.concurrent, 1)
    csv = tmp / "insured.csv"
    csv.write_text(
        "policy_number,purchased_on,valid_from,valid_to,full_name,birth_date,sex,phone\n"
        + "".join(
            f"B-{n},2026-01-01,2026-01-01,2030-12-31,Bench {n},1980-01-01,M,+7916444{n:04d}\n"
            for n in range(count)
        )
    )
    telemed = str(Path(sys.executable).with_name("telemed"))
    imported = await asyncio.create_subprocess_exec(
        telemed, "import-insured", str(csv), env=env, stdout=DEVNULL, stderr=DEVNULL
    )
    assert await imported.wait() == 0
    server = await asyncio.create_subprocess_exec(
        telemed, "serve", "--host", "127.0.0.1", "--port", str(port), env=env, cwd=tmp
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(base_url=base) as http:
            for _ in range(200):
                try:
                    if (await http.get("/healthz")).status == 200:
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            people = [await login(http, f"+7916444{n:04d}", sms) for n in range(count)]
            await one_check(http, people[0], (320, 240))  # warm-up: imports, codecs

            idle_wall = 4.0
            cpu0 = cpu_seconds(server.pid)
            await asyncio.sleep(idle_wall)
            idle_cpu = (cpu_seconds(server.pid) - cpu0) / idle_wall
            print(f"baseline: idle server {idle_cpu * 1000:.1f} ms CPU per second")

            runs = []
            for _ in range(args.calls):
                cpu0, wall0 = cpu_seconds(server.pid), time.monotonic()
                result = await one_check(http, people[0], (1280, 720))
                wall = time.monotonic() - wall0
                cpu = cpu_seconds(server.pid) - cpu0 - idle_cpu * wall
                runs.append((wall, cpu, result))
                c = result["call"]
                print(
                    f"1280x720: answer {result['answer_s'] * 1000:.0f} ms, verdict after "
                    f"{result['verdict_s']:.2f} s, server CPU {cpu * 1000:.0f} ms "
                    f"({cpu / wall * 100:.0f} % of a core); received {c['width']}x{c['height']} "
                    f"{c['fps']} fps, {c['uplink_kbps']} kbit/s, rtt {c['rtt_ms']} ms"
                )
            print(
                f"median one check: {statistics.median(r[0] for r in runs):.2f} s wall, "
                f"{statistics.median(r[1] for r in runs) * 1000:.0f} ms server CPU"
            )

            cpu0, wall0 = cpu_seconds(server.pid), time.monotonic()
            results = await asyncio.gather(*(one_check(http, h, (640, 480)) for h in people))
            wall = time.monotonic() - wall0
            cpu = cpu_seconds(server.pid) - cpu0 - idle_cpu * wall
            print(
                f"{count} at once (640x480): {wall:.2f} s wall, server CPU {cpu * 1000:.0f} ms "
                f"= {cpu / count * 1000:.0f} ms per check, {cpu / wall * 100:.0f} % of a core; "
                f"median {statistics.median(r['call']['fps'] for r in results)} fps received"
            )
    finally:
        server.terminate()
        await server.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=10)
    asyncio.run(main(parser.parse_args()))
