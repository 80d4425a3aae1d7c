"""Shared parts of the benchmarks: server processes, /proc readings, seeding, light clients.

The Socket.IO client here speaks just enough Engine.IO v4 / Socket.IO v5 over one aiohttp
WebSocket (open, namespace connect with auth, events, acks, ping/pong) that 10,000 clients
fit in one client process; python-socketio's AsyncClient costs far more per connection.
Not a product module: the benchmarks import it with `bench/` on sys.path.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import resource
import secrets
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
PG_ADMIN = os.environ.get("TELEMED_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TELEMED_BENCH_REDIS", "redis://127.0.0.1:6379/0")

OnEvent = Callable[[str, Any], None]


# --- the machine -----------------------------------------------------------------------


def raise_fd_limit() -> int:
    """Lift the soft open-file limit to the hard one (10,000 sockets need it)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def median(values: Iterable[float]) -> float:
    data = [v for v in values if v == v]
    return statistics.median(data) if data else float("nan")


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table, ready to paste into docs/performance.md."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --- server processes --------------------------------------------------------------------


@dataclass
class Server:
    """A server process (telemed serve, or the bare relay) listening on a port."""

    name: str
    proc: asyncio.subprocess.Process
    port: int
    log: Path | None = None

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def errors_logged(self) -> int:
        """ERROR lines the server wrote so far (its log goes to a file, not the terminal)."""
        if self.log is None or not self.log.exists():
            return 0
        return sum('"level": "error"' in line for line in self.log.read_text().splitlines())

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def wait_ready(url: str, path: str = "/healthz", seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url + path) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {seconds} s")


def telemed_exe() -> str:
    return str(Path(sys.executable).with_name("telemed"))


def telemed_env(tmp: Path, db_url: str, **extra: str) -> dict[str, str]:
    """Environment of a bench `telemed serve`: its own database, quiet logs, no limits
    that a benchmark would trip over."""
    return {
        **os.environ,
        "TELEMED_DATABASE__URL": db_url,
        "TELEMED_LOGGING__LEVEL": "WARNING",
        "TELEMED_STORAGE__DOCUMENTS_DIR": str(tmp / "documents"),
        "TELEMED_SCHEDULER__LEASE_KEY": f"bench:{tmp.name}:lease",
        **extra,
    }


async def run_telemed(args: Sequence[str], env: dict[str, str], cwd: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        telemed_exe(), *args, env=env, cwd=cwd, stdout=asyncio.subprocess.DEVNULL
    )
    if await proc.wait() != 0:
        raise RuntimeError(f"telemed {' '.join(args)} failed")


async def start_telemed(
    name: str, env: dict[str, str], cwd: Path, extra_args: Sequence[str] = ()
) -> Server:
    """A real `telemed serve` process on a free port, once /healthz answers."""
    port = free_port()
    log = (cwd / f"{name}.log").open("ab")  # the server's JSON log, for errors_logged()
    proc = await asyncio.create_subprocess_exec(
        telemed_exe(),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra_args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log,
    )
    log.close()
    server = Server(name, proc, port, cwd / f"{name}.log")
    try:
        await wait_ready(server.url)
    except BaseException:
        await server.stop()
        raise
    return server


async def start_process(
    name: str,
    argv: Sequence[str],
    env: dict[str, str],
    cwd: Path,
    ready: str = "/healthz",
    *,
    port: int | None = None,
    wait: float = 30,
) -> Server:
    """Any server command (its stderr in `<cwd>/<name>.log`, appended) on `port` (a free
    one by default), "{port}" in `argv` replaced by it, once `ready` answers 200."""
    port = port or free_port()
    log = (cwd / f"{name}.log").open("ab")
    proc = await asyncio.create_subprocess_exec(
        *[a.replace("{port}", str(port)) for a in argv],
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log,
    )
    log.close()
    server = Server(name, proc, port, cwd / f"{name}.log")
    try:
        await wait_ready(server.url, ready, wait)
    except BaseException:
        await server.stop()
        raise
    return server


