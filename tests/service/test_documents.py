"""The medical card: uploads recognised by content, stored privately, read only by the patient
and the staff who serve them, every call audited; documents added to a consultation
(R-DOCS-1) and the chat's attachment check ("Documents and chat": 25 MB per message)."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import AsyncIterator, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from appkit import Running
from helpers import ADULT_PHONE, add_adult, bearer, patient_token, staff_token
from sqlalchemy import select

from telemed.consultation import Actor, Channel, Event
from telemed.db import Database
from telemed.errors import NotFound
from telemed.models import AuditEntry, ConsultationDocument, Document, Patient, new_id
from telemed.roles import Role
from telemed.services.documents import (
    WEB_ROOT,
    AttachmentsTooLarge,
    check_attachable,
    detect_type,
    display_name,
    has_documents,
)

MB = 1024 * 1024
MINUTE = timedelta(minutes=1)
LIMIT = 25 * MB
OTHER_PHONE = "+79169990000"
DOCS = "/api/v1/documents"

PDF_HEAD = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06"


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    """An ISO BMFF `ftyp` box, as HEIC/HEIF (and MP4, AVIF) files begin."""
    body = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body


HEIC_HEAD = ftyp(b"heic", b"mif1", b"heic") + b"\x00\x00\x00\x20meta"


def sized(head: bytes, size: int) -> bytes:
    """A file of exactly `size` bytes that starts with `head`."""
    return head + bytes(size - len(head))


# --- recognising the type, pure ---------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (PDF_HEAD, "application/pdf"),
        (JPEG_HEAD, "image/jpeg"),
        (PNG_HEAD, "image/png"),
        (HEIC_HEAD, "image/heic"),
        (ftyp(b"heix", b"mif1"), "image/heic"),
        (ftyp(b"heim"), "image/heic"),
        (ftyp(b"heis"), "image/heic"),
        (ftyp(b"hevc", b"msf1"), "image/heic-sequence"),
        (ftyp(b"hevm"), "image/heic-sequence"),
        (ftyp(b"hevs"), "image/heic-sequence"),
        (ftyp(b"mif1", b"mif1", b"heic"), "image/heic"),
        (ftyp(b"mif1", b"mif1"), "image/heif"),
        (ftyp(b"msf1", b"msf1"), "image/heif-sequence"),
    ],
)
def test_each_accepted_format_is_recognised_by_its_first_bytes(head: bytes, expected: str) -> None:
    assert detect_type(head + bytes(64)) == expected


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"MZ\x90\x00\x03\x00\x00\x00",  # a Windows executable
        b"\x7fELF\x02\x01\x01",
        b"PK\x03\x04",  # zip, docx
        b"Just some notes about my blood pressure\n",
        b"<!DOCTYPE html><html><script>alert(1)</script>",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        b"<svg onload=alert(1)>",
        b" %PDF-1.7",  # the signature must come first
        b"GIF89a\x01\x00\x01\x00",
        ftyp(b"isom", b"mp41"),  # an MP4 video
        ftyp(b"avif", b"mif1", b"avif"),
        ftyp(b"mif1", b"mif1", b"avif"),  # AVIF under the generic brand
        b"\x00\x00\x00\x08ftypheic",  # a box too short to hold a brand
    ],
)
def test_other_contents_are_not_recognised(head: bytes) -> None:
    assert detect_type(head) is None


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("анализ крови.pdf", "анализ крови.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\scan.png", "scan.png"),
        ("\u202egnp.exe", "gnp.exe"),  # a right-to-left override that would disguise it
        ("line\r\nbreak\x00.pdf", "line break.pdf"),
        ("  .hidden.jpg  ", "hidden.jpg"),
        ("...", "document"),
        (None, "document"),
        ("a" * 300 + ".heic", "a" * 195 + ".heic"),
    ],
)
def test_the_original_name_is_kept_only_as_a_safe_display_name(raw: str | None, shown: str) -> None:
    assert display_name(raw) == shown


# --- the app ------------------------------------------------------------------------------


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    return tmp_path / "docs"


@pytest.fixture
async def card_app(start_app: Callable[..., Any], sqlite_url: str, docs_dir: Path) -> Running:
    """The app on SQLite, storing documents under this test's temporary directory."""
    running: Running = await start_app(sqlite_url, storage={"documents_dir": str(docs_dir)})
    return running


