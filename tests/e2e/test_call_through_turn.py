"""Calls when the direct path is blocked (issue 17): the patient's and the consultant's
Chromium each run in their own network namespace; nftables drops everything between them,
so only a real coturn (tests/turnkit.py) in the middle namespace can carry the call
(tests/netkit.py). The urgent flow's call connects through the relay on both sides with
video both ways and both pages say `relay`; with UDP to coturn dropped it still connects
(TCP to the relay); with coturn stopped the patient's page says within 20 s that the call
cannot connect and why, with the hotline (R-URG-1, R-FALLBACK-1)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from e2ekit import (
    ADULT,
    ADULT_PHONE,
    CHROMIUM,
    DESK,
    PHONE,
    WAIT,
    WINDOWS_AGENT,
    Person,
    Stage,
    camera_file,
    chromium,
    login_patient,
    login_staff,
    open_stage,
    person,
    video_flowing,
)
from netkit import RELAY_ADDR, BlockedNet, blocked_direct_path
from playwright.async_api import Page, expect
from sqlalchemy import select
from test_urgent_flow import patient_reaches_home
from turnkit import Coturn

from telemed.clock import ManualClock
from telemed.consultation import Channel
from telemed.devices import DeviceReport, evaluate, requirements_of
from telemed.models import Patient
from telemed.roles import Role
from telemed.services.device_checks import save_check

SECRET = "netns-turn-secret"


@pytest.fixture
def clock() -> ManualClock:
    """The server's clock starts at the real time: coturn checks expiries by its own."""
    return ManualClock(datetime.now(UTC))


@pytest.fixture
def net() -> Iterator[BlockedNet]:
    with blocked_direct_path() as made:
        yield made


@pytest.fixture
def coturn(net: BlockedNet, tmp_path: Path) -> Iterator[Coturn]:
    """coturn in the middle namespace, on its loopback address both sides route to."""
    workdir = tmp_path / "coturn"
    workdir.mkdir()
    server = Coturn(workdir, SECRET, host=RELAY_ADDR, namespace=net.relay)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclasses.dataclass
class Sides:
    stage: Stage
    patient_stage: Stage  # the same app as the patient's namespace reaches it
    staff_stage: Stage
    patient: Person
    consultant: Person


async def serve_in(stage: Stage, net: BlockedNet, namespace: str) -> tuple[Stage, web.SockSite]:
    """The running app also served on 127.0.0.1 inside `namespace`."""
    sock = net.listen_in(namespace)
    site = web.SockSite(stage.app.client.server.runner, sock)
    await site.start()
    return dataclasses.replace(stage, url=f"http://127.0.0.1:{sock.getsockname()[1]}"), site


@asynccontextmanager
async def two_sides(
    start_app: Callable[..., Any],
    sqlite_url: str,
    tmp_path: Path,
    net: BlockedNet,
    coturn: Coturn,
    ttl: str = "1h",
    transports: tuple[str, ...] = ("udp", "tcp"),
) -> AsyncIterator[Sides]:
    """The app with TURN = this coturn; the patient's Chromium in P (a phone), the
    consultant's in S (a desk); the patient has passed a connection check before."""
    stage = await open_stage(
        start_app,
        sqlite_url,
        tmp_path,
        signalling={"turn": coturn.turn_settings(*transports, ttl=ttl)},
    )
    await stage.add_patients(ADULT)
    await stage.add_staff(Role.CONSULTANT, "anna", "Анна Консультант")
    # The connection check is not what this test is about (its test call goes to the
    # server's peer, outside these namespaces): the patient passed one on another day.
    await passed_check_before(stage)
    patient_stage, patient_site = await serve_in(stage, net, net.patient)
    staff_stage, staff_site = await serve_in(stage, net, net.staff)
    camera = camera_file(tmp_path)
    try:
        async with (
            chromium(camera, executable=net.chromium_in(net.patient, tmp_path, CHROMIUM)) as pb,
            chromium(camera, executable=net.chromium_in(net.staff, tmp_path, CHROMIUM)) as sb,
        ):
            yield Sides(
                stage=stage,
                patient_stage=patient_stage,
                staff_stage=staff_stage,
                patient=await person(pb, PHONE, "patient"),
                consultant=await person(sb, DESK, "consultant"),
            )
    finally:
        await patient_site.stop()
        await staff_site.stop()


