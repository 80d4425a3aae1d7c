"""Logs never hold medical text: the SQL layers stay quiet even at DEBUG."""

from __future__ import annotations

import logging

from telemed.config import LoggingSettings
from telemed.logs import QUIET, setup_logging


def test_sql_loggers_stay_at_warning_even_when_the_service_logs_debug() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging(LoggingSettings(level="DEBUG"))
        assert root.level == logging.DEBUG
        for name in QUIET:
            assert not logging.getLogger(name).isEnabledFor(logging.DEBUG)
            assert not logging.getLogger(name).isEnabledFor(logging.INFO)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
