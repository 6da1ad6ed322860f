"""Admission: the checks in the order that spends nothing on a request that fails, then the
atomic reservation of quota and budget with the job row (docs/architecture.md, "Data flow")."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import NoReturn

from client.pricing import estimate_cost_usd
from jobs.context import JobContext
from jobs.errors import Refused
from jobs.inputs import InputFile, Inputs, draft_refs
from jobs.policy import Requester, check_channel, quota_limits, safety_checker_on
from jobs.presets import Presets
from jobs.publisher import DeliveryError
from jobs.records import EditJob, JobRequest, as_edit
from jobs.refusals import describe_refusal, next_month
from jobs.registry import Registry
from jobs.request import EditOptions, EditRequest, InputRef, RecipeLora, build_request
from jobs.runner import Runner
from jobs.status import StatusBoard
from storage.models import EffectiveSettings, NewJob, QuotaLimits, Refusal

log = logging.getLogger(__name__)


def price(request: EditRequest) -> float:
    return estimate_cost_usd(len(request.inputs), request.width, request.height, request.count)


@dataclass(frozen=True, slots=True)
class Started:
    """An admitted job and what the member is told about it."""

    job: EditJob
    request: EditRequest


class Admission:
    def __init__(
        self,
        ctx: JobContext,
        inputs: Inputs,
        registry: Registry,
        runner: Runner,
        status: StatusBoard,
        presets: Presets | None = None,
    ) -> None:
        self._ctx = ctx
        self._inputs = inputs
        self._registry = registry
        self._runner = runner
        self._status = status
        self._presets = presets

    async def start_edit(
        self,
        who: Requester,
        options: EditOptions,
        files: Sequence[InputFile],
        *,
        parent_job_id: int | None = None,
    ) -> Started:
        """/edit and the message menu: cheap checks first, so nothing is downloaded or
        uploaded for a request that fails them; then inputs, recipe, admission."""
        self.check_postable(who)
        settings = await self.check_allowed(who)
        if options.preset and self._presets is not None:
            options = await self._presets.fill(who, options, max_steps=settings.max_steps)
        loras = await self._registry.resolve(who, [(p.name, p.scale) for p in options.loras])
        infos = await self._inputs.inspect(files)
        draft = await self.build(who, options, draft_refs(infos), loras=loras, settings=settings)
        # The whole request, priced, against quota and budget before anything goes to fal.
        await self.check_fits(who, draft, settings)
        request = draft.model_copy(update={"inputs": await self._inputs.rehost(infos)})
        job = await self.admit(who, request, parent_job_id=parent_job_id, settings=settings)
        return Started(job=job, request=request)

    @staticmethod
    def check_postable(who: Requester) -> None:
        """The bot can post results where the member asks, or nothing is started."""
        if who.bot_missing:
            raise Refused(
                "I can't post results in this channel: I need "
                + ", ".join(who.bot_missing)
                + " here. Ask an admin, or use another channel."
            )

    async def check_fits(
        self, who: Requester, request: EditRequest, settings: EffectiveSettings
    ) -> None:
        """Refuse now what admit() would refuse: this request's images and cost."""
        limits = quota_limits(settings.guild, who)
        refusal = await self._ctx.storage.quotas.would_refuse(
            who.guild_id,
            who.user_id,
            images=request.count,
            cost_usd=price(request),
            limits=limits,
            now=self._ctx.now(),
        )
        if refusal is not None:
            self._refuse(who, refusal, request.count, limits)

    async def check_allowed(self, who: Requester) -> EffectiveSettings:
        """Channel rules and the member's quota, before anything is downloaded or uploaded.
        Returns the settings read, for build() and admit() in the same request."""
        settings = await self._ctx.storage.settings.effective(who.guild_id, who.rules_channel_id)
        check_channel(settings)
        limits = quota_limits(settings.guild, who)
        refusal = await self._precheck(who, limits)
        if refusal is not None:
            self._refuse(who, refusal, 1, limits)
        return settings

    def _refuse(
        self,
        who: Requester,
        refusal: Refusal,
        images: int,
        limits: QuotaLimits,
        *,
        what: str = "edit",
    ) -> NoReturn:
        """Count the refusal, tell budget alerts when the budget was the reason, and raise.
        `what` names the request in the member's words: "edit", or "sweep" for a group."""
        self._ctx.metrics.refusals.labels(reason=refusal.kind).inc()
        # A request dearer than the whole budget says nothing about what is left of it.
        if refusal.kind == "budget" and refusal.next_free_at is not None:
            self._ctx.notices.spend_changed(who.guild_id, refused=refusal.requested > 0)
        raise Refused(*describe_refusal(refusal, images, limits, what=what))

    refuse = _refuse  # for a group admitted elsewhere (jobs/sweeps.py)

    async def _precheck(self, who: Requester, limits: QuotaLimits) -> Refusal | None:
        """A non-binding look at the limits; admit() checks again atomically. Same order as
        admit(): the budget (the longest wait) first."""
        now = self._ctx.now()
        quotas = self._ctx.storage.quotas
        budget = limits.monthly_budget_usd
        if budget:
            spent = await quotas.guild_spend(who.guild_id, now=now)
            if spent >= budget:
                return Refusal(
                    kind="budget",
                    used=spent,
                    limit=budget,
                    requested=0,
                    next_free_at=next_month(now),
                )
        usage = await quotas.usage(who.guild_id, who.user_id, limits.window_seconds, now=now)
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

    async def build(
        self,
        who: Requester,
        options: EditOptions,
        inputs: list[InputRef],
        *,
        loras: list[RecipeLora] | None = None,
        settings: EffectiveSettings | None = None,
    ) -> EditRequest:
        settings = settings or await self._ctx.storage.settings.effective(
            who.guild_id, who.rules_channel_id
        )
        check_channel(settings)
        if loras is None:
            loras = await self._registry.resolve(who, [(p.name, p.scale) for p in options.loras])
        return build_request(
            options,
            inputs=inputs,
            loras=loras,
            seed=options.seed if options.seed is not None else self._ctx.new_seed(),
            safety_checker=safety_checker_on(settings.nsfw_policy, who.channel_nsfw),
            upload_limit=who.upload_limit,
            max_images=settings.max_images_per_job,
            max_steps=settings.max_steps,
        )

    async def admit(
        self,
        who: Requester,
        request: EditRequest,
        *,
        parent_job_id: int | None = None,
        request_message_id: int | None = None,
        settings: EffectiveSettings | None = None,
        server_pays: bool = False,
    ) -> EditJob:
        """Reserve quota and write the job atomically, show its status, start driving it.
        `server_pays`: a training's sample edit, paid by the server's budget (room for it was
        kept when the training was confirmed), not by the member's quota."""
        ctx = self._ctx
        settings = settings or await ctx.storage.settings.effective(
            who.guild_id, who.rules_channel_id
        )
        check_channel(settings)
        limits = quota_limits(settings.guild, who)
        if server_pays:
            limits = QuotaLimits(images_per_window=None, window_seconds=limits.window_seconds)
        now = ctx.now()
        cost = price(request)
        outcome = await ctx.storage.jobs.admit(
            NewJob[JobRequest](
                guild_id=who.guild_id,
                channel_id=who.channel_id,
                user_id=who.user_id,
                request=request,
                fal_input=request.to_fal_input().model_dump(mode="json", exclude_none=True),
                images=request.count,
                cost_usd=cost,
                parent_job_id=parent_job_id,
                request_message_id=request_message_id,
                deadline_at=now + timedelta(seconds=ctx.config.job_timeout),
                seed=request.seed,
                lora_ids=[lora.id for lora in request.loras],
            ),
            limits,
            now=now,
            quota_images=0 if server_pays else None,
        )
        if isinstance(outcome, Refusal):
            self._refuse(who, outcome, request.count, limits)
        job = as_edit(outcome)
        ctx.notices.spend_changed(job.guild_id)
        ctx.metrics.transitions.labels(state="admitted").inc()
        ctx.metrics.in_flight.inc()
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
        self._runner.spawn(job.id)
        try:
            await self._status.show(job.id, self._status.update(job, "admitted"), raise_errors=True)
        except DeliveryError as error:
            await self._runner.abandon(job.id)
            raise Refused(f"{error} You were not charged.") from None
        stored = await self._ctx.storage.jobs.get(job.id)
        return job if stored is None else as_edit(stored)
