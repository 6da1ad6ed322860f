"""The fair queue (docs/architecture.md, "The fair queue"): with FAL_MAX_CONCURRENT set, an
admitted job waits in the bot's stored queue until a slot at fal is free and it is released in
fair order, then its lease holder submits it.

Any process may release any job (storage/fair_queue.py). This process releases when one of its
jobs waits or leaves fal, and learns that a job of its own was released from its own release
at once, or from a look at the queue every POLL_EVERY seconds (another process released it).
The same look gives each waiting job its position, which its status message shows.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field

from jobs.context import JobContext
from jobs.publisher import StatusUpdate
from jobs.records import AnyJob, is_training
from jobs.status import StatusBoard, StatusThrottle
from jobs.transitions import Transitions
from storage.models import JobState

log = logging.getLogger(__name__)

POLL_EVERY = 1.0  # seconds between looks at the queue while a job of ours waits
_LEFT_FAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED})


@dataclass(eq=False)
class _Waiter:
    seq: int  # registration order: a look at the queue only speaks for waiters older than it
    signal: asyncio.Event = field(default_factory=asyncio.Event)
    done: bool = False  # it may have left the queue: its task looks
    moved: bool = False  # its position changed: its task shows it
    position: tuple[int, int] | None = None  # (position, of)

    def wake(self, *, done: bool = False, moved: bool = False) -> None:
        self.done |= done
        self.moved |= moved
        self.signal.set()


class FairQueue:
    def __init__(self, ctx: JobContext, transitions: Transitions, status: StatusBoard) -> None:
        self._ctx = ctx
        self._transitions = transitions
        self._status = status
        self.cap = ctx.config.fal_max_concurrent
        self._waiters: dict[int, _Waiter] = {}
        self._seq = itertools.count(1)
        self._nudged = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        if self.cap > 0:
            transitions.watch(self._on_transition)

    @property
    def active(self) -> bool:
        """False with no cap (0): jobs go straight to fal, and nothing here runs."""
        return self.cap > 0

    def waiting(self) -> set[int]:
        return set(self._waiters)

    async def wait_turn(self, job: AnyJob, throttle: StatusThrottle) -> AnyJob:
        """Return the job (reloaded) once it is no longer waiting: released (still admitted,
        the caller submits it) or ended meanwhile (cancelled, expired). Meanwhile its status
        message shows its place in the queue. Cancelling the caller leaves the queue."""
        storage = self._ctx.storage
        # A free slot goes at once, from this task: no hop through the loop below.
        released = await storage.queue.release(self.cap, now=self._ctx.now())
        self._wake(released)
        if job.id in released:
            return job
        waiter = _Waiter(seq=next(self._seq))
        self._waiters[job.id] = waiter
        try:
            while await storage.queue.waiting(job.id):
                waiter.done = False
                self.nudge()
                while not waiter.done:
                    await waiter.signal.wait()
                    waiter.signal.clear()
                    if waiter.moved and not waiter.done:
                        waiter.moved = False
                        await throttle.push(self._waiting_update(job, waiter))
        finally:
            self._waiters.pop(job.id, None)
        return await self._transitions.reload(job.id)

    def nudge(self) -> None:
        """Release what can be released soon (coalesced: one release for many nudges)."""
        if not self.active or self._closing:
            return
        self._nudged.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._keep(), name="fair-queue")

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    # ------------------------------------------------------------------ internals

    def _on_transition(self, job: AnyJob) -> None:
        if job.state in _LEFT_FAL:  # a slot may have freed: the next job goes
            self.nudge()

    async def _keep(self) -> None:
        while True:
            if self._waiters:
                try:
                    async with asyncio.timeout(POLL_EVERY):
                        await self._nudged.wait()
                except TimeoutError:
                    pass
            else:
                await self._nudged.wait()
            nudged = self._nudged.is_set()
            self._nudged.clear()
            try:
                await self._turn(nudged)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be away for a moment: try again next turn
                log.exception("the fair queue's turn failed")

    async def _turn(self, nudged: bool) -> None:
        queue = self._ctx.storage.queue
        if nudged:
            self._wake(await queue.release(self.cap, now=self._ctx.now()))
        if not self._waiters:
            return
        upto = next(self._seq)  # waiters registered before this look are all in it
        view = await queue.view()
        if view.at_fal < self.cap and view.waiting:
            # Slots free and jobs waiting: a release someone missed (a process that died
            # between a job leaving fal and its release). Release, then look again.
            self._wake(await queue.release(self.cap, now=self._ctx.now()))
            upto = next(self._seq)
            view = await queue.view()
        places = {job_id: index for index, job_id in enumerate(view.waiting, 1)}
        for job_id, waiter in list(self._waiters.items()):
            if waiter.seq > upto:
                continue
            place = places.get(job_id)
            if place is None:
                waiter.wake(done=True)  # released elsewhere, or ended: its task looks again
            elif waiter.position is None or waiter.position[0] != place:
                waiter.position = (place, len(view.waiting))
                waiter.wake(moved=True)

    def _wake(self, released: list[int]) -> None:
        for job_id in released:
            waiter = self._waiters.get(job_id)
            if waiter is not None:
                waiter.wake(done=True)

    def _waiting_update(self, job: AnyJob, waiter: _Waiter) -> StatusUpdate:
        position, of = waiter.position or (1, 1)
        # Edit timings say nothing about how long a training will take.
        eta = None
        if not is_training(job):
            eta = self._status.timings.eta_waiting(self._ctx.now(), position, self.cap)
        return self._status.update(
            job, "waiting", queue_position=position, queue_size=of, eta_at=eta
        )
