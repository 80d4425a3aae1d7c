"""The relational schema: SQLAlchemy 2 models, the source of truth of telemed.

Times are stored in UTC and come back as aware datetimes on every backend.
Deadlines live in rows (`limit_ends_at`, `no_show_at`, `remind_at`, ...) so
that the scheduler can find what is due after any restart.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def new_id() -> str:
    """A fresh opaque id (ids are strings in the public interface)."""
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on SQLite (which has no time zones) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use the injected clock")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

IdCol = String(32)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), date: Date()}


def table_of(model: type[Base]) -> Table:
    """A model's table, typed as one, for Core statements built once on hot paths."""
    return model.metadata.tables[model.__tablename__]


class Patient(Base):
    """An insured person (R-ID-1). The phone (E.164) is the login (R-AUTH-1)."""

    __tablename__ = "patients"
    id: Mapped[str] = mapped_column(IdCol, primary_key=True, default=new_id)
    phone: Mapped[str] = mapped_column(String(20), index=True)
    full_name: Mapped[str] = mapped_column(String(200))
    birth_date: Mapped[date]
    sex: Mapped[str] = mapped_column(String(1))
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Moscow")
    # R-CAL-1: set when the patient confirms a zone; until then the app asks once.
    timezone_confirmed_at: Mapped[datetime | None]
    source: Mapped[str] = mapped_column(String(16))  # import | consultant | demo
    registered_by: Mapped[str | None] = mapped_column(IdCol, ForeignKey("staff.id"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Policy(Base):
    """An insurance policy from the insurer's list; re-imports update by number."""

    __tablename__ = "policies"
    id: Mapped[str] = mapped_column(IdCol, primary_key=True, default=new_id)
    policy_number: Mapped[str] = mapped_column(String(64), unique=True)
    patient_id: Mapped[str] = mapped_column(IdCol, ForeignKey("patients.id"), index=True)
    purchased_on: Mapped[date | None]
    valid_from: Mapped[date]
    valid_to: Mapped[date]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Staff(Base):
    """A consultant, doctor or administrator; passwords hashed with argon2."""

    __tablename__ = "staff"
    id: Mapped[str] = mapped_column(IdCol, primary_key=True, default=new_id)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), index=True)
    full_name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class AuthToken(Base):
    """A bearer token, stored only as its SHA-256; expires and can be revoked."""

    __tablename__ = "auth_tokens"
    id: Mapped[str] = mapped_column(IdCol, primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    subject_id: Mapped[str] = mapped_column(IdCol, index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    # When live sessions using it were told it ended (logout, expiry, a disabled account).
    ended_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_auth_tokens_live_expiry", "ended_at", "expires_at"),)


class OtpCode(Base):
    """A one-time SMS code (R-AUTH-1), kept as an HMAC; rows also exist for unknown
    numbers so that every number gets the same answer and the same limits."""

    __tablename__ = "otp_codes"
    id: Mapped[str] = mapped_column(IdCol, primary_key=True, default=new_id)
    phone: Mapped[str] = mapped_column(String(20))
    client_addr: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    consumed_at: Mapped[datetime | None]
    __table_args__ = (
        Index("ix_otp_codes_phone_created", "phone", "created_at"),
        Index("ix_otp_codes_addr_created", "client_addr", "created_at"),
    )


class ServerKey(Base):
    """Server secrets generated once and shared by every node (e.g. the OTP HMAC key)."""

    __tablename__ = "server_keys"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))


