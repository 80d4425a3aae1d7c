"""Phone numbers: one normal form (E.164) for storage and lookups, a masked form for logs.

A raw phone number is personal data: it never goes into a log or an error
message; code that must mention a number logs `mask_phone(e164)`.
"""

from __future__ import annotations

import phonenumbers

from telemed.errors import ValidationFailed

MAX_RAW_LENGTH = 32
"""Longer input is refused before parsing: no real number needs more, even with spaces."""

_MASK = "***"


def _invalid(reason: str) -> ValidationFailed:
    """A `ValidationFailed` for the `phone` field; `reason` must not quote the input."""
    return ValidationFailed(f"The value is not a phone number: {reason}.", field="phone")


def normalize_phone(raw: str, default_region: str = "RU") -> str:
    """Parse a phone number in any common form and return it as E.164 (`+79161234567`).

    Numbers without a country code are read as numbers of `default_region`
    (so `8 916 123 45 67` is Russian). Raises `ValidationFailed` (field
    `phone`) for anything that is not a valid number; the message never
    repeats the input.
    """
    if not isinstance(raw, str):
        raise _invalid("expected a string")
    text = raw.strip()
    if not text:
        raise _invalid("it is empty")
    if len(text) > MAX_RAW_LENGTH:
        raise _invalid(f"it is longer than {MAX_RAW_LENGTH} characters")
    # phonenumbers would read letters as a vanity number (1-800-FLOWERS) or an
    # extension ("ext. 12"); neither can receive an SMS, so letters are refused.
    if any(ch.isalpha() for ch in text):
        raise _invalid("letters are not allowed")
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        # `from None`: keep the parser's context (which may echo the input) out of tracebacks.
        raise _invalid("it cannot be read as a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise _invalid("no such number exists")
    e164: str = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164


def mask_phone(e164: str) -> str:
    """Hide the middle digits of a number (`+79161234567` -> `+7916***4567`) for logs.

    Accepts any string (a device token too) and never returns it whole.
    """
    if len(e164) >= 10:
        return f"{e164[:5]}{_MASK}{e164[-4:]}"
    if len(e164) >= 6:
        return f"{e164[:2]}{_MASK}{e164[-2:]}"
    return _MASK
