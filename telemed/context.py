"""The services of one running app, built once and reached through `web.AppKey`s."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from telemed.clock import Clock
from telemed.config import Settings
from telemed.db import Database
from telemed.notify import Sender
from telemed.services.auth import AuthService
from telemed.services.consent import ConsentService
from telemed.services.consultations import ConsultationService
from telemed.services.documents import DocumentService


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


SERVICES = web.AppKey("services", Services)


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