async def a_patient(app: Running, phone: str = ADULT_PHONE, policy: str = "P-1") -> Any:
    """Import a patient and log them in (with consent): (token, patient id)."""
    await add_adult(app, phone=phone, policy=policy)
    token = await patient_token(app, phone)
    me = await (await app.client.get("/api/v1/me", headers=bearer(token))).json()
    return token, me["user_id"]


async def upload(
    app: Running,
    token: str,
    data: bytes | Any,
    filename: str = "scan.pdf",
    content_type: str = "application/octet-stream",
) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type=content_type)
    return await app.client.post(DOCS, data=form, headers=bearer(token))


async def uploaded(app: Running, token: str, data: bytes, filename: str = "scan.pdf") -> Any:
    resp = await upload(app, token, data, filename)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def rows(app: Running, model: Any) -> list[Any]:
    async with app.services.db.read() as session:
        return list((await session.scalars(select(model))).all())


async def audit(app: Running, action: str) -> list[AuditEntry]:
    async with app.services.db.read() as session:
        found = await session.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
        )
        return list(found.all())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def stored_files(docs_dir: Path) -> list[Path]:
    return sorted(docs_dir.iterdir()) if docs_dir.exists() else []


async def error_code(resp: aiohttp.ClientResponse) -> str:
    return str((await resp.json())["error"]["code"])


# --- uploads --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "name", "declared", "stored_as"),
    [
        (PDF_HEAD, "выписка.pdf", "application/pdf", "application/pdf"),
        (JPEG_HEAD, "photo.png", "image/png", "image/jpeg"),
        (PNG_HEAD, "x.pdf", "application/pdf", "image/png"),
        (HEIC_HEAD, "IMG_0001.txt", "text/plain", "image/heic"),
    ],
)
async def test_each_type_is_accepted_by_its_content_whatever_its_name_or_declared_type(
    card_app: Running, content: bytes, name: str, declared: str, stored_as: str
) -> None:
    """A PNG named x.pdf and sent as application/pdf is stored and served as image/png."""
    token, patient_id = await a_patient(card_app)
    data = sized(content, 4096)
    resp = await upload(card_app, token, data, name, declared)
    assert resp.status == 201, await resp.text()
    doc = await resp.json()
    assert doc["content_type"] == stored_as and doc["size"] == 4096
    assert doc["patient_id"] == patient_id and doc["filename"] == name
    assert doc["sha256"] == hashlib.sha256(data).hexdigest()
    assert doc["uploaded_by_role"] == "patient"
    got = await card_app.client.get(f"{DOCS}/{doc['document_id']}/content", headers=bearer(token))
    assert got.headers["Content-Type"] == stored_as
    assert await got.read() == data


@pytest.mark.parametrize(
    ("content", "name", "declared"),
    [
        (b"MZ\x90\x00\x03" + bytes(500), "report.pdf", "application/pdf"),
        (b"My blood pressure this week: 120/80\n" * 10, "notes.txt", "text/plain"),
        (b"<html><body><script>alert(1)</script></body></html>", "scan.jpg", "image/jpeg"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "x.png", "image/png"),
        (b"", "empty.pdf", "application/pdf"),
    ],
)
async def test_other_files_are_refused_as_unsupported_type_and_leave_nothing_behind(
    card_app: Running, docs_dir: Path, content: bytes, name: str, declared: str
) -> None:
    token, _ = await a_patient(card_app)
    resp = await upload(card_app, token, content, name, declared)
    assert resp.status == 415
    assert await error_code(resp) == "unsupported_type"
    assert await rows(card_app, Document) == []
    assert stored_files(docs_dir) == []
    [entry] = await audit(card_app, "document_upload")
    assert entry.outcome == "unsupported_type" and entry.actor_role == "patient"


async def test_a_file_of_exactly_25_mb_is_accepted(card_app: Running, docs_dir: Path) -> None:
    token, _ = await a_patient(card_app)
    data = sized(PDF_HEAD, LIMIT)
    doc = await uploaded(card_app, token, data)
    assert doc["size"] == LIMIT and doc["sha256"] == hashlib.sha256(data).hexdigest()
    [path] = stored_files(docs_dir)
    assert path.stat().st_size == LIMIT


