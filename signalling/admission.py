"""Admission of connecting sockets: a reconnect storm waits its turn, and every namespace
connect is answered.

After a node restarts, all its clients reconnect within seconds (bench/reconnect_storm.py).
Each connect reads the database (the token, a patient's consent) and its welcome reads and
writes more; unbounded, thousands of them queued on the connection pool until its timeout
(`QueuePool limit ... timed out`), the connect handler raised, and python-socketio left
the client without an answer to its namespace connect. Here connects, and separately
the welcomes of connected sockets, take at most `slots` database connections at a time (the
pool's own size, so they never open overflow connections and leave those to everything
else); the rest wait in arrival order, answered late but never failed. A connect handler
that fails for any other reason refuses the connect with an error the client sees.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

from telemed.errors import InternalError, TelemedError

log = logging.getLogger("telemed.signalling.admission")

Connect = Callable[[str, dict[str, Any], Any], Awaitable[None]]


def refused(error: TelemedError) -> socketio.exceptions.ConnectionRefusedError:
    """A refused handshake: the client's `connect_error` gets `message` and
    `data: {code, message}`, like every other error of ours."""
    return socketio.exceptions.ConnectionRefusedError(error.message, error.to_dict())


class Admission:
    """Bounded, always-answered connects and welcomes of one node."""

    def __init__(self, slots: Callable[[], int]) -> None:
        self._slots = slots  # read at the first connect, once the database is open
        self._connects: asyncio.Semaphore | None = None
        self._welcomes: asyncio.Semaphore | None = None

    def _gates(self) -> tuple[asyncio.Semaphore, asyncio.Semaphore]:
        if self._connects is None or self._welcomes is None:
            slots = max(1, self._slots())
            self._connects, self._welcomes = asyncio.Semaphore(slots), asyncio.Semaphore(slots)
        return self._connects, self._welcomes

    async def connect(self, handler: Connect, sid: str, environ: dict[str, Any], auth: Any) -> None:
        """Run a connect handler in turn; whatever it raises, the client gets an answer."""
        async with self._gates()[0]:
            try:
                await handler(sid, environ, auth)
            except socketio.exceptions.ConnectionRefusedError:
                raise
            except TelemedError as exc:
                raise refused(exc) from None
            except Exception:
                log.exception("connect handler failed; the connect is refused")
                raise refused(InternalError()) from None

    async def welcome(self, work: Awaitable[None]) -> None:
        """Run a connected socket's welcome in turn; a failure is logged, not lost."""
        async with self._gates()[1]:
            try:
                await work
            except Exception:
                log.exception("welcome of a connected socket failed")
