"""The aiohttp application: services opened and closed in order, errors mapped once."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web
from sqlalchemy import text

from telemed import __version__
from telemed.clock import Clock, SystemClock
from telemed.config import Settings
from telemed.context import SERVICES, Services, client_addr
from telemed.db import Database, create_engine, upgrade_schema
from telemed.errors import (
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    TelemedError,
)
from telemed.http import (
    views_auth,
    views_consultations,
    views_documents,
    views_me,
    views_patients,
    views_queues,
)
from telemed.http.api import Api
from telemed.notify import Sender, build_sender
from telemed.services.auth import OTP_KEY_NAME, AuthService, Caller, ensure_server_key
from telemed.services.consent import ConsentService
from telemed.services.consultations import ConsultationService
from telemed.services.documents import DocumentService

log = logging.getLogger("telemed.app")
WEB_DIR = Path(__file__).parent / "web"
API = web.AppKey("api", Api)
Middleware = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: TelemedError) -> web.Response:
    """The one REST shape of an error: `{"error": {"code", "message"}}`."""
    response = web.json_response({"error": error.to_dict()}, status=error.status)
    retry = error.details.get("retry_after_seconds")
    if retry is not None:
        response.headers["Retry-After"] = str(retry)
    return response


_HTTP_ERRORS: dict[int, type[TelemedError]] = {
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
}


@web.middleware
async def errors_middleware(request: web.Request, handler: Middleware) -> web.StreamResponse:
    try:
        response = await handler(request)
    except TelemedError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        mapped = _HTTP_ERRORS.get(exc.status)
        if mapped is None:
            return error_response(_plain(exc.status, exc.reason))
        return error_response(mapped())
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(InternalError())
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def _plain(status: int, reason: str) -> TelemedError:
    error = TelemedError(reason)
    error.status = status  # type: ignore[misc]
    error.code = reason.lower().replace(" ", "_")  # type: ignore[misc]
    return error


def build_api() -> Api:
    async def authenticate(request: web.Request) -> Caller:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else None
        return await request.app[SERVICES].auth.authenticate(token)

    async def has_consent(request: web.Request, caller: Caller) -> bool:
        return await request.app[SERVICES].consent.accepted_at(caller.id) is not None

    def max_body(request: web.Request) -> int:
        return request.app[SERVICES].settings.server.max_body_bytes

    api = Api("telemed", __version__, authenticate, has_consent, max_body)
    views_auth.register(api)
    views_me.register(api)
    views_patients.register(api)
    views_consultations.register(api)
    views_documents.register(api)
    views_queues.register(api)
    return api


async def open_database(settings: Settings) -> Database:
    """Connect and bring the schema up to date (embedded default: creates it)."""
    engine = create_engine(settings.database)
    await upgrade_schema(engine)
    return Database(engine)


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    sms: Sender | None = None,
) -> web.Application:
    """Build the app; databases and senders are opened on startup, closed on cleanup."""
    app = web.Application(
        middlewares=[errors_middleware],
        # Multipart uploads have their own limits; JSON bodies are checked in read_json.
        client_max_size=64 * 1024 * 1024,
    )
    used_clock = clock or SystemClock()
    api = build_api()
    app[API] = api
    api.mount(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        db = await open_database(settings)
        sender = sms or build_sender(
            settings.sms.backend,
            path=settings.sms.path,
            url=settings.sms.url,
            token=settings.sms.token,
            timeout=settings.sms.timeout.total_seconds(),
            clock=used_clock,
        )
        otp_key = await ensure_server_key(db, OTP_KEY_NAME, settings.auth.secret_key)
        auth = AuthService(db, used_clock, settings.auth, sender, otp_key)
        documents = DocumentService(db, used_clock, settings.storage)
        app[SERVICES] = Services(
            settings=settings,
            clock=used_clock,
            db=db,
            sms=sender,
            auth=auth,
            consent=ConsentService(db, used_clock),
            consultations=ConsultationService(db, used_clock, settings.rules),
            documents=documents,
        )
        yield
        await auth.drain()
        close = getattr(sender, "close", None)
        if close is not None and sms is None:
            await close()
        await db.dispose()

    app.cleanup_ctx.append(lifecycle)

    async def healthz(request: web.Request) -> web.Response:
        """200 once the service can reach its database."""
        try:
            async with request.app[SERVICES].db.read() as session:
                await session.execute(text("SELECT 1"))
        except Exception:
            log.exception("health check failed")
            return web.json_response({"status": "unavailable"}, status=503)
        return web.json_response({"status": "ok"})

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(request.app[API].openapi())

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB_DIR / "index.html")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_get("/", index)
    app.router.add_static("/static", WEB_DIR / "static", show_index=False)
    _ = client_addr  # re-exported for views
    return app
