"""Sweeps: N jobs admitted as one group (all or none within quota and budget), and the record of
their contact sheet, so a restart finishes it once."""

from __future__ import annotations

import builtins
import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Generic

from pydantic import BaseModel, ConfigDict

from . import quotas
from .clock import from_us, opt_from_us, to_micro_usd, to_us, utc
from .dialect import Database, Row, Tx
from .errors import NotFoundError
from .jobs import _job, insert
from .models import Job, NewJob, QuotaLimits, Refusal, RequestT, ResultT, UtcDatetime

log = logging.getLogger(__name__)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NewSweep(_Model):
    guild_id: int
    channel_id: int
    user_id: int
    recipe: dict[str, Any]
    labels: list[str]  # one per cell, in order
    parent_job_id: int | None = None


class SweepCell(_Model):
    cell: int
    job_id: int
    label: str
    image: dict[str, Any] | None = None


class Sweep(_Model):
    id: int
    guild_id: int
    channel_id: int
    user_id: int
    recipe: dict[str, Any]
    parent_job_id: int | None
    status_message_id: int | None
    sheet_message_id: int | None
    error: str | None
    created_at: UtcDatetime
    finished_at: UtcDatetime | None
    cells: list[SweepCell]


async def _cells(tx: Tx, sweep_id: int) -> list[SweepCell]:
    rows = await tx.fetch("SELECT * FROM sweep_cells WHERE sweep_id = ? ORDER BY cell", (sweep_id,))
    return [
        SweepCell(
            cell=row["cell"],
            job_id=row["job_id"],
            label=row["label"],
            image=None if row["image"] is None else json.loads(row["image"]),
        )
        for row in rows
    ]


