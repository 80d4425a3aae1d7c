"""Settings: `config.yaml` plus environment overrides, validated once at start.

Every number a rule of RULES.md depends on lives here (section `rules`), so a
test can run a whole day of rules in seconds. Environment variables override
the file: `TELEMED_RULES__URGENT_LIMIT=10s` sets `rules.urgent_limit`.
Nothing else in the code reads `os.environ`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "TELEMED_"
CONFIG_ENV = "TELEMED_CONFIG"
DEFAULT_CONFIG_FILE = "config.yaml"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key."""


def parse_duration(value: Any) -> timedelta:
    """`30m`, `90s`, `1.5h`, `250ms`, `2d` (or a timedelta) -> timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("expected a duration like 30m, 90s or 1.5h")
    if isinstance(value, int | float):
        raise ValueError(f"{value!r} has no unit; write it like 30m, 90s or 1.5h")
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration like 30m, 90s or 1.5h")
    number, unit = match.groups()
    return timedelta(seconds=float(number) * _UNIT_SECONDS[unit])


def _positive(delta: timedelta) -> timedelta:
    if delta <= timedelta(0):
        raise ValueError("must be longer than zero")
    return delta


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# Russian weekdays off (Labour Code art. 112 and the government's transfer decrees): the
# 2026 decree moved 3 and 4 January to 9 January and 31 December; for 2027 the statutory
# days and weekend-holiday substitutes, until the 2027 decree places 2 and 3 January.
RU_DAYS_OFF_2026_2027: tuple[date, ...] = (
    *(date(2026, 1, d) for d in (1, 2, 5, 6, 7, 8, 9)),
    date(2026, 2, 23),
    date(2026, 3, 9),
    date(2026, 5, 1),
    date(2026, 5, 11),
    date(2026, 6, 12),
    date(2026, 11, 4),
    date(2026, 12, 31),
    *(date(2027, 1, d) for d in (1, 4, 5, 6, 7, 8)),
    date(2027, 2, 23),
    date(2027, 3, 8),
    date(2027, 5, 3),
    date(2027, 5, 10),
    date(2027, 6, 14),
    date(2027, 11, 4),
)


class RulesSettings(_Section):
    """The numbers of RULES.md, each named after its rule."""

    urgent_limit: Duration = timedelta(minutes=30)  # R-LIMIT-URG
    scheduled_limit: Duration = timedelta(minutes=15)  # R-LIMIT-SCH
    no_show_after: Duration = timedelta(minutes=15)  # R-NOSHOW-1
    remind_before: Duration = timedelta(minutes=10)  # R-REMIND-1
    paediatric_ages: tuple[int, int] = (1, 17)  # R-ROUTE-1
    urgent_start_target: Duration = timedelta(minutes=5)  # R-URG-2
    second_opinion_working_days: int = Field(default=14, ge=1)  # R-SECOND
    limit_warning_before: Duration = timedelta(minutes=2)
    conclusion_due_after: Duration = timedelta(minutes=15)  # R-CONCL-1
    # R-SECOND working days: weekdays that are days off, and weekend days made working days.
    holidays: tuple[date, ...] = RU_DAYS_OFF_2026_2027
    working_weekends: tuple[date, ...] = ()
    queue_service_time: Duration = timedelta(minutes=3)  # per patient ahead, for the wait estimate
    # telemed/access.py: staff whose leg ended (or specialist whose second opinion was
    # delivered) read the patient's record this long afterwards; a break-the-glass lasts
    # break_glass_ttl.
    care_window: Duration = timedelta(hours=72)
    break_glass_ttl: Duration = timedelta(hours=1)

    @model_validator(mode="after")
    def _check(self) -> RulesSettings:
        for name in (
            "urgent_limit",
            "scheduled_limit",
            "no_show_after",
            "remind_before",
            "urgent_start_target",
            "conclusion_due_after",
            "care_window",
            "break_glass_ttl",
        ):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be longer than zero")
        low, high = self.paediatric_ages
        if not 0 <= low <= high:
            raise ValueError("paediatric_ages must be [youngest, oldest] with youngest <= oldest")
        if set(self.holidays) & set(self.working_weekends):
            raise ValueError("a day cannot be both in holidays and in working_weekends")
        return self


class BrowserMinimums(_Section):
    """The oldest major version of each browser R-DEV names ("the latest version")."""

    chrome: int = Field(default=109, ge=1)
    firefox: int = Field(default=115, ge=1)
    opera: int = Field(default=95, ge=1)


class DeviceSettings(_Section):
    """Technical requirements of the connection check (R-DEV) and the limits of its probes
    and test calls."""

    min_video: tuple[int, int] = (1024, 720)
    min_bandwidth_kbps: int = Field(default=1000, gt=0)
    min_browser: BrowserMinimums = BrowserMinimums()
    min_ios: tuple[int, int] = (9, 0)
    min_android: tuple[int, int] = (5, 1)
    min_video_fps: float = Field(default=5.0, ge=0)  # frames per second a test call must carry
    min_audio_dbfs: float = Field(default=-50.0, le=0)  # quieter than this is a silent microphone
    probe_max_bytes: int = Field(default=4 * 1024 * 1024, gt=0)  # one bandwidth probe
    probe_bytes_per_minute: int = Field(default=64 * 1024 * 1024, gt=0)  # per patient
    max_concurrent_calls: int = Field(default=10, ge=1)  # test calls at once on one node
    calls_per_minute: int = Field(default=6, ge=1)  # test calls one patient may start
    call_measure: Duration = timedelta(seconds=3)  # measured after the first media arrives
    call_timeout: Duration = timedelta(seconds=20)  # a test call never lives longer

    @model_validator(mode="after")
    def _check(self) -> DeviceSettings:
        _positive(self.call_measure)
        if self.call_timeout <= self.call_measure:
            raise ValueError("call_timeout must be longer than call_measure")
        return self


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    allowed_origins: tuple[str, ...] = ()
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    trusted_proxies: tuple[str, ...] = ()
    # Strict-Transport-Security max-age in seconds when served over TLS (0: not sent).
    hsts_max_age: int = Field(default=0, ge=0)


class AuthSettings(_Section):
    """Login by SMS code (R-AUTH-1) and staff tokens."""

    otp_length: int = Field(default=6, ge=4, le=10)
    otp_ttl: Duration = timedelta(minutes=5)
    otp_max_attempts: int = Field(default=5, ge=1)
    otp_resend_cooldown: Duration = timedelta(seconds=60)
    # Codes one address may have sent to one phone in an hour (a stranger spends only their
    # own share of a phone's codes), all addresses together, and codes from one address.
    otp_per_phone_per_hour: int = Field(default=5, ge=1)
    otp_per_phone_all_addresses_per_hour: int = Field(default=20, ge=1)
    otp_per_address_per_hour: int = Field(default=30, ge=1)
    otp_verify_per_address_per_hour: int = Field(default=60, ge=1)  # wrong codes from one address
    # Staff password guessing: attempts counted in a window per account (since its last
    # success; separately for an address the account logged in from before, so a stranger
    # cannot lock the owner out) and failures per client address.
    staff_failures_per_account: int = Field(default=10, ge=1)
    staff_failures_per_address: int = Field(default=50, ge=1)
    staff_failure_window: Duration = timedelta(minutes=15)
    staff_known_address_for: Duration = timedelta(days=30)
    # Password checks (argon2id, 19 MiB each) run in their own pool: this many at once, at most
    # password_in_flight running or waiting per node, password_per_address from one address.
    password_workers: int = Field(default=1, ge=1)
    password_in_flight: int = Field(default=16, ge=1)
    password_per_address: int = Field(default=2, ge=1)
    # The door of the login paths (telemed/http/flood_gate.py): an address refused more than
    # this many times within flood_window is refused before its body is read, at most once
    # per flood_spacing (its requests wait their turn), at most flood_max_held waiting per node.
    flood_refusals: int = Field(default=20, ge=1)
    flood_window: Duration = timedelta(seconds=60)
    flood_spacing: Duration = timedelta(seconds=1)
    flood_max_held: int = Field(default=1000, ge=0)
    token_ttl: Duration = timedelta(hours=12)
    secret_key: str | None = Field(default=None, min_length=16)

    @model_validator(mode="after")
    def _check(self) -> AuthSettings:
        _positive(self.otp_ttl)
        _positive(self.token_ttl)
        _positive(self.staff_failure_window)
        _positive(self.flood_window)
        return self


class DatabaseSettings(_Section):
    url: str = "sqlite+aiosqlite:///data/telemed.db"
    echo: bool = False
    busy_timeout: Duration = timedelta(seconds=5)
    # PostgreSQL: connections each node keeps open, and how many more a burst may open (closed
    # again when returned). Kept open so a burst of accepts does not log in anew each time.
    pool_size: int = Field(default=20, ge=1)
    max_overflow: int = Field(default=10, ge=0)

    @model_validator(mode="after")
    def _check(self) -> DatabaseSettings:
        if not self.url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("url must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


class RedisSettings(_Section):
    """Redis between nodes: Socket.IO events, presence and the scheduler lease."""

    url: str | None = None
    prefix: str = "telemed"  # channel and key names, so deployments can share one Redis
    max_connections: int = Field(default=32, ge=2)  # publishing pool; a burst waits, never drops
    presence_ttl: Duration = timedelta(seconds=15)  # a dead node's users go offline after this

    @model_validator(mode="after")
    def _check(self) -> RedisSettings:
        _positive(self.presence_ttl)
        return self


class SmsSettings(_Section):
    backend: Literal["log", "file", "http"] = "log"
    path: str | None = None
    url: str | None = None
    token: str | None = None
    timeout: Duration = timedelta(seconds=10)

    @model_validator(mode="after")
    def _check(self) -> SmsSettings:
        if self.backend == "file" and not self.path:
            raise ValueError("path is required when backend is file")
        if self.backend == "http" and not self.url:
            raise ValueError("url is required when backend is http")
        return self


# The browsers' push services (Chrome/Edge via FCM, Firefox, Safari, Windows): the only hosts
# a registered subscription may point at, so the server never POSTs anywhere else.
DEFAULT_PUSH_HOSTS: tuple[str, ...] = (
    "fcm.googleapis.com",
    "android.googleapis.com",
    # Chromium builds outside Google's stable channel (Debian's, other distributions') put
    # their subscriptions on FCM's staging host: push_messaging_utils.cc,
    # GetGcmEndpointForChannel -> kPushMessagingStagingGcmEndpoint.
    "jmt17.google.com",
    "updates.push.services.mozilla.com",
    "web.push.apple.com",
    "*.notify.windows.com",
)


class PushSettings(SmsSettings):
    """Push notifications to the patient's phone: `webpush` (RFC 8030 with VAPID, SMS as the
    fallback), or the SMS backends' `log`, `file` and `http` for development."""

    backend: Literal["log", "file", "http", "webpush"] = "log"  # type: ignore[assignment]
    # VAPID (RFC 8292): null: a key pair generated once and kept in the database.
    vapid_private_key: str | None = None
    vapid_subject: str = "mailto:support@telemed.invalid"
    # host or host:port of push services a subscription may use; "*.example.com" for any
    # subdomain. https only, unless the entry names its port (tests' loopback service).
    endpoint_hosts: tuple[str, ...] = DEFAULT_PUSH_HOSTS
    ttl: Duration = timedelta(minutes=10)  # how long the push service may hold a message

    @model_validator(mode="after")
    def _check_webpush(self) -> PushSettings:
        if not self.vapid_subject.startswith(("mailto:", "https://")):
            raise ValueError("vapid_subject must be a mailto: or https:// URL (RFC 8292)")
        return self


