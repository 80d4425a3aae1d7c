"""Admission of connecting sockets: every namespace connect is answered, and a reconnect
storm's welcomes wait their turn.

After a node restarts, all its clients reconnect within seconds (bench/reconnect_storm.py).
Unbounded, thousands of connects each holding a database connection queued on the pool
until its timeout (`QueuePool limit ... timed out`), the connect handler raised, and
python-socketio left the client without an answer to its namespace connect. Connects now
read the database together, one session for the connects arriving at the same time
(telemed/services/live_entry.py), so they need no gate of their own; the welcomes of
connected sockets (which may write) take at most `slots` database connections at a time
(the pool's own size, so they never open overflow connections and leave those to
everything else); the rest wait in arrival order, answered late but never failed. A
connect handler that fails for any reason refuses the connect with an error the client
sees.
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
    """Always-answered connects and bounded welcomes of one node."""

    def __init__(self, slots: Callable[[], int]) -> None:
        self._slots = slots  # read at the first welcome, once the database is open
        self._welcomes: asyncio.Semaphore | None = None

    async def connect(self, handler: Connect, sid: str, environ: dict[str, Any], auth: Any) -> None:
        """Run a connect handler; whatever it raises, the client gets an answer."""
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
        if self._welcomes is None:
            self._welcomes = asyncio.Semaphore(max(1, self._slots()))
        async with self._welcomes:
            try:
                await work
            except Exception:
                log.exception("welcome of a connected socket failed")
