"""Starting a sweep, and working from its cells.

A sweep is N ordinary jobs of one image each (one seed, the LoRAs differing per cell), priced
and charged as N images and admitted as one group: all or none within the member's quota and
the server's budget (storage checks the group's totals and writes every job in one
transaction). Each cell then runs the usual lifecycle; `jobs/sheets.py` posts the sheet.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from client.errors import FalError
from client.pricing import estimate_cost_usd
from jobs.admission import Admission
from jobs.context import JobContext
from jobs.encode import fit_to_limit
from jobs.errors import BadRequest, NotFound, Refused
from jobs.fal_failures import fal_failure_text
from jobs.inputs import InputFile, Inputs, draft_refs
from jobs.outputs import MAX_RESULT_BYTES
from jobs.policy import Requester, quota_limits
from jobs.publisher import DeliveryError, ResultImage
from jobs.records import EditJob, as_edit
from jobs.registry import Registry
from jobs.request import MAX_LORAS, EditOptions, EditRequest, InputRef, LoraPick, RecipeLora
from jobs.request import SweepCell as CellTag
from jobs.reruns import Reruns
from jobs.runner import Runner
from jobs.sheets import Sheets
from jobs.sweep_plan import (
    SweepRecipe,
    SweepSpec,
    check_spec,
    plan_combinations,
    plan_scales,
)
from storage.models import EffectiveSettings, NewJob, Refusal
from storage.sweeps import NewSweep, Sweep, SweepCell

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Plan:
    """A sweep's cells, before admission: one request per cell, and the recipe they share."""

    recipe: SweepRecipe
    requests: list[EditRequest]
    cell_cost: float

    def with_inputs(self, inputs: list[InputRef]) -> Plan:
        """The same plan once its inputs are re-hosted (it was checked and priced before)."""
        requests = [request.model_copy(update={"inputs": inputs}) for request in self.requests]
        recipe = self.recipe.model_copy(update={"request": requests[0]})
        return Plan(recipe, requests, self.cell_cost)


@dataclass(frozen=True, slots=True)
class StartedSweep:
    sweep: Sweep
    jobs: list[EditJob]
    recipe: SweepRecipe


