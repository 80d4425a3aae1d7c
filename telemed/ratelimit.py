"""A per-key sliding window: how much one caller may use in a period (bytes, calls).

Kept in memory on purpose: it protects one node's CPU and bandwidth, so each node
counts its own. Times are plain monotonic seconds passed in by the caller.
"""

from __future__ import annotations

from collections import deque


class SlidingWindow:
    """At most `limit` units per key within `period` seconds."""

    def __init__(self, limit: int, period: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.period = period
        self.max_keys = max_keys
        self._used: dict[str, deque[tuple[float, int]]] = {}

    def take(self, key: str, amount: int, now: float) -> float | None:
        """Use `amount` units now; None when allowed, else seconds to wait before retrying.
        An amount above the whole limit is never allowed."""
        entries = self._used.setdefault(key, deque())
        while entries and entries[0][0] <= now - self.period:
            entries.popleft()
        used = sum(a for _, a in entries)
        if used + amount > self.limit:
            if not entries:
                del self._used[key]
                return self.period
            return max(0.0, entries[0][0] + self.period - now)
        entries.append((now, amount))
        if len(self._used) > self.max_keys:
            self._forget_idle(now)
        return None

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, e in self._used.items() if not e or e[-1][0] <= now - self.period]:
            del self._used[key]
