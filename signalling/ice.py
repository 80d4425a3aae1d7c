"""ICE servers for WebRTC: STUN, and TURN with time-limited credentials.

The TURN REST scheme (coturn `use-auth-secret`): username `expiry:user`,
password base64(HMAC-SHA1(secret, username)); the TURN server checks the
HMAC and the expiry, so credentials cannot be reused after `ttl`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from typing import Any

from telemed.config import SignallingSettings


def turn_credentials(secret: str, user_id: str, expires_at: datetime) -> tuple[str, str]:
    """(username, credential) for the TURN REST scheme."""
    username = f"{int(expires_at.timestamp())}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_expiry(settings: SignallingSettings, now: datetime) -> datetime | None:
    """When the TURN credentials handed out `now` stop working (None without TURN): the
    pages ask for fresh ones (`ice:renew`) before then, so a long call keeps its relay."""
    turn = settings.turn
    return now + turn.ttl if turn.urls and turn.secret else None


def ice_servers(settings: SignallingSettings, user_id: str, now: datetime) -> list[dict[str, Any]]:
    """The RTCPeerConnection `iceServers` for one participant."""
    servers: list[dict[str, Any]] = []
    if settings.stun_urls:
        servers.append({"urls": list(settings.stun_urls)})
    turn = settings.turn
    if turn.urls and turn.secret:
        username, credential = turn_credentials(turn.secret, user_id, now + turn.ttl)
        servers.append({"urls": list(turn.urls), "username": username, "credential": credential})
    return servers
