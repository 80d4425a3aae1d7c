"""The aiohttp application: services opened and closed in order, errors mapped once."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware as AiohttpMiddleware
from sqlalchemy import text

from conclusions import http as conclusions_http
from scheduler.jobs import DueWork
from scheduler.lease import Lease, LocalLease, RedisLease
from scheduler.runner import SchedulerRunner
from signalling.server import Signalling
from telemed import __version__, metrics
from telemed.clock import Clock, SystemClock
from telemed.config import PushSettings, Settings, SmsSettings
from telemed.context import LIVE, REPLAN, SERVICES, Services, client_addr
from telemed.db import Database, Publish, create_engine, upgrade_schema
from telemed.errors import (
    BadRequest,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    TelemedError,
)
from telemed.events import DeadlineSet, DomainEvent
from telemed.http import (
    flood_gate,
    headers,
    views_appointments,
    views_auth,
    views_consultations,
    views_devices,
    views_documents,
    views_followup,
    views_me,
    views_patients,
    views_push,
    views_quality,
    views_queues,
)
from telemed.http.api import API_PREFIX, Api, bearer_token, error_headers
from telemed.http.flood_gate import FloodGate
from telemed.limits import Counters, DbCounters, RedisCounters
from telemed.live import Live
from telemed.notify import Sender, build_sender
from telemed.notify.webpush import WebPushSender
from telemed.services.appointments import AppointmentService
from telemed.services.auth import OTP_KEY_NAME, AuthService, Caller, ensure_server_key
from telemed.services.chat import ChatService
from telemed.services.consent import ConsentService
from telemed.services.consultations import ConsultationService
from telemed.services.documents import DocumentService
from telemed.services.push import PushSubscriptions, ensure_vapid_key
from telemed.services.queue import QueueService

log = logging.getLogger("telemed.app")
WEB_DIR = Path(__file__).parent / "web"
# The pages' front-end package (socket.io-client) ships inside the package, pinned to
# package-lock.json by vendor.json (scripts/vendor.py refreshes it); the pages import it as
# an ES module from /vendor/, so an installed wheel needs no Node.js.
VENDOR_DIR = WEB_DIR / "static" / "vendor"
VENDOR_FILES = frozenset({"socket.io.esm.min.js", "socket.io.esm.min.js.map", "LICENSE"})
API = web.AppKey("api", Api)
SIGNALLING = web.AppKey("signalling", Signalling)
SCHEDULER = web.AppKey("scheduler", SchedulerRunner)
Middleware = Callable[[web.Request], Awaitable[web.StreamResponse]]
SOCKET_PATH = "/socket.io/"  # where python-socketio attaches (its default path)


def error_response(error: TelemedError, request: web.Request | None = None) -> web.Response:
    """The one REST shape of an error: `{"error": {"code", "message"}}`, with the headers its
    status calls for (`Allow`, `WWW-Authenticate`, `Retry-After`)."""
    metrics.count_rest_error(error)
    if request is not None and (request.path == "/fhir" or request.path.startswith("/fhir/")):
        return conclusions_http.fhir_error(error, request)  # FHIR clients read OperationOutcome
    return web.json_response(
        {"error": error.to_dict()}, status=error.status, headers=error_headers(error, request)
    )


def http_error(exc: web.HTTPException) -> TelemedError:
    """aiohttp's own 4xx/5xx (no route, wrong method, body too large) as our error."""
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(exc.allowed_methods)
    if exc.status == 404:
        return NotFound()
    if exc.status == 413:
        return PayloadTooLarge()
    return _plain(exc.status, exc.reason)


@web.middleware
def errors_middleware(request: web.Request, handler: Middleware) -> Awaitable[web.StreamResponse]:
    """Errors as data for every request but a Socket.IO WebSocket: its handler runs as long
    as the socket and answers its own errors, and a middleware awaiting it would keep a
    frame per idle connection (bench/idle_memory.py)."""
    if request.path == SOCKET_PATH and request.headers.get("Upgrade", "").lower() == "websocket":
        return handler(request)
    return _errors_as_data(request, handler)


