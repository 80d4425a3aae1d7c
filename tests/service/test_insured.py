"""The insured list (R-ID-1) and the consultant's identification (R-AUTH-2) and
registration (R-AUTH-3) of callers, on a real database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from telemed.clock import ManualClock
from telemed.db import Database
from telemed.errors import Forbidden, NotFound, ValidationFailed
from telemed.models import AuditEntry, Patient, Policy, Staff
from telemed.services.audit import Who
from telemed.services.insured import (
    NO_MATCH_MESSAGE,
    AlreadyRegistered,
    IdentifiedPatient,
    ImportReport,
    InsuredRow,
    ParsedFile,
    RowError,
    format_report,
    identify,
    import_insured,
    local_today,
    parse_insured_csv,
    register,
)

HEADER = "policy_number,purchased_on,valid_from,valid_to,full_name,birth_date,sex,phone"
TODAY = date(2026, 1, 15)  # the ManualClock's default day, in Moscow too
ADMIN = Who(role="admin", id=None, client_addr="cli")

IVANOV = "P-001,2025-12-20,2026-01-01,2026-12-31,Иванов Иван Иванович,1980-05-17,M,8 916 123-45-67"
PETROVA = "P-002,,2025-06-01,2026-05-31,Петрова Алёна Сергеевна,2015-03-02,Ж,+7 (903) 111-22-33"
SIDOROV = "P-003,2025-01-10,2025-01-10,2025-12-31,Сидоров Пётр,1950-11-30,м,89265554433"


def csv_bytes(*lines: str, encoding: str = "utf-8") -> bytes:
    """A CSV file with the contract's header, as an insurer would send it."""
    return ("\r\n".join((HEADER, *lines)) + "\r\n").encode(encoding)


def parse(data: bytes) -> ParsedFile:
    return parse_insured_csv(data, today=TODAY)


@pytest.fixture
async def consultant(db: Database, clock: ManualClock) -> Who:
    return await _add_consultant(db, clock)


@pytest.fixture
async def any_consultant(any_db: Database, clock: ManualClock) -> Who:
    return await _add_consultant(any_db, clock)


async def _add_consultant(db: Database, clock: ManualClock) -> Who:
    async with db.write() as session:
        staff = Staff(
            login="consultant1",
            password_hash="not-a-real-hash",
            role="consultant",
            full_name="Консультант Один",
            created_at=clock.now(),
        )
        session.add(staff)
        await session.flush()
        return Who(role="consultant", id=staff.id, client_addr="10.0.0.7")


async def _count(db: Database, model: type[Patient] | type[Policy]) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _audit(db: Database, action: str) -> list[AuditEntry]:
    async with db.read() as session:
        result = await session.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
        )
        return list(result)


async def _patient_of(db: Database, policy_number: str) -> Patient:
    async with db.read() as session:
        patient = await session.scalar(
            select(Patient)
            .join(Policy, Policy.patient_id == Patient.id)
            .where(Policy.policy_number == policy_number)
        )
        assert patient is not None
        return patient


# --- parsing -------------------------------------------------------------------


def test_a_good_file_gives_normalized_rows() -> None:
    """R-ID-1: every field of the contract's CSV is read; phones become E.164, sex M/F."""
    parsed = parse(csv_bytes(IVANOV, PETROVA, SIDOROV))

    assert parsed.errors == []
    assert parsed.rows[0] == InsuredRow(
        line=2,
        policy_number="P-001",
        purchased_on=date(2025, 12, 20),
        valid_from=date(2026, 1, 1),
        valid_to=date(2026, 12, 31),
        full_name="Иванов Иван Иванович",
        birth_date=date(1980, 5, 17),
        sex="M",
        phone="+79161234567",
    )
    assert parsed.rows[1].purchased_on is None
    assert parsed.rows[1].sex == "F"  # Cyrillic Ж
    assert parsed.rows[2].sex == "M"  # Cyrillic lower-case м
    assert [row.line for row in parsed.rows] == [2, 3, 4]