async def passed_check_before(stage: Stage) -> None:
    """A passing connection check of the patient, saved as the server saves one."""
    svc = stage.app.services
    async with svc.db.read() as session:
        patient_id = await session.scalar(select(Patient.id).where(Patient.phone == ADULT_PHONE))
    assert patient_id is not None
    report = DeviceReport(Channel.VIDEO, WINDOWS_AGENT.format(major=124), (1280, 720), True, 5000)
    verdict = evaluate(report, requirements_of(svc.settings.device), "ru")
    assert verdict.ok, verdict
    await save_check(svc.db, svc.clock, patient_id, "video", verdict, "ru", None)


async def urgent_call_accepted(
    sides: Sides, before_accept: Callable[[], None] = lambda: None
) -> tuple[Page, Page]:
    """The patient starts an urgent video consultation; the consultant accepts it."""
    c, p = sides.consultant.page, sides.patient.page
    await login_staff(c, sides.staff_stage.url, "anna")
    await expect(c.locator("#queue-empty")).to_be_visible(timeout=WAIT)
    await login_patient(p, sides.patient_stage)
    await patient_reaches_home(p)
    await p.get_by_test_id("channel-video").check()
    await p.get_by_test_id("start-urgent").click()
    await expect(p.get_by_test_id("queue-position")).to_be_visible(timeout=WAIT)
    item = c.get_by_test_id("queue-item")
    await expect(item).to_have_count(1, timeout=WAIT)
    before_accept()
    await item.get_by_test_id("accept").click()
    return c, p


async def connected_through_the_relay(c: Page, p: Page, protocol: str | None) -> None:
    """Both sides connected, both say `relay` (each sending to coturn over `protocol`
    when given: with UDP dropped, nobody can reach the other's relay but through its
    own), video both ways."""
    for page in (c, p):
        await expect(page.get_by_test_id("call-state")).to_have_attribute(
            "data-state", "connected", timeout=60_000
        )
        quality = page.get_by_test_id("call-quality")
        await expect(quality).to_have_attribute("data-path", "relay", timeout=WAIT)
        if protocol is not None:
            await expect(quality).to_have_attribute("data-relay-protocol", protocol, timeout=WAIT)
    await expect(c.get_by_test_id("call-quality")).to_contain_text("TURN", timeout=WAIT)
    for page in (c, p):
        seen = await video_flowing(page, within=60)
        assert seen["width"] > 0 and seen["t1"] > seen["t0"], seen


@pytest.mark.parametrize("udp", [True, False], ids=["udp", "tcp-only"])
async def test_the_urgent_call_connects_through_turn_when_the_direct_path_is_dropped(
    start_app: Callable[..., Any],
    sqlite_url: str,
    tmp_path: Path,
    net: BlockedNet,
    coturn: Coturn,
    udp: bool,
) -> None:
    """R-URG-1: direct traffic between the two browsers is dropped; the call goes through
    coturn on both sides (UDP, or TCP when UDP to coturn is dropped too), video flows both
    ways, and the console and the call screen say `relay`; after a network change the ICE
    restart comes back through the relay."""
    if not udp:
        net.only_tcp_to_relay()
    async with two_sides(start_app, sqlite_url, tmp_path, net, coturn) as sides:
        c, p = await urgent_call_accepted(sides)
        await connected_through_the_relay(c, p, None if udp else "tcp")
        # A network change on the patient's side: ICE restarts and comes back through
        # the relay.
        async with p.expect_console_message(
            lambda m: "ICE restart" in m.text and "network change" in m.text, timeout=WAIT
        ):
            await p.evaluate("() => window.dispatchEvent(new Event('online'))")
        await connected_through_the_relay(c, p, None if udp else "tcp")
        for who in (sides.consultant, sides.patient):
            assert not [e for e in who.errors if "rtc:" not in e], who.errors
    assert "ALLOCATE processed, success" in coturn.log_text()


