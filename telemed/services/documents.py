"""The patient's medical card: uploads sniffed by content, stored privately, read by few.

Files are recognised by their first bytes, never by their name or declared
type, and only PDF, JPEG, PNG and HEIC/HEIF are kept. They are streamed to a
temporary file in the storage directory (mode 0o700, files 0o600) while the
size limit is counted, then renamed to a random name; the original file name
survives only as a sanitised display name. Every read and write, refused or
not, leaves an audit entry. Who may read a card is decided by the one access policy
(`telemed.access`, through `CareAccess`).

A card (or document) the caller may not read answers exactly like one that
does not exist (404 `not_found`), so the existence of another patient's
documents is never revealed; the audit log still records the refusal as
`forbidden`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import tempfile
import time
import unicodedata
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from telemed.access import DENIED
from telemed.clock import Clock
from telemed.config import ConfigError, RulesSettings, StorageSettings
from telemed.consultation import State
from telemed.db import Database
from telemed.errors import InvalidState, NotFound, PayloadTooLarge, TelemedError
from telemed.models import (
    Consultation,
    ConsultationDocument,
    Document,
    SecondOpinion,
    SecondOpinionDocument,
)
from telemed.roles import Role
from telemed.services.audit import Who, record
from telemed.services.care import CareAccess, access_detail

log = logging.getLogger("telemed.documents")

MB = 1024 * 1024
DEFAULT_MAX_DOCUMENT_BYTES = 25 * MB
DEFAULT_CHAT_ATTACHMENT_LIMIT = 25 * MB  # RULES "Documents and chat": 25 MB per message
WEB_ROOT = Path(__file__).resolve().parents[1] / "web"
HEAD_BYTES = 64  # enough for every signature below, the HEIF brand list included
ENVELOPE_SLACK = 64 * 1024  # multipart boundaries and part headers around the file
PARTIAL_PREFIX = ".upload-"
PARTIAL_SUFFIX = ".part"
PARTIAL_MAX_AGE_SECONDS = 3600.0
DISPLAY_NAME_MAX = 200
LIST_LIMIT = 500

PDF = "application/pdf"
JPEG = "image/jpeg"
PNG = "image/png"
HEIC = "image/heic"
HEIC_SEQUENCE = "image/heic-sequence"
HEIF = "image/heif"
HEIF_SEQUENCE = "image/heif-sequence"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# ISO/IEC 23008-12 brands: HEVC-coded images and sequences, and the generic HEIF ones.
_HEVC_BRANDS = {b"heic": HEIC, b"heix": HEIC, b"heim": HEIC, b"heis": HEIC}
_HEVC_SEQUENCE_BRANDS = {b"hevc": HEIC_SEQUENCE, b"hevm": HEIC_SEQUENCE, b"hevs": HEIC_SEQUENCE}
_HEIF_BRANDS = {b"mif1": HEIF, b"msf1": HEIF_SEQUENCE}
_BRANDS = {**_HEVC_BRANDS, **_HEVC_SEQUENCE_BRANDS, **_HEIF_BRANDS}

EXTENSIONS: dict[str, tuple[str, ...]] = {
    PDF: (".pdf",),
    JPEG: (".jpg", ".jpeg", ".jpe"),
    PNG: (".png",),
    HEIC: (".heic", ".heif"),
    HEIC_SEQUENCE: (".heics", ".heic", ".heif"),
    HEIF: (".heif", ".heic"),
    HEIF_SEQUENCE: (".heifs", ".heif", ".heic"),
}


class UnsupportedType(TelemedError):
    code = "unsupported_type"
    status = 415
    default_message = "Only PDF, JPEG, PNG and HEIC files can be added to the medical card."


class AttachmentsTooLarge(TelemedError):
    code = "attachments_too_large"
    status = 413
    default_message = "The files of one message may be 25 MB in all."


def detect_type(head: bytes) -> str | None:
    """The content type of a file from its first bytes, or None when it is not accepted.

    Pure, so the one rule that decides what the card accepts is tested on bytes alone.
    """
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(_PNG_SIGNATURE):
        return PNG
    return _heif_type(head)


def _heif_type(head: bytes) -> str | None:
    """HEIC/HEIF: an ISO BMFF `ftyp` box first, whose major brand is a HEIF brand."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(head[0:4], "big")
    if box_size < 16:
        return None
    major = head[8:12]
    compatible = {head[i : i + 4] for i in range(16, min(box_size, len(head)) - 3, 4)}
    if major in _HEVC_BRANDS or major in _HEVC_SEQUENCE_BRANDS:
        return _BRANDS[major]
    if major in _HEIF_BRANDS:
        # A generic HEIF major brand: HEVC-coded when a compatible brand says so. AVIF
        # files also use mif1, but name their own codec brand; those are not accepted.
        for brand in (*_HEVC_BRANDS, *_HEVC_SEQUENCE_BRANDS):
            if brand in compatible:
                return _BRANDS[brand]
        if compatible & {b"avif", b"avis"}:
            return None
        return _BRANDS[major]
    return None