def test_bad_rows_are_reported_by_line_and_the_good_rows_are_kept() -> None:
    """R-ID-1: each bad row is one error on its physical line; good rows still parse."""
    parsed = parse(
        csv_bytes(
            IVANOV,  # line 2
            "P-010,,2026-01-01,2026-12-31,Ошибкин Олег,17.05.1980,M,+79161230010",  # 3
            "P-011,,2026-01-01,2026-12-31,Ошибкин Олег,1980-05-17,X,+79161230011",  # 4
            "P-012,,2026-01-01,2026-12-31,Ошибкин Олег,1980-05-17,M,12345",  # 5
            "P-013,,2026-01-01,2026-12-31,   ,1980-05-17,M,+79161230013",  # 6
            "P-014,,2026-12-31,2026-01-01,Ошибкин Олег,1980-05-17,M,+79161230014",  # 7
            "P-001,,2026-01-01,2026-12-31,Другой Человек,1990-01-01,F,+79161230015",  # 8
            "",  # 9: a blank line is skipped, not an error
            PETROVA,  # 10
            "P-016,,2026-01-01,2026-12-31,Будущий Борис,2026-01-16,M,+79161230016",  # 11
            ",,2026-01-01,2026-13-01,Без Полиса,1980-05-17,F,+79161230017",  # 12
        )
    )

    assert [row.policy_number for row in parsed.rows] == ["P-001", "P-002"]
    assert [row.line for row in parsed.rows] == [2, 10]
    by_line = {error.line: error.message for error in parsed.errors}
    assert sorted(by_line) == [3, 4, 5, 6, 7, 8, 11, 12]
    assert by_line[3].startswith("birth_date:")
    assert by_line[4].startswith("sex:")
    assert by_line[5].startswith("phone:")
    assert by_line[6] == "full_name: is empty"
    assert by_line[7] == "valid_from: is after valid_to"
    assert by_line[8] == "policy_number: duplicate of line 2"
    assert by_line[11] == "birth_date: is in the future"
    assert "policy_number: is empty" in by_line[12]
    assert "valid_to: is not a valid calendar date" in by_line[12]


def test_error_messages_never_repeat_names_or_phones() -> None:
    """R-ID-1: errors go to a console and logs, so they name fields, never personal data."""
    parsed = parse(
        csv_bytes(
            "P-1,,2026-01-01,2026-12-31,Секретов Семён,1980-05-17,Q,+7 916 000",
            "P-1,,2026-01-01,2026-12-31,Секретов Семён,1980-05-17,M,+79161234567",
        )
    )

    text = "\n".join(error.message for error in parsed.errors)
    assert len(parsed.errors) == 2
    for secret in ("Секретов", "Семён", "916", "1980"):
        assert secret not in text


def test_a_semicolon_file_from_excel_is_read() -> None:
    """R-ID-1: Excel with a Russian locale saves CSV with `;`."""
    data = csv_bytes(IVANOV.replace(",", ";"), PETROVA.replace(",", ";")).replace(b",", b";")

    parsed = parse(data)

    assert parsed.errors == []
    assert [row.policy_number for row in parsed.rows] == ["P-001", "P-002"]
    assert parsed.rows[1].full_name == "Петрова Алёна Сергеевна"


def test_a_windows_1251_file_is_read() -> None:
    """R-ID-1: a file that is not UTF-8 is read as Windows-1251."""
    parsed = parse(csv_bytes(IVANOV, PETROVA, encoding="cp1251"))

    assert parsed.errors == []
    assert [row.full_name for row in parsed.rows] == [
        "Иванов Иван Иванович",
        "Петрова Алёна Сергеевна",
    ]


def test_a_utf8_bom_is_ignored() -> None:
    """R-ID-1: Excel's UTF-8 export starts with a BOM; the first column still matches."""
    parsed = parse(b"\xef\xbb\xbf" + csv_bytes(IVANOV))

    assert parsed.errors == []
    assert parsed.rows[0].policy_number == "P-001"


def test_a_missing_column_is_one_error_on_line_1_and_no_rows() -> None:
    """R-ID-1: without every column of the contract nothing is imported."""
    header = HEADER.replace(",sex", "")
    data = f"{header}\nP-001,,2026-01-01,2026-12-31,Иванов Иван,1980-05-17,+79161234567\n"

    parsed = parse(data.encode())

    assert parsed.rows == []
    assert parsed.errors == [RowError(1, "header: missing column(s): sex")]


def test_columns_in_any_order_and_extra_columns_are_accepted() -> None:
    """R-ID-1: columns are found by name; unknown ones are ignored."""
    data = (
        "Phone,Sex,Birth_Date,Full_Name,comment,Valid_To,Valid_From,Purchased_On,Policy_Number\n"
        "+79161234567,F,1980-05-17,  Иванова   Мария ,vip,2026-12-31,2026-01-01,,P-9\n"
    ).encode()

    parsed = parse(data)

    assert parsed.errors == []
    row = parsed.rows[0]
    assert (row.policy_number, row.full_name, row.sex) == ("P-9", "Иванова Мария", "F")