class ConsentRecord(Base):
    """Acceptance of a consent version (R-CONSENT-1): what text, when, from where."""

    __tablename__ = "consent_records"
    id: Mapped[str] = mapped_column(IdCol, primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(IdCol, ForeignKey("patients.id"), index=True)
    version: Mapped[str] = mapped_column(String(32))
    text_sha256: Mapped[str] = mapped_column(String(64))
    accepted_at: Mapped[datetime]
    client_addr: Mapped[str] = mapped_column(String(64))
    user_agent: Mapped[str] = mapped_column(String(512))
    withdrawn_at: Mapped[datetime | None]


class Consultation(Base):
    """One request of a patient, from start to close, across consultant and doctor legs."""

    __tablename__ = "consultations"
    id: Mapped[str] = mapped_column(IdCol, primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(IdCol, ForeignKey("patients.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(24))
    version: Mapped[int] = mapped_column(Integer, default=1)
    queue_role: Mapped[str | None] = mapped_column(String(16))
    queued_at: Mapped[datetime | None]
    consultant_id: Mapped[str | None] = mapped_column(IdCol, ForeignKey("staff.id"))
    doctor_id: Mapped[str | None] = mapped_column(IdCol, ForeignKey("staff.id"))
    target_doctor_id: Mapped[str | None] = mapped_column(IdCol, ForeignKey("staff.id"))
    appointment_id: Mapped[str | None] = mapped_column(IdCol)
    close_reason: Mapped[str | None] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    first_accepted_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    limit_ends_at: Mapped[datetime | None] = mapped_column(index=True)
    limit_warned_at: Mapped[datetime | None]
    no_show_at: Mapped[datetime | None] = mapped_column(index=True)
    patient_seen_at: Mapped[datetime | None]
    # Set when the patient's last connection drops; closed `left` after no_show_after.
    patient_away_since: Mapped[datetime | None] = mapped_column(index=True)
    __table_args__ = (
        # The queue pick orders by (queued_at, id): with the id here no sort (0014).
        Index("ix_consultations_queue", "state", "queue_role", "queued_at", "id"),
        # A staff member's open consultations, read at every connect (live_entry.py).
        Index("ix_consultations_consultant_state", "consultant_id", "state"),
        Index("ix_consultations_doctor_state", "doctor_id", "state"),
    )


class ConsultationLeg(Base):
    """Who served the patient from when to when: every hop of a consultation."""

    __tablename__ = "consultation_legs"
    id: Mapped[str] = mapped_column(IdCol, primary_key=True, default=new_id)
    consultation_id: Mapped[str] = mapped_column(IdCol, ForeignKey("consultations.id"), index=True)
    staff_id: Mapped[str] = mapped_column(IdCol, ForeignKey("staff.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(32))


class CallQuality(Base):
    """How one side's call went on one leg (the page's getStats summary): the path
    (`direct` or `relay`), the median round trip, the share of packets lost, the mean
    bitrate received and the video freezes. One row per leg and reporter, updated while
    the leg runs; staff see it in the console and in the consultation's audit."""

    __tablename__ = "call_quality"
    id: Mapped[str] = mapped_column(IdCol, primary_key=True, default=new_id)
    consultation_id: Mapped[str] = mapped_column(IdCol, ForeignKey("consultations.id"), index=True)
    leg_id: Mapped[str] = mapped_column(IdCol, ForeignKey("consultation_legs.id"))
    reporter_id: Mapped[str] = mapped_column(IdCol)
    reporter_role: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(8))
    median_rtt_ms: Mapped[float | None] = mapped_column(Float)
    loss_percent: Mapped[float] = mapped_column(Float)
    bitrate_kbps: Mapped[float] = mapped_column(Float)
    freezes: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[int] = mapped_column(Integer)
    reported_at: Mapped[datetime]
    __table_args__ = (UniqueConstraint("leg_id", "reporter_id"),)


class Appointment(Base):
    """A booked consultation with a doctor at a time (R-SCH)."""

    __tablename__ = "appointments"
    id: Mapped[str] = mapped_column(IdCol, primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(IdCol, ForeignKey("patients.id"), index=True)
    doctor_id: Mapped[str] = mapped_column(IdCol, ForeignKey("staff.id"), index=True)
    booked_by: Mapped[str | None] = mapped_column(IdCol, ForeignKey("staff.id"))
    starts_at: Mapped[datetime] = mapped_column(index=True)
    ends_at: Mapped[datetime]
    channel: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(16))
    requires_documents: Mapped[bool] = mapped_column(Boolean, default=False)
    notify_via: Mapped[str] = mapped_column(String(16), default="chat")
    state: Mapped[str] = mapped_column(String(16), default="booked")
    remind_at: Mapped[datetime | None] = mapped_column(index=True)
    reminded_at: Mapped[datetime | None]
    consultation_id: Mapped[str | None] = mapped_column(IdCol)
    cancelled_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    slot_id: Mapped[str | None] = mapped_column(IdCol, ForeignKey("slots.id"))
    started_at: Mapped[datetime | None]
    # R-SCH-1: when the patient was told the date and time the agreed way (chat and push/SMS
    # by the platform, a call by the consultant, who confirms it); null while still due.
    informed_at: Mapped[datetime | None]
    informed_by: Mapped[str | None] = mapped_column(IdCol)


class ConsultationFollowUp(Base):
    """The consultant's record after the doctor (R-URG-5): the services the patient needs
    (a closed list), the outcome and a short note; one per consultation, saved in place."""

    __tablename__ = "consultation_followups"
    consultation_id: Mapped[str] = mapped_column(
        IdCol, ForeignKey("consultations.id"), primary_key=True
    )
    needs: Mapped[list[str]] = mapped_column(JSON, default=list)
    outcome: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(Text, default="")
    recorded_by: Mapped[str] = mapped_column(IdCol, ForeignKey("staff.id"))
    recorded_at: Mapped[datetime]


class WorkingHours(Base):
    """A doctor's weekly working hours, in their time zone; slots are cut from them."""

    __tablename__ = "working_hours"
    id: Mapped[str] = mapped_column(IdCol, primary_key=True, default=new_id)
    doctor_id: Mapped[str] = mapped_column(IdCol, ForeignKey("staff.id"), index=True)
    weekday: Mapped[int] = mapped_column(Integer)  # 0 Monday .. 6 Sunday
    starts: Mapped[str] = mapped_column(String(5))  # HH:MM local
    ends: Mapped[str] = mapped_column(String(5))
    slot_minutes: Mapped[int] = mapped_column(Integer, default=15)
    time_zone: Mapped[str] = mapped_column(String(64), default="Europe/Moscow")
    __table_args__ = (UniqueConstraint("doctor_id", "weekday", "starts"),)


class Slot(Base):
    """A bookable time of a doctor; `appointment_id` set means booked (R-SCH)."""

    __tablename__ = "slots"
    id: Mapped[str] = mapped_column(IdCol, primary_key=True, default=new_id)
    doctor_id: Mapped[str] = mapped_column(IdCol, ForeignKey("staff.id"))
    starts_at: Mapped[datetime] = mapped_column(index=True)
    ends_at: Mapped[datetime]
    appointment_id: Mapped[str | None] = mapped_column(IdCol)
    created_at: Mapped[datetime]
    __table_args__ = (UniqueConstraint("doctor_id", "starts_at"),)


class Document(Base):
    """A file in a patient's medical card, stored outside the web root under a random name."""

    __tablename__ = "documents"
    id: Mapped[str] = mapped_column(IdCol, primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(IdCol, ForeignKey("patients.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_name: Mapped[str] = mapped_column(String(64), unique=True)
    uploaded_by_role: Mapped[str] = mapped_column(String(16))
    uploaded_by_id: Mapped[str] = mapped_column(IdCol)
    created_at: Mapped[datetime]


class ConsultationDocument(Base):
    """A document the patient added to a consultation (R-DOCS-1)."""

    __tablename__ = "consultation_documents"
    consultation_id: Mapped[str] = mapped_column(
        IdCol, ForeignKey("consultations.id"), primary_key=True
    )
    document_id: Mapped[str] = mapped_column(IdCol, ForeignKey("documents.id"), primary_key=True)
    added_at: Mapped[datetime]


class ChatMessage(Base):
    """A chat line of a consultation; the integer id orders the history and the replay."""

    __tablename__ = "chat_messages"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    consultation_id: Mapped[str] = mapped_column(IdCol, ForeignKey("consultations.id"), index=True)
    sender_role: Mapped[str] = mapped_column(String(16))
    sender_id: Mapped[str] = mapped_column(IdCol)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class ChatMessageDocument(Base):
    """A medical-card document attached to a chat message."""

    __tablename__ = "chat_message_documents"
    message_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("chat_messages.id"),
        primary_key=True,
    )
    document_id: Mapped[str] = mapped_column(IdCol, ForeignKey("documents.id"), primary_key=True)


class Conclusion(Base):
    """A doctor's conclusion (R-CONCL-1): drafts change in place, signed versions never."""

    __tablename__ = "conclusions"
    id: Mapped[str] = mapped_column(IdCol, primary_key=True, default=new_id)
    # A conclusion concludes either a consultation or a second opinion (R-SECOND).
    consultation_id: Mapped[str | None] = mapped_column(
        IdCol, ForeignKey("consultations.id"), index=True
    )
    second_opinion_id: Mapped[str | None] = mapped_column(IdCol, ForeignKey("second_opinions.id"))
    doctor_id: Mapped[str] = mapped_column(IdCol, ForeignKey("staff.id"))
    version: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(8), default="draft")
    findings: Mapped[str] = mapped_column(Text, default="")
    recommendations: Mapped[str] = mapped_column(Text, default="")
    follow_up: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str | None] = mapped_column(Text)
    supersedes_id: Mapped[str | None] = mapped_column(IdCol)
    due_at: Mapped[datetime | None]
    signed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    __table_args__ = (
        UniqueConstraint("consultation_id", "version"),
        UniqueConstraint("second_opinion_id", "version"),
    )


class Notification(Base):
    """The outbox: every message to a patient or staff member, sent exactly once."""

    __tablename__ = "notifications"
    id: Mapped[str] = mapped_column(IdCol, primary_key=True, default=new_id)
    dedupe_key: Mapped[str] = mapped_column(String(128), unique=True)
    recipient_role: Mapped[str] = mapped_column(String(16))
    recipient_id: Mapped[str] = mapped_column(IdCol, index=True)
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(255))
    # The patient's in-app list (channel "app"): when they read it.
    read_at: Mapped[datetime | None]


class PushSubscription(Base):
    """A browser's Web Push subscription (RFC 8030) of a patient; one per device."""

    __tablename__ = "push_subscriptions"
    id: Mapped[str] = mapped_column(IdCol, primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(IdCol, ForeignKey("patients.id"), index=True)
    endpoint: Mapped[str] = mapped_column(String(1024), unique=True)
    p256dh: Mapped[str] = mapped_column(String(128))
    auth: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    # The session (auth token) that registered it: logging out of that session drops it.
    # No foreign key: a token row going one day must not take a device with it by surprise.
    token_id: Mapped[str | None] = mapped_column(IdCol, index=True)


class AuditEntry(Base):
    """Who did what to which object, when, and with what outcome. Never medical text."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(index=True)
    actor_role: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(IdCol)
    action: Mapped[str] = mapped_column(String(48))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32), default="ok")
    client_addr: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    __table_args__ = (
        Index("ix_audit_log_object", "object_type", "object_id"),
        # A staff member's recent logins (their known addresses, telemed/services/auth.py).
        Index("ix_audit_log_actor_at", "actor_id", "at"),
    )


class LimitCounter(Base):
    """A login limit's counter in its current window (telemed/limits.py); the key is a
    digest, never a phone number or an address."""

    __tablename__ = "limit_counters"
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    resets_at: Mapped[datetime] = mapped_column(index=True)


class SecondOpinion(Base):
    """A second expert opinion (R-SECOND): the patient's documents go to a specialist, whose
    conclusion the consultant delivers into the chat of the consultation it was asked in."""

    __tablename__ = "second_opinions"
    id: Mapped[str] = mapped_column(IdCol, primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(IdCol, ForeignKey("patients.id"), index=True)
    consultation_id: Mapped[str] = mapped_column(IdCol, ForeignKey("consultations.id"))
    question: Mapped[str] = mapped_column(Text, default="")
    requested_at: Mapped[datetime]
    consultant_id: Mapped[str | None] = mapped_column(IdCol, ForeignKey("staff.id"))
    specialist_id: Mapped[str | None] = mapped_column(IdCol, ForeignKey("staff.id"), index=True)
    assigned_at: Mapped[datetime | None]
    due_on: Mapped[date | None] = mapped_column(index=True)
    delivered_at: Mapped[datetime | None]
    delivered_by: Mapped[str | None] = mapped_column(IdCol, ForeignKey("staff.id"))
    chat_message_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("chat_messages.id")
    )
    appointment_id: Mapped[str | None] = mapped_column(IdCol, ForeignKey("appointments.id"))
    updated_at: Mapped[datetime]


class SecondOpinionDocument(Base):
    """A medical-card document sent to the specialist with a second opinion (R-SECOND)."""

    __tablename__ = "second_opinion_documents"
    second_opinion_id: Mapped[str] = mapped_column(
        IdCol, ForeignKey("second_opinions.id"), primary_key=True
    )
    document_id: Mapped[str] = mapped_column(IdCol, ForeignKey("documents.id"), primary_key=True)
    added_at: Mapped[datetime]


class CalendarFeed(Base):
    """A patient's secret iCalendar subscription URL, kept only as the SHA-256 of its secret."""

    __tablename__ = "calendar_feeds"
    id: Mapped[str] = mapped_column(IdCol, primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(IdCol, ForeignKey("patients.id"), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]


class DeviceCheck(Base):
    """A patient's last connection check (R-DEV): the verdict, each check as shown to them,
    and what the test call measured; staff see it in the queue."""

    __tablename__ = "device_checks"
    patient_id: Mapped[str] = mapped_column(IdCol, ForeignKey("patients.id"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(8))
    ok: Mapped[bool] = mapped_column(Boolean)
    failing: Mapped[list[str]] = mapped_column(JSON)
    checks: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    call: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    platform: Mapped[str] = mapped_column(String(100))
    language: Mapped[str] = mapped_column(String(2))
    checked_at: Mapped[datetime]
