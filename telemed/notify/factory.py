"""Choose the SMS backend named in `config.yaml` (`sms: {backend: log | file | http}`)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from telemed.clock import Clock
from telemed.notify.base import Sender
from telemed.notify.dev import LogSender
from telemed.notify.file import FileSender
from telemed.notify.gateway import HttpSender

BACKENDS = ("log", "file", "http")


def build_sender(
    backend: str,
    *,
    path: str | None = None,
    url: str | None = None,
    token: str | None = None,
    timeout: float = 10.0,
    clock: Clock,
) -> Sender:
    """Make the configured sender; a bad setting raises `ValueError` naming its `sms.*` key."""
    if backend == "log":
        return LogSender()
    if backend == "file":
        if not path:
            raise ValueError("sms.path is required when sms.backend is 'file'")
        return FileSender(Path(path), clock)
    if backend == "http":
        if not url:
            raise ValueError("sms.url is required when sms.backend is 'http'")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("sms.url must be an absolute http:// or https:// URL")
        if timeout <= 0:
            raise ValueError("sms.timeout must be positive")
        return HttpSender(url, token=token or None, timeout=timeout)
    raise ValueError(f"sms.backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
