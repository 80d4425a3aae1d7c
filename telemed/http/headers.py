"""Security headers on every response: pages, API, files, errors, Socket.IO.

Added in `on_response_prepare`, so streamed files and error answers get them too; not to
the `101 Switching Protocols` of a WebSocket, which serves no document (and whose headers
stay in memory as long as the socket: 10,000 idle sockets held 20 MB of them).

- `Content-Security-Policy`: everything from the app's own origin only; no inline script
  or style (the pages load theirs from /static); connections to the own origin over HTTP
  and WebSocket (`ws:`/`wss:` of the same host, for Socket.IO); media from the own origin
  and the camera/microphone streams (`blob:`, `mediastream:`); `frame-ancestors 'none'`.
  STUN and TURN need no entry: CSP does not govern WebRTC's ICE connections.
- `X-Frame-Options: DENY` for browsers without `frame-ancestors`: the console's accept,
  transfer and close buttons cannot be framed.
- `Permissions-Policy`: camera and microphone for the app itself only, nothing else.
- `Strict-Transport-Security` when `server.hsts_max_age` is set (served over TLS).
"""

from __future__ import annotations

from aiohttp import web

from telemed.config import ServerSettings

PERMISSIONS = (
    "camera=(self), microphone=(self), display-capture=(), geolocation=(), payment=(), "
    "usb=(), serial=(), midi=()"
)


def content_security_policy(host: str) -> str:
    """The CSP of a response served for `host` (the request's Host, for ws:/wss:)."""
    sockets = f" ws://{host} wss://{host}" if host else ""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            "media-src 'self' blob: mediastream:",
            f"connect-src 'self'{sockets}",
            "font-src 'self'",
            "worker-src 'self'",
            "manifest-src 'self'",
            # The console's document viewer shows a PDF fetched with the token, as a blob.
            "frame-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def install(app: web.Application, settings: ServerSettings) -> None:
    """Add the headers to every response of `app`."""

    async def add(request: web.Request, response: web.StreamResponse) -> None:
        if isinstance(response, web.WebSocketResponse):
            return  # a 101 switches protocols: no document to protect, and kept per socket
        headers = response.headers
        host = request.host if _plain_host(request.host) else ""
        headers.setdefault("Content-Security-Policy", content_security_policy(host))
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Permissions-Policy", PERMISSIONS)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if settings.hsts_max_age > 0:
            headers.setdefault(
                "Strict-Transport-Security", f"max-age={settings.hsts_max_age}; includeSubDomains"
            )

    app.on_response_prepare.append(add)


def _plain_host(host: str) -> bool:
    """A Host header safe to repeat in a header (no spaces, quotes or separators)."""
    return bool(host) and len(host) <= 255 and all(c.isalnum() or c in ".-:[]" for c in host)