def display_name(raw: str | None) -> str:
    """The original file name made safe to show and to offer for download.

    No directories, no control or bidirectional-override characters, no leading dots,
    at most 200 characters (the extension kept); `document` when nothing is left.
    """
    name = unicodedata.normalize("NFC", raw or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(" " if ch.isspace() else ch for ch in name)
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = " ".join(name.split()).lstrip(". ").rstrip(". ")
    if len(name) > DISPLAY_NAME_MAX:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[: DISPLAY_NAME_MAX - len(ext) - 1].rstrip(". ") + "." + ext
        else:
            name = name[:DISPLAY_NAME_MAX].rstrip(". ")
    return name or "document"


def download_name(doc: Document) -> str:
    """The display name with an extension that matches the real type (a PNG named x.pdf
    is offered as x.pdf.png), so the client's system opens it with the right program."""
    allowed = EXTENSIONS.get(doc.content_type, ())
    if any(doc.filename.lower().endswith(ext) for ext in allowed) or not allowed:
        return doc.filename
    return doc.filename + allowed[0]


async def sent_for_second_opinion(session: AsyncSession, *, actor_id: str, doc: Document) -> bool:
    """A specialist reads the documents sent with a second opinion assigned to them (R-SECOND):
    just those documents, not the rest of the card."""
    found = await session.scalar(
        select(SecondOpinionDocument.document_id)
        .join(SecondOpinion, SecondOpinion.id == SecondOpinionDocument.second_opinion_id)
        .where(
            SecondOpinionDocument.document_id == doc.id,
            SecondOpinion.specialist_id == actor_id,
        )
        .limit(1)
    )
    return found is not None


async def has_documents(db: Database, consultation_id: str) -> bool:
    """Whether the patient has added at least one card document to this consultation:
    the gate of R-DOCS-1 for consultations that need documents."""
    async with db.read() as session:
        found = await session.scalar(
            select(ConsultationDocument.document_id)
            .where(ConsultationDocument.consultation_id == consultation_id)
            .limit(1)
        )
    return found is not None


async def check_attachable(
    db: Database,
    patient_id: str,
    document_ids: Sequence[str],
    *,
    limit: int = DEFAULT_CHAT_ATTACHMENT_LIMIT,
) -> list[Document]:
    """The documents to attach to one chat message, in the order given (duplicates once).

    They must all be in this patient's card (else `not_found`) and weigh at most `limit`
    bytes together (else `attachments_too_large`): 25 MB per message by the rules.
    """
    wanted = list(dict.fromkeys(document_ids))
    if not wanted:
        return []
    async with db.read() as session:
        rows = (
            await session.scalars(
                select(Document).where(Document.id.in_(wanted), Document.patient_id == patient_id)
            )
        ).all()
    by_id = {row.id: row for row in rows}
    missing = [d for d in wanted if d not in by_id]
    if missing:
        raise NotFound("No such document in the patient's medical card.", document_ids=missing)
    total = sum(row.size for row in rows)
    if total > limit:
        raise AttachmentsTooLarge(
            f"The files of one message may be {limit // MB} MB in all.",
            limit_bytes=limit,
            total_bytes=total,
        )
    return [by_id[d] for d in wanted]


@dataclass(frozen=True)
class StoredFile:
    """A document's metadata and where its bytes are, for streaming them out."""

    document: Document
    path: Path
    download_name: str


@dataclass(frozen=True)
class _Received:
    temp: Path
    content_type: str
    size: int
    sha256: str


class DocumentService:
    """Stores, lists and serves medical-card documents; audits every call."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: StorageSettings,
        rules: RulesSettings | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.access = CareAccess(db, clock, rules or RulesSettings())
        self.max_bytes = settings.max_document_bytes
        self.chat_limit = settings.chat_attachment_limit
        self.root = Path(settings.documents_dir).expanduser().resolve()
        if self.root == WEB_ROOT or WEB_ROOT in self.root.parents:
            raise ConfigError("config key storage.documents_dir: must be outside the web root")
        self._prepared = False

    def prepare(self) -> None:
        """Create the storage directory (owner only) and drop uploads a crash left behind.

        Done at the first upload rather than at start, so a node that never stores a file
        never creates the directory."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root.chmod(0o700)
        cutoff = time.time() - PARTIAL_MAX_AGE_SECONDS
        for stale in self.root.glob(f"{PARTIAL_PREFIX}*{PARTIAL_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                if stale.stat().st_mtime < cutoff:
                    stale.unlink()

    # --- writes ---------------------------------------------------------------------------

    async def upload(
        self,
        who: Who,
        patient_id: str,
        filename: str | None,
        chunks: AsyncIterable[bytes],
        *,
        declared_length: int | None = None,
    ) -> Document:
        """Add a file to the patient's card, refusing unknown types (415) and files over the
        limit (413) while they stream in; nothing of a refused upload stays on disk."""
        if declared_length is not None and declared_length > self.max_bytes + ENVELOPE_SLACK:
            await self._refused_upload(who, PayloadTooLarge.code)
            raise self._too_large()
        if not self._prepared:
            await asyncio.to_thread(self.prepare)
            self._prepared = True
        try:
            received = await self._receive(chunks)
        except TelemedError as exc:
            await self._refused_upload(who, exc.code)
            raise
        storage_name = secrets.token_hex(16)
        final = self.root / storage_name
        try:
            await asyncio.to_thread(os.replace, received.temp, final)
            now = self.clock.now()
            async with self.db.write() as session:
                doc = Document(
                    patient_id=patient_id,
                    filename=display_name(filename),
                    content_type=received.content_type,
                    size=received.size,
                    sha256=received.sha256,
                    storage_name=storage_name,
                    uploaded_by_role=Role.PATIENT.value,
                    uploaded_by_id=who.id or patient_id,
                    created_at=now,
                )
                session.add(doc)
                await session.flush()
                record(
                    session,
                    at=now,
                    who=who,
                    action="document_upload",
                    object_type="document",
                    object_id=doc.id,
                    detail={"content_type": doc.content_type, "size": doc.size},
                )
        except BaseException:
            _discard(received.temp, final)
            raise
        log.info("document %s stored (%s, %d bytes)", doc.id, doc.content_type, doc.size)
        return doc

    async def _receive(self, chunks: AsyncIterable[bytes]) -> _Received:
        """Stream into a private temporary file beside the final one, sniffing the head and
        counting the size; the temporary file is removed on any failure."""
        fd, temp_name = tempfile.mkstemp(
            dir=self.root, prefix=PARTIAL_PREFIX, suffix=PARTIAL_SUFFIX
        )
        temp = Path(temp_name)
        digest = hashlib.sha256()
        head = b""
        content_type: str | None = None
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    if not chunk:
                        continue
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self._too_large()
                    if content_type is None:
                        head = (head + chunk)[:HEAD_BYTES]
                        if len(head) >= HEAD_BYTES:
                            content_type = self._sniff(head)
                    digest.update(chunk)
                    # Chunks are at most 64 KiB and land in the page cache; the slow
                    # part, fsync, runs in a thread below.
                    out.write(chunk)
                if content_type is None:
                    content_type = self._sniff(head)
                out.flush()
                await asyncio.to_thread(os.fsync, out.fileno())
        except BaseException:
            _discard(temp)
            raise
        return _Received(temp, content_type, size, digest.hexdigest())

    @staticmethod
    def _sniff(head: bytes) -> str:
        found = detect_type(head)
        if found is None:
            raise UnsupportedType()
        return found

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"A document may be at most {self.max_bytes // MB} MB.", limit_bytes=self.max_bytes
        )

    async def _refused_upload(self, who: Who, outcome: str) -> None:
        async with self.db.write() as session:
            record(
                session,
                at=self.clock.now(),
                who=who,
                action="document_upload",
                object_type="document",
                object_id=None,
                outcome=outcome,
            )

    async def attach_to_consultation(
        self, who: Who, patient_id: str, consultation_id: str, document_id: str
    ) -> list[Document]:
        """Add a document of the patient's card to their open consultation (R-DOCS-1);
        adding it again changes nothing. Returns the consultation's documents."""
        now = self.clock.now()
        error: TelemedError | None = None
        async with self.db.write() as session:
            consultation = await session.get(Consultation, consultation_id)
            document = await session.get(Document, document_id)
            outcome = "ok"
            if consultation is None or consultation.patient_id != patient_id:
                outcome = "not_found" if consultation is None else "forbidden"
                error = NotFound("No such consultation.")
            elif document is None or document.patient_id != patient_id:
                outcome = "not_found" if document is None else "forbidden"
                error = NotFound("No such document.")
            elif consultation.state == State.CLOSED.value:
                outcome = InvalidState.code
                error = InvalidState("The consultation is closed; add documents to an open one.")
            else:
                insert = sqlite_insert if self.db.is_sqlite else pg_insert
                await session.execute(
                    insert(ConsultationDocument)
                    .values(consultation_id=consultation_id, document_id=document_id, added_at=now)
                    .on_conflict_do_nothing()
                )
            record(
                session,
                at=now,
                who=who,
                action="consultation_document_add",
                object_type="consultation",
                object_id=consultation_id[:64],
                outcome=outcome,
                detail={"document_id": document_id[:64]},
            )
        if error is not None:
            raise error
        return await self._consultation_documents(consultation_id)

    # --- reads ----------------------------------------------------------------------------

    async def list_card(self, who: Who, role: Role, patient_id: str) -> list[Document]:
        """The patient's card, newest first, if the caller may read it."""
        async with self.db.write() as session:
            decision = await self.access.decide(session, role, who.id or "", patient_id)
            allowed = decision.allowed and not decision.case_documents_only
            rows: Sequence[Document] = []
            if allowed:
                rows = (
                    await session.scalars(
                        select(Document)
                        .where(Document.patient_id == patient_id)
                        .order_by(Document.created_at.desc(), Document.id)
                        .limit(LIST_LIMIT)
                    )
                ).all()
            record(
                session,
                at=self.clock.now(),
                who=who,
                action="document_list",
                object_type="patient",
                object_id=patient_id[:64],
                outcome="ok" if allowed else "forbidden",
                detail={"count": len(rows), **(access_detail(decision) or {})} if allowed else None,
            )
        if not allowed:
            raise NotFound("No such medical card.")
        return list(rows)

    async def get(self, who: Who, role: Role, document_id: str) -> Document:
        """One document's metadata, if the caller may read the card it belongs to."""
        return await self._read_one(who, role, document_id, "document_read")

    async def content(self, who: Who, role: Role, document_id: str) -> StoredFile:
        """Where a readable document's bytes are; the download is audited before it starts."""
        doc = await self._read_one(who, role, document_id, "document_download")
        path = self.root / doc.storage_name
        if not await asyncio.to_thread(path.is_file):
            log.error("the stored file of document %s is missing", doc.id)
            raise NotFound("The file of this document is missing.")
        return StoredFile(doc, path, download_name(doc))

    async def consultation_documents(
        self, who: Who, role: Role, consultation_id: str
    ) -> list[Document]:
        """The documents the patient added to a consultation, for the patient and for staff
        who may read the patient's card."""
        async with self.db.write() as session:
            consultation = await session.get(Consultation, consultation_id)
            decision = DENIED
            if consultation is not None:
                decision = await self.access.decide(
                    session, role, who.id or "", consultation.patient_id
                )
            allowed = decision.allowed and not decision.case_documents_only
            record(
                session,
                at=self.clock.now(),
                who=who,
                action="consultation_document_list",
                object_type="consultation",
                object_id=consultation_id[:64],
                outcome=_outcome(consultation is not None, allowed),
                detail=access_detail(decision),
            )
        if not allowed:
            raise NotFound("No such consultation.")
        return await self._consultation_documents(consultation_id)

    async def check_attachable(
        self, patient_id: str, document_ids: Sequence[str]
    ) -> list[Document]:
        """`check_attachable` with the configured per-message limit."""
        return await check_attachable(self.db, patient_id, document_ids, limit=self.chat_limit)

    async def has_documents(self, consultation_id: str) -> bool:
        """`has_documents` on this service's database (R-DOCS-1)."""
        return await has_documents(self.db, consultation_id)

    async def _read_one(self, who: Who, role: Role, document_id: str, action: str) -> Document:
        async with self.db.write() as session:
            doc = await session.get(Document, document_id)
            decision = DENIED
            if doc is not None:
                decision = await self.access.decide(session, role, who.id or "", doc.patient_id)
                if decision.case_documents_only and not await sent_for_second_opinion(
                    session, actor_id=who.id or "", doc=doc
                ):
                    decision = DENIED
            allowed = decision.allowed
            record(
                session,
                at=self.clock.now(),
                who=who,
                action=action,
                object_type="document",
                object_id=document_id[:64],
                outcome=_outcome(doc is not None, allowed),
                detail=access_detail(decision),
            )
        if doc is None or not allowed:
            raise NotFound("No such document.")
        return doc

    async def _consultation_documents(self, consultation_id: str) -> list[Document]:
        async with self.db.read() as session:
            rows = await session.scalars(
                select(Document)
                .join(ConsultationDocument, ConsultationDocument.document_id == Document.id)
                .where(ConsultationDocument.consultation_id == consultation_id)
                .order_by(ConsultationDocument.added_at.desc(), Document.created_at.desc())
            )
            return list(rows.all())


def _discard(*paths: Path) -> None:
    """Remove what a failed upload left (synchronously: it must happen even when the
    task is being cancelled, and unlinking is quick)."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _outcome(exists_: bool, allowed: bool) -> str:
    if not exists_:
        return "not_found"
    return "ok" if allowed else "forbidden"