async def test_a_file_one_byte_over_25_mb_is_refused_and_leaves_nothing_behind(
    card_app: Running, docs_dir: Path
) -> None:
    token, _ = await a_patient(card_app)
    resp = await upload(card_app, token, sized(PDF_HEAD, LIMIT + 1))
    assert resp.status == 413
    body = await resp.json()
    assert body["error"]["code"] == "payload_too_large"
    assert body["error"]["details"]["limit_bytes"] == LIMIT
    assert stored_files(docs_dir) == []
    assert await rows(card_app, Document) == []
    [entry] = await audit(card_app, "document_upload")
    assert entry.outcome == "payload_too_large"


async def test_an_endless_upload_is_refused_while_it_streams(
    card_app: Running, docs_dir: Path
) -> None:
    """The limit is counted as the bytes arrive: a body that never ends (chunked, no
    length) still gets its 413, so the server cannot have waited for all of it."""
    token, _ = await a_patient(card_app)
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield PDF_HEAD
        while True:
            sent += MB
            yield bytes(MB)

    resp = await upload(card_app, token, endless(), "big.pdf", "application/pdf")
    assert resp.status == 413
    assert await error_code(resp) == "payload_too_large"
    assert sent < 4 * LIMIT
    resp.close()
    assert stored_files(docs_dir) == []
    assert await rows(card_app, Document) == []


async def test_files_land_outside_the_web_root_under_random_names_readable_by_the_owner_only(
    card_app: Running, docs_dir: Path
) -> None:
    token, _ = await a_patient(card_app)
    first = sized(PNG_HEAD, 1000)
    second = sized(PNG_HEAD, 1000)
    await uploaded(card_app, token, first, "../../telemed/web/анализ.png")
    await uploaded(card_app, token, second, "анализ.png")
    files = stored_files(docs_dir)
    assert len(files) == 2
    assert mode(docs_dir) == 0o700
    for path in files:
        assert mode(path) == 0o600
        assert len(path.name) == 32 and int(path.name, 16) >= 0  # random hex, no extension
        assert WEB_ROOT not in path.resolve().parents
    docs = await rows(card_app, Document)
    assert {d.storage_name for d in docs} == {p.name for p in files}
    assert {d.filename for d in docs} == {"анализ.png"}
    assert not list(WEB_ROOT.rglob("*анализ*"))


async def test_an_upload_needs_a_multipart_file_field_and_a_patient(card_app: Running) -> None:
    token, _ = await a_patient(card_app)
    resp = await card_app.client.post(DOCS, data=PDF_HEAD, headers=bearer(token))
    assert resp.status == 400 and await error_code(resp) == "bad_request"
    form = aiohttp.FormData()
    form.add_field("note", "hello")
    form.add_field("other", PDF_HEAD, filename="x.pdf")
    resp = await card_app.client.post(DOCS, data=form, headers=bearer(token))
    assert resp.status == 400 and await error_code(resp) == "bad_request"
    staff, _ = await staff_token(card_app, Role.CONSULTANT)
    resp = await upload(card_app, staff, sized(PDF_HEAD, 100))
    assert resp.status == 403 and await error_code(resp) == "forbidden"
    assert await rows(card_app, Document) == []


async def test_a_patient_without_consent_cannot_upload(card_app: Running) -> None:
    """R-CONSENT-1: no service, the medical card included, before the consent."""
    await add_adult(card_app)
    token = await patient_token(card_app, consent=False)
    resp = await upload(card_app, token, sized(PDF_HEAD, 100))
    assert resp.status == 403 and await error_code(resp) == "consent_required"


# --- reading --------------------------------------------------------------------------------


async def test_the_patient_lists_their_card_newest_first_and_downloads_their_documents(
    card_app: Running,
) -> None:
    token, _ = await a_patient(card_app)
    old = await uploaded(card_app, token, sized(PDF_HEAD, 300), "old.pdf")
    card_app.clock.advance(MINUTE)
    new = await uploaded(card_app, token, sized(JPEG_HEAD, 200), "new photo.jpeg")
    listed = await (await card_app.client.get(DOCS, headers=bearer(token))).json()
    assert [d["document_id"] for d in listed["items"]] == [new["document_id"], old["document_id"]]

    meta = await card_app.client.get(f"{DOCS}/{new['document_id']}", headers=bearer(token))
    assert meta.status == 200 and await meta.json() == new

    got = await card_app.client.get(f"{DOCS}/{new['document_id']}/content", headers=bearer(token))
    assert got.status == 200
    assert await got.read() == sized(JPEG_HEAD, 200)
    assert got.headers["Content-Type"] == "image/jpeg"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    disposition = got.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''new%20photo.jpeg" in disposition


