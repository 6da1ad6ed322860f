"""A finished training's delivery: the LoRA enters the server's registry at once, one sample
edit with it starts (paid by the server, like the training), and the training is delivered.
Each step is safe to repeat after a crash: the registry remembers which training made which
LoRA, and the sample is the training's one child job."""

from __future__ import annotations

import logging

from jobs.admission import Admission
from jobs.context import JobContext
from jobs.errors import MemberError
from jobs.loras import TRIGGER_LEN_MAX
from jobs.policy import Requester
from jobs.records import AnyJob, TrainingJob
from jobs.request import EditOptions, RecipeLora, build_request
from jobs.status import StatusBoard
from jobs.training import TrainingRequest
from jobs.transitions import Transitions
from storage.errors import DuplicateName, LoraLimitReached
from storage.models import JobState, Lora, LoraFields

log = logging.getLogger(__name__)


def lora_fields(request: TrainingRequest, path: str, name: str, date: str) -> LoraFields:
    """The registry entry: the weights' URL, scale 1, the caption as trigger (when it is
    short enough to be one), and a description that says how it was trained."""
    trained = f"Trained on {request.pairs} pairs, {request.steps:,} steps, {date}."
    description = f"{request.description} · {trained}" if request.description else trained
    caption = request.caption
    return LoraFields(
        name=name,
        path=path,
        default_scale=1.0,
        trigger_words=[caption] if caption and len(caption) <= TRIGGER_LEN_MAX else [],
        description=description,
        nsfw=request.nsfw,
    )


class TrainedDelivery:
    def __init__(
        self,
        ctx: JobContext,
        transitions: Transitions,
        status: StatusBoard,
        admission: Admission,
    ) -> None:
        self._ctx = ctx
        self._transitions = transitions
        self._status = status
        self._admission = admission

    async def deliver(self, job: TrainingJob) -> AnyJob:
        notes: list[str] = []
        lora = await self._register(job, notes)
        if lora is not None:
            await self._sample(job, lora, notes)
        delivered = await self._transitions.move(
            job.id, JobState.DELIVERED, expect={JobState.COMPLETED}
        )
        log.info("job %s delivered: training %r", job.id, job.request.name)
        await self._status.show(
            job.id, self._status.update(delivered, "delivered", note=" ".join(notes))
        )
        return delivered

    async def _register(self, job: TrainingJob, notes: list[str]) -> Lora | None:
        ctx, request, result = self._ctx, job.request, job.result
        assert result is not None
        date = (job.completed_at or ctx.now()).strftime("%Y-%m-%d")
        recipe = {
            "job_id": job.id,
            "pairs": request.pairs,
            "inputs_per_pair": request.inputs_per_pair,
            "steps": request.steps,
            "learning_rate": request.learning_rate,
            "caption": request.caption,
            "source": request.source,
            "cost_usd": request.training_cost_usd,
            "sample_cost_usd": request.sample_cost_usd,
            "config_url": result.config_url,
            "trained_by": job.user_id,
        }
        trained = {"job": job.id, "pairs": request.pairs, "steps": request.steps}
        name = request.name
        for attempt in range(2):
            try:
                lora, fresh = await ctx.storage.trainings.register(
                    job.guild_id,
                    job.id,
                    lora_fields(request, result.lora_url, name, date),
                    replace=request.replace,
                    recipe=recipe,
                    trained=trained,
                    actor_id=job.user_id,
                    max_per_guild=ctx.config.max_loras_per_server,
                    now=ctx.now(),
                )
            except DuplicateName:
                if attempt:
                    raise
                # Someone took the name while it trained: keep the work under a free one.
                suffix = f"-{job.id}"
                name = request.name[: 32 - len(suffix)] + suffix
                notes.append(f"`{request.name}` was taken meanwhile, so it is called `{name}`.")
                continue
            except LoraLimitReached as error:
                notes.append(
                    f"The registry is full ({error.limit} LoRAs), so I couldn't register it. "
                    f"Its weights: {result.lora_url} (add them with `/admin lora add` once "
                    "there is room)."
                )
                return None
            if lora is None:
                notes.append("Its LoRA was removed since; no sample this time.")
                return None
            verb = "Retrained" if request.replace else "Registered"
            if fresh:
                log.info("training job %s registered LoRA %s", job.id, lora.id)
            notes.insert(0, f"{verb} `{lora.name}`: use it in `/edit` now.")
            return lora
        return None

    async def _sample(self, job: TrainingJob, lora: Lora, notes: list[str]) -> None:
        """One edit with the new LoRA on the first pair's start images, posted beside the
        pair's end image; its cost was part of the training's estimate."""
        ctx, request = self._ctx, job.request
        existing = await ctx.storage.jobs.children(job.id)
        if existing:
            notes.append(f"Sample edit #{existing[0].id} is on its way.")
            return
        plan = request.sample
        who = Requester(
            guild_id=job.guild_id,
            channel_id=job.channel_id,
            user_id=job.user_id,
            channel_nsfw=not request.safety_checker,
            upload_limit=request.upload_limit,
        )
        recipe_lora = RecipeLora(
            id=lora.id,
            name=lora.name,
            path=lora.path,
            scale=lora.default_scale,
            version=lora.version,
            trigger_words=list(lora.trigger_words),
        )
        try:
            edit = build_request(
                EditOptions(prompt=plan.prompt or lora.name),
                inputs=plan.inputs,
                loras=[recipe_lora],
                seed=ctx.new_seed(),
                safety_checker=request.safety_checker,
                upload_limit=request.upload_limit,
            ).model_copy(update={"expected": plan.expected})
            sample = await self._admission.admit(who, edit, parent_job_id=job.id, server_pays=True)
        except MemberError as error:
            log.warning("training job %s: sample edit not started: %s", job.id, error)
            notes.append(f"The sample edit couldn't start: {error}")
            return
        notes.append(f"Sample edit #{sample.id} is on its way.")
