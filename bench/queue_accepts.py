"""How fast do consultants empty the queue, each patient taken exactly once?

`--patients` consultations wait in the consultant queue of a fresh database (seeded in
bulk); `--consultants` consultants connected over Socket.IO (bench/benchkit.py clients)
emit `consultation:accept {}` (the longest-waiting patient) as fast as their acks come back,
all at once, against a real `telemed serve`. Printed: accepts/s, p50/p99 ack latency,
`already_taken` retries, server CPU per accept, and a check that every consultation was
accepted exactly once (distinct ids in the acks, one `with_consultant` row and one open
leg each). Baseline in the same run, on the same database and driver: a bare guarded
UPDATE loop (`... WHERE id = ? AND state = 'waiting_consultant' AND version = ?`) with the
same concurrency, from this process. Both on SQLite and on PostgreSQL.

Warm-up (`--warmup`, per consultant, default 2): that many more patients wait ahead of the
measured ones, and each consultant (each baseline worker) takes its share first, untimed:
the first accepts after a start pay for the pool's logins and for compiling and preparing
every statement of the path, which is not what the steady rate and p99 describe. Their
worst latency is printed on its own ("cold start"), and exactly once is checked over all.

    .venv/bin/python bench/queue_accepts.py [--patients 1000] [--consultants 20] [--dbs sqlite,pg]
        [--warmup 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchkit as kit

# Twenty sockets stand in for a whole shift of consultants: each accepts far faster than a
# person could, past the per-socket budget of `consultation:accept` (signalling.budgets'
# `other`, 10/s), which would answer `rate_limited` and measure the budget, not the path.
NO_EVENT_BUDGET = {
    "TELEMED_SIGNALLING__BUDGETS__OTHER__RATE": "1000000",
    "TELEMED_SIGNALLING__BUDGETS__OTHER__BURST": "1000000",
}


@dataclass
class Run:
    name: str
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    taken: list[str] = field(default_factory=list)
    retries: int = 0
    errors: int = 0  # internal errors (e.g. SQLite "database is locked"), retried
    cpu: float = float("nan")
    warm: list[str] = field(default_factory=list)  # taken in the warm-up, untimed
    cold: float = 0.0  # the warm-up's worst latency

    def took(self, consultation_id: str, latency: float, warm: bool) -> None:
        if warm:
            self.warm.append(consultation_id)
            self.cold = max(self.cold, latency)
        else:
            self.taken.append(consultation_id)
            self.latencies.append(latency)

    @property
    def rate(self) -> float:
        return len(self.taken) / self.wall if self.wall else 0.0


async def bare_loop(db_url: str, consultants: list[kit.Person], sqlite: bool, warmup: int) -> Run:
    """The floor: pick the oldest waiting row, guarded UPDATE, retry when someone was faster."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(
        db_url,
        pool_size=len(consultants),
        max_overflow=0,
        **({"connect_args": {"timeout": 30}} if sqlite else {}),
    )
    run = Run("bare guarded UPDATE")
    pick = text(
        "SELECT id, version FROM consultations WHERE state = 'waiting_consultant' "
        "AND queue_role = 'consultant' ORDER BY queued_at, id LIMIT 5"
    )
    take = text(
        "UPDATE consultations SET state = 'with_consultant', consultant_id = :who, "
        "queue_role = NULL, queued_at = NULL, version = version + 1 "
        "WHERE id = :id AND state = 'waiting_consultant' AND version = :v"
    )

    async def worker(who: kit.Person, accepts: int | None) -> None:
        warm = accepts is not None
        while accepts is None or accepts > 0:
            began = time.perf_counter()
            async with engine.connect() as conn:
                rows = (await conn.execute(pick)).all()
                await conn.rollback()
            if not rows:
                return
            for cid, version in rows:
                async with engine.begin() as conn:
                    result = await conn.execute(take, {"who": who.user_id, "id": cid, "v": version})
                if result.rowcount == 1:
                    run.took(cid, time.perf_counter() - began, warm)
                    accepts = accepts - 1 if accepts is not None else None
                    break
                run.retries += not warm

    try:
        await asyncio.gather(*(worker(c, warmup) for c in consultants))
        began = time.perf_counter()
        await asyncio.gather(*(worker(c, None) for c in consultants))
        run.wall = time.perf_counter() - began
        async with engine.begin() as conn:  # back into the queue for telemed's turn
            await conn.execute(
                text(
                    "UPDATE consultations SET state = 'waiting_consultant', consultant_id = NULL, "
                    "queue_role = 'consultant', queued_at = created_at, version = version + 1 "
                    "WHERE state = 'with_consultant'"
                )
            )
    finally:
        await engine.dispose()
    return run


