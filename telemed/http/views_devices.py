"""The connection check over REST (R-DEV): the verdict, bandwidth probes and the test call.

Flow of the page: read the camera and microphone, measure the bandwidth with the two
probes, send the camera and microphone to the server in a test call
(`POST /device-check/call`: SDP offer -> answer), then `POST /device-check` with the
`call_id`: the server waits for the call's report and judges everything in one verdict,
saved as the patient's last check and shown to staff in the queue.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from aiohttp import web
from aiortc import RTCConfiguration, RTCIceServer
from pydantic import Field

from signalling.ice import ice_expiry, ice_servers
from signalling.media_call import CallReport
from signalling.media_check import MEDIA_CHECKS, MediaChecks
from telemed.config import Settings
from telemed.consultation import Channel
from telemed.context import services
from telemed.devices import DeviceReport, evaluate, pick_language, requirements_of
from telemed.errors import BadRequest, NotFound, PayloadTooLarge, RateLimited
from telemed.http.api import Api, Body, Call, Out
from telemed.ratelimit import SlidingWindow
from telemed.roles import Role
from telemed.services.device_checks import last_check, platform_text, save_check

PATIENT = {Role.PATIENT}
PROBE_BUDGET = web.AppKey("probe_budget", SlidingWindow)
PROBE_CHUNK = 64 * 1024
PAGE = Path(__file__).parent.parent / "web" / "check.html"


class Camera(Body):
    width: Annotated[int, Field(ge=1, le=16384)]
    height: Annotated[int, Field(ge=1, le=16384)]


class DeviceCheckIn(Body):
    channel: Channel
    user_agent: Annotated[str, Field(max_length=1000)]
    camera: Camera | None = None
    microphone: bool = False
    bandwidth_kbps: Annotated[float | None, Field(ge=0, le=10_000_000)] = None
    call_id: Annotated[str | None, Field(max_length=64)] = None


class CheckOut(Out):
    name: str
    ok: bool
    required: str
    actual: str
    advice: str | None


class DeviceCheckOut(Out):
    ok: bool
    checks: list[CheckOut]
    channel: Channel
    language: str
    platform: str
    checked_at: datetime
    call: dict[str, Any] | None = None


class CheckConfigOut(Out):
    min_video: Annotated[list[int], Field(min_length=2, max_length=2)]  # [width, height]
    min_bandwidth_kbps: int
    probe_max_bytes: int
    measure_seconds: float
    timeout_seconds: float
    ice_servers: list[dict[str, Any]]


class ProbeQuery(Body):
    bytes: Annotated[int, Field(ge=1)] = 256 * 1024


class ProbeOut(Out):
    bytes: int
    seconds: float
    kbps: float


class OfferIn(Body):
    type: Literal["offer"]
    sdp: Annotated[str, Field(min_length=10, max_length=64 * 1024)]


class AnswerOut(Out):
    call_id: str
    type: Literal["answer"] = "answer"
    sdp: str
    measure_seconds: float
    timeout_seconds: float


class CallOut(Out):
    call_id: str
    state: str
    reason: str
    connected: bool
    seconds: float
    video_frames: int
    width: int
    height: int
    fps: float
    audio_frames: int
    audio_dbfs: float | None
    uplink_kbps: float | None
    rtt_ms: float | None
    ice_path: str | None
    local_candidate: str | None
    remote_candidate: str | None
    offered_relay: int = 0


def _language(request: web.Request) -> str:
    return pick_language(request.query.get("lang"), request.headers.get("Accept-Language"))


def _charge(request: web.Request, patient_id: str, amount: int) -> None:
    """Count probe bytes against the patient's budget per minute (`rate_limited` beyond)."""
    retry = request.app[PROBE_BUDGET].take(patient_id, amount, asyncio.get_running_loop().time())
    if retry is not None:
        raise RateLimited(retry_after_seconds=max(1, math.ceil(retry)))


