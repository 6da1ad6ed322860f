"""The status message of each job: created once, then edited, at most every 2 s, with an ETA
from measured fal timings (docs/discord-limits.md, "Rate limits")."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from jobs.context import JobContext
from jobs.publisher import DeliveryError, Phase, StatusUpdate
from jobs.records import AnyJob, is_edit
from jobs.transitions import Transitions
from storage.models import TERMINAL_STATES, JobState

log = logging.getLogger(__name__)

STATUS_MIN_INTERVAL = 2.0
_PROGRESS_PHASES = frozenset({"admitted", "waiting", "queued", "running", "delivering"})
FINAL_PHASES: dict[JobState, Phase] = {
    JobState.DELIVERED: "delivered",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
    JobState.EXPIRED: "expired",
}


class Timings:
    """Running averages of fal's queue wait per position and run time, for the ETA."""

    def __init__(self) -> None:
        self.run_seconds = 20.0
        self.wait_per_position = 10.0

    def observe_run(self, seconds: float) -> None:
        self.run_seconds = 0.8 * self.run_seconds + 0.2 * max(0.1, seconds)

    def observe_wait(self, seconds: float, positions: int) -> None:
        if positions > 0:
            per = max(0.1, seconds / positions)
            self.wait_per_position = 0.8 * self.wait_per_position + 0.2 * per

    def eta_waiting(self, now: datetime, position: int, slots: int) -> datetime:
        """When a job waiting in the fair queue should be done: a slot frees every
        run ÷ slots seconds or so, then it runs."""
        return now + timedelta(seconds=self.run_seconds * (position / max(1, slots) + 1))

    def eta(self, now: datetime, queue_position: int | None) -> datetime:
        wait = (queue_position or 0) * self.wait_per_position if queue_position is not None else 0
        return now + timedelta(seconds=wait + self.run_seconds)


class StatusThrottle:
    """At most one status edit per job every STATUS_MIN_INTERVAL seconds; the latest wins."""

    def __init__(self, publish: Callable[[StatusUpdate], Awaitable[None]]) -> None:
        self._publish = publish
        self._last = 0.0
        self._pending: StatusUpdate | None = None
        self._timer: asyncio.Task[None] | None = None

    async def push(self, update: StatusUpdate, *, force: bool = False) -> None:
        wait = self._last + STATUS_MIN_INTERVAL - time.monotonic()
        if force or wait <= 0:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._pending = None
            self._last = time.monotonic()
            await self._publish(update)
            return
        self._pending = update
        if self._timer is None:
            self._timer = asyncio.create_task(self._later(wait))

    async def _later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        self._timer = None
        update, self._pending = self._pending, None
        if update is not None:
            self._last = time.monotonic()
            await self._publish(update)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


class StatusBoard:
    """Shows each job's state to the member; records the message and when the end was shown."""

    def __init__(self, ctx: JobContext, transitions: Transitions) -> None:
        self._ctx = ctx
        self._transitions = transitions
        self._locks: dict[int, asyncio.Lock] = {}
        self.timings = Timings()

    def throttle(self, job_id: int) -> StatusThrottle:
        return StatusThrottle(lambda update: self.show(job_id, update))

    @staticmethod
    def update(
        job: AnyJob,
        phase: Phase,
        *,
        queue_position: int | None = None,
        queue_size: int | None = None,
        eta_at: datetime | None = None,
        note: str | None = None,
        progress: tuple[int, int] | None = None,
    ) -> StatusUpdate:
        return StatusUpdate(
            phase=phase,
            request=job.request,
            started_at=job.created_at,
            queue_position=queue_position,
            queue_size=queue_size,
            eta_at=eta_at,
            note=note,
            progress=progress,
        )

    async def show(self, job_id: int, update: StatusUpdate, *, raise_errors: bool = False) -> None:
        # One status update at a time per job, so the message is created once, then edited.
        lock = self._locks.setdefault(job_id, asyncio.Lock())
        async with lock:
            job = await self._transitions.reload(job_id)
            if job.state in TERMINAL_STATES and update.phase in _PROGRESS_PHASES:
                return  # a throttled progress update that lost the race to the final one
            if is_edit(job) and job.request.sweep is not None:
                # A sweep's cell has no status message: the sweep's shows it (jobs/sheets.py).
                if job.state in TERMINAL_STATES:
                    self._locks.pop(job_id, None)
                    await self._ctx.storage.jobs.mark_announced(job_id)
                return
            try:
                created = await self._ctx.publisher.show_status(job, update)
            except DeliveryError:
                if raise_errors:
                    raise
                log.warning("job %s: could not update its status message", job_id, exc_info=True)
                created = None
            finally:
                if job.state in TERMINAL_STATES:
                    self._locks.pop(job_id, None)
            storage = self._ctx.storage
            if created is not None and created != job.status_message_id:
                await storage.jobs.set_status_message(job_id, created)
            if job.state in TERMINAL_STATES and update.phase not in _PROGRESS_PHASES:
                await storage.jobs.mark_announced(job_id)

    async def announce(self, job: AnyJob) -> None:
        """Show a finished job's final state: the status message, and the 🔁 on a result."""
        if job.state == JobState.DELIVERED:
            await self._ctx.publisher.decorate(job)
        note = job.error if job.state in (JobState.FAILED, JobState.EXPIRED) else None
        await self.show(job.id, self.update(job, FINAL_PHASES[job.state], note=note))

    async def end(self, job_id: int, state: JobState, text: str, *, note: bool = True) -> None:
        """End the job (refunded) and say so on its status message; no-op if it had ended."""
        job = await self._transitions.finish(job_id, state, error=text)
        if job is not None:
            await self.show(
                job_id, self.update(job, FINAL_PHASES[state], note=text if note else None)
            )

    async def fail(self, job_id: int, text: str) -> None:
        await self.end(job_id, JobState.FAILED, text)
