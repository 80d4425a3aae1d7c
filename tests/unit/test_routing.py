"""Age routing to the duty doctor (R-ROUTE-1)."""

from __future__ import annotations

from datetime import date

import pytest

from telemed.errors import NotEligible
from telemed.roles import Role
from telemed.routing import age_on, duty_role_for

DEFAULT_AGES = (1, 17)


def test_a_patient_one_day_short_of_eighteen_goes_to_a_paediatrician() -> None:
    """R-ROUTE-1: 17 years and 364 days is still a child."""
    born = date(2008, 3, 15)
    on = date(2026, 3, 14)
    assert age_on(born, on) == 17
    assert duty_role_for(born, on, DEFAULT_AGES) is Role.PAEDIATRICIAN


def test_a_patient_on_their_eighteenth_birthday_goes_to_a_therapist() -> None:
    """R-ROUTE-1: 18 exactly, on the birthday, is an adult."""
    born = date(2008, 3, 15)
    on = date(2026, 3, 15)
    assert age_on(born, on) == 18
    assert duty_role_for(born, on, DEFAULT_AGES) is Role.THERAPIST


def test_a_patient_on_their_first_birthday_goes_to_a_paediatrician() -> None:
    """R-ROUTE-1: 1 exactly is the youngest age the duty paediatrician takes."""
    born = date(2025, 3, 15)
    on = date(2026, 3, 15)
    assert age_on(born, on) == 1
    assert duty_role_for(born, on, DEFAULT_AGES) is Role.PAEDIATRICIAN


def test_a_baby_of_364_days_is_not_eligible_with_a_reason_for_the_consultant() -> None:
    """R-ROUTE-1: under 1 year no duty doctor; the consultant is told what to do instead."""
    born = date(2025, 3, 16)
    on = date(2026, 3, 15)
    assert (on - born).days == 364
    assert age_on(born, on) == 0
    with pytest.raises(NotEligible) as info:
        duty_role_for(born, on, DEFAULT_AGES)
    assert info.value.code == "not_eligible"
    assert info.value.message == (
        "Patients under 1 year are not eligible for transfer to a duty doctor; "
        "book a paediatrician by appointment."
    )


def test_a_newborn_on_the_day_of_birth_is_not_eligible() -> None:
    """R-ROUTE-1: age 0 on the day of birth."""
    born = date(2026, 3, 15)
    assert age_on(born, born) == 0
    with pytest.raises(NotEligible):
        duty_role_for(born, born, DEFAULT_AGES)


def test_a_birth_date_in_the_future_is_not_eligible() -> None:
    """R-ROUTE-1: a record with a future birth date cannot be routed; the consultant fixes it."""
    with pytest.raises(NotEligible, match="after the consultation date"):
        duty_role_for(date(2026, 3, 16), date(2026, 3, 15), DEFAULT_AGES)
    with pytest.raises(ValueError):
        age_on(date(2026, 3, 16), date(2026, 3, 15))


@pytest.mark.parametrize(
    ("on", "age"),
    [
        (date(2025, 2, 28), 16),
        (date(2025, 3, 1), 17),
        (date(2028, 2, 28), 19),
        (date(2028, 2, 29), 20),
    ],
)
def test_a_leap_day_birthday_counts_from_march_first_in_common_years(on: date, age: int) -> None:
    """R-ROUTE-1: born Feb 29, a year older on Mar 1 in a common year, on Feb 29 in a leap one."""
    assert age_on(date(2008, 2, 29), on) == age


def test_a_leap_day_child_turns_adult_on_march_first() -> None:
    """R-ROUTE-1: born Feb 29 2008, still a child on Feb 28 2026, an adult on Mar 1 2026."""
    born = date(2008, 2, 29)
    assert duty_role_for(born, date(2026, 2, 28), DEFAULT_AGES) is Role.PAEDIATRICIAN
    assert duty_role_for(born, date(2026, 3, 1), DEFAULT_AGES) is Role.THERAPIST


def test_a_leap_day_baby_turns_one_on_march_first() -> None:
    """R-ROUTE-1: born Feb 29 2024, not yet eligible on Feb 28 2025, eligible on Mar 1 2025."""
    born = date(2024, 2, 29)
    with pytest.raises(NotEligible):
        duty_role_for(born, date(2025, 2, 28), DEFAULT_AGES)
    assert duty_role_for(born, date(2025, 3, 1), DEFAULT_AGES) is Role.PAEDIATRICIAN


@pytest.mark.parametrize(
    ("born", "role"),
    [
        (date(2011, 3, 16), Role.PAEDIATRICIAN),  # 14
        (date(2011, 3, 15), Role.PAEDIATRICIAN),  # 15 today
        (date(2010, 3, 16), Role.PAEDIATRICIAN),  # 15, one day short of 16
        (date(2010, 3, 15), Role.THERAPIST),  # 16 today
        (date(2009, 3, 15), Role.THERAPIST),  # 17: an adult under these ages
    ],
)
def test_configured_paediatric_ages_move_the_boundary(born: date, role: Role) -> None:
    """R-ROUTE-1: with paediatric_ages (1, 15) from config.yaml, 16 is an adult."""
    assert duty_role_for(born, date(2026, 3, 15), (1, 15)) is role


def test_a_configured_youngest_age_is_named_in_the_refusal() -> None:
    """R-ROUTE-1: with paediatric_ages (3, 17), the consultant hears "under 3 years"."""
    with pytest.raises(NotEligible, match=r"^Patients under 3 years are not eligible"):
        duty_role_for(date(2024, 3, 16), date(2026, 3, 15), (3, 17))


def test_a_youngest_age_of_zero_routes_a_newborn_to_a_paediatrician() -> None:
    """R-ROUTE-1: the under-one rule is configurable; (0, 17) takes every child."""
    born = date(2026, 3, 15)
    assert duty_role_for(born, born, (0, 17)) is Role.PAEDIATRICIAN


@pytest.mark.parametrize("ages", [(18, 17), (-1, 17)])
def test_paediatric_ages_out_of_order_are_a_configuration_error(ages: tuple[int, int]) -> None:
    """R-ROUTE-1: the age range must run low to high from zero; anything else is a bad config."""
    with pytest.raises(ValueError, match="paediatric_ages"):
        duty_role_for(date(2010, 1, 1), date(2026, 1, 1), ages)
