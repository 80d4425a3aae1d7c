"""Development backend: the message is written to the log instead of a phone."""

from __future__ import annotations

import logging

from telemed.notify.base import OutboundMessage
from telemed.phone import mask_phone

DEV_LOGGER_NAME = "telemed.sms.dev"

_log = logging.getLogger(DEV_LOGGER_NAME)


class LogSender:
    """Writes each message, text and code included, to `telemed.sms.dev` at WARNING.

    By design the only place a one-time code reaches a log: in development
    the log stands in for the phone. WARNING so it is visible under default
    logging and noticed if this backend is ever left on in production.
    """

    async def send(self, message: OutboundMessage) -> None:
        """Log the message with the recipient masked."""
        _log.warning(
            "DEV %s to %s: %s (development backend, nothing was sent)",
            message.kind.upper(),
            mask_phone(message.to),
            message.text,
        )

    async def close(self) -> None:
        """Nothing to release; present so every backend can be closed the same way."""
