"""One test call of the connection check: a receive-only aiortc peer and what it measured
(frames, loudness, bitrate, round trip, direct or relayed path). `media_check.MediaChecks`
runs them."""

from __future__ import annotations

import asyncio
import logging
import math
import re
from array import array
from collections.abc import Coroutine
from dataclasses import asdict, dataclass
from operator import mul
from statistics import median
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from telemed.devices import CallMeasure
from telemed.errors import TelemedError

log = logging.getLogger("telemed.media_check")

START_GRACE = 1.5  # seconds to wait for the other media kind once the first has arrived
RTT_PING_EVERY = 0.5
_MEDIA_LINE = re.compile(r"^m=(\S+) ", re.MULTILINE)


class BadOffer(TelemedError):
    code = "bad_offer"
    status = 422
    default_message = "The SDP offer cannot be used for a test call."


@dataclass
class CallReport:
    """What one test call measured; `reason` says why it ended."""

    call_id: str
    state: str  # done | failed
    reason: str  # measured | timeout | connection_failed | stopped | replaced | shutdown
    connected: bool
    seconds: float = 0.0  # length of the measured window
    video_frames: int = 0
    width: int = 0
    height: int = 0
    fps: float = 0.0
    audio_frames: int = 0
    audio_dbfs: float | None = None
    uplink_kbps: float | None = None
    rtt_ms: float | None = None
    ice_path: str | None = None  # direct | relay
    local_candidate: str | None = None  # host | srflx | prflx | relay
    remote_candidate: str | None = None
    # Relayed candidates in the page's offer: it reached the TURN server with the
    # credentials it was handed (the connection check's TURN line).
    offered_relay: int = 0

    def measure(self) -> CallMeasure:
        """The figures the rules judge."""
        return CallMeasure(
            connected=self.connected,
            video_frames=self.video_frames,
            width=self.width,
            height=self.height,
            fps=self.fps,
            audio_frames=self.audio_frames,
            audio_dbfs=self.audio_dbfs,
            uplink_kbps=self.uplink_kbps,
            rtt_ms=self.rtt_ms,
            ice_path=self.ice_path,
            offered_relay=self.offered_relay,
        )

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON for the page and the saved check."""
        return asdict(self)


def ice_path(local_type: str | None, remote_type: str | None) -> str | None:
    """`relay` when either end of the selected candidate pair is a TURN relay."""
    if local_type is None or remote_type is None:
        return None
    return "relay" if "relay" in (local_type, remote_type) else "direct"


def rms_dbfs(frame: av.AudioFrame) -> float:
    """Loudness of a decoded s16 frame as RMS in dB below full scale (-inf: digital silence)."""
    samples = array("h")
    used = frame.samples * len(frame.layout.channels) * samples.itemsize
    samples.frombytes(bytes(frame.planes[0])[:used])
    if not samples:
        return -math.inf
    power = sum(map(mul, samples, samples)) / len(samples)
    return 10 * math.log10(power / 32768**2) if power > 0 else -math.inf


_RELAY_CANDIDATE = re.compile(r"^a=candidate:.* typ relay( |\r?$)", re.MULTILINE)


def check_offer(sdp: str) -> None:
    """One audio and/or one video section and nothing else: a test call needs no more."""
    kinds = _MEDIA_LINE.findall(sdp)
    if (
        not kinds
        or any(k not in ("audio", "video") for k in kinds)
        or len(set(kinds)) != len(kinds)
    ):
        raise BadOffer("Offer one audio and/or one video section, and nothing else.")


@dataclass
class _Tally:
    """Frames counted as they are decoded."""

    video_frames: int = 0
    width: int = 0
    height: int = 0
    audio_frames: int = 0
    loudest: float = -math.inf


class CheckCall:
    """One test call: a receive-only peer connection, its track readers and its clock."""

    def __init__(self, call_id: str, owner: str, config: RTCConfiguration) -> None:
        self.call_id = call_id
        self.owner = owner
        self.pc = RTCPeerConnection(config)
        self.state = "negotiating"
        self.tally = _Tally()
        self.kinds: set[str] = set()
        self.started: set[str] = set()
        self.report: CallReport | None = None
        self.offered_relay = 0
        self.finished = asyncio.Event()
        self._first_media = asyncio.Event()
        self._all_media = asyncio.Event()
        self._ended = asyncio.Event()
        self._stop_reason: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_connection_state)

    def _set_state(self, new: str) -> None:
        log.debug("test call %s: %s -> %s", self.call_id, self.state, new)
        self.state = new

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def tasks(self) -> set[asyncio.Task[None]]:
        return set(self._tasks)

    async def answer(self, offer_sdp: str) -> str:
        """Apply the page's offer and answer it receive-only."""
        self.offered_relay = len(_RELAY_CANDIDATE.findall(offer_sdp))
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            for transceiver in self.pc.getTransceivers():
                transceiver.direction = "recvonly"
                self.kinds.add(transceiver.kind)
            answer = await self.pc.createAnswer()
        except Exception as exc:  # aiortc raises ValueError and friends on a bad SDP
            raise BadOffer(f"The offer was refused: {str(exc)[:200]}") from None
        await self.pc.setLocalDescription(answer)
        return str(self.pc.localDescription.sdp)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self.spawn(self._consume(track))

    def _on_connection_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self._ended.set()

    def stop(self, reason: str) -> None:
        """End the call early (the page left, a new check replaced it, shutdown)."""
        self._stop_reason = self._stop_reason or reason
        self._ended.set()

    async def _consume(self, track: MediaStreamTrack) -> None:
        """Count and size every decoded frame until the track ends."""
        tally = self.tally
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if isinstance(frame, av.VideoFrame):
                tally.video_frames += 1
                if frame.width * frame.height > tally.width * tally.height:
                    tally.width, tally.height = frame.width, frame.height
            elif isinstance(frame, av.AudioFrame):
                tally.audio_frames += 1
                tally.loudest = max(tally.loudest, rms_dbfs(frame))
            else:
                continue
            self.started.add(track.kind)
            self._first_media.set()
            if self.started >= self.kinds:
                self._all_media.set()

    async def run(self, measure: float, longest: float) -> CallReport:
        """Wait for media, measure for `measure` seconds, close everything; never longer
        than `longest` in all."""
        loop = asyncio.get_running_loop()
        timed_out = False
        seconds, video_frames = 0.0, 0
        uplink: float | None = None
        rtts: list[float] = []
        try:
            async with asyncio.timeout(longest):
                if await self._wait_for(self._first_media):
                    await self._wait_for(self._all_media, START_GRACE)
                    self._set_state("measuring")
                    t0, frames0 = loop.time(), self.tally.video_frames
                    bytes0 = await self._bytes_received()
                    end = t0 + measure
                    while not self._ended.is_set() and loop.time() < end:
                        rtt = await self._ping()
                        if rtt is not None:
                            rtts.append(rtt)
                        await self._wait_for(
                            self._ended, max(0.0, min(RTT_PING_EVERY, end - loop.time()))
                        )
                    seconds = loop.time() - t0
                    video_frames = self.tally.video_frames - frames0
                    bytes1 = await self._bytes_received()
                    if bytes0 is not None and bytes1 is not None and seconds > 0:
                        uplink = round((bytes1 - bytes0) * 8 / seconds / 1000, 1)
        except TimeoutError:
            timed_out = True
        finally:
            reason = self._stop_reason or (
                "timeout"
                if timed_out
                else "connection_failed"
                if self._ended.is_set()
                else "measured"
            )
            path = self._selected_pair_types()
            await self.close()
        tally = self.tally
        connected = tally.video_frames + tally.audio_frames > 0
        report = CallReport(
            call_id=self.call_id,
            state="done" if connected else "failed",
            reason=reason,
            connected=connected,
            seconds=round(seconds, 3),
            video_frames=video_frames,
            width=tally.width,
            height=tally.height,
            fps=round(video_frames / seconds, 1) if seconds > 0 else 0.0,
            audio_frames=tally.audio_frames,
            audio_dbfs=round(tally.loudest, 1) if math.isfinite(tally.loudest) else None,
            uplink_kbps=uplink,
            rtt_ms=round(median(rtts) * 1000, 2) if rtts else None,
            ice_path=ice_path(*path),
            local_candidate=path[0],
            remote_candidate=path[1],
            offered_relay=self.offered_relay,
        )
        self.report = report
        self._set_state(report.state)
        self.finished.set()
        return report

    async def _wait_for(self, event: asyncio.Event, within: float | None = None) -> bool:
        """Wait for `event` unless the call ends first (or `within` passes)."""
        waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._ended.wait())]
        try:
            await asyncio.wait(waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        return event.is_set()

    async def _bytes_received(self) -> int | None:
        try:
            stats = await self.pc.getStats()
        except Exception:
            return None
        for item in stats.values():
            if getattr(item, "type", None) == "transport":
                return int(item.bytesReceived)
        return None

    def _ice(self) -> Any:
        """aiortc's aioice connection: aiortc exposes no selected candidate pair, so the
        pair and its round trips are read here, in this one place."""
        for transceiver in self.pc.getTransceivers():
            dtls = transceiver.receiver.transport
            ice = getattr(getattr(dtls, "transport", None), "_connection", None)
            if ice is not None:
                return ice
        return None

    def _selected_pair_types(self) -> tuple[str | None, str | None]:
        ice = self._ice()
        pair = getattr(ice, "_nominated", {}).get(1) if ice is not None else None
        if pair is None:
            return None, None
        return str(pair.local_candidate.type), str(pair.remote_candidate.type)

    async def _ping(self) -> float | None:
        """One STUN binding request on the selected pair, timed: the ICE path's round trip
        (what browsers report as currentRoundTripTime)."""
        ice = self._ice()
        pair = getattr(ice, "_nominated", {}).get(1) if ice is not None else None
        if pair is None or ice.remote_password is None:
            return None
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            async with asyncio.timeout(1.0):
                await pair.protocol.request(
                    ice.build_request(pair, nominate=False),
                    pair.remote_addr,
                    integrity_key=ice.remote_password.encode("utf8"),
                    retransmissions=0,
                )
        except Exception:  # a lost or refused ping is simply not counted
            return None
        return loop.time() - began

    async def close(self) -> None:
        """Close the connection (its tracks end, so the readers return) and end every task."""
        try:
            await self.pc.close()
        finally:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
