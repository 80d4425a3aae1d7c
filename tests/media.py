"""A WebRTC peer for live tests: aiortc negotiating only through the server's `signal` relay.

The protocol the clients follow (the server only relays): the staff member who is with
the patient makes the offer (after their accept, or on `peer:rejoined`), the patient
answers; `data` is `{"type": "offer" | "answer", "sdp": ...}`. aiortc gathers every ICE
candidate before `setLocalDescription` returns, so the SDP alone is enough: no trickle.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from array import array
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError
from live import Live

WIDTH, HEIGHT = 320, 240
SAMPLE_RATE = 48_000
TONE_HZ = 440
AUDIO_SAMPLES = SAMPLE_RATE // 50  # 20 ms, the usual Opus frame
TONE_AMPLITUDE = 8000
FOREVER = 24 * 3600.0


@functools.cache
def tone_second() -> bytes:
    """One second of a 440 Hz tone, s16 mono: 440 whole cycles, so it loops seamlessly."""
    return array(
        "h",
        (
            round(TONE_AMPLITUDE * math.sin(2 * math.pi * TONE_HZ * i / SAMPLE_RATE))
            for i in range(SAMPLE_RATE)
        ),
    ).tobytes()


class PatternTrack(VideoStreamTrack):
    """320x240 frames with a moving luma ramp, built from precomputed bytes: encoding is
    the dear part of a call (PERFORMANCE.md), so making a frame should cost nothing."""

    def __init__(self, width: int = WIDTH, height: int = HEIGHT) -> None:
        super().__init__()
        self.width, self.height = width, height
        self._wave = bytes((2 * i) % 256 for i in range(width + 128))
        self._chroma = bytes([128]) * ((width // 2) * (height // 2))
        self._count = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        shift = (4 * self._count) % 128
        self._count += 1
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        luma, u, v = frame.planes
        row = self._wave[shift : shift + self.width] + bytes(luma.line_size - self.width)
        luma.update(row * self.height)
        u.update(self._chroma)
        v.update(self._chroma)
        frame.pts, frame.time_base = pts, time_base
        return frame


class ToneTrack(AudioStreamTrack):
    """A 440 Hz tone as 20 ms s16 frames at 48 kHz, paced in real time like aiortc's own
    silent track (which runs at 8 kHz)."""

    def __init__(self) -> None:
        super().__init__()
        self._began: float | None = None
        self._timestamp = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._began is None:
            self._began = time.monotonic()
        else:
            self._timestamp += AUDIO_SAMPLES
            wait = self._began + self._timestamp / SAMPLE_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        offset = 2 * (self._timestamp % SAMPLE_RATE)  # SAMPLE_RATE is a multiple of 960
        frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_SAMPLES)
        frame.planes[0].update(tone_second()[offset : offset + 2 * AUDIO_SAMPLES])
        frame.pts = self._timestamp
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = Fraction(1, SAMPLE_RATE)
        return frame


@dataclass
class Received:
    """What arrived on the remote tracks of one peer connection."""

    video_frames: int = 0
    video_sizes: Counter[tuple[int, int]] = field(default_factory=Counter)
    audio_frames: int = 0
    audio_rates: set[int] = field(default_factory=set)
    audio_peak: int = 0  # loudest decoded sample: a tone, not aiortc's silence


def peak_of(frame: av.AudioFrame) -> int:
    """The loudest sample of a decoded s16 (packed) frame."""
    samples = array("h")
    used = frame.samples * len(frame.layout.channels) * samples.itemsize
    samples.frombytes(bytes(frame.planes[0])[:used])
    return max((abs(s) for s in samples), default=0)


def rtc_config(
    ice_servers: list[dict[str, Any]] | None, relay_only: bool = False
) -> RTCConfiguration:
    """The `ice_servers` of `consultation:state` as aiortc wants them; `relay_only` keeps
    only relayed candidates (as if the direct path were blocked)."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in ice_servers or []
        ],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL,
    )


