"""Prometheus metrics and the readiness check: what an operator of several nodes watches.

Counters of things that happen (errors, events, relayed messages) are kept per
process, like every Prometheus client does; gauges of state (sockets, queues,
the scheduler, the database and Redis) are read when `/metrics` is scraped,
so they cost nothing between scrapes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import select, text

from telemed.consultation import State
from telemed.context import SERVICES, Services
from telemed.errors import TelemedError
from telemed.models import Consultation
from telemed.roles import DOCTOR_ROLES, Role

if TYPE_CHECKING:
    from scheduler.runner import SchedulerRunner
    from signalling.server import Signalling

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
QUEUE_ROLES = (Role.CONSULTANT, *sorted(DOCTOR_ROLES, key=lambda r: r.value))
CHECK_TIMEOUT = 2.0

ERRORS = Counter(
    "telemed_errors_total",
    "Errors answered to clients, by transport (rest, socketio) and error code.",
    ["transport", "code"],
    registry=None,
)
EVENTS = Counter(
    "telemed_socketio_events_total",
    "Socket.IO events handled, by event.",
    ["event"],
    registry=None,
)
EVENT_SECONDS = Histogram(
    "telemed_socketio_event_seconds",
    "Time from receiving a Socket.IO event to its ack, for events that do more than relay "
    "(`signal` is only counted: it is the hot path, and its time is the relay's).",
    ["event"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
RELAY_SECONDS = Histogram(
    "telemed_relay_seconds",
    "Cross-node delivery: from publishing on one node to the sockets of another.",
    buckets=LATENCY_BUCKETS,
    registry=None,
)
RELAY_PUBLISHED = Counter(
    "telemed_relay_published_total",
    "Socket.IO packets published to the other nodes.",
    registry=None,
)
RELAY_DROPPED = Counter(
    "telemed_relay_dropped_total",
    "Socket.IO packets other nodes missed because Redis failed (this node's sockets got them).",
    registry=None,
)
_PER_PROCESS = (ERRORS, EVENTS, EVENT_SECONDS, RELAY_SECONDS, RELAY_PUBLISHED, RELAY_DROPPED)

Ack = dict[str, Any]
AckHandler = Callable[..., Awaitable[Ack]]


def count_rest_error(error: TelemedError) -> None:
    """Called by the REST error middleware for every error it answers."""
    ERRORS.labels("rest", error.code).inc()


def count_socket_error(code: str) -> None:
    """One Socket.IO error answered to a client; `observed` calls it for wrapped handlers."""
    ERRORS.labels("socketio", code).inc()


def observed(event: str, handler: AckHandler, *, timed: bool = True) -> AckHandler:
    """Wrap a Socket.IO handler that returns an ack: the event counted (and timed, unless
    `timed=False`: a relay's histogram would cost more than the relay), and the error code
    counted when the ack is an error."""
    count = EVENTS.labels(event).inc
    seconds = EVENT_SECONDS.labels(event).observe if timed else None

    async def handled(*args: Any) -> Ack:
        started = time.perf_counter() if seconds is not None else 0.0
        ack = await handler(*args)
        count()
        if seconds is not None:
            seconds(time.perf_counter() - started)
        if not ack.get("ok"):
            error = ack.get("error")
            code = error.get("code", "unknown") if isinstance(error, dict) else "unknown"
            count_socket_error(str(code))
        return ack

    return handled


# --- readiness and the state read at scrape time ------------------------------------------


async def _within(check: Awaitable[Any]) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await check
        return True
    except Exception:
        return False


async def database_up(services: Services) -> bool:
    async def ping() -> None:
        async with services.db.read() as session:
            await session.execute(text("SELECT 1"))

    return await _within(ping())


class Snapshot:
    """The state gauges as read for one scrape."""

    def __init__(self) -> None:
        self.sockets = 0
        self.online: dict[Role, int] = {}
        self.queues: dict[str, tuple[int, float, float, int]] = {}
        self.breaches_24h = 0
        self.database_up = False
        self.redis_up: bool | None = None
        self.scheduler: SchedulerRunner | None = None


class NodeCollector(Collector):
    """Turns the last Snapshot into Prometheus families."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def collect(self) -> Any:
        s = self.snapshot
        yield GaugeMetricFamily(
            "telemed_connected_clients", "Socket.IO connections on this node.", value=s.sockets
        )
        online = GaugeMetricFamily(
            "telemed_online_users", "Users with a connection on any node, by role.", labels=["role"]
        )
        for role, count in sorted(s.online.items()):
            online.add_metric([role.value], count)
        yield online
        length = GaugeMetricFamily(
            "telemed_queue_length", "Patients waiting, by queue.", labels=["role"]
        )
        longest = GaugeMetricFamily(
            "telemed_queue_longest_wait_seconds",
            "How long the first patient of a queue has waited.",
            labels=["role"],
        )
        mean = GaugeMetricFamily(
            "telemed_queue_mean_wait_seconds",
            "Mean wait so far of the patients in a queue.",
            labels=["role"],
        )
        past = GaugeMetricFamily(
            "telemed_queue_past_target",
            "Patients of the consultant queue waiting longer than rules.urgent_start_target.",
            labels=["role"],
        )
        for role in QUEUE_ROLES:
            n, oldest, average, late = s.queues.get(role.value, (0, 0.0, 0.0, 0))
            length.add_metric([role.value], n)
            longest.add_metric([role.value], oldest)
            mean.add_metric([role.value], average)
            past.add_metric([role.value], late)
        yield from (length, longest, mean, past)
        yield GaugeMetricFamily(
            "telemed_start_target_breaches_24h",
            "Urgent consultations of the last 24 h that waited past the start target (R-URG-2).",
            value=s.breaches_24h,
        )
        yield GaugeMetricFamily(
            "telemed_database_up", "Whether the database answered.", value=int(s.database_up)
        )
        if s.redis_up is not None:
            yield GaugeMetricFamily(
                "telemed_redis_up", "Whether Redis answered a PING.", value=int(s.redis_up)
            )
        runner = s.scheduler
        if runner is not None:
            yield GaugeMetricFamily(
                "telemed_scheduler_leader",
                "1 on the node that runs the scheduler.",
                value=int(runner.leading),
            )
            yield GaugeMetricFamily(
                "telemed_scheduler_lag_seconds",
                "How late the last pass fired its latest reminder.",
                value=runner.last_lag_seconds,
            )
            yield CounterMetricFamily(
                "telemed_scheduler_passes",
                "Scheduler passes run on this node.",
                value=runner.passes,
            )


async def _queues(services: Services) -> dict[str, tuple[int, float, float, int]]:
    """Per queue: length, longest and mean wait so far, and how many are past the target."""
    now = services.clock.now()
    target = services.settings.rules.urgent_start_target.total_seconds()
    query = select(Consultation.queue_role, Consultation.queued_at, Consultation.created_at).where(
        Consultation.state.in_([State.WAITING_CONSULTANT.value, State.WAITING_DOCTOR.value]),
        Consultation.queue_role.is_not(None),
    )
    async with services.db.read() as session:
        rows = (await session.execute(query)).all()
    waits: dict[str, list[float]] = {}
    for role, queued_at, created_at in rows:
        since = queued_at or created_at
        waits.setdefault(str(role), []).append(max(0.0, (now - since).total_seconds()))
    return {
        role: (
            len(w),
            max(w),
            sum(w) / len(w),
            sum(1 for x in w if x > target) if role == Role.CONSULTANT.value else 0,
        )
        for role, w in waits.items()
    }


class Metrics:
    """The `/metrics` and `/readyz` of one app."""

    def __init__(
        self,
        services: Callable[[], Services],
        signalling: Signalling,
        scheduler: Callable[[], SchedulerRunner | None],
    ) -> None:
        self.services = services
        self.signalling = signalling
        self.scheduler = scheduler
        self.node = NodeCollector()
        self.registry = CollectorRegistry()
        for metric in (*_PER_PROCESS, self.node):
            self.registry.register(metric)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    async def checks(self) -> tuple[bool, bool | None]:
        """(database up, Redis up or None when not configured), checked now."""
        db, redis = await asyncio.gather(
            database_up(self.services()), self.signalling.cluster.redis_up()
        )
        return db, redis

    async def readyz(self, request: web.Request) -> web.Response:
        """200 when the database and (if configured) Redis answer, else 503 naming which."""
        db, redis = await self.checks()
        body: dict[str, str] = {"database": "ok" if db else "down"}
        if redis is not None:
            body["redis"] = "ok" if redis else "down"
        ready = db and redis is not False
        body["status"] = "ready" if ready else "unavailable"
        return web.json_response(body, status=200 if ready else 503)

    async def scrape(self, request: web.Request) -> web.Response:
        """The Prometheus text format; state gauges are read now."""
        services = self.services()
        snapshot = Snapshot()
        snapshot.database_up, snapshot.redis_up = await self.checks()
        presence = self.signalling.presence
        snapshot.sockets = len(presence)
        snapshot.online = {role: presence.count(role) for role in Role}
        snapshot.scheduler = self.scheduler()
        if snapshot.database_up:
            snapshot.queues = await _queues(services)
            day_ago = services.clock.now() - timedelta(hours=24)
            snapshot.breaches_24h = await services.queue.breaches(day_ago)
        self.node.snapshot = snapshot
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


def install(
    app: web.Application,
    signalling: Signalling,
    scheduler: web.AppKey[SchedulerRunner],
) -> Metrics:
    """Serve `/metrics` and `/readyz` from this app."""
    node = Metrics(lambda: app[SERVICES], signalling, lambda: app.get(scheduler))
    app.router.add_get("/metrics", node.scrape)
    app.router.add_get("/readyz", node.readyz)
    return node
