"""Security headers on every page and API response (issue 14, telemed/http/headers.py): a
CSP with no inline script, frames refused, camera and microphone for the app only, HSTS
only when configured; and the pages carry no inline script or style for the CSP to block."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from appkit import Running

WEB = Path(__file__).resolve().parents[2] / "telemed" / "web"
PATHS = [
    "/",
    "/console",
    "/check",
    "/static/base.css",
    "/healthz",
    "/api/v1/openapi.json",
    "/api/v1/me",  # 401
    "/api/v1/nothing-here",  # 404
    "/fhir/Encounter/x",  # 401 as OperationOutcome
    "/socket.io/?EIO=4&transport=polling",
]


def directives(csp: str) -> dict[str, list[str]]:
    parsed = {}
    for part in csp.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


@pytest.mark.parametrize("path", PATHS)
async def test_every_response_carries_the_security_headers(app: Running, path: str) -> None:
    resp = await app.client.get(path)
    await resp.read()
    headers = resp.headers
    csp = directives(headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
    assert not any("unsafe" in v for values in csp.values() for v in values)
    assert csp["frame-ancestors"] == ["'none'"]
    host = resp.url.host + (f":{resp.url.port}" if resp.url.port else "")
    assert set(csp["connect-src"]) == {"'self'", f"ws://{host}", f"wss://{host}"}
    assert "blob:" in csp["media-src"] and "mediastream:" in csp["media-src"]
    assert headers["X-Frame-Options"] == "DENY"
    policy = headers["Permissions-Policy"]
    assert "camera=(self)" in policy and "microphone=(self)" in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Strict-Transport-Security" not in headers


async def test_hsts_is_sent_when_configured_for_tls(start_app: Any, sqlite_url: str) -> None:
    app: Running = await start_app(sqlite_url, server={"hsts_max_age": 31536000})
    for path in ("/", "/api/v1/me"):
        resp = await app.client.get(path)
        assert resp.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


class _Inline(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "style":
            self.found.append("<style>")
        if tag == "script" and "src" not in names:
            self.found.append("inline <script>")
        self.found += [f"{tag} {n}=" for n in names if n == "style" or n.startswith("on")]
        if tag == "link" and ("rel", "stylesheet") in attrs:
            href = dict(attrs).get("href") or ""
            if not href.startswith("/"):
                self.found.append(f"foreign stylesheet {href}")


@pytest.mark.parametrize("page", sorted(p.name for p in WEB.glob("*.html")))
def test_the_pages_have_no_inline_script_or_style(page: str) -> None:
    """What the CSP would block: the pages keep their scripts and styles in files."""
    parser = _Inline()
    parser.feed((WEB / page).read_text(encoding="utf-8"))
    assert parser.found == []
