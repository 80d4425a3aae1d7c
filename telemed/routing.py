"""Age routing: which duty doctor takes a patient transferred by the consultant (R-ROUTE-1)."""

from __future__ import annotations

from datetime import date

from telemed.errors import NotEligible
from telemed.roles import Role


def age_on(birth_date: date, on: date) -> int:
    """Full years of age on a date; a Feb 29 birthday counts as Mar 1 in common years."""
    if birth_date > on:
        raise ValueError(f"birth date {birth_date} is after {on}")
    # Comparing (month, day) pairs makes a Feb 29 birthday fall after Feb 28,
    # so the year is added on Mar 1 in a common year.
    before_birthday = (on.month, on.day) < (birth_date.month, birth_date.day)
    return on.year - birth_date.year - int(before_birthday)


def duty_role_for(birth_date: date, on: date, paediatric_ages: tuple[int, int]) -> Role:
    """The duty doctor's role for a patient's age on the consultation date (R-ROUTE-1)."""
    youngest, oldest = paediatric_ages
    if not 0 <= youngest <= oldest:
        raise ValueError(f"paediatric_ages must be two ages, low to high: {paediatric_ages}")
    if birth_date > on:
        raise NotEligible(
            f"The date of birth {birth_date.isoformat()} is after the consultation date "
            f"{on.isoformat()}; correct the patient's record before the transfer."
        )
    age = age_on(birth_date, on)
    if age < youngest:
        years = "year" if youngest == 1 else "years"
        raise NotEligible(
            f"Patients under {youngest} {years} are not eligible for transfer to a duty "
            "doctor; book a paediatrician by appointment."
        )
    if age <= oldest:
        return Role.PAEDIATRICIAN
    return Role.THERAPIST