class MediaPeer:
    """One side of one call: a peer connection sending a test pattern and a tone, fed by
    the `signal` events of one consultation from one counterpart role.

    A new call (after a transfer or a reconnect) gets a new MediaPeer: aiortc cannot
    restart ICE, and neither side keeps anything from the old call.
    """

    def __init__(
        self,
        live: Live,
        consultation_id: str,
        counterpart_role: str,
        ice_servers: list[dict[str, Any]] | None = None,
        relay_only: bool = False,
    ) -> None:
        self.live = live
        self.consultation_id = consultation_id
        self.counterpart_role = counterpart_role
        self.received = Received()
        self.pc = RTCPeerConnection(rtc_config(ice_servers, relay_only))
        self._local: list[MediaStreamTrack] = [PatternTrack(), ToneTrack()]
        for track in self._local:
            self.pc.addTrack(track)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.pc.on("track", lambda track: self._spawn(self._consume(track)))
        self._listener = self._spawn(self._listen())

    @property
    def tasks(self) -> set[asyncio.Task[None]]:
        return set(self._tasks)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def offer(self) -> None:
        """The staff side starts the call."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self._send(self.pc.localDescription)

    async def _send(self, description: RTCSessionDescription) -> None:
        await self.live.ok(
            "signal",
            {
                "consultation_id": self.consultation_id,
                "data": {"type": description.type, "sdp": description.sdp},
            },
        )

    def _mine(self, event: Any) -> bool:
        return bool(
            event.get("consultation_id") == self.consultation_id
            and event.get("from_role") == self.counterpart_role
        )

    async def _listen(self) -> None:
        """Answer offers and apply answers, as they come through the relay."""
        while True:
            event = await self.live.wait("signal", self._mine, within=FOREVER)
            data = event["data"]
            description = RTCSessionDescription(sdp=data["sdp"], type=data["type"])
            await self.pc.setRemoteDescription(description)
            if description.type == "offer":
                await self.pc.setLocalDescription(await self.pc.createAnswer())
                await self._send(self.pc.localDescription)

    async def _consume(self, track: MediaStreamTrack) -> None:
        """Count every frame of a remote track until it ends."""
        got = self.received
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if isinstance(frame, av.VideoFrame):
                got.video_frames += 1
                got.video_sizes[(frame.width, frame.height)] += 1
            elif isinstance(frame, av.AudioFrame):
                got.audio_frames += 1
                got.audio_rates.add(frame.sample_rate)
                got.audio_peak = max(got.audio_peak, peak_of(frame))

    async def wait_media(self, video: int, audio: int, within: float = 10) -> Received:
        """Poll until at least `video` and `audio` frames arrived; fail early if the
        negotiation failed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        got = self.received
        while got.video_frames < video or got.audio_frames < audio:
            if self._listener.done():
                self._listener.result()  # raises what broke the negotiation
                raise AssertionError(f"{self.live.name}: the signal listener stopped")
            if loop.time() > deadline:
                raise AssertionError(
                    f"{self.live.name}: {got} within {within}s (wanted {video} video and "
                    f"{audio} audio frames); connection {self.pc.connectionState}"
                )
            await asyncio.sleep(0.05)
        return got

    async def close(self) -> None:
        """Close the connection, stop the local tracks, and end every task started here."""
        if self._closed:
            return
        self._closed = True
        self._listener.cancel()
        await self.pc.close()
        for track in self._local:
            track.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def closed(self) -> bool:
        return self._closed and self.pc.connectionState == "closed" and not self._tasks


class Peers:
    """Every MediaPeer of a test, so a fixture can close them all whatever happened."""

    def __init__(self) -> None:
        self.all: list[MediaPeer] = []

    def open(
        self,
        live: Live,
        consultation_id: str,
        counterpart_role: str,
        ice_servers: list[dict[str, Any]] | None = None,
        relay_only: bool = False,
    ) -> MediaPeer:
        peer = MediaPeer(live, consultation_id, counterpart_role, ice_servers, relay_only)
        self.all.append(peer)
        return peer

    async def close_all(self) -> None:
        for peer in self.all:
            await peer.close()


def selected_pair(pc: RTCPeerConnection) -> tuple[str, str]:
    """(local, remote) candidate types of the pair ICE nominated for the first transport
    (`host`, `srflx`, `relay`): aiortc keeps it inside aioice."""
    for transceiver in pc.getTransceivers():
        transport = transceiver.sender.transport
        if transport is None:
            continue
        connection = transport.transport._connection  # aioice.Connection
        for pair in connection._nominated.values():
            return pair.local_candidate.type, pair.remote_candidate.type
    raise AssertionError("no nominated candidate pair")