class SchedulerSettings(_Section):
    """The deadline runner: how often it sweeps, and the lease between nodes."""

    enabled: bool = True  # off: nothing runs by itself (tests call tick())
    sweep_interval: Duration = timedelta(seconds=5)
    lease_ttl: Duration = timedelta(seconds=10)
    lease_key: str = "telemed:scheduler:lease"
    slot_horizon_days: int = Field(default=14, ge=1, le=365)
    reminder_channels: tuple[Literal["push", "sms"], ...] = ("push",)
    batch_size: int = Field(default=500, ge=1)


class StorageSettings(_Section):
    """Medical-card files: where they live (outside the web root) and how big they may be."""

    documents_dir: str = "data/documents"
    max_document_bytes: int = Field(default=25 * 1024 * 1024, gt=0)  # one uploaded file
    chat_attachment_limit: int = Field(default=25 * 1024 * 1024, gt=0)  # files of one message


class TurnSettings(_Section):
    """TURN with time-limited credentials (the TURN REST scheme: HMAC of `expiry:user`)."""

    urls: tuple[str, ...] = ()
    secret: str | None = None
    ttl: Duration = timedelta(hours=1)

    @model_validator(mode="after")
    def _check(self) -> TurnSettings:
        if self.urls and not self.secret:
            raise ValueError("secret is required when urls are set")
        return self


