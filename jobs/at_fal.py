"""A job's time at fal: submit once, store the request id, watch until fal is done, fetch the
result (docs/fal-queue.md, "Submit" and "The unknown-outcome window")."""

from __future__ import annotations

import logging
import time

from client.errors import FalCancelled, FalError, FalSubmitOutcomeUnknown
from client.fal import RequestHandle
from client.schema import QueueStatus
from jobs.context import JobContext
from jobs.fal_failures import fal_failure_text
from jobs.outputs import Outputs
from jobs.records import EditJob
from jobs.status import StatusBoard, StatusThrottle
from jobs.transitions import Transitions
from storage.models import JobState

log = logging.getLogger(__name__)


class AtFal:
    def __init__(
        self,
        ctx: JobContext,
        transitions: Transitions,
        status: StatusBoard,
        outputs: Outputs,
    ) -> None:
        self._ctx = ctx
        self._transitions = transitions
        self._status = status
        self._outputs = outputs

    def handle(self, job: EditJob) -> RequestHandle:
        """The URLs fal gave at submit (docs/fal-queue.md, "URLs and request ids")."""
        if job.fal_status_url and job.fal_response_url and job.fal_cancel_url:
            return RequestHandle(
                request_id=job.fal_request_id or "",
                status_url=job.fal_status_url,
                response_url=job.fal_response_url,
                cancel_url=job.fal_cancel_url,
            )
        return self._ctx.fal.handle_for(job.fal_request_id or "")

    async def cancel(self, job: EditJob, why: str) -> None:
        """Ask fal to drop a submitted job; a failure is logged (the job ends on our side)."""
        if job.state != JobState.SUBMITTED:
            return
        try:
            await self._ctx.fal.cancel(self.handle(job))
        except FalError:
            log.warning("job %s: cancel at fal failed %s", job.id, why, exc_info=True)

    async def submit(self, job: EditJob) -> EditJob:
        try:
            handle, first = await self._ctx.fal.submit(job.request.to_fal_input())
        except FalSubmitOutcomeUnknown:
            log.warning("job %s: submit outcome unknown; not resubmitting", job.id)
            await self._status.fail(
                job.id,
                "fal did not confirm it received the job, so I stopped rather than risk "
                "running it twice. You were not charged; please try again.",
            )
            return await self._transitions.reload(job.id)
        except FalError as error:
            self._ctx.notices.fal_failed(error)
            await self._status.fail(job.id, fal_failure_text(error, self._ctx.metrics))
            return await self._transitions.reload(job.id)
        job = await self._transitions.move(
            job.id,
            JobState.SUBMITTED,
            expect={JobState.ADMITTED},
            fal_request_id=handle.request_id,
            fal_status_url=handle.status_url,
            fal_response_url=handle.response_url,
            fal_cancel_url=handle.cancel_url,
        )
        log.info("job %s submitted fal_request_id=%s", job.id, handle.request_id)
        eta = self._status.timings.eta(self._ctx.now(), first.queue_position)
        await self._status.show(
            job.id,
            self._status.update(job, "queued", queue_position=first.queue_position, eta_at=eta),
        )
        return job

    async def watch(self, job: EditJob, throttle: StatusThrottle) -> EditJob:
        ctx, timings = self._ctx, self._status.timings
        queued_at = time.monotonic()
        first_position: int | None = None
        running_at: float | None = None
        last: QueueStatus | None = None
        async for status in ctx.fal.watch(self.handle(job)):
            last = status
            if status.status == "IN_QUEUE":
                if first_position is None:
                    first_position = status.queue_position
                eta = timings.eta(ctx.now(), status.queue_position)
                await throttle.push(
                    self._status.update(
                        job, "queued", queue_position=status.queue_position, eta_at=eta
                    )
                )
            elif status.status == "IN_PROGRESS" and running_at is None:
                running_at = time.monotonic()
                timings.observe_wait(running_at - queued_at, first_position or 0)
                ctx.metrics.fal_queue_seconds.observe(running_at - queued_at)
                eta = timings.eta(ctx.now(), None)
                await throttle.push(self._status.update(job, "running", eta_at=eta))
        if running_at is not None:
            timings.observe_run(time.monotonic() - running_at)
            ctx.metrics.fal_run_seconds.observe(time.monotonic() - running_at)
        if last is not None and last.error_type == "client_cancelled":
            await self._transitions.finish(job.id, JobState.CANCELLED, error="cancelled at fal")
            return await self._transitions.reload(job.id)
        try:
            output = await ctx.fal.result(self.handle(job))
        except FalCancelled:
            await self._status.end(job.id, JobState.CANCELLED, "cancelled at fal", note=False)
            return await self._transitions.reload(job.id)
        except FalError as error:
            ctx.notices.fal_failed(error)
            await self._status.fail(job.id, fal_failure_text(error, ctx.metrics))
            return await self._transitions.reload(job.id)
        stored = await self._outputs.store(job, output)
        job = await self._transitions.move(
            job.id, JobState.COMPLETED, expect={JobState.SUBMITTED}, result=stored
        )
        log.info("job %s completed seed=%s images=%s", job.id, output.seed, len(output.images))
        return job
