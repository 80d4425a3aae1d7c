"""JSON for Socket.IO packets through orjson: the library encodes every emit and decodes
every event with the `json` module it is given (stdlib by default), and that is a large
part of its cost per relayed signal (docs/performance.md)."""

from __future__ import annotations

from typing import Any

import orjson


class OrjsonCodec:
    """The two functions python-socketio and python-engineio call, stdlib-compatible."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(data: str | bytes, **_: Any) -> Any:
        return orjson.loads(data)


def encoded_size(data: Any) -> int:
    """The size of a payload as JSON, in bytes (for `signalling.max_event_bytes`)."""
    return len(orjson.dumps(data))
