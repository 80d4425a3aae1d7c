"""What does telemed's `signal` relay cost, against a bare aiohttp WebSocket relay?

Seeds patient/consultant pairs in `with_consultant` straight into a fresh database, starts
real server processes one after the other, connects `--clients` light Socket.IO clients
(bench/benchkit.py) from this process, and for each server measures:

- memory per idle connection: server RSS after all clients connected, less before, / clients;
- p50/p99 one-way latency sender -> server -> counterpart at `--rate` messages/s, the
  send time stamped in the payload (both ends are in this process);
- the highest rate of the `--rates` steps with p99 under 50 ms and 99 % delivered;
- server CPU per relayed message (from /proc, less the idle CPU of the same server).

Targets (`--targets`, in this order, one run):
  bare    bench/bare_relay.py, the baseline every ratio is against
  sio     bench/sio_relay.py: a minimal python-socketio relay (token map, signal to the
          other side's user room, GC tuned), the library's own floor
  stock   telemed serve --no-gc-tune (SQLite): python-socketio as shipped
  tuned   telemed serve (SQLite), gc.freeze() + threshold 50,000 (telemed/runtime.py)
  pg1     one telemed node on PostgreSQL, in-process Socket.IO manager
  pg2     two telemed nodes on PostgreSQL + Redis (signalling/manager.py): patients on
          node A, consultants on node B, so every signal crosses Redis

    .venv/bin/python bench/signalling_relay.py                       # bare, stock, tuned
    .venv/bin/python bench/signalling_relay.py --clients 10000 --rates 1000
    .venv/bin/python bench/signalling_relay.py --targets bare,pg1,pg2
    .venv/bin/python bench/signalling_relay.py --targets bare,sio,tuned
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchkit as kit

PAD = "candidate:842163049 1 udp 1677729535 192.0.2.17 54321 typ srflx raddr 10.0.0.2 " * 2
P99_LIMIT = 0.050


@dataclass
class Step:
    rate: int
    sent: int
    received: int
    p50: float
    p99: float
    cpu_per_msg: float  # seconds of server CPU, idle subtracted

    @property
    def ok(self) -> bool:
        return self.p99 < P99_LIMIT and self.received >= 0.99 * self.sent


@dataclass
class Result:
    name: str
    clients: int
    mem_per_conn: float = float("nan")
    connect_s: float = float("nan")
    steps: list[Step] = field(default_factory=list)

    def at(self, rate: int) -> Step | None:
        return next((s for s in self.steps if s.rate == rate), None)

    @property
    def max_rate(self) -> int:
        passed = [s.rate for s in self.steps if s.ok]
        return max(passed) if passed else 0


class Recorder:
    """Latencies of the signals received during the current step."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.expected = 0
        self.all_in = asyncio.Event()

    def reset(self) -> None:
        self.latencies, self.expected = [], 1 << 60
        self.all_in.clear()

    def expect(self, count: int) -> None:
        self.expected = count
        if len(self.latencies) >= count:
            self.all_in.set()

    def on_event(self, event: str, data: Any) -> None:
        if event != "signal" or not isinstance(data, dict):
            return
        body = data.get("data")
        if isinstance(body, dict) and "t" in body:
            self.latencies.append(time.perf_counter() - body["t"])
            if len(self.latencies) >= self.expected:
                self.all_in.set()


Sender = Callable[[int, dict[str, Any]], Awaitable[None]]


