"""The one interface every outbound message backend (SMS now, push later) implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class OutboundMessage:
    """One message to deliver: `to` is an E.164 phone (SMS) or a device token (push).

    `code` repeats the one-time code the text carries, if any, so a
    development backend can expose it to tests; real gateways never get it
    as a separate field. `text` and `code` are kept out of `repr` so logging
    a message object cannot leak a code.
    """

    to: str
    text: str = field(repr=False)
    code: str | None = field(default=None, repr=False)
    kind: str = "sms"
    # Stable per outbox message: a resend after a crash carries the same key, so the
    # gateway (or the phone app) can drop the repeat.
    idempotency_key: str | None = None
    # Push only: the notification's title and the app screen a tap opens; and the phone
    # the SMS fallback uses when no device of the patient took the push.
    title: str | None = None
    url: str | None = None
    fallback_to: str | None = field(default=None, repr=False)


class Sender(Protocol):
    """Delivers outbound messages; raises `SendFailed` when delivery did not happen."""

    async def send(self, message: OutboundMessage) -> None: ...


class EachSender(Protocol):
    """A sender that reports per message: the outbox keeps what failed for the next pass."""

    async def send_each(self, messages: list[OutboundMessage]) -> list[str | None]: ...


class SendFailed(Exception):
    """A message could not be handed over; the error text never contains the message text."""
