"""Versioned consent texts (R-CONSENT-1), shipped with the code.

Files are named `VERSION.LANG.md`; the greatest version is current. An
acceptance records the version and the SHA-256 of the Russian text (the
legally binding one) so what was accepted can be proven later.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

_DIR = Path(__file__).parent
BINDING_LANGUAGE = "ru"


@dataclass(frozen=True)
class ConsentText:
    version: str
    language: str
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@cache
def _texts() -> dict[tuple[str, str], ConsentText]:
    texts = {}
    for file in _DIR.glob("*.md"):
        version, language = file.name.removesuffix(".md").rsplit(".", 1)
        texts[(version, language)] = ConsentText(version, language, file.read_text("utf-8"))
    return texts


def current_version() -> str:
    """The version patients must have accepted now."""
    return max(version for version, _ in _texts())


def consent_text(language: str = BINDING_LANGUAGE, version: str | None = None) -> ConsentText:
    """The text of a version in a language, falling back to the binding language."""
    chosen = version or current_version()
    texts = _texts()
    return texts.get((chosen, language)) or texts[(chosen, BINDING_LANGUAGE)]
