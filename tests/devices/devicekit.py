"""Connection-check helpers (R-DEV): a Python aiortc client for the test call, fake-camera
files, and a user agent the rules accept."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiortc import AudioStreamTrack, MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

# The synthetic tracks of the live tests (tests/signalling/media.py), reused as they are.
sys.path.append(str(Path(__file__).resolve().parent.parent / "signalling"))
from media import PatternTrack, ToneTrack

# Debian's Chromium, launched by Playwright (which never downloads a browser of its own),
# with fake camera and microphone and no background traffic (DESIGN.md, testing in a browser).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Content-Security-Policy violations (issue 14): Chromium reports each on the console
# ("Refused to ... because it violates the following Content Security Policy directive"),
# and this init script also turns every `securitypolicyviolation` event into a console error
# of its own, so a browser test fails on any of them (e2ekit.chromium, test_check_page).
CSP_MARK = "CSP violation:"
CSP_LISTENER = (
    "document.addEventListener('securitypolicyviolation', e => console.error("
    f"'{CSP_MARK} ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + "
    "' at ' + e.sourceFile + ':' + e.lineNumber));"
)


def is_csp_violation(text: str) -> bool:
    """Whether a console message reports a Content-Security-Policy violation."""
    return CSP_MARK in text or "Content Security Policy" in text


WINDOWS_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


@dataclass
class TestCall:
    """One test call from the patient's side: a send-only peer and its answer."""

    pc: RTCPeerConnection
    tracks: list[MediaStreamTrack]
    call_id: str
    status: int
    body: dict[str, Any]

    async def close(self) -> None:
        await self.pc.close()
        for track in self.tracks:
            track.stop()


async def start_call(
    http: Any,
    headers: dict[str, str],
    video: tuple[int, int] | None = (1280, 720),
    audio: str | None = "tone",
) -> TestCall:
    """Offer send-only video and audio to the server peer and apply its answer."""
    pc = RTCPeerConnection()
    tracks: list[MediaStreamTrack] = []
    if video is not None:
        tracks.append(PatternTrack(*video))
    if audio == "tone":
        tracks.append(ToneTrack())
    elif audio == "silent":
        tracks.append(AudioStreamTrack())  # aiortc's own track: digital silence
    for track in tracks:
        pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    resp = await http.post(
        "/api/v1/device-check/call",
        json={"type": "offer", "sdp": pc.localDescription.sdp},
        headers=headers,
    )
    body = await resp.json()
    call = TestCall(pc, tracks, body.get("call_id", ""), resp.status, body)
    if resp.status == 201:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="answer"))
    else:
        await call.close()
    return call


def check_body(channel: str = "video", **overrides: Any) -> dict[str, Any]:
    """A POST /device-check body of a patient with good equipment on Windows and Chrome."""
    body: dict[str, Any] = {
        "channel": channel,
        "user_agent": WINDOWS_CHROME,
        "camera": {"width": 1280, "height": 720},
        "microphone": True,
        "bandwidth_kbps": 5000,
    }
    body.update(overrides)
    return body


def by_name(verdict: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in verdict["checks"]}


def write_y4m(path: Path, width: int, height: int, frames: int = 10) -> Path:
    """A fake-camera file for Chromium (`--use-file-for-fake-video-capture`): a moving
    luma ramp at 30 fps, 4:2:0."""
    wave = bytes((2 * i) % 256 for i in range(width + 256))
    chroma = bytes([128]) * ((width // 2) * (height // 2) * 2)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for n in range(frames):
            shift = (8 * n) % 256
            out.write(b"FRAME\n")
            out.write(wave[shift : shift + width] * height)
            out.write(chroma)
    return path


async def until(condition: Callable[[], bool], within: float, what: str = "condition") -> None:
    """Poll `condition` every 20 ms for at most `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not met within {within}s")
        await asyncio.sleep(0.02)
