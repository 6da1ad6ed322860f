"""State changes of a job: each one stored, logged, counted and announced to waiters."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from jobs.context import JobContext
from jobs.errors import NotFound
from jobs.records import AnyJob
from storage.models import TERMINAL_STATES, JobState

log = logging.getLogger(__name__)


class Transitions:
    def __init__(self, ctx: JobContext) -> None:
        self._ctx = ctx
        self._changed = asyncio.Condition()
        self._watchers: list[Callable[[AnyJob], None]] = []

    def watch(self, callback: Callable[[AnyJob], None]) -> None:
        """Call `callback` with the job after each stored transition (it must not block)."""
        self._watchers.append(callback)

    async def reload(self, job_id: int) -> AnyJob:
        job = await self._ctx.storage.jobs.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id} vanished")
        return job

    async def move(self, job_id: int, to: JobState, **fields: Any) -> AnyJob:
        """One stored transition (the ledger moves with it), then the log line and metrics."""
        ctx = self._ctx
        job = await ctx.storage.jobs.transition(job_id, to, **fields)
        log.info(
            "job %s → %s guild=%s user=%s fal_request_id=%s",
            job.id,
            job.state.value,
            job.guild_id,
            job.user_id,
            job.fal_request_id or "-",
        )
        ctx.metrics.transitions.labels(state=to.value).inc()
        if to in TERMINAL_STATES:
            ctx.metrics.in_flight.dec()
        if to == JobState.DELIVERED and job.completed_at is not None:
            delivered_in = (ctx.now() - job.completed_at).total_seconds()
            ctx.metrics.delivery_seconds.observe(max(0.0, delivered_in))
        for watcher in self._watchers:
            watcher(job)
        async with self._changed:
            self._changed.notify_all()
        return job

    async def finish(self, job_id: int, state: JobState, *, error: str) -> AnyJob | None:
        """End the job (refunding it) unless it already ended; None when it had."""
        job = await self.reload(job_id)
        if job.state in TERMINAL_STATES:
            return None
        job = await self.move(job_id, state, error=error)
        log.info("job %s %s (refunded): %s", job_id, state.value, error)
        return job

    async def wait_for_state(self, job_id: int, *states: JobState) -> AnyJob:
        """The job once it is in one of `states` (tests, shutdown); woken by each transition.
        Callers bound the wait with asyncio.timeout."""
        async with self._changed:
            while True:
                job = await self.reload(job_id)
                if job.state in states:
                    return job
                await self._changed.wait()
