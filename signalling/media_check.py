"""The test call of the connection check (R-DEV): a receive-only aiortc peer per check.

The page sends its camera and microphone to this peer for a few seconds; the peer
reports what really arrived: video frames (size and rate), the loudest audio, the
uplink bitrate, the round-trip time of the ICE path and whether that path is direct or
through TURN. The peer never sends media (encoding is ten times dearer than decoding,
PERFORMANCE.md), lives at most `device.call_timeout`, and at most
`device.max_concurrent_calls` run at once on a node; beyond that `check_busy`.

Signalling is one REST call (`POST /api/v1/device-check/call`: SDP offer in, SDP answer
out, no trickle: aiortc and the page both gather every candidate before sending).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web
from aiortc import RTCConfiguration

from signalling.media_call import CallReport, CheckCall, check_offer
from telemed.config import DeviceSettings
from telemed.errors import NotFound, RateLimited, TelemedError
from telemed.ratelimit import SlidingWindow

log = logging.getLogger("telemed.media_check")

FINISHED_KEPT = 1000  # reports kept for the verdict, newest first out
FINISHED_TTL = 600.0  # seconds a finished report can still be asked for
REPORT_GRACE_SECONDS = 5.0  # a call ends by its timeout; its teardown may take a moment more


class CheckBusy(TelemedError):
    code = "check_busy"
    status = 503
    default_message = "Too many connection checks are running; try again in a few seconds."


class UnknownCall(NotFound):
    code = "call_not_found"
    default_message = "There is no such test call, or it ended too long ago."


class MediaChecks:
    """The test calls of one node: at most `max_concurrent_calls` at once, one per patient,
    each ended by its own clock; finished reports kept a while for the verdict."""

    def __init__(self, settings: DeviceSettings, config: Callable[[str], RTCConfiguration]) -> None:
        self.settings = settings
        self._config = config
        self._running: dict[str, CheckCall] = {}
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._finished: OrderedDict[str, tuple[str, CallReport, float]] = OrderedDict()
        self._starts = SlidingWindow(settings.calls_per_minute, 60.0)
        self._closed = False
        self.peak = 0
        self.refused = 0

    @property
    def active(self) -> int:
        """Test calls running now on this node."""
        return len(self._running)

    def state_of(self, call_id: str) -> str | None:
        """negotiating, measuring, done or failed; None once it is no longer running."""
        call = self._running.get(call_id)
        return call.state if call is not None else None

    def running_tasks(self) -> set[asyncio.Task[None]]:
        """Every task of every running call (for tests that count what is left)."""
        tasks: set[asyncio.Task[None]] = set(self._runs.values())
        for call in self._running.values():
            tasks |= call.tasks
        return tasks

    async def start(self, owner: str, offer_sdp: str) -> tuple[str, str]:
        """Answer a page's offer with a receive-only peer; (call id, SDP answer)."""
        if self._closed:
            raise CheckBusy()
        check_offer(offer_sdp)
        loop = asyncio.get_running_loop()
        retry = self._starts.take(owner, 1, loop.time())
        if retry is not None:
            raise RateLimited(retry_after_seconds=math.ceil(retry))
        replaced = [c for c in self._running.values() if c.owner == owner]
        for call in replaced:  # one call per patient: a reloaded page starts afresh
            call.stop("replaced")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                for call in replaced:
                    await call.finished.wait()
        if len(self._running) >= self.settings.max_concurrent_calls:
            self.refused += 1
            raise CheckBusy(
                retry_after_seconds=math.ceil(self.settings.call_measure.total_seconds())
            )
        call_id = secrets.token_hex(12)
        call = CheckCall(call_id, owner, self._config(owner))
        self._running[call_id] = call  # the slot is taken before the first await
        self.peak = max(self.peak, len(self._running))
        try:
            answer = await call.answer(offer_sdp)
        except BaseException:
            self._running.pop(call_id, None)
            await call.close()
            raise
        self._runs[call_id] = asyncio.ensure_future(self._run(call))
        return call_id, answer

    async def _run(self, call: CheckCall) -> None:
        """Run one call to its end, keep its report, free its slot whatever happened."""
        try:
            report = await call.run(
                self.settings.call_measure.total_seconds(),
                self.settings.call_timeout.total_seconds(),
            )
            self._keep(call.owner, report)
            log.info(
                "test call %s %s (%s): video %dx%d %.1f fps, audio %s dBFS, %s kbit/s, rtt %s ms",
                call.call_id,
                report.state,
                report.reason,
                report.width,
                report.height,
                report.fps,
                report.audio_dbfs,
                report.uplink_kbps,
                report.rtt_ms,
            )
        except Exception:
            log.exception("test call %s failed", call.call_id)
        finally:
            self._running.pop(call.call_id, None)
            self._runs.pop(call.call_id, None)
            call.finished.set()

    def _keep(self, owner: str, report: CallReport) -> None:
        now = asyncio.get_running_loop().time()
        self._finished[report.call_id] = (owner, report, now + FINISHED_TTL)
        while self._finished:
            oldest = next(iter(self._finished.values()))
            if len(self._finished) <= FINISHED_KEPT and oldest[2] > now:
                break
            self._finished.popitem(last=False)

    async def result(self, owner: str, call_id: str) -> CallReport:
        """The report of one of the owner's calls, waiting for a running one to end: up to
        its timeout and the grace of its teardown (asked for as it timed out, a report
        that waited only the timeout missed the end it was waiting for)."""
        call = self._running.get(call_id)
        if call is not None and call.owner == owner:
            within = self.settings.call_timeout.total_seconds() + REPORT_GRACE_SECONDS
            try:
                async with asyncio.timeout(within):
                    await call.finished.wait()
            except TimeoutError:
                pass
            if call.report is not None:
                return call.report
        kept = self._finished.get(call_id)
        if kept is None or kept[0] != owner or kept[2] <= asyncio.get_running_loop().time():
            raise UnknownCall()
        return kept[1]

    def stop(self, owner: str, call_id: str) -> None:
        """The page went away: end its call now."""
        call = self._running.get(call_id)
        if call is None or call.owner != owner:
            if call_id in self._finished and self._finished[call_id][0] == owner:
                return
            raise UnknownCall()
        call.stop("stopped")

    async def close(self) -> None:
        """Shutdown: end every call and wait for its peer to close."""
        self._closed = True
        for call in list(self._running.values()):
            call.stop("shutdown")
        runs = list(self._runs.values())
        await asyncio.gather(*runs, return_exceptions=True)


MEDIA_CHECKS = web.AppKey("media_checks", MediaChecks)
