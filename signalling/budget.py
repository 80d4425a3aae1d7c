"""Each socket's event budget: a token bucket per kind of event (`signalling.budgets`).

One client must not be able to fill the chat table or flood a counterpart with signals;
an event over budget is answered `rate_limited` and nothing else is done for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from telemed.config import BudgetSettings

KIND_OF_EVENT = {"chat:send": "chat", "signal": "signal"}


def kind_of(event: str) -> str:
    return KIND_OF_EVENT.get(event, "other")


@dataclass(slots=True)
class Bucket:
    """Tokens refill at `rate` per second up to `burst`; an event takes one."""

    rate: float
    burst: int
    tokens: float
    at: datetime

    def take(self, now: datetime) -> bool:
        elapsed = max(0.0, (now - self.at).total_seconds())
        self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass(slots=True)
class Budget:
    """The buckets of one socket, made on first use."""

    settings: dict[str, BudgetSettings]
    buckets: dict[str, Bucket] = field(default_factory=dict)

    def allows(self, event: str, now: datetime) -> bool:
        kind = kind_of(event)
        bucket = self.buckets.get(kind)
        if bucket is None:
            limit = self.settings[kind]
            bucket = self.buckets[kind] = Bucket(limit.rate, limit.burst, float(limit.burst), now)
        return bucket.take(now)
