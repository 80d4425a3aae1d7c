"""HTTP backend: hands each SMS to a gateway with one JSON POST."""

from __future__ import annotations

import logging
from collections.abc import Callable

import aiohttp

from telemed.notify.base import OutboundMessage, SendFailed
from telemed.phone import mask_phone

_log = logging.getLogger("telemed.sms.http")

SessionFactory = Callable[[], aiohttp.ClientSession]

ATTEMPTS = 2
"""One retry, on a 5xx answer or a connection error only."""


class _Retryable(Exception):
    """One attempt failed in a way worth a second try; `reason` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HttpSender:
    """POSTs `{"to", "text"}` to an SMS gateway, with a bearer token when one is set.

    Pass `session` to share an application's `aiohttp.ClientSession` (it is
    not closed here), or `session_factory` to choose how a private session is
    made; by default one is made on the first send and closed by `close()`.
    Timeouts are not retried: the gateway may have accepted the message, and
    a second SMS with the same code is worse than a failed request.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        session: aiohttp.ClientSession | None = None,
        session_factory: SessionFactory | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("HttpSender timeout must be positive")
        if session is not None and session_factory is not None:
            raise ValueError("Pass either session or session_factory, not both")
        self.url = url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None
        self._session_factory: SessionFactory = session_factory or aiohttp.ClientSession

    def _get_session(self) -> aiohttp.ClientSession:
        """The session to use, made on first use (a ClientSession needs a running loop)."""
        if self._session is None or (self._owns_session and self._session.closed):
            self._session = self._session_factory()
        return self._session

    async def send(self, message: OutboundMessage) -> None:
        """Deliver the message or raise `SendFailed`; the code is never sent as its own field."""
        payload = {"to": message.to, "text": message.text}
        headers = dict(self._headers)
        if message.idempotency_key:
            headers["Idempotency-Key"] = message.idempotency_key
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await self._post(payload, headers)
                return
            except _Retryable as exc:
                if attempt == ATTEMPTS:
                    raise SendFailed(
                        f"SMS gateway failed after {ATTEMPTS} attempts: {exc.reason}"
                    ) from exc
                _log.warning(
                    "SMS to %s: gateway %s, retrying once", mask_phone(message.to), exc.reason
                )

    async def _post(self, payload: dict[str, str], headers: dict[str, str]) -> None:
        """One attempt: raise `_Retryable` for 5xx and connection errors, `SendFailed` otherwise."""
        session = self._get_session()
        try:
            async with session.post(
                self.url,
                json=payload,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                status = response.status
        # Before ClientConnectionError: aiohttp's ServerTimeoutError is both.
        except TimeoutError as exc:
            raise SendFailed(f"SMS gateway did not answer within {self._timeout.total:g}s") from exc
        except aiohttp.ClientConnectionError as exc:
            raise _Retryable(f"connection error ({type(exc).__name__})") from exc
        except aiohttp.ClientError as exc:
            raise SendFailed(f"SMS gateway request failed ({type(exc).__name__})") from exc
        if 200 <= status < 300:
            return
        if status >= 500:
            raise _Retryable(f"answered HTTP {status}")
        raise SendFailed(f"SMS gateway answered HTTP {status}")

    async def close(self) -> None:
        """Close the session if this sender made it; safe to call more than once."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
