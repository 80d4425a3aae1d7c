"""Insured persons: the insurer's CSV list (R-ID-1) and the consultant's identification
(R-AUTH-2) and registration (R-AUTH-3) of callers.

Names, phones and dates of birth are personal data: no message, log line or
audit detail written here repeats them. Errors name the field, audit entries
carry ids and counts.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from telemed.clock import Clock
from telemed.db import Database
from telemed.errors import Conflict, Forbidden, NotFound, ValidationFailed
from telemed.models import Patient, Policy, new_id
from telemed.phone import mask_phone, normalize_phone
from telemed.roles import Role
from telemed.routing import age_on
from telemed.services.audit import Who, record

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = (
    "policy_number",
    "purchased_on",
    "valid_from",
    "valid_to",
    "full_name",
    "birth_date",
    "sex",
    "phone",
)
"""The header of CONTRACT.md; columns may come in any order, extra ones are ignored."""

BATCH_SIZE = 500
"""Rows per import transaction: keeps a 100k-row file from holding one huge transaction."""

INSURER_TZ = ZoneInfo("Europe/Moscow")
"""Policy dates and dates of birth are calendar days of the insurer (Moscow)."""

DEFAULT_POLICY_DAYS = 365
"""Validity of a policy registered by a consultant when no end date is given (R-AUTH-3)."""

MAX_POLICY_NUMBER = 64  # Policy.policy_number is String(64)
MAX_FULL_NAME = 200  # Patient.full_name is String(200)

IDENTIFY_ROLES: frozenset[str] = frozenset({Role.CONSULTANT, Role.ADMIN})
"""Who may identify and register callers (R-AUTH-2, R-AUTH-3)."""

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
Sex = Literal["M", "F"]
_SEX: dict[str, Sex] = {"M": "M", "F": "F", "М": "M", "Ж": "F"}  # Latin and Cyrillic letters
NO_MATCH_MESSAGE = "No insured person matches these details."


class AlreadyRegistered(Conflict):
    """The policy number is already on the list (R-AUTH-3)."""

    code = "already_registered"
    default_message = "This policy number is already registered."


# --- parsing (pure) -----------------------------------------------------------


@dataclass(frozen=True)
class InsuredRow:
    """One valid row of the insured list, normalized (E.164 phone, collapsed name)."""

    line: int
    policy_number: str
    purchased_on: date | None
    valid_from: date
    valid_to: date
    full_name: str
    birth_date: date
    sex: Sex
    phone: str


@dataclass(frozen=True)
class RowError:
    """A rejected row: its physical line in the file and what is wrong, by field name."""

    line: int
    message: str


@dataclass(frozen=True)
class ParsedFile:
    """The valid rows of a file and the errors of the others, both in file order."""

    rows: list[InsuredRow]
    errors: list[RowError]


def local_today(clock: Clock) -> date:
    """Today's date on the insurer's calendar, for policy validity, ages and birth dates."""
    return clock.now().astimezone(INSURER_TZ).date()


def collapse_spaces(text: str) -> str:
    """Trim and collapse runs of whitespace to one space."""
    return " ".join(text.split())


def name_key(full_name: str) -> str:
    """The form in which names compare: case-insensitive, whitespace collapsed, ё == е."""
    return collapse_spaces(full_name).casefold().replace("ё", "е")


def parse_sex(raw: str) -> Sex | None:
    """`M`/`F` from Latin M/F or Cyrillic М/Ж in any case; None for anything else."""
    return _SEX.get(raw.strip().upper())


def _decode(data: bytes) -> str | None:
    """UTF-8 (with or without BOM), else Windows-1251 (Excel's default in Russia)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1251")
    except UnicodeDecodeError:
        return None


def _delimiter(text: str) -> str:
    """`;` when the header uses it (Excel with a Russian locale), otherwise `,`."""
    first = text.splitlines()[0] if text else ""
    return ";" if first.count(";") > first.count(",") else ","


def _parse_date(raw: str, name: str, problems: list[str], *, required: bool = True) -> date | None:
    value = raw.strip()
    if not value:
        if required:
            problems.append(f"{name}: is empty")
        return None
    if not _ISO_DATE.fullmatch(value):
        problems.append(f"{name}: is not a date in the form YYYY-MM-DD")
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        problems.append(f"{name}: is not a valid calendar date")
        return None


def _parse_row(
    line: int, get: dict[str, str], today: date, seen: dict[str, int]
) -> InsuredRow | RowError:
    """Validate one record; every problem names its field and none repeats the value."""
    problems: list[str] = []

    policy_number = get["policy_number"].strip()
    if not policy_number:
        problems.append("policy_number: is empty")
    elif len(policy_number) > MAX_POLICY_NUMBER:
        problems.append(f"policy_number: is longer than {MAX_POLICY_NUMBER} characters")
    elif policy_number in seen:
        problems.append(f"policy_number: duplicate of line {seen[policy_number]}")
    else:
        seen[policy_number] = line

    purchased_on = _parse_date(get["purchased_on"], "purchased_on", problems, required=False)
    valid_from = _parse_date(get["valid_from"], "valid_from", problems)
    valid_to = _parse_date(get["valid_to"], "valid_to", problems)
    if valid_from and valid_to and valid_from > valid_to:
        problems.append("valid_from: is after valid_to")

    full_name = collapse_spaces(get["full_name"])
    if not full_name:
        problems.append("full_name: is empty")
    elif len(full_name) > MAX_FULL_NAME:
        problems.append(f"full_name: is longer than {MAX_FULL_NAME} characters")

    birth_date = _parse_date(get["birth_date"], "birth_date", problems)
    if birth_date and birth_date > today:
        problems.append("birth_date: is in the future")

    sex = parse_sex(get["sex"])
    if sex is None:
        problems.append("sex: must be M or F (М or Ж)")

    phone = ""
    try:
        phone = normalize_phone(get["phone"])
    except ValidationFailed as exc:  # its message never quotes the number
        problems.append(f"phone: {exc.message[:1].lower()}{exc.message[1:]}")

    if problems or valid_from is None or valid_to is None or birth_date is None or sex is None:
        return RowError(line, "; ".join(problems))
    return InsuredRow(
        line=line,
        policy_number=policy_number,
        purchased_on=purchased_on,
        valid_from=valid_from,
        valid_to=valid_to,
        full_name=full_name,
        birth_date=birth_date,
        sex=sex,
        phone=phone,
    )


def parse_insured_csv(data: bytes, *, today: date) -> ParsedFile:
    """Read the insurer's list (R-ID-1): valid rows plus one error per bad row, by line.

    `today` (see `local_today`) rejects dates of birth in the future. Line
    numbers are physical lines of the file, the header being line 1, so an
    administrator can find the row in any editor. A missing column gives one
    error on line 1 and no rows.
    """
    text = _decode(data)
    if text is None:
        return ParsedFile([], [RowError(1, "file: is neither UTF-8 nor Windows-1251 text")])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    try:
        header = next(reader, None)
    except csv.Error:
        header = None
    if header is None or not any(cell.strip() for cell in header):
        expected = ",".join(COLUMNS)
        return ParsedFile([], [RowError(1, f"header: is missing; expected {expected}")])
    index: dict[str, int] = {}
    for position, name in enumerate(header):
        index.setdefault(name.strip().lower(), position)
    missing = [name for name in COLUMNS if name not in index]
    if missing:
        return ParsedFile([], [RowError(1, f"header: missing column(s): {', '.join(missing)}")])

    rows: list[InsuredRow] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    previous_line = reader.line_num
    while True:
        line = previous_line + 1  # where this record starts, even if a quoted cell spans lines
        try:
            record_ = next(reader, None)
        except csv.Error:
            # The reader cannot resynchronise after a broken record; say where it stopped.
            errors.append(RowError(line, "file: cannot be read as CSV from this line on"))
            break
        if record_ is None:
            break
        previous_line = reader.line_num
        if not any(cell.strip() for cell in record_):
            continue  # blank lines, often at the end of a file
        get = {name: record_[index[name]] if index[name] < len(record_) else "" for name in COLUMNS}
        result = _parse_row(line, get, today, seen)
        if isinstance(result, RowError):
            errors.append(result)
        else:
            rows.append(result)
    return ParsedFile(rows, errors)


# --- import -------------------------------------------------------------------


@dataclass(frozen=True)
class ImportReport:
    """What an import did: rows created, updated, left unchanged, and the rejected rows."""

    created: int
    updated: int
    unchanged: int
    errors: list[RowError] = field(default_factory=list)


@dataclass(frozen=True)
class _Tally:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def plus(self, other: _Tally) -> _Tally:
        return _Tally(
            self.created + other.created,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
        )


_PersonKey = tuple[str, str, date]


def _person_key(phone: str, full_name: str, birth_date: date) -> _PersonKey:
    """Who a person is across policies: same phone, same name (as compared), same birth date."""
    return (phone, name_key(full_name), birth_date)


def _assign(obj: Patient | Policy, values: dict[str, object]) -> bool:
    """Set the attributes that differ; True if any did."""
    changed = False
    for attr, value in values.items():
        if getattr(obj, attr) != value:
            setattr(obj, attr, value)
            changed = True
    return changed


async def _patients_by_person(
    session: AsyncSession, phones: Iterable[str]
) -> dict[_PersonKey, Patient]:
    """Existing patients with these phones, keyed by person; the oldest wins a tie."""
    phone_list = sorted(set(phones))
    if not phone_list:
        return {}
    result = await session.scalars(
        select(Patient)
        .where(Patient.phone.in_(phone_list))
        .order_by(Patient.created_at, Patient.id)
    )
    people: dict[_PersonKey, Patient] = {}
    for patient in result:
        people.setdefault(
            _person_key(patient.phone, patient.full_name, patient.birth_date), patient
        )
    return people


async def _import_batch(session: AsyncSession, now: datetime, rows: Sequence[InsuredRow]) -> _Tally:
    """Apply rows in one transaction: update known policies first, then add the new ones."""
    if not rows:
        return _Tally()
    result = await session.execute(
        select(Policy, Patient)
        .join(Patient, Policy.patient_id == Patient.id)
        .where(Policy.policy_number.in_([row.policy_number for row in rows]))
    )
    known = {policy.policy_number: (policy, patient) for policy, patient in result}

    updated = unchanged = 0
    new_rows: list[InsuredRow] = []
    for row in rows:
        if row.policy_number not in known:
            new_rows.append(row)
            continue
        policy, patient = known[row.policy_number]
        patient_changed = _assign(
            patient,
            {
                "phone": row.phone,
                "full_name": row.full_name,
                "birth_date": row.birth_date,
                "sex": row.sex,
            },
        )
        policy_changed = _assign(
            policy,
            {
                "purchased_on": row.purchased_on,
                "valid_from": row.valid_from,
                "valid_to": row.valid_to,
            },
        )
        if patient_changed:
            patient.updated_at = now
        if policy_changed:
            policy.updated_at = now
        if patient_changed or policy_changed:
            updated += 1
        else:
            unchanged += 1

    if not new_rows:
        return _Tally(0, updated, unchanged)
    # Queried after the updates above (autoflush), so a changed phone is matched too.
    people = await _patients_by_person(session, (row.phone for row in new_rows))
    new_patients: list[Patient] = []
    new_policies: list[Policy] = []
    for row in new_rows:
        key = _person_key(row.phone, row.full_name, row.birth_date)
        owner = people.get(key)
        if owner is None:
            owner = _new_patient(
                row.phone, row.full_name, row.birth_date, row.sex, now, source="import"
            )
            people[key] = owner
            new_patients.append(owner)
        new_policies.append(
            _new_policy(
                row.policy_number, owner.id, row.purchased_on, row.valid_from, row.valid_to, now
            )
        )
    session.add_all(new_patients)
    await session.flush()  # patients before the policies that reference them
    session.add_all(new_policies)
    return _Tally(len(new_rows), updated, unchanged)


def _new_patient(
    phone: str,
    full_name: str,
    birth_date: date,
    sex: str,
    now: datetime,
    *,
    source: str,
    registered_by: str | None = None,
) -> Patient:
    # The id is set here, not at flush, so that policies can reference a new patient.
    return Patient(
        id=new_id(),
        phone=phone,
        full_name=full_name,
        birth_date=birth_date,
        sex=sex,
        source=source,
        registered_by=registered_by,
        created_at=now,
        updated_at=now,
    )


def _new_policy(
    number: str,
    patient_id: str,
    purchased_on: date | None,
    valid_from: date,
    valid_to: date,
    now: datetime,
) -> Policy:
    return Policy(
        id=new_id(),
        policy_number=number,
        patient_id=patient_id,
        purchased_on=purchased_on,
        valid_from=valid_from,
        valid_to=valid_to,
        created_at=now,
        updated_at=now,
    )


def _audit_import(
    session: AsyncSession, now: datetime, who: Who, tally: _Tally, errors: int, outcome: str
) -> None:
    record(
        session,
        at=now,
        who=who,
        action="insured.import",
        object_type="insured_list",
        object_id=None,
        outcome=outcome,
        detail={
            "created": tally.created,
            "updated": tally.updated,
            "unchanged": tally.unchanged,
            "errors": errors,
        },
    )


async def _import_batch_retrying(
    db: Database,
    clock: Clock,
    batch: Sequence[InsuredRow],
    who: Who,
    before: _Tally,
    errors: int,
    *,
    final: bool,
) -> _Tally:
    """One batch in one transaction, retried once if it raced another writer on a number;
    the final batch also carries the audit entry of the whole import."""
    for attempt in (1, 2):
        try:
            async with db.write() as session:
                if not db.is_sqlite:
                    # asyncpg prepares statements, and after five runs PostgreSQL may keep a
                    # generic plan made while the tables were nearly empty (a sequential
                    # scan): a first 100k import then turns quadratic. Plan each batch anew.
                    await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
                now = clock.now()
                tally = await _import_batch(session, now, batch)
                if final:
                    _audit_import(session, now, who, before.plus(tally), errors, "ok")
            return tally
        except IntegrityError:
            if attempt == 2:
                raise
            log.warning("insured import: a batch raced another writer; retrying it")
    raise AssertionError("unreachable")


async def import_insured(
    db: Database,
    clock: Clock,
    parsed: ParsedFile,
    *,
    who: Who,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Store a parsed list (R-ID-1), updating by policy number; safe to run again.

    Each batch of `batch_size` rows is one transaction, so a large file never
    holds one long lock; the audit entry (counts only) commits with the last
    batch, or records `failed` with the counts so far. A batch that loses a
    race on a policy number with another writer is retried once.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    rows = parsed.rows
    batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)] or [[]]
    errors = len(parsed.errors)
    total = _Tally()
    try:
        for position, batch in enumerate(batches):
            final = position == len(batches) - 1
            total = total.plus(
                await _import_batch_retrying(db, clock, batch, who, total, errors, final=final)
            )
    except Exception:
        try:
            async with db.write() as session:
                _audit_import(session, clock.now(), who, total, errors, "failed")
        except Exception:
            log.exception("insured import: could not audit the failed import")
        raise
    return ImportReport(total.created, total.updated, total.unchanged, list(parsed.errors))


