"""The services of one running app, built once and reached through `web.AppKey`s."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from telemed.clock import Clock
from telemed.config import Settings
from telemed.db import Database
from telemed.live import Live
from telemed.notify import Sender
from telemed.services.appointments import AppointmentService
from telemed.services.auth import AuthService
from telemed.services.chat import ChatService
from telemed.services.consent import ConsentService
from telemed.services.consultations import ConsultationService
from telemed.services.documents import DocumentService
from telemed.services.queue import QueueService


@dataclass
class Services:
    settings: Settings
    clock: Clock
    db: Database
    sms: Sender
    auth: AuthService
    consent: ConsentService
    consultations: ConsultationService
    documents: DocumentService
    queue: QueueService
    chat: ChatService
    appointments: AppointmentService
    vapid_private_key: str | None = None  # push.backend webpush: the server's VAPID key


SERVICES = web.AppKey("services", Services)
LIVE = web.AppKey("live", Live)  # the Socket.IO layer, seen through the Live protocol
REPLAN: web.AppKey[Callable[[], None]] = web.AppKey("replan")  # a new deadline was written


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def client_addr(request: web.Request) -> str:
    """The client's address; X-Forwarded-For is believed only from configured proxies."""
    remote = request.remote or "unknown"
    trusted = request.app[SERVICES].settings.server.trusted_proxies
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded and remote in trusted:
        return forwarded.split(",")[-1].strip()[:64] or remote
    return remote
