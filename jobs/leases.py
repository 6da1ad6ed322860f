"""Claimed work across processes (docs/architecture.md, "Shard clusters"): this process renews
the leases of the jobs it drives, stops driving any job another process adopted from it, and
adopts jobs whose lease ran out (a process that died) or was released (one that stopped)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from jobs.context import JobContext
from storage.errors import StorageError

log = logging.getLogger(__name__)

# A released lease (a process that stopped cleanly) is looked for this often, so its jobs go
# on elsewhere within seconds; an expired one takes LEASE_SECONDS more.
ADOPT_EVERY = 2.0


class Leases:
    def __init__(
        self,
        ctx: JobContext,
        drive: Callable[[list[int]], Awaitable[None]],
        stop: Callable[[set[int]], Awaitable[None]],
        driving: Callable[[], set[int]],
    ) -> None:
        self._ctx = ctx
        self._drive = drive  # start driving these adopted jobs
        self._stop = stop  # stop driving these jobs (another process has them now)
        self._driving = driving  # the jobs this process drives now
        self._task: asyncio.Task[None] | None = None

    @property
    def _renew_every(self) -> float:
        return self._ctx.config.lease_seconds / 3

    async def take_over_at_start(self) -> list[int]:
        """What this process drives after a (re)start: everything when it is the only process,
        otherwise what its instance held before and whatever nobody holds."""
        sole = self._ctx.config.sole_process
        ids = await self._ctx.storage.leases.adopt(everything=sole, earlier_lives=not sole)
        if ids:
            self._ctx.metrics.leases_adopted.labels(how="at start").inc(len(ids))
        return ids

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._keep(), name="job-leases")

    async def _keep(self) -> None:
        loop = asyncio.get_running_loop()
        next_renewal = loop.time() + self._renew_every
        while True:
            await asyncio.sleep(min(ADOPT_EVERY, self._renew_every))
            try:
                if loop.time() >= next_renewal:
                    next_renewal = loop.time() + self._renew_every
                    await self.renew()
                await self.adopt()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be away for a moment: try again next turn
                log.exception("renewing or adopting job leases failed")

    async def renew(self) -> None:
        """Extend our leases; stop driving the jobs that are no longer ours."""
        driving = self._driving()
        held = await self._ctx.storage.leases.renew()
        lost = driving - held
        if not lost:
            return
        # A job spawned after the renewal read the table is ours all the same: ask again.
        storage = self._ctx.storage
        owner = storage.leases.terms.owner if storage.leases.terms else None
        gone = {job_id for job_id in lost if (await storage.leases.holder(job_id))[0] != owner}
        if gone:
            log.warning("jobs %s were adopted by another process; no longer driving them", gone)
            self._ctx.metrics.leases_lost.inc(len(gone))
            await self._stop(gone)

    async def adopt(self) -> list[int]:
        ids = await self._ctx.storage.leases.adopt()
        if ids:
            self._ctx.metrics.leases_adopted.labels(how="expired or released").inc(len(ids))
            await self._drive(ids)
        return ids

    async def close(self, *, release: bool) -> None:
        """Stop renewing; with `release`, give every lease up so another process adopts at
        once (a clean stop). Without it, leases simply run out."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if release:
            try:
                await self._ctx.storage.leases.release()
            except StorageError:  # the database is gone: the leases simply run out
                log.warning("could not release job leases on stop", exc_info=True)
