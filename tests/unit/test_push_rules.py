"""Pure parts of Web Push: which endpoints the server will POST to, the RFC 8030 Topic made
from the outbox key, the VAPID key pair, and the words of each message (no medical text)."""

from __future__ import annotations

import base64
import re

import pytest

from telemed.config import DEFAULT_PUSH_HOSTS
from telemed.notify.messages import compose
from telemed.notify.webpush import topic_of
from telemed.services.push import endpoint_allowed, new_vapid_private_key, vapid_public_key

HOSTS = (*DEFAULT_PUSH_HOSTS, "127.0.0.1:8765")


@pytest.mark.parametrize(
    ("endpoint", "allowed"),
    [
        ("https://fcm.googleapis.com/fcm/send/abc", True),
        ("https://updates.push.services.mozilla.com/wpush/v2/abc", True),
        ("https://web.push.apple.com/QGx", True),
        ("https://wns2-db5p.notify.windows.com/w/?token=x", True),
        ("https://fcm.googleapis.com:443/fcm/send/abc", True),
        ("https://jmt17.google.com/fcm/send/abc", True),  # Chromium outside Google's stable
        ("http://127.0.0.1:8765/push/abc", True),
        ("http://fcm.googleapis.com/fcm/send/abc", False),  # https only without a port
        ("https://fcm.googleapis.com:8443/fcm/send/abc", False),
        ("https://fcm.googleapis.com.evil.example/x", False),
        ("https://evilfcm.googleapis.com/x", False),
        ("https://notify.windows.com.evil.example/x", False),
        ("https://user:pw@fcm.googleapis.com/x", False),
        ("http://127.0.0.1:8766/push/abc", False),
        ("http://localhost:8765/push/abc", False),
        ("ftp://fcm.googleapis.com/x", False),
        ("not a url", False),
        ("https://[::1/x", False),
    ],
)
def test_only_known_push_services_are_posted_to(endpoint: str, allowed: bool) -> None:
    assert endpoint_allowed(endpoint, HOSTS) is allowed


def test_the_topic_is_at_most_32_base64url_characters_and_stable() -> None:
    """RFC 8030 5.4: the same outbox key always gives the same Topic, another key another."""
    topic = topic_of("0a8415506deb44ac852eccdb4bdd2841")
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", topic)
    assert topic == topic_of("0a8415506deb44ac852eccdb4bdd2841")
    assert topic != topic_of("0a8415506deb44ac852eccdb4bdd2842")


def test_the_vapid_public_key_is_the_uncompressed_point_of_the_private_key() -> None:
    private = new_vapid_private_key()
    public = vapid_public_key(private)
    raw = base64.urlsafe_b64decode(public + "=" * (-len(public) % 4))
    assert len(raw) == 65 and raw[0] == 4
    assert vapid_public_key(private) == public
    assert vapid_public_key(new_vapid_private_key()) != public
    with pytest.raises(ValueError, match="32 raw bytes"):
        vapid_public_key("c2hvcnQ")


@pytest.mark.parametrize(
    ("kind", "payload", "url"),
    [
        (
            "reminder",
            {"appointment_id": "a1", "starts_at": "2026-01-15T10:00:00+00:00"},
            "/#booking/a1",
        ),
        (
            "appointment_cancelled",
            {"appointment_id": "a1", "starts_at": "2026-01-15T10:00:00+00:00", "by": "consultant"},
            "/#booking/a1",
        ),
        ("consultation_open", {"consultation_id": "c1", "appointment_id": "a1"}, "/#consultation"),
        ("doctor_calling", {"consultation_id": "c1"}, "/#consultation"),
        ("second_opinion_ready", {"second_opinion_id": "s1", "conclusion_id": "k1"}, "/#records"),
    ],
)
def test_each_message_names_its_screen_and_carries_no_ids_or_medical_text(
    kind: str, payload: dict[str, str], url: str
) -> None:
    words = compose(kind, payload, "Asia/Vladivostok")
    assert words.url == url and words.title and words.text
    for value in payload.values():
        assert value not in words.title + words.text  # no ids, no conclusion
    if "starts_at" in payload:
        assert "20:00" in words.text  # 10:00 UTC in Vladivostok (R-CAL-1)