class BudgetSettings(_Section):
    """A socket's budget for one kind of event: `rate` per second, up to `burst` at once."""

    rate: float = Field(gt=0)
    burst: int = Field(gt=0)


def _default_budgets() -> dict[str, BudgetSettings]:
    return {
        "chat": BudgetSettings(rate=5, burst=20),
        "signal": BudgetSettings(rate=50, burst=200),
        "other": BudgetSettings(rate=10, burst=40),
    }


class SignallingSettings(_Section):
    """Socket.IO: sizes, liveness, event budgets and the ICE servers handed to participants."""

    max_event_bytes: int = Field(default=64 * 1024, gt=0)
    stun_urls: tuple[str, ...] = ()
    turn: TurnSettings = TurnSettings()
    ping_interval: Duration = timedelta(seconds=25)
    ping_timeout: Duration = timedelta(seconds=20)
    # Waiting patients hear of a new place at most once per this interval.
    queue_refresh_interval: Duration = timedelta(seconds=1)
    # Per socket, by kind of event: `chat` (chat:send), `signal`, `other` (everything else).
    budgets: dict[str, BudgetSettings] = Field(default_factory=_default_budgets)

    @field_validator("budgets", mode="after")
    @classmethod
    def _complete_budgets(cls, given: dict[str, BudgetSettings]) -> dict[str, BudgetSettings]:
        """A kind left out keeps its default; an unknown kind is a mistake worth naming."""
        defaults = _default_budgets()
        unknown = set(given) - set(defaults)
        if unknown:
            raise ValueError(f"unknown budget kinds {sorted(unknown)}; known: chat, signal, other")
        return {**defaults, **given}


