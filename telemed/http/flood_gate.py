"""The door of the login paths: an address that keeps being refused is refused there, slowly.

The login limits (telemed/limits.py) refuse a guess without hashing, but each refusal still
costs a parsed body and a database read, and a client that retries without pause keeps
hundreds of them on the event loop: a patient's request then queues behind them
(bench/login_flood.py measured GET /me at p99 850 ms under 200 concurrent wrong logins,
9 ms without). So once an address has been refused more than `refusals` times within
`window` on the login paths, its next login requests are refused at the door, before the
body is read, until it has been quiet for a whole `window`; and the door answers one
address at most once per `spacing` (a tarpit: its requests wait their turn). A flood that
waits for its answers, as floods do, then costs one cheap answer per `spacing` however
many connections it opens, and no burst of them at once; a person who mistyped a code a
few times never reaches the door. At most `max_held` refusals wait on a node; beyond that
they are answered at once, so holding costs bounded memory (a flood larger than that is
for the load balancer's limits).

Per node and in memory on purpose, like telemed/ratelimit.py: it protects this node's CPU;
the limits that protect accounts and phones are shared (database or Redis) and unchanged.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from telemed.ratelimit import SlidingWindow

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FloodGate:
    """Which addresses are refused at the door, and for how long. Times are seconds."""

    def __init__(
        self,
        refusals: int,
        window: float,
        spacing: float,
        max_held: int,
        max_addresses: int = 100_000,
    ) -> None:
        self.window = window
        self.spacing = spacing
        self.max_held = max_held
        self.max_addresses = max_addresses
        self._refused = SlidingWindow(refusals, window, max_keys=max_addresses)
        self._closed_until: dict[str, float] = {}
        self._next_answer: dict[str, float] = {}
        self.held = 0

    def closed_for(self, address: str, now: float) -> float | None:
        """Seconds the door stays closed to `address` (each knock keeps it closed for a
        whole window more), or None when it is open."""
        until = self._closed_until.get(address)
        if until is None:
            return None
        if until <= now:
            del self._closed_until[address]
            self._next_answer.pop(address, None)
            return None
        self._closed_until[address] = now + self.window
        return self.window

    def refused(self, address: str, now: float) -> None:
        """The service refused `address` (429): past `refusals` in a window, close the door."""
        if self._refused.take(address, 1, now) is None:
            return
        self._closed_until[address] = now + self.window
        if len(self._closed_until) > self.max_addresses:
            for key in [k for k, until in self._closed_until.items() if until <= now]:
                del self._closed_until[key]
                self._next_answer.pop(key, None)

    async def hold(self, address: str, now: float) -> None:
        """The tarpit: `address` gets one answer per `spacing` at the door; its requests
        wait their turn, unless `max_held` already wait on this node."""
        if self.held >= self.max_held or self.spacing <= 0:
            return
        self.held += 1
        try:
            await asyncio.sleep(self.wait(address, now))
        finally:
            self.held -= 1

    def wait(self, address: str, now: float) -> float:
        """Seconds until `address`'s next turn at the door, which this call takes."""
        turn = max(now, self._next_answer.get(address, now)) + self.spacing
        self._next_answer[address] = turn
        return turn - now


def middleware(
    gate: FloodGate,
    paths: frozenset[str],
    address_of: Callable[[web.Request], str],
    now: Callable[[], float],
    refuse: Callable[[web.Request, int], web.StreamResponse],
) -> Middleware:
    """The door for POSTs to `paths`; `refuse(request, retry_after)` makes the 429."""

    @web.middleware
    def flood_gate(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        if request.method != "POST" or request.path not in paths:
            # Handed on, not awaited here: a WebSocket's handler runs as long as the
            # socket, and a middleware awaiting it keeps its frame that long.
            return handler(request)
        return gated(request, handler)

    async def gated(request: web.Request, handler: Handler) -> web.StreamResponse:
        address = address_of(request)
        closed = gate.closed_for(address, now())
        if closed is not None:
            await gate.hold(address, now())
            return refuse(request, math.ceil(closed))
        response = await handler(request)
        if response.status == 429:
            gate.refused(address, now())
        return response

    return flood_gate
