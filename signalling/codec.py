"""JSON for Socket.IO packets through orjson: the library encodes every emit and decodes
every event with the `json` module it is given (stdlib by default), and that is a large
part of its cost per relayed signal (docs/performance.md).

orjson refuses what the stdlib takes (a lone surrogate, `1e999`): such rare input falls
back to the stdlib, so it still reaches the handlers and is answered `validation_error`
instead of being dropped without an ack."""

from __future__ import annotations

import json
from typing import Any

import orjson


class OrjsonCodec:
    """The two functions python-socketio and python-engineio call, stdlib-compatible."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        try:
            return orjson.dumps(obj).decode()
        except TypeError:
            return json.dumps(obj, separators=(",", ":"))

    @staticmethod
    def loads(data: str | bytes, **_: Any) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            return json.loads(data)
