"""HTTP as written: every 405 names what is allowed in `Allow` (RFC 9110 15.5.6), every 401
challenges with `WWW-Authenticate: Bearer` (RFC 9110 15.5.2, RFC 6750 3), whatever route
answers it (REST, FHIR, pages). (`unknown_event` acks are counted: see
tests/signalling/test_live_sessions.py.)"""

from __future__ import annotations

import re

from aiohttp import web
from appkit import Running
from helpers import bearer

from telemed.app import API

PROBE_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def concrete(path: str) -> str:
    """A route's path with every `{param}` (regex included) filled in."""
    return re.sub(r"\{[^}]*\}", "abcdefghijklmnopqrstuvwxyz", path)


def routes_by_path(app: web.Application) -> dict[str, set[str]]:
    """Every routed path with the methods registered on it (HEAD comes with GET)."""
    methods: dict[str, set[str]] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if path is None or route.method == "*":
            continue
        methods.setdefault(path, set()).add(route.method)
    return methods


async def test_every_405_carries_allow_with_the_methods_the_route_takes(app: Running) -> None:
    """RFC 9110: a 405 MUST carry Allow; before, the error middleware dropped aiohttp's."""
    checked = 0
    for path, allowed in routes_by_path(app.client.server.app).items():
        for method in PROBE_METHODS:
            if method in allowed:
                continue
            resp = await app.client.request(method, concrete(path))
            assert resp.status == 405, (method, path, resp.status)
            assert "Allow" in resp.headers, (method, path)
            named = {m.strip() for m in resp.headers["Allow"].split(",")}
            assert named == allowed, (method, path, named, allowed)
            checked += 1
            break
    assert checked > 40


async def test_every_401_carries_a_bearer_challenge(app: Running) -> None:
    """RFC 6750: a call without a token gets `WWW-Authenticate: Bearer`; with a bad token the
    challenge says `error="invalid_token"`. Every endpoint that needs a caller, and FHIR."""
    endpoints = [
        (ep.method, "/api/v1" + ep.path)
        for ep in app.client.server.app[API].endpoints
        if ep.roles is not None
    ]
    endpoints += [("GET", "/fhir/Appointment/x1"), ("GET", "/fhir/Patient/x1/$everything")]
    assert len(endpoints) > 40
    for method, path in endpoints:
        resp = await app.client.request(method, concrete(path))
        assert resp.status == 401, (method, path, resp.status)
        challenge = resp.headers.get("WWW-Authenticate", "")
        assert challenge.startswith("Bearer "), (method, path, challenge)
        assert "error=" not in challenge
        resp = await app.client.request(method, concrete(path), headers=bearer("not-a-token"))
        assert resp.status == 401, (method, path, resp.status)
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="telemed", error="invalid_token"'
