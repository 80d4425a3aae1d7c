"""The SMS backends against real files, a real log and a real in-process HTTP gateway."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from telemed.clock import ManualClock
from telemed.notify import (
    FileSender,
    HttpSender,
    LogSender,
    OutboundMessage,
    SendFailed,
    build_sender,
)

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]

PHONE = "+79161234567"
OTP = OutboundMessage(to=PHONE, text="Ваш код: 482913", code="482913")


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- FileSender ---------------------------------------------------------------


async def test_file_sender_appends_one_contract_line_per_message(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "nested" / "dir" / "sms.jsonl"
    sender = FileSender(path, clock)

    await sender.send(OTP)
    clock.advance(timedelta(minutes=1))
    await sender.send(OutboundMessage(to="+442079460958", text="See you at 10:00"))

    first, second = _lines(path)
    assert first == {
        "to": PHONE,
        "text": "Ваш код: 482913",
        "code": "482913",
        "at": "2026-01-15T09:00:00+00:00",
    }
    assert second["code"] is None
    assert set(second) == {"to", "text", "code", "at"}
    at = datetime.fromisoformat(second["at"])
    assert at.utcoffset() == timedelta(0)
    assert at == clock.now()


async def test_the_sms_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "sms.jsonl"
    path.write_text("")
    path.chmod(0o644)
    await FileSender(path, ManualClock()).send(OTP)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_many_concurrent_sends_leave_every_line_intact(tmp_path: Path) -> None:
    path = tmp_path / "sms.jsonl"
    sender = FileSender(path, ManualClock())
    long_text = "x" * 5000  # bigger than a pipe buffer, so a torn write would show
    messages = [
        OutboundMessage(to=PHONE, text=f"{i}:{long_text}", code=f"{i:06d}") for i in range(200)
    ]

    await asyncio.gather(*(sender.send(m) for m in messages))

    records = _lines(path)
    assert len(records) == 200
    assert {r["code"] for r in records} == {m.code for m in messages}
    assert all(r["text"] == f"{int(r['code'])}:{long_text}" for r in records)


async def test_a_file_that_cannot_be_written_raises_send_failed(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    sender = FileSender(blocker / "sms.jsonl", ManualClock())
    with pytest.raises(SendFailed) as info:
        await sender.send(OTP)
    assert "482913" not in str(info.value)


# --- LogSender ----------------------------------------------------------------


async def test_log_sender_logs_the_text_with_the_number_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="telemed.sms.dev"):
        await LogSender().send(OTP)

    (record,) = [r for r in caplog.records if r.name == "telemed.sms.dev"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert message.startswith("DEV SMS to +7916***4567: Ваш код: 482913")
    assert PHONE not in message


def test_a_message_repr_does_not_show_the_code() -> None:
    assert "482913" not in repr(OTP)


# --- HttpSender ---------------------------------------------------------------


class Gateway:
    """A scripted SMS gateway: answers with `statuses` in turn and records each request."""

    def __init__(self, *statuses: int, delay: float = 0.0, drop_first: bool = False) -> None:
        self.statuses = list(statuses)
        self.delay = delay
        self.drop_first = drop_first
        self.requests: list[tuple[dict[str, Any], str | None]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((await request.json(), request.headers.get("Authorization")))
        if self.drop_first and len(self.requests) == 1:
            assert request.transport is not None
            request.transport.close()  # the client sees a dropped connection
            return web.Response(status=200)
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response({"status": status}, status=status)

    async def start(self, aiohttp_server: ServerFactory) -> str:
        app = web.Application()
        app.router.add_post("/sms", self.handle)
        server = await aiohttp_server(app)
        return str(server.make_url("/sms"))


async def test_http_sender_posts_to_and_text_with_the_bearer_token(
    aiohttp_server: ServerFactory,
) -> None:
    gateway = Gateway(200)
    sender = HttpSender(await gateway.start(aiohttp_server), token="s3cret", timeout=5)
    try:
        await sender.send(OTP)
    finally:
        await sender.close()

    assert gateway.requests == [({"to": PHONE, "text": "Ваш код: 482913"}, "Bearer s3cret")]


async def test_http_sender_sends_no_authorization_without_a_token(
    aiohttp_server: ServerFactory,
) -> None:
    gateway = Gateway(204)
    sender = HttpSender(await gateway.start(aiohttp_server), token=None, timeout=5)
    try:
        await sender.send(OTP)
    finally:
        await sender.close()
    assert gateway.requests[0][1] is None


async def test_a_5xx_is_retried_once_and_then_succeeds(aiohttp_server: ServerFactory) -> None:
    gateway = Gateway(500, 200)
    sender = HttpSender(await gateway.start(aiohttp_server), token=None, timeout=5)
    try:
        await sender.send(OTP)
    finally:
        await sender.close()
    assert len(gateway.requests) == 2


async def test_two_5xx_answers_raise_send_failed_without_the_text(
    aiohttp_server: ServerFactory,
) -> None:
    gateway = Gateway(500, 503, 200)
    sender = HttpSender(await gateway.start(aiohttp_server), token=None, timeout=5)
    try:
        with pytest.raises(SendFailed, match="503") as info:
            await sender.send(OTP)
    finally:
        await sender.close()
    assert len(gateway.requests) == 2
    assert "482913" not in str(info.value)
    assert PHONE not in str(info.value)


async def test_a_4xx_is_not_retried(aiohttp_server: ServerFactory) -> None:
    gateway = Gateway(400, 200)
    sender = HttpSender(await gateway.start(aiohttp_server), token=None, timeout=5)
    try:
        with pytest.raises(SendFailed, match="400"):
            await sender.send(OTP)
    finally:
        await sender.close()
    assert len(gateway.requests) == 1


async def test_a_dropped_connection_is_retried_once(aiohttp_server: ServerFactory) -> None:
    gateway = Gateway(200, drop_first=True)
    sender = HttpSender(await gateway.start(aiohttp_server), token=None, timeout=5)
    try:
        await sender.send(OTP)
    finally:
        await sender.close()
    assert len(gateway.requests) == 2


async def test_an_unreachable_gateway_raises_send_failed(aiohttp_server: ServerFactory) -> None:
    app = web.Application()
    server = await aiohttp_server(app)
    url = str(server.make_url("/sms"))
    await server.close()  # nothing listens on that port any more

    sender = HttpSender(url, token=None, timeout=5)
    try:
        with pytest.raises(SendFailed, match="connection error"):
            await sender.send(OTP)
    finally:
        await sender.close()


async def test_a_slow_gateway_raises_send_failed_after_the_timeout(
    aiohttp_server: ServerFactory,
) -> None:
    gateway = Gateway(200, delay=3)
    sender = HttpSender(await gateway.start(aiohttp_server), token=None, timeout=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(SendFailed, match="did not answer"):
            await sender.send(OTP)
    finally:
        await sender.close()
    assert loop.time() - started < 2
    assert len(gateway.requests) == 1  # a timeout is not retried: the SMS may have gone out


async def test_an_injected_session_is_used_and_left_open(aiohttp_server: ServerFactory) -> None:
    gateway = Gateway(200)
    url = await gateway.start(aiohttp_server)
    async with aiohttp.ClientSession(headers={"X-App": "telemed"}) as session:
        sender = HttpSender(url, token="t", timeout=5, session=session)
        await sender.send(OTP)
        await sender.close()
        assert not session.closed
        await sender.send(OTP)
    assert len(gateway.requests) == 2


async def test_close_closes_the_session_the_sender_made(aiohttp_server: ServerFactory) -> None:
    made: list[aiohttp.ClientSession] = []

    def factory() -> aiohttp.ClientSession:
        made.append(aiohttp.ClientSession())
        return made[-1]

    gateway = Gateway(200)
    sender = HttpSender(
        await gateway.start(aiohttp_server), token=None, timeout=5, session_factory=factory
    )
    assert made == []  # lazily, on the first send
    await sender.send(OTP)
    await sender.send(OTP)
    await sender.close()
    await sender.close()
    assert len(made) == 1
    assert made[0].closed


# --- build_sender -------------------------------------------------------------


def test_build_sender_chooses_the_configured_backend(tmp_path: Path) -> None:
    clock = ManualClock()
    assert isinstance(
        build_sender("log", path=None, url=None, token=None, timeout=5, clock=clock), LogSender
    )
    file_sender = build_sender(
        "file", path=str(tmp_path / "sms.jsonl"), url=None, token=None, timeout=5, clock=clock
    )
    assert isinstance(file_sender, FileSender)
    assert file_sender.path == tmp_path / "sms.jsonl"
    http_sender = build_sender(
        "http", path=None, url="https://sms.example/send", token="t", timeout=5, clock=clock
    )
    assert isinstance(http_sender, HttpSender)


@pytest.mark.parametrize(
    ("backend", "settings", "key"),
    [
        ("file", {}, "sms.path"),
        ("file", {"path": ""}, "sms.path"),
        ("http", {}, "sms.url"),
        ("http", {"url": "sms.example/send"}, "sms.url"),
        ("http", {"url": "https://sms.example/send", "timeout": 0}, "sms.timeout"),
        ("carrier-pigeon", {}, "sms.backend"),
    ],
)
def test_build_sender_errors_name_the_config_key(
    backend: str, settings: dict[str, Any], key: str
) -> None:
    arguments: dict[str, Any] = {"path": None, "url": None, "token": None, "timeout": 5}
    arguments.update(settings)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        build_sender(backend, clock=ManualClock(), **arguments)


async def test_a_retry_carries_the_same_idempotency_key(aiohttp_server: ServerFactory) -> None:
    """A resend (a 5xx retry here, a crash recovery in the outbox) repeats the key, so the
    gateway can drop the duplicate."""
    keys: list[str | None] = []

    async def handle(request: web.Request) -> web.Response:
        keys.append(request.headers.get("Idempotency-Key"))
        return web.Response(status=503 if len(keys) == 1 else 200)

    app = web.Application()
    app.router.add_post("/sms", handle)
    server = await aiohttp_server(app)
    sender = HttpSender(str(server.make_url("/sms")), token=None, timeout=5)
    try:
        await sender.send(OutboundMessage(to=PHONE, text="hi", idempotency_key="note-1"))
    finally:
        await sender.close()
    assert keys == ["note-1", "note-1"]


async def test_the_file_backend_records_the_idempotency_key(tmp_path: Path) -> None:
    sender = FileSender(tmp_path / "push.jsonl", ManualClock())
    await sender.send_many(
        [
            OutboundMessage(to="p1", text="a", idempotency_key="k1"),
            OutboundMessage(to="p2", text="b"),
        ]
    )
    lines = _lines(tmp_path / "push.jsonl")
    assert lines[0]["key"] == "k1" and "key" not in lines[1]
