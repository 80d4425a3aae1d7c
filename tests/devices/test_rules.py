"""The connection-check rules (R-DEV), table-driven: user agents, devices per channel,
what a test call measured, languages, and the queue flag. Pure code, no I/O."""

from __future__ import annotations

import re

import pytest

from signalling.media_call import ice_path
from telemed.config import DeviceSettings
from telemed.consultation import Channel
from telemed.devices import (
    TEXTS,
    CallMeasure,
    DeviceReport,
    Requirements,
    evaluate,
    parse_user_agent,
    pick_language,
    queue_summary,
    requirements_of,
)
from telemed.ratelimit import SlidingWindow

REQ = requirements_of(DeviceSettings())
CYRILLIC = re.compile("[а-яА-Я]")

WIN10_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)

# user agent, (os, version), (browser, version), os passes, browser passes
USER_AGENTS = [
    (WIN10_CHROME, ("windows", (10, 0)), ("chrome", 124), True, True),
    (
        "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/109.0.0.0 Safari/537.36",
        ("windows", (6, 1)),
        ("chrome", 109),
        True,
        True,
    ),
    (
        "Mozilla/5.0 (Windows NT 5.1; rv:52.0) Gecko/20100101 Firefox/52.0",
        ("windows", (5, 1)),
        ("firefox", 52),
        True,
        False,
    ),
    (
        "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.0)",
        ("windows", (5, 0)),
        ("ie", 6),
        False,
        False,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:126.0) Gecko/20100101 Firefox/126.0",
        ("windows", (10, 0)),
        ("firefox", 126),
        True,
        True,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36 OPR/106.0.0.0",
        ("windows", (10, 0)),
        ("opera", 106),
        True,
        True,
    ),
    (
        "Opera/9.80 (Windows NT 6.1; WOW64) Presto/2.12.388 Version/12.18",
        ("windows", (6, 1)),
        ("opera", 12),
        True,
        False,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
        ("windows", (10, 0)),
        ("edge", 120),
        True,
        False,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/122.0.0.0 YaBrowser/24.4.0.0 Safari/537.36",
        ("windows", (10, 0)),
        ("yandex", 24),
        True,
        False,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/124.0.0.0 Safari/537.36",
        ("macos", (10, 15)),
        ("chrome", 124),
        True,
        True,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:125.0) Gecko/20100101 Firefox/125.0",
        ("macos", (10, 15)),
        ("firefox", 125),
        True,
        True,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.4 Safari/605.1.15",
        ("macos", (10, 15)),
        ("safari", 17),
        True,
        False,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 9_3_5 like Mac OS X) AppleWebKit/601.1.46 (KHTML, "
        "like Gecko) Version/9.0 Mobile/13G36 Safari/601.1",
        ("ios", (9, 3)),
        ("safari", 9),
        True,
        True,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 8_4 like Mac OS X) AppleWebKit/600.1.4 (KHTML, "
        "like Gecko) Version/8.0 Mobile/12H143 Safari/600.1.4",
        ("ios", (8, 4)),
        ("safari", 8),
        False,
        True,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
        ("ios", (17, 4)),
        ("chrome", 124),
        True,
        True,
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 12_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/12.1 Mobile/15E148 Safari/604.1",
        ("ios", (12, 2)),
        ("safari", 12),
        True,
        True,
    ),
    (
        "Mozilla/5.0 (Linux; Android 5.1.1; Nexus 5 Build/LMY48B) AppleWebKit/537.36 (KHTML, "
        "like Gecko) Chrome/95.0.4638.74 Mobile Safari/537.36",
        ("android", (5, 1)),
        ("chrome", 95),
        True,
        True,
    ),
    (
        "Mozilla/5.0 (Linux; Android 5.0; SM-G900F Build/LRX21T) AppleWebKit/537.36 (KHTML, "
        "like Gecko) Chrome/80.0.3987.99 Mobile Safari/537.36",
        ("android", (5, 0)),
        ("chrome", 80),
        False,
        True,
    ),
    (
        "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
        ("android", (14,)),
        ("firefox", 125),
        True,
        True,
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SM-S901B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
        ("android", (13,)),
        ("samsung", 24),
        True,
        True,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        ("linux", ()),
        ("chrome", 124),
        False,
        True,
    ),
    (
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        ("linux", ()),
        ("chrome", 124),
        False,
        True,
    ),
    (
        "Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) "
        "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/52.0.2743.116 Mobile Safari/537.36 "
        "Edge/15.15063",
        ("other", ()),
        ("edge", 15),
        False,
        False,
    ),
    ("curl/8.5.0", ("other", ()), ("other", 0), False, False),
    ("", ("other", ()), ("other", 0), False, False),
]


