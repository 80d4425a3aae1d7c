"""Access: SMS one-time codes for patients (R-AUTH-1), passwords for staff, bearer tokens.

Every phone number gets the same answer and the same limits whether or not
it belongs to an insured person: rows are kept for unknown numbers too, and
the SMS is sent in the background so the answer takes the same time.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from telemed.clock import Clock
from telemed.config import AuthSettings
from telemed.db import Database
from telemed.errors import (
    InvalidCode,
    InvalidCredentials,
    NotFound,
    RateLimited,
    TooManyAttempts,
    Unauthorized,
)
from telemed.events import AccessEnded, EndReason
from telemed.events import record as record_event
from telemed.models import AuditEntry, AuthToken, OtpCode, Patient, ServerKey, Staff
from telemed.notify import OutboundMessage, Sender
from telemed.phone import mask_phone, normalize_phone
from telemed.roles import Role
from telemed.security import (
    new_otp,
    new_token,
    otp_digest,
    same,
    token_digest,
    verify_password,
)
from telemed.services.audit import Who, record

log = logging.getLogger("telemed.auth")

OTP_KEY_NAME = "otp_hmac"
SMS_TEXT = "Код входа в телемедицину: {code}. Никому его не сообщайте."


class OtpCooldown(RateLimited):
    code = "otp_cooldown"
    default_message = "A code was sent a moment ago; wait before asking for another."


@dataclass(frozen=True)
class Caller:
    """Who is asking: established from a bearer token on every request."""

    role: Role
    id: str
    token_id: str
    expires_at: datetime

    @property
    def is_patient(self) -> bool:
        return self.role is Role.PATIENT


@dataclass(frozen=True)
class IssuedToken:
    token: str
    role: Role
    user_id: str
    expires_at: datetime
    patients: list[dict[str, str]] = field(default_factory=list)


async def ensure_server_key(
    db: Database,
    name: str,
    configured: str | None,
    make: Callable[[], str] = lambda: secrets.token_urlsafe(32),
) -> str:
    """A secret shared by every node: the configured one, else made once (`make`) and kept."""
    if configured:
        return configured
    async with db.read() as session:
        found = await session.get(ServerKey, name)
        if found is not None:
            return found.value
    try:
        async with db.write() as session:
            session.add(ServerKey(name=name, value=make()))
    except Exception:  # another node created it first: read theirs
        log.info("server key %s created concurrently; using the stored one", name)
    async with db.read() as session:
        stored = await session.get(ServerKey, name)
        assert stored is not None
        return stored.value


class AuthService:
    """OTP login, staff login, token checks and logout."""

    def __init__(
        self, db: Database, clock: Clock, settings: AuthSettings, sms: Sender, otp_key: str
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.sms = sms
        self._otp_key = otp_key
        self._sending: set[asyncio.Task[None]] = set()

    # --- patients: phone + SMS code (R-AUTH-1) ---------------------------------------

    async def request_code(self, raw_phone: str, client_addr: str) -> timedelta:
        """Issue a code for a phone; send it only if the phone is registered.

        Returns the resend cooldown so clients can show a countdown.
        """
        phone = normalize_phone(raw_phone)
        now = self.clock.now()
        s = self.settings
        hour_ago = now - timedelta(hours=1)
        async with self.db.write() as session:
            last = await session.scalar(
                select(func.max(OtpCode.created_at)).where(OtpCode.phone == phone)
            )
            if last is not None and now - last < s.otp_resend_cooldown:
                wait = s.otp_resend_cooldown - (now - last)
                raise OtpCooldown(retry_after_seconds=_ceil_seconds(wait))
            per_phone = await _count(session, OtpCode.phone == phone, hour_ago)
            if per_phone >= s.otp_per_phone_per_hour:
                raise RateLimited(retry_after_seconds=3600)
            per_addr = await _count(session, OtpCode.client_addr == client_addr, hour_ago)
            if per_addr >= s.otp_per_address_per_hour:
                raise RateLimited(retry_after_seconds=3600)
            # A new code replaces the older ones: tries don't add up across codes.
            await session.execute(
                update(OtpCode)
                .where(OtpCode.phone == phone, OtpCode.consumed_at.is_(None))
                .values(consumed_at=now)
            )
            code = new_otp(s.otp_length)
            row = OtpCode(
                id=secrets.token_hex(16),
                phone=phone,
                client_addr=client_addr,
                created_at=now,
                expires_at=now + s.otp_ttl,
                attempts=0,
            )
            row.code_hash = otp_digest(self._otp_key, phone, row.id, code)
            session.add(row)
            known = await session.scalar(select(Patient.id).where(Patient.phone == phone).limit(1))
        if known is not None:
            self._send_later(OutboundMessage(to=phone, text=SMS_TEXT.format(code=code), code=code))
        log.info("otp issued for %s", mask_phone(phone))
        return s.otp_resend_cooldown

    def _send_later(self, message: OutboundMessage) -> None:
        task = asyncio.create_task(self._send(message))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, message: OutboundMessage) -> None:
        try:
            await self.sms.send(message)
        except Exception:
            log.exception("SMS to %s failed", mask_phone(message.to))

    async def drain(self) -> None:
        """Wait for SMS still being sent (at shutdown, and in tests)."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def verify_code(self, raw_phone: str, code: str, client_addr: str) -> IssuedToken:
        """Check a code: single use, expiring, at most `otp_max_attempts` tries."""
        phone = normalize_phone(raw_phone)
        now = self.clock.now()
        failure: Exception | None = None
        patient: Patient | None = None
        async with self.db.write() as session:
            row = await session.scalar(
                select(OtpCode)
                .where(OtpCode.phone == phone, OtpCode.consumed_at.is_(None))
                .order_by(OtpCode.created_at.desc())
                .limit(1)
            )
            if row is None or row.expires_at <= now:
                failure = InvalidCode()
            elif row.attempts >= self.settings.otp_max_attempts:
                failure = TooManyAttempts()
            elif not same(row.code_hash, otp_digest(self._otp_key, phone, row.id, code.strip())):
                row.attempts += 1
                left = self.settings.otp_max_attempts - row.attempts
                failure = InvalidCode(attempts_left=left) if left else TooManyAttempts()
            else:
                row.consumed_at = now
                patients = (
                    await session.scalars(
                        select(Patient).where(Patient.phone == phone).order_by(Patient.birth_date)
                    )
                ).all()
                if not patients:
                    failure = InvalidCode()
                else:
                    patient = patients[0]
                    issued = await self._issue(session, Role.PATIENT, patient.id, now)
                    issued.patients.extend(
                        {"patient_id": p.id, "full_name": p.full_name} for p in patients
                    )
            record(
                session,
                at=now,
                who=Who(Role.PATIENT, patient.id if patient else None, client_addr),
                action="login_otp",
                object_type="session",
                object_id=None,
                outcome="ok" if failure is None else getattr(failure, "code", "error"),
            )
        if failure is not None:
            raise failure
        return issued

    async def switch_patient(self, caller: Caller, patient_id: str) -> IssuedToken:
        """Act as another insured person registered on the same phone (a parent for a child)."""
        now = self.clock.now()
        async with self.db.write() as session:
            me = await session.get(Patient, caller.id)
            other = await session.get(Patient, patient_id)
            if me is None or other is None or other.phone != me.phone:
                raise Unauthorized("That person is not registered on your phone.")
            await self._revoke(session, caller.token_id, now)
            return await self._issue(session, Role.PATIENT, other.id, now)

    # --- staff ---------------------------------------------------------------------------

    async def staff_login(self, login: str, password: str, client_addr: str) -> IssuedToken:
        """Password login for staff; unknown logins take as long as wrong passwords, and too
        many failures per account or per address refuse even the right password for a while."""
        now = self.clock.now()
        async with self.db.read() as session:
            staff = await session.scalar(select(Staff).where(Staff.login == login))
            limited = await self._staff_failures_exceeded(
                session, staff.id if staff else None, client_addr, now
            )
        if limited:
            async with self.db.write() as session:
                record(
                    session,
                    at=now,
                    who=Who("staff", staff.id if staff else None, client_addr),
                    action="login_staff",
                    object_type="session",
                    object_id=None,
                    outcome="rate_limited",
                )
            window = self.settings.staff_failure_window
            raise RateLimited(retry_after_seconds=_ceil_seconds(window))
        ok = await verify_password(staff.password_hash if staff else None, password)
        async with self.db.write() as session:
            record(
                session,
                at=now,
                who=Who("staff", staff.id if staff else None, client_addr),
                action="login_staff",
                object_type="session",
                object_id=None,
                outcome="ok" if ok and staff and staff.active else "invalid_credentials",
            )
            if not ok or staff is None or not staff.active:
                failed = True
            else:
                failed = False
                issued = await self._issue(session, Role(staff.role), staff.id, now)
        if failed:
            raise InvalidCredentials()
        return issued

    async def _staff_failures_exceeded(
        self, session: AsyncSession, staff_id: str | None, client_addr: str, now: datetime
    ) -> bool:
        """Whether recent failed staff logins (from the audit log) reach either limit."""
        s = self.settings
        since = now - s.staff_failure_window
        login_attempts = (AuditEntry.action == "login_staff", AuditEntry.at > since)
        failed = AuditEntry.outcome == "invalid_credentials"
        per_addr = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(*login_attempts, failed, AuditEntry.client_addr == client_addr)
        )
        if int(per_addr or 0) >= s.staff_failures_per_address:
            return True
        if staff_id is None:
            return False
        mine = (*login_attempts, AuditEntry.actor_id == staff_id)
        last_ok = await session.scalar(  # by id: entries of one instant stay in order
            select(func.max(AuditEntry.id)).where(*mine, AuditEntry.outcome == "ok")
        )
        conditions = (
            (*mine, failed) if last_ok is None else (*mine, failed, AuditEntry.id > last_ok)
        )
        per_account = await session.scalar(
            select(func.count()).select_from(AuditEntry).where(*conditions)
        )
        return int(per_account or 0) >= s.staff_failures_per_account

    # --- tokens --------------------------------------------------------------------------

    async def _issue(
        self, session: AsyncSession, role: Role, subject: str, now: datetime
    ) -> IssuedToken:
        token = new_token()
        expires = now + self.settings.token_ttl
        session.add(
            AuthToken(
                token_hash=token_digest(token),
                subject_id=subject,
                role=role.value,
                created_at=now,
                expires_at=expires,
            )
        )
        return IssuedToken(token=token, role=role, user_id=subject, expires_at=expires)

    async def authenticate(self, token: str | None) -> Caller:
        """The caller behind a bearer token; Unauthorized if missing, unknown, expired, revoked."""
        if not token:
            raise Unauthorized()
        now = self.clock.now()
        async with self.db.read() as session:
            row = await session.scalar(
                select(AuthToken).where(AuthToken.token_hash == token_digest(token))
            )
        if row is None or row.revoked_at is not None:
            raise Unauthorized("The session is not valid; log in again.")
        if row.expires_at <= now:
            raise Unauthorized("The session has expired; log in again.")
        return Caller(
            role=Role(row.role), id=row.subject_id, token_id=row.id, expires_at=row.expires_at
        )

    async def logout(self, caller: Caller) -> None:
        """Revoke the caller's token at once; live sessions using it end."""
        now = self.clock.now()
        async with self.db.write() as session:
            await self._revoke(session, caller.token_id, now)
            await session.execute(
                update(AuthToken).where(AuthToken.id == caller.token_id).values(ended_at=now)
            )
            record_event(session, AccessEnded(caller.id, EndReason.LOGOUT, caller.token_id))

    async def disable_staff(self, staff_id: str, who: Who) -> None:
        """Disable a staff account: it can no longer log in, its tokens are revoked and its
        live sessions end on every node."""
        now = self.clock.now()
        async with self.db.write() as session:
            staff = await session.get(Staff, staff_id)
            if staff is None:
                raise NotFound("No such staff account.")
            staff.active = False
            await session.execute(
                update(AuthToken)
                .where(AuthToken.subject_id == staff_id, AuthToken.ended_at.is_(None))
                .values(revoked_at=func.coalesce(AuthToken.revoked_at, now), ended_at=now)
            )
            record(
                session,
                at=now,
                who=who,
                action="staff_disable",
                object_type="staff",
                object_id=staff_id,
            )
            record_event(session, AccessEnded(staff_id, EndReason.ACCOUNT_DISABLED))

    @staticmethod
    async def _revoke(session: AsyncSession, token_id: str, now: datetime) -> None:
        await session.execute(
            update(AuthToken)
            .where(AuthToken.id == token_id, AuthToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )


async def _count(session: AsyncSession, condition: object, since: datetime) -> int:
    total = await session.scalar(
        select(func.count()).select_from(OtpCode).where(condition, OtpCode.created_at > since)  # type: ignore[arg-type]
    )
    return int(total or 0)


def _ceil_seconds(delta: timedelta) -> int:
    return max(1, int(-(-delta.total_seconds() // 1)))