def format_report(report: ImportReport) -> str:
    """The console summary of `telemed import-insured`: counts, then one line per bad row."""
    lines = [
        f"created {report.created}, updated {report.updated}, "
        f"unchanged {report.unchanged}, errors {len(report.errors)}"
    ]
    lines.extend(f"line {error.line}: {error.message}" for error in report.errors)
    return "\n".join(lines)


# --- identification and registration by the consultant ------------------------


@dataclass(frozen=True)
class IdentifiedPatient:
    """What the consultant sees of an identified caller; the phone only masked."""

    patient_id: str
    full_name: str
    birth_date: date
    age: int
    masked_phone: str
    policy_number: str
    policy_active: bool
    valid_to: date


def _require_consultant(who: Who) -> None:
    if who.role not in IDENTIFY_ROLES:
        raise Forbidden("Only a medical consultant can identify or register a caller.")


def _identified(patient: Patient, policy: Policy, today: date) -> IdentifiedPatient:
    age = age_on(patient.birth_date, today) if patient.birth_date <= today else 0
    return IdentifiedPatient(
        patient_id=patient.id,
        full_name=patient.full_name,
        birth_date=patient.birth_date,
        age=age,
        masked_phone=mask_phone(patient.phone),
        policy_number=policy.policy_number,
        policy_active=policy.valid_from <= today <= policy.valid_to,
        valid_to=policy.valid_to,
    )


