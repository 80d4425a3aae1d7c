"""The connection check (R-DEV) as pure rules: what a patient's equipment must have for the
chosen channel, and what to do when it falls short. No I/O here.

Inputs are what the page found (user agent, camera size, microphone, measured bandwidth)
and, when a test call was made, what really reached the server. One function per
requirement, one table saying which channel needs which, and one table of texts
(Russian by default, English too).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from telemed.config import DeviceSettings
from telemed.consultation import Channel

LANGUAGES = ("ru", "en")
DEFAULT_LANGUAGE = "ru"


# --- user agents: two ordered tables, the first match wins ----------------------------


@dataclass(frozen=True)
class Platform:
    """Operating system and browser read from a user agent."""

    os: str  # windows | macos | ios | android | linux | other
    os_version: tuple[int, ...]
    browser: str  # chrome | firefox | opera | edge | yandex | samsung | safari | ie | other
    browser_version: int

    @property
    def mobile(self) -> bool:
        """A phone or tablet: R-DEV names only the system there, not the browser."""
        return self.os in ("ios", "android")


_OS_TABLE: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("other", re.compile(r"Windows Phone|Windows Mobile|IEMobile")),
    ("ios", re.compile(r"\b(?:iPhone|iPad|iPod)\b.*?\bOS (\d+)(?:_(\d+))?")),
    ("android", re.compile(r"\bAndroid (\d+)(?:\.(\d+))?")),
    ("windows", re.compile(r"\bWindows NT (\d+)\.(\d+)")),
    ("windows", re.compile(r"\bWindows (XP)\b")),
    ("macos", re.compile(r"\bMac OS X(?: (\d+)[_.](\d+))?")),
    ("linux", re.compile(r"\bLinux\b|\bX11\b|\bCrOS\b")),
)

_BROWSER_TABLE: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("edge", re.compile(r"\bEdg(?:e|A|iOS)?/(\d+)")),
    ("yandex", re.compile(r"\bYaBrowser/(\d+)")),
    ("samsung", re.compile(r"\bSamsungBrowser/(\d+)")),
    ("opera", re.compile(r"\bOPR/(\d+)|\bOPiOS/(\d+)|\bOpera\b.*\bVersion/(\d+)|\bOpera[/ ](\d+)")),
    ("firefox", re.compile(r"\bFirefox/(\d+)|\bFxiOS/(\d+)")),
    ("chrome", re.compile(r"\bChrom(?:e|ium)/(\d+)|\bCriOS/(\d+)")),
    ("safari", re.compile(r"\bVersion/(\d+)[\d.]* (?:Mobile/\S+ )?Safari/")),
    ("ie", re.compile(r"\bMSIE (\d+)|\bTrident/.*\brv:(\d+)")),
)


def _numbers(match: re.Match[str]) -> tuple[int, ...]:
    return tuple(int(g) for g in match.groups() if g is not None and g.isdigit())


def parse_user_agent(user_agent: str) -> Platform:
    """The operating system and browser of a user agent string (unknown parts: `other`)."""
    os_name = "other"
    os_version: tuple[int, ...] = ()
    for name, pattern in _OS_TABLE:
        match = pattern.search(user_agent)
        if match:
            os_name = name
            os_version = (5, 1) if "XP" in match.groups() else _numbers(match)
            break
    browser, version = "other", 0
    for name, pattern in _BROWSER_TABLE:
        match = pattern.search(user_agent)
        if match:
            browser = name
            numbers = _numbers(match)
            version = numbers[0] if numbers else 0
            break
    return Platform(os_name, os_version, browser, version)


_WINDOWS_NAMES: dict[tuple[int, ...], str] = {
    (5, 1): "XP",
    (5, 2): "XP",
    (6, 0): "Vista",
    (6, 1): "7",
    (6, 2): "8",
    (6, 3): "8.1",
    (10, 0): "10/11",
}
_OS_LABELS = {
    "windows": "Windows",
    "macos": "Mac OS X",
    "ios": "iOS",
    "android": "Android",
    "linux": "Linux",
}
_BROWSER_LABELS = {
    "chrome": "Chrome",
    "firefox": "Firefox",
    "opera": "Opera",
    "edge": "Edge",
    "yandex": "Yandex Browser",
    "samsung": "Samsung Internet",
    "safari": "Safari",
    "ie": "Internet Explorer",
}


def os_label(p: Platform) -> str | None:
    """`Windows 7`, `iOS 9.3`, `Android 5.1`, `Mac OS X 10.15`; None when unknown."""
    base = _OS_LABELS.get(p.os)
    if base is None:
        return None
    if p.os == "windows":
        name = _WINDOWS_NAMES.get(p.os_version[:2])
        return f"{base} {name}" if name else f"{base} NT {'.'.join(map(str, p.os_version))}"
    if p.os_version:
        return f"{base} {'.'.join(map(str, p.os_version))}"
    return base


def browser_label(p: Platform) -> str | None:
    """`Chrome 124`, `Firefox 115`; None when unknown."""
    base = _BROWSER_LABELS.get(p.browser)
    if base is None:
        return None
    return f"{base} {p.browser_version}" if p.browser_version else base


# --- inputs and outputs --------------------------------------------------------------


@dataclass(frozen=True)
class Requirements:
    """The numbers of R-DEV, from `device:` in config.yaml."""

    min_video: tuple[int, int] = (1024, 720)
    min_bandwidth_kbps: int = 1000
    min_browser: Mapping[str, int] = field(
        default_factory=lambda: {"chrome": 109, "firefox": 115, "opera": 95}
    )
    min_windows: tuple[int, int] = (5, 1)  # Windows XP
    min_ios: tuple[int, int] = (9, 0)
    min_android: tuple[int, int] = (5, 1)
    min_video_fps: float = 5.0
    min_audio_dbfs: float = -50.0


@dataclass(frozen=True)
class CallMeasure:
    """What a test call really delivered to the server peer."""

    connected: bool
    video_frames: int = 0
    width: int = 0
    height: int = 0
    fps: float = 0.0
    audio_frames: int = 0
    audio_dbfs: float | None = None  # loudest 20 ms of the call, dB below full scale
    uplink_kbps: float | None = None
    rtt_ms: float | None = None
    ice_path: str | None = None  # direct | relay
    offered_relay: int = 0  # relayed candidates the page gathered on the TURN server


@dataclass(frozen=True)
class DeviceReport:
    """What the page found on the patient's side, plus the test call if one was made."""

    channel: Channel
    user_agent: str
    camera: tuple[int, int] | None
    microphone: bool
    bandwidth_kbps: float | None
    call: CallMeasure | None = None
    turn: bool = False  # TURN servers were handed out, so the test call shows if one answers