def test_a_quoted_cell_over_two_lines_keeps_the_following_line_numbers() -> None:
    """R-ID-1: line numbers are physical lines, even after a cell with a line break."""
    data = csv_bytes(
        'P-001,,2026-01-01,2026-12-31,"Иванов\nИван",1980-05-17,M,+79161234567',  # 2-3
        "P-002,,2026-01-01,2026-12-31,Петров Пётр,1980-05-17,M,bad",  # 4
    )

    parsed = parse(data)

    assert parsed.rows[0].full_name == "Иванов Иван"
    assert [error.line for error in parsed.errors] == [4]


def test_an_empty_or_unreadable_file_is_an_error_on_line_1() -> None:
    """R-ID-1: a file without a header imports nothing and says why."""
    assert parse(b"").errors[0].line == 1
    assert parse(b"").rows == []


# --- import -------------------------------------------------------------------


async def test_importing_the_same_file_twice_changes_nothing(
    any_db: Database, clock: ManualClock
) -> None:
    """R-ID-1: an import creates patients and policies; a re-import is all unchanged."""
    parsed = parse(csv_bytes(IVANOV, PETROVA, SIDOROV))

    first = await import_insured(any_db, clock, parsed, who=ADMIN)
    clock.advance(timedelta(days=1))
    second = await import_insured(any_db, clock, parsed, who=ADMIN)

    assert (first.created, first.updated, first.unchanged) == (3, 0, 0)
    assert (second.created, second.updated, second.unchanged) == (0, 0, 3)
    assert await _count(any_db, Patient) == 3
    assert await _count(any_db, Policy) == 3
    patient = await _patient_of(any_db, "P-002")
    assert (patient.source, patient.phone, patient.sex) == ("import", "+79031112233", "F")
    assert patient.updated_at == datetime(2026, 1, 15, 9, 0, tzinfo=UTC)  # untouched by run 2


async def test_a_changed_phone_name_or_date_updates_the_patient_and_policy(
    db: Database, clock: ManualClock
) -> None:
    """R-ID-1: re-importing updates by policy number, in the linked Patient and Policy."""
    await import_insured(db, clock, parse(csv_bytes(IVANOV, PETROVA)), who=ADMIN)
    before = await _patient_of(db, "P-001")
    clock.advance(timedelta(hours=1))
    changed = IVANOV.replace("8 916 123-45-67", "+7 999 000 00 00").replace(
        "2026-12-31", "2027-06-30"
    )

    report = await import_insured(db, clock, parse(csv_bytes(changed, PETROVA)), who=ADMIN)

    assert (report.created, report.updated, report.unchanged) == (0, 1, 1)
    after = await _patient_of(db, "P-001")
    assert after.id == before.id
    assert after.phone == "+79990000000"
    assert after.updated_at == clock.now()
    async with db.read() as session:
        policy = await session.scalar(select(Policy).where(Policy.policy_number == "P-001"))
    assert policy is not None
    assert policy.valid_to == date(2027, 6, 30)
    assert policy.updated_at == clock.now()


async def test_bad_rows_are_reported_and_good_rows_imported(
    db: Database, clock: ManualClock
) -> None:
    """R-ID-1: bad rows do not stop the good ones; the report lists them by line."""
    parsed = parse(
        csv_bytes(
            IVANOV,
            "P-010,,2026-01-01,2026-12-31,Ошибкин Олег,1980-02-30,M,+79161230010",
            PETROVA,
        )
    )

    report = await import_insured(db, clock, parsed, who=ADMIN)

    assert (report.created, report.updated, report.unchanged) == (2, 0, 0)
    assert report.errors == [RowError(3, "birth_date: is not a valid calendar date")]
    assert await _count(db, Policy) == 2


