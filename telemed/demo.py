"""Demo data for a first look: two insured patients (an adult and a child) and one
account per staff role. Loading it twice changes nothing."""

from __future__ import annotations

from dataclasses import dataclass

from telemed.clock import Clock
from telemed.db import Database
from telemed.roles import Role
from telemed.services import insured
from telemed.services.audit import Who
from telemed.services.staff import add_staff

DEMO_CSV = """policy_number,purchased_on,valid_from,valid_to,full_name,birth_date,sex,phone
DEMO-0001,2026-01-10,2026-01-10,2030-12-31,Иванов Иван Петрович,1985-04-12,M,+7 916 111-00-01
DEMO-0002,2026-01-10,2026-01-10,2030-12-31,Петрова Анна Сергеевна,2016-05-20,F,+7 916 111-00-02
"""


@dataclass(frozen=True)
class DemoStaff:
    role: Role
    login: str
    password: str
    full_name: str


DEMO_STAFF = [
    DemoStaff(Role.CONSULTANT, "consultant", "demo-consultant", "Медконсультант Смирнова О. В."),
    DemoStaff(Role.THERAPIST, "therapist", "demo-therapist", "Терапевт Кузнецов А. А."),
    DemoStaff(Role.PAEDIATRICIAN, "paediatrician", "demo-paediatrician", "Педиатр Орлова Е. Н."),
    DemoStaff(Role.SPECIALIST, "specialist", "demo-specialist", "Кардиолог Волков Д. И."),
    DemoStaff(Role.PSYCHOLOGIST, "psychologist", "demo-psychologist", "Психолог Белова М. С."),
    DemoStaff(Role.ADMIN, "admin", "demo-admin", "Администратор"),
]
DEMO_PATIENT_PHONES = ["+79161110001", "+79161110002"]


async def load_demo(db: Database, clock: Clock) -> str:
    """Load the demo data and return the text telling how to log in as each role."""
    who = Who(Role.SYSTEM.value, None)
    parsed = insured.parse_insured_csv(DEMO_CSV.encode(), today=insured.local_today(clock))
    await insured.import_insured(db, clock, parsed, who=who)
    for s in DEMO_STAFF:
        await add_staff(
            db,
            clock,
            role=s.role,
            login=s.login,
            password=s.password,
            full_name=s.full_name,
            who=who,
            update_existing=True,
        )
    lines = [
        "Demo data loaded.",
        "Patients log in with phone + SMS code; with sms.backend=log the code is printed",
        "in the service log (look for 'DEV SMS').",
        f"  adult patient: phone {DEMO_PATIENT_PHONES[0]} (Иванов Иван Петрович, 1985)",
        f"  child patient: phone {DEMO_PATIENT_PHONES[1]} (Петрова Анна Сергеевна, 2016)",
        "Staff log in with login / password (POST /api/v1/auth/staff):",
    ]
    lines += [f"  {s.role.value:<14} {s.login} / {s.password}" for s in DEMO_STAFF]
    return "\n".join(lines)
