"""The job lifecycle: admit → submit → watch → deliver, every step persisted, resumable.

Each job is driven by one task. The task reads the stored state and continues from there, so
the same code runs a fresh job and one recovered after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from client.errors import (
    FalAccountLocked,
    FalAuthError,
    FalCancelled,
    FalError,
    FalRequestFailed,
    FalSubmitOutcomeUnknown,
    FalValidationError,
)
from client.fal import FalClient, RequestHandle
from client.pricing import estimate_cost_usd
from client.schema import EditOutput, QueueStatus
from jobs.encode import fit_to_limit
from jobs.errors import BadRequest, NotAllowed, NotFound, Refused
from jobs.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    ImageInfo,
    human_bytes,
    inspect_image,
)
from jobs.loras import check_name
from jobs.metrics import Metrics
from jobs.policy import (
    Requester,
    check_channel,
    is_manager,
    nsfw_action,
    quota_limits,
    safety_checker_on,
)
from jobs.publisher import (
    Delivery,
    DeliveryError,
    DeliveryForbidden,
    DeliveryTooLarge,
    Phase,
    Publisher,
    ResultImage,
    StatusUpdate,
)
from jobs.refusals import describe_refusal
from jobs.request import EditOptions, EditRequest, InputRef, RecipeLora, build_request
from storage import Storage
from storage.models import (
    TERMINAL_STATES,
    EffectiveSettings,
    Job,
    JobState,
    NewJob,
    QuotaLimits,
    Refusal,
    StoredInput,
)

log = logging.getLogger(__name__)

STATUS_MIN_INTERVAL = 2.0
_PROGRESS_PHASES = frozenset({"admitted", "queued", "running", "delivering"})
_FINAL_PHASES: dict[JobState, Phase] = {
    JobState.DELIVERED: "delivered",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
    JobState.EXPIRED: "expired",
}
MAX_RESULT_BYTES = 60 * 1024 * 1024


class InputFile(Protocol):
    """An attachment the member gave; the cog adapts Discord's attachment to this."""

    @property
    def label(self) -> str: ...

    @property
    def filename(self) -> str: ...

    @property
    def size(self) -> int: ...

    async def read(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class JobConfig:
    outputs_dir: Path
    job_timeout: float = 900.0
    max_input_bytes: int = DEFAULT_MAX_BYTES
    max_input_pixels: int = DEFAULT_MAX_PIXELS


class _Timings:
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

    def eta(self, now: datetime, queue_position: int | None) -> datetime:
        wait = (queue_position or 0) * self.wait_per_position if queue_position is not None else 0
        return now + timedelta(seconds=wait + self.run_seconds)


class _StatusThrottle:
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


class JobService:
    def __init__(
        self,
        storage: Storage,
        fal: FalClient,
        publisher: Publisher,
        config: JobConfig,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.storage = storage
        self.fal = fal
        self.publisher = publisher
        self.config = config
        self._now = now
        self._rng = rng or random.SystemRandom()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._timings = _Timings()
        self._closing = False
        self._changed = asyncio.Condition()
        self._status_locks: dict[int, asyncio.Lock] = {}
        self.metrics = metrics or Metrics()

    # ------------------------------------------------------------------ admission

    async def prepare_inputs(self, files: Sequence[InputFile]) -> list[InputRef]:
        """Download, check and re-host the member's images (deduplicated by SHA-256)."""
        if not files:
            raise BadRequest("Attach at least one image to edit.")
        infos: list[ImageInfo] = []
        for file in files:
            if file.size > self.config.max_input_bytes:
                raise BadRequest(
                    f"{file.label} ({file.filename}) is {human_bytes(file.size)}; "
                    f"the limit is {human_bytes(self.config.max_input_bytes)}."
                )
            try:
                data = await file.read()
            except Exception:
                log.warning("could not download %s", file.label, exc_info=True)
                raise BadRequest(
                    f"I couldn't download {file.label} from Discord. Attach it again."
                ) from None
            infos.append(
                await asyncio.to_thread(  # decoding is CPU work; keep the event loop free
                    inspect_image,
                    data,
                    f"{file.label} ({file.filename})",
                    max_bytes=self.config.max_input_bytes,
                    max_pixels=self.config.max_input_pixels,
                )
            )
        try:
            return [await self._rehost(info) for info in infos]
        except FalError as error:  # fal down or the key refused: not the member's doing
            raise Refused(self._fal_failure_text(error)) from None

    async def _rehost(self, info: ImageInfo) -> InputRef:
        stored = await self.storage.inputs.get(info.sha256)
        if stored is None:
            url = await self.fal.upload(
                info.data, info.content_type, f"{info.sha256[:16]}.{info.extension}"
            )
            stored = StoredInput(
                sha256=info.sha256,
                url=url,
                content_type=info.content_type,
                byte_size=len(info.data),
                width=info.width,
                height=info.height,
                created_at=self._now(),
            )
            await self.storage.inputs.put(stored)
        return InputRef(
            sha256=stored.sha256,
            url=stored.url,
            content_type=stored.content_type,
            width=stored.width,
            height=stored.height,
        )

    async def resolve_loras(
        self, who: Requester, picks: Sequence[tuple[str, float | None]]
    ) -> list[RecipeLora]:
        seen: set[str] = set()
        resolved: list[RecipeLora] = []
        for name, scale in picks:
            if not name.strip():
                continue
            name = check_name(name)  # a typed name may hide invisible or direction characters
            key = name.lower()
            if key in seen:
                raise BadRequest(f"You picked the LoRA `{name}` twice; pick it once.")
            seen.add(key)
            lora = await self.storage.loras.get(who.guild_id, name)
            if lora is None:
                raise BadRequest(
                    f"This server has no LoRA named `{name}`. See `/loras` for the list."
                )
            if not lora.enabled:
                raise BadRequest(f"The LoRA `{lora.name}` is disabled on this server.")
            if lora.nsfw and not who.channel_nsfw:
                raise BadRequest(
                    f"The LoRA `{lora.name}` is marked NSFW; use it in an age-restricted channel."
                )
            resolved.append(
                RecipeLora(
                    id=lora.id,
                    name=lora.name,
                    path=lora.path,
                    scale=lora.default_scale if scale is None else scale,
                    version=lora.version,
                    trigger_words=list(lora.trigger_words),
                )
            )
        return resolved

    async def build(
        self,
        who: Requester,
        options: EditOptions,
        inputs: list[InputRef],
        *,
        loras: list[RecipeLora] | None = None,
        settings: EffectiveSettings | None = None,
    ) -> EditRequest:
        settings = settings or await self.storage.settings.effective(
            who.guild_id, who.rules_channel_id
        )
        check_channel(settings)
        if loras is None:
            loras = await self.resolve_loras(who, [(p.name, p.scale) for p in options.loras])
        return build_request(
            options,
            inputs=inputs,
            loras=loras,
            seed=options.seed if options.seed is not None else self.new_seed(),
            safety_checker=safety_checker_on(settings.nsfw_policy, who.channel_nsfw),
            upload_limit=who.upload_limit,
            max_images=settings.max_images_per_job,
            max_steps=settings.max_steps,
        )

    async def check_allowed(self, who: Requester) -> EffectiveSettings:
        """Channel rules and the member's quota, before anything is downloaded or uploaded.
        Returns the settings read, for build() and admit() in the same request."""
        settings = await self.storage.settings.effective(who.guild_id, who.rules_channel_id)
        check_channel(settings)
        limits = quota_limits(settings.guild, who)
        refusal = await self._precheck(who, limits)
        if refusal is not None:
            self.metrics.refusals.labels(reason=refusal.kind).inc()
            raise Refused(describe_refusal(refusal, 1, limits))
        return settings

    async def _precheck(self, who: Requester, limits: QuotaLimits) -> Refusal | None:
        """A non-binding look at the limits; admit() checks again atomically. Same order as
        admit(): the budget (the longest wait) first."""
        now = self._now()
        budget = limits.monthly_budget_usd
        if budget:
            spent = await self.storage.quotas.guild_spend(who.guild_id, now=now)
            if spent >= budget:
                return Refusal(
                    kind="budget",
                    used=spent,
                    limit=budget,
                    requested=0,
                    next_free_at=next_month(now),
                )
        usage = await self.storage.quotas.usage(
            who.guild_id, who.user_id, limits.window_seconds, now=now
        )
        cap = limits.images_per_window
        if cap is not None and usage.images_used >= cap:
            return Refusal(
                kind="quota",
                used=usage.images_used,
                limit=cap,
                requested=1,
                next_free_at=usage.next_free_at,
            )
        if limits.max_in_flight is not None and usage.in_flight >= limits.max_in_flight:
            return Refusal(
                kind="in_flight",
                used=usage.in_flight,
                limit=limits.max_in_flight,
                requested=1,
                next_free_at=None,
            )
        return None

    def new_seed(self) -> int:
        return self._rng.randrange(0, 2**32)

    async def admit(
        self,
        who: Requester,
        request: EditRequest,
        *,
        parent_job_id: int | None = None,
        request_message_id: int | None = None,
        settings: EffectiveSettings | None = None,
    ) -> Job:
        """Reserve quota and write the job atomically, show its status, start driving it."""
        settings = settings or await self.storage.settings.effective(
            who.guild_id, who.rules_channel_id
        )
        check_channel(settings)
        limits = quota_limits(settings.guild, who)
        now = self._now()
        cost = estimate_cost_usd(len(request.inputs), request.width, request.height, request.count)
        outcome = await self.storage.jobs.admit(
            NewJob(
                guild_id=who.guild_id,
                channel_id=who.channel_id,
                user_id=who.user_id,
                request=request.model_dump(mode="json"),
                fal_input=request.to_fal_input().model_dump(mode="json", exclude_none=True),
                images=request.count,
                cost_usd=cost,
                parent_job_id=parent_job_id,
                request_message_id=request_message_id,
                deadline_at=now + timedelta(seconds=self.config.job_timeout),
                seed=request.seed,
                lora_ids=[lora.id for lora in request.loras],
            ),
            limits,
            now=now,
        )
        if isinstance(outcome, Refusal):
            self.metrics.refusals.labels(reason=outcome.kind).inc()
            raise Refused(describe_refusal(outcome, request.count, limits))
        job = outcome
        self.metrics.transitions.labels(state=JobState.ADMITTED.value).inc()
        self.metrics.in_flight.inc()
        log.info(
            "job %s admitted guild=%s user=%s images=%s cost=%.4f",
            job.id,
            job.guild_id,
            job.user_id,
            job.images,
            job.cost_usd,
        )
        # Submit first: the status message (a Discord round trip, serialised per channel by
        # discord.py's rate limiter) is posted meanwhile, off the member's critical path.
        self._spawn(job.id)
        try:
            await self._show(
                job.id,
                StatusUpdate(phase="admitted", request=request, started_at=job.created_at),
                raise_errors=True,
            )
        except DeliveryError as error:
            await self._abandon(job.id)
            raise Refused(f"{error} You were not charged.") from None
        return await self._reload(job.id)

    async def _abandon(self, job_id: int) -> None:
        """Stop a job that may already be at fal, and refund it."""
        task = self._tasks.pop(job_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        job = await self._reload(job_id)
        if job.state == JobState.SUBMITTED:
            try:
                await self.fal.cancel(self._handle(job))
            except FalError:
                log.warning("job %s: cancel at fal failed", job_id, exc_info=True)
        await self._finish(job_id, JobState.FAILED, error="could not post in the channel")

    async def result_job(self, who: Requester, job_id: int) -> Job:
        """A delivered job of this server, or NotFound (other servers' jobs are invisible)."""
        job = await self.storage.jobs.get(job_id)
        if job is None or job.guild_id != who.guild_id:
            raise NotFound("That edit doesn't exist on this server.")
        return job

    async def check_rerun(self, who: Requester, job_id: int) -> Job:
        """The job to rerun if the server's rerun policy lets `who` rerun it, else NotAllowed."""
        parent = await self.result_job(who, job_id)
        settings = await self.storage.settings.effective(who.guild_id, who.rules_channel_id)
        if (
            settings.rerun_policy == "requester"
            and parent.user_id != who.user_id
            and not is_manager(settings.guild, who)
        ):
            raise NotAllowed("On this server only the member who made an edit can rerun it.")
        return parent

    async def rerun(
        self,
        job_id: int,
        who: Requester,
        *,
        seed: int | None = None,
        prompt: str | None = None,
        scales: dict[str, float] | None = None,
        first_input: InputRef | None = None,
    ) -> Job:
        """A new job from a result's recipe: new seed unless given; the rerunner is charged."""
        parent = await self.check_rerun(who, job_id)
        old = EditRequest.model_validate(parent.request)
        loras: list[RecipeLora] = []
        for lora in old.loras:
            # By id: a LoRA renamed since is still the same LoRA; a new one under the old
            # name is not.
            current = await self.storage.loras.get_by_id(lora.id)
            if current is None or current.guild_id != who.guild_id:
                raise BadRequest(
                    f"The LoRA `{lora.name}` was removed from this server, so this edit "
                    "can't be rerun."
                )
            scale = (scales or {}).get(lora.name, lora.scale)
            loras.append(lora.model_copy(update={"scale": scale, "name": current.name}))
        resolved = await self.resolve_loras(who, [(lora.name, lora.scale) for lora in loras])
        inputs = list(old.inputs)
        if first_input is not None:
            inputs = [first_input, *inputs[1:]]
        options = EditOptions(
            prompt=old.prompt if prompt is None else prompt,
            seed=self.new_seed() if seed is None else seed,
            guidance=old.guidance,
            steps=old.steps,
            size=old.size if old.size != "custom" else None,
            width=old.width if old.size == "custom" else None,
            height=old.height if old.size == "custom" else None,
            count=old.count,
            acceleration=old.acceleration,
            expand_prompt=old.expand_prompt,
            output_format=old.output_format,
        )
        request = await self.build(who, options, inputs, loras=resolved)
        return await self.admit(who, request, parent_job_id=parent.id)

    # ------------------------------------------------------------------ lifecycle

    async def recover(self) -> int:
        """Continue every job that was not finished when the process stopped, and show the
        final state of those that finished but were never shown (the process died between)."""
        jobs = await self.storage.jobs.unfinished()
        self.metrics.in_flight.set(len(jobs))
        unannounced = await self.storage.jobs.unannounced()
        for job in [*jobs, *unannounced]:
            log.info("job %s recovered in state %s", job.id, job.state.value)
            self._spawn(job.id)
        return len(jobs) + len(unannounced)

    async def _announce(self, job: Job) -> None:
        """Show a finished job's final state: the status message, and the 🔁 on a result."""
        if job.state == JobState.DELIVERED:
            await self.publisher.decorate(job)
        note = job.error if job.state in (JobState.FAILED, JobState.EXPIRED) else None
        await self._show(
            job.id,
            StatusUpdate(
                phase=_FINAL_PHASES[job.state],
                request=EditRequest.model_validate(job.request),
                started_at=job.created_at,
                note=note,
            ),
        )

    def _spawn(self, job_id: int) -> None:
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
        """Stop driving jobs; their state is stored and a restart continues them."""
        self._closing = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _drive(self, job_id: int) -> None:
        job = await self.storage.jobs.get(job_id)
        if job is None:
            return
        if job.state in TERMINAL_STATES:
            if job.announced_at is None:
                await self._announce(job)
            return
        request = EditRequest.model_validate(job.request)
        throttle = _StatusThrottle(lambda update: self._show(job_id, update))
        try:
            if job.state in (JobState.ADMITTED, JobState.SUBMITTED):
                job = await self._run_at_fal(job, request, throttle)
            if job.state == JobState.COMPLETED:
                await throttle.push(
                    StatusUpdate(phase="delivering", request=request, started_at=job.created_at),
                    force=True,
                )
                # Reloaded: that status push may have just recorded the status message id.
                await self._deliver(await self._reload(job_id), request)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s crashed in state %s", job_id, job.state)
            await self._fail(
                job_id, request, "Something went wrong on our side. You were not charged."
            )
        finally:
            throttle.close()

    async def _run_at_fal(self, job: Job, request: EditRequest, throttle: _StatusThrottle) -> Job:
        """Submit (if not yet) and watch until fal is done; expire the job at its deadline."""
        remaining = (job.deadline_at - self._now()).total_seconds()
        try:
            async with asyncio.timeout(max(0.0, remaining)):
                if job.state == JobState.ADMITTED:
                    job = await self._submit(job, request)
                if job.state == JobState.SUBMITTED:
                    job = await self._watch(job, request, throttle)
        except TimeoutError:
            await self._expire(job.id, request)
            return await self._reload(job.id)
        return job

    async def _submit(self, job: Job, request: EditRequest) -> Job:
        try:
            handle, first = await self.fal.submit(request.to_fal_input())
        except FalSubmitOutcomeUnknown:
            log.warning("job %s: submit outcome unknown; not resubmitting", job.id)
            await self._fail(
                job.id,
                request,
                "fal did not confirm it received the job, so I stopped rather than risk "
                "running it twice. You were not charged; please try again.",
            )
            return await self._reload(job.id)
        except FalError as error:
            await self._fail(job.id, request, self._fal_failure_text(error))
            return await self._reload(job.id)
        job = await self._transition(
            job.id,
            JobState.SUBMITTED,
            expect={JobState.ADMITTED},
            fal_request_id=handle.request_id,
            fal_status_url=handle.status_url,
            fal_response_url=handle.response_url,
            fal_cancel_url=handle.cancel_url,
        )
        log.info("job %s submitted fal_request_id=%s", job.id, handle.request_id)
        await self._show(
            job.id,
            StatusUpdate(
                phase="queued",
                request=request,
                started_at=job.created_at,
                queue_position=first.queue_position,
                eta_at=self._timings.eta(self._now(), first.queue_position),
            ),
        )
        return job

    def _handle(self, job: Job) -> RequestHandle:
        if job.fal_status_url and job.fal_response_url and job.fal_cancel_url:
            return RequestHandle(
                request_id=job.fal_request_id or "",
                status_url=job.fal_status_url,
                response_url=job.fal_response_url,
                cancel_url=job.fal_cancel_url,
            )
        return self.fal.handle_for(job.fal_request_id or "")

    async def _watch(self, job: Job, request: EditRequest, throttle: _StatusThrottle) -> Job:
        handle = self._handle(job)
        queued_at = time.monotonic()
        first_position: int | None = None
        running_at: float | None = None
        last: QueueStatus | None = None
        async for status in self.fal.watch(handle):
            last = status
            now = self._now()
            if status.status == "IN_QUEUE":
                if first_position is None:
                    first_position = status.queue_position
                await throttle.push(
                    StatusUpdate(
                        phase="queued",
                        request=request,
                        started_at=job.created_at,
                        queue_position=status.queue_position,
                        eta_at=self._timings.eta(now, status.queue_position),
                    )
                )
            elif status.status == "IN_PROGRESS" and running_at is None:
                running_at = time.monotonic()
                self._timings.observe_wait(running_at - queued_at, first_position or 0)
                self.metrics.fal_queue_seconds.observe(running_at - queued_at)
                await throttle.push(
                    StatusUpdate(
                        phase="running",
                        request=request,
                        started_at=job.created_at,
                        eta_at=self._timings.eta(now, None),
                    )
                )
        if running_at is not None:
            self._timings.observe_run(time.monotonic() - running_at)
            self.metrics.fal_run_seconds.observe(time.monotonic() - running_at)
        if last is not None and last.error_type == "client_cancelled":
            await self._finish(job.id, JobState.CANCELLED, error="cancelled at fal")
            return await self._reload(job.id)
        try:
            output = await self.fal.result(handle)
        except FalCancelled:
            await self._finish(job.id, JobState.CANCELLED, error="cancelled at fal")
            await self._show(
                job.id,
                StatusUpdate(phase="cancelled", request=request, started_at=job.created_at),
            )
            return await self._reload(job.id)
        except FalError as error:
            await self._fail(job.id, request, self._fal_failure_text(error))
            return await self._reload(job.id)
        stored = await self._store_output(job, request, output)
        job = await self._transition(
            job.id, JobState.COMPLETED, expect={JobState.SUBMITTED}, result=stored
        )
        log.info("job %s completed seed=%s images=%s", job.id, output.seed, len(output.images))
        return job

    async def _store_output(
        self, job: Job, request: EditRequest, output: EditOutput
    ) -> dict[str, Any]:
        """Download the images at once (fal keeps them briefly) and keep them on disk."""
        folder = self.config.outputs_dir / str(job.id)
        folder.mkdir(parents=True, exist_ok=True)
        images: list[dict[str, Any]] = []
        for index, image in enumerate(output.images):
            data = await self.fal.download(image.url, max_bytes=MAX_RESULT_BYTES)
            ext = (image.content_type or f"image/{request.output_format}").split("/")[-1]
            ext = "jpg" if ext == "jpeg" else ext
            path = folder / f"{index + 1}.{ext}"
            await asyncio.to_thread(path.write_bytes, data)
            flags = output.has_nsfw_concepts
            images.append(
                {
                    "url": image.url if not image.url.startswith("data:") else None,
                    "file": str(path),
                    "content_type": image.content_type or f"image/{request.output_format}",
                    "width": image.width or request.width,
                    "height": image.height or request.height,
                    "nsfw": bool(flags[index]) if index < len(flags) else False,
                }
            )
        return {
            "images": images,
            "seed": output.seed,
            "prompt": output.prompt,
            "timings": output.timings,
        }

    async def _load_images(self, job: Job) -> list[tuple[dict[str, Any], bytes]]:
        result = job.result or {}
        loaded: list[tuple[dict[str, Any], bytes]] = []
        for meta in result.get("images", []):
            try:
                data = await asyncio.to_thread(Path(meta["file"]).read_bytes)
            except FileNotFoundError:
                if not meta.get("url"):
                    raise
                data = await self.fal.download(meta["url"], max_bytes=MAX_RESULT_BYTES)
            loaded.append((meta, data))
        return loaded

    async def _deliver(self, job: Job, request: EditRequest) -> Job:
        settings = await self.storage.settings.effective(job.guild_id, job.channel_id)
        channel_nsfw = not request.safety_checker  # only off in an allowed NSFW channel
        action = nsfw_action(settings.nsfw_policy, channel_nsfw)
        images: list[ResultImage] = []
        blocked = 0
        for index, (meta, data) in enumerate(await self._load_images(job)):
            flagged = bool(meta.get("nsfw"))
            if flagged and action == "block":
                blocked += 1
                continue
            ext = str(meta["content_type"]).split("/")[-1].replace("jpeg", "jpg")
            images.append(
                ResultImage(
                    data=data,
                    filename=f"edit-{job.id}-{index + 1}.{ext}",
                    content_type=str(meta["content_type"]),
                    width=int(meta["width"]),
                    height=int(meta["height"]),
                    spoiler=flagged and action == "spoiler",
                )
            )
        if not images:
            await self._fail(
                job.id,
                request,
                "The safety checker flagged the result and this channel doesn't allow it. "
                "You were not charged.",
            )
            return await self._reload(job.id)
        images, reencoded = fit_to_limit(images, request.upload_limit)
        parent = await self._parent_result(job)
        result = job.result or {}
        finished = job.completed_at or self._now()
        delivery = Delivery(
            request=request,
            images=images,
            seed=int(result.get("seed", request.seed)),
            seconds=(finished - job.created_at).total_seconds(),
            cost_usd=job.cost_usd,
            blocked=blocked,
            reencoded=reencoded,
            parent_result=parent,
        )
        try:
            try:
                message_id = await self.publisher.deliver(job, delivery)
            except DeliveryTooLarge:
                smaller, _ = fit_to_limit(images, request.upload_limit // 2)
                delivery = Delivery(**{**_fields(delivery), "images": smaller, "reencoded": True})
                message_id = await self.publisher.deliver(job, delivery)
        except DeliveryForbidden as error:
            # The status message still says "Posting…": say why it stopped, there and privately.
            await self._fail(job.id, request, f"{error} Your edit was not charged.")
            await self.publisher.notify(job, f"{error} Your edit was not charged.")
            return await self._reload(job.id)
        except DeliveryError as error:
            await self._fail(job.id, request, f"{error} You were not charged.")
            return await self._reload(job.id)
        job = await self._transition(
            job.id, JobState.DELIVERED, expect={JobState.COMPLETED}, result_message_id=message_id
        )
        log.info("job %s delivered message=%s", job.id, message_id)
        if job.lora_ids:  # a LoRA's "uses" counts results members actually got
            await self.storage.loras.increment_uses(job.lora_ids)
        await self.publisher.decorate(job)
        await self._show(
            job.id, StatusUpdate(phase="delivered", request=request, started_at=job.created_at)
        )
        await asyncio.to_thread(_remove_files, self.config.outputs_dir / str(job.id))
        return job

    async def _parent_result(self, job: Job) -> tuple[int, int] | None:
        if job.parent_job_id is None:
            return None
        parent = await self.storage.jobs.get(job.parent_job_id)
        if parent is None or parent.result_message_id is None:
            return None
        return parent.channel_id, parent.result_message_id

    # ------------------------------------------------------------------ endings

    async def cancel(self, job_id: int, who: Requester) -> Job:
        job = await self.storage.jobs.get(job_id)
        if job is None or job.guild_id != who.guild_id:
            raise NotFound("That job doesn't exist on this server.")
        if job.user_id != who.user_id and not who.can_manage_messages:
            # Bot managers cancel stuck jobs from `/admin jobs`, with or without Manage Server.
            guild = await self.storage.settings.get(who.guild_id)
            if not is_manager(guild, who):
                raise NotAllowed(
                    "Only the member who started this edit (or a moderator) can cancel it."
                )
        if job.state in TERMINAL_STATES or job.state == JobState.COMPLETED:
            raise NotAllowed(f"This edit is already {job.state.value}; nothing to cancel.")
        task = self._tasks.pop(job_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        job = await self._reload(job_id)
        if job.state == JobState.COMPLETED:
            self._spawn(job_id)  # it finished meanwhile: deliver it after all
            raise NotAllowed("This edit just finished; the result is on its way.")
        if job.state == JobState.SUBMITTED:
            try:
                await self.fal.cancel(self._handle(job))
            except FalError:
                log.warning("job %s: cancel at fal failed", job_id, exc_info=True)
        await self._finish(job_id, JobState.CANCELLED, error=f"cancelled by {who.user_id}")
        request = EditRequest.model_validate(job.request)
        await self._show(
            job_id,
            StatusUpdate(phase="cancelled", request=request, started_at=job.created_at),
        )
        return await self._reload(job_id)

    async def _expire(self, job_id: int, request: EditRequest) -> None:
        job = await self._reload(job_id)
        if job.state in TERMINAL_STATES:
            return
        if job.state == JobState.SUBMITTED:
            try:
                await self.fal.cancel(self._handle(job))
            except FalError:
                log.warning("job %s: cancel at fal failed on expiry", job_id, exc_info=True)
        minutes = self.config.job_timeout / 60
        text = f"fal didn't finish within {minutes:g} minutes, so I cancelled the edit. "
        text += "You were not charged."
        await self._finish(job_id, JobState.EXPIRED, error=text)
        await self._show(
            job_id,
            StatusUpdate(phase="expired", request=request, started_at=job.created_at, note=text),
        )

    async def _fail(self, job_id: int, request: EditRequest, text: str) -> None:
        job = await self._finish(job_id, JobState.FAILED, error=text)
        if job is None:
            return
        await self._show(
            job_id,
            StatusUpdate(phase="failed", request=request, started_at=job.created_at, note=text),
        )

    async def _finish(self, job_id: int, state: JobState, *, error: str) -> Job | None:
        job = await self._reload(job_id)
        if job.state in TERMINAL_STATES:
            return None
        job = await self._transition(job_id, state, error=error)
        log.info("job %s %s (refunded): %s", job_id, state.value, error)
        return job

    async def _show(self, job_id: int, update: StatusUpdate, *, raise_errors: bool = False) -> None:
        # One status update at a time per job, so the message is created once, then edited.
        lock = self._status_locks.setdefault(job_id, asyncio.Lock())
        async with lock:
            job = await self._reload(job_id)
            if job.state in TERMINAL_STATES and update.phase in _PROGRESS_PHASES:
                return  # a throttled progress update that lost the race to the final one
            try:
                created = await self.publisher.show_status(job, update)
            except DeliveryError:
                if raise_errors:
                    raise
                log.warning("job %s: could not update its status message", job_id, exc_info=True)
                created = None
            finally:
                if job.state in TERMINAL_STATES:
                    self._status_locks.pop(job_id, None)
            if created is not None and created != job.status_message_id:
                await self.storage.jobs.set_status_message(job_id, created)
            if job.state in TERMINAL_STATES and update.phase not in _PROGRESS_PHASES:
                await self.storage.jobs.mark_announced(job_id)

    async def _transition(self, job_id: int, to: JobState, **kwargs: Any) -> Job:
        job = await self.storage.jobs.transition(job_id, to, **kwargs)
        log.info(
            "job %s → %s guild=%s user=%s fal_request_id=%s",
            job.id,
            job.state.value,
            job.guild_id,
            job.user_id,
            job.fal_request_id or "-",
        )
        self.metrics.transitions.labels(state=to.value).inc()
        if to in TERMINAL_STATES:
            self.metrics.in_flight.dec()
        if to == JobState.DELIVERED and job.completed_at is not None:
            delivered_in = (self._now() - job.completed_at).total_seconds()
            self.metrics.delivery_seconds.observe(max(0.0, delivered_in))
        async with self._changed:
            self._changed.notify_all()
        return job

    async def wait_for_state(self, job_id: int, *states: JobState) -> Job:
        """The job once it is in one of `states` (tests, shutdown); woken by each transition.
        Callers bound the wait with asyncio.timeout."""
        async with self._changed:
            while True:
                job = await self._reload(job_id)
                if job.state in states:
                    return job
                await self._changed.wait()

    async def _reload(self, job_id: int) -> Job:
        job = await self.storage.jobs.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id} vanished")
        return job

    def _fal_failure_text(self, error: FalError) -> str:
        kind = getattr(error, "error_type", None) or type(error).__name__
        self.metrics.fal_errors.labels(type=str(kind)).inc()
        if isinstance(error, FalValidationError):
            return f"fal rejected the request: {error.describe()}. You were not charged."
        if isinstance(error, FalAuthError | FalAccountLocked):
            return (
                "The bot's fal.ai account can't run jobs right now; an admin has to check it. "
                "You were not charged."
            )
        if isinstance(error, FalRequestFailed):
            return (
                f"fal had an infrastructure problem ({error.error_type}). "
                "You were not charged; please try again."
            )
        return f"fal is unavailable right now ({error}). You were not charged; try again soon."


def next_month(moment: datetime) -> datetime:
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def _fields(delivery: Delivery) -> dict[str, Any]:
    return {name: getattr(delivery, name) for name in Delivery.__dataclass_fields__}


def _remove_files(folder: Path) -> None:
    if folder.exists():
        for path in folder.iterdir():
            path.unlink(missing_ok=True)
        folder.rmdir()