async def test_two_policies_of_one_person_share_one_patient(
    db: Database, clock: ManualClock
) -> None:
    """R-ID-1: same phone, name (any case, ё/е, spaces) and birth date is one patient."""
    second_policy = "P-004,,2026-01-01,2026-12-31,ИВАНОВ  Иван  ИВАНОВИЧ,1980-05-17,M,+79161234567"
    relative = "P-005,,2026-01-01,2026-12-31,Иванова Анна,2012-04-01,F,+79161234567"
    await import_insured(db, clock, parse(csv_bytes(IVANOV)), who=ADMIN)

    report = await import_insured(
        db, clock, parse(csv_bytes(IVANOV, second_policy, relative)), who=ADMIN
    )

    assert (report.created, report.unchanged) == (2, 1)
    assert (await _patient_of(db, "P-004")).id == (await _patient_of(db, "P-001")).id
    assert (await _patient_of(db, "P-005")).id != (await _patient_of(db, "P-001")).id
    assert await _count(db, Patient) == 2


async def test_small_batches_give_the_same_result_as_one(db: Database, clock: ManualClock) -> None:
    """R-ID-1: a large file is committed in batches; a person spanning batches stays one."""
    lines = [
        f"P-{n:03}-B,,2026-01-01,2026-12-31,Иванов Иван Иванович,1980-05-17,M,+79161234567"
        for n in range(1, 8)
    ]
    parsed = parse(csv_bytes(*lines, PETROVA))

    report = await import_insured(db, clock, parsed, who=ADMIN, batch_size=3)
    again = await import_insured(db, clock, parsed, who=ADMIN, batch_size=3)

    assert report.created == 8
    assert again.unchanged == 8
    assert await _count(db, Patient) == 2
    assert await _count(db, Policy) == 8
    assert len(await _audit(db, "insured.import")) == 2  # one per import, not per batch


async def test_an_import_writes_one_audit_entry_with_counts_only(
    db: Database, clock: ManualClock
) -> None:
    """R-ID-1: the audit holds counts, never names or phones."""
    parsed = parse(csv_bytes(IVANOV, PETROVA, "P-9,,x,2026-12-31,Кто То,1980-01-01,M,1"))

    await import_insured(db, clock, parsed, who=ADMIN)

    [entry] = await _audit(db, "insured.import")
    assert entry.outcome == "ok"
    assert (entry.actor_role, entry.client_addr) == ("admin", "cli")
    assert entry.detail == {"created": 2, "updated": 0, "unchanged": 0, "errors": 1}


async def test_an_empty_list_imports_nothing_but_is_audited(
    db: Database, clock: ManualClock
) -> None:
    """R-ID-1: a file of only bad rows changes nothing and still leaves an audit entry."""
    report = await import_insured(db, clock, parse(csv_bytes("x")), who=ADMIN)

    assert (report.created, report.updated, report.unchanged, len(report.errors)) == (0, 0, 0, 1)
    assert len(await _audit(db, "insured.import")) == 1


def test_the_report_is_a_summary_line_then_one_line_per_error() -> None:
    """R-ID-1: the console output of `telemed import-insured`."""
    report = ImportReport(
        created=3,
        updated=1,
        unchanged=5,
        errors=[RowError(7, "birth_date: is in the future"), RowError(9, "sex: must be M or F")],
    )

    assert format_report(report) == (
        "created 3, updated 1, unchanged 5, errors 2\n"
        "line 7: birth_date: is in the future\n"
        "line 9: sex: must be M or F"
    )


# --- identification by the consultant ------------------------------------------


async def test_the_consultant_identifies_an_insured_caller(
    any_db: Database, clock: ManualClock, any_consultant: Who
) -> None:
    """R-AUTH-2: policy, name, birth date and phone find the patient; the phone is masked."""
    await import_insured(any_db, clock, parse(csv_bytes(IVANOV, SIDOROV)), who=ADMIN)

    found = await identify(
        any_db,
        clock,
        policy_number="P-001",
        full_name="Иванов Иван Иванович",
        birth_date=date(1980, 5, 17),
        phone="+7 916 123-45-67",
        who=any_consultant,
    )
    expired = await identify(
        any_db,
        clock,
        policy_number="P-003",
        full_name="Сидоров Пётр",
        birth_date=date(1950, 11, 30),
        phone=None,
        who=any_consultant,
    )

    assert found.patient_id == (await _patient_of(any_db, "P-001")).id
    assert (found.full_name, found.birth_date, found.age) == (
        "Иванов Иван Иванович",
        date(1980, 5, 17),
        45,
    )
    assert found.masked_phone == "+7916***4567"
    assert (found.policy_number, found.policy_active, found.valid_to) == (
        "P-001",
        True,
        date(2026, 12, 31),
    )
    assert (expired.policy_active, expired.age) == (False, 75)