@dataclass(frozen=True)
class Check:
    """One requirement: passed or not, what is needed, what was found, what to do."""

    name: str
    ok: bool
    required: str
    actual: str
    advice: str | None


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checks: tuple[Check, ...]
    platform: Platform

    @property
    def failing(self) -> list[str]:
        """The names of the checks that failed, in order (kept with the patient)."""
        return [c.name for c in self.checks if not c.ok]


# --- texts -----------------------------------------------------------------------------

TEXTS: dict[str, dict[str, str]] = {
    "os.required": {
        "ru": "Windows XP или новее, Mac OS X, iOS {ios}+ или Android {android}+",
        "en": "Windows XP or later, Mac OS X, iOS {ios}+ or Android {android}+",
    },
    "os.unknown": {"ru": "не удалось определить", "en": "could not be determined"},
    "os.advice": {
        "ru": "Войдите с компьютера на Windows или Mac OS X, с iPhone (iOS {ios}+) или "
        "с телефона на Android {android}+.",
        "en": "Use a Windows or Mac OS X computer, an iPhone (iOS {ios}+) or an Android "
        "{android}+ phone.",
    },
    "os.advice_update": {
        "ru": "Обновите {os} до версии {version} или новее, или войдите с другого устройства.",
        "en": "Update {os} to {version} or later, or use another device.",
    },
    "browser.required": {
        "ru": "Chrome {chrome}+ (рекомендуется), Firefox {firefox}+ или Opera {opera}+",
        "en": "Chrome {chrome}+ (recommended), Firefox {firefox}+ or Opera {opera}+",
    },
    "browser.required_mobile": {
        "ru": "браузер телефона",
        "en": "the phone's browser",
    },
    "browser.advice": {
        "ru": "Установите Google Chrome (рекомендуется), Firefox или Opera последней версии "
        "и откройте проверку в нём.",
        "en": "Install the latest Google Chrome (recommended), Firefox or Opera and open the "
        "check in it.",
    },
    "browser.advice_update": {
        "ru": "Обновите {browser} до последней версии (нужна {version} или новее). Если ваш "
        "компьютер её не поддерживает, войдите с телефона.",
        "en": "Update {browser} to the latest version ({version} or later is needed). If "
        "your computer cannot run it, use your phone.",
    },
    "camera.required": {"ru": "камера не хуже {w}×{h}", "en": "a camera of at least {w}×{h}"},
    "camera.none": {"ru": "камера не найдена", "en": "no camera found"},
    "camera.no_picture": {
        "ru": "изображение не дошло до сервера",
        "en": "no picture reached the server",
    },
    "camera.advice_none": {
        "ru": "Подключите камеру и разрешите браузеру доступ к ней (значок камеры в адресной "
        "строке), затем повторите проверку. Или выберите аудио-консультацию.",
        "en": "Connect a camera and allow the browser to use it (the camera icon in the "
        "address bar), then check again. Or choose an audio consultation.",
    },
    "camera.advice_small": {
        "ru": "Камера даёт {actual}, нужно не меньше {w}×{h}. Подключите другую камеру "
        "или войдите с телефона. Можно выбрать аудио-консультацию.",
        "en": "The camera gives {actual}; at least {w}×{h} is needed. Connect another "
        "camera or use your phone. You can also choose an audio consultation.",
    },
    "camera.advice_no_picture": {
        "ru": "Камера не передаёт изображение: закройте другие программы, которые её "
        "используют, и повторите проверку.",
        "en": "The camera sends no picture: close other programs that use it and check again.",
    },
    "microphone.required": {"ru": "работающий микрофон", "en": "a working microphone"},
    "microphone.none": {"ru": "микрофон не найден", "en": "no microphone found"},
    "microphone.found": {"ru": "микрофон найден", "en": "microphone found"},
    "microphone.level": {"ru": "уровень звука {dbfs} дБ", "en": "sound level {dbfs} dB"},
    "microphone.silent": {"ru": "тишина", "en": "silence"},
    "microphone.no_sound": {
        "ru": "звук не дошёл до сервера",
        "en": "no sound reached the server",
    },
    "microphone.advice_none": {
        "ru": "Подключите микрофон (или гарнитуру) и разрешите браузеру доступ к нему, затем "
        "повторите проверку.",
        "en": "Connect a microphone (or a headset) and allow the browser to use it, then "
        "check again.",
    },
    "microphone.advice_silent": {
        "ru": "Микрофон молчит: проверьте, что он не выключен кнопкой или в настройках "
        "системы, и скажите что-нибудь во время проверки.",
        "en": "The microphone is silent: make sure it is not muted by a switch or in the "
        "system settings, and say something during the check.",
    },
    "bandwidth.required": {
        "ru": "интернет не медленнее {kbps} кбит/с",
        "en": "internet of at least {kbps} kbit/s",
    },
    "bandwidth.actual": {"ru": "{kbps} кбит/с", "en": "{kbps} kbit/s"},
    "bandwidth.unknown": {"ru": "не измерена", "en": "not measured"},
    "bandwidth.advice": {
        "ru": "Скорость ниже нужной: подойдите ближе к роутеру Wi-Fi, остановите загрузки и "
        "видео на других устройствах или подключитесь к другой сети. При слабой связи "
        "выберите чат или аудио.",
        "en": "The connection is too slow: move closer to the Wi-Fi router, stop downloads "
        "and videos on other devices, or use another network. On a weak connection "
        "choose chat or audio.",
    },
    "bandwidth.advice_unknown": {
        "ru": "Скорость не измерена: повторите проверку.",
        "en": "The speed was not measured: run the check again.",
    },
    "test_call.required": {
        "ru": "видео и звук доходят до сервера",
        "en": "video and sound reach the server",
    },
    "test_call.required_audio": {
        "ru": "звук доходит до сервера",
        "en": "sound reaches the server",
    },
    "test_call.no_connection": {"ru": "соединение не установлено", "en": "no connection"},
    "test_call.video": {
        "ru": "видео {w}×{h}, {fps} кадр/с",
        "en": "video {w}×{h} at {fps} fps",
    },
    "test_call.no_video": {"ru": "нет видео", "en": "no video"},
    "test_call.audio": {"ru": "звук есть", "en": "sound"},
    "test_call.no_audio": {"ru": "нет звука", "en": "no sound"},
    "test_call.uplink": {"ru": "отправка {kbps} кбит/с", "en": "uplink {kbps} kbit/s"},
    "test_call.rtt": {"ru": "задержка {ms} мс", "en": "round trip {ms} ms"},
    "test_call.direct": {"ru": "напрямую", "en": "direct"},
    "test_call.relay": {"ru": "через TURN-сервер", "en": "through TURN"},
    "test_call.advice_no_connection": {
        "ru": "Сеть не пропускает видеозвонки: отключите VPN или прокси, попробуйте другую "
        "сеть (например, мобильный интернет) или обратитесь к администратору сети.",
        "en": "The network blocks video calls: turn off VPN or proxy, try another network "
        "(for example mobile internet), or ask the network administrator.",
    },
    "turn.required": {
        "ru": "TURN-сервер клиники доступен (для сетей, где прямое соединение закрыто)",
        "en": "the clinic's TURN relay is reachable (for networks that block direct calls)",
    },
    "turn.reached": {"ru": "доступен", "en": "reachable"},
    "turn.unreachable": {"ru": "недоступен", "en": "not reachable"},
    "turn.advice": {
        "ru": "Ретрансляционный сервер (TURN) недоступен из вашей сети: если прямое "
        "соединение закрыто, звонок не состоится. Отключите VPN или прокси, попросите "
        "администратора сети открыть UDP и TCP порт 3478 и TCP 5349, или подключитесь к "
        "другой сети (например, мобильному интернету) и повторите проверку.",
        "en": "The relay server (TURN) cannot be reached from your network: where the "
        "direct path is blocked, the call will not connect. Turn off VPN or proxy, ask the "
        "network administrator to allow UDP and TCP port 3478 and TCP 5349, or use another "
        "network (for example mobile internet) and check again.",
    },
    "test_call.advice_media": {
        "ru": "Видео или звук доходят с перебоями: закройте лишние программы и вкладки и "
        "повторите проверку.",
        "en": "Video or sound arrive poorly: close other programs and tabs and check again.",
    },
}


