"""A job's time at fal: submit once, store the request id, watch until fal is done, fetch the
result (docs/fal-queue.md, "Submit" and "The unknown-outcome window"). An edit and a training
take the same path on their own endpoints; a training also asks fal for its logs, whose
progress the status message shows (docs/fal-trainer.md, "Progress in the logs")."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timedelta

from pydantic import ValidationError

from client.errors import FalCancelled, FalError, FalNotFound, FalSubmitOutcomeUnknown
from client.fal import CancelOutcome, RequestHandle
from client.schema import EditInput, EditOutput, QueueStatus, TrainingInput, TrainingOutput
from client.webhooks import WebhookDelivery
from jobs.context import JobContext
from jobs.fal_failures import fal_failure_text
from jobs.outputs import Outputs
from jobs.records import AnyJob, JobResult, as_edit, is_training
from jobs.status import StatusBoard, StatusThrottle
from jobs.training import TrainingResult, read_progress
from jobs.transitions import Transitions
from jobs.webhooks import Deliveries
from storage.errors import IllegalTransition
from storage.models import JobState

log = logging.getLogger(__name__)

# A submit fal may have received but did not confirm: the member's quota is returned, but fal may
# still run (and bill) it, so the member is not told to simply try again.
OUTCOME_UNKNOWN = (
    "fal did not confirm that it received this edit, so I stopped here rather than risk running "
    "it twice. If fal ran it anyway, this server may be billed for it once; your quota was not "
    "used. Check back before trying again."
)
SETTLE_LIMIT = 120.0  # seconds a cancel or a shutdown waits for a submit in flight


class AtFal:
    def __init__(
        self,
        ctx: JobContext,
        transitions: Transitions,
        status: StatusBoard,
        outputs: Outputs,
        deliveries: Deliveries | None = None,
    ) -> None:
        self._ctx = ctx
        self._transitions = transitions
        self._status = status
        self._outputs = outputs
        self._deliveries = deliveries or Deliveries(ctx)
        self._submitting: dict[int, asyncio.Future[None]] = {}

    def handle(self, job: AnyJob) -> RequestHandle:
        """The URLs fal gave at submit (docs/fal-queue.md, "URLs and request ids")."""
        if job.fal_status_url and job.fal_response_url and job.fal_cancel_url:
            return RequestHandle(
                request_id=job.fal_request_id or "",
                status_url=job.fal_status_url,
                response_url=job.fal_response_url,
                cancel_url=job.fal_cancel_url,
            )
        return self._ctx.fal_for(job).handle_for(job.fal_request_id or "")

    async def cancel(self, job: AnyJob, why: str) -> CancelOutcome | None:
        """Ask fal to drop a submitted job; None when there was nothing at fal or fal could
        not be told (logged; the job ends on our side)."""
        if job.state != JobState.SUBMITTED:
            return None
        fal, handle = self._ctx.fal_for(job), self.handle(job)
        try:
            outcome = await fal.cancel(handle)
            if outcome == "already_completed":
                # Also what a retried cancel hears when its first try got through.
                status = await fal.status(handle)
                if status.error_type == "client_cancelled":
                    return "requested"
            return outcome
        except FalError:
            log.warning("job %s: cancel at fal failed %s", job.id, why, exc_info=True)
            return None

    async def settled(self, job_id: int) -> None:
        """Wait until a submit in flight for this job has an outcome stored (its request id,
        or its failure), so a cancel or a shutdown never loses what fal was sent."""
        pending = self._submitting.get(job_id)
        if pending is not None:
            async with asyncio.timeout(SETTLE_LIMIT):
                await asyncio.shield(pending)

    async def all_settled(self) -> None:
        pending = list(self._submitting.values())
        if pending:
            await asyncio.wait(pending, timeout=SETTLE_LIMIT)

    async def submit(self, job: AnyJob) -> AnyJob:
        """Submit and store the outcome as one unit that cancelling the job's task does not
        cut in two: once the request is on the wire, its request id is always recorded."""
        settled = asyncio.get_running_loop().create_future()
        self._submitting[job.id] = settled

        async def submit_and_store() -> AnyJob:
            try:
                return await self._submit(job)
            finally:
                self._submitting.pop(job.id, None)
                settled.set_result(None)

        inner = asyncio.ensure_future(submit_and_store())
        inner.add_done_callback(_observed)
        return await asyncio.shield(inner)

    async def _submit(self, job: AnyJob) -> AnyJob:
        try:
            # A training's files are asked to outlive fal's default retention: the LoRA's
            # path is their URL (docs/fal-trainer.md, "Keeping the trained files").
            fal_input, webhook_url = self._fal_input(job)
            handle, first = await self._ctx.fal_for(job).submit(
                fal_input, keep_files=is_training(job), webhook_url=webhook_url
            )
        except FalSubmitOutcomeUnknown:
            log.warning("job %s: submit outcome unknown; not resubmitting", job.id)
            await self._status.fail(job.id, OUTCOME_UNKNOWN)
            return await self._transitions.reload(job.id)
        except FalError as error:
            self._ctx.notices.fal_failed(error)
            await self._status.fail(job.id, fal_failure_text(error, self._ctx.metrics))
            return await self._transitions.reload(job.id)
        try:
            job = await self._transitions.move(
                job.id,
                JobState.SUBMITTED,
                expect={JobState.ADMITTED},
                fal_request_id=handle.request_id,
                fal_status_url=handle.status_url,
                fal_response_url=handle.response_url,
                fal_cancel_url=handle.cancel_url,
            )
        except IllegalTransition:
            # Ended meanwhile by another process (a Cancel pressed where this job's server
            # lives, while this process's submit was on the wire): fal must not run it.
            ended = await self._transitions.reload(job.id)
            log.info(
                "job %s %s while submitting; cancelling %s at fal",
                job.id,
                ended.state.value,
                handle.request_id,
            )
            with contextlib.suppress(FalError):
                await self._ctx.fal_for(job).cancel(handle)
            return ended
        log.info("job %s submitted fal_request_id=%s", job.id, handle.request_id)
        eta = self._status.timings.eta(self._ctx.now(), first.queue_position)
        await self._status.show(
            job.id,
            self._status.update(job, "queued", queue_position=first.queue_position, eta_at=eta),
        )
        return job

    def _fal_input(self, job: AnyJob) -> tuple[EditInput | TrainingInput, str | None]:
        """What fal is sent, and the webhook fal is asked to call. An edit followed by webhook
        asks for URL results, not inline data: the delivery stays small, and its images are
        fetched from fal's URLs (docs/fal-webhooks.md, "URL results, not inline data")."""
        url = self._deliveries.url
        if url is None or is_training(job):  # a training's progress comes from the stream
            return job.request.to_fal_input(), None
        return as_edit(job).request.to_fal_input().model_copy(update={"sync_mode": False}), url

    async def watch(self, job: AnyJob, throttle: StatusThrottle) -> AnyJob:
        if self._deliveries.url is not None and not is_training(job):
            return await self._watch_by_webhook(job, throttle)
        ctx, timings = self._ctx, self._status.timings
        training = is_training(job)
        queued_at = time.monotonic()
        first_position: int | None = None
        running_at: float | None = None
        last: QueueStatus | None = None
        progress: tuple[int, int] | None = None
        first_step = (queued_at, 0)  # (when, step) progress was first seen: the rate's origin
        try:
            async for status in ctx.fal_for(job).watch(self.handle(job), logs=training):
                last = status
                if status.status == "IN_QUEUE":
                    if first_position is None:
                        first_position = status.queue_position
                    # Edit timings say nothing about how long a training will take.
                    eta = None if training else timings.eta(ctx.now(), status.queue_position)
                    await throttle.push(
                        self._status.update(
                            job, "queued", queue_position=status.queue_position, eta_at=eta
                        )
                    )
                elif status.status == "IN_PROGRESS" and running_at is None:
                    running_at = time.monotonic()
                    if training:
                        progress = read_progress(status.logs or [])
                        first_step = (running_at, progress[0] if progress else 0)
                        await throttle.push(self._status.update(job, "running", progress=progress))
                        continue
                    timings.observe_wait(running_at - queued_at, first_position or 0)
                    ctx.metrics.fal_queue_seconds.observe(running_at - queued_at)
                    eta = timings.eta(ctx.now(), None)
                    await throttle.push(self._status.update(job, "running", eta_at=eta))
                elif status.status == "IN_PROGRESS" and training and running_at is not None:
                    step = read_progress(status.logs or [], progress)
                    if step != progress and step is not None:
                        progress = step
                        until = _training_eta(ctx.now(), first_step, step)
                        await throttle.push(
                            self._status.update(job, "running", progress=step, eta_at=until)
                        )
        except FalError as error:  # fal stopped answering about it, or forgot it
            await self._status.fail(job.id, fal_failure_text(error, ctx.metrics))
            return await self._transitions.reload(job.id)
        if running_at is not None and not training:  # edit timings make the edits' ETA
            timings.observe_run(time.monotonic() - running_at)
            ctx.metrics.fal_run_seconds.observe(time.monotonic() - running_at)
        if last is not None and last.error_type == "client_cancelled":
            await self._transitions.finish(job.id, JobState.CANCELLED, error="cancelled at fal")
            return await self._transitions.reload(job.id)
        return await self.complete(job)

    async def _watch_by_webhook(self, job: AnyJob, throttle: StatusThrottle) -> AnyJob:
        """Wait for fal's webhook, holding no connection; every grace period without one, ask
        fal once for the status (a late or lost webhook), then wait again
        (docs/fal-webhooks.md, "How the bot receives them")."""
        grace = self._ctx.config.webhook_grace
        while True:
            stored = await self._deliveries.wait(job.id, grace)
            if stored is not None:
                delivery = WebhookDelivery.model_validate_json(stored.body)
                job = await self.complete(job, _delivered_output(job, delivery))
                await self._deliveries.forget(job.id)
                return job
            try:
                status = await self._ctx.fal.status(self.handle(job))
            except FalError as error:
                if not isinstance(error, FalNotFound):
                    log.warning("job %s: status poll failed; waiting on", job.id, exc_info=True)
                    continue
                await self._status.fail(job.id, fal_failure_text(error, self._ctx.metrics))
                return await self._transitions.reload(job.id)
            log.info("job %s: no webhook after %.0f s; fal says %s", job.id, grace, status.status)
            if status.status == "COMPLETED":
                if status.error_type == "client_cancelled":
                    await self._transitions.finish(
                        job.id, JobState.CANCELLED, error="cancelled at fal"
                    )
                    return await self._transitions.reload(job.id)
                job = await self.complete(job)
                await self._deliveries.forget(job.id)
                return job
            eta = self._status.timings.eta(self._ctx.now(), status.queue_position)
            if status.status == "IN_QUEUE":
                update = self._status.update(
                    job, "queued", queue_position=status.queue_position, eta_at=eta
                )
            else:
                update = self._status.update(job, "running", eta_at=eta)
            await throttle.push(update)

    async def complete(self, job: AnyJob, delivered: EditOutput | None = None) -> AnyJob:
        """fal is done: store the result (an edit's output as delivered by webhook, else
        fetched) and mark the job COMPLETED, or show how it failed (refunded)."""
        ctx = self._ctx
        try:
            if delivered is not None:
                stored: JobResult = await self._outputs.store(as_edit(job), delivered)
            else:
                stored = await self._result(job)
        except FalCancelled:
            await self._status.end(job.id, JobState.CANCELLED, "cancelled at fal", note=False)
            return await self._transitions.reload(job.id)
        except FalError as error:
            ctx.notices.fal_failed(error)
            await self._status.fail(job.id, fal_failure_text(error, ctx.metrics))
            return await self._transitions.reload(job.id)
        job = await self._transitions.move(
            job.id, JobState.COMPLETED, expect={JobState.SUBMITTED}, result=stored
        )
        log.info("job %s completed (%s)", job.id, job.request.kind)
        return job

    async def _result(self, job: AnyJob) -> JobResult:
        """fal's output, fetched at once (fal keeps it briefly): an edit's images go to disk;
        a training's weights stay at fal, their URL is all the bot keeps."""
        handle = self.handle(job)
        if is_training(job):
            output = await self._ctx.fal_for(job).result_as(handle, TrainingOutput)
            weights = output.diffusers_lora_file
            return TrainingResult(
                lora_url=weights.url,
                config_url=output.config_file.url if output.config_file else None,
                lora_bytes=weights.file_size,
            )
        edit = as_edit(job)
        result = await self._ctx.fal.result(handle)
        log.info("job %s: fal made %d images, seed %s", job.id, len(result.images), result.seed)
        return await self._outputs.store(edit, result)


def _training_eta(
    now: datetime, origin: tuple[float, int], progress: tuple[int, int]
) -> datetime | None:
    """When the training should end at the rate measured since `origin` (when, step): this
    process's own observations, so a restart in the middle does not skew it."""
    since, from_step = origin
    done, total = progress
    elapsed = time.monotonic() - since
    if done <= from_step or elapsed <= 0:
        return None
    return now + timedelta(seconds=elapsed / (done - from_step) * (total - done))


def _delivered_output(job: AnyJob, delivery: WebhookDelivery) -> EditOutput | None:
    """An edit's output as the webhook carries it; None when it must be fetched instead: a
    failure (the result request gives its typed error, cancellations included) or a payload
    that is not an edit's output."""
    if not delivery.ok or is_training(job):
        return None
    try:
        return EditOutput.model_validate(delivery.payload)
    except ValidationError:
        log.warning("job %s: the webhook's payload is not an edit's output", job.id)
        return None


def _observed(task: asyncio.Future[AnyJob]) -> None:
    """A shielded submit whose waiter was cancelled: its failure is logged, not lost."""
    if not task.cancelled() and task.exception() is not None:
        log.error("a submit failed after its job task stopped", exc_info=task.exception())