async def test_names_compare_without_case_extra_spaces_or_yo(
    any_db: Database, clock: ManualClock, any_consultant: Who
) -> None:
    """R-AUTH-2: a consultant types names as heard: any case, spaces, е for ё."""
    await import_insured(any_db, clock, parse(csv_bytes(PETROVA)), who=ADMIN)

    found = await identify(
        any_db,
        clock,
        policy_number=" P-002 ",
        full_name="  петрова   АЛЕНА сергеевна ",
        birth_date=date(2015, 3, 2),
        phone="89031112233",
        who=any_consultant,
    )

    assert found.full_name == "Петрова Алёна Сергеевна"
    assert found.age == 10


@pytest.mark.parametrize(
    ("policy_number", "full_name", "birth_date", "phone"),
    [
        pytest.param("P-001", "Иванов Иван Иванович", date(1980, 5, 18), None, id="birth_date"),
        pytest.param("P-999", "Иванов Иван Иванович", date(1980, 5, 17), None, id="policy"),
        pytest.param(
            "P-001", "Иванов Иван Иванович", date(1980, 5, 17), "+79031112233", id="phone"
        ),
        pytest.param("P-001", "Иванов Иван", date(1980, 5, 17), None, id="name"),
    ],
)
async def test_any_mismatch_is_the_same_not_found(
    any_db: Database,
    clock: ManualClock,
    any_consultant: Who,
    policy_number: str,
    full_name: str,
    birth_date: date,
    phone: str | None,
) -> None:
    """R-AUTH-2: a wrong detail or unknown policy is `not_found`, never saying which one."""
    await import_insured(any_db, clock, parse(csv_bytes(IVANOV)), who=ADMIN)

    with pytest.raises(NotFound) as caught:
        await identify(
            any_db,
            clock,
            policy_number=policy_number,
            full_name=full_name,
            birth_date=birth_date,
            phone=phone,
            who=any_consultant,
        )

    assert caught.value.code == "not_found"
    assert caught.value.message == NO_MATCH_MESSAGE
    assert caught.value.details == {}


async def test_identification_is_audited_with_its_outcome(
    any_db: Database, clock: ManualClock, any_consultant: Who
) -> None:
    """R-AUTH-2: both a match and a miss leave an audit entry, with ids only."""
    await import_insured(any_db, clock, parse(csv_bytes(IVANOV)), who=ADMIN)
    patient = await _patient_of(any_db, "P-001")

    async def attempt(policy_number: str, birth_date: date) -> None:
        await identify(
            any_db,
            clock,
            policy_number=policy_number,
            full_name="Иванов Иван Иванович",
            birth_date=birth_date,
            phone=None,
            who=any_consultant,
        )

    await attempt("P-001", date(1980, 5, 17))
    with pytest.raises(NotFound):
        await attempt("P-001", date(1981, 5, 17))
    with pytest.raises(NotFound):
        await attempt("P-404", date(1980, 5, 17))

    entries = await _audit(any_db, "insured.identify")
    assert [(e.outcome, e.object_id) for e in entries] == [
        ("ok", patient.id),
        ("not_found", patient.id),
        ("not_found", None),
    ]
    assert all(e.actor_id == any_consultant.id for e in entries)
    assert all(e.client_addr == "10.0.0.7" for e in entries)
    assert [e.detail for e in entries][1:] == [
        {"reason": "mismatch"},
        {"reason": "unknown_policy"},
    ]


async def test_only_a_consultant_or_admin_may_identify(db: Database, clock: ManualClock) -> None:
    """R-AUTH-2: identification is the consultant's job; a patient token cannot probe."""
    with pytest.raises(Forbidden):
        await identify(
            db,
            clock,
            policy_number="P-001",
            full_name="Иванов Иван Иванович",
            birth_date=date(1980, 5, 17),
            phone=None,
            who=Who(role="patient", id="p1"),
        )


# --- registration by the consultant --------------------------------------------


async def _register_smirnov(
    db: Database,
    clock: ManualClock,
    who: Who,
    *,
    policy_number: str = "N-100",
    full_name: str = "Смирнов  Семён",
    birth_date: date = date(2010, 1, 16),
    sex: str = "м",
    phone: str = "8 916 555-44-33",
    valid_from: date | None = None,
    valid_to: date | None = None,
) -> IdentifiedPatient:
    return await register(
        db,
        clock,
        policy_number=policy_number,
        full_name=full_name,
        birth_date=birth_date,
        sex=sex,
        phone=phone,
        valid_from=valid_from,
        valid_to=valid_to,
        who=who,
    )