def text(key: str, lang: str, **values: Any) -> str:
    """One text of the check in `lang` (Russian when the language is not known)."""
    variants = TEXTS[key]
    return variants.get(lang, variants[DEFAULT_LANGUAGE]).format(**values)


def pick_language(query: str | None, accept_language: str | None) -> str:
    """`?lang=` wins, then the first supported language of Accept-Language, else Russian."""
    if query and query.lower() in LANGUAGES:
        return query.lower()
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        pieces = part.strip().split(";")
        tag = pieces[0].strip().lower().split("-")[0]
        weight = 1.0
        for param in pieces[1:]:
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if tag in LANGUAGES and weight > 0:
            ranked.append((-weight, index, tag))
    return min(ranked)[2] if ranked else DEFAULT_LANGUAGE


# --- the rules -------------------------------------------------------------------------


def _version(numbers: tuple[int, ...]) -> str:
    """`(9, 0)` -> `9`, `(5, 1)` -> `5.1`."""
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers = numbers[:-1]
    return ".".join(map(str, numbers))


def check_os(r: DeviceReport, req: Requirements, p: Platform, lang: str) -> Check:
    """Windows XP or later, Mac OS X, iOS 9+ or Android 5.1+ (R-DEV)."""
    ios, android = _version(req.min_ios), _version(req.min_android)
    required = text("os.required", lang, ios=ios, android=android)
    actual = os_label(p) or text("os.unknown", lang)
    minimum = {"windows": req.min_windows, "ios": req.min_ios, "android": req.min_android}
    needed = minimum.get(p.os)
    if p.os == "macos" or (needed is not None and p.os_version[:2] >= needed):
        return Check("os", True, required, actual, None)
    if needed is not None and p.os != "windows":
        advice = text("os.advice_update", lang, os=_OS_LABELS[p.os], version=_version(needed))
    else:
        advice = text("os.advice", lang, ios=ios, android=android)
    return Check("os", False, required, actual, advice)


