"""normalize_phone reads every common form into E.164; mask_phone hides the middle."""

from __future__ import annotations

import pytest

from telemed.errors import ValidationFailed
from telemed.phone import mask_phone, normalize_phone


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+7 (916) 123-45-67", "+79161234567"),
        ("8 916 123 45 67", "+79161234567"),
        ("79161234567", "+79161234567"),
        ("9161234567", "+79161234567"),
        ("  +7 916 123-45-67  ", "+79161234567"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+1 650 253 0000", "+16502530000"),
    ],
)
def test_common_forms_normalize_to_e164(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


def test_a_national_number_is_read_in_the_given_region() -> None:
    assert normalize_phone("020 7946 0958", default_region="GB") == "+442079460958"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "+7 916 ABC 45 67",
        "1-800-FLOWERS",
        "+7 916 123 45 67 ext 12",
        "123",
        "+7 000",
        "+7 916 123 45 67 89",
    ],
)
def test_what_is_not_a_phone_number_is_refused(raw: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        normalize_phone(raw)
    assert info.value.details == {"field": "phone"}
    assert info.value.code == "validation_error"


def test_input_longer_than_32_characters_is_refused_even_if_it_holds_a_number() -> None:
    raw = "+7 (916) 123 - 45 - 67" + "-" * 11
    assert len(raw) > 32
    with pytest.raises(ValidationFailed, match="longer than 32"):
        normalize_phone(raw)


@pytest.mark.parametrize("raw", ["+7 916 ABC 45 67", "+7 000", "+79161234567999999999999999999999"])
def test_the_error_never_repeats_the_input(raw: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        normalize_phone(raw)
    digits = "".join(ch for ch in raw if ch.isdigit())
    assert raw not in str(info.value)
    assert digits not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ or info.value.__context__ is None


def test_a_non_string_is_refused() -> None:
    with pytest.raises(ValidationFailed):
        normalize_phone(79161234567)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("e164", "masked"),
    [
        ("+79161234567", "+7916***4567"),
        ("+442079460958", "+4420***0958"),
        ("+3712345", "+3***45"),
        ("+123", "***"),
    ],
)
def test_mask_hides_the_middle_digits(e164: str, masked: str) -> None:
    assert mask_phone(e164) == masked