async def connect_socketio(
    http: Any, rec: Recorder, *, urls: tuple[str, str], seeded: kit.Seeded, limit: int
) -> tuple[list[Any], Sender]:
    """Consultants on urls[1], patients on urls[0]; the sender alternates directions.
    Pairs with a side that failed to connect are left out (and reported)."""
    consultants = await kit.gather_limited(
        (
            kit.connected_or_none(
                kit.SioClient.connect(http, urls[1], {"token": p.consultant.token}, rec.on_event)
            )
            for p in seeded.pairs
        ),
        limit,
    )
    patients = await kit.gather_limited(
        (
            kit.connected_or_none(
                kit.SioClient.connect(http, urls[0], {"token": p.patient.token}, rec.on_event)
            )
            for p in seeded.pairs
        ),
        limit,
    )
    clients = [c for c in (*consultants, *patients) if c is not None]
    if len(clients) < 2 * len(seeded.pairs):
        print(f"  connected {len(clients)} of {2 * len(seeded.pairs)} clients", flush=True)
    both = [
        (pair.consultation_id, patient, consultant)
        for pair, patient, consultant in zip(seeded.pairs, patients, consultants, strict=True)
        if patient is not None and consultant is not None
    ]
    n = len(both)

    async def send(k: int, data: dict[str, Any]) -> None:
        cid, patient, consultant = both[(k // 2) % n]
        side = patient if k % 2 == 0 else consultant
        await side.send("signal", {"consultation_id": cid, "data": data})

    return clients, send


async def connect_bare(
    http: Any, rec: Recorder, *, url: str, seeded: kit.Seeded, limit: int
) -> tuple[list[Any], Sender]:
    people = [(p.patient.user_id, p.consultant.user_id) for p in seeded.pairs]
    consultants = await kit.gather_limited(
        (kit.BareClient.connect(http, url, c, rec.on_event) for _, c in people), limit
    )
    patients = await kit.gather_limited(
        (kit.BareClient.connect(http, url, p, rec.on_event) for p, _ in people), limit
    )
    n = len(people)

    async def send(k: int, data: dict[str, Any]) -> None:
        i = (k // 2) % n
        if k % 2 == 0:
            await patients[i].send_to(people[i][1], data)
        else:
            await consultants[i].send_to(people[i][0], data)

    return [*consultants, *patients], send


async def quiet_cpu(pids: list[int], seconds: float, limit: float = 60.0) -> float:
    """The servers' idle CPU per second, read once they have finished the connect storm's
    work (under 20 % of a core over a window), so it is never subtracted from a step."""
    deadline = time.perf_counter() + limit
    while True:
        cpu0 = sum(kit.cpu_seconds(p) for p in pids)
        await asyncio.sleep(seconds)
        idle = (sum(kit.cpu_seconds(p) for p in pids) - cpu0) / seconds
        if idle < 0.2 or time.perf_counter() > deadline:
            return idle


async def drain(rec: Recorder, quiet: float = 0.5, limit: float = 30.0) -> None:
    """Wait until late signals stop arriving, so a backlog never leaks into the next step."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        seen = len(rec.latencies)
        await asyncio.sleep(quiet)
        if len(rec.latencies) == seen:
            return


async def run_step(
    rate: int, seconds: float, send: Sender, rec: Recorder, pids: list[int], idle: float
) -> Step:
    """Send at `rate` for `seconds` (open loop, 2 ms ticks), then wait for stragglers."""
    rec.reset()
    total = int(rate * seconds)
    counter = itertools.count()
    cpu0 = sum(kit.cpu_seconds(p) for p in pids)
    began = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - began) * rate) + 1)
        while sent < due:
            await send(next(counter), {"t": time.perf_counter(), "seq": sent, "candidate": PAD})
            sent += 1
        await asyncio.sleep(0.002)
    rec.expect(sent)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(rec.all_in.wait(), 2.0)
    wall = time.perf_counter() - began
    cpu = sum(kit.cpu_seconds(p) for p in pids) - cpu0 - idle * wall
    got = list(rec.latencies)
    await drain(rec)
    return Step(
        rate,
        sent,
        len(got),
        kit.percentile(got, 50),
        kit.percentile(got, 99),
        cpu / max(1, len(got)),
    )


async def profile(servers: list[kit.Server], args: argparse.Namespace) -> list[Any]:
    """With --profile DIR: py-spy records each server during the --rate step."""
    if not args.profile:
        return []
    return [await kit.py_spy(s, args.seconds, args.profile) for s in servers]


async def measure(
    name: str,
    servers: list[kit.Server],
    connect: Callable[[Any, Recorder], Awaitable[tuple[list[Any], Sender]]],
    args: argparse.Namespace,
) -> Result:
    """Connect everyone, read idle memory and CPU, then step the rate up."""
    pids = [s.pid for s in servers]
    result = Result(name, args.clients)
    rec = Recorder()
    async with kit.client_session() as http:
        await asyncio.sleep(1.0)
        rss0 = sum(kit.rss_bytes(p) for p in pids)
        t0 = time.perf_counter()
        clients, send = await connect(http, rec)
        result.connect_s = time.perf_counter() - t0
        await asyncio.sleep(2.0)  # welcome events, away flags cleared
        result.mem_per_conn = (sum(kit.rss_bytes(p) for p in pids) - rss0) / len(clients)
        idle = await quiet_cpu(pids, args.idle)
        await run_step(min(args.rates), 1.0, send, rec, pids, idle)  # warm-up
        for rate in sorted(set(args.rates) | {args.rate}):
            spies = await profile(servers, args) if rate == args.rate else []
            step = await run_step(rate, args.seconds, send, rec, pids, idle)
            for spy in spies:
                await spy.wait()
            result.steps.append(step)
            print(
                f"  {name}: {rate}/s sent {step.sent} got {step.received} "
                f"p50 {step.p50 * 1000:.1f} ms p99 {step.p99 * 1000:.1f} ms "
                f"cpu {step.cpu_per_msg * 1e6:.0f} us/msg",
                flush=True,
            )
            if not step.ok and rate > args.rate:
                break
        await kit.gather_limited((c.close() for c in clients), 500)
    return result


async def main(args: argparse.Namespace) -> None:
    kit.raise_fd_limit()
    targets = args.targets.split(",")
    pairs = args.clients // 2
    tmp = kit.new_tmp("telemed-relay-")
    results: list[Result] = []
    sqlite_env: dict[str, str] | None = None
    pg: tuple[str, dict[str, str]] | None = None
    seeded: dict[str, kit.Seeded] = {}

    async def sqlite_db() -> dict[str, str]:
        nonlocal sqlite_env
        if sqlite_env is None:
            url = f"sqlite+aiosqlite:///{tmp}/telemed.db"
            sqlite_env = kit.telemed_env(tmp, url)
            await kit.run_telemed(["migrate"], sqlite_env, tmp)
            seeded["sqlite"] = await kit.seed(url, pairs=pairs)
        return sqlite_env

    async def pg_db() -> tuple[str, dict[str, str]]:
        nonlocal pg
        if pg is None:
            name = f"bench_relay_{os.getpid()}"
            url = await kit.fresh_pg_database(name)
            env = kit.telemed_env(tmp, url)
            await kit.run_telemed(["migrate"], env, tmp)
            seeded["pg"] = await kit.seed(url, pairs=pairs)
            pg = (name, env)
        return pg

    try:
        for target in targets:
            print(f"{target}: {args.clients} clients", flush=True)
            servers: list[kit.Server] = []
            try:
                if target == "bare":
                    servers = [await kit.start_python("bare", kit.ROOT / "bench/bare_relay.py")]
                    if "sqlite" not in seeded and "pg" not in seeded:
                        await sqlite_db()
                    s = seeded.get("sqlite") or seeded["pg"]
                    bare = functools.partial(
                        connect_bare, url=servers[0].url, seeded=s, limit=args.connect_limit
                    )
                    results.append(await measure(target, servers, bare, args))
                    continue
                if target == "sio":
                    if "sqlite" not in seeded and "pg" not in seeded:
                        await sqlite_db()
                    s = seeded.get("sqlite") or seeded["pg"]
                    peers = tmp / "peers.json"
                    peers.write_text(json.dumps(peer_map(s)))
                    servers = [
                        await kit.start_python(
                            "sio", kit.ROOT / "bench/sio_relay.py", ["--peers", str(peers)]
                        )
                    ]
                elif target in ("stock", "tuned"):
                    env = await sqlite_db()
                    extra = ["--no-gc-tune"] if target == "stock" else []
                    servers = [await kit.start_telemed(target, env, tmp, extra)]
                    s = seeded["sqlite"]
                elif target == "pg1":
                    _, env = await pg_db()
                    servers = [await kit.start_telemed(target, env, tmp)]
                    s = seeded["pg"]
                elif target == "pg2":
                    _, env = await pg_db()
                    prefix = f"bench-relay-{os.getpid()}"
                    env = {**env, "TELEMED_REDIS__URL": kit.REDIS_URL}
                    env["TELEMED_REDIS__PREFIX"] = prefix
                    env["TELEMED_SCHEDULER__LEASE_KEY"] = f"{prefix}:lease"
                    servers = [
                        await kit.start_telemed("pg2-a", env, tmp),
                        await kit.start_telemed("pg2-b", env, tmp),
                    ]
                    s = seeded["pg"]
                else:
                    raise SystemExit(f"unknown target {target}")
                sio = functools.partial(
                    connect_socketio,
                    urls=(servers[0].url, servers[-1].url),
                    seeded=s,
                    limit=args.connect_limit,
                )
                results.append(await measure(target, servers, sio, args))
            finally:
                for server in servers:
                    await server.stop()
    finally:
        if pg is not None:
            await kit.drop_pg_database(pg[0])
    report(results, args)


def peer_map(seeded: kit.Seeded) -> dict[str, list[str]]:
    """For the sio relay: each token's user and the other side of their consultation."""
    peers: dict[str, list[str]] = {}
    for pair in seeded.pairs:
        patient, consultant = pair.patient, pair.consultant
        peers[patient.token] = [patient.user_id, consultant.user_id]
        peers[consultant.token] = [consultant.user_id, patient.user_id]
    return peers


def report(results: list[Result], args: argparse.Namespace) -> None:
    base = results[0]
    b = base.at(args.rate)
    rows = []
    for r in results:
        s = r.at(args.rate)
        cpu = s.cpu_per_msg if s else float("nan")
        ratio = cpu / b.cpu_per_msg if s and b and b.cpu_per_msg > 0 else float("nan")
        rows.append(
            (
                r.name,
                f"{r.mem_per_conn / 1024:.1f} KB",
                f"{s.p50 * 1000:.1f} / {s.p99 * 1000:.1f} ms" if s else "-",
                f"{s.received}/{s.sent}" if s else "-",
                f"{r.max_rate:,}",
                f"{r.max_rate / base.max_rate:.2f}" if base.max_rate else "-",
                f"{cpu * 1e6:.0f} us",
                f"{ratio:.1f}x",
                f"{r.connect_s:.2f} s",
            )
        )
    print()
    print(
        f"{args.clients} clients, {args.rate} msg/s for {args.seconds:g} s per step; "
        f"ratios against {base.name}"
    )
    print(
        kit.table(
            (
                "server",
                "idle memory / conn",
                f"p50 / p99 at {args.rate}/s",
                "delivered",
                "max rate p99<50ms",
                "max rate ratio",
                f"CPU / msg at {args.rate}/s",
                "CPU ratio",
                "connect all",
            ),
            rows,
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000, help="sockets (half patients)")
    parser.add_argument("--targets", default="bare,stock,tuned")
    parser.add_argument("--rate", type=int, default=1000, help="messages/s for p50/p99 and CPU")
    parser.add_argument(
        "--rates",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1000, 2000, 3000, 4500, 6000, 8000, 11000, 15000],
        help="steps for the highest rate with p99 under 50 ms",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per step")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of idle CPU reading")
    parser.add_argument("--profile", help="directory for py-spy stacks of the --rate step")
    parser.add_argument("--connect-limit", type=int, default=100, help="connects at once")
    asyncio.run(main(parser.parse_args()))