async def test_a_download_carries_an_extension_that_matches_the_real_type(
    card_app: Running,
) -> None:
    token, _ = await a_patient(card_app)
    doc = await uploaded(card_app, token, sized(PNG_HEAD, 100), "x.pdf")
    got = await card_app.client.get(f"{DOCS}/{doc['document_id']}/content", headers=bearer(token))
    assert got.headers["Content-Type"] == "image/png"
    assert 'filename="x.pdf.png"' in got.headers["Content-Disposition"]


async def test_another_patient_gets_not_found_exactly_as_for_a_document_that_does_not_exist(
    start_app: Callable[..., Any], any_db_url: str, docs_dir: Path
) -> None:
    """Existence is not revealed: 404 `not_found` both ways; the audit says `forbidden`."""
    app: Running = await start_app(any_db_url, storage={"documents_dir": str(docs_dir)})
    owner, owner_id = await a_patient(app)
    other, _ = await a_patient(app, OTHER_PHONE, "P-2")
    doc = await uploaded(app, owner, sized(PDF_HEAD, 100))
    for path in (f"{DOCS}/{doc['document_id']}", f"{DOCS}/{doc['document_id']}/content"):
        theirs = await app.client.get(path, headers=bearer(other))
        missing = await app.client.get(
            path.replace(doc["document_id"], new_id()), headers=bearer(other)
        )
        assert theirs.status == missing.status == 404
        assert await theirs.json() == await missing.json()
    card = await app.client.get(DOCS, params={"patient_id": owner_id}, headers=bearer(other))
    assert card.status == 404 and await error_code(card) == "not_found"
    own = await (await app.client.get(DOCS, headers=bearer(other))).json()
    assert own["items"] == []
    refused = [e for e in await audit(app, "document_read") if e.outcome == "forbidden"]
    assert [e.object_id for e in refused] == [doc["document_id"]]
    downloads = await audit(app, "document_download")
    assert [e.outcome for e in downloads] == ["forbidden", "not_found"]


async def test_a_consultant_who_served_the_patient_reads_the_card_and_others_do_not(
    start_app: Callable[..., Any], any_db_url: str, docs_dir: Path
) -> None:
    """Staff of the patient's consultations read the card (also after the consultation ended,
    to prepare follow-ups); a consultant who never served the patient and the administrator
    get 404 like for a document that does not exist."""
    app: Running = await start_app(any_db_url, storage={"documents_dir": str(docs_dir)})
    token, patient_id = await a_patient(app)
    doc = await uploaded(app, token, sized(PDF_HEAD, 100))
    served, served_id = await staff_token(app, Role.CONSULTANT, "served")
    stranger, _ = await staff_token(app, Role.CONSULTANT, "stranger")
    admin, _ = await staff_token(app, Role.ADMIN)
    content = f"{DOCS}/{doc['document_id']}/content"
    card = {"patient_id": patient_id}

    assert (await app.client.get(content, headers=bearer(served))).status == 404  # not yet
    consultations = app.services.consultations
    started = await consultations.start(patient_id, Channel.VIDEO)
    consultation_id = started.consultation.id
    await consultations.accept(Actor(Role.CONSULTANT, served_id), consultation_id)

    got = await app.client.get(content, headers=bearer(served))
    assert got.status == 200 and await got.read() == sized(PDF_HEAD, 100)
    listed = await app.client.get(DOCS, params=card, headers=bearer(served))
    assert [d["document_id"] for d in (await listed.json())["items"]] == [doc["document_id"]]
    for outsider in (stranger, admin):
        assert (await app.client.get(content, headers=bearer(outsider))).status == 404
        resp = await app.client.get(f"{DOCS}/{doc['document_id']}", headers=bearer(outsider))
        assert resp.status == 404
        resp = await app.client.get(DOCS, params=card, headers=bearer(outsider))
        assert resp.status == 404

    await consultations.fire(consultation_id, Event.CLOSE, Actor(Role.CONSULTANT, served_id))
    assert (await app.client.get(content, headers=bearer(served))).status == 200
    resp = await app.client.get(DOCS, headers=bearer(served))
    assert resp.status == 404  # staff have no card of their own: they name the patient


