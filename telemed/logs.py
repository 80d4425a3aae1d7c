"""Logging in JSON lines (or plain text for a terminal). Never log tokens, codes or medical text."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from telemed.config import LoggingSettings

QUIET = ("aiosqlite", "sqlalchemy.engine", "asyncpg")
# Libraries whose INFO is routine (APScheduler's every job run, alembic's migration context):
# at WARNING unless the service itself logs DEBUG, so an idle node writes nothing.
ROUTINE = ("apscheduler", "alembic")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(settings: LoggingSettings) -> None:
    """Configure the root logger once, for `telemed serve` and the CLI."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # SQL parameters can hold medical text: never log them, even at DEBUG.
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    routine = logging.DEBUG if settings.level == "DEBUG" else logging.WARNING
    for name in ROUTINE:
        logging.getLogger(name).setLevel(routine)
