"""rtc.js in Chromium, two pages joined by a BroadcastChannel in place of the server's
signal relay: both sides offer at once and perfect negotiation settles it; an ICE restart
and a fresh RTCPeerConnection each bring the video back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from e2ekit import DESK, Stage, camera_file, chromium, open_stage, person, video_flowing, watch
from playwright.async_api import Page, expect

SETUP = """async ({polite, me}) => {
  const { CallConnection } = await import("/static/js/rtc.js");
  const channel = new BroadcastChannel("rtc-test");
  const live = {  // the relay: what one page sends, the other gets
    request: async (event, payload) => { channel.postMessage({from: me, data: payload.data});
                                         return {ok: true}; },
    on() {}, off() {},
  };
  const conn = new CallConnection({live, consultationId: "c-1", polite,
                                   media: {audio: true, video: true}});
  channel.onmessage = (e) => { if (e.data.from !== me) conn.handleSignal(e.data.data); };
  const video = document.createElement("video");
  Object.assign(video, {autoplay: true, muted: true});
  video.dataset.testid = "remote-video";
  video.style.width = "320px";
  document.body.append(video);
  conn.addEventListener("remotestream", (e) => { video.srcObject = e.detail; });
  conn.addEventListener("state", (e) => { document.body.dataset.rtc = e.detail; });
  window.conn = conn;
  await conn.start();
}"""


async def connected(page: Page) -> None:
    await expect(page.locator("body")).to_have_attribute("data-rtc", "connected", timeout=30_000)


async def test_glare_ice_restart_and_a_fresh_connection_all_end_with_video_both_ways(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    """Perfect negotiation (issue 6 part 3): both sides offer at once, the polite one rolls
    back; restartIce and a fresh connection (offered with fresh:true) recover the call."""
    stage: Stage = await open_stage(start_app, sqlite_url, tmp_path)
    async with chromium(camera_file(tmp_path)) as browser:
        someone = await person(browser, DESK, "staff")
        staff = someone.page
        patient = await someone.context.new_page()
        watch(patient, "patient", someone.errors)
        for page in (staff, patient):
            await page.goto(f"{stage.url}/console")
        # The kit's contexts are a Russian user's unless a test asks otherwise.
        zone = "[navigator.language, Intl.DateTimeFormat().resolvedOptions().timeZone]"
        assert await staff.evaluate(zone) == ["ru-RU", "Europe/Moscow"]
        # Both start at once: each adds its tracks and offers (a collision).
        await staff.evaluate(SETUP, {"polite": False, "me": "staff"})
        await patient.evaluate(SETUP, {"polite": True, "me": "patient"})
        for page in (staff, patient):
            await connected(page)
            await video_flowing(page)

        # An ICE restart from the polite side (as on a network change).
        await patient.evaluate("conn.restartIce('test')")
        for page in (staff, patient):
            await connected(page)
            await video_flowing(page)
        assert await patient.evaluate("conn.restarts") == 0  # reset once connected again

        # A fresh connection from the impolite side: both sides get a new RTCPeerConnection.
        await staff.evaluate("window.oldPc = conn.pc")
        await patient.evaluate("window.oldPc = conn.pc")
        await staff.evaluate("conn.freshStart('test')")
        for page in (staff, patient):
            await connected(page)
            await video_flowing(page)
            assert await page.evaluate("conn.pc !== window.oldPc")
            assert await page.evaluate("window.oldPc.connectionState") == "closed"
        assert someone.errors == []  # any unexpected 404 included (e2ekit.EXPECTED_404)
