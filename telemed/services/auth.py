"""Access: SMS one-time codes for patients (R-AUTH-1), passwords for staff, bearer tokens.

Every phone number gets the same answer and the same limits whether or not
it belongs to an insured person: rows are kept for unknown numbers too, and
the SMS is sent in the background so the answer takes the same time.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, func, select, update
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
from telemed.limits import Counters, DbCounters, Hit, counter_key
from telemed.models import (
    AuditEntry,
    AuthToken,
    OtpCode,
    Patient,
    PushSubscription,
    ServerKey,
    Staff,
    new_id,
)
from telemed.notify import OutboundMessage, Sender
from telemed.phone import mask_phone, normalize_phone
from telemed.roles import Role
from telemed.security import (
    Busy,
    PasswordChecker,
    new_otp,
    new_token,
    otp_digest,
    same,
    token_digest,
)
from telemed.services.audit import Who, record

log = logging.getLogger("telemed.auth")

OTP_KEY_NAME = "otp_hmac"
BLOCKED_MAX = 10_000  # counters remembered as over their limit on one node
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
    token_id: str = ""  # the row's id (never the token): what push subscriptions hang on


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
        self,
        db: Database,
        clock: Clock,
        settings: AuthSettings,
        sms: Sender,
        otp_key: str,
        counters: Counters | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.sms = sms
        self._otp_key = otp_key
        self._sending: set[asyncio.Task[None]] = set()
        self.counters: Counters = counters or DbCounters(db)
        self._blocked: dict[str, datetime] = {}
        self.passwords = PasswordChecker(
            settings.password_workers, settings.password_in_flight, settings.password_per_address
        )

    def close(self) -> None:
        """Stop the password checks' threads."""
        self.passwords.close()

    async def _limit(
        self, key: str, limit: int, window: timedelta, now: datetime, error: type[RateLimited]
    ) -> None:
        """One atomic hit on a limit counter; past `limit`, `error` with the time to wait."""
        until = self._blocked.get(key)
        if until is not None and until > now:
            raise error(retry_after_seconds=Hit(0, until).retry_after(now))
        hit = await self.counters.hit(key, window, now)
        if hit.over(limit):
            self._block(key, hit.resets_at, now)
            raise error(retry_after_seconds=hit.retry_after(now))

    def _block(self, key: str, until: datetime, now: datetime) -> None:
        """Remember on this node that a counter is over its limit until its window ends, so
        a flood is refused without a database write per request (the counter stays the
        authority for letting anyone through)."""
        if len(self._blocked) >= BLOCKED_MAX:
            for stale in [k for k, t in self._blocked.items() if t <= now]:
                del self._blocked[stale]
            if len(self._blocked) >= BLOCKED_MAX:
                self._blocked.clear()
        self._blocked[key] = until

    def _blocked_now(self, now: datetime, *keys: str) -> datetime | None:
        for key in keys:
            until = self._blocked.get(key)
            if until is not None and until > now:
                return until
        return None

    # --- patients: phone + SMS code (R-AUTH-1) ---------------------------------------

    async def request_code(self, raw_phone: str, client_addr: str) -> timedelta:
        """Issue a code for a phone; send it only if the phone is registered.

        Returns the resend cooldown so clients can show a countdown.
        """
        phone = normalize_phone(raw_phone)
        now = self.clock.now()
        s = self.settings
        hour = timedelta(hours=1)
        # Atomic counters (telemed/limits.py), the cooldown first so that of racing requests
        # one goes on; the cooldown and the per-phone budget are per address, so a stranger
        # spends only their own share of a phone's codes and never holds its cooldown.
        await self._limit(
            counter_key("otp-cooldown", phone, client_addr),
            1,
            s.otp_resend_cooldown,
            now,
            OtpCooldown,
        )
        await self._limit(
            counter_key("otp-address", client_addr),
            s.otp_per_address_per_hour,
            hour,
            now,
            RateLimited,
        )
        await self._limit(
            counter_key("otp-phone-address", phone, client_addr),
            s.otp_per_phone_per_hour,
            hour,
            now,
            RateLimited,
        )
        await self._limit(
            counter_key("otp-phone", phone),
            s.otp_per_phone_all_addresses_per_hour,
            hour,
            now,
            RateLimited,
        )
        async with self.db.write() as session:
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
        address_key = counter_key("otp-verify-address", client_addr)
        await self._limit(
            address_key,
            self.settings.otp_verify_per_address_per_hour,
            timedelta(hours=1),
            now,
            RateLimited,
        )
        async with self.db.write() as session:
            row = await session.scalar(
                select(OtpCode)
                .where(OtpCode.phone == phone, OtpCode.consumed_at.is_(None))
                .order_by(OtpCode.created_at.desc())
                .limit(1)
            )
            # The try is taken before the code is compared, by a guarded update: of racing
            # guesses exactly `otp_max_attempts` are compared (PostgreSQL and SQLite alike).
            attempt = None
            if row is not None and row.expires_at > now:
                attempt = await session.scalar(
                    update(OtpCode)
                    .where(
                        OtpCode.id == row.id,
                        OtpCode.consumed_at.is_(None),
                        OtpCode.attempts < self.settings.otp_max_attempts,
                    )
                    .values(attempts=OtpCode.attempts + 1)
                    .returning(OtpCode.attempts)
                    .execution_options(synchronize_session=False)
                )
            if row is None or row.expires_at <= now:
                failure = InvalidCode()
            elif attempt is None:
                failure = TooManyAttempts()
            elif not same(row.code_hash, otp_digest(self._otp_key, phone, row.id, code.strip())):
                left = self.settings.otp_max_attempts - attempt
                failure = InvalidCode(attempts_left=left) if left else TooManyAttempts()
            else:
                used = await session.execute(
                    update(OtpCode)
                    .where(OtpCode.id == row.id, OtpCode.consumed_at.is_(None))
                    .values(consumed_at=now)
                    .execution_options(synchronize_session=False)
                )
                patients = (
                    await session.scalars(
                        select(Patient).where(Patient.phone == phone).order_by(Patient.birth_date)
                    )
                ).all()
                if used.rowcount != 1 or not patients:  # type: ignore[attr-defined]
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
        if failure is None:
            await self.counters.refund(address_key)  # the address budget counts wrong codes
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
            issued = await self._issue(session, Role.PATIENT, other.id, now)
            # The same phone, the same session going on: its device's pushes (still the
            # first person's) now end with a logout of the new token.
            await session.execute(
                update(PushSubscription)
                .where(PushSubscription.token_id == caller.token_id)
                .values(token_id=issued.token_id)
            )
            return issued

    # --- staff ---------------------------------------------------------------------------

    async def staff_login(self, login: str, password: str, client_addr: str) -> IssuedToken:
        """Password login for staff; unknown logins take as long as wrong passwords.

        Each attempt takes a count before its password is checked (atomic counters,
        telemed/limits.py), so racing guesses are checked at most the limit's number of
        times: per account since its last success, and per address (failures only). An
        address the account logged in from within `staff_known_address_for` has a count of
        its own: a stranger who locks the account does not lock its owner out.
        """
        now = self.clock.now()
        s = self.settings
        # This login from this address was refused in this window: refused again from memory,
        # before any read (a flood from many addresses costs one read per address).
        attempt_key = counter_key("staff-attempt", login, client_addr)
        until = self._blocked_now(now, attempt_key, counter_key("staff-address", client_addr))
        if until is not None:
            raise RateLimited(retry_after_seconds=Hit(0, until).retry_after(now))
        async with self.db.read() as session:
            staff = await session.scalar(select(Staff).where(Staff.login == login))
            known = staff is not None and await self._known_address(
                session, staff.id, client_addr, now
            )
        who = Who("staff", staff.id if staff else None, client_addr)
        if staff is None:
            account_key = counter_key("staff-login", login)
        elif known:
            account_key = counter_key("staff-account-known", staff.id, client_addr)
        else:
            account_key = counter_key("staff-account", staff.id)
        address_key = counter_key("staff-address", client_addr)
        until = self._blocked_now(now, address_key, account_key)
        if until is not None:  # refused before, in this window: no write, no new audit entry
            self._block(attempt_key, until, now)
            raise RateLimited(retry_after_seconds=Hit(0, until).retry_after(now))
        try:
            with self.passwords.slot(client_addr):
                await self._limit(
                    address_key,
                    s.staff_failures_per_address,
                    s.staff_failure_window,
                    now,
                    RateLimited,
                )
                await self._limit(
                    account_key,
                    s.staff_failures_per_account,
                    s.staff_failure_window,
                    now,
                    RateLimited,
                )
                ok = await self.passwords.verify(staff.password_hash if staff else None, password)
        except Busy:  # refused at once, unchecked and unaudited: a flood writes nothing
            raise RateLimited(
                "Too many logins at once; try again in a moment.", retry_after_seconds=1
            ) from None
        except RateLimited:
            await self._audit_login(who, now, "rate_limited")
            raise
        succeeded = ok and staff is not None and staff.active
        rehashed = None
        if succeeded and staff is not None:
            rehashed = await self.passwords.rehash_if_needed(staff.password_hash, password)
        async with self.db.write() as session:
            record(
                session,
                at=now,
                who=who,
                action="login_staff",
                object_type="session",
                object_id=None,
                outcome="ok" if succeeded else "invalid_credentials",
            )
            if succeeded and staff is not None:
                issued = await self._issue(session, Role(staff.role), staff.id, now)
                if rehashed is not None:
                    await session.execute(
                        update(Staff).where(Staff.id == staff.id).values(password_hash=rehashed)
                    )
        if not succeeded:
            raise InvalidCredentials()
        await self.counters.clear(account_key)
        self._blocked.pop(account_key, None)
        await self.counters.refund(address_key)
        return issued

    async def _audit_login(self, who: Who, now: datetime, outcome: str) -> None:
        async with self.db.write() as session:
            record(
                session,
                at=now,
                who=who,
                action="login_staff",
                object_type="session",
                object_id=None,
                outcome=outcome,
            )

    async def _known_address(
        self, session: AsyncSession, staff_id: str, client_addr: str, now: datetime
    ) -> bool:
        """Whether this account logged in from this address recently (the audit log)."""
        found = await session.scalar(
            select(AuditEntry.id)
            .where(
                AuditEntry.action == "login_staff",
                AuditEntry.actor_id == staff_id,
                AuditEntry.outcome == "ok",
                AuditEntry.client_addr == client_addr,
                AuditEntry.at > now - self.settings.staff_known_address_for,
            )
            .limit(1)
        )
        return found is not None

    # --- tokens --------------------------------------------------------------------------

    async def _issue(
        self, session: AsyncSession, role: Role, subject: str, now: datetime
    ) -> IssuedToken:
        token = new_token()
        token_id = new_id()
        expires = now + self.settings.token_ttl
        session.add(
            AuthToken(
                id=token_id,
                token_hash=token_digest(token),
                subject_id=subject,
                role=role.value,
                created_at=now,
                expires_at=expires,
            )
        )
        return IssuedToken(
            token=token, role=role, user_id=subject, expires_at=expires, token_id=token_id
        )

    async def authenticate(self, token: str | None) -> Caller:
        """The caller behind a bearer token; Unauthorized if missing, unknown, expired, revoked."""
        if not token:
            raise Unauthorized()
        async with self.db.read() as session:
            return await caller_in(session, token, self.clock.now())

    async def logout(self, caller: Caller) -> None:
        """Revoke the caller's token at once; live sessions using it end, and the push
        subscriptions this session registered go (the device is no longer the patient's:
        their messages then come by SMS), even when the page could not unsubscribe."""
        now = self.clock.now()
        async with self.db.write() as session:
            await self._revoke(session, caller.token_id, now)
            await session.execute(
                delete(PushSubscription).where(PushSubscription.token_id == caller.token_id)
            )
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


