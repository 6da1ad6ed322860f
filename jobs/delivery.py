"""Posting a completed job: the safety policy applied, files fitted to the upload limit, the
result message posted exactly once (docs/architecture.md, "The job lifecycle")."""

from __future__ import annotations

import dataclasses
import logging

from jobs.context import JobContext
from jobs.encode import fit_to_limit
from jobs.outputs import Outputs
from jobs.policy import nsfw_action
from jobs.publisher import (
    Delivery,
    DeliveryError,
    DeliveryForbidden,
    DeliveryTooLarge,
    ResultImage,
)
from jobs.records import EditJob
from jobs.status import StatusBoard
from jobs.transitions import Transitions
from storage.models import JobState

log = logging.getLogger(__name__)


class Deliverer:
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

    async def deliver(self, job: EditJob) -> EditJob:
        ctx, request = self._ctx, job.request
        if request.sweep is not None:
            return job  # a sweep's cell is posted on the sweep's sheet (jobs/sheets.py)
        settings = await ctx.storage.settings.effective(job.guild_id, job.channel_id)
        channel_nsfw = not request.safety_checker  # only off in an allowed NSFW channel
        action = nsfw_action(settings.nsfw_policy, channel_nsfw)
        images: list[ResultImage] = []
        blocked = 0
        for index, (meta, data) in enumerate(await self._outputs.load(job)):
            if meta.nsfw and action == "block":
                blocked += 1
                continue
            images.append(
                ResultImage(
                    data=data,
                    filename=f"edit-{job.id}-{index + 1}.{meta.extension}",
                    content_type=meta.content_type,
                    width=meta.width,
                    height=meta.height,
                    spoiler=meta.nsfw and action == "spoiler",
                )
            )
        if not images:
            await self._status.fail(
                job.id,
                "The safety checker flagged the result and this channel doesn't allow it. "
                "You were not charged.",
            )
            return await self._transitions.reload(job.id)
        images, reencoded = fit_to_limit(images, request.upload_limit)
        finished = job.completed_at or ctx.now()
        delivery = Delivery(
            request=request,
            images=images,
            seed=job.result.seed if job.result and job.result.seed is not None else request.seed,
            seconds=(finished - job.created_at).total_seconds(),
            cost_usd=job.cost_usd,
            blocked=blocked,
            reencoded=reencoded,
            parent_result=await self._parent_result(job),
        )
        try:
            try:
                message_id = await ctx.publisher.deliver(job, delivery)
            except DeliveryTooLarge:
                smaller, _ = fit_to_limit(images, request.upload_limit // 2)
                delivery = dataclasses.replace(delivery, images=smaller, reencoded=True)
                message_id = await ctx.publisher.deliver(job, delivery)
        except DeliveryForbidden as error:
            # The status message still says "Posting…": say why it stopped, there and privately.
            await self._status.fail(job.id, f"{error} Your edit was not charged.")
            await ctx.publisher.notify(job, f"{error} Your edit was not charged.")
            return await self._transitions.reload(job.id)
        except DeliveryError as error:
            await self._status.fail(job.id, f"{error} You were not charged.")
            return await self._transitions.reload(job.id)
        job = await self._transitions.move(
            job.id, JobState.DELIVERED, expect={JobState.COMPLETED}, result_message_id=message_id
        )
        log.info("job %s delivered message=%s", job.id, message_id)
        if job.lora_ids:  # a LoRA's "uses" counts results members actually got
            await ctx.storage.loras.increment_uses(job.lora_ids)
        await ctx.publisher.decorate(job)
        await self._status.show(job.id, self._status.update(job, "delivered"))
        await self._outputs.remove(job.id)
        return job

    async def _parent_result(self, job: EditJob) -> tuple[int, int] | None:
        if job.parent_job_id is None:
            return None
        parent = await self._ctx.storage.jobs.get(job.parent_job_id)
        if parent is None or parent.result_message_id is None:
            return None
        return parent.channel_id, parent.result_message_id
