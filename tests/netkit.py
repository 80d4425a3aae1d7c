"""Network namespaces for calls whose direct path is blocked: the patient's side (P) and
the staff's side (S) each reach a middle namespace (R) holding the TURN server and the app,
and R routes between them, but nftables drops everything R would forward from P to S or
back, so the browsers can only meet through the relay. Rules can also drop UDP to the
relay (only TCP to it) and drop a share of a side's packets at random (a lossy link).

    P 10.77.1.2 ──veth── 10.77.1.1 R 10.77.2.1 ──veth── 10.77.2.2 S
                               10.77.0.1 (lo): coturn

The browsers reach the app at http://127.0.0.1:PORT inside their own namespace (a secure
context for getUserMedia): the app listens on a socket made in that namespace
(`listen_in`), while the test process itself stays where it was."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from turnkit import in_netns

RELAY_ADDR = "10.77.0.1"
PATIENT_ADDR, STAFF_ADDR = "10.77.1.2", "10.77.2.2"
PATIENT_NET, STAFF_NET = "10.77.1.0/24", "10.77.2.0/24"


def _run(*args: str) -> None:
    done = subprocess.run(list(args), capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {done.stderr.strip()}")


@dataclass
class BlockedNet:
    """The three namespaces of one test."""

    relay: str  # R: coturn and the route between the sides
    patient: str  # P
    staff: str  # S

    def nft(self, *rule: str) -> None:
        _run("ip", "netns", "exec", self.relay, "nft", *rule)

    def only_tcp_to_relay(self) -> None:
        """Drop all UDP from either side to the relay's address (its listener and the
        relayed ports alike): the browsers reach coturn over TCP only."""
        self.nft(
            "add", "rule", "inet", "telemed", "input", "iifname", "{", "vp0", ",", "vs0", "}",
            "ip", "daddr", RELAY_ADDR, "meta", "l4proto", "udp", "drop",
        )  # fmt: skip

    def lossy_patient_link(self, percent: int) -> None:
        """Drop `percent` % of the UDP packets on the patient's link, each way, at random
        (what `tc qdisc ... netem loss 5%` does; this machine's kernel has no netem). Each
        direction is dropped where it arrives (R's input from P, P's input from R): a drop
        in the sender's own output hook would fail its sendmsg() with EPERM, which coturn
        takes for a broken socket and closes the session, unlike a real lossy link."""
        for ns, dev in ((self.relay, "vp0"), (self.patient, "vr")):
            nft = ["ip", "netns", "exec", ns, "nft"]
            subprocess.run([*nft, "add", "table", "inet", "telemed"], check=True)
            _run(*nft, "add chain inet telemed input { type filter hook input priority 0 ; }")
            _run(
                *nft, "add", "rule", "inet", "telemed", "input", "iifname", dev,
                "meta", "l4proto", "udp", "numgen", "random", "mod", "100", "lt", str(percent),
                "drop",
            )  # fmt: skip

    def listen_in(self, namespace: str) -> socket.socket:
        """A listening TCP socket on 127.0.0.1 inside `namespace` for the app to serve."""

        def make() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            sock.setblocking(False)
            return sock

        return in_netns(namespace, make)

    def chromium_in(self, namespace: str, directory: Path, binary: str) -> str:
        """A wrapper Playwright can launch as Chromium: the real one, inside `namespace`
        (its DevTools pipe is inherited through `ip netns exec`)."""
        wrapper = directory / f"chromium-{namespace}.sh"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {namespace} {binary} "$@"\n')
        wrapper.chmod(0o755)
        return str(wrapper)


@contextlib.contextmanager
def blocked_direct_path() -> Iterator[BlockedNet]:
    """Fresh namespaces P, R, S as drawn above, with the direct path P <-> S dropped by
    nftables in R; all deleted afterwards whatever happened."""
    tag = f"{os.getpid() % 100000}"
    net = BlockedNet(relay=f"tmr{tag}", patient=f"tmp{tag}", staff=f"tms{tag}")
    names = (net.relay, net.patient, net.staff)
    for ns in names:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # a stale one
    try:
        for ns in names:
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "link", "add", "vp0", "netns", net.relay, "type", "veth",
             "peer", "name", "vr", "netns", net.patient)  # fmt: skip
        _run("ip", "link", "add", "vs0", "netns", net.relay, "type", "veth",
             "peer", "name", "vr", "netns", net.staff)  # fmt: skip
        _run("ip", "-n", net.relay, "addr", "add", f"{RELAY_ADDR}/32", "dev", "lo")
        for side, dev, mine, gateway in (
            (net.patient, "vp0", PATIENT_ADDR, "10.77.1.1"),
            (net.staff, "vs0", STAFF_ADDR, "10.77.2.1"),
        ):
            _run("ip", "-n", net.relay, "addr", "add", f"{gateway}/24", "dev", dev)
            _run("ip", "-n", net.relay, "link", "set", dev, "up")
            _run("ip", "-n", side, "addr", "add", f"{mine}/24", "dev", "vr")
            _run("ip", "-n", side, "link", "set", "vr", "up")
            _run("ip", "-n", side, "route", "add", "default", "via", gateway)
        _run("ip", "netns", "exec", net.relay, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        net.nft("add", "table", "inet", "telemed")
        net.nft("add chain inet telemed input { type filter hook input priority 0 ; }")
        net.nft("add chain inet telemed forward { type filter hook forward priority 0 ; }")
        for a, b in ((PATIENT_NET, STAFF_NET), (STAFF_NET, PATIENT_NET)):
            net.nft("add", "rule", "inet", "telemed", "forward",
                    "ip", "saddr", a, "ip", "daddr", b, "drop")  # fmt: skip
        yield net
    finally:
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
