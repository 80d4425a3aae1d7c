"""One error tree for every failure a client can cause.

Each error has a fixed snake_case `code`, a human `message` and the HTTP
status it maps to. Transports map it once: REST bodies
`{"error": {"code", "message"}}`, Socket.IO acks `{ok: false, error}`,
refused handshakes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar


class TelemedError(Exception):
    """Base of every client-visible failure."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400
    default_message: ClassVar[str] = "The request failed."

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.default_message
        self.details = details
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        """The `error` object of CONTRACT.md."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class BadRequest(TelemedError):
    code = "bad_request"
    default_message = "The request could not be read."


class ValidationFailed(TelemedError):
    code = "validation_error"
    status = 422
    default_message = "The request has invalid fields."


class PayloadTooLarge(TelemedError):
    code = "payload_too_large"
    status = 413
    default_message = "The request body is too large."


class Unauthorized(TelemedError):
    code = "unauthorized"
    status = 401
    default_message = "Log in first."


class Forbidden(TelemedError):
    code = "forbidden"
    status = 403
    default_message = "You are not allowed to do this."


class ConsentRequired(TelemedError):
    code = "consent_required"
    status = 403
    default_message = "Accept the consent to personal data processing first."


class NotFound(TelemedError):
    code = "not_found"
    status = 404
    default_message = "Not found."


class MethodNotAllowed(TelemedError):
    code = "method_not_allowed"
    status = 405
    default_message = "This method is not allowed here."

    def __init__(self, allow: Iterable[str], message: str | None = None) -> None:
        super().__init__(message)
        self.allow = sorted(set(allow))  # the `Allow` header a 405 must carry (RFC 9110)


class Conflict(TelemedError):
    code = "conflict"
    status = 409
    default_message = "The request conflicts with the current state."


class InvalidState(Conflict):
    code = "invalid_state"
    default_message = "This action is not possible in the current state."


class AlreadyTaken(Conflict):
    code = "already_taken"
    default_message = "Somebody else has already taken this patient."


class NotEligible(TelemedError):
    code = "not_eligible"
    status = 422
    default_message = "The patient is not eligible for this service."


class RateLimited(TelemedError):
    code = "rate_limited"
    status = 429
    default_message = "Too many requests; try again later."


class InvalidCode(TelemedError):
    code = "invalid_code"
    status = 401
    default_message = "The code is wrong or has expired."


class TooManyAttempts(TelemedError):
    code = "too_many_attempts"
    status = 429
    default_message = "Too many wrong codes; ask for a new one."


class InvalidCredentials(TelemedError):
    code = "invalid_credentials"
    status = 401
    default_message = "Wrong login or password."


class InternalError(TelemedError):
    code = "internal_error"
    status = 500
    default_message = "Something went wrong on our side."