async def _sweep(tx: Tx, row: Row) -> Sweep:
    return Sweep(
        id=row["id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        user_id=row["user_id"],
        recipe=json.loads(row["recipe"]),
        parent_job_id=row["parent_job_id"],
        status_message_id=row["status_message_id"],
        sheet_message_id=row["sheet_message_id"],
        error=row["error"],
        created_at=from_us(row["created_at"]),
        finished_at=opt_from_us(row["finished_at"]),
        cells=await _cells(tx, row["id"]),
    )


class SweepRepository(Generic[RequestT, ResultT]):
    def __init__(self, conn: Database, model: type[Job[RequestT, ResultT]]) -> None:
        self._conn = conn
        self._model = model

    async def admit(
        self,
        sweep: NewSweep,
        jobs: Sequence[NewJob[RequestT]],
        limits: QuotaLimits,
        *,
        now: datetime | None = None,
    ) -> tuple[Sweep, builtins.list[Job[RequestT, ResultT]]] | Refusal:
        """Admit every cell or none: the limits are checked against the group's total images
        and cost, then the sweep, its jobs, their reservations and the cells are written, all
        in one transaction (jobs in flight: the group needs one free slot, like one edit)."""
        if not jobs or len(jobs) != len(sweep.labels):
            raise ValueError("a sweep needs one label per job, and at least one job")
        moment = utc(now)
        images = sum(job.images for job in jobs)
        cost = sum(to_micro_usd(job.cost_usd) for job in jobs)

        async def work(tx: Tx) -> tuple[Row, builtins.list[Row], Sweep] | Refusal:
            # The member's lock first, as for one edit (storage/jobs.py, JobRepository.admit).
            await tx.lock("quota", sweep.guild_id, sweep.user_id)
            refusal = await quotas.check_admission(
                tx,
                guild_id=sweep.guild_id,
                user_id=sweep.user_id,
                images=images,
                cost_micro_usd=cost,
                limits=limits,
                now=moment,
            )
            if refusal is not None:
                return refusal
            head = await tx.fetchrow(
                """INSERT INTO sweeps (guild_id, channel_id, user_id, recipe, parent_job_id,
                                       created_at)
                   VALUES (?, ?, ?, ?, ?, ?) RETURNING *""",
                (
                    sweep.guild_id,
                    sweep.channel_id,
                    sweep.user_id,
                    json.dumps(sweep.recipe, separators=(",", ":"), ensure_ascii=False),
                    sweep.parent_job_id,
                    to_us(moment),
                ),
            )
            assert head is not None  # INSERT … RETURNING returns the row
            budget = limits.monthly_budget_usd
            rows = [await insert(tx, job, now=moment, budget=budget) for job in jobs]
            for cell, (row, label) in enumerate(zip(rows, sweep.labels, strict=True)):
                await tx.execute(
                    "INSERT INTO sweep_cells (sweep_id, cell, job_id, label) VALUES (?, ?, ?, ?)",
                    (head["id"], cell, row["id"], label),
                )
            return head, rows, await _sweep(tx, head)

        try:
            outcome = await self._conn.write(work)
        except quotas.BudgetRaced as raced:
            outcome = raced.refusal
        if isinstance(outcome, Refusal):
            log.info(
                "sweep of %d refused for user %d in guild %d: %s",
                len(jobs),
                sweep.user_id,
                sweep.guild_id,
                outcome.kind,
            )
            return outcome
        _, rows, made = outcome
        log.info("sweep %d admitted: %d jobs", made.id, len(rows))
        return made, [_job(row, self._model) for row in rows]

    async def get(self, sweep_id: int) -> Sweep | None:
        async def work(tx: Tx) -> Sweep | None:
            row = await tx.fetchrow("SELECT * FROM sweeps WHERE id = ?", (sweep_id,))
            return None if row is None else await _sweep(tx, row)

        return await self._conn.read(work)

    async def of_job(self, job_id: int) -> int | None:
        """The sweep a job is a cell of, if any."""

        async def work(tx: Tx) -> int | None:
            value = await tx.fetchval(
                "SELECT sweep_id FROM sweep_cells WHERE job_id = ?", (job_id,)
            )
            return None if value is None else int(value)

        return await self._conn.read(work)

    async def unfinished(self) -> builtins.list[Sweep]:
        """Sweeps whose sheet was neither posted nor given up, oldest first."""

        async def work(tx: Tx) -> builtins.list[Sweep]:
            rows = await tx.fetch("SELECT * FROM sweeps WHERE finished_at IS NULL ORDER BY id")
            return [await _sweep(tx, row) for row in rows]

        return await self._conn.read(work)

    async def set_status_message(self, sweep_id: int, message_id: int) -> None:
        await self._conn.write(
            lambda tx: tx.execute(
                "UPDATE sweeps SET status_message_id = ? WHERE id = ?", (message_id, sweep_id)
            )
        )

    async def set_cell_image(self, sweep_id: int, cell: int, image: dict[str, Any]) -> None:
        """Where the cell's output is kept (fal storage), for fetching it from the sheet."""
        text = json.dumps(image, separators=(",", ":"))
        await self._conn.write(
            lambda tx: tx.execute(
                "UPDATE sweep_cells SET image = ? WHERE sweep_id = ? AND cell = ?",
                (text, sweep_id, cell),
            )
        )

    async def set_sheet(self, sweep_id: int, message_id: int) -> None:
        """Record the posted sheet; the first record wins (a repeat after a restart)."""
        await self._conn.write(
            lambda tx: tx.execute(
                """UPDATE sweeps SET sheet_message_id = ?
                    WHERE id = ? AND sheet_message_id IS NULL""",
                (message_id, sweep_id),
            )
        )

    async def finish(
        self, sweep_id: int, *, error: str | None = None, now: datetime | None = None
    ) -> Sweep:
        """Nothing is left to do: the sheet is posted and its cells settled, or it was given up
        (`error`). Recovery leaves finished sweeps alone."""
        stamp = to_us(utc(now))

        async def work(tx: Tx) -> Sweep:
            await tx.execute(
                "UPDATE sweeps SET error = ?, finished_at = ? WHERE id = ? AND finished_at IS NULL",
                (error, stamp, sweep_id),
            )
            row = await tx.fetchrow("SELECT * FROM sweeps WHERE id = ?", (sweep_id,))
            if row is None:
                raise NotFoundError(f"sweep {sweep_id} does not exist")
            return await _sweep(tx, row)

        return await self._conn.write(work)