async def _policy_with_patient(
    session: AsyncSession, policy_number: str
) -> tuple[Policy, Patient] | None:
    result = await session.execute(
        select(Policy, Patient)
        .join(Patient, Policy.patient_id == Patient.id)
        .where(Policy.policy_number == policy_number)
    )
    row = result.first()
    return None if row is None else (row[0], row[1])


async def identify(
    db: Database,
    clock: Clock,
    *,
    policy_number: str,
    full_name: str,
    birth_date: date,
    phone: str | None,
    who: Who,
) -> IdentifiedPatient:
    """Find the insured caller from the details they give the consultant (R-AUTH-2).

    Every given detail must match the policy's patient; any mismatch, or an
    unknown policy, raises the same `NotFound` so the answer never tells a
    caller which detail was wrong. Both outcomes are audited.
    """
    _require_consultant(who)
    number = policy_number.strip()
    wanted_phone = normalize_phone(phone) if phone is not None and phone.strip() else None
    today = local_today(clock)
    found: IdentifiedPatient | None = None
    async with db.write() as session:
        pair = await _policy_with_patient(session, number) if number else None
        reason = "unknown_policy"
        if pair is not None:
            policy, patient = pair
            matches = (
                name_key(patient.full_name) == name_key(full_name)
                and patient.birth_date == birth_date
                and (wanted_phone is None or patient.phone == wanted_phone)
            )
            if matches:
                found = _identified(patient, policy, today)
            reason = "mismatch"
        record(
            session,
            at=clock.now(),
            who=who,
            action="insured.identify",
            object_type="patient",
            object_id=pair[1].id if pair is not None else None,
            outcome="ok" if found else "not_found",
            detail={"policy_id": pair[0].id} if found and pair else {"reason": reason},
        )
    if found is None:
        raise NotFound(NO_MATCH_MESSAGE)
    return found