async def test_with_coturn_stopped_the_page_says_in_20_s_that_the_call_cannot_connect(
    start_app: Callable[..., Any],
    sqlite_url: str,
    tmp_path: Path,
    net: BlockedNet,
    coturn: Coturn,
) -> None:
    """R-FALLBACK-1: no direct path and no relay: within 20 s of the accept both pages
    say the call cannot connect because the relay is unreachable; the patient sees the
    hotline."""
    async with two_sides(start_app, sqlite_url, tmp_path, net, coturn) as sides:
        coturn.stop()
        c, p = await urgent_call_accepted(sides)
        for page in (p, c):
            state = page.get_by_test_id("call-state")
            await expect(state).to_have_attribute(
                "data-reason", "relay_unreachable", timeout=20_000
            )
            await expect(state).to_have_attribute("data-state", "failed")
        await expect(p.get_by_test_id("call-state")).to_contain_text("TURN")
        await expect(p.locator("#call-hotline")).to_be_visible(timeout=WAIT)
        await expect(p.locator("#call-hotline")).to_contain_text("8 (800)")


async def test_a_lossy_link_shows_as_loss_in_the_consoles_quality_summary(
    start_app: Callable[..., Any],
    sqlite_url: str,
    tmp_path: Path,
    net: BlockedNet,
    coturn: Coturn,
) -> None:
    """The patient's link drops 5 % of UDP packets each way (what `tc netem loss 5%` does;
    nftables here, the kernel has no netem): the call still goes through the relay, and the
    leg's summaries both sides send are in the console, the patient's showing the loss."""
    net.lossy_patient_link(5)
    # TURN over UDP only: over TCP the relay would hide the loss as retransmissions.
    async with two_sides(
        start_app, sqlite_url, tmp_path, net, coturn, transports=("udp",)
    ) as sides:
        c, p = await urgent_call_accepted(sides)
        await connected_through_the_relay(c, p, None)
        legs = c.get_by_test_id("quality-leg")
        # Both sides' summaries of the leg, each over at least 15 s of the call.
        await c.wait_for_function(
            """() => [...document.querySelectorAll('[data-testid="quality-leg"]')]
                 .filter(e => Number(e.dataset.seconds) >= 15).length >= 2""",
            timeout=90_000,
        )
        for reporter in ("consultant", "patient"):
            mine = legs.and_(c.locator(f'[data-reporter="{reporter}"]'))
            await expect(mine).to_have_attribute("data-path", "relay")
        await expect(legs.first).to_contain_text("TURN")
        losses = {
            await leg.get_attribute("data-reporter"): float(
                await leg.get_attribute("data-loss") or 0
            )
            for leg in await legs.all()
        }
    print("loss seen by each side (%):", losses)
    # Each side's media crosses the lossy link once: both summaries show the loss (up to
    # 5 %: video packets the receiver got back by NACK retransmission count as received).
    assert all(1.0 <= loss <= 10.0 for loss in losses.values()), losses


def allocated_users(coturn: Coturn) -> set[str]:
    """The TURN usernames (`expiry:user`) coturn allocated a relay for."""
    return set(
        re.findall(
            r"user <([^>]+)>: incoming packet ALLOCATE processed, success", coturn.log_text()
        )
    )


async def test_a_relayed_call_renews_its_turn_credentials_before_they_expire_and_stays_up(
    start_app: Callable[..., Any],
    sqlite_url: str,
    tmp_path: Path,
    net: BlockedNet,
    coturn: Coturn,
    clock: ManualClock,
) -> None:
    """With `signalling.turn.ttl` 60 s, each page asks `ice:renew` before its credentials
    end, restarts ICE with the fresh ones (the call goes through the relay), and coturn
    allocates again for the new username; the call stays up through the relay."""
    async with two_sides(start_app, sqlite_url, tmp_path, net, coturn, ttl="60s") as sides:
        c, p = await urgent_call_accepted(sides, lambda: clock.set(datetime.now(UTC)))
        await connected_through_the_relay(c, p, None)
        before = allocated_users(coturn)
        clock.set(datetime.now(UTC))  # the renewals mint credentials from now on
        async with p.expect_console_message(
            lambda m: "ICE restart with renewed TURN credentials" in m.text, timeout=90_000
        ):
            pass
        await expect(p.get_by_test_id("call-state")).to_have_attribute(
            "data-state", "connected", timeout=WAIT
        )
        await expect(p.get_by_test_id("call-quality")).to_have_attribute("data-path", "relay")
        await video_flowing(p)
        renewed = allocated_users(coturn) - before
        assert renewed, coturn.log_text()[-2000:]
        newest = max(int(u.split(":")[0]) for u in renewed)
        assert newest > max(int(u.split(":")[0]) for u in before)
