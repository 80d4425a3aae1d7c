"""The test call of the connection check (R-DEV): a real aiortc client sends video and
sound to the server's receive-only peer, which reports what really arrived."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from appkit import Running
from devicekit import by_name, check_body, start_call, until
from helpers import add_adult, bearer, patient_token, staff_token
from live import Live

from signalling.media_check import MEDIA_CHECKS
from telemed.roles import Role

FAST = {"device": {"call_measure": "2s", "call_timeout": "10s"}}


async def _patient(
    start_app: Callable[..., Any], url: str, **config: Any
) -> tuple[Running, dict[str, str]]:
    app: Running = await start_app(url, **{**FAST, **config})
    await add_adult(app)
    return app, bearer(await patient_token(app))


async def _verdict(
    app: Running, headers: dict[str, str], call_id: str, lang: str = "en", **body: Any
) -> dict[str, Any]:
    resp = await app.client.post(
        f"/api/v1/device-check?lang={lang}",
        json=check_body(call_id=call_id, **body),
        headers=headers,
    )
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def test_a_720p_picture_and_a_tone_pass_the_whole_check(
    start_app: Callable[..., Any], sqlite_url: str
) -> None:
    """R-DEV: 1280x720 and a 440 Hz tone reach the server; every check passes."""
    app, headers = await _patient(start_app, sqlite_url)
    call = await start_call(app.client, headers, video=(1280, 720), audio="tone")
    try:
        assert call.status == 201, call.body
        verdict = await _verdict(app, headers, call.call_id)
    finally:
        await call.close()
    checks = by_name(verdict)
    assert verdict["ok"] is True, verdict
    assert list(checks) == ["os", "browser", "camera", "microphone", "bandwidth", "test_call"]
    report = verdict["call"]
    assert (report["width"], report["height"]) == (1280, 720)
    assert report["fps"] >= 5 and report["video_frames"] > 0
    assert report["audio_dbfs"] > -30  # the tone is at about -15 dBFS
    assert report["uplink_kbps"] > 50
    assert report["ice_path"] == "direct" and report["local_candidate"] == "host"
    assert report["rtt_ms"] is not None and report["rtt_ms"] < 100
    assert checks["camera"]["actual"] == "1280×720"


async def test_a_silent_microphone_fails_although_the_page_found_one(
    start_app: Callable[..., Any], sqlite_url: str
) -> None:
    """R-DEV: a microphone that sends only silence fails, with advice to unmute it."""
    app, headers = await _patient(start_app, sqlite_url)
    call = await start_call(app.client, headers, video=(1280, 720), audio="silent")
    try:
        verdict = await _verdict(app, headers, call.call_id)
    finally:
        await call.close()
    checks = by_name(verdict)
    assert verdict["ok"] is False and verdict["call"]["audio_frames"] > 0
    assert [n for n, c in checks.items() if not c["ok"]] == ["microphone"]
    assert checks["microphone"]["actual"] == "silence"
    assert "muted" in checks["microphone"]["advice"]


async def test_a_640x480_picture_fails_the_camera_although_the_page_claimed_720p(
    start_app: Callable[..., Any], sqlite_url: str
) -> None:
    """R-DEV: the size that reached the server counts: 640x480 is below 1024x720."""
    app, headers = await _patient(start_app, sqlite_url)
    call = await start_call(app.client, headers, video=(640, 480), audio="tone")
    try:
        verdict = await _verdict(app, headers, call.call_id, lang="ru")
    finally:
        await call.close()
    checks = by_name(verdict)
    assert [n for n, c in checks.items() if not c["ok"]] == ["camera"]
    assert checks["camera"]["actual"] == "640×480"
    assert (verdict["call"]["width"], verdict["call"]["height"]) == (640, 480)


async def test_an_audio_call_needs_no_camera(
    start_app: Callable[..., Any], sqlite_url: str
) -> None:
    """R-DEV: audio needs a microphone only; the call carries sound alone."""
    app, headers = await _patient(start_app, sqlite_url)
    call = await start_call(app.client, headers, video=None, audio="tone")
    try:
        verdict = await _verdict(app, headers, call.call_id, channel="audio", camera=None)
    finally:
        await call.close()
    assert verdict["ok"] is True, verdict
    assert "camera" not in by_name(verdict) and verdict["call"]["video_frames"] == 0


async def test_the_consultant_sees_the_last_check_and_a_flag_for_video_without_a_camera(
    start_app: Callable[..., Any], sqlite_url: str
) -> None:
    """R-DEV: the last check is kept with the patient and shown in the queue; a patient
    who chose video with a failed camera check is flagged."""
    app, headers = await _patient(start_app, sqlite_url)
    call = await start_call(app.client, headers, video=(640, 480), audio="tone")
    try:
        await _verdict(app, headers, call.call_id)
    finally:
        await call.close()
    resp = await app.client.post(
        "/api/v1/consultations", json={"channel": "video"}, headers=headers
    )
    assert resp.status == 201, await resp.text()
    consultant, _ = await staff_token(app, Role.CONSULTANT)
    watcher = await Live(str(app.client.make_url("/")), consultant, "consultant").connect()
    try:
        ack = await watcher.ok("queue:watch")
    finally:
        await watcher.close()
    [item] = ack["items"]
    check = item["device_check"]
    assert check["ok"] is False and check["failing"] == ["camera"] and check["camera_failed"]
    assert check["channel"] == "video"
    queues = await (await app.client.get("/api/v1/queues", headers=bearer(consultant))).json()
    [entry] = [i for q in queues["queues"] for i in q["items"]]
    assert entry["device_check"] == check
    mine = await (await app.client.get("/api/v1/device-check", headers=headers)).json()
    assert mine["call"]["width"] == 640 and mine["language"] == "en"
    assert [c["name"] for c in mine["checks"] if not c["ok"]] == ["camera"]


async def test_a_call_whose_page_never_answers_ends_at_its_timeout(
    start_app: Callable[..., Any], sqlite_url: str
) -> None:
    """R-DEV: a test call never outlives `device.call_timeout`; its peer and tasks end."""
    app, headers = await _patient(
        start_app, sqlite_url, device={"call_measure": "1s", "call_timeout": "2s"}
    )
    checks = app.client.server.app[MEDIA_CHECKS]
    call = await start_call(app.client, headers)
    await call.close()  # the page went away before the answer was applied
    resp = await app.client.get(f"/api/v1/device-check/call/{call.call_id}", headers=headers)
    report = await resp.json()
    assert resp.status == 200 and report["state"] == "failed" and report["reason"] == "timeout"
    assert checks.active == 0 and not checks.running_tasks()
    verdict = await _verdict(app, headers, call.call_id)
    assert by_name(verdict)["test_call"]["ok"] is False
    assert by_name(verdict)["test_call"]["actual"] == "no connection"


async def test_the_page_can_end_its_call_early(
    start_app: Callable[..., Any], sqlite_url: str
) -> None:
    """R-DEV: when the page goes away it ends its call (DELETE); nothing keeps running."""
    app, headers = await _patient(start_app, sqlite_url, device={"call_measure": "5s"})
    checks = app.client.server.app[MEDIA_CHECKS]
    call = await start_call(app.client, headers)
    try:
        await until(lambda: checks.state_of(call.call_id) == "measuring", 5)
        resp = await app.client.delete(f"/api/v1/device-check/call/{call.call_id}", headers=headers)
        assert resp.status == 204
        report = await (
            await app.client.get(f"/api/v1/device-check/call/{call.call_id}", headers=headers)
        ).json()
    finally:
        await call.close()
    assert report["reason"] == "stopped" and report["seconds"] < 5
    assert checks.active == 0 and not checks.running_tasks()
    resp = await app.client.delete("/api/v1/device-check/call/nope", headers=headers)
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "call_not_found"


async def test_offers_that_are_not_one_audio_and_one_video_are_refused(
    start_app: Callable[..., Any], sqlite_url: str
) -> None:
    """A test call carries a camera and a microphone only; nothing else is accepted."""
    app, headers = await _patient(start_app, sqlite_url)
    data_channel = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=application 9 x\r\n"
    for sdp in ["v=0 garbage without media", data_channel]:
        resp = await app.client.post(
            "/api/v1/device-check/call", json={"type": "offer", "sdp": sdp}, headers=headers
        )
        assert resp.status == 422 and (await resp.json())["error"]["code"] == "bad_offer"
    resp = await app.client.post(
        "/api/v1/device-check/call",
        json={"type": "offer", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nbroken\r\n"},
        headers=headers,
    )
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "bad_offer"
    assert app.client.server.app[MEDIA_CHECKS].active == 0
    resp = await app.client.post(
        "/api/v1/device-check", json=check_body(call_id="x"), headers=headers
    )
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "call_not_found"


async def test_a_new_check_of_the_same_patient_replaces_the_running_one(
    start_app: Callable[..., Any], sqlite_url: str
) -> None:
    """R-DEV: one test call per patient: a reloaded page ends its earlier call at once."""
    app, headers = await _patient(start_app, sqlite_url, device={"call_measure": "5s"})
    checks = app.client.server.app[MEDIA_CHECKS]
    first = await start_call(app.client, headers, video=(320, 240))
    second = None
    try:
        await until(lambda: checks.state_of(first.call_id) == "measuring", 5)
        second = await start_call(app.client, headers, video=(320, 240))
        assert second.status == 201 and checks.active == 1
        resp = await app.client.get(f"/api/v1/device-check/call/{first.call_id}", headers=headers)
        assert (await resp.json())["reason"] == "replaced"
    finally:
        await first.close()
        if second is not None:
            await second.close()
