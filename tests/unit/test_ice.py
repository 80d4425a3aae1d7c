"""ICE servers handed to participants: STUN, and TURN with time-limited credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

from signalling.ice import ice_servers, turn_credentials
from telemed.config import settings_from_mapping

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_turn_credentials_follow_the_turn_rest_scheme() -> None:
    """username = expiry:user, credential = base64(HMAC-SHA1(secret, username))."""
    username, credential = turn_credentials("s3cret", "user-1", NOW)
    assert username == f"{int(NOW.timestamp())}:user-1"
    expected = hmac.new(b"s3cret", username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(credential) == expected


def test_ice_servers_hold_stun_and_turn_expiring_after_the_ttl() -> None:
    settings = settings_from_mapping(
        {
            "signalling": {
                "stun_urls": ["stun:stun.example.org:3478"],
                "turn": {"urls": ["turn:turn.example.org:3478"], "secret": "k", "ttl": "10m"},
            }
        }
    ).signalling
    servers = ice_servers(settings, "u", NOW)
    assert servers[0] == {"urls": ["stun:stun.example.org:3478"]}
    turn = servers[1]
    assert turn["urls"] == ["turn:turn.example.org:3478"]
    expiry = int(turn["username"].split(":")[0])
    assert expiry == int(NOW.timestamp()) + 600


def test_without_configured_servers_there_are_none() -> None:
    assert ice_servers(settings_from_mapping({}).signalling, "u", NOW) == []


def test_turn_urls_need_a_secret() -> None:
    import pytest

    from telemed.config import ConfigError

    with pytest.raises(ConfigError, match=r"signalling\.turn"):
        settings_from_mapping({"signalling": {"turn": {"urls": ["turn:x"]}}})