# Built once: every connect and REST call runs it (a statement built per call costs more
# than the read; docs/performance.md).
_TOKEN_BY_DIGEST = select(AuthToken).where(AuthToken.token_hash == bindparam("digest"))


_TOKENS_BY_DIGEST = select(AuthToken).where(
    AuthToken.token_hash.in_(bindparam("digests", expanding=True))
)


def _caller_of(row: AuthToken | None, now: datetime) -> Caller:
    """The caller a token row stands for; Unauthorized if missing, revoked or expired."""
    if row is None or row.revoked_at is not None:
        raise Unauthorized("The session is not valid; log in again.")
    if row.expires_at <= now:
        raise Unauthorized("The session has expired; log in again.")
    return Caller(
        role=Role(row.role), id=row.subject_id, token_id=row.id, expires_at=row.expires_at
    )


async def caller_in(session: AsyncSession, token: str | None, now: datetime) -> Caller:
    """AuthService.authenticate within a session the caller holds."""
    if not token:
        raise Unauthorized()
    row = await session.scalar(_TOKEN_BY_DIGEST, {"digest": token_digest(token)})
    return _caller_of(row, now)


async def callers_in(
    session: AsyncSession, tokens: Iterable[str], now: datetime
) -> dict[str, Caller | Unauthorized]:
    """caller_in for many tokens in one statement (connects arriving together): each
    token's caller, or the Unauthorized it gets."""
    digests = {token_digest(token): token for token in tokens if token}
    rows = await session.scalars(_TOKENS_BY_DIGEST, {"digests": list(digests)})
    found = {row.token_hash: row for row in rows}
    answers: dict[str, Caller | Unauthorized] = {}
    for digest, token in digests.items():
        try:
            answers[token] = _caller_of(found.get(digest), now)
        except Unauthorized as exc:
            answers[token] = exc
    return answers
