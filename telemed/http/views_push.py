"""Web Push registration (the server key, my devices) and the patient's notifications list."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from telemed.context import services
from telemed.errors import NotFound
from telemed.http.api import Api, Body, Call, Out
from telemed.roles import Role
from telemed.services.notifications import NotificationService
from telemed.services.push import PushSubscriptions, vapid_public_key

PATIENT = {Role.PATIENT}


class PushConfigOut(Out):
    public_key: str  # the VAPID application server key, base64url (uncompressed P-256 point)


class SubscriptionKeys(Body):
    p256dh: Annotated[str, Field(min_length=1, max_length=128)]
    auth: Annotated[str, Field(min_length=1, max_length=64)]


class SubscriptionIn(Body):
    """The browser's PushSubscription JSON, as `subscription.toJSON()` gives it."""

    endpoint: Annotated[str, Field(min_length=1, max_length=1024)]
    expirationTime: float | None = None  # the browser's own name
    keys: SubscriptionKeys


class EndpointIn(Body):
    endpoint: Annotated[str, Field(min_length=1, max_length=1024)]


class NotificationOut(Out):
    notification_id: str
    kind: str
    title: str
    text: str
    url: str
    created_at: datetime
    read: bool
    appointment_id: str | None = None
    consultation_id: str | None = None


class NotificationsOut(Out):
    items: list[NotificationOut]
    unread: int


def register(api: Api) -> None:
    @api.route("GET", "/push/config", roles=None, response=PushConfigOut, tag="push")
    async def push_config(call: Call[Body]) -> PushConfigOut:
        """The key browsers subscribe with (`applicationServerKey`)."""
        svc = services(call.request)
        if svc.vapid_private_key is None:
            raise NotFound("Web Push is not configured.")
        return PushConfigOut(public_key=vapid_public_key(svc.vapid_private_key))

    @api.route(
        "POST", "/me/push-subscriptions", roles=PATIENT, body=SubscriptionIn, status=201, tag="push"
    )
    async def add_subscription(call: Call[SubscriptionIn]) -> None:
        """Register this device for pushes (several devices per patient)."""
        svc = services(call.request)
        sub = call.body
        await PushSubscriptions(svc.db, svc.clock, svc.settings.push).register(
            call.me.id,
            sub.endpoint,
            sub.keys.p256dh,
            sub.keys.auth,
            sub.expirationTime,
            token_id=call.me.token_id,
        )

    @api.route("DELETE", "/me/push-subscriptions", roles=PATIENT, body=EndpointIn, tag="push")
    async def remove_subscription(call: Call[EndpointIn]) -> None:
        """Forget this device (by its endpoint)."""
        svc = services(call.request)
        removed = await PushSubscriptions(svc.db, svc.clock, svc.settings.push).remove(
            call.me.id, call.body.endpoint
        )
        if not removed:
            raise NotFound("No such subscription.")

    @api.route(
        "GET", "/notifications", roles=PATIENT, response=NotificationsOut, tag="notifications"
    )
    async def list_notifications(call: Call[Body]) -> NotificationsOut:
        """My messages, newest first, with read marks."""
        svc = services(call.request)
        items, unread = await NotificationService(svc.db, svc.clock).list_for(call.me.id)
        return NotificationsOut(
            items=[NotificationOut.model_validate(item) for item in items], unread=unread
        )

    @api.route("POST", "/notifications/{id}/read", roles=PATIENT, tag="notifications")
    async def read_notification(call: Call[Body]) -> None:
        """Mark one of my messages read."""
        svc = services(call.request)
        await NotificationService(svc.db, svc.clock).mark_read(
            call.me.id, call.request.match_info["id"]
        )
