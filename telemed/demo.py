"""Demo data for a first look: two insured patients (an adult and a child) and one
account per staff role. Loading it twice changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time

from sqlalchemy import select

from telemed.clock import Clock
from telemed.config import RulesSettings
from telemed.db import Database
from telemed.models import Staff
from telemed.roles import DOCTOR_ROLES, Role
from telemed.services import insured
from telemed.services.appointments import AppointmentService, Hours
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


WEEKDAY_HOURS = [Hours(day, time(9, 0), time(18, 0)) for day in range(5)]  # Mon-Fri, Moscow


async def _open_demo_slots(db: Database, clock: Clock, who: Who) -> int:
    """Weekday hours for every demo doctor: 15-minute slots for the next two weeks."""
    service = AppointmentService(db, clock, RulesSettings())
    opened = 0
    async with db.read() as session:
        doctors = (
            await session.scalars(
                select(Staff.id).where(
                    Staff.login.in_([s.login for s in DEMO_STAFF if s.role in DOCTOR_ROLES])
                )
            )
        ).all()
    for doctor_id in doctors:
        opened += await service.set_working_hours(
            doctor_id,
            WEEKDAY_HOURS,
            zone="Europe/Moscow",
            slot_minutes=15,
            days_ahead=14,
            who=who,
        )
    return opened


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
    slots = await _open_demo_slots(db, clock, who)
    lines = [
        f"Demo data loaded: {len(DEMO_STAFF)} staff, 2 patients, {slots} free slots.",
        "Patients log in with phone + SMS code; with sms.backend=log the code is printed",
        "in the service log (look for 'DEV SMS').",
        f"  adult patient: phone {DEMO_PATIENT_PHONES[0]} (Иванов Иван Петрович, 1985)",
        f"  child patient: phone {DEMO_PATIENT_PHONES[1]} (Петрова Анна Сергеевна, 2016)",
        "Staff log in with login / password (POST /api/v1/auth/staff):",
    ]
    lines += [f"  {s.role.value:<14} {s.login} / {s.password}" for s in DEMO_STAFF]
    return "\n".join(lines)
