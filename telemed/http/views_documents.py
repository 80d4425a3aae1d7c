"""The medical card over REST: upload (multipart, streamed), list, metadata, download, and
the documents a patient adds to a consultation (R-DOCS-1)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote, unquote

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import Field

from telemed.context import client_addr, services
from telemed.errors import BadRequest, NotFound
from telemed.http.api import Api, Body, Call, Out
from telemed.models import Document
from telemed.roles import STAFF_ROLES, Role
from telemed.services.audit import Who
from telemed.services.auth import Caller
from telemed.services.documents import EXTENSIONS

READERS = STAFF_ROLES | {Role.PATIENT}
# What aiohttp's multipart reader raises on a malformed body: a bad or overlong part header
# (InvalidHeader, LineTooLong: HttpProcessingError), a bad boundary, charset or encoding.
MULTIPART_ERRORS = (HttpProcessingError, ValueError, LookupError, AssertionError)
CHUNK = 64 * 1024
Id = Annotated[str, Field(min_length=1, max_length=64)]


class DocumentOut(Out):
    document_id: str
    patient_id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_by_role: str
    created_at: datetime


class DocumentList(Out):
    items: list[DocumentOut]


class CardQuery(Body):
    patient_id: Id | None = None


class AttachRequest(Body):
    document_id: Id


def document_out(doc: Document) -> DocumentOut:
    return DocumentOut(
        document_id=doc.id,
        patient_id=doc.patient_id,
        filename=doc.filename,
        content_type=doc.content_type,
        size=doc.size,
        sha256=doc.sha256,
        uploaded_by_role=doc.uploaded_by_role,
        created_at=doc.created_at,
    )


def _who(call: Call[Any]) -> Who:
    return Who(call.me.role.value, call.me.id, client_addr(call.request))


async def _file_part(request: web.Request) -> BodyPartReader:
    """The `file` part of a multipart/form-data body (other fields are skipped)."""
    if request.content_type != "multipart/form-data":
        raise BadRequest("Send the document as multipart/form-data with a `file` field.")
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if isinstance(part, BodyPartReader) and part.name == "file":
                return part
    except MULTIPART_ERRORS:
        raise BadRequest("The multipart body could not be read.") from None
    raise BadRequest("The multipart body has no `file` field.")


def _part_filename(part: BodyPartReader) -> str | None:
    """The file name as sent: percent-decoded (RFC 7578 4.2; browsers encode `"`, CR and LF
    that way, aiohttp and others every byte); sanitised later by the service."""
    name = part.filename
    return None if name is None else unquote(name, errors="replace")


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    try:
        while chunk := await part.read_chunk(CHUNK):
            yield chunk
    except MULTIPART_ERRORS:
        raise BadRequest("The multipart body could not be read.") from None


def _card_owner(me: Caller, asked: str | None) -> str:
    """Whose card is meant: a patient's own; staff must name the patient."""
    if me.role is Role.PATIENT:
        return asked or me.id
    if asked is None:  # staff have no card of their own
        raise NotFound("Staff have no medical card; name the patient: ?patient_id=...")
    return asked


def register(api: Api) -> None:
    @api.route(
        "POST",
        "/documents",
        roles={Role.PATIENT},
        response=DocumentOut,
        status=201,
        raw_body=True,
        raw_schema={
            "type": "object",
            "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary"}},
            "additionalProperties": True,  # other fields are skipped (see _file_part)
        },
        tag="documents",
    )
    async def upload_document(call: Call[Body]) -> DocumentOut:
        """Add a PDF, JPEG, PNG or HEIC file (recognised by content, 25 MB at most) to my
        medical card, to show it to the doctor (R-DOCS-1)."""
        svc = services(call.request)
        part = await _file_part(call.request)
        doc = await svc.documents.upload(
            _who(call),
            call.me.id,
            _part_filename(part),
            _chunks(part),
            declared_length=call.request.content_length,
        )
        return document_out(doc)

    @api.route(
        "GET",
        "/documents",
        roles=READERS,
        query=CardQuery,
        response=DocumentList,
        tag="documents",
    )
    async def list_documents(call: Call[CardQuery]) -> DocumentList:
        """A medical card, newest first: a patient's own; staff name a patient they serve."""
        svc = services(call.request)
        owner = _card_owner(call.me, call.body.patient_id)
        rows = await svc.documents.list_card(_who(call), call.me.role, owner)
        return DocumentList(items=[document_out(r) for r in rows])

    @api.route(
        "GET", "/documents/{document_id}", roles=READERS, response=DocumentOut, tag="documents"
    )
    async def get_document(call: Call[Body]) -> DocumentOut:
        """One document's metadata (404 for documents the caller may not read)."""
        svc = services(call.request)
        document_id = call.request.match_info["document_id"]
        return document_out(await svc.documents.get(_who(call), call.me.role, document_id))

    @api.route(
        "GET",
        "/documents/{document_id}/content",
        roles=READERS,
        tag="documents",
        produces=tuple(EXTENSIONS),  # the document's real type, as recognised at upload
    )
    async def download_document(call: Call[Body]) -> web.FileResponse:
        """The document's bytes, as an attachment with its real type."""
        svc = services(call.request)
        document_id = call.request.match_info["document_id"]
        stored = await svc.documents.content(_who(call), call.me.role, document_id)
        return web.FileResponse(
            stored.path,
            headers={
                "Content-Type": stored.document.content_type,
                "Content-Disposition": content_disposition(stored.download_name),
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
                "Content-Security-Policy": "default-src 'none'; sandbox",
            },
        )

    @api.route(
        "POST",
        "/consultations/{consultation_id}/documents",
        roles={Role.PATIENT},
        body=AttachRequest,
        response=DocumentList,
        tag="documents",
    )
    async def add_consultation_document(call: Call[AttachRequest]) -> DocumentList:
        """Add a document of my card to my open consultation (R-DOCS-1); idempotent.
        Answers with the consultation's documents."""
        svc = services(call.request)
        rows = await svc.documents.attach_to_consultation(
            _who(call),
            call.me.id,
            call.request.match_info["consultation_id"],
            call.body.document_id,
        )
        return DocumentList(items=[document_out(r) for r in rows])

    @api.route(
        "GET",
        "/consultations/{consultation_id}/documents",
        roles=READERS,
        response=DocumentList,
        tag="documents",
    )
    async def list_consultation_documents(call: Call[Body]) -> DocumentList:
        """The documents added to a consultation, for its patient and its staff (R-DOCS-1)."""
        svc = services(call.request)
        rows = await svc.documents.consultation_documents(
            _who(call), call.me.role, call.request.match_info["consultation_id"]
        )
        return DocumentList(items=[document_out(r) for r in rows])


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII fallback name and the exact UTF-8 one (RFC 6266)."""
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\%' else "_" for ch in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