async def test_the_consultant_registers_a_caller_missing_from_the_list(
    any_db: Database, clock: ManualClock, any_consultant: Who
) -> None:
    """R-AUTH-3: a new Patient (source consultant) and a Policy for a year from today."""
    result = await _register_smirnov(any_db, clock, any_consultant)

    patient = await _patient_of(any_db, "N-100")
    assert result.patient_id == patient.id
    assert (patient.source, patient.registered_by) == ("consultant", any_consultant.id)
    assert (patient.full_name, patient.sex, patient.phone) == ("Смирнов Семён", "M", "+79165554433")
    assert patient.created_at == clock.now()
    async with any_db.read() as session:
        policy = await session.scalar(select(Policy).where(Policy.policy_number == "N-100"))
    assert policy is not None
    assert (policy.valid_from, policy.valid_to) == (TODAY, TODAY + timedelta(days=365))
    assert (result.age, result.policy_active, result.masked_phone) == (15, True, "+7916***4433")
    [entry] = await _audit(any_db, "insured.register")
    assert (entry.outcome, entry.object_id, entry.actor_id) == ("ok", patient.id, any_consultant.id)
    assert entry.detail == {"policy_id": policy.id, "new_patient": True}


async def test_a_known_policy_number_is_already_registered(
    any_db: Database, clock: ManualClock, any_consultant: Who
) -> None:
    """R-AUTH-3: registration never takes over a policy already on the list."""
    await import_insured(any_db, clock, parse(csv_bytes(IVANOV)), who=ADMIN)

    with pytest.raises(AlreadyRegistered) as caught:
        await _register_smirnov(any_db, clock, any_consultant, policy_number="P-001")

    assert (caught.value.code, caught.value.status) == ("already_registered", 409)
    assert await _count(any_db, Patient) == 1
    [entry] = await _audit(any_db, "insured.register")
    assert entry.outcome == "already_registered"


async def test_a_registered_caller_can_then_be_identified(
    any_db: Database, clock: ManualClock, any_consultant: Who
) -> None:
    """R-AUTH-3 then R-AUTH-2: the registered details identify the caller next time."""
    registered = await _register_smirnov(
        any_db, clock, any_consultant, valid_from=date(2026, 1, 10), valid_to=date(2026, 3, 31)
    )

    found = await identify(
        any_db,
        clock,
        policy_number="N-100",
        full_name="смирнов семен",
        birth_date=date(2010, 1, 16),
        phone="+79165554433",
        who=any_consultant,
    )

    assert found == registered
    assert found.valid_to == date(2026, 3, 31)


async def test_registering_a_known_person_attaches_the_policy_to_them(
    db: Database, clock: ManualClock, consultant: Who
) -> None:
    """R-AUTH-3: a new policy of a person already known does not make a second patient."""
    await import_insured(db, clock, parse(csv_bytes(IVANOV)), who=ADMIN)

    result = await _register_smirnov(
        db,
        clock,
        consultant,
        full_name="иванов иван иванович",
        birth_date=date(1980, 5, 17),
        phone="+79161234567",
    )

    assert result.patient_id == (await _patient_of(db, "P-001")).id
    assert await _count(db, Patient) == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"birth_date": TODAY + timedelta(days=1)}, "birth_date"),
        ({"sex": "X"}, "sex"),
        ({"phone": "12345"}, "phone"),
        ({"full_name": "  "}, "full_name"),
        ({"policy_number": " "}, "policy_number"),
        ({"valid_from": date(2026, 2, 1), "valid_to": date(2026, 1, 31)}, "valid_to"),
    ],
)
async def test_invalid_registration_details_are_refused(
    db: Database, clock: ManualClock, consultant: Who, overrides: dict[str, Any], field: str
) -> None:
    """R-AUTH-3: a birth date in the future and other bad fields are validation errors."""
    with pytest.raises(ValidationFailed) as caught:
        await _register_smirnov(db, clock, consultant, **overrides)

    assert caught.value.details == {"field": field}
    assert await _count(db, Patient) == 0


def test_today_is_the_insurers_calendar_day() -> None:
    """R-ID-1: just before midnight UTC it is already the next day in Moscow."""
    clock = ManualClock(datetime(2026, 1, 15, 22, 30, tzinfo=UTC))

    assert local_today(clock) == date(2026, 1, 16)