def _report(
    channel: Channel = Channel.VIDEO,
    user_agent: str = WIN10_CHROME,
    camera: tuple[int, int] | None = (1280, 720),
    microphone: bool = True,
    bandwidth: float | None = 2000,
    call: CallMeasure | None = None,
) -> DeviceReport:
    return DeviceReport(channel, user_agent, camera, microphone, bandwidth, call)


def _failing(report: DeviceReport, req: Requirements = REQ, lang: str = "en") -> set[str]:
    return set(evaluate(report, req, lang).failing)


@pytest.mark.parametrize(("agent", "os", "browser", "os_ok", "browser_ok"), USER_AGENTS)
def test_each_user_agent_is_read_and_judged_by_the_r_dev_table(
    agent: str,
    os: tuple[str, tuple[int, ...]],
    browser: tuple[str, int],
    os_ok: bool,
    browser_ok: bool,
) -> None:
    """R-DEV: Windows XP+, Mac OS X, iOS 9+, Android 5.1+; Chrome, Firefox or Opera of the
    configured version on a computer, any browser on those phones."""
    platform = parse_user_agent(agent)
    assert (platform.os, platform.os_version[:2]) == os
    assert (platform.browser, platform.browser_version) == browser
    checks = {c.name: c for c in evaluate(_report(Channel.CHAT, agent), REQ, "en").checks}
    assert checks["os"].ok is os_ok
    assert checks["browser"].ok is browser_ok
    for check in checks.values():
        assert (check.advice is None) is check.ok


# channel, camera, microphone, bandwidth, the checks made, the ones that fail
VIDEO = "os browser camera microphone bandwidth"
AUDIO = "os browser microphone bandwidth"
CHAT = "os browser bandwidth"
DEVICES = [
    (Channel.VIDEO, (1280, 720), True, 2000, VIDEO, ""),
    (Channel.VIDEO, (1024, 720), True, 1000, VIDEO, ""),
    (Channel.VIDEO, (720, 1280), True, 2000, VIDEO, ""),
    (Channel.VIDEO, (1920, 1080), True, 2000, VIDEO, ""),
    (Channel.VIDEO, (640, 480), True, 2000, VIDEO, "camera"),
    (Channel.VIDEO, (1024, 576), True, 2000, VIDEO, "camera"),
    (Channel.VIDEO, None, True, 2000, VIDEO, "camera"),
    (Channel.VIDEO, (1280, 720), False, 2000, VIDEO, "microphone"),
    (Channel.VIDEO, (1280, 720), True, 999, VIDEO, "bandwidth"),
    (Channel.VIDEO, (1280, 720), True, None, VIDEO, "bandwidth"),
    (Channel.VIDEO, None, False, 100, VIDEO, "camera microphone bandwidth"),
    (Channel.AUDIO, None, True, 2000, AUDIO, ""),
    (Channel.AUDIO, (640, 480), True, 2000, AUDIO, ""),
    (Channel.AUDIO, None, False, 2000, AUDIO, "microphone"),
    (Channel.CHAT, None, False, 2000, CHAT, ""),
    (Channel.CHAT, None, False, 500, CHAT, "bandwidth"),
]  # fmt: skip


@pytest.mark.parametrize(("channel", "camera", "mic", "kbps", "made", "fails"), DEVICES)
def test_each_channel_needs_only_its_own_equipment(
    channel: Channel,
    camera: tuple[int, int] | None,
    mic: bool,
    kbps: float | None,
    made: str,
    fails: str,
) -> None:
    """R-DEV: video needs a camera of at least 1024x720 (either way up) and a microphone,
    audio a microphone, chat neither; every channel needs 1 Mbit/s."""
    verdict = evaluate(_report(channel, WIN10_CHROME, camera, mic, kbps), REQ, "en")
    assert [c.name for c in verdict.checks] == made.split()
    assert set(verdict.failing) == set(fails.split())
    assert verdict.ok is (not fails)


