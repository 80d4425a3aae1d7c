"""Bad input gets a 4xx with an error code, never a 500; the OpenAPI document matches the API."""

from __future__ import annotations

import pytest
from appkit import Running
from helpers import add_adult, bearer, patient_token

OTP = "/api/v1/auth/otp"


async def _error(resp) -> str:  # type: ignore[no-untyped-def]
    body = await resp.json()
    assert set(body) == {"error"} and body["error"]["message"]
    return str(body["error"]["code"])


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "bad_request"),
        (b"", "bad_request"),
        (b"[1, 2]", "bad_request"),
        (b'"a string"', "bad_request"),
        (b"\xff\xfe\x00", "bad_request"),
        (b'{"phone": 79161234567}', "validation_error"),
        (b'{"phone": null}', "validation_error"),
        (b'{"phone": ["+79161234567"]}', "validation_error"),
        (b"{}", "validation_error"),
        (b'{"phone": "+79161234567", "admin": true}', "validation_error"),
        (b'{"phone": "not a phone"}', "validation_error"),
    ],
)
async def test_malformed_bodies_get_a_4xx_with_a_code(app: Running, raw: bytes, code: str) -> None:
    resp = await app.client.post(OTP, data=raw, headers={"Content-Type": "application/json"})
    assert 400 <= resp.status < 500
    assert await _error(resp) == code


async def test_unknown_fields_are_named_in_the_error(app: Running) -> None:
    resp = await app.client.post(OTP, json={"phone": "+79161234567", "extra": 1})
    body = await resp.json()
    assert resp.status == 422
    assert body["error"]["details"]["fields"][0]["field"] == "extra"


async def test_a_10_mb_body_is_refused_with_413(app: Running) -> None:
    big = b'{"phone": "' + b"9" * (10 * 1024 * 1024) + b'"}'
    resp = await app.client.post(OTP, data=big, headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert await _error(resp) == "payload_too_large"


async def test_a_10_mb_chunked_body_is_refused_with_413(app: Running) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"phone": "'
        for _ in range(160):
            yield b"9" * 65536
        yield b'"}'

    resp = await app.client.post(OTP, data=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status == 413


async def test_wrong_types_on_authenticated_routes(app: Running) -> None:
    await add_adult(app)
    token = await patient_token(app)
    for body in [{"channel": "telepathy"}, {"channel": 1}, {}, {"channel": "video", "x": 1}]:
        resp = await app.client.post("/api/v1/consultations", json=body, headers=bearer(token))
        assert resp.status == 422, body
        assert await _error(resp) == "validation_error"


async def test_unknown_routes_and_methods_get_error_bodies(app: Running) -> None:
    resp = await app.client.get("/api/v1/nothing-here")
    assert resp.status == 404 and await _error(resp) == "not_found"
    resp = await app.client.put(OTP, json={})
    assert resp.status == 405 and await _error(resp) == "method_not_allowed"


async def test_a_bad_query_parameter_is_refused(app: Running) -> None:
    resp = await app.client.get("/api/v1/consent?lang=english")
    assert resp.status == 422 and await _error(resp) == "validation_error"


async def test_healthz_answers_ok(app: Running) -> None:
    resp = await app.client.get("/healthz")
    assert resp.status == 200 and (await resp.json())["status"] == "ok"


async def test_the_openapi_document_describes_every_route_with_its_models(app: Running) -> None:
    resp = await app.client.get("/api/v1/openapi.json")
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path, method in [
        ("/api/v1/auth/otp", "post"),
        ("/api/v1/auth/otp/verify", "post"),
        ("/api/v1/auth/staff", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/me", "patch"),
        ("/api/v1/consent", "get"),
        ("/api/v1/me/consent", "post"),
        ("/api/v1/patients/identify", "post"),
        ("/api/v1/patients", "post"),
        ("/api/v1/consultations", "post"),
    ]:
        assert method in paths[path], (path, method)
    otp_schema = doc["components"]["schemas"]["OtpRequest"]
    assert otp_schema["required"] == ["phone"]
    assert otp_schema["additionalProperties"] is False
    assert paths["/api/v1/patients/identify"]["post"]["x-roles"] == ["admin", "consultant"]
    # Every route the app serves under /api/v1 is in the document.
    served = {
        (r.resource.canonical, r.method.lower())  # type: ignore[union-attr]
        for r in app.client.server.app.router.routes()
        if r.resource is not None
        and r.resource.canonical.startswith("/api/v1/")
        and r.method != "HEAD"
        and not r.resource.canonical.endswith("openapi.json")
    }
    documented = {(p, m) for p, ops in paths.items() for m in ops}
    assert served == documented
    download = paths["/api/v1/documents/{document_id}/content"]["get"]["responses"]["200"]
    # the real type of the stored file, as recognised at upload (never a generic type)
    assert {"application/pdf", "image/jpeg", "image/png", "image/heic"} <= set(download["content"])
    assert "application/octet-stream" not in download["content"]