async def telemed_accepts(
    server: kit.Server, consultants: list[kit.Person], profile: str | None, warmup: int
) -> Run:
    """Every consultant accepts the longest-waiting patient until the queue is empty."""
    run = Run("telemed consultation:accept")
    async with kit.client_session() as http:
        clients = [
            await kit.SioClient.connect(http, server.url, {"token": c.token}, lambda e, d: None)
            for c in consultants
        ]
        await asyncio.sleep(1.0)

        async def worker(client: kit.SioClient, accepts: int | None) -> None:
            warm = accepts is not None
            while accepts is None or accepts > 0:
                began = time.perf_counter()
                ack: dict[str, Any] = await client.call("consultation:accept", {}, wait=60)
                if ack.get("ok"):
                    run.took(ack["consultation_id"], time.perf_counter() - began, warm)
                    accepts = accepts - 1 if accepts is not None else None
                    continue
                code = ack["error"]["code"]
                if code == "queue_empty":
                    return
                if code == "already_taken":
                    run.retries += not warm
                    continue
                run.errors += 1
                if run.errors > 10 * len(consultants):
                    raise RuntimeError(f"accept keeps failing: {ack['error']}")

        await asyncio.gather(*(worker(c, warmup) for c in clients))
        cpu0, began = kit.cpu_seconds(server.pid), time.perf_counter()
        spy = await kit.py_spy(server, 10, profile) if profile else None
        await asyncio.gather(*(worker(c, None) for c in clients))
        if spy is not None:
            await spy.wait()
        run.wall = time.perf_counter() - began
        run.cpu = (kit.cpu_seconds(server.pid) - cpu0) / max(1, len(run.taken))
        for client in clients:
            await client.close()
    return run


async def verify(db_url: str, patients: int, run: Run) -> str:
    """Exactly once: distinct ids in the acks; one with_consultant row and one open leg each."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            taken = await conn.scalar(
                text("SELECT count(*) FROM consultations WHERE state = 'with_consultant'")
            )
            legs = await conn.scalar(
                text(
                    "SELECT count(*) FROM (SELECT consultation_id FROM consultation_legs "
                    "WHERE ended_at IS NULL GROUP BY consultation_id HAVING count(*) = 1) AS one"
                )
            )
    finally:
        await engine.dispose()
    every = run.warm + run.taken
    ok = len(every) == len(set(every)) == taken == legs == patients
    return f"{'ok' if ok else 'FAILED'} ({len(set(every))} distinct, {taken} rows, {legs} legs)"


async def one_database(kind: str, args: argparse.Namespace) -> list[tuple[object, ...]]:
    tmp = kit.new_tmp("telemed-accepts-")
    pg_name = f"bench_accepts_{os.getpid()}"
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp}/telemed.db"
    else:
        url = await kit.fresh_pg_database(pg_name)
    server: kit.Server | None = None
    try:
        env = kit.telemed_env(tmp, url, **NO_EVENT_BUDGET)
        await kit.run_telemed(["migrate"], env, tmp)
        total = args.patients + args.warmup * args.consultants
        seeded = await kit.seed(url, waiting=total, consultants=args.consultants)
        base = await bare_loop(url, seeded.consultants, kind == "sqlite", args.warmup)
        print(f"{kind}: baseline {base.rate:.0f}/s", flush=True)
        server = await kit.start_telemed(kind, env, tmp)
        run = await telemed_accepts(server, seeded.consultants, args.profile, args.warmup)
        checked = await verify(url, total, run)
        print(f"{kind}: telemed {run.rate:.0f}/s, exactly once: {checked}", flush=True)
    finally:
        if server is not None:
            await server.stop()
        if kind == "pg":
            await kit.drop_pg_database(pg_name)
    rows: list[tuple[object, ...]] = []
    for r in (base, run):
        rows.append(
            (
                kind,
                r.name,
                f"{r.rate:,.0f}",
                f"{r.rate / base.rate:.2f}",
                f"{kit.percentile(r.latencies, 50) * 1000:.1f} / "
                f"{kit.percentile(r.latencies, 99) * 1000:.1f} ms",
                r.retries,
                r.errors if r is run else "-",
                "-" if r.cpu != r.cpu else f"{r.cpu * 1000:.2f} ms",
                f"{r.cold * 1000:.0f} ms",
                checked if r is run else f"{len(set(r.warm + r.taken))} distinct",
            )
        )
    return rows


async def main(args: argparse.Namespace) -> None:
    kit.raise_fd_limit()
    rows: list[tuple[object, ...]] = []
    for kind in args.dbs.split(","):
        rows += await one_database(kind, args)
    print()
    print(
        f"{args.patients} waiting patients, {args.consultants} consultants accepting at once, "
        f"after a warm-up of {args.warmup} accepts each"
    )
    print(
        kit.table(
            (
                "database",
                "path",
                "accepts/s",
                "ratio",
                "p50 / p99 latency",
                "already_taken retries",
                "internal errors (retried)",
                "server CPU / accept",
                "cold start (worst warm-up accept)",
                "exactly once",
            ),
            rows,
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--consultants", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2, help="untimed accepts per consultant")
    parser.add_argument("--profile", help="directory for py-spy stacks (first 10 s)")
    parser.add_argument("--dbs", default="sqlite,pg", help="sqlite and/or pg")
    asyncio.run(main(parser.parse_args()))
