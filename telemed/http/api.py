"""A small declarative layer over aiohttp routes.

Each endpoint declares its body model, response model and the roles that may
call it. One wrapper authenticates, applies the consent gate (R-CONSENT-1),
reads and validates the body, calls the handler and serialises the answer;
the same declarations generate the OpenAPI document, so the document cannot
drift from what is enforced.
"""

from __future__ import annotations

import json
import re
import zoneinfo
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar, cast

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ValidationError, WithJsonSchema
from pydantic.json_schema import JsonSchemaMode

from telemed.errors import (
    BadRequest,
    ConsentRequired,
    Forbidden,
    MethodNotAllowed,
    PayloadTooLarge,
    TelemedError,
    ValidationFailed,
)
from telemed.roles import Role
from telemed.services.auth import Caller
from telemed.text import CleanModel, has_control

API_PREFIX = "/api/v1"
TIME_ZONES = sorted(zoneinfo.available_timezones())
"""Every IANA zone name this server knows: the enum of time-zone fields."""
B = TypeVar("B", bound=BaseModel)


class Body(CleanModel):
    """Base of request bodies and queries: unknown fields are refused, not ignored, and so
    are control characters (telemed/text.py)."""


class Out(BaseModel):
    """Base of response bodies."""


@dataclass
class Call(Generic[B]):
    """What a handler receives: the request, the caller (if any) and the validated body."""

    request: web.Request
    caller: Caller | None
    body: B

    @property
    def me(self) -> Caller:
        assert self.caller is not None, "endpoint declared without roles"
        return self.caller


Handler = Callable[[Call[Any]], Awaitable[BaseModel | web.StreamResponse | None]]
Authenticator = Callable[[web.Request], Awaitable[Caller]]
ConsentCheck = Callable[[web.Request, Caller], Awaitable[bool]]
H = TypeVar("H", bound=Callable[..., Awaitable[Any]])


class NoBody(Body):
    """Endpoints without a request body."""


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Handler
    body: type[BaseModel]
    response: type[BaseModel] | None
    roles: frozenset[Role] | None
    consent: bool
    status: int
    summary: str
    tag: str
    query: type[BaseModel] | None = None
    raw_body: bool = False
    consumes: str = "multipart/form-data"
    raw_schema: dict[str, Any] | None = None
    produces: tuple[str, ...] = ()
    extra_responses: dict[int, str] = field(default_factory=dict)


PUBLIC: None = None


