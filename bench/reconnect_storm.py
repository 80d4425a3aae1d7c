"""After `kill -9` and a restart, how long until every client is back? (issue 13)

Seeds `--clients / 2` patient/consultant pairs in `with_consultant` (SQLite), starts
`telemed serve` on a fixed port, and connects `--clients` light Socket.IO clients that
behave as socket.io-client does when its connection drops: the next attempt after
`reconnectionDelay * 2^attempt`, at most `reconnectionDelayMax`, spread by
`randomizationFactor` (1 s, 5 s and 0.5 by default, as in socket.io-client; its Backoff's
formula), the attempt counter reset once connected; an Engine.IO handshake that takes
longer than `--timeout` (socket.io-client's `timeout`, 20 s) is given up and retried. The
namespace connect itself has no timeout in socket.io-client: a client waits for its
answer (pings answered meanwhile) up to `--answer-wait`.

Once everyone is connected and the server is quiet, the server gets SIGKILL and is started
again at once on the same port and database. The script prints the time from the kill,
and from the restarted server's first /healthz answer, until every client is connected
again; a timeline; every failed attempt after the server was back, by kind (a refused
namespace connect, a handshake or an answer that timed out, a dropped connection); and
the restarted server's log scanned for pool timeouts ("QueuePool limit", "TimeoutError")
and errors.

    .venv/bin/python bench/reconnect_storm.py --clients 2000
    .venv/bin/python bench/reconnect_storm.py              # 10,000 clients
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchkit as kit

LOG_PATTERNS = {
    "pool timeout (QueuePool limit)": re.compile(r"QueuePool limit"),
    "TimeoutError": re.compile(r"TimeoutError"),
    "task exception never retrieved": re.compile(r"Task exception was never retrieved"),
    "error lines": re.compile(r'"level": "error"'),
}


class Backoff:
    """socket.io-client's reconnection delay (its `Backoff`, from backo2)."""

    def __init__(self, first: float, most: float, jitter: float, factor: float = 2.0) -> None:
        self.first, self.most, self.jitter, self.factor = first, most, jitter, factor
        self.attempts = 0

    def duration(self) -> float:
        ms = self.first * 1000 * self.factor**self.attempts
        self.attempts += 1
        if self.jitter:
            rand = random.random()
            deviation = math.floor(rand * self.jitter * ms)
            ms = ms - deviation if (math.floor(rand * 10) & 1) == 0 else ms + deviation
        return int(min(ms, self.most * 1000)) / 1000

    def reset(self) -> None:
        self.attempts = 0