def check_browser(r: DeviceReport, req: Requirements, p: Platform, lang: str) -> Check:
    """Chrome, Firefox or Opera of at least the configured version on a computer; on a
    phone the rules name the system only, so its browser is taken as it is (R-DEV)."""
    actual = browser_label(p) or text("os.unknown", lang)
    if p.mobile:
        return Check("browser", True, text("browser.required_mobile", lang), actual, None)
    required = text("browser.required", lang, **{k: v for k, v in req.min_browser.items()})
    minimum = req.min_browser.get(p.browser)
    if minimum is None:
        return Check("browser", False, required, actual, text("browser.advice", lang))
    if p.browser_version >= minimum:
        return Check("browser", True, required, actual, None)
    advice = text(
        "browser.advice_update", lang, browser=_BROWSER_LABELS[p.browser], version=minimum
    )
    return Check("browser", False, required, actual, advice)


def _size_ok(size: tuple[int, int], minimum: tuple[int, int]) -> bool:
    """At least the minimum in either orientation: a phone held upright gives 720×1280."""
    return max(size) >= max(minimum) and min(size) >= min(minimum)


def check_camera(r: DeviceReport, req: Requirements, p: Platform, lang: str) -> Check:
    """A camera of at least `device.min_video` when video is chosen (R-DEV); a test call's
    received picture size wins over what the page reported."""
    w, h = req.min_video
    required = text("camera.required", lang, w=w, h=h)
    call = r.call
    if call is not None and call.connected:
        if call.video_frames == 0:
            return Check(
                "camera",
                False,
                required,
                text("camera.no_picture", lang),
                text("camera.advice_no_picture" if r.camera else "camera.advice_none", lang),
            )
        size: tuple[int, int] | None = (call.width, call.height)
    else:
        size = r.camera
    if size is None:
        return Check(
            "camera", False, required, text("camera.none", lang), text("camera.advice_none", lang)
        )
    actual = f"{size[0]}×{size[1]}"
    if _size_ok(size, req.min_video):
        return Check("camera", True, required, actual, None)
    return Check(
        "camera",
        False,
        required,
        actual,
        text("camera.advice_small", lang, actual=actual, w=w, h=h),
    )


