"""Settings: durations, environment overrides and errors that name the key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from telemed.config import ConfigError, load_settings, parse_duration, settings_from_mapping


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("1.5h", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
        ("2d", timedelta(days=2)),
        (" 10s ", timedelta(seconds=10)),
    ],
)
def test_durations_are_read_with_units(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["30", 30, "m", "-5m", "5 minutes", "", True, None, [1]])
def test_durations_without_a_unit_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_defaults_follow_the_contract() -> None:
    """Every rule number has the default of CONTRACT.md."""
    s = settings_from_mapping({})
    r = s.rules
    assert r.urgent_limit == timedelta(minutes=30)  # R-LIMIT-URG
    assert r.scheduled_limit == timedelta(minutes=15)  # R-LIMIT-SCH
    assert r.no_show_after == timedelta(minutes=15)  # R-NOSHOW-1
    assert r.remind_before == timedelta(minutes=10)  # R-REMIND-1
    assert r.paediatric_ages == (1, 17)  # R-ROUTE-1
    assert r.urgent_start_target == timedelta(minutes=5)  # R-URG-2
    assert r.second_opinion_working_days == 14
    assert s.device.min_video == (1024, 720) and s.device.min_bandwidth_kbps == 1000
    assert s.database.url == "sqlite+aiosqlite:///data/telemed.db"
    assert s.redis.url is None and s.sms.backend == "log"


def test_the_shipped_config_file_is_valid_and_matches_the_defaults() -> None:
    shipped = load_settings(Path(__file__).parents[2] / "config.yaml", environ={})
    assert shipped.rules == settings_from_mapping({}).rules


def test_the_file_and_the_environment_override_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("rules:\n  urgent_limit: 2s\n  paediatric_ages: [1, 15]\n")
    s = load_settings(cfg, environ={"TELEMED_RULES__URGENT_LIMIT": "3s"})
    assert s.rules.urgent_limit == timedelta(seconds=3)
    assert s.rules.paediatric_ages == (1, 15)
    s = load_settings(None, environ={"TELEMED_CONFIG": str(cfg)})
    assert s.rules.urgent_limit == timedelta(seconds=2)
    s = load_settings(cfg, environ={"TELEMED_RULES__PAEDIATRIC_AGES": "[2, 16]"})
    assert s.rules.paediatric_ages == (2, 16)


@pytest.mark.parametrize(
    ("yaml_text", "env", "key"),
    [
        ("rules:\n  no_show_after: soon\n", {}, "rules.no_show_after"),
        ("rules:\n  urgent_limit: 0s\n", {}, "urgent_limit"),
        ("", {"TELEMED_RULES__REMIND_BEFORE": "ten"}, "rules.remind_before"),
        ("rules:\n  paediatric_ages: [18, 1]\n", {}, "paediatric_ages"),
        ("server:\n  port: 99999\n", {}, "server.port"),
        ("sms:\n  backend: pigeon\n", {}, "sms.backend"),
        ("sms:\n  backend: http\n", {}, "url"),
        ("database:\n  url: mysql://x\n", {}, "database"),
        ("rules:\n  urgent_limt: 5m\n", {}, "rules.urgent_limt"),
        ("- a list\n", {}, "top level"),
    ],
)
def test_a_bad_value_stops_the_start_naming_the_key(
    tmp_path: Path, yaml_text: str, env: dict[str, str], key: str
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, environ=env)
    assert key in str(err.value)


def test_settings_are_frozen() -> None:
    s = load_settings(None, environ={})
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError
        s.rules.urgent_limit = timedelta(0)  # type: ignore[misc]


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml", environ={})
