"""Outbound messages (SMS now, push later) behind one `Sender` interface."""

from telemed.notify.base import OutboundMessage, Sender, SendFailed
from telemed.notify.dev import LogSender
from telemed.notify.factory import build_sender
from telemed.notify.file import FileSender
from telemed.notify.gateway import HttpSender

__all__ = [
    "FileSender",
    "HttpSender",
    "LogSender",
    "OutboundMessage",
    "SendFailed",
    "Sender",
    "build_sender",
]