def check_microphone(r: DeviceReport, req: Requirements, p: Platform, lang: str) -> Check:
    """A microphone for video and audio (R-DEV); in a test call it must also not be silent."""
    required = text("microphone.required", lang)
    if not r.microphone:
        return Check(
            "microphone",
            False,
            required,
            text("microphone.none", lang),
            text("microphone.advice_none", lang),
        )
    call = r.call
    if call is None or not call.connected:
        return Check("microphone", True, required, text("microphone.found", lang), None)
    if call.audio_frames == 0:
        return Check(
            "microphone",
            False,
            required,
            text("microphone.no_sound", lang),
            text("microphone.advice_silent", lang),
        )
    level = call.audio_dbfs
    if level is None or level < req.min_audio_dbfs:
        return Check(
            "microphone",
            False,
            required,
            text("microphone.silent", lang),
            text("microphone.advice_silent", lang),
        )
    actual = text("microphone.level", lang, dbfs=round(level))
    return Check("microphone", True, required, actual, None)


def check_bandwidth(r: DeviceReport, req: Requirements, p: Platform, lang: str) -> Check:
    """An internet channel of at least `device.min_bandwidth_kbps` (R-DEV)."""
    required = text("bandwidth.required", lang, kbps=req.min_bandwidth_kbps)
    if r.bandwidth_kbps is None:
        return Check(
            "bandwidth",
            False,
            required,
            text("bandwidth.unknown", lang),
            text("bandwidth.advice_unknown", lang),
        )
    actual = text("bandwidth.actual", lang, kbps=round(r.bandwidth_kbps))
    if r.bandwidth_kbps >= req.min_bandwidth_kbps:
        return Check("bandwidth", True, required, actual, None)
    return Check("bandwidth", False, required, actual, text("bandwidth.advice", lang))


