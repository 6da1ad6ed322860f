"""A sweep's one status message and its contact sheet.

Cells run the usual lifecycle but are never posted alone. Each time a cell completes or ends,
its sweep is looked at again (one at a time per sweep); once every cell has, the cells' images
are kept at fal storage (for the sheet's "full size" and "next input" menus), the sheet is drawn
and posted once (deterministic nonce), the sheet's message id is recorded, and only then are the
completed cells delivered (charged). Failed cells are drawn as failed and were refunded. A
restart anywhere in between continues from what is recorded, so the sheet is posted once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Coroutine
from typing import Any

from client.errors import FalError
from jobs.compose import SheetCell, contact_sheet
from jobs.context import JobContext
from jobs.encode import fit_to_limit
from jobs.errors import MemberError
from jobs.inputs import Inputs
from jobs.outputs import Outputs
from jobs.policy import nsfw_action
from jobs.publisher import (
    DeliveryError,
    DeliveryTooLarge,
    ResultImage,
    SheetCellInfo,
    SheetDelivery,
    SweepPhase,
    SweepStatus,
)
from jobs.records import AnyJob, EditJob, StoredImage, as_edit, is_edit
from jobs.sweep_plan import SweepRecipe
from jobs.transitions import Transitions
from storage.models import REFUND_STATES, TERMINAL_STATES, JobState
from storage.sweeps import Sweep, SweepCell

log = logging.getLogger(__name__)

PROGRESS_MIN_INTERVAL = 2.0  # seconds between progress edits of a sweep's status message
ENDED_NOTES = {
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
    JobState.EXPIRED: "timed out",
}


def settled(job: EditJob) -> bool:
    """Nothing more will happen to the cell at fal: completed, or ended."""
    return job.state == JobState.COMPLETED or job.state in TERMINAL_STATES


class BytesFile:
    """A cell's output seen as an input file, to keep it at fal storage like a member's."""

    def __init__(self, label: str, filename: str, data: bytes) -> None:
        self.label = label
        self.filename = filename
        self.size = len(data)
        self._data = data

    async def read(self) -> bytes:
        return self._data


class Sheets:
    def __init__(
        self, ctx: JobContext, transitions: Transitions, outputs: Outputs, inputs: Inputs
    ) -> None:
        self._ctx = ctx
        self._transitions = transitions
        self._outputs = outputs
        self._inputs = inputs
        self._locks: dict[int, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._shown_at: dict[int, float] = {}
        self._closing = False
        transitions.watch(self._on_move)

    # ------------------------------------------------------------------ driving

    def _on_move(self, job: AnyJob) -> None:
        if is_edit(job) and job.request.sweep is not None and settled(job):
            self._spawn(self._settle_cell(job.id))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        if self._closing:
            work.close()
            return
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle_cell(self, job_id: int) -> None:
        sweep_id = await self._ctx.storage.sweeps.of_job(job_id)
        if sweep_id is not None:
            await self.settle(sweep_id)

    async def adopted(self, job_ids: list[int]) -> int:
        """Look again at the sweeps of cells this process has taken over."""
        sweeps = {await self._ctx.storage.sweeps.of_job(job_id) for job_id in job_ids}
        for sweep_id in sweeps - {None}:
            assert sweep_id is not None
            self._spawn(self.settle(sweep_id))
        return len(sweeps - {None})

    async def recover(self) -> int:
        """Look again at every sweep that was not finished when the process stopped."""
        unfinished = await self._ctx.storage.sweeps.unfinished()
        for sweep in unfinished:
            log.info("sweep %s recovered", sweep.id)
            self._spawn(self.settle(sweep.id))
        return len(unfinished)

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        self._closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def settle(self, sweep_id: int) -> None:
        """Whatever is next for the sweep: a progress edit, the sheet, or nothing."""
        lock = self._locks.setdefault(sweep_id, asyncio.Lock())
        async with lock:
            try:
                await self._settle(sweep_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep %s: finishing failed; a restart tries again", sweep_id)

    async def _settle(self, sweep_id: int) -> None:
        storage = self._ctx.storage
        sweep = await storage.sweeps.get(sweep_id)
        if sweep is None or sweep.finished_at is not None:
            return
        jobs = await self._cells(sweep)
        if sweep.sheet_message_id is None:
            if not all(settled(job) for job in jobs):
                await self._progress(sweep, jobs)
                return
            message_id = await self._post(sweep, jobs)
            if message_id is None:
                return
            await storage.sweeps.set_sheet(sweep.id, message_id)
            sweep = await storage.sweeps.get(sweep.id) or sweep
        await self._deliver_cells(await self._cells(sweep))
        await self._show(sweep, "done", await self._cells(sweep))
        await storage.sweeps.finish(sweep.id)
        self._shown_at.pop(sweep.id, None)
        log.info("sweep %s finished: sheet %s", sweep.id, sweep.sheet_message_id)

    async def _cells(self, sweep: Sweep) -> list[EditJob]:
        return [as_edit(await self._transitions.reload(cell.job_id)) for cell in sweep.cells]

    # ------------------------------------------------------------------ the status message

    async def show_started(self, sweep: Sweep) -> None:
        """The first status message, at admission; raises DeliveryError if it can't be posted."""
        async with self._locks.setdefault(sweep.id, asyncio.Lock()):
            await self._show(sweep, "running", await self._cells(sweep), raise_errors=True)

    async def give_up(self, sweep_id: int, why: str) -> None:
        """End a sweep whose cells never ran: every cell refunded, nothing posted."""
        storage = self._ctx.storage
        await storage.sweeps.finish(sweep_id, error=why)
        sweep = await storage.sweeps.get(sweep_id)
        for cell in sweep.cells if sweep else []:
            await self._transitions.finish(cell.job_id, JobState.FAILED, error=why)
            await storage.jobs.mark_announced(cell.job_id)

    async def _progress(self, sweep: Sweep, jobs: list[EditJob]) -> None:
        last = self._shown_at.get(sweep.id, 0.0)
        if time.monotonic() - last < PROGRESS_MIN_INTERVAL:
            return  # the next cell's end, or the sheet, shows it
        await self._show(sweep, "running", jobs)

    async def _show(
        self,
        sweep: Sweep,
        phase: SweepPhase,
        jobs: list[EditJob],
        *,
        note: str | None = None,
        raise_errors: bool = False,
    ) -> None:
        storage = self._ctx.storage
        current = await storage.sweeps.get(sweep.id) or sweep
        update = SweepStatus(
            phase=phase,
            recipe=SweepRecipe.model_validate(current.recipe),
            started_at=current.created_at,
            done=sum(1 for job in jobs if settled(job)),
            failed=sum(1 for job in jobs if job.state in REFUND_STATES),
            note=note,
            sheet_message_id=current.sheet_message_id,
        )
        self._shown_at[sweep.id] = time.monotonic()
        try:
            created = await self._ctx.publisher.show_sweep(current, update)
        except DeliveryError:
            if raise_errors:
                raise
            log.warning("sweep %s: could not update its status message", sweep.id, exc_info=True)
            return
        if created is not None and created != current.status_message_id:
            await storage.sweeps.set_status_message(sweep.id, created)

    # ------------------------------------------------------------------ the sheet

    async def _post(self, sweep: Sweep, jobs: list[EditJob]) -> int | None:
        """Draw and post the sheet; None (every completed cell refunded) if it can't be."""
        ctx = self._ctx
        recipe = SweepRecipe.model_validate(sweep.recipe)
        await self._show(sweep, "posting", jobs)
        settings = await ctx.storage.settings.effective(sweep.guild_id, sweep.channel_id)
        action = nsfw_action(settings.nsfw_policy, not recipe.request.safety_checker)
        cells: list[SheetCell] = []
        infos: list[SheetCellInfo] = []
        spoiler = False
        size = (recipe.request.width, recipe.request.height)
        posted: list[EditJob] = []
        for cell, job in zip(sweep.cells, jobs, strict=True):
            note = ENDED_NOTES.get(job.state)
            data: bytes | None = None
            if job.state == JobState.COMPLETED:
                loaded = await self._load(job)
                if loaded is None:
                    note = "failed"
                    await self._refund(job, "The cell's result was lost before the sheet.")
                else:
                    (meta, data) = loaded
                    size = (meta.width, meta.height)
                    if meta.nsfw and action == "block":
                        note, data = "hidden by the safety checker", None
                        await self._refund(job, "The safety checker flagged this cell.")
                    else:
                        spoiler = spoiler or (meta.nsfw and action == "spoiler")
                        await self._keep(sweep, cell, data, meta.content_type, meta.nsfw)
                        posted.append(job)
            cells.append(SheetCell(cell.label, data, note or "failed"))
            infos.append(SheetCellInfo(cell.cell, cell.label, data is not None, note))
        if not posted:
            why = "Every cell failed, so there is no sheet. You were not charged."
            await self._show(sweep, "failed", await self._cells(sweep), note=why)
            await ctx.storage.sweeps.finish(sweep.id, error="every cell failed")
            await self._mark_announced(sweep)
            return None
        sheet = await asyncio.to_thread(contact_sheet, cells, size)
        image = ResultImage(sheet, f"sweep-{sweep.id}.png", "image/png", *size, spoiler=spoiler)
        fitted, reencoded = fit_to_limit([image], recipe.request.upload_limit)
        delivery = SheetDelivery(
            recipe=recipe,
            image=fitted[0],
            cells=infos,
            cost_usd=round(sum(job.cost_usd for job in posted), 6),
            reencoded=reencoded,
            parent_result=await self._parent_result(sweep),
        )
        try:
            try:
                return await ctx.publisher.post_sheet(sweep, delivery)
            except DeliveryTooLarge:
                smaller, _ = fit_to_limit([image], recipe.request.upload_limit // 2)
                smaller_delivery = dataclasses.replace(delivery, image=smaller[0], reencoded=True)
                return await ctx.publisher.post_sheet(sweep, smaller_delivery)
        except DeliveryError as error:
            why = f"{error} The sweep was not charged."
            for job in posted:
                await self._refund(job, why)
            await self._show(sweep, "failed", await self._cells(sweep), note=why)
            await ctx.storage.sweeps.finish(sweep.id, error=str(error))
            await self._mark_announced(sweep)
            return None

    async def _load(self, job: EditJob) -> tuple[StoredImage, bytes] | None:
        try:
            loaded = await self._outputs.load(job)
        except (OSError, FalError):
            log.warning("job %s: result files are gone", job.id, exc_info=True)
            return None
        return loaded[0] if loaded else None

    async def _keep(
        self, sweep: Sweep, cell: SweepCell, data: bytes, content_type: str, nsfw: bool
    ) -> None:
        """The cell's output at fal storage, so the sheet's menus can fetch it later."""
        if cell.image is not None:
            return
        extension = content_type.split("/")[-1]
        file = BytesFile(f"cell {cell.cell + 1}", f"cell-{cell.cell + 1}.{extension}", data)
        try:
            [ref] = await self._inputs.prepare([file])
        except MemberError:
            log.warning("sweep %s: cell %s could not be kept at fal", sweep.id, cell.cell)
            return
        await self._ctx.storage.sweeps.set_cell_image(
            sweep.id, cell.cell, {**ref.model_dump(mode="json"), "nsfw": nsfw}
        )

    async def _refund(self, job: EditJob, why: str) -> None:
        await self._transitions.finish(job.id, JobState.FAILED, error=why)
        await self._ctx.storage.jobs.mark_announced(job.id)
        await self._outputs.remove(job.id)

    async def _deliver_cells(self, jobs: list[EditJob]) -> None:
        storage = self._ctx.storage
        for job in jobs:
            if job.state == JobState.COMPLETED:
                await self._transitions.move(
                    job.id, JobState.DELIVERED, expect={JobState.COMPLETED}
                )
                if job.lora_ids:  # a LoRA's "uses" counts results members actually got
                    await storage.loras.increment_uses(job.lora_ids)
                await self._outputs.remove(job.id)
            await storage.jobs.mark_announced(job.id)

    async def _mark_announced(self, sweep: Sweep) -> None:
        for cell in sweep.cells:
            await self._ctx.storage.jobs.mark_announced(cell.job_id)

    async def _parent_result(self, sweep: Sweep) -> tuple[int, int] | None:
        if sweep.parent_job_id is None:
            return None
        parent = await self._ctx.storage.jobs.get(sweep.parent_job_id)
        if parent is None or parent.result_message_id is None:
            return None
        return parent.channel_id, parent.result_message_id
