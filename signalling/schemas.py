"""Payloads of client -> server events, validated before any service is called."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from telemed.consultation import Channel
from telemed.text import CleanModel

Id = Annotated[str, Field(min_length=1, max_length=64)]


class Payload(CleanModel):
    """Base of socket payloads: unknown fields and control characters refused
    (telemed/text.py), as in REST bodies."""


class Empty(Payload):
    pass


class Start(Payload):
    channel: Channel
    appointment_id: Id | None = None


class ConsultationRef(Payload):
    consultation_id: Id


class Accept(Payload):
    consultation_id: Id | None = None


class Transfer(Payload):
    consultation_id: Id
    to: Literal["duty_doctor", "consultant", "doctor"]
    doctor_id: Id | None = None


class Close(Payload):
    consultation_id: Id
    outcome: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")] = (
        "finished"
    )


class Signal(Payload):
    consultation_id: Id
    data: dict[str, Any]


class ChatSend(Payload):
    consultation_id: Id
    text: Annotated[str, Field(max_length=4000)] = ""
    document_ids: Annotated[list[Id], Field(default_factory=list, max_length=20)]


class ChatHistory(Payload):
    consultation_id: Id
    after_message_id: Annotated[int, Field(ge=0)] = 0