def register(api: Api) -> None:
    """Declare the connection check's endpoints (patients only, consent required)."""

    @api.route(
        "GET", "/device-check/config", roles=PATIENT, response=CheckConfigOut, tag="device-check"
    )
    async def device_check_config(call: Call[Body]) -> CheckConfigOut:
        """What the page needs before checking: the minimums, probe size, ICE servers."""
        svc = services(call.request)
        device = svc.settings.device
        return CheckConfigOut(
            min_video=list(device.min_video),
            min_bandwidth_kbps=device.min_bandwidth_kbps,
            probe_max_bytes=device.probe_max_bytes,
            measure_seconds=device.call_measure.total_seconds(),
            timeout_seconds=device.call_timeout.total_seconds(),
            ice_servers=ice_servers(svc.settings.signalling, call.me.id, svc.clock.now()),
        )

    @api.route(
        "POST",
        "/device-check",
        roles=PATIENT,
        body=DeviceCheckIn,
        response=DeviceCheckOut,
        tag="device-check",
    )
    async def device_check(call: Call[DeviceCheckIn]) -> DeviceCheckOut:
        """Judge the equipment for the chosen channel (R-DEV) and keep it as my last check;
        with a `call_id`, what the test call really delivered wins over what the page saw.
        Texts in Russian, or English with `?lang=en` or Accept-Language."""
        svc = services(call.request)
        body = call.body
        report: CallReport | None = None
        if body.call_id is not None:
            report = await call.request.app[MEDIA_CHECKS].result(call.me.id, body.call_id)
        measure = report.measure() if report is not None else None
        device = DeviceReport(
            channel=body.channel,
            user_agent=body.user_agent,
            camera=(body.camera.width, body.camera.height) if body.camera else None,
            microphone=body.microphone,
            bandwidth_kbps=body.bandwidth_kbps,
            call=measure,
            turn=ice_expiry(svc.settings.signalling, svc.clock.now()) is not None,
        )
        language = _language(call.request)
        verdict = evaluate(device, requirements_of(svc.settings.device), language)
        checked_at = await save_check(
            svc.db, svc.clock, call.me.id, body.channel.value, verdict, language, measure
        )
        return DeviceCheckOut(
            ok=verdict.ok,
            checks=[CheckOut.model_validate(c, from_attributes=True) for c in verdict.checks],
            channel=body.channel,
            language=language,
            platform=platform_text(verdict),
            checked_at=checked_at,
            call=report.to_dict() if report is not None else None,
        )

    @api.route("GET", "/device-check", roles=PATIENT, response=DeviceCheckOut, tag="device-check")
    async def my_last_device_check(call: Call[Body]) -> DeviceCheckOut:
        """My last connection check, as it was shown to me; `not_found` before the first."""
        svc = services(call.request)
        row = await last_check(svc.db, call.me.id)
        if row is None:
            raise NotFound("No connection check yet.")
        return DeviceCheckOut(
            ok=row.ok,
            checks=[CheckOut.model_validate(c) for c in row.checks],
            channel=Channel(row.channel),
            language=row.language,
            platform=row.platform,
            checked_at=row.checked_at,
            call=row.call,
        )

    @api.route(
        "GET",
        "/device-check/probe",
        roles=PATIENT,
        query=ProbeQuery,
        produces="application/octet-stream",
        tag="device-check",
    )
    async def download_probe(call: Call[ProbeQuery]) -> web.StreamResponse:
        """`bytes` random (incompressible) bytes, at most `device.probe_max_bytes`, never
        cached or compressed: the page times the download."""
        size = min(call.body.bytes, services(call.request).settings.device.probe_max_bytes)
        _charge(call.request, call.me.id, size)
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Encoding": "identity",
                "Cache-Control": "no-store, no-transform",
            }
        )
        response.content_length = size
        await response.prepare(call.request)
        left = size
        while left > 0:
            chunk = os.urandom(min(PROBE_CHUNK, left))
            await response.write(chunk)
            left -= len(chunk)
        await response.write_eof()
        return response

    @api.route(
        "POST",
        "/device-check/probe",
        roles=PATIENT,
        raw_body=True,
        consumes="application/octet-stream",
        raw_schema={"type": "string", "format": "binary", "minLength": 1},
        response=ProbeOut,
        tag="device-check",
    )
    async def upload_probe(call: Call[Body]) -> ProbeOut:
        """Time an upload of any bytes (at most `device.probe_max_bytes`) as the server
        receives them: the uplink speed in kbit/s."""
        request = call.request
        limit = services(request).settings.device.probe_max_bytes
        declared = request.content_length
        if declared is not None and declared > limit:
            raise PayloadTooLarge(limit_bytes=limit)
        _charge(request, call.me.id, declared if declared is not None else limit)
        loop = asyncio.get_running_loop()
        began, already = loop.time(), request.content.total_bytes
        ended, size = began, 0
        while chunk := await request.content.read(PROBE_CHUNK):
            size += len(chunk)
            ended = loop.time()
            if size > limit:
                raise PayloadTooLarge(limit_bytes=limit)
        if size == 0:
            raise BadRequest("Send the probe's bytes (application/octet-stream).")
        measured, seconds = size - already, max(ended - began, 1e-3)
        if measured <= 0:  # it all arrived while the caller was authenticated: too fast to time
            measured, seconds = size, 1e-3
        kbps = measured * 8 / seconds / 1000
        return ProbeOut(bytes=size, seconds=round(seconds, 4), kbps=round(kbps, 1))

    @api.route(
        "POST",
        "/device-check/call",
        roles=PATIENT,
        body=OfferIn,
        response=AnswerOut,
        status=201,
        tag="device-check",
    )
    async def start_test_call(call: Call[OfferIn]) -> AnswerOut:
        """Start a test call: my SDP offer (sendonly audio/video, all candidates gathered)
        -> the server's receive-only answer; `check_busy` (503) when too many run."""
        device = services(call.request).settings.device
        call_id, sdp = await call.request.app[MEDIA_CHECKS].start(call.me.id, call.body.sdp)
        return AnswerOut(
            call_id=call_id,
            sdp=sdp,
            measure_seconds=device.call_measure.total_seconds(),
            timeout_seconds=device.call_timeout.total_seconds(),
        )

    @api.route(
        "GET", "/device-check/call/{call_id}", roles=PATIENT, response=CallOut, tag="device-check"
    )
    async def test_call_report(call: Call[Body]) -> CallOut:
        """What my test call delivered; waits for a running one to finish."""
        report = await call.request.app[MEDIA_CHECKS].result(
            call.me.id, call.request.match_info["call_id"]
        )
        return CallOut.model_validate(report.to_dict())

    @api.route("DELETE", "/device-check/call/{call_id}", roles=PATIENT, tag="device-check")
    async def stop_test_call(call: Call[Body]) -> None:
        """End my test call now (the page is going away)."""
        call.request.app[MEDIA_CHECKS].stop(call.me.id, call.request.match_info["call_id"])


def _server_rtc_config(settings: Settings) -> RTCConfiguration:
    """The server peer gathers with STUN only: TURN is for patients behind strict NATs."""
    stun = list(settings.signalling.stun_urls)
    return RTCConfiguration(iceServers=[RTCIceServer(urls=stun)] if stun else [])


def install(app: web.Application, settings: Settings) -> None:
    """Add the test-call registry, the probe budget and the `/check` page to the app; every
    test call is ended on shutdown."""
    config = _server_rtc_config(settings)
    app[MEDIA_CHECKS] = MediaChecks(settings.device, lambda owner: config)
    app[PROBE_BUDGET] = SlidingWindow(settings.device.probe_bytes_per_minute, 60.0)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[MEDIA_CHECKS].close()

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE, headers={"Cache-Control": "no-cache"})

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/check", page)
