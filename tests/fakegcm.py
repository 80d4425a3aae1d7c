"""Google's side of Chromium's push on 127.0.0.1, so that a real `pushManager.subscribe()`
resolves and a real push reaches the service worker on a machine with no way out.

Chromium's push service is Google's GCM/FCM (components/gcm_driver, google_apis/gcm). Three
switches point it elsewhere (google_apis/gcm/engine/gservices_switches.cc, read in
gservices_settings.cc: GetCheckinURL, GetRegistrationURL, GetMCSMainEndpoint):

- `--gcm-checkin-url`: the check-in, a POST of a protobuf `AndroidCheckinRequest`; the answer
  is an `AndroidCheckinResponse` whose `android_id` and `security_token` (fixed64, fields 7
  and 8) must both be non-zero (checkin_request.cc, OnURLLoadComplete: ZERO_ID_OR_TOKEN).
- `--gcm-registration-url`: the registration of a push subscription, a form POST
  (`app=org.chromium.linux`, `X-subtype=` the push app id, `sender=` the application server
  key, base64url) answered `token=...` (registration_request.cc); `delete=true` in the same
  form (with `sender=*`: the whole instance id) unsubscribes, answered with any `token=`
  line (instance_id_delete_token_request_handler.cc).
- `--gcm-mcs-endpoint`: the persistent TLS connection (mcs_client.cc) on which GCM hands
  messages to the browser: the client writes the version byte (41) and a `LoginRequest`
  (tag 2); the server answers the version byte and a `LoginResponse` (tag 3), then sends
  `DataMessageStanza`s (tag 8). A stanza of category `org.chromium.linux` with the app data
  `subtype` = the push app id is a push for that subscription (gcm_client_impl.cc,
  HandleIncomingMessage); with `content-encoding: aes128gcm` its `raw_data` is the RFC 8291
  body, which Chromium decrypts with the subscription's keys (gcm_encryption_provider.cc).

Chromium then builds the subscription's endpoint from the token: Debian's build is not the
stable channel, so the prefix is the staging one, `https://jmt17.google.com/fcm/send/`
(components/push_messaging/push_messaging_utils.cc, GetGcmEndpointForChannel). This fake
also answers there, as FCM does: RFC 8030 POSTs with a VAPID token whose key must be the one
the browser subscribed with, forwarded as they are over the MCS connection. The application
server reaches it through `session()`, an aiohttp session that resolves jmt17.google.com to
this fake and trusts its certificate; Chromium trusts it through
`--ignore-certificate-errors-spki-list` (honoured with a --user-data-dir, which a persistent
Playwright context has).

Unlike FCM, the fake keeps no message until the browser acknowledges it: a push arriving
while no connection is logged in waits for the next login, but one written to a connection
that then drops is lost. Chromium logs in again right after its first push registration
(the first connection closes within milliseconds of it); the tests push long after that.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from certkit import self_signed
from pushservice import TOPIC, b64url, check_vapid

PUSH_HOST = "jmt17.google.com"  # where Debian's Chromium says its subscriptions live
CATEGORY = "org.chromium.linux"  # chrome_build_info.product_category_for_subtypes on Linux
MCS_VERSION = 41
LOGIN_REQUEST, LOGIN_RESPONSE, HEARTBEAT_PING, HEARTBEAT_ACK, DATA_MESSAGE = 2, 3, 0, 1, 8


# --- protobuf, by hand (proto2 wire format: varints and length-delimited fields) -----------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def text(number: int, value: str | bytes) -> bytes:
    """A length-delimited field (string, bytes or an embedded message)."""
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def fields(message: bytes) -> list[tuple[int, int | bytes]]:
    """The top-level fields of a message: (number, varint or bytes); fixed ones as bytes."""
    found: list[tuple[int, int | bytes]] = []
    at = 0

    def read_varint() -> int:
        nonlocal at
        value = shift = 0
        while True:
            byte = message[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while at < len(message):
        key = read_varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            found.append((number, read_varint()))
        elif wire == 2:
            size = read_varint()
            found.append((number, message[at : at + size]))
            at += size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            found.append((number, message[at : at + size]))
            at += size
        else:
            raise ValueError(f"wire type {wire} not expected")
    return found


def checkin_response(android_id: int, security_token: int) -> bytes:
    """AndroidCheckinResponse: stats_ok (1), android_id (7), security_token (8)."""
    return (
        varint(1 << 3 | 0)
        + varint(1)
        + varint(7 << 3 | 1)
        + struct.pack("<Q", android_id)
        + varint(8 << 3 | 1)
        + struct.pack("<Q", security_token)
    )


# --- the certificate both Chromium and the application server meet -------------------------


class _ToFake(AbstractResolver):
    """jmt17.google.com:443 is this fake; every other name is unknown (no way out)."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host != PUSH_HOST:
            raise OSError(f"{host} is not reachable from the tests")
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=self.port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