class Fleet:
    """What all clients share: counts, failures, and the server's state as we know it."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.connected = 0
        self.all_in = asyncio.Event()
        self.server_back_at: float | None = None  # restarted server's first /healthz answer
        self.failures: Counter[str] = Counter()  # after the server was back
        self.down_failures: Counter[str] = Counter()  # while it was down (expected)
        self.refusals: Counter[str] = Counter()  # namespace connect refused, by code
        self.attempts = 0
        self.stopping = False

    def up(self) -> None:
        self.connected += 1
        if self.connected >= self.total:
            self.all_in.set()

    def down(self) -> None:
        self.connected -= 1
        self.all_in.clear()

    def failed(self, kind: str) -> None:
        back = self.server_back_at is not None and time.perf_counter() >= self.server_back_at
        (self.failures if back else self.down_failures)[kind] += 1


class Failed(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Client:
    """One socket.io-client-like connection that reconnects with backoff and jitter."""

    def __init__(self, fleet: Fleet, url: str, token: str, args: argparse.Namespace) -> None:
        self.fleet, self.url, self.auth = fleet, url, json.dumps({"token": token})
        self.args = args
        self.backoff = Backoff(args.delay, args.delay_max, args.jitter)

    async def run(self, http: aiohttp.ClientSession, first_turn: asyncio.Semaphore) -> None:
        first = True
        while not self.fleet.stopping:
            self.fleet.attempts += 1
            try:
                if first:
                    async with first_turn:  # the first connect of all is not the storm
                        ws = await self._connect(http)
                else:
                    ws = await self._connect(http)
            except Failed as exc:
                self.fleet.failed(exc.kind)
            else:
                self.backoff.reset()
                self.fleet.up()
                try:
                    await self._live(ws)
                finally:
                    self.fleet.down()
            first = False
            await asyncio.sleep(self.backoff.duration())

    async def _connect(self, http: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        try:
            async with asyncio.timeout(self.args.timeout):  # socket.io-client's `timeout`
                ws = await http.ws_connect(
                    f"{self.url}/socket.io/?EIO=4&transport=websocket",
                    autoping=False,
                    max_msg_size=0,
                )
                opened = await ws.receive()
        except TimeoutError:
            raise Failed("handshake timeout") from None
        except aiohttp.ClientConnectorError:
            raise Failed("connection refused") from None
        except aiohttp.WSServerHandshakeError as exc:
            raise Failed(f"handshake HTTP {exc.status}") from None
        except (aiohttp.ClientError, OSError):
            raise Failed("dropped in handshake") from None
        if opened.type is not aiohttp.WSMsgType.TEXT or not str(opened.data).startswith("0"):
            await ws.close()
            raise Failed("dropped in handshake")
        try:
            await ws.send_str("40" + self.auth)
            async with asyncio.timeout(self.args.answer_wait):
                while True:
                    msg = await ws.receive()
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        raise Failed("dropped before the answer")
                    if msg.data == "2":
                        await ws.send_str("3")
                    elif msg.data.startswith("40"):
                        return ws
                    elif msg.data.startswith("44"):
                        self.fleet.refusals[refusal_code(msg.data)] += 1
                        raise Failed("namespace connect refused")
        except TimeoutError:
            await ws.close()
            raise Failed("no answer to the namespace connect") from None
        except Failed:
            await ws.close()
            raise
        except (aiohttp.ClientError, OSError):
            await ws.close()
            raise Failed("dropped before the answer") from None

    async def _live(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Answer pings until the connection drops (the server was killed)."""
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT and msg.data == "2":
                    await ws.send_str("3")
        except (aiohttp.ClientError, OSError):
            pass
        finally:
            await ws.close()


def refusal_code(frame: str) -> str:
    try:
        data = json.loads(frame[2:])
        return str((data.get("data") or {}).get("code") or data.get("message"))
    except (ValueError, AttributeError):
        return frame[:60]


def scan_log(path: Path) -> dict[str, int]:
    text = path.read_text(errors="replace") if path.exists() else ""
    return {name: len(pattern.findall(text)) for name, pattern in LOG_PATTERNS.items()}


async def until_quiet(pid: int, seconds: float = 1.0, limit: float = 120.0) -> None:
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        cpu0 = kit.cpu_seconds(pid)
        await asyncio.sleep(seconds)
        if kit.cpu_seconds(pid) - cpu0 < 0.05 * seconds:
            return


