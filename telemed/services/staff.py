"""Staff accounts: consultants, doctors and administrators."""

from __future__ import annotations

from sqlalchemy import select

from telemed.clock import Clock
from telemed.db import Database
from telemed.errors import Conflict, ValidationFailed
from telemed.models import Staff
from telemed.roles import STAFF_ROLES, Role
from telemed.security import hash_password
from telemed.services.audit import Who, record

MIN_PASSWORD = 8


class LoginTaken(Conflict):
    code = "login_taken"
    default_message = "This login is already used."


async def add_staff(
    db: Database,
    clock: Clock,
    *,
    role: Role,
    login: str,
    password: str,
    full_name: str,
    who: Who,
    update_existing: bool = False,
) -> Staff:
    """Create a staff account (or, with `update_existing`, reset its role, name and password)."""
    if role not in STAFF_ROLES:
        raise ValidationFailed(f"role must be one of {', '.join(sorted(STAFF_ROLES))}")
    login = login.strip()
    if not login or len(login) > 64:
        raise ValidationFailed("login must be 1 to 64 characters")
    if len(password) < MIN_PASSWORD:
        raise ValidationFailed(f"password must be at least {MIN_PASSWORD} characters")
    password_hash = await hash_password(password)
    now = clock.now()
    async with db.write() as session:
        staff = await session.scalar(select(Staff).where(Staff.login == login))
        if staff is not None and not update_existing:
            raise LoginTaken()
        if staff is None:
            staff = Staff(login=login, created_at=now, active=True)
            session.add(staff)
        staff.role = role.value
        staff.full_name = full_name.strip() or login
        staff.password_hash = password_hash
        await session.flush()
        record(
            session,
            at=now,
            who=who,
            action="staff_add",
            object_type="staff",
            object_id=staff.id,
            detail={"role": role.value},
        )
    return staff