async def test_the_doctor_a_consultation_waits_for_reads_the_card_before_accepting(
    start_app: Callable[..., Any], any_db_url: str, docs_dir: Path
) -> None:
    """R-DOCS-1: the named doctor can study the documents while the patient waits."""
    app: Running = await start_app(any_db_url, storage={"documents_dir": str(docs_dir)})
    token, patient_id = await a_patient(app)
    doc = await uploaded(app, token, sized(PDF_HEAD, 100))
    _, consultant_id = await staff_token(app, Role.CONSULTANT)
    doctor, doctor_id = await staff_token(app, Role.SPECIALIST, "cardiologist")
    other_doctor, _ = await staff_token(app, Role.SPECIALIST, "dermatologist")
    consultant = Actor(Role.CONSULTANT, consultant_id)
    consultations = app.services.consultations
    consultation_id = (await consultations.start(patient_id, Channel.VIDEO)).consultation.id
    await consultations.accept(consultant, consultation_id)
    await consultations.transfer_to_doctor(consultation_id, consultant, doctor_id)
    content = f"{DOCS}/{doc['document_id']}/content"
    assert (await app.client.get(content, headers=bearer(doctor))).status == 200
    assert (await app.client.get(content, headers=bearer(other_doctor))).status == 404


async def test_every_read_and_write_is_audited_without_file_names(card_app: Running) -> None:
    token, patient_id = await a_patient(card_app)
    staff, staff_id = await staff_token(card_app, Role.CONSULTANT)
    doc = await uploaded(card_app, token, sized(PDF_HEAD, 100), "ВИЧ анализ.pdf")
    doc_id = doc["document_id"]
    await card_app.client.get(DOCS, headers=bearer(token))
    await card_app.client.get(f"{DOCS}/{doc_id}", headers=bearer(token))
    await card_app.client.get(f"{DOCS}/{doc_id}/content", headers=bearer(token))
    await card_app.client.get(f"{DOCS}/{doc_id}/content", headers=bearer(staff))
    await card_app.client.get(DOCS, params={"patient_id": patient_id}, headers=bearer(staff))

    async with card_app.services.db.read() as session:
        entries = (
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action.startswith("document_"))
                .order_by(AuditEntry.id)
            )
        ).all()
    seen = [(e.action, e.actor_role, e.actor_id, e.object_id, e.outcome) for e in entries]
    assert seen == [
        ("document_upload", "patient", patient_id, doc_id, "ok"),
        ("document_list", "patient", patient_id, patient_id, "ok"),
        ("document_read", "patient", patient_id, doc_id, "ok"),
        ("document_download", "patient", patient_id, doc_id, "ok"),
        ("document_download", "consultant", staff_id, doc_id, "forbidden"),
        ("document_list", "consultant", staff_id, patient_id, "forbidden"),
    ]
    assert all(e.at == card_app.clock.now() and e.client_addr for e in entries)
    assert all("ВИЧ" not in repr(e.detail) for e in entries)


# --- documents of a consultation (R-DOCS-1) -----------------------------------------------


async def test_a_patient_adds_a_card_document_to_their_open_consultation_once(
    card_app: Running,
) -> None:
    """R-DOCS-1: the consultation gets the document (adding it twice changes nothing), and
    `has_documents` - the gate the scheduler uses - turns true."""
    token, patient_id = await a_patient(card_app)
    doc = await uploaded(card_app, token, sized(PDF_HEAD, 100))
    _, consultant_id = await staff_token(card_app, Role.CONSULTANT)
    consultations = card_app.services.consultations
    consultation_id = (await consultations.start(patient_id, Channel.CHAT)).consultation.id
    path = f"/api/v1/consultations/{consultation_id}/documents"
    assert await has_documents(card_app.services.db, consultation_id) is False

    for _ in range(2):
        resp = await card_app.client.post(
            path, json={"document_id": doc["document_id"]}, headers=bearer(token)
        )
        assert resp.status == 200, await resp.text()
        assert [d["document_id"] for d in (await resp.json())["items"]] == [doc["document_id"]]
    assert len(await rows(card_app, ConsultationDocument)) == 1
    assert await has_documents(card_app.services.db, consultation_id) is True
    assert await card_app.services.documents.has_documents(consultation_id) is True

    listed = await card_app.client.get(path, headers=bearer(token))
    assert [d["document_id"] for d in (await listed.json())["items"]] == [doc["document_id"]]
    consultant = Actor(Role.CONSULTANT, consultant_id)
    await consultations.accept(consultant, consultation_id)
    staff, _ = await staff_token(card_app, Role.CONSULTANT, "second")
    assert (await card_app.client.get(path, headers=bearer(staff))).status == 404
    audit_entries = await audit(card_app, "consultation_document_add")
    assert [e.outcome for e in audit_entries] == ["ok", "ok"]
    listings = await audit(card_app, "consultation_document_list")
    assert [(e.actor_role, e.outcome) for e in listings] == [
        ("patient", "ok"),
        ("consultant", "forbidden"),
    ]