class ClinicSettings(_Section):
    """What the pages tell patients about the clinic itself."""

    # R-FALLBACK-1: the insurer's hotline of seed 001, shown on login, in a failed connection
    # check and when a call cannot connect.
    hotline: str = Field(default="8 (800) 500-61-11", min_length=1, max_length=40)


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = Field(default=True, alias="json")


class Settings(_Section):
    """The whole configuration, frozen after validation."""

    server: ServerSettings = ServerSettings()
    rules: RulesSettings = RulesSettings()
    device: DeviceSettings = DeviceSettings()
    auth: AuthSettings = AuthSettings()
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    sms: SmsSettings = SmsSettings()
    push: PushSettings = PushSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    storage: StorageSettings = StorageSettings()
    signalling: SignallingSettings = SignallingSettings()
    clinic: ClinicSettings = ClinicSettings()
    logging: LoggingSettings = LoggingSettings()


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """`TELEMED_A__B=value` -> {"a": {"b": value}}; values are read as YAML scalars."""
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{name}: cannot read the value: {exc}") from exc
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: conflicts with another override")
        node[path[-1]] = value
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"config key {key}: {msg}")
    return "; ".join(lines)


def settings_from_mapping(data: Mapping[str, Any]) -> Settings:
    """Validate a config mapping; a bad value raises ConfigError naming its key."""
    try:
        return Settings.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the config file (explicit path, else $TELEMED_CONFIG, else ./config.yaml if present)
    and apply environment overrides."""
    env = os.environ if environ is None else environ
    chosen = path or env.get(CONFIG_ENV)
    data: dict[str, Any] = {}
    if chosen is None and Path(DEFAULT_CONFIG_FILE).is_file():
        chosen = DEFAULT_CONFIG_FILE
    if chosen is not None:
        file = Path(chosen)
        if not file.is_file():
            raise ConfigError(f"config file {file} does not exist")
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {file}: not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {file}: the top level must be a mapping")
        data = loaded
    return settings_from_mapping(_merge(data, _env_overrides(env)))