def check_test_call(r: DeviceReport, req: Requirements, p: Platform, lang: str) -> Check:
    """The test call connected and carried the channel's media at a usable frame rate."""
    call = r.call
    assert call is not None
    video = r.channel is Channel.VIDEO
    required = text("test_call.required" if video else "test_call.required_audio", lang)
    if not call.connected:
        return Check(
            "test_call",
            False,
            required,
            text("test_call.no_connection", lang),
            text("test_call.advice_no_connection", lang),
        )
    parts: list[str] = []
    ok = call.audio_frames > 0
    if video:
        if call.video_frames:
            fps = f"{call.fps:.0f}"
            parts.append(text("test_call.video", lang, w=call.width, h=call.height, fps=fps))
        else:
            parts.append(text("test_call.no_video", lang))
        ok = ok and call.video_frames > 0 and call.fps >= req.min_video_fps
    parts.append(text("test_call.audio" if call.audio_frames else "test_call.no_audio", lang))
    if call.uplink_kbps is not None:
        parts.append(text("test_call.uplink", lang, kbps=round(call.uplink_kbps)))
    if call.rtt_ms is not None:
        parts.append(text("test_call.rtt", lang, ms=max(1, math.ceil(call.rtt_ms))))
    if call.ice_path in ("direct", "relay"):
        parts.append(text(f"test_call.{call.ice_path}", lang))
    advice = None if ok else text("test_call.advice_media", lang)
    return Check("test_call", ok, required, "; ".join(parts), advice)


def check_turn(r: DeviceReport, req: Requirements, p: Platform, lang: str) -> Check:
    """The TURN relay answered the page: its test call offered a relayed candidate, got
    with the credentials the server handed out (or went through the relay)."""
    call = r.call
    required = text("turn.required", lang)
    if call is not None and (call.offered_relay > 0 or call.ice_path == "relay"):
        return Check("turn", True, required, text("turn.reached", lang), None)
    return Check("turn", False, required, text("turn.unreachable", lang), text("turn.advice", lang))


Rule = Callable[[DeviceReport, Requirements, Platform, str], Check]

# Which requirement applies to which channel (R-DEV): chat needs no camera or microphone.
RULES: tuple[tuple[str, Rule, frozenset[Channel]], ...] = (
    ("os", check_os, frozenset(Channel)),
    ("browser", check_browser, frozenset(Channel)),
    ("camera", check_camera, frozenset({Channel.VIDEO})),
    ("microphone", check_microphone, frozenset({Channel.VIDEO, Channel.AUDIO})),
    ("bandwidth", check_bandwidth, frozenset(Channel)),
    ("test_call", check_test_call, frozenset({Channel.VIDEO, Channel.AUDIO})),
    ("turn", check_turn, frozenset({Channel.VIDEO, Channel.AUDIO})),
)


def evaluate(report: DeviceReport, req: Requirements, lang: str = DEFAULT_LANGUAGE) -> Verdict:
    """Every requirement of the chosen channel, in a fixed order; the test call is judged
    only when one was made."""
    platform = parse_user_agent(report.user_agent)
    checks = []
    for name, rule, channels in RULES:
        if report.channel not in channels:
            continue
        if name == "test_call" and report.call is None:
            continue
        if name == "turn" and (report.call is None or not report.turn):
            continue
        checks.append(rule(report, req, platform, lang))
    return Verdict(all(c.ok for c in checks), tuple(checks), platform)


def queue_summary(
    ok: bool, checked_at: datetime, channel: str, failing: list[str], chosen: str
) -> dict[str, object]:
    """The last check as the consultant sees it in the queue; `camera_failed` flags a
    patient who chose video although their camera failed the check."""
    return {
        "ok": ok,
        "checked_at": checked_at.isoformat(),
        "channel": channel,
        "failing": list(failing),
        "camera_failed": chosen == Channel.VIDEO.value and "camera" in failing,
    }


def requirements_of(settings: DeviceSettings) -> Requirements:
    """The rules' numbers from `device:` in config.yaml."""
    return Requirements(
        min_video=settings.min_video,
        min_bandwidth_kbps=settings.min_bandwidth_kbps,
        min_browser=settings.min_browser.model_dump(),
        min_ios=settings.min_ios,
        min_android=settings.min_android,
        min_video_fps=settings.min_video_fps,
        min_audio_dbfs=settings.min_audio_dbfs,
    )
