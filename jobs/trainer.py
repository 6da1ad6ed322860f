"""Training an edit LoRA from pairs: everything checked and priced before anything is spent,
a proposal a manager confirms (kept in the database, so a restart does not lose it), then one
job on the shared lifecycle, paid by the server's budget alone (docs/fal-trainer.md)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel

from client.errors import FalError
from jobs.context import JobContext
from jobs.draft_pairs import DraftPairs, check_instruction
from jobs.errors import BadRequest, NotFound, Refused
from jobs.fal_failures import fal_failure_text
from jobs.inputs import InputFile, Inputs, draft_refs
from jobs.loras import check_description, check_name
from jobs.pairs import (
    CheckedPair,
    RawPair,
    ZipLimits,
    check_captions,
    inspect_pairs,
    read_zip,
    write_zip,
)
from jobs.policy import Requester, safety_checker_on
from jobs.publisher import DeliveryError
from jobs.records import AnyJob, JobRequest
from jobs.request import MAX_IMAGES_IN
from jobs.runner import Runner
from jobs.server_policy import ServerPolicy
from jobs.status import StatusBoard
from jobs.text import When, Words
from jobs.training import (
    DEFAULT_LEARNING_RATE,
    DEFAULT_STEPS,
    LEARNING_RATE_RANGE,
    STEPS_RANGE,
    SamplePlan,
    TrainingRequest,
    sample_cost_usd,
    training_cost_usd,
)
from storage.models import NewJob, QuotaLimits, Refusal

log = logging.getLogger(__name__)

PROPOSAL_TTL = timedelta(hours=24)
MANAGER_DESCRIPTION_MAX = 200  # the rest of the LoRA's description says how it was trained
_KEY = "training:proposal:"
Checked = tuple[list[CheckedPair], list[str]]


@dataclass(frozen=True, slots=True)
class TrainOptions:
    steps: int | None = None
    learning_rate: float | None = None
    caption: str | None = None
    description: str | None = None
    nsfw: bool = False
    replace: bool = False


class Proposal(BaseModel):
    """A checked, priced training waiting for a manager's Confirm."""

    key: str
    guild_id: int
    user_id: int
    created_at: datetime
    request: TrainingRequest
    replaces: bool = False  # a LoRA of that name exists and will be retrained
    spent_usd: float = 0.0  # the server's month so far, when proposed
    budget_usd: float = 0.0  # 0: no cap


def budget_words(refusal: Refusal, estimate: float) -> Words:
    """A training the budget can't take, in a manager's words."""
    if refusal.used < refusal.limit:
        text = (
            f"This training (about ${estimate:.2f} with its sample) would take the server past "
            f"its ${refusal.limit:.2f} monthly budget (${refusal.used:.2f} spent so far)"
        )
    else:
        text = f"This server has spent ${refusal.used:.2f} of its ${refusal.limit:.2f} budget"
    fix = ". Nothing was charged. Raise it with `/admin budget set`, or train with fewer steps."
    if refusal.next_free_at is not None:
        return (text + "; it resets ", When(refusal.next_free_at, "D"), fix)
    return (text + fix,)