async def start_python(name: str, script: Path, args: Sequence[str] = ()) -> Server:
    """A Python server script (e.g. bench/bare_relay.py) taking --port."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), "--port", str(port), *args
    )
    server = Server(name, proc, port)
    await wait_ready(server.url, "/ready")
    return server


async def py_spy(server: Server, seconds: float, out_dir: str) -> asyncio.subprocess.Process:
    """Record the server's stacks for `seconds` (py-spy, collapsed format) into
    `<out_dir>/<server name>.txt`; await `.wait()` on the result."""
    spy = str(Path(sys.executable).with_name("py-spy"))
    await asyncio.to_thread(Path(out_dir).mkdir, parents=True, exist_ok=True)
    return await asyncio.create_subprocess_exec(
        spy,
        "record",
        "--nonblocking",
        "--format",
        "raw",
        "-d",
        str(max(1, int(seconds))),
        "-p",
        str(server.pid),
        "-o",
        f"{out_dir}/{server.name}.txt",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


def new_tmp(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


async def fresh_pg_database(name: str) -> str:
    """Create an empty PostgreSQL database; return its SQLAlchemy URL."""
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


async def drop_pg_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# --- seeding through the models, in bulk -----------------------------------------------


@dataclass
class Person:
    user_id: str
    token: str


@dataclass
class Pair:
    """A patient and their consultant in one consultation."""

    consultation_id: str
    patient: Person
    consultant: Person


@dataclass
class Seeded:
    pairs: list[Pair] = field(default_factory=list)
    waiting: list[Person] = field(default_factory=list)  # patients in the consultant queue
    consultants: list[Person] = field(default_factory=list)


def _id() -> str:
    return secrets.token_hex(16)


async def seed(db_url: str, *, pairs: int = 0, waiting: int = 0, consultants: int = 0) -> Seeded:
    """Patients with consent and tokens, consultants with tokens, and consultations:
    `pairs` in with_consultant (one consultant each), `waiting` in waiting_consultant.
    Inserted in bulk straight into the schema `telemed migrate` made: fast, and the rows
    are the ones the services would write."""
    from sqlalchemy import insert
    from sqlalchemy.ext.asyncio import create_async_engine

    from telemed.consent import consent_text, current_version
    from telemed.models import AuthToken, ConsentRecord, Consultation, Patient, Staff
    from telemed.security import new_token, token_digest

    now = datetime.now(UTC)
    out = Seeded()
    patients: list[dict[str, Any]] = []
    staff: list[dict[str, Any]] = []
    tokens: list[dict[str, Any]] = []
    consents: list[dict[str, Any]] = []
    consultations: list[dict[str, Any]] = []
    sha = consent_text().sha256
    version = current_version()

    def person(role: str) -> Person:
        p = Person(_id(), new_token())
        row = {"token_hash": token_digest(p.token), "subject_id": p.user_id, "role": role}
        tokens.append({"id": _id(), **row, "created_at": now, "expires_at": now + timedelta(1)})
        if role == "patient":
            patients.append(
                {
                    "id": p.user_id,
                    "phone": f"+7916{len(patients):07d}",
                    "full_name": f"Bench Patient {len(patients)}",
                    "birth_date": date(1980, 1, 1),
                    "sex": "M",
                    "timezone": "Europe/Moscow",
                    "source": "import",
                    "created_at": now,
                    "updated_at": now,
                }
            )
            consents.append(
                {
                    "id": _id(),
                    "patient_id": p.user_id,
                    "version": version,
                    "text_sha256": sha,
                    "accepted_at": now,
                    "client_addr": "127.0.0.1",
                    "user_agent": "bench",
                }
            )
        else:
            staff.append(
                {
                    "id": p.user_id,
                    "login": f"bench-{role}-{len(staff)}",
                    "password_hash": "!",
                    "role": role,
                    "full_name": f"Bench Consultant {len(staff)}",
                    "active": True,
                    "created_at": now,
                }
            )
        return p

    def consultation(patient: Person, state: str, consultant: Person | None, n: int) -> str:
        cid = _id()
        consultations.append(
            {
                "id": cid,
                "patient_id": patient.user_id,
                "kind": "urgent",
                "channel": "video",
                "state": state,
                "version": 1,
                "queue_role": "consultant" if consultant is None else None,
                "queued_at": now + timedelta(microseconds=n) if consultant is None else None,
                "consultant_id": consultant.user_id if consultant else None,
                "first_accepted_at": now if consultant else None,
                "created_at": now,
                "updated_at": now,
            }
        )
        return cid

    for n in range(pairs):
        patient, consultant = person("patient"), person("consultant")
        cid = consultation(patient, "with_consultant", consultant, n)
        out.pairs.append(Pair(cid, patient, consultant))
    for n in range(waiting):
        patient = person("patient")
        consultation(patient, "waiting_consultant", None, n)
        out.waiting.append(patient)
    out.consultants = [person("consultant") for _ in range(consultants)]

    engine = create_async_engine(db_url)
    try:
        async with engine.begin() as conn:
            for model, rows in (
                (Staff, staff),
                (Patient, patients),
                (ConsentRecord, consents),
                (AuthToken, tokens),
                (Consultation, consultations),
            ):
                for start in range(0, len(rows), 2000):
                    await conn.execute(insert(model), rows[start : start + 2000])
    finally:
        await engine.dispose()
    return out


# --- a light Socket.IO client ------------------------------------------------------------


class SioError(Exception):
    pass


class SioClient:
    """One Socket.IO connection over one WebSocket: emit (with an ack id) and events."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, on_event: OnEvent) -> None:
        self.ws = ws
        self.on_event = on_event
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    @classmethod
    async def connect(
        cls, http: aiohttp.ClientSession, url: str, auth: dict[str, Any], on_event: OnEvent
    ) -> SioClient:
        """Open the WebSocket, pass the Engine.IO open and the namespace connect."""
        ws = await http.ws_connect(
            f"{url}/socket.io/?EIO=4&transport=websocket", autoping=False, max_msg_size=0
        )
        opened = await ws.receive_str(timeout=30)
        if not opened.startswith("0"):
            raise SioError(f"unexpected open packet {opened[:40]}")
        await ws.send_str("40" + json.dumps(auth))
        deadline = time.monotonic() + 90  # pings keep coming while the server is stuck
        while True:
            reply = await ws.receive_str(timeout=max(0.1, deadline - time.monotonic()))
            if reply == "2":
                await ws.send_str("3")
                continue
            break
        if not reply.startswith("40"):
            await ws.close()
            raise SioError(f"refused: {reply[:200]}")
        client = cls(ws, on_event)
        client._reader = asyncio.ensure_future(client._read())
        return client

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                text: str = msg.data
                if text == "2":
                    await self.ws.send_str("3")
                elif text.startswith("42"):
                    event, *args = json.loads(text[text.index("[") :])
                    self.on_event(event, args[0] if args else None)
                elif text.startswith("43"):
                    split = text.index("[")
                    fut = self._acks.pop(int(text[2:split]), None)
                    if fut is not None and not fut.done():
                        data = json.loads(text[split:])
                        fut.set_result(data[0] if data else None)
        finally:
            self.closed.set()

    async def send(self, event: str, data: Any) -> None:
        """Emit with an ack id whose answer is read and dropped (like a client callback)."""
        await self.ws.send_str(f"42{next(self._ids)}" + json.dumps([event, data]))

    async def call(self, event: str, data: Any, wait: float = 30) -> Any:
        """Emit and wait for the ack."""
        ack = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acks[ack] = fut
        await self.ws.send_str(f"42{ack}" + json.dumps([event, data]))
        return await asyncio.wait_for(fut, wait)

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


