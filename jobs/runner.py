"""Driving jobs: one task per job reads the stored state and continues from there, so the same
code runs a fresh job and one recovered after a restart (docs/architecture.md,
"Restart recovery"). Cancel and expiry end a job wherever it is."""

from __future__ import annotations

import asyncio
import logging

from jobs.at_fal import AtFal
from jobs.context import JobContext
from jobs.delivery import Deliverer
from jobs.errors import NotAllowed, NotFound
from jobs.fair_queue import FairQueue
from jobs.policy import Requester, is_manager
from jobs.records import AnyJob, is_training
from jobs.status import StatusBoard, StatusThrottle
from jobs.transitions import Transitions
from storage.models import TERMINAL_STATES, JobState

log = logging.getLogger(__name__)


def cancellable(job: AnyJob) -> bool:
    """Running at fal or waiting for it; a completed job is being posted, nothing to cancel."""
    return job.state not in TERMINAL_STATES and job.state != JobState.COMPLETED


class Runner:
    def __init__(
        self,
        ctx: JobContext,
        transitions: Transitions,
        status: StatusBoard,
        at_fal: AtFal,
        deliverer: Deliverer,
        queue: FairQueue,
    ) -> None:
        self._ctx = ctx
        self._transitions = transitions
        self._status = status
        self._fal = at_fal
        self._deliverer = deliverer
        self._queue = queue
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._closing = False

    def drive(self, job_ids: list[int]) -> None:
        """Drive jobs this process has just taken the leases of (at start, or adopted)."""
        self._ctx.metrics.in_flight.inc(len(job_ids))
        for job_id in job_ids:
            log.info("job %s taken over", job_id)
            self.spawn(job_id)

    def driving(self) -> set[int]:
        return set(self._tasks)

    async def stop(self, job_ids: set[int]) -> None:
        """Stop driving jobs another process now drives; nothing is written."""
        for job_id in job_ids:
            await self._stop_task(job_id)

    def spawn(self, job_id: int) -> None:
        if self._closing or job_id in self._tasks:
            return
        task = asyncio.create_task(self._drive(job_id), name=f"job-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(job_id, None))

    async def wait_idle(self) -> None:
        """Wait until no job task runs (tests and graceful shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        """Stop driving jobs; their state is stored and a restart continues them. A submit on
        the wire is let finish first, so its request id is stored, not lost."""
        self._closing = True
        await self._fal.all_settled()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _stop_task(self, job_id: int) -> None:
        task = self._tasks.pop(job_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _drive(self, job_id: int) -> None:
        # Only the lease holder drives a job: a spawn from a process that doesn't hold it
        # (a Cancel that found the job finished, pressed where another process drives it)
        # leaves it to its holder.
        if not await self._ctx.storage.leases.claim(job_id):
            log.info("job %s is driven by another process", job_id)
            return
        job = await self._ctx.storage.jobs.get(job_id)
        if job is None:
            return
        if job.state in TERMINAL_STATES:
            if job.announced_at is None:
                await self._status.announce(job)
            return
        throttle = self._status.throttle(job_id)
        try:
            if job.state in (JobState.ADMITTED, JobState.SUBMITTED):
                job = await self._run_at_fal(job, throttle)
            if job.state == JobState.COMPLETED:
                await throttle.push(self._status.update(job, "delivering"), force=True)
                # Reloaded: that status push may have just recorded the status message id.
                await self._deliverer.deliver(await self._transitions.reload(job_id))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s crashed in state %s", job_id, job.state)
            await self._status.fail(
                job_id, "Something went wrong on our side. You were not charged."
            )
        finally:
            throttle.close()

    async def _run_at_fal(self, job: AnyJob, throttle: StatusThrottle) -> AnyJob:
        """Wait for a slot at fal (the fair queue, when capped), submit (if not yet) and watch
        until fal is done; expire the job at its deadline, counted from admission."""
        remaining = (job.deadline_at - self._ctx.now()).total_seconds()
        waiting = False
        try:
            async with asyncio.timeout(max(0.0, remaining)):
                if job.state == JobState.ADMITTED and self._queue.active:
                    waiting = True
                    job = await self._queue.wait_turn(job, throttle)
                    waiting = False
                if job.state == JobState.ADMITTED:
                    job = await self._fal.submit(job)
                if job.state == JobState.SUBMITTED:
                    job = await self._fal.watch(job, throttle)
        except TimeoutError:
            await self._expire(job.id, waited=waiting)
            return await self._transitions.reload(job.id)
        return job

    async def _expire(self, job_id: int, *, waited: bool = False) -> None:
        job = await self._transitions.reload(job_id)
        if job.state in TERMINAL_STATES:
            return
        await self._fal.cancel(job, "on expiry")
        minutes = round((job.deadline_at - job.created_at).total_seconds() / 60, 1)
        what = "training" if is_training(job) else "edit"
        if waited:  # never sent: every slot at fal stayed busy
            text = f"No slot at fal freed up within {minutes:g} minutes, so I cancelled the "
            text += f"{what}. You were not charged."
        else:
            text = f"fal didn't finish within {minutes:g} minutes, so I cancelled the {what}. "
            text += "You were not charged."
        await self._status.end(job_id, JobState.EXPIRED, text)

    async def cancel(self, job_id: int, who: Requester) -> AnyJob:
        ctx = self._ctx
        job = await ctx.storage.jobs.get(job_id)
        if job is None or job.guild_id != who.guild_id:
            raise NotFound("That job doesn't exist on this server.")
        if job.user_id != who.user_id and not who.can_manage_messages:
            # Bot managers cancel stuck jobs from `/admin jobs`, with or without Manage Server.
            guild = await ctx.storage.settings.get(who.guild_id)
            if not is_manager(guild, who):
                raise NotAllowed(
                    "Only the member who started this edit (or a moderator) can cancel it."
                )
        if not cancellable(job):
            raise NotAllowed(f"This edit is already {job.state.value}; nothing to cancel.")
        # A submit on the wire may already be queued at fal: wait for its request id, then
        # cancel it there, rather than forget a request fal would run and bill.
        await self._fal.settled(job_id)
        await self._stop_task(job_id)
        job = await self._transitions.reload(job_id)
        if job.state == JobState.COMPLETED:
            self.spawn(job_id)  # it finished meanwhile: deliver it after all
            raise NotAllowed("This edit just finished; the result is on its way.")
        if job.state in TERMINAL_STATES:
            raise NotAllowed(f"This edit is already {job.state.value}; nothing to cancel.")
        if await self._fal.cancel(job, "on cancel") == "already_completed":
            self.spawn(job_id)  # fal finished it before the cancel arrived: deliver it
            raise NotAllowed("This edit just finished; the result is on its way.")
        await self._status.end(
            job_id, JobState.CANCELLED, f"cancelled by {who.user_id}", note=False
        )
        return await self._transitions.reload(job_id)

    async def abandon(self, job_id: int) -> None:
        """Stop a job that may already be at fal, and refund it."""
        await self._fal.settled(job_id)
        await self._stop_task(job_id)
        job = await self._transitions.reload(job_id)
        await self._fal.cancel(job, "on abandon")
        await self._transitions.finish(
            job_id, JobState.FAILED, error="could not post in the channel"
        )