GOOD_CALL = CallMeasure(
    connected=True,
    video_frames=90,
    width=1280,
    height=720,
    fps=30.0,
    audio_frames=150,
    audio_dbfs=-15.0,
    uplink_kbps=900.0,
    rtt_ms=4.2,
    ice_path="direct",
)

# what the test call measured (changes to GOOD_CALL), the claimed camera, what fails
CALLS = [
    ({}, (1280, 720), ""),
    ({"width": 640, "height": 480}, (1280, 720), "camera"),
    ({}, (640, 480), ""),  # the picture that arrived wins over the page's claim
    ({"audio_dbfs": -90.0}, (1280, 720), "microphone"),
    ({"audio_dbfs": None, "audio_frames": 0}, (1280, 720), "microphone test_call"),
    ({"video_frames": 0, "width": 0, "height": 0, "fps": 0.0}, (1280, 720), "camera test_call"),
    ({"fps": 2.0}, (1280, 720), "test_call"),
    ({"connected": False, "video_frames": 0, "audio_frames": 0}, (1280, 720), "test_call"),
    ({"connected": False, "video_frames": 0, "audio_frames": 0}, (640, 480), "camera test_call"),
    ({"ice_path": "relay", "rtt_ms": None, "uplink_kbps": None}, (1280, 720), ""),
]


@pytest.mark.parametrize(("changes", "claimed", "fails"), CALLS)
def test_what_the_test_call_delivered_decides_camera_and_microphone(
    changes: dict[str, object], claimed: tuple[int, int], fails: str
) -> None:
    """R-DEV: the size of the picture that reached the server and the loudness of the sound
    are what count; a silent microphone fails, a call that never connected fails."""
    call = CallMeasure(**{**GOOD_CALL.__dict__, **changes})  # type: ignore[arg-type]
    verdict = evaluate(_report(camera=claimed, call=call), REQ, "en")
    assert verdict.checks[-1].name == "test_call"
    assert set(verdict.failing) == set(fails.split())


def test_the_test_call_reports_its_figures_in_the_patients_words() -> None:
    """R-DEV: the patient sees what arrived: size, frame rate, sound, speed, delay, path."""
    checks = {c.name: c for c in evaluate(_report(call=GOOD_CALL), REQ, "en").checks}
    assert checks["test_call"].actual == (
        "video 1280×720 at 30 fps; sound; uplink 900 kbit/s; round trip 5 ms; direct"
    )
    assert checks["microphone"].actual == "sound level -15 dB"
    relayed = CallMeasure(**{**GOOD_CALL.__dict__, "ice_path": "relay"})
    ru = {c.name: c for c in evaluate(_report(call=relayed), REQ, "ru").checks}
    assert ru["test_call"].actual.endswith("через TURN-сервер")


def test_an_audio_call_is_judged_without_a_camera() -> None:
    """R-DEV: an audio consultation needs no camera, even in the test call."""
    call = CallMeasure(connected=True, audio_frames=100, audio_dbfs=-20.0)
    verdict = evaluate(_report(Channel.AUDIO, camera=None, call=call), REQ, "en")
    assert verdict.ok and [c.name for c in verdict.checks][-2:] == ["bandwidth", "test_call"]
    assert verdict.checks[-1].required == "sound reaches the server"


def test_the_numbers_come_from_the_device_config() -> None:
    """R-DEV: every number is a default of config.yaml."""
    strict = requirements_of(
        DeviceSettings(
            min_video=(1920, 1080),
            min_bandwidth_kbps=5000,
            min_browser={"chrome": 130, "firefox": 115, "opera": 95},  # type: ignore[arg-type]
            min_android=(8, 0),
        )
    )
    assert _failing(_report(), strict) == {"camera", "bandwidth", "browser"}
    android6 = (
        "Mozilla/5.0 (Linux; Android 6.0; X) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Mobile Safari/537.36"
    )
    assert _failing(_report(Channel.CHAT, android6), strict) == {"os", "bandwidth"}
    advice = evaluate(_report(Channel.CHAT, android6), strict, "en").checks[0].advice
    assert advice == "Update Android to 8 or later, or use another device."


@pytest.mark.parametrize(
    ("query", "header", "language"),
    [
        (None, None, "ru"),
        ("en", "ru", "en"),
        ("EN", None, "en"),
        ("de", "en", "en"),
        (None, "en-US,en;q=0.9", "en"),
        (None, "de-DE, en;q=0.5, ru;q=0.8", "ru"),
        (None, "fr", "ru"),
        (None, "en;q=0", "ru"),
        (None, "en;q=bad, ru", "ru"),
    ],
)
def test_the_language_is_russian_unless_english_is_asked_for(
    query: str | None, header: str | None, language: str
) -> None:
    """R-DEV: advice in the patient's language: `?lang=` first, then Accept-Language."""
    assert pick_language(query, header) == language