class Sweeps:
    def __init__(
        self,
        ctx: JobContext,
        admission: Admission,
        inputs: Inputs,
        registry: Registry,
        reruns: Reruns,
        runner: Runner,
        sheets: Sheets,
    ) -> None:
        self._ctx = ctx
        self._admission = admission
        self._inputs = inputs
        self._registry = registry
        self._reruns = reruns
        self._runner = runner
        self._sheets = sheets

    # ------------------------------------------------------------------ starting

    async def start(
        self,
        who: Requester,
        spec: SweepSpec,
        prompt: str,
        files: Sequence[InputFile],
        picks: Sequence[LoraPick],
        *,
        seed: int | None = None,
    ) -> StartedSweep:
        """/sweep: the first LoRA picked is swept (or the picks are combined). Cheap checks
        first, so nothing is downloaded or uploaded for a sweep that fails them."""
        self._admission.check_postable(who)
        spec = check_spec(spec)
        settings = await self._admission.check_allowed(who)
        loras = await self._registry.resolve(who, [(p.name, p.scale) for p in picks])
        if not loras:
            raise BadRequest("Name the LoRA to sweep.")
        options = EditOptions(
            prompt=prompt, seed=self._ctx.new_seed() if seed is None else seed, count=1
        )
        infos = await self._inputs.inspect(files)
        plan = await self._plan(who, spec, options, draft_refs(infos), loras, 0, settings)
        # The whole group, priced, against quota and budget before anything is uploaded.
        await self._check_fits(who, plan, settings)
        hosted = await self._inputs.rehost(infos)
        return await self._admit(who, plan.with_inputs(hosted), settings, None)

    async def start_from_result(self, who: Requester, job_id: int, spec: SweepSpec) -> StartedSweep:
        """The Sweep button: the result's inputs, seed and other LoRAs; the swept LoRA is the
        one named (the result's first by default; another is added to the stack)."""
        self._admission.check_postable(who)
        spec = check_spec(spec)
        parent = await self._reruns.check_rerun(who, job_id)
        settings = await self._admission.check_allowed(who)
        seed = parent.result.seed if parent.result and parent.result.seed is not None else None
        options, inputs, loras = await self._reruns.recipe_of(
            who, parent, seed=parent.request.seed if seed is None else seed
        )
        options = options.model_copy(update={"count": 1})
        swept = 0
        if spec.mode == "scale":
            name = (spec.lora or "").strip() or (loras[0].name if loras else "")
            if not name:
                raise BadRequest("This edit used no LoRA: name the LoRA to sweep.")
            found = [i for i, lora in enumerate(loras) if lora.name.lower() == name.lower()]
            if found:
                swept = found[0]
            else:
                if len(loras) >= MAX_LORAS:
                    names = ", ".join(f"`{lora.name}`" for lora in loras)
                    raise BadRequest(
                        f"This edit already combines {MAX_LORAS} LoRAs; sweep one of them "
                        f"({names})."
                    )
                loras = [*loras, *await self._registry.resolve(who, [(name, None)])]
                swept = len(loras) - 1
        plan = await self._plan(who, spec, options, inputs, loras, swept, settings)
        return await self._admit(who, plan, settings, parent.id)

    async def _plan(
        self,
        who: Requester,
        spec: SweepSpec,
        options: EditOptions,
        inputs: list[InputRef],
        loras: list[RecipeLora],
        swept: int,
        settings: EffectiveSettings,
    ) -> Plan:
        """Every cell's request, checked like an edit's, and the recipe they share."""
        if spec.mode == "combinations":
            planned = plan_combinations(loras)
        else:
            planned = plan_scales(loras, swept, spec)
        requests: list[EditRequest] = []
        for index, cell in enumerate(planned):
            request = await self._admission.build(
                who, options, inputs, loras=cell.loras, settings=settings
            )
            tag = CellTag(cell=index, label=cell.label)
            requests.append(request.model_copy(update={"sweep": tag}))
        first = requests[0]
        cost = estimate_cost_usd(len(inputs), first.width, first.height, 1)
        recipe = SweepRecipe(
            mode=spec.mode,
            lora=loras[swept].name if spec.mode == "scale" else None,
            start=spec.start if spec.mode == "scale" else None,
            stop=spec.stop if spec.mode == "scale" else None,
            labels=[cell.label for cell in planned],
            request=first,
            cost_usd=round(cost * len(requests), 6),
            combined=[lora.name for lora in loras] if spec.mode == "combinations" else [],
        )
        return Plan(recipe, requests, cost)

    async def _check_fits(self, who: Requester, plan: Plan, settings: EffectiveSettings) -> None:
        """Refuse now what the group admission would refuse: all its images, all its cost."""
        limits = quota_limits(settings.guild, who)
        refusal = await self._ctx.storage.quotas.would_refuse(
            who.guild_id,
            who.user_id,
            images=len(plan.requests),
            cost_usd=plan.recipe.cost_usd,
            limits=limits,
            now=self._ctx.now(),
        )
        if refusal is not None:
            self._admission.refuse(who, refusal, len(plan.requests), limits, what="sweep")

    async def _admit(
        self, who: Requester, plan: Plan, settings: EffectiveSettings, parent_id: int | None
    ) -> StartedSweep:
        ctx = self._ctx
        recipe, requests, cost = plan.recipe, plan.requests, plan.cell_cost
        now = ctx.now()
        limits = quota_limits(settings.guild, who)
        outcome = await ctx.storage.sweeps.admit(
            NewSweep(
                guild_id=who.guild_id,
                channel_id=who.channel_id,
                user_id=who.user_id,
                recipe=recipe.model_dump(mode="json"),
                labels=recipe.labels,
                parent_job_id=parent_id,
            ),
            [
                NewJob[EditRequest](
                    guild_id=who.guild_id,
                    channel_id=who.channel_id,
                    user_id=who.user_id,
                    request=request,
                    fal_input=request.to_fal_input().model_dump(mode="json", exclude_none=True),
                    images=1,
                    cost_usd=cost,
                    parent_job_id=parent_id,
                    deadline_at=now + timedelta(seconds=ctx.config.job_timeout),
                    seed=request.seed,
                    lora_ids=[lora.id for lora in request.loras],
                )
                for request in requests
            ],
            limits,
            now=now,
        )
        if isinstance(outcome, Refusal):
            self._admission.refuse(who, outcome, len(requests), limits, what="sweep")
        sweep, jobs = outcome
        ctx.notices.spend_changed(who.guild_id)
        ctx.metrics.transitions.labels(state="admitted").inc(len(jobs))
        ctx.metrics.in_flight.inc(len(jobs))
        log.info(
            "sweep %s admitted guild=%s user=%s cells=%s cost=%.4f",
            sweep.id,
            who.guild_id,
            who.user_id,
            len(jobs),
            recipe.cost_usd,
        )
        # The status first: a channel the bot can't post in refunds the group before any cell
        # reaches fal.
        try:
            await self._sheets.show_started(sweep)
        except DeliveryError as error:
            await self._sheets.give_up(sweep.id, f"{error} You were not charged.")
            raise Refused(f"{error} You were not charged.") from None
        for job in jobs:
            self._runner.spawn(job.id)
        current = await ctx.storage.sweeps.get(sweep.id) or sweep
        return StartedSweep(current, [as_edit(job) for job in jobs], recipe)

    # ------------------------------------------------------------------ its cells

    async def cell(self, who: Requester, sweep_id: int, cell: int) -> tuple[Sweep, SweepCell]:
        """A cell of this server's sweep that has an image (other servers' do not exist)."""
        sweep = await self._ctx.storage.sweeps.get(sweep_id)
        if sweep is None or sweep.guild_id != who.guild_id:
            raise NotFound("That sweep doesn't exist on this server.")
        found = next((c for c in sweep.cells if c.cell == cell), None)
        if found is None:
            raise NotFound(f"Sweep #{sweep_id} has no cell {cell + 1}.")
        if found.image is None:
            raise NotFound(f"Cell {cell + 1} ({found.label}) of sweep #{sweep_id} has no image.")
        return sweep, found

    async def cell_file(self, who: Requester, sweep_id: int, cell: int) -> ResultImage:
        """The cell's image at full size (re-encoded only to fit the upload limit)."""
        _, found = await self.cell(who, sweep_id, cell)
        assert found.image is not None
        ref = InputRef.model_validate(found.image)
        try:
            data = await self._ctx.fal.download(ref.url, max_bytes=MAX_RESULT_BYTES)
        except FalError as error:
            raise Refused(fal_failure_text(error, self._ctx.metrics)) from None
        extension = ref.content_type.split("/")[-1].replace("jpeg", "jpg")
        image = ResultImage(
            data=data,
            filename=f"sweep-{sweep_id}-cell-{cell + 1}.{extension}",
            content_type=ref.content_type,
            width=ref.width,
            height=ref.height,
            spoiler=bool(found.image.get("nsfw")),
        )
        fitted, _ = fit_to_limit([image], who.upload_limit)
        return fitted[0]

    async def check_next_input(self, who: Requester, sweep_id: int, cell: int) -> SweepCell:
        """Refuse at the pick, not after the member filled in the prompt."""
        _, found = await self.cell(who, sweep_id, cell)
        await self._reruns.check_before_form(who, found.job_id)
        return found

    async def next_input(self, who: Requester, sweep_id: int, cell: int, prompt: str) -> EditJob:
        """A new edit of the cell's image with the cell's recipe and a new prompt."""
        _, found = await self.cell(who, sweep_id, cell)
        assert found.image is not None
        return await self._reruns.rerun(
            found.job_id, who, prompt=prompt, first_input=InputRef.model_validate(found.image)
        )
