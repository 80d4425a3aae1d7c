"""APScheduler wiring: wake the due work at the next deadline, sweep as a backstop,
and run only on the node holding the lease.

The scheduler owns no state: deadlines are rows; APScheduler only decides
when to look. One "next" date job is re-planned after every pass (so 100,000
booked reminders are one job, not 100,000), and an interval sweep catches
anything missed (a deadline written by another node, a clock jump).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from scheduler.jobs import DueWork, Fired
from scheduler.lease import Lease
from telemed.clock import Clock
from telemed.config import SchedulerSettings

log = logging.getLogger("telemed.scheduler")


class SchedulerRunner:
    def __init__(
        self, work: DueWork, settings: SchedulerSettings, lease: Lease, clock: Clock
    ) -> None:
        self.work = work
        self.settings = settings
        self.lease = lease
        self.clock = clock
        self.leading = False
        self.passes = 0
        self.last_lag_seconds = 0.0
        self._aps = AsyncIOScheduler(timezone=UTC)
        self._lock = asyncio.Lock()
        self._poked: asyncio.Task[None] | None = None
        self._pass: asyncio.Task[Fired] | None = None
        work.keep_going = lambda: self.leading

    async def start(self) -> None:
        lease_every = max(0.1, self.settings.lease_ttl.total_seconds() / 3)
        self._aps.start()
        self._aps.add_job(
            self._hold_lease,
            "interval",
            seconds=lease_every,
            id="lease",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )
        self._aps.add_job(
            self._sweep,
            "interval",
            seconds=self.settings.sweep_interval.total_seconds(),
            id="sweep",
            max_instances=1,
            coalesce=True,
        )

    async def stop(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)
        for task in (self._poked, self._pass):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        async with self._lock:
            if self.leading:
                self.leading = False
                try:  # releasing needs Redis; in an outage the lease lapses after its ttl
                    await self.lease.release()
                except Exception:
                    log.exception("lease release failed; it expires by itself")

    async def _hold_lease(self) -> None:
        """Renew (or take) the lease. Never waits for work, so a long pass cannot let the
        lease lapse under it."""
        try:
            leading = await self.lease.acquire()
        except Exception:
            log.exception("lease check failed; standing down until it works again")
            leading = False
        if leading != self.leading:
            log.info("scheduler lease %s by %s", "taken" if leading else "lost", self.lease.holder)
            self.leading = leading
            if leading:
                self._start_pass()

    def _start_pass(self) -> None:
        if self._pass is None or self._pass.done():
            self._pass = asyncio.ensure_future(self.tick())

    async def _sweep(self) -> None:
        if self.leading and not self._lock.locked():
            self._start_pass()

    async def tick(self) -> Fired:
        """One pass of everything due, then plan the wake-up for the next deadline."""
        async with self._lock:
            started = datetime.now(UTC)
            fired = await self.work.run()
            self.passes += 1
            if fired.reminder_lateness:
                self.last_lag_seconds = max(fired.reminder_lateness)
            if fired.counts:
                log.info(
                    "scheduler pass: %s in %.0f ms",
                    fired.counts,
                    (datetime.now(UTC) - started).total_seconds() * 1000,
                )
            self._plan(await self.work.next_due())
            return fired

    def _plan(self, when: datetime | None) -> None:
        """Arm the one date job for `when`, measured on the injected clock."""
        if not self._aps.running:
            return
        if when is None:
            if self._aps.get_job("next"):
                self._aps.remove_job("next")
            return
        delay = max(timedelta(0), when - self.clock.now())
        self._aps.add_job(
            self._wake,
            "date",
            run_date=datetime.now(UTC) + delay,
            id="next",
            replace_existing=True,
            misfire_grace_time=None,
        )

    async def _wake(self) -> None:
        if self.leading:
            self._start_pass()

    def poke(self) -> None:
        """A new deadline was written here: re-plan soon (coalesced)."""
        if not self.leading or (self._poked is not None and not self._poked.done()):
            return

        async def replan() -> None:
            async with self._lock:
                self._plan(await self.work.next_due())

        self._poked = asyncio.ensure_future(replan())
