"""File backend: one JSON line per message, for tests and demos that read the codes."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from telemed.clock import Clock
from telemed.notify.base import OutboundMessage, SendFailed

FILE_MODE = 0o600
"""The file holds one-time codes: readable by the service's user only."""


class FileSender:
    """Appends `{"to", "text", "code", "at"}` lines (CONTRACT.md) to `path`."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = asyncio.Lock()

    async def send(self, message: OutboundMessage) -> None:
        """Append the message as one JSON line, without blocking the event loop."""
        await self.send_many([message])

    async def send_many(self, messages: list[OutboundMessage]) -> None:
        """Append many messages in one write: the outbox sends in batches."""
        at = self._clock.now()
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("FileSender needs a clock that returns aware datetimes")
        line = "".join(
            json.dumps(
                {"to": m.to, "text": m.text, "code": m.code, "at": at.isoformat()}
                | ({"key": m.idempotency_key} if m.idempotency_key else {}),
                ensure_ascii=False,
            )
            + "\n"
            for m in messages
        ).encode("utf-8")
        async with self._lock:
            try:
                await asyncio.to_thread(self._append, line)
            except OSError as exc:
                raise SendFailed(
                    f"Cannot append to the SMS file {self.path}: {exc.strerror}"
                ) from exc

    def _append(self, line: bytes) -> None:
        """Write `line` at the end of the file in one O_APPEND write (runs in a worker thread)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        try:
            # A file made earlier by someone else may be wider; codes must not be.
            os.fchmod(fd, FILE_MODE)
            # The lock orders writers in this loop; O_APPEND keeps a line whole
            # even if a cancelled sender's thread is still writing when the next starts.
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        finally:
            os.close(fd)

    async def close(self) -> None:
        """Nothing to release (the file is opened per message); present for a uniform shutdown."""