class Api:
    """The collection of endpoints of one API version."""

    def __init__(
        self,
        title: str,
        version: str,
        authenticate: Authenticator,
        has_consent: ConsentCheck,
        max_body: Callable[[web.Request], int],
    ) -> None:
        self.title = title
        self.version = version
        self.endpoints: list[Endpoint] = []
        self._authenticate = authenticate
        self._has_consent = has_consent
        self._max_body = max_body

    def route(
        self,
        method: str,
        path: str,
        *,
        roles: Collection[Role] | None,
        body: type[BaseModel] = NoBody,
        response: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        consent: bool = True,
        status: int = 200,
        summary: str = "",
        tag: str = "default",
        raw_body: bool = False,
        consumes: str = "multipart/form-data",
        raw_schema: dict[str, Any] | None = None,
        produces: str | tuple[str, ...] = (),
    ) -> Callable[[H], H]:
        """Declare an endpoint. `roles=None` means public; patients also need consent unless
        `consent=False`. A `raw_body` endpoint reads its own body, of type `consumes`
        (described by `raw_schema`); `produces` names the media types of a non-JSON answer."""

        def register(handler: H) -> H:
            self.endpoints.append(
                Endpoint(
                    method=method.upper(),
                    path=path,
                    handler=cast(Handler, handler),
                    body=body,
                    response=response,
                    roles=None if roles is None else frozenset(roles),
                    consent=consent,
                    status=status,
                    summary=summary or (handler.__doc__ or "").strip().split("\n")[0],
                    tag=tag,
                    query=query,
                    raw_body=raw_body,
                    consumes=consumes,
                    raw_schema=raw_schema,
                    produces=(produces,) if isinstance(produces, str) else produces,
                )
            )
            return handler

        return register

    def mount(self, app: web.Application) -> None:
        for endpoint in self.endpoints:
            app.router.add_route(endpoint.method, API_PREFIX + endpoint.path, self._wrap(endpoint))

    def _wrap(self, endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def view(request: web.Request) -> web.StreamResponse:
            caller: Caller | None = None
            if endpoint.roles is not None:
                caller = await self._authenticate(request)
                if caller.role not in endpoint.roles:
                    raise Forbidden(f"This is not available to the {caller.role.value} role.")
                if (
                    endpoint.consent
                    and caller.role is Role.PATIENT
                    and not await self._has_consent(request, caller)
                ):
                    raise ConsentRequired()
            _check_path(request)
            if endpoint.query is not None:
                parsed: BaseModel = _validate_query(endpoint.query, request)
            elif endpoint.raw_body or endpoint.body is NoBody:
                parsed = NoBody()
            else:
                raw = await read_body(request, self._max_body(request))
                parsed = _validate(endpoint.body, raw)
            result = await endpoint.handler(Call(request, caller, parsed))
            if isinstance(result, web.StreamResponse):
                return result
            if result is None:
                return web.Response(status=204 if endpoint.status == 200 else endpoint.status)
            return web.json_response(
                body=result.model_dump_json(by_alias=True).encode(),
                status=endpoint.status,
            )

        view.__name__ = endpoint.handler.__name__
        return view

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document, built from the endpoint declarations."""
        paths: dict[str, dict[str, Any]] = {}
        schemas: dict[str, Any] = {"Error": _ERROR_SCHEMA}
        inputs: set[str] = set()  # what clients send: the text rule applies
        for ep in self.endpoints:
            op: dict[str, Any] = {
                "summary": ep.summary,
                "tags": [ep.tag],
                "operationId": ep.handler.__name__,
                "responses": {"4XX": _error_response("A client error: see error.code.")},
            }
            if ep.roles is not None:
                op["security"] = [{"bearer": []}]
                op["x-roles"] = sorted(r.value for r in ep.roles)
                op["responses"]["401"] = _error_response("Missing, expired or revoked token.")
                op["responses"]["403"] = _error_response("forbidden or consent_required.")
            if ep.body is not NoBody and not ep.raw_body and ep.query is None:
                op["requestBody"] = {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _ref(ep.body, schemas, inputs=inputs)}
                    },
                }
            if ep.raw_body:
                raw_schema = ep.raw_schema or {"type": "string", "format": "binary"}
                op["requestBody"] = {
                    "required": True,
                    "content": {ep.consumes: {"schema": raw_schema}},
                }
            if ep.query is not None:
                op["parameters"] = _query_parameters(ep.query)
            status = str(ep.status)
            if ep.produces:
                binary = {"schema": {"type": "string", "format": "binary"}}
                op["responses"][status] = {
                    "description": "OK",
                    "content": {media: binary for media in ep.produces},
                }
            elif ep.response is not None:
                op["responses"][status] = {
                    "description": "OK",
                    "content": {
                        "application/json": {
                            "schema": _ref(ep.response, schemas, mode="serialization")
                        }
                    },
                }
            else:
                op["responses"]["204" if ep.status == 200 else status] = {"description": "Done"}
            path = API_PREFIX + ep.path
            op_params = [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": TEXT_PATTERN},
                }
                for name in _path_params(ep.path)
            ]
            if op_params:
                op.setdefault("parameters", []).extend(op_params)
            paths.setdefault(path, {})[ep.method.lower()] = op
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version},
            "paths": paths,
            "components": {
                "schemas": {
                    name: _as_served(schema, sent_by_clients=name in inputs)
                    for name, schema in schemas.items()
                },
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            },
        }


def error_headers(error: TelemedError, request: web.Request | None = None) -> dict[str, str]:
    """The headers an error's status calls for, for every transport over HTTP (REST, FHIR):
    `Retry-After`, `WWW-Authenticate: Bearer` on a 401 (RFC 6750: `invalid_token` when a
    token was sent), `Allow` on a 405 (RFC 9110)."""
    headers: dict[str, str] = {}
    retry = error.details.get("retry_after_seconds")
    if retry is not None:
        headers["Retry-After"] = str(retry)
    if error.status == 401:
        challenge = 'Bearer realm="telemed"'
        if request is not None and bearer_token(request):
            challenge += ', error="invalid_token"'
        headers["WWW-Authenticate"] = challenge
    if isinstance(error, MethodNotAllowed):
        headers["Allow"] = ", ".join(error.allow)
    return headers


def bearer_token(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer ...` header, if any."""
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else None


async def read_body(request: web.Request, limit: int) -> bytes:
    """Read a JSON body of at most `limit` bytes (refusing larger ones before reading them);
    it must be a JSON object."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(limit_bytes=limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit_bytes=limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise BadRequest("The request body is empty; send a JSON object.")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    return raw


async def read_json(request: web.Request, limit: int) -> Any:
    """A JSON object body of at most `limit` bytes, parsed."""
    return json.loads(await read_body(request, limit))


def _check_path(request: web.Request) -> None:
    """Path parameters obey the same text rule as bodies (telemed/text.py)."""
    bad = [name for name, value in request.match_info.items() if has_control(value)]
    if bad:
        raise ValidationFailed(
            f"Invalid fields: {', '.join(bad)}.",
            fields=[
                {"field": n, "problem": "control character", "type": "control_character"}
                for n in bad
            ],
        )


def _validate(model: type[B], raw: bytes) -> B:
    """Strict JSON validation, as the OpenAPI document says: no `true` or `"5"` for an
    integer, no `1` for a boolean, no number for a date-time."""
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise validation_failed(exc) from None


def _validate_query(model: type[B], request: web.Request) -> B:
    """Query values are strings: read as JSON-mode strings, strictly (`limit=5`,
    `overdue=true`), never a number for a time (see QueryTime)."""
    try:
        return model.model_validate_strings(dict(request.query), strict=True)
    except ValidationError as exc:
        raise validation_failed(exc) from None


_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(?P<offset>[Zz]|[+-]\d{2}:?\d{2})?"
)
_ISO_ONLY = "an ISO 8601 date-time, e.g. 2026-01-20T09:00:00+03:00"


def _local_query_time(value: Any) -> Any:
    if isinstance(value, str):
        if not (_DATE_ONLY.fullmatch(value) or _DATE_TIME.fullmatch(value)):
            raise ValueError(f"expected {_ISO_ONLY} or a date")
        return datetime.fromisoformat(value)
    return value


def _aware_query_time(value: Any) -> Any:
    if isinstance(value, str):
        found = _DATE_TIME.fullmatch(value)
        if found is None or found["offset"] is None:
            raise ValueError(f"expected {_ISO_ONLY} with its offset")
        return datetime.fromisoformat(value)
    return value


QueryTime = Annotated[
    datetime,
    BeforeValidator(_local_query_time),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "string", "format": "date"},
            ],
            "description": "ISO 8601; a date, or a time without an offset, is local time",
        }
    ),
]
"""A time in a query string, ISO 8601 only: pydantic alone takes `0.5` for a Unix time."""

AwareQueryTime = Annotated[
    datetime,
    BeforeValidator(_aware_query_time),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A time in a query string with its offset (RFC 3339)."""


def validation_failed(exc: ValidationError) -> TelemedError:
    """A pydantic error as our `validation_error`, naming the fields (never echoing values)."""
    fields = [
        {"field": ".".join(str(p) for p in err["loc"]), "problem": err["msg"], "type": err["type"]}
        for err in exc.errors(include_input=False, include_url=False)
    ]
    names = ", ".join(f["field"] for f in fields) or "body"
    return ValidationFailed(f"Invalid fields: {names}.", fields=fields)


def _ref(
    model: type[BaseModel],
    schemas: dict[str, Any],
    mode: JsonSchemaMode = "validation",
    inputs: set[str] | None = None,
) -> dict[str, str]:
    """The model's schema under components (responses as serialised: aliases like `from`);
    the names of a request's schemas are added to `inputs`."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
    for name, sub in schema.pop("$defs", {}).items():
        schemas.setdefault(name, sub)
        if inputs is not None:
            inputs.add(name)
    schemas[model.__name__] = schema
    if inputs is not None:
        inputs.add(model.__name__)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(by_alias=True)
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": _not_null(prop)}
        for name, prop in schema.get("properties", {}).items()
    ]


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query value is never null (an absent parameter is): drop pydantic's null branch."""
    out = {k: v for k, v in schema.items() if not (k == "default" and v is None)}
    branches = out.pop("anyOf", None)
    if branches is not None:
        kept = [b for b in branches if b != {"type": "null"}]
        if len(kept) == 1:
            out.update(kept[0])
        else:
            out["anyOf"] = kept
    served: dict[str, Any] = _as_served(out)
    return served


# The text rule of telemed/text.py as JSON Schema: none of C0 but tab, newline and carriage
# return, no DEL; a required text also has a character that is not white space (strings
# are stripped before `minLength` is checked).
_ALLOWED = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
OPTIONAL_TEXT_PATTERN = rf"^{_ALLOWED}*$"
TEXT_PATTERN = rf"^{_ALLOWED}*[^\s\x00-\x1f\x7f]{_ALLOWED}*$"


def _as_served(schema: Any, sent_by_clients: bool = True) -> Any:
    """A pydantic schema as the server applies it: strings are stripped before `minLength`
    is checked, so a required text is not blank; what clients send also obeys the text rule
    (no control characters)."""
    if isinstance(schema, list):
        return [_as_served(item, sent_by_clients) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _as_served(value, sent_by_clients) for key, value in schema.items()}
    if out.get("type") != "string" or {"pattern", "enum", "format", "const"} & set(out):
        return out
    required = out.get("minLength", 0) >= 1
    if sent_by_clients:
        out["pattern"] = TEXT_PATTERN if required else OPTIONAL_TEXT_PATTERN
    elif required:
        out["pattern"] = r"\S"
    return out


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