async def _policy_exists(db: Database, number: str) -> bool:
    async with db.read() as session:
        found = await session.scalar(select(Policy.id).where(Policy.policy_number == number))
        return found is not None


async def _audit_refused_registration(db: Database, clock: Clock, who: Who) -> None:
    async with db.write() as session:
        record(
            session,
            at=clock.now(),
            who=who,
            action="insured.register",
            object_type="patient",
            object_id=None,
            outcome=AlreadyRegistered.code,
        )


async def register(
    db: Database,
    clock: Clock,
    *,
    policy_number: str,
    full_name: str,
    birth_date: date,
    sex: str,
    phone: str,
    valid_from: date | None,
    valid_to: date | None,
    who: Who,
) -> IdentifiedPatient:
    """Register a caller missing from the insurer's list (R-AUTH-3), audited.

    The policy runs from `valid_from` (default today) to `valid_to` (default a
    year later). A person already known with the same phone, name and birth
    date gets the policy attached instead of a second patient record, as an
    import would do. A known policy number raises `AlreadyRegistered`.
    """
    _require_consultant(who)
    number = policy_number.strip()
    if not number:
        raise ValidationFailed("The policy number is empty.", field="policy_number")
    if len(number) > MAX_POLICY_NUMBER:
        raise ValidationFailed(
            f"The policy number is longer than {MAX_POLICY_NUMBER} characters.",
            field="policy_number",
        )
    name = collapse_spaces(full_name)
    if not name:
        raise ValidationFailed("The full name is empty.", field="full_name")
    if len(name) > MAX_FULL_NAME:
        raise ValidationFailed(
            f"The full name is longer than {MAX_FULL_NAME} characters.", field="full_name"
        )
    today = local_today(clock)
    if birth_date > today:
        raise ValidationFailed("The date of birth is in the future.", field="birth_date")
    parsed_sex = parse_sex(sex)
    if parsed_sex is None:
        raise ValidationFailed("The sex must be M or F.", field="sex")
    e164 = normalize_phone(phone)
    starts = valid_from or today
    ends = valid_to or starts + timedelta(days=DEFAULT_POLICY_DAYS)
    if starts > ends:
        raise ValidationFailed("The policy starts after it ends.", field="valid_to")

    result: IdentifiedPatient | None = None
    try:
        async with db.write() as session:
            exists = await session.scalar(select(Policy.id).where(Policy.policy_number == number))
            if exists is None:
                now = clock.now()
                people = await _patients_by_person(session, [e164])
                patient = people.get(_person_key(e164, name, birth_date))
                new_patient = patient is None
                if patient is None:
                    patient = _new_patient(
                        e164,
                        name,
                        birth_date,
                        parsed_sex,
                        now,
                        source="consultant",
                        registered_by=who.id,
                    )
                    session.add(patient)
                    await session.flush()
                policy = _new_policy(number, patient.id, None, starts, ends, now)
                session.add(policy)
                await session.flush()
                record(
                    session,
                    at=now,
                    who=who,
                    action="insured.register",
                    object_type="patient",
                    object_id=patient.id,
                    detail={"policy_id": policy.id, "new_patient": new_patient},
                )
                result = _identified(patient, policy, today)
    except IntegrityError:
        # Another writer took the number between our check and our insert.
        if not await _policy_exists(db, number):
            raise
    if result is None:
        await _audit_refused_registration(db, clock, who)
        raise AlreadyRegistered()
    return result
