"""How late do reminders fire when 100,000 appointments are booked? (R-REMIND-1)

Books N appointments whose reminders fall due in bursts (many appointments
share a slot time), runs the real scheduler (APScheduler + DueWork + outbox
dispatch to a file push backend) on the system clock, and reports lateness
(reminded_at - remind_at) p50/p99/max, the scheduler's CPU time and memory.

Baseline, measured in the same run on the same deadlines: an ideal in-memory
timer (`loop.call_at` per deadline, no database): the floor of lateness on
this loop and machine. Lateness is printed with its ratio to the baseline.

    .venv/bin/python bench/scheduler_reminders.py [--n 100000] [--bursts 10] [--db URL]

With `--webpush`, every patient has a browser subscription on the test push service of
tests/pushservice.py (127.0.0.1, in this process: it checks each VAPID token and decrypts
each aes128gcm payload as a browser would), and the scheduler sends through the real
`push.backend: webpush` sender. It then also reports, per reminder, the time from due to
arrival at the push service, and that each arrived exactly once (R-REMIND-1):

    .venv/bin/python bench/scheduler_reminders.py --webpush --n 10000 --bursts 6 --spacing 10
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

from scheduler.jobs import DueWork
from scheduler.lease import LocalLease
from scheduler.runner import SchedulerRunner
from telemed.clock import SystemClock
from telemed.config import settings_from_mapping
from telemed.db import Database, create_engine, upgrade_schema
from telemed.models import Appointment, Notification, Patient, PushSubscription, Staff
from telemed.notify import Sender, build_sender
from telemed.notify.webpush import WebPushSender
from telemed.services.consultations import ConsultationService
from telemed.services.push import PushSubscriptions, new_vapid_private_key, vapid_public_key

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pushservice import Device, PushService  # the tests' push service


class NullLive:
    """Counts what would go to sockets; nobody is connected in this benchmark."""

    def __init__(self) -> None:
        self.emitted = 0

    async def publish(self, change: Any) -> None:
        self.emitted += 1

    async def to_user(self, user_id: str, event: str, data: dict[str, Any]) -> None:
        self.emitted += 1

    async def to_role(self, role: Any, event: str, data: dict[str, Any]) -> None:
        self.emitted += 1

    def is_online(self, user_id: str | None) -> bool:
        return False


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return p50, p99, ordered[-1]


async def seed(db: Database, n: int, due: list[datetime]) -> list[str]:
    now = datetime.now(UTC)
    async with db.write() as s:
        doctor = Staff(
            login=f"bench-{uuid.uuid4().hex[:6]}",
            password_hash="-",
            role="therapist",
            full_name="Dr Bench",
            active=True,
            created_at=now,
        )
        s.add(doctor)
        await s.flush()
        patients = [
            {
                "id": uuid.uuid4().hex,
                "phone": f"+7916{i:07d}",
                "full_name": f"Patient {i}",
                "birth_date": date(1980, 1, 1),
                "sex": "M",
                "timezone": "Europe/Moscow",
                "source": "demo",
                "created_at": now,
                "updated_at": now,
            }
            for i in range(n)
        ]
        for start in range(0, n, 5000):
            await s.execute(insert(Patient), patients[start : start + 5000])
        rows = [
            {
                "id": uuid.uuid4().hex,
                "patient_id": patients[i]["id"],
                "doctor_id": doctor.id,
                "starts_at": due[i] + timedelta(minutes=10),
                "ends_at": due[i] + timedelta(minutes=25),
                "channel": "video",
                "kind": "scheduled",
                "state": "booked",
                "notify_via": "chat",
                "requires_documents": False,
                "remind_at": due[i],
                "created_at": now,
            }
            for i in range(n)
        ]
        for start in range(0, n, 5000):
            await s.execute(insert(Appointment), rows[start : start + 5000])
    return [str(p["id"]) for p in patients]


async def subscribe_all(
    db: Database, patient_ids: list[str], service: PushService
) -> dict[str, Device]:
    """One browser subscription on the test push service per patient; device by patient."""
    now = datetime.now(UTC)
    devices = {pid: service.device() for pid in patient_ids}
    rows = []
    for pid, device in devices.items():
        sub = device.subscription()
        rows.append(
            {
                "id": uuid.uuid4().hex,
                "patient_id": pid,
                "endpoint": sub["endpoint"],
                "p256dh": sub["keys"]["p256dh"],
                "auth": sub["keys"]["auth"],
                "created_at": now,
            }
        )
    async with db.write() as s:
        for start in range(0, len(rows), 5000):
            await s.execute(insert(PushSubscription), rows[start : start + 5000])
    return devices


async def ideal_timer(due: list[datetime]) -> list[float]:
    """Baseline: one loop timer per deadline, nothing else: lateness floor of the loop."""
    loop = asyncio.get_running_loop()
    lateness: list[float] = []
    done = asyncio.Event()
    offset = time.time() - loop.time()

    def fire(at: float) -> None:
        lateness.append(max(0.0, time.time() - at))
        if len(lateness) == len(due):
            done.set()

    for when in due:
        at = when.timestamp()
        loop.call_at(at - offset, fire, at)
    await done.wait()
    return lateness


async def run(
    n: int, bursts: int, spacing: float, db_url: str | None, lead: float, webpush: bool
) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="telemed-bench-"))
    url = db_url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    service = await PushService().start() if webpush else None
    vapid_key = new_vapid_private_key()
    push_config: dict[str, Any] = {"backend": "file", "path": str(workdir / "push.jsonl")}
    if service is not None:
        push_config = {"backend": "webpush", "endpoint_hosts": [service.host]}
        service.server_key = vapid_public_key(vapid_key)
    settings = settings_from_mapping(
        {
            "database": {"url": url},
            "push": push_config,
            "sms": {"backend": "file", "path": str(workdir / "sms.jsonl")},
            "scheduler": {"sweep_interval": "1s", "batch_size": 500},
            "logging": {"json": False},
        }
    )
    engine = create_engine(settings.database)
    await upgrade_schema(engine)
    db = Database(engine)
    clock = SystemClock()

    def pattern(first: datetime) -> list[datetime]:
        return [first + timedelta(seconds=spacing * (i % bursts)) for i in range(n)]

    # The baseline runs alone first, on the same pattern of deadlines.
    baseline = await ideal_timer(pattern(datetime.now(UTC) + timedelta(seconds=1)))
    start = datetime.now(UTC) + timedelta(seconds=lead)
    due = pattern(start)
    t0 = time.perf_counter()
    patient_ids = await seed(db, n, due)
    devices = await subscribe_all(db, patient_ids, service) if service is not None else {}
    print(
        f"seeded {n} appointments in {time.perf_counter() - t0:.1f} s ({bursts} bursts of "
        f"{n // bursts}, {spacing:g} s apart: {n / bursts / spacing:.0f} reminders/s asked)"
    )
    sms = build_sender("file", path=str(workdir / "sms.jsonl"), clock=clock)
    push: Sender = build_sender("file", path=str(workdir / "push.jsonl"), clock=clock)
    if service is not None:
        push = WebPushSender(
            PushSubscriptions(db, clock, settings.push),
            vapid_key,
            settings.push.vapid_subject,
            ttl_seconds=600,
            timeout=10.0,
            fallback=sms,
        )
    work = DueWork(
        db,
        clock,
        settings,
        ConsultationService(db, clock, settings.rules),
        NullLive(),
        {"push": push, "sms": sms},
    )
    runner = SchedulerRunner(work, settings.scheduler, LocalLease(), clock)
    gc.collect()
    rss_before = rss_mb()
    cpu_before = cpu_seconds()
    await runner.start()
    deadline = time.monotonic() + lead + bursts * spacing + 600
    while True:
        async with db.read() as s:
            left = await s.scalar(
                select(func.count())
                .select_from(Appointment)
                .where(Appointment.reminded_at.is_(None))
            )
            unsent = await s.scalar(
                select(func.count())
                .select_from(Notification)
                .where(Notification.sent_at.is_(None), Notification.attempts < 5)
            )
        if not (left or unsent) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    cpu = cpu_seconds() - cpu_before
    rss_after = rss_mb()
    await runner.stop()
    close = getattr(push, "close", None)
    if close is not None:
        await close()
    async with db.read() as s:
        rows = (
            await s.execute(select(Appointment.id, Appointment.remind_at, Appointment.reminded_at))
        ).all()
        due_of_patient = {
            str(pid): at
            for pid, at in (await s.execute(select(Appointment.patient_id, Appointment.remind_at)))
        }
        sent = dict(
            (
                await s.execute(
                    select(Notification.dedupe_key, Notification.sent_at).where(
                        Notification.kind == "reminder"
                    )
                )
            ).all()
        )
    lateness = [(done - at).total_seconds() for _, at, done in rows if done is not None]
    delivered = [
        (sent[f"reminder:{aid}:push"] - at).total_seconds()
        for aid, at, _ in rows
        if sent.get(f"reminder:{aid}:push") is not None
    ]
    pushes = (
        sum(1 for _ in (workdir / "push.jsonl").open()) if (workdir / "push.jsonl").exists() else 0
    )
    await db.dispose()
    p50, p99, worst = percentiles(lateness)
    d50, d99, dworst = percentiles(delivered)
    b50, b99, bworst = percentiles(baseline)
    floor = 0.001  # 1 ms: ratios against a sub-millisecond floor are meaningless
    print(
        f"database: {'SQLite' if url.startswith('sqlite') else 'PostgreSQL'}; "
        f"{len(lateness)}/{n} reminded, {pushes} pushes written; passes {runner.passes}"
    )
    print(f"{'':22}{'p50':>10}{'p99':>10}{'max':>10}")
    print(
        f"{'ideal timer (base)':22}{b50 * 1000:>8.1f}ms{b99 * 1000:>8.1f}ms{bworst * 1000:>8.1f}ms"
    )
    print(f"{'telemed: claimed':22}{p50 * 1000:>8.1f}ms{p99 * 1000:>8.1f}ms{worst * 1000:>8.1f}ms")
    print(
        f"{'ratio':22}{p50 / max(b50, floor):>9.1f}x{p99 / max(b99, floor):>9.1f}x"
        f"{worst / max(bworst, floor):>9.1f}x"
    )
    print(f"{'push delivered':22}{d50 * 1000:>8.1f}ms{d99 * 1000:>8.1f}ms{dworst * 1000:>8.1f}ms")
    print(
        f"{'ratio':22}{d50 / max(b50, floor):>9.1f}x{d99 / max(b99, floor):>9.1f}x"
        f"{dworst / max(bworst, floor):>9.1f}x"
    )
    print(
        f"scheduler CPU: {cpu:.1f} s for {n} reminders = {cpu / n * 1e6:.0f} us each "
        f"(including the outbox and the in-process database)"
    )
    print(
        f"memory: RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after; peak "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
        f"delivered {n / max(dworst + (bursts - 1) * spacing, 0.001):.0f} reminders/s overall"
    )
    print(f"mean lateness {statistics.fmean(lateness) * 1000:.1f} ms")
    if service is not None:
        report_webpush(service, devices, due_of_patient)
        await service.stop()


def report_webpush(
    service: PushService, devices: dict[str, Device], due_of_patient: dict[str, datetime]
) -> None:
    """Each reminder at the push service once, and how long after its due time."""
    per_device: dict[str, list[float]] = {}
    for got in service.received:
        per_device.setdefault(got.device, []).append(got.at)
    arrivals = []
    missing = twice = 0
    for patient_id, device in devices.items():
        times = per_device.get(device.token, [])
        if not times:
            missing += 1
            continue
        twice += len(times) > 1
        arrivals.append(min(times) - due_of_patient[patient_id].timestamp())
    a50, a99, aworst = percentiles(arrivals) if arrivals else (0.0, 0.0, 0.0)
    verdict = "PASS" if not missing and not twice and aworst <= 60 else "FAIL"
    print(
        f"web push: {len(arrivals)}/{len(devices)} devices got their reminder, {missing} none, "
        f"{twice} more than once; refused by the push service: {len(service.refused)}"
    )
    print(
        f"due -> at the push service: p50 {a50 * 1000:.0f} ms, p99 {a99 * 1000:.0f} ms, "
        f"max {aworst * 1000:.0f} ms; every one once within 60 s of due: {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--bursts", type=int, default=10)
    parser.add_argument("--spacing", type=float, default=1.0, help="seconds between bursts")
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--lead", type=float, default=5.0, help="seconds before the first burst")
    parser.add_argument(
        "--webpush", action="store_true", help="Web Push to the test push service (tests/)"
    )
    args = parser.parse_args()
    asyncio.run(run(args.n, args.bursts, args.spacing, args.db, args.lead, args.webpush))


if __name__ == "__main__":
    sys.exit(main())