class BareClient:
    """One connection to bench/bare_relay.py: JSON `{to, data}` out, `{from, data}` in."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, on_event: OnEvent) -> None:
        self.ws = ws
        self.on_event = on_event
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(
        cls, http: aiohttp.ClientSession, url: str, user_id: str, on_event: OnEvent
    ) -> BareClient:
        ws = await http.ws_connect(f"{url}/ws?id={user_id}", autoping=True, max_msg_size=0)
        return cls(ws, on_event)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.on_event("signal", json.loads(msg.data))

    async def send_to(self, peer: str, data: Any) -> None:
        await self.ws.send_str(json.dumps({"to": peer, "data": data}))

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)


async def connected_or_none(connect: Any) -> Any:
    """The client, or None when its connect failed or timed out (counted by the caller)."""
    try:
        return await connect
    except (SioError, TimeoutError, aiohttp.ClientError, OSError):
        return None


async def gather_limited(coros: Iterable[Any], limit: int) -> list[Any]:
    """Run awaitables with at most `limit` at once (connect storms would time out)."""
    sem = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with sem:
            return await coro

    return list(await asyncio.gather(*(one(c) for c in coros)))


def client_session() -> aiohttp.ClientSession:
    """One HTTP session for many WebSockets (no per-host connection cap)."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))