def test_every_text_exists_in_russian_and_english_and_advice_follows_the_language() -> None:
    """R-DEV: the check tells the patient what to do, in their language."""
    assert all(set(variants) == {"ru", "en"} for variants in TEXTS.values())
    bad = _report(camera=(640, 480), microphone=False, bandwidth=10, user_agent="")
    for check in evaluate(bad, REQ, "ru").checks:
        assert check.advice and CYRILLIC.search(check.advice), check
    for check in evaluate(bad, REQ, "en").checks:
        assert check.advice and not CYRILLIC.search(check.advice), check


def test_the_queue_flags_a_video_patient_whose_camera_failed() -> None:
    """R-DEV: the consultant sees the last check; a video patient with a failed camera
    check is flagged."""
    from datetime import UTC, datetime

    at = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
    flagged = queue_summary(False, at, "video", ["camera"], "video")
    assert flagged == {
        "ok": False,
        "checked_at": "2026-01-15T09:00:00+00:00",
        "channel": "video",
        "failing": ["camera"],
        "camera_failed": True,
    }
    assert queue_summary(False, at, "video", ["camera"], "audio")["camera_failed"] is False
    assert queue_summary(False, at, "video", ["bandwidth"], "video")["camera_failed"] is False


@pytest.mark.parametrize(
    ("local", "remote", "path"),
    [
        ("host", "host", "direct"),
        ("srflx", "prflx", "direct"),
        ("relay", "host", "relay"),
        ("host", "relay", "relay"),
        (None, "host", None),
    ],
)
def test_the_ice_path_is_direct_unless_an_end_is_a_turn_relay(
    local: str | None, remote: str | None, path: str | None
) -> None:
    """R-DEV: the test call says whether media went directly or through TURN."""
    assert ice_path(local, remote) == path


def test_a_sliding_window_refuses_beyond_its_limit_until_the_period_passes() -> None:
    """The probe and call budgets: at most `limit` per key within the period."""
    window = SlidingWindow(limit=10, period=60.0)
    assert window.take("p", 6, now=0.0) is None
    assert window.take("p", 4, now=10.0) is None
    assert window.take("p", 1, now=20.0) == 40.0
    assert window.take("other", 10, now=20.0) is None
    assert window.take("p", 6, now=60.0) is None  # the first 6 have left the window
    assert window.take("p", 11, now=500.0) == 60.0  # more than the whole limit: never


@pytest.mark.parametrize(
    ("changes", "channel", "passes"),
    [
        ({"offered_relay": 2}, Channel.VIDEO, True),
        ({"offered_relay": 0, "ice_path": "relay"}, Channel.AUDIO, True),
        ({"offered_relay": 0}, Channel.VIDEO, False),
        ({"offered_relay": 0, "connected": False, "video_frames": 0}, Channel.VIDEO, False),
    ],
)
def test_the_turn_line_passes_only_when_the_relay_answered_the_page(
    changes: dict[str, object], channel: Channel, passes: bool
) -> None:
    """R-DEV: with TURN handed out, the check has a TURN line after the test call: a
    relayed candidate in the page's offer (or a call through the relay) passes; none
    fails, with advice naming what to open or change."""
    call = CallMeasure(**{**GOOD_CALL.__dict__, **changes})  # type: ignore[arg-type]
    camera = (1280, 720) if channel is Channel.VIDEO else None
    report = _report(channel, camera=camera, call=call)
    verdict = evaluate(DeviceReport(**{**report.__dict__, "turn": True}), REQ, "en")
    turn = verdict.checks[-1]
    assert turn.name == "turn" and turn.ok is passes
    assert (turn.advice is None) is passes
    if not passes:
        assert "3478" in (turn.advice or "") and turn.actual == "not reachable"


def test_without_turn_handed_out_there_is_no_turn_line() -> None:
    """R-DEV: no TURN configured, nothing to reach: the check ends with the test call."""
    verdict = evaluate(_report(call=GOOD_CALL), REQ, "en")
    assert [c.name for c in verdict.checks][-1] == "test_call"