# --- the fake ------------------------------------------------------------------------------


@dataclass
class Registration:
    """One push subscription as GCM knows it."""

    token: str
    app_id: str  # the push app id Chromium made for the service worker registration
    sender: str  # the application server key (base64url) it subscribed with


@dataclass
class Push:
    """One RFC 8030 POST the fake accepted (the body stays encrypted: only Chromium can
    read it)."""

    token: str
    topic: str | None
    ttl: int
    urgency: str | None
    size: int
    at: float = field(default_factory=time.time)


class FakeGcm:
    """Check-in, registration, MCS and FCM's push endpoint, on loopback ports."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.android_id = int.from_bytes(os.urandom(7), "big") | 1
        self.security_token = int.from_bytes(os.urandom(7), "big") | 1
        self.checkins = 0
        self.registrations: dict[str, Registration] = {}
        self.unregistered: list[Registration] = []
        self.pushes: list[Push] = []
        self.refused: list[str] = []
        self.logins = 0
        self.port = 0
        self.mcs_port = 0
        self.spki = ""
        self._runner: web.AppRunner | None = None
        self._mcs_server: asyncio.Server | None = None
        self._mcs: asyncio.StreamWriter | None = None  # the logged-in connection, if any
        self._pending: list[bytes] = []  # stanzas waiting for a logged-in connection
        self._connections: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._client_ssl: ssl.SSLContext | None = None
        self._next_message = 0

    # -- life --

    async def start(self) -> FakeGcm:
        made = self_signed(self.directory, "fakegcm", PUSH_HOST, "127.0.0.1", ca=True)
        cert, key, self.spki = made.cert, made.key, made.spki_sha256
        server_ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ssl.load_cert_chain(cert, key)
        self._client_ssl = ssl.create_default_context(cafile=str(cert))
        app = web.Application()
        app.router.add_post("/checkin", self._checkin)
        app.router.add_post("/c2dm/register3", self._register)
        app.router.add_post("/fcm/send/{token}", self._push)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=server_ssl)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._mcs_server = await asyncio.start_server(self._on_mcs, "127.0.0.1", 0, ssl=server_ssl)
        self.mcs_port = self._mcs_server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._mcs is not None:
            self._mcs.close()
        if self._mcs_server is not None:
            self._mcs_server.close()
        for task in list(self._connections):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    def chromium_flags(self) -> list[str]:
        """The switches that point Chromium's GCM here."""
        base = f"https://127.0.0.1:{self.port}"
        return [
            f"--gcm-checkin-url={base}/checkin",
            f"--gcm-registration-url={base}/c2dm/register3",
            f"--gcm-mcs-endpoint=https://127.0.0.1:{self.mcs_port}",
            f"--ignore-certificate-errors-spki-list={self.spki}",
        ]

    def session(self) -> aiohttp.ClientSession:
        """How the application server reaches `https://jmt17.google.com` in the tests."""
        connector = aiohttp.TCPConnector(resolver=_ToFake(self.port), ssl=self._client_ssl)
        return aiohttp.ClientSession(connector=connector)

    async def until(self, done: Any, within: float = 20) -> None:
        """Until `done()` is true (a ceiling, not a timing check)."""
        deadline = time.monotonic() + within
        while not done():
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("the fake GCM did not see it in time")
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                continue

    def _note(self) -> None:
        self._changed.set()

    # -- check-in and registration (HTTP) --

    async def _checkin(self, request: web.Request) -> web.Response:
        await request.read()  # AndroidCheckinRequest: nothing in it decides the answer
        self.checkins += 1
        self._note()
        return web.Response(
            body=checkin_response(self.android_id, self.security_token),
            content_type="application/x-protobuf",
        )

    async def _register(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != (
            f"AidLogin {self.android_id}:{self.security_token}"
        ):
            return web.Response(status=401, text="Error=AUTHENTICATION_FAILED")
        form = dict(parse_qsl((await request.read()).decode()))
        app_id = form.get("X-subtype") or form.get("app", "")
        sender = form.get("sender", "")
        if form.get("delete") == "true":
            # Unsubscribing deletes the whole instance id: sender and scope "*".
            gone = [
                r
                for r in self.registrations.values()
                if r.app_id == app_id and sender in ("*", r.sender)
            ]
            for registration in gone:
                del self.registrations[registration.token]
                self.unregistered.append(registration)
            self._note()
            return web.Response(text=f"token={gone[0].token if gone else app_id}")
        token = b64url(os.urandom(24))
        self.registrations[token] = Registration(token, app_id, sender)
        self._note()
        return web.Response(text=f"token={token}")

    # -- FCM's Web Push endpoint (RFC 8030, VAPID RFC 8292) --

    def _refuse(self, why: str, status: int) -> web.Response:
        self.refused.append(why)
        self._note()
        return web.Response(status=status, text=why)

    async def _push(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        registration = self.registrations.get(token)
        if registration is None:
            gone = any(r.token == token for r in self.unregistered)
            return self._refuse("unsubscribed" if gone else "unknown", 410 if gone else 404)
        why = check_vapid(
            request.headers.get("Authorization", ""),
            registration.sender,  # FCM checks k= against the key the browser subscribed with
            f"https://{PUSH_HOST}",
        )
        if why is not None:
            return self._refuse(why, 403)
        if "TTL" not in request.headers:
            return self._refuse("TTL is required (RFC 8030 5.2)", 400)
        topic = request.headers.get("Topic")
        if topic is not None and not TOPIC.fullmatch(topic):
            return self._refuse("Topic must be at most 32 base64url characters", 400)
        if request.headers.get("Content-Encoding") != "aes128gcm":
            return self._refuse("payload must be aes128gcm", 400)
        body = await request.read()
        self._next_message += 1
        stanza = (
            text(2, f"m{self._next_message}")
            + text(3, registration.sender)
            + text(5, CATEGORY)
            + text(7, text(1, "subtype") + text(2, registration.app_id))
            + text(7, text(1, "content-encoding") + text(2, "aes128gcm"))
            + text(9, f"0:{self._next_message}")
            + text(21, body)
        )
        self._send(stanza)
        self.pushes.append(
            Push(
                token=token,
                topic=topic,
                ttl=int(request.headers["TTL"]),
                urgency=request.headers.get("Urgency"),
                size=len(body),
            )
        )
        self._note()
        return web.Response(
            status=201, headers={"Location": f"https://{PUSH_HOST}/m/{self._next_message}"}
        )

    # -- MCS (the browser's persistent connection) --

    def _send(self, stanza: bytes) -> None:
        frame = bytes([DATA_MESSAGE]) + varint(len(stanza)) + stanza
        if self._mcs is None or self._mcs.is_closing():
            self._pending.append(frame)
            return
        self._mcs.write(frame)

    def _on_mcs(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve_mcs(reader, writer))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _serve_mcs(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if (await reader.readexactly(1))[0] < 38:
                return
            while True:
                tag = (await reader.readexactly(1))[0]
                size = shift = 0
                while True:
                    byte = (await reader.readexactly(1))[0]
                    size |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                body = await reader.readexactly(size)
                if tag == LOGIN_REQUEST:
                    user = dict((n, v) for n, v in fields(body) if n in (3, 5))
                    if user.get(3) != str(self.android_id).encode():
                        return
                    response = text(1, "fakegcm-login")
                    writer.write(
                        bytes([MCS_VERSION, LOGIN_RESPONSE]) + varint(len(response)) + response
                    )
                    self._mcs = writer
                    self.logins += 1
                    for frame in self._pending:
                        writer.write(frame)
                    self._pending.clear()
                    await writer.drain()
                    self._note()
                elif tag == HEARTBEAT_PING:
                    writer.write(bytes([HEARTBEAT_ACK, 0]))
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            if self._mcs is writer:
                self._mcs = None
            writer.close()