class Trainer:
    def __init__(
        self,
        ctx: JobContext,
        inputs: Inputs,
        policy: ServerPolicy,
        drafts: DraftPairs,
        runner: Runner,
        status: StatusBoard,
    ) -> None:
        self._ctx = ctx
        self._inputs = inputs
        self._policy = policy
        self._drafts = drafts
        self._runner = runner
        self._status = status
        config = ctx.config
        self.limits = ZipLimits(
            max_image_bytes=config.max_input_bytes, max_pixels=config.max_input_pixels
        )

    # ------------------------------------------------------------------ proposals

    async def propose_zip(
        self, who: Requester, name: str, file: InputFile, options: TrainOptions
    ) -> Proposal:
        """/admin lora train with a zip: read, check, price; nothing is spent yet."""

        async def load() -> Checked:
            if file.size > self.limits.max_zip_bytes:
                raise BadRequest(
                    f"The zip is {file.size / 2**20:.0f} MB; the limit is "
                    f"{self.limits.max_zip_bytes // 2**20} MB."
                )
            try:
                data = await file.read()
            except Exception:
                log.warning("could not download the pairs zip", exc_info=True)
                raise BadRequest(
                    "I couldn't download the zip from Discord. Attach it again."
                ) from None
            raw = await asyncio.to_thread(read_zip, data, file.filename, self.limits)
            return await self._inspect(raw)

        return await self._propose(who, name, options, "zip", load)

    async def propose_draft(self, who: Requester, name: str, options: TrainOptions) -> Proposal:
        """/admin lora train without a zip: the server's draft set of pairs."""

        async def load() -> Checked:
            return await self._inspect(await self._drafts.raw_pairs(who))

        return await self._propose(who, name, options, "draft", load)

    async def _inspect(self, raw: list[RawPair]) -> Checked:
        return await asyncio.to_thread(inspect_pairs, raw, self.limits)

    async def _propose(
        self,
        who: Requester,
        name: str,
        options: TrainOptions,
        source: Literal["zip", "draft"],
        load: Callable[[], Awaitable[Checked]],
    ) -> Proposal:
        """The order spends nothing on a refusal: who and what first, then the pairs, the
        price against the budget, and only then the uploads (free) to fal storage."""
        ctx = self._ctx
        await self._policy.require_manager(who)
        name, replaces = await self._check_name(who, name, options.replace)
        steps, rate = self._check_numbers(options)
        caption = check_instruction(options.caption, "The caption")
        description = check_description(options.description)
        if len(description) > MANAGER_DESCRIPTION_MAX:
            raise BadRequest(
                f"The description is {len(description)} characters; a trained LoRA's may have "
                f"{MANAGER_DESCRIPTION_MAX} (the rest says how it was trained)."
            )
        pairs, warnings = await load()
        check_captions(pairs, caption)
        inputs_per_pair = max(len(pair.starts) for pair in pairs)
        sample = pairs[0]
        sample_inputs = sample.starts[:MAX_IMAGES_IN]
        training_cost = training_cost_usd(
            steps, inputs_per_pair, ctx.config.training_price_per_step
        )
        sample_cost = sample_cost_usd(draft_refs(sample_inputs))
        settings = await ctx.storage.settings.effective(who.guild_id, who.rules_channel_id)
        budget = settings.guild.monthly_budget_usd
        estimate = round(training_cost + sample_cost, 6)
        refusal = await ctx.storage.quotas.would_refuse(
            who.guild_id,
            who.user_id,
            images=0,
            cost_usd=estimate,
            limits=_budget_only(budget),
            now=ctx.now(),
        )
        if refusal is not None:
            self._budget_refused(who.guild_id, refusal)
            raise Refused(*budget_words(refusal, estimate))
        try:
            zipped = await asyncio.to_thread(write_zip, pairs)
            zip_url = await ctx.fal.upload(zipped, "application/zip", f"{name}-pairs.zip")
        except FalError as error:
            ctx.notices.fal_failed(error)
            raise Refused(fal_failure_text(error, ctx.metrics)) from None
        refs = await self._inputs.rehost([*sample_inputs, sample.end])
        request = TrainingRequest(
            name=name,
            source=source,
            zip_url=zip_url,
            pairs=len(pairs),
            inputs_per_pair=inputs_per_pair,
            steps=steps,
            learning_rate=rate,
            caption=caption,
            description=description or None,
            nsfw=options.nsfw,
            replace=options.replace,
            training_cost_usd=training_cost,
            sample_cost_usd=sample_cost,
            sample=SamplePlan(
                inputs=refs[:-1], expected=refs[-1], prompt=sample.caption or caption or ""
            ),
            safety_checker=safety_checker_on(settings.nsfw_policy, who.channel_nsfw),
            upload_limit=who.upload_limit,
            warnings=warnings,
        )
        proposal = Proposal(
            key=secrets.token_hex(8),
            guild_id=who.guild_id,
            user_id=who.user_id,
            created_at=ctx.now(),
            request=request,
            replaces=replaces,
            spent_usd=await ctx.storage.quotas.guild_spend(who.guild_id, now=ctx.now()),
            budget_usd=budget,
        )
        await ctx.storage.settings.set_meta(_KEY + proposal.key, proposal.model_dump_json())
        log.info(
            "guild %s: training %r proposed by %s (%d pairs, %d steps, $%.4f)",
            who.guild_id,
            name,
            who.user_id,
            len(pairs),
            steps,
            estimate,
        )
        return proposal

    def _budget_refused(self, guild_id: int, refusal: Refusal) -> None:
        """Budget alerts hear of it, as of an edit the budget refused."""
        self._ctx.metrics.refusals.labels(reason=refusal.kind).inc()
        if refusal.next_free_at is not None:
            self._ctx.notices.spend_changed(guild_id, refused=refusal.requested > 0)

    async def _check_name(self, who: Requester, name: str, replace: bool) -> tuple[str, bool]:
        name = check_name(name)
        loras = self._ctx.storage.loras
        existing = await loras.get(who.guild_id, name)
        if existing is not None and not replace:
            raise BadRequest(
                f"A LoRA named `{existing.name}` already exists here. Pick another name, or "
                "retrain it with `replace:True` (its history is kept)."
            )
        if existing is None:
            limit = self._ctx.config.max_loras_per_server
            if await loras.count(who.guild_id, include_disabled=True, include_nsfw=True) >= limit:
                raise BadRequest(
                    f"This server already has {limit} LoRAs, the most allowed; remove one first."
                )
        return name, existing is not None

    @staticmethod
    def _check_numbers(options: TrainOptions) -> tuple[int, float]:
        steps = DEFAULT_STEPS if options.steps is None else options.steps
        low, high = STEPS_RANGE
        if not low <= steps <= high:
            raise BadRequest(f"steps must be between {low:,} and {high:,}; you gave {steps:,}.")
        rate = DEFAULT_LEARNING_RATE if options.learning_rate is None else options.learning_rate
        low_rate, high_rate = LEARNING_RATE_RANGE
        if not low_rate <= rate <= high_rate:
            raise BadRequest(
                f"learning_rate must be between {low_rate:g} and {high_rate:g}; you gave {rate:g}."
            )
        return steps, rate

    # ------------------------------------------------------------------ confirm or discard

    async def _take(self, who: Requester, key: str) -> Proposal:
        raw = await self._ctx.storage.settings.take_meta(_KEY + key)
        proposal = None if raw is None else Proposal.model_validate_json(raw)
        if proposal is None or proposal.guild_id != who.guild_id:
            raise NotFound(
                "This training was already confirmed or cancelled. Run `/admin lora train` "
                "again to start another."
            )
        return proposal

    async def _put_back(self, proposal: Proposal) -> None:
        await self._ctx.storage.settings.set_meta(_KEY + proposal.key, proposal.model_dump_json())

    async def discard(self, who: Requester, key: str) -> TrainingRequest:
        await self._policy.require_manager(who)
        return (await self._take(who, key)).request

    async def confirm(self, who: Requester, key: str) -> AnyJob:
        """Start the proposed training: its cost reserved against the budget (room kept for
        its sample), the job admitted, submitted and shown. Once, however often pressed."""
        await self._policy.require_manager(who)
        proposal = await self._take(who, key)  # from here no other press can start it
        if self._ctx.now() - proposal.created_at > PROPOSAL_TTL:
            raise NotFound("This proposal is more than a day old. Run `/admin lora train` again.")
        try:
            await self._check_name(who, proposal.request.name, proposal.request.replace)
            return await self._admit(who, proposal.request)
        except Refused:
            await self._put_back(proposal)  # the budget may change; the proposal still holds
            raise

    async def _admit(self, who: Requester, request: TrainingRequest) -> AnyJob:
        ctx = self._ctx
        now = ctx.now()
        budget = (await ctx.storage.settings.get(who.guild_id)).monthly_budget_usd
        # The whole estimate against the budget, for the words; then the binding check,
        # which keeps room for the sample edit (it runs unchecked later).
        refusal = await ctx.storage.quotas.would_refuse(
            who.guild_id,
            who.user_id,
            images=0,
            cost_usd=request.estimate_usd,
            limits=_budget_only(budget),
            now=now,
        )
        if refusal is not None:
            self._budget_refused(who.guild_id, refusal)
            raise Refused(*budget_words(refusal, request.estimate_usd))
        limits = _budget_only(budget, keep=request.sample_cost_usd)
        outcome = await ctx.storage.jobs.admit(
            NewJob[JobRequest](
                guild_id=who.guild_id,
                channel_id=who.channel_id,
                user_id=who.user_id,
                request=request,
                fal_input=request.to_fal_input().model_dump(mode="json", exclude_none=True),
                images=1,  # the LoRA; members' quotas are not touched (quota_images=0)
                cost_usd=request.training_cost_usd,
                deadline_at=now + timedelta(seconds=ctx.config.training_timeout),
            ),
            limits,
            now=now,
            quota_images=0,
        )
        if isinstance(outcome, Refusal):
            self._budget_refused(who.guild_id, outcome)
            raise Refused(*budget_words(outcome, request.estimate_usd))
        job = outcome
        ctx.notices.spend_changed(job.guild_id)
        ctx.metrics.transitions.labels(state="admitted").inc()
        ctx.metrics.in_flight.inc()
        log.info(
            "job %s admitted: training %r guild=%s by=%s cost=%.4f",
            job.id,
            request.name,
            job.guild_id,
            job.user_id,
            job.cost_usd,
        )
        self._runner.spawn(job.id)
        try:
            await self._status.show(job.id, self._status.update(job, "admitted"), raise_errors=True)
        except DeliveryError as error:
            await self._runner.abandon(job.id)
            raise Refused(f"{error} Nothing was charged.") from None
        return await self._ctx.storage.jobs.get(job.id) or job


def _budget_only(budget: float, *, keep: float = 0.0) -> QuotaLimits:
    """Limits that hold a server-paid job to the month's budget alone (less `keep`)."""
    cap = None if not budget else max(0.000001, budget - keep)
    return QuotaLimits(
        images_per_window=None, window_seconds=3600, max_in_flight=None, monthly_budget_usd=cap
    )