async def main(args: argparse.Namespace) -> None:
    kit.raise_fd_limit()
    tmp = kit.new_tmp("telemed-storm-")
    url = f"sqlite+aiosqlite:///{tmp}/telemed.db"
    env = kit.telemed_env(tmp, url)
    await kit.run_telemed(["migrate"], env, tmp)
    seeded = await kit.seed(url, pairs=args.clients // 2)
    tokens = [t for p in seeded.pairs for t in (p.patient.token, p.consultant.token)]
    port = kit.free_port()
    argv = [kit.telemed_exe(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    print(f"{len(tokens)} clients, server log in {tmp}", flush=True)
    server = await kit.start_process("before", argv, env, tmp, port=port)
    await until_quiet(server.pid)
    rss0 = kit.rss_bytes(server.pid)
    fleet = Fleet(len(tokens))
    first_turn = asyncio.Semaphore(args.connect_limit)
    async with kit.client_session() as http:
        clients = [Client(fleet, server.url, t, args) for t in tokens]
        tasks = [asyncio.ensure_future(c.run(http, first_turn)) for c in clients]
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(fleet.all_in.wait(), args.limit)
        except TimeoutError:
            raise SystemExit(
                f"only {fleet.connected} of {fleet.total} connected at first"
            ) from None
        print(f"all {fleet.total} connected in {time.perf_counter() - t0:.1f} s", flush=True)
        await until_quiet(server.pid)
        rss = kit.rss_bytes(server.pid)
        per_conn = (rss - rss0) / fleet.total
        print(
            f"server RSS {rss0 / 2**20:.0f} -> {rss / 2**20:.0f} MB: "
            f"{per_conn / 1024:.1f} KB per idle connection; load average {os.getloadavg()}",
            flush=True,
        )

        fleet.failures.clear()
        fleet.down_failures.clear()
        attempts0 = fleet.attempts
        os.kill(server.pid, signal.SIGKILL)
        killed = time.perf_counter()
        await server.proc.wait()
        restarted = kit.start_process("after", argv, env, tmp, port=port, wait=120)
        starting = asyncio.ensure_future(restarted)
        timeline: list[tuple[float, int]] = []
        back: kit.Server | None = None
        while time.perf_counter() - killed < args.limit:
            if back is None and starting.done():
                back = starting.result()
                fleet.server_back_at = time.perf_counter()
                print(f"  server back after {fleet.server_back_at - killed:.1f} s", flush=True)
            timeline.append((time.perf_counter() - killed, fleet.connected))
            if fleet.connected >= fleet.total and back is not None:
                break
            if len(timeline) % 5 == 1:
                print(f"  {timeline[-1][0]:5.1f} s: {fleet.connected} connected", flush=True)
            await asyncio.sleep(1.0)
        all_back = time.perf_counter()
        if back is None:
            back = await starting
        done = fleet.connected >= fleet.total
        await asyncio.sleep(2.0)
        log = scan_log(tmp / "after.log")
        rss_after = kit.rss_bytes(back.pid)
        fleet.stopping = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await back.stop()

    print()
    print(f"{fleet.total} clients, load average {os.getloadavg()}")
    ready = (fleet.server_back_at or all_back) - killed
    rows = [
        ("all reconnected", "yes" if done else f"NO: {fleet.connected} of {fleet.total}"),
        ("kill -> all connected", f"{all_back - killed:.1f} s"),
        ("kill -> server answers /healthz", f"{ready:.1f} s"),
        ("server back -> all connected", f"{all_back - killed - ready:.1f} s"),
        ("connect attempts since the kill", f"{fleet.attempts - attempts0}"),
        ("failed while the server was down", dict(fleet.down_failures) or "none"),
        ("failed after the server was back", dict(fleet.failures) or "none"),
        ("namespace connects refused, by code", dict(fleet.refusals) or "none"),
        ("idle memory per connection (first server)", f"{per_conn / 1024:.1f} KB"),
        ("server RSS before / after the kill", f"{rss / 2**20:.0f} / {rss_after / 2**20:.0f} MB"),
        *((f"server log: {k}", v) for k, v in log.items()),
    ]
    print(kit.table(("", "value"), rows))
    marks = [10, 20, 30, 45, 60, 90, 120]
    print(
        "connected at "
        + ", ".join(
            f"{m} s: {max((n for t, n in timeline if t <= m), default=0)}"
            for m in marks
            if m <= timeline[-1][0] + 1
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=10_000, help="sockets (half patients)")
    parser.add_argument("--delay", type=float, default=1.0, help="reconnectionDelay, s")
    parser.add_argument("--delay-max", type=float, default=5.0, help="reconnectionDelayMax, s")
    parser.add_argument("--jitter", type=float, default=0.5, help="randomizationFactor")
    parser.add_argument("--timeout", type=float, default=20.0, help="handshake timeout, s")
    parser.add_argument(
        "--answer-wait", type=float, default=120.0, help="longest wait for a namespace answer"
    )
    parser.add_argument("--connect-limit", type=int, default=100, help="first connects at once")
    parser.add_argument("--limit", type=float, default=600.0, help="give up after, s")
    asyncio.run(main(parser.parse_args()))
