"""Versioned consent texts (R-CONSENT-1), shipped with the code.

Files are named `VERSION.LANG.md` (the insured person's own consent) or
`VERSION.representative.LANG.md` (a legal representative acting for an
insured child under 18); the greatest version is current. An acceptance
records the version and the SHA-256 of the Russian text of the variant
accepted (the legally binding one) so what was accepted can be proven later.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import cache
from pathlib import Path

from telemed.routing import age_on

_DIR = Path(__file__).parent
BINDING_LANGUAGE = "ru"
ADULT_AGE = 18  # below it a legal representative consents for the insured person


class Variant(StrEnum):
    """Who gives the consent: the insured person, or a representative for a child."""

    SELF = "self"
    REPRESENTATIVE = "representative"


def variant_for(birth_date: date, today: date) -> Variant:
    """A child's consent is given by their representative (a parent on the same phone)."""
    return Variant.REPRESENTATIVE if age_on(birth_date, today) < ADULT_AGE else Variant.SELF


@dataclass(frozen=True)
class ConsentText:
    version: str
    language: str
    text: str
    variant: Variant = Variant.SELF

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@cache
def _texts() -> dict[tuple[str, Variant, str], ConsentText]:
    texts = {}
    for file in _DIR.glob("*.md"):
        version, *middle, language = file.name.removesuffix(".md").split(".")
        variant = Variant(middle[0]) if middle else Variant.SELF
        text = ConsentText(version, language, file.read_text("utf-8"), variant)
        texts[(version, variant, language)] = text
    return texts


def current_version() -> str:
    """The version patients must have accepted now."""
    return max(version for version, _, _ in _texts())


def consent_text(
    language: str = BINDING_LANGUAGE,
    version: str | None = None,
    variant: Variant = Variant.SELF,
) -> ConsentText:
    """The text of a version and variant in a language, falling back to the binding
    language."""
    chosen = version or current_version()
    texts = _texts()
    return texts.get((chosen, variant, language)) or texts[(chosen, variant, BINDING_LANGUAGE)]
