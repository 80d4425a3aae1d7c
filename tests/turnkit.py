"""A private coturn (Debian's `turnserver`) for the tests, started like PostgreSQL and Redis:
a config file written here (TURN REST credentials through `use-auth-secret` with the
secret of `signalling.turn.secret`; UDP, TCP and TLS listeners, TLS with a self-signed
certificate made in the test), on fresh ports, optionally inside a network namespace, and
stopped (and reaped) afterwards. Never the machine's own /etc/turnserver.conf."""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from certkit import self_signed
from cryptography.hazmat.primitives import serialization

CLONE_NEWNET = 0x40000000
REALM = "telemed.test"
T = TypeVar("T")


def in_netns(namespace: str | None, work: Callable[[], T]) -> T:
    """Run `work` in a short-lived thread that entered `namespace` (setns is per thread, so
    the rest of the process stays where it was); in this thread when `namespace` is None.
    Sockets made there keep belonging to that namespace."""
    if namespace is None:
        return work()
    made: dict[str, Any] = {}

    def enter_and_work() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/run/netns/{namespace}") as handle:
                if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            made["value"] = work()
        except BaseException as exc:
            made["error"] = exc

    thread = threading.Thread(target=enter_and_work)
    thread.start()
    thread.join()
    if "error" in made:
        raise made["error"]
    return made["value"]  # type: ignore[no-any-return]


def free_port(host: str = "127.0.0.1", namespace: str | None = None) -> int:
    """A port free for both TCP and UDP on `host` (coturn listens on both)."""

    def pick() -> int:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                tcp.bind((host, 0))
                port = int(tcp.getsockname()[1])
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    try:
                        udp.bind((host, port))
                    except OSError:
                        continue
                    return port
        raise AssertionError("no port free for both TCP and UDP")

    return in_netns(namespace, pick)


def stun_binding(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a STUN Binding request over UDP gets a success response (RFC 5389)."""
    txid = secrets.token_bytes(12)
    request = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + txid
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(request, (host, port))
            data, _ = sock.recvfrom(2048)
        except OSError:
            return False
    return len(data) >= 20 and data[:2] == b"\x01\x01" and data[8:20] == txid


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Coturn:
    """One turnserver process of this test on fresh ports of `host`, inside `namespace`
    (an `ip netns` name) when given; `relay_ip` is where it allocates relayed addresses."""

    def __init__(
        self,
        workdir: Path,
        secret: str,
        host: str = "127.0.0.1",
        namespace: str | None = None,
        relay_ip: str | None = None,
        realm: str = REALM,
    ) -> None:
        self.workdir = workdir
        self.secret = secret
        self.host = host
        self.namespace = namespace
        self.relay_ip = relay_ip or host
        self.realm = realm
        self.port = free_port(host, namespace)
        self.tls_port = free_port(host, namespace)
        while self.tls_port == self.port:
            self.tls_port = free_port(host, namespace)
        made = self_signed(
            workdir,
            "turn",
            "turn.telemed.test",
            host,
            key_format=serialization.PrivateFormat.TraditionalOpenSSL,
        )
        self.cert, self.key = made.cert, made.key
        self.config = workdir / "turnserver.conf"
        self.log = workdir / "turnserver.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.write_config()

    def write_config(self) -> None:
        """The config telemed expects of its TURN server (docs/deploy.md), for the tests."""
        lines = [
            f"listening-ip={self.host}",
            f"relay-ip={self.relay_ip}",
            f"listening-port={self.port}",
            f"tls-listening-port={self.tls_port}",
            # Never the alternate ports (port+1): only what was checked free is used.
            f"alt-listening-port={self.port}",
            f"alt-tls-listening-port={self.tls_port}",
            "min-port=49152",
            "max-port=65535",
            "fingerprint",
            "use-auth-secret",
            f"static-auth-secret={self.secret}",
            f"realm={self.realm}",
            f"cert={self.cert}",
            f"pkey={self.key}",
            "no-cli",
            "no-dtls",
            "no-multicast-peers",
            "no-software-attribute",
            # The tests' peers live on loopback or in private test namespaces.
            "allow-loopback-peers",
            f"userdb={self.workdir / 'turndb'}",
            f"pidfile={self.workdir / 'turnserver.pid'}",
            f"log-file={self.log}",
            "simple-log",
            "verbose",
        ]
        self.config.write_text("\n".join(lines) + "\n")

    def urls(self, *transports: str) -> list[str]:
        """TURN URLs of this server: `udp`, `tcp` (turn:) and `tls` (turns:)."""
        made = []
        for transport in transports or ("udp", "tcp"):
            if transport == "tls":
                made.append(f"turns:{self.host}:{self.tls_port}?transport=tcp")
            else:
                made.append(f"turn:{self.host}:{self.port}?transport={transport}")
        return made

    def turn_settings(self, *transports: str, ttl: str = "1h") -> dict[str, Any]:
        """The `signalling.turn` section that points telemed at this server."""
        return {"urls": self.urls(*transports), "secret": self.secret, "ttl": ttl}

    def start(self, within: float = 15) -> None:
        """Start it and wait (bounded) until UDP, TCP and TLS all answer."""
        binary = shutil.which("turnserver") or "/usr/bin/turnserver"
        command = [binary, "-c", str(self.config)]
        if self.namespace is not None:
            command = ["ip", "netns", "exec", self.namespace, *command]
        self.proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + within
        while not in_netns(self.namespace, self.ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.log.read_text()[-3000:] if self.log.exists() else ""
                self.stop()
                raise AssertionError(f"turnserver did not start on {self.host}:{self.port}\n{log}")
            time.sleep(0.05)

    def ready(self) -> bool:
        return (
            stun_binding(self.host, self.port)
            and tcp_open(self.host, self.port)
            and tcp_open(self.host, self.tls_port)
        )

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) and reap the process."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=5)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tls_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts this server's self-signed certificate."""
        context = ssl.create_default_context(cafile=str(self.cert))
        context.check_hostname = False  # the tests dial an IP; the chain is still checked
        return context


@contextlib.contextmanager
def running_coturn(workdir: Path, secret: str, **kwargs: Any) -> Iterator[Coturn]:
    """A started Coturn, stopped whatever happened."""
    server = Coturn(workdir, secret, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()
