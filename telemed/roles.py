"""Who can act in telemed: the patient, each staff role, and the system (scheduler)."""

from enum import StrEnum


class Role(StrEnum):
    """Roles of CONTRACT.md plus `patient` and `system` (the scheduler acting on deadlines)."""

    PATIENT = "patient"
    CONSULTANT = "consultant"
    THERAPIST = "therapist"
    PAEDIATRICIAN = "paediatrician"
    SPECIALIST = "specialist"
    PSYCHOLOGIST = "psychologist"
    ADMIN = "admin"
    SYSTEM = "system"


STAFF_ROLES: frozenset[Role] = frozenset(
    {
        Role.CONSULTANT,
        Role.THERAPIST,
        Role.PAEDIATRICIAN,
        Role.SPECIALIST,
        Role.PSYCHOLOGIST,
        Role.ADMIN,
    }
)
DOCTOR_ROLES: frozenset[Role] = frozenset(
    {Role.THERAPIST, Role.PAEDIATRICIAN, Role.SPECIALIST, Role.PSYCHOLOGIST}
)
DUTY_DOCTOR_ROLES: frozenset[Role] = frozenset({Role.THERAPIST, Role.PAEDIATRICIAN})