async def _errors_as_data(request: web.Request, handler: Middleware) -> web.StreamResponse:
    try:
        response = await handler(request)
    except TelemedError as exc:
        return error_response(exc, request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(http_error(exc), request)
    except HttpProcessingError:  # a body aiohttp's parsers refuse, e.g. a bad multipart header
        return error_response(BadRequest("The request body could not be read."), request)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(InternalError(), request)
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


LOGIN_PATHS = frozenset(
    f"{API_PREFIX}{path}" for path in ("/auth/otp", "/auth/otp/verify", "/auth/staff")
)


def _flood_gate(settings: Settings, clock: Clock) -> AiohttpMiddleware:
    """The door of the login paths (telemed/http/flood_gate.py), outside every other
    middleware so a refused address costs neither a parsed body nor an error log."""
    auth = settings.auth
    gate = FloodGate(
        refusals=auth.flood_refusals,
        window=auth.flood_window.total_seconds(),
        spacing=auth.flood_spacing.total_seconds(),
        max_held=auth.flood_max_held,
    )

    def refuse(request: web.Request, retry_after: int) -> web.Response:
        return error_response(RateLimited(retry_after_seconds=retry_after), request)

    return flood_gate.middleware(
        gate, LOGIN_PATHS, client_addr, lambda: clock.now().timestamp(), refuse
    )


def _plain(status: int, reason: str) -> TelemedError:
    error = TelemedError(reason)
    error.status = status  # type: ignore[misc]
    error.code = reason.lower().replace(" ", "_")  # type: ignore[misc]
    return error


def build_api() -> Api:
    async def authenticate(request: web.Request) -> Caller:
        return await request.app[SERVICES].auth.authenticate(bearer_token(request))

    async def has_consent(request: web.Request, caller: Caller) -> bool:
        return await request.app[SERVICES].consent.accepted_at(caller.id) is not None

    def max_body(request: web.Request) -> int:
        return request.app[SERVICES].settings.server.max_body_bytes

    api = Api("telemed", __version__, authenticate, has_consent, max_body)
    views_auth.register(api)
    views_me.register(api)
    views_patients.register(api)
    views_consultations.register(api)
    views_quality.register(api)
    views_followup.register(api)
    conclusions_http.register(api)
    views_documents.register(api)
    views_queues.register(api)
    views_appointments.register(api)
    views_devices.register(api)
    views_push.register(api)
    return api


async def open_database(settings: Settings) -> Database:
    """Connect and bring the schema up to date (embedded default: creates it)."""
    engine = create_engine(settings.database)
    await upgrade_schema(engine)
    return Database(engine)


def _sender(config: SmsSettings, clock: Clock) -> Sender:
    return build_sender(
        config.backend,
        path=config.path,
        url=config.url,
        token=config.token,
        timeout=config.timeout.total_seconds(),
        clock=clock,
    )


def _push_sender(
    settings: PushSettings,
    db: Database,
    clock: Clock,
    vapid_key: str | None,
    sms: Sender,
    session: Callable[[], aiohttp.ClientSession] | None,
) -> Sender:
    """Web Push with SMS as its fallback, or one of the development backends."""
    if settings.backend != "webpush" or vapid_key is None:
        return _sender(settings, clock)
    return WebPushSender(
        PushSubscriptions(db, clock, settings),
        vapid_key,
        settings.vapid_subject,
        ttl_seconds=int(settings.ttl.total_seconds()),
        timeout=settings.timeout.total_seconds(),
        fallback=sms,
        session_factory=session or aiohttp.ClientSession,
    )


def _one_way_out(live: Live, replan: Callable[[], None]) -> Publish:
    """Where committed domain events go: the live layer tells people; a new or moved
    deadline makes the scheduler plan its next pass."""

    async def publish(events: list[DomainEvent]) -> None:
        if any(isinstance(event, DeadlineSet) for event in events):
            replan()
        await live.publish(events)

    return publish


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    sms: Sender | None = None,
    push_session: Callable[[], aiohttp.ClientSession] | None = None,
) -> web.Application:
    """Build the app; databases and senders are opened on startup, closed on cleanup.
    `push_session` makes the HTTP session Web Push goes out on (tests: one that reaches a
    fake of the browsers' push services)."""
    used_clock = clock or SystemClock()
    app = web.Application(
        middlewares=[_flood_gate(settings, used_clock), errors_middleware],
        # Multipart uploads have their own limits; JSON bodies are checked in read_json.
        client_max_size=64 * 1024 * 1024,
    )
    api = build_api()
    app[API] = api
    headers.install(app, settings.server)
    api.mount(app)
    conclusions_http.add_routes(app)
    views_devices.install(app, settings)  # test calls of the connection check, /check

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        db = await open_database(settings)
        sender = sms or _sender(settings.sms, used_clock)
        otp_key = await ensure_server_key(db, OTP_KEY_NAME, settings.auth.secret_key)
        vapid_key = None
        if settings.push.backend == "webpush":
            vapid_key = await ensure_vapid_key(db, settings.push)
        redis_client = aioredis.from_url(settings.redis.url) if settings.redis.url else None
        counters: Counters = (
            RedisCounters(redis_client, settings.redis.prefix, DbCounters(db))
            if redis_client is not None
            else DbCounters(db)
        )
        auth = AuthService(db, used_clock, settings.auth, sender, otp_key, counters)
        documents = DocumentService(db, used_clock, settings.storage, settings.rules)
        app[SERVICES] = Services(
            settings=settings,
            clock=used_clock,
            db=db,
            sms=sender,
            auth=auth,
            consent=ConsentService(db, used_clock),
            consultations=ConsultationService(db, used_clock, settings.rules),
            documents=documents,
            queue=QueueService(db, used_clock, settings.rules),
            chat=ChatService(db, used_clock),
            appointments=AppointmentService(db, used_clock, settings.rules),
            vapid_private_key=vapid_key,
        )
        push = _push_sender(settings.push, db, used_clock, vapid_key, sender, push_session)
        consultations = app[SERVICES].consultations
        work = DueWork(
            db, used_clock, settings, consultations, signalling, {"push": push, "sms": sender}
        )
        lease: Lease = (
            RedisLease(
                redis_client,
                settings.scheduler.lease_key,
                int(settings.scheduler.lease_ttl.total_seconds() * 1000),
            )
            if redis_client is not None
            else LocalLease()
        )
        runner = SchedulerRunner(work, settings.scheduler, lease, used_clock)
        app[SCHEDULER] = runner
        app[REPLAN] = runner.poke
        db.on_commit = _one_way_out(signalling, runner.poke)
        await signalling.start()
        if settings.redis.url is None:  # one node: nobody is connected to a node starting
            await consultations.everyone_away()
        if settings.scheduler.enabled:
            await runner.start()
        yield
        await runner.stop()
        await signalling.stop()
        await auth.drain()
        auth.close()
        for made in (sender if sms is None else None, push):
            close = getattr(made, "close", None)
            if close is not None:
                await close()
        if redis_client is not None:
            await redis_client.aclose()
        await db.dispose()

    signalling = Signalling(app, settings)
    app[SIGNALLING] = signalling
    app[LIVE] = signalling
    app.cleanup_ctx.append(lifecycle)

    async def healthz(request: web.Request) -> web.Response:
        """200 once the service can reach its database."""
        try:
            async with request.app[SERVICES].db.read() as session:
                await session.execute(text("SELECT 1"))
        except Exception:
            log.exception("health check failed")
            return web.json_response({"status": "unavailable"}, status=503)
        runner = request.app.get(SCHEDULER)
        role = "leader" if runner is not None and runner.leading else "standby"
        if not settings.scheduler.enabled:
            role = "off"
        return web.json_response({"status": "ok", "scheduler": role})

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(request.app[API].openapi())

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB_DIR / "index.html")

    async def console(request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB_DIR / "console.html")

    async def service_worker(request: web.Request) -> web.FileResponse:
        """The patient app's service worker, from the root so its scope is the whole app;
        never cached by HTTP, so a new version is found at once."""
        return web.FileResponse(
            WEB_DIR / "static" / "sw.js",
            headers={
                "Content-Type": "text/javascript",
                "Cache-Control": "no-cache",
                "Service-Worker-Allowed": "/",
            },
        )

    async def manifest(request: web.Request) -> web.FileResponse:
        """The web app manifest: the patient app installs like an app."""
        return web.FileResponse(
            WEB_DIR / "static" / "manifest.webmanifest",
            headers={"Content-Type": "application/manifest+json", "Cache-Control": "no-cache"},
        )

    async def vendor(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in VENDOR_FILES:
            raise web.HTTPNotFound()
        return web.FileResponse(VENDOR_DIR / name, headers={"Cache-Control": "no-cache"})

    app.router.add_get("/healthz", healthz)
    metrics.install(app, signalling, SCHEDULER)  # /metrics and /readyz
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_get("/", index)
    app.router.add_get("/console", console)
    app.router.add_get("/vendor/{name}", vendor)
    app.router.add_get("/sw.js", service_worker)
    app.router.add_get("/manifest.webmanifest", manifest)
    app.router.add_static("/static", WEB_DIR / "static", show_index=False)
    _ = client_addr  # re-exported for views
    return app