async def test_only_own_documents_go_into_own_open_consultations(card_app: Running) -> None:
    """R-DOCS-1: another patient's document or consultation is not found; a closed
    consultation takes no more documents."""
    token, patient_id = await a_patient(card_app)
    other, other_id = await a_patient(card_app, OTHER_PHONE, "P-2")
    mine = await uploaded(card_app, token, sized(PDF_HEAD, 100))
    theirs = await uploaded(card_app, other, sized(PDF_HEAD, 100))
    consultations = card_app.services.consultations
    my_consultation = (await consultations.start(patient_id, Channel.CHAT)).consultation.id
    their_consultation = (await consultations.start(other_id, Channel.CHAT)).consultation.id

    async def add(consultation_id: str, document_id: str) -> aiohttp.ClientResponse:
        return await card_app.client.post(
            f"/api/v1/consultations/{consultation_id}/documents",
            json={"document_id": document_id},
            headers=bearer(token),
        )

    assert (await add(my_consultation, theirs["document_id"])).status == 404
    assert (await add(their_consultation, mine["document_id"])).status == 404
    assert (await add(my_consultation, new_id())).status == 404
    _, consultant_id = await staff_token(card_app, Role.CONSULTANT)
    consultant = Actor(Role.CONSULTANT, consultant_id)
    await consultations.accept(consultant, my_consultation)
    await consultations.fire(my_consultation, Event.CLOSE, consultant)
    closed = await add(my_consultation, mine["document_id"])
    assert closed.status == 409 and await error_code(closed) == "invalid_state"
    assert await rows(card_app, ConsultationDocument) == []
    outcomes = [e.outcome for e in await audit(card_app, "consultation_document_add")]
    assert outcomes == ["forbidden", "forbidden", "not_found", "invalid_state"]


# --- the chat's attachment check ----------------------------------------------------------


async def add_patient_row(db: Database, clock: Any) -> str:
    patient_id = new_id()
    async with db.write() as session:
        session.add(
            Patient(
                id=patient_id,
                phone=f"+7916{patient_id[:7]}",
                full_name="Иванов Иван",
                birth_date=date(1980, 3, 1),
                sex="M",
                source="demo",
                created_at=clock.now(),
                updated_at=clock.now(),
            )
        )
    return patient_id


async def add_document_row(db: Database, clock: Any, patient_id: str, size: int) -> str:
    document_id = new_id()
    async with db.write() as session:
        session.add(
            Document(
                id=document_id,
                patient_id=patient_id,
                filename="scan.pdf",
                content_type="application/pdf",
                size=size,
                sha256="0" * 64,
                storage_name=new_id(),
                uploaded_by_role="patient",
                uploaded_by_id=patient_id,
                created_at=clock.now(),
            )
        )
    return document_id


async def test_a_chat_message_may_carry_own_documents_of_25_mb_in_all(
    any_db: Database, clock: Any
) -> None:
    """RULES "Documents and chat": 25 MB in all per message, and only the patient's own."""
    patient_id = await add_patient_row(any_db, clock)
    other_id = await add_patient_row(any_db, clock)
    big = await add_document_row(any_db, clock, patient_id, 20 * MB)
    small = await add_document_row(any_db, clock, patient_id, 5 * MB)
    extra = await add_document_row(any_db, clock, patient_id, 1)
    theirs = await add_document_row(any_db, clock, other_id, 1)

    found = await check_attachable(any_db, patient_id, [small, big, small])
    assert [d.id for d in found] == [small, big]
    assert await check_attachable(any_db, patient_id, []) == []
    with pytest.raises(AttachmentsTooLarge) as too_large:
        await check_attachable(any_db, patient_id, [big, small, extra])
    assert too_large.value.status == 413 and too_large.value.code == "attachments_too_large"
    with pytest.raises(NotFound):
        await check_attachable(any_db, patient_id, [small, theirs])
    assert [d.id for d in await check_attachable(any_db, patient_id, [extra], limit=1)] == [extra]
    with pytest.raises(AttachmentsTooLarge):
        await check_attachable(any_db, patient_id, [small], limit=MB)
