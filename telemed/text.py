"""Text a client may send: no control characters, one shared rule for REST and sockets.

NUL and the other C0 control characters (tab, newline and carriage return aside), DEL,
and lone UTF-16 surrogates (which JSON's `\\ud800` escapes can carry) have no place in
any field: PostgreSQL refuses NUL and surrogates in text, which used to surface as a 500
with the statement's parameters in the log. They are refused as `validation_error`
before a service sees them, in every REST body, query and path parameter and every
socket payload.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic_core import PydanticCustomError

FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
MAX_DEPTH = 32


def has_control(text: str) -> bool:
    """Whether `text` holds a character no field accepts."""
    return FORBIDDEN.search(text) is not None


def find_control(value: Any, depth: int = 0) -> bool:
    """Whether a decoded JSON value holds such a character, in any string or key."""
    if isinstance(value, str):
        return has_control(value)
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return any(
            find_control(k, depth + 1) or find_control(v, depth + 1) for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return any(find_control(v, depth + 1) for v in value)
    return False


def refuse_control(value: Any) -> Any:
    """A field validator: the value unchanged, or a `control_character` error."""
    if find_control(value):
        raise PydanticCustomError(
            "control_character", "Control characters (such as NUL) are not allowed."
        )
    return value


class CleanModel(BaseModel):
    """Base of everything a client sends: unknown fields refused, whitespace stripped,
    control characters refused in every field (nested values included)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        return refuse_control(value)
