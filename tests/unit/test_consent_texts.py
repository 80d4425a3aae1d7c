"""The consent texts (R-CONSENT-1): who consents, and that every variant exists in every
language the pages speak."""

from __future__ import annotations

from datetime import date

from telemed.consent import Variant, consent_text, current_version, variant_for


def test_a_representative_consents_for_a_child_until_the_eighteenth_birthday() -> None:
    """Under 18 a legal representative gives the consent; from the birthday on, the person."""
    born = date(2008, 3, 1)
    assert variant_for(born, date(2026, 2, 28)) is Variant.REPRESENTATIVE
    assert variant_for(born, date(2026, 3, 1)) is Variant.SELF
    assert variant_for(date(2025, 12, 1), date(2026, 1, 15)) is Variant.REPRESENTATIVE


def test_every_variant_of_the_current_version_is_there_in_russian_and_english() -> None:
    """Both variants exist in both languages, and they are different texts."""
    for variant in Variant:
        for language in ("ru", "en"):
            text = consent_text(language, variant=variant)
            assert (text.version, text.variant, text.language) == (
                current_version(),
                variant,
                language,
            )
    assert consent_text(variant=Variant.REPRESENTATIVE).sha256 != consent_text().sha256
    assert "представитель" in consent_text(variant=Variant.REPRESENTATIVE).text
