"""Posting a completed job: the safety policy applied, files fitted to the upload limit, the
result message posted exactly once (docs/architecture.md, "The job lifecycle"). A training's
delivery (register the LoRA, start its sample) is handed to the training room; a sample edit
is posted as one picture, before | result | expected."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable

from client.errors import FalError
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
from jobs.records import AnyJob, EditJob, TrainingJob, as_edit, is_training
from jobs.sample_image import compose
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
        self._trained: Callable[[TrainingJob], Awaitable[AnyJob]] | None = None

    def on_trainings(self, deliver: Callable[[TrainingJob], Awaitable[AnyJob]]) -> None:
        """Who delivers a finished training (the training room, built after the runner)."""
        self._trained = deliver

    async def deliver(self, job: AnyJob) -> AnyJob:
        if is_training(job):
            if self._trained is None:
                raise RuntimeError("no one delivers trainings")
            return await self._trained(job)
        return await self._deliver_edit(as_edit(job))

    async def _deliver_edit(self, job: EditJob) -> AnyJob:
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
        if request.expected is not None:
            images = [await self._sample_sheet(job, images[0])]
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
        delivered = await self._transitions.move(
            job.id, JobState.DELIVERED, expect={JobState.COMPLETED}, result_message_id=message_id
        )
        log.info("job %s delivered message=%s", job.id, message_id)
        if job.lora_ids:  # a LoRA's "uses" counts results members actually got
            await ctx.storage.loras.increment_uses(job.lora_ids)
        await ctx.publisher.decorate(delivered)
        await self._status.show(job.id, self._status.update(delivered, "delivered"))
        await self._outputs.remove(job.id)
        return delivered

    async def _sample_sheet(self, job: EditJob, result: ResultImage) -> ResultImage:
        """A training's sample: the pair's start image, the result and the pair's end image
        as one labelled picture."""
        request, fal = job.request, self._ctx.fal
        assert request.expected is not None
        limit = self._ctx.config.max_input_bytes
        try:
            before = await fal.download(request.inputs[0].url, max_bytes=limit)
            expected = await fal.download(request.expected.url, max_bytes=limit)
        except FalError:  # the pair's images are gone from fal: the result alone still helps
            log.warning("job %s: the sample's pair images can't be fetched", job.id, exc_info=True)
            return result
        sheet, width, height = await asyncio.to_thread(compose, before, result.data, expected)
        return dataclasses.replace(
            result,
            data=sheet,
            filename=f"sample-{job.id}.png",
            content_type="image/png",
            width=width,
            height=height,
        )

    async def _parent_result(self, job: EditJob) -> tuple[int, int] | None:
        if job.parent_job_id is None:
            return None
        parent = await self._ctx.storage.jobs.get(job.parent_job_id)
        if parent is None or parent.result_message_id is None:
            return None
        return parent.channel_id, parent.result_message_id
