"""The bandwidth verdict over a real slow link (R-DEV: at least 1 Mbit/s): the patient's
side runs in its own network namespace, joined to the server's namespace by a veth pair
shaped with `tc tbf`; 600 kbit/s fails, 3 Mbit/s passes."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from appkit import Running
from helpers import add_adult, patient_token

CLONE_NEWNET = 0x40000000
SERVER_ADDR, CLIENT_ADDR = "10.213.0.1", "10.213.0.2"  # only inside our own namespaces
CLIENT = Path(__file__).with_name("probe_client.py")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def shaped_link(rate: str) -> Iterator[tuple[str, str]]:
    """Two fresh namespaces (server, client) joined by a veth pair shaped to `rate` in both
    directions; both are deleted afterwards whatever happened."""
    tag = f"{os.getpid() % 100000}"
    server, client = f"tmck-s{tag}", f"tmck-c{tag}"
    for ns in (server, client):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # a stale one
    try:
        _ip("netns", "add", server)
        _ip("netns", "add", client)
        _ip("link", "add", "tmck0", "netns", server, "type", "veth", "peer", "name", "tmck1",
            "netns", client)  # fmt: skip
        for ns, dev, addr in ((server, "tmck0", SERVER_ADDR), (client, "tmck1", CLIENT_ADDR)):
            _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            subprocess.run(
                ["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate,
                 "burst", "16kb", "latency", "100ms"],
                check=True, capture_output=True,
            )  # fmt: skip
        yield server, client
    finally:
        for ns in (server, client):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def listening_socket_in(namespace: str, host: str) -> socket.socket:
    """A listening TCP socket inside `namespace`: made by a short-lived thread that enters
    the namespace (setns is per thread), so the rest of the process stays where it was."""
    made: dict[str, Any] = {}

    def enter_and_listen() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/run/netns/{namespace}") as handle:
                if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, 0))
            sock.listen(64)
            sock.setblocking(False)
            made["sock"] = sock
        except BaseException as exc:
            made["error"] = exc

    thread = threading.Thread(target=enter_and_listen)
    thread.start()
    thread.join()
    if "error" in made:
        raise made["error"]
    return made["sock"]  # type: ignore[no-any-return]


async def _verdict_over(app: Running, token: str, rate: str) -> dict[str, Any]:
    """Serve the app inside the server namespace and run the probe client in the client
    namespace over a link shaped to `rate`."""
    with shaped_link(rate) as (server_ns, client_ns):
        sock = listening_socket_in(server_ns, SERVER_ADDR)
        site = web.SockSite(app.client.server.runner, sock)
        await site.start()
        try:
            port = sock.getsockname()[1]
            proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", client_ns, sys.executable, str(CLIENT),
                f"http://{SERVER_ADDR}:{port}", token,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
            return dict(json.loads(out))
        finally:
            await site.stop()


@pytest.mark.parametrize(
    ("rate", "passes"), [("600kbit", False), ("3mbit", True)], ids=["600kbit", "3mbit"]
)
async def test_the_bandwidth_check_follows_the_real_speed_of_a_shaped_link(
    start_app: Callable[..., Any], sqlite_url: str, rate: str, passes: bool
) -> None:
    """R-DEV: the channel must carry at least 1 Mbit/s; a 600 kbit/s link fails with
    advice, a 3 Mbit/s link passes; both measured figures are near the shaped rate."""
    app: Running = await start_app(sqlite_url)
    await add_adult(app)
    token = await patient_token(app)
    seen = await _verdict_over(app, token, rate)
    assert seen["status"] == 200, seen
    bandwidth = {c["name"]: c for c in seen["verdict"]["checks"]}["bandwidth"]
    assert bandwidth["ok"] is passes, seen
    limit = {"600kbit": 600, "3mbit": 3000}[rate]
    for direction in ("download_kbps", "upload_kbps"):
        assert 0.5 * limit < seen["speed"][direction] < 1.3 * limit, seen
    if not passes:
        assert "too slow" in bandwidth["advice"]
