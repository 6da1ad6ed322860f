"""Jobs: atomic admission with the quota reservation, checked state transitions, lookups."""

from __future__ import annotations

import builtins
import functools
import json
import logging
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import Any, Generic, Unpack

from pydantic import BaseModel

from . import quotas
from .clock import from_micro_usd, from_us, opt_from_us, to_micro_usd, to_us, utc
from .dialect import Database, Row, Tx
from .errors import ConstraintError, IllegalTransition, JobNotFound
from .models import (
    ALLOWED_TRANSITIONS,
    REFUND_STATES,
    TERMINAL_STATES,
    UNFINISHED_STATES,
    Job,
    JobFields,
    JobState,
    NewJob,
    QuotaLimits,
    Refusal,
    RequestT,
    ResultT,
)

log = logging.getLogger(__name__)

_JSON_FIELDS = frozenset({"result"})
_SETTABLE = frozenset(JobFields.__annotations__)
_STAMPS = {JobState.SUBMITTED: "submitted_at", JobState.COMPLETED: "completed_at"}


def _sql_states(states: Iterable[JobState]) -> str:
    # Enum values, not user input; written inline so SQLite can match the partial index.
    return ", ".join(f"'{state.value}'" for state in sorted(states))


_UNFINISHED_SQL = _sql_states(UNFINISHED_STATES)
_TERMINAL_SQL = _sql_states(TERMINAL_STATES)
_SOURCES = {
    target: frozenset(state for state, targets in ALLOWED_TRANSITIONS.items() if target in targets)
    for target in JobState
}


@functools.lru_cache(maxsize=256)
def _update_sql(target: JobState, columns: tuple[str, ...], sources: frozenset[JobState]) -> str:
    """The guarded UPDATE for one kind of transition; only legal source states match."""
    assignments = [f"state = '{target.value}'", "updated_at = :now"]
    assignments += [f"{column} = :{column}" for column in columns]
    if target in _STAMPS:
        assignments.append(f"{_STAMPS[target]} = :now")
    if target in TERMINAL_STATES:
        assignments.append("finished_at = :now")
    return (
        f"UPDATE jobs SET {', '.join(assignments)} "
        f"WHERE id = :id AND state IN ({_sql_states(sources)}) RETURNING *"
    )


def _plain(value: Any) -> Any:
    """A stored payload as JSON data: models are dumped, anything else is already JSON."""
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _dumps(value: Any) -> str:
    return json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False)


def _job(row: Row, model: type[Job[RequestT, ResultT]]) -> Job[RequestT, ResultT]:
    result = row["result"]
    return model(
        id=row["id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        user_id=row["user_id"],
        state=JobState(row["state"]),
        request=json.loads(row["request"]),
        fal_input=json.loads(row["fal_input"]),
        images=row["images"],
        cost_usd=from_micro_usd(row["cost_micro_usd"]),
        parent_job_id=row["parent_job_id"],
        request_message_id=row["request_message_id"],
        status_message_id=row["status_message_id"],
        result_message_id=row["result_message_id"],
        fal_request_id=row["fal_request_id"],
        fal_status_url=row["fal_status_url"],
        fal_response_url=row["fal_response_url"],
        fal_cancel_url=row["fal_cancel_url"],
        result=None if result is None else json.loads(result),
        error=row["error"],
        seed=row["seed"],
        lora_ids=json.loads(row["lora_ids"]),
        deadline_at=from_us(row["deadline_at"]),
        created_at=from_us(row["created_at"]),
        updated_at=from_us(row["updated_at"]),
        submitted_at=opt_from_us(row["submitted_at"]),
        completed_at=opt_from_us(row["completed_at"]),
        finished_at=opt_from_us(row["finished_at"]),
        announced_at=opt_from_us(row["announced_at"]),
    )


def _stored_equals(row: Row, column: str, value: Any) -> bool:
    stored = row[column]
    if column in _JSON_FIELDS and stored is not None:
        stored = json.loads(stored)
    return bool(stored == _plain(value))


async def insert(
    tx: Tx,
    new: NewJob[Any],
    *,
    now: datetime,
    budget: float | None = None,
    quota_images: int | None = None,
) -> Row:
    """Write an admitted job and its quota reservation. Runs inside the write transaction of
    an admission that has checked the limits (here, or for a group in sweeps.py), after the
    member's lock; raises quotas.BudgetRaced when the month's spend passed `budget`
    meanwhile (another process, on PostgreSQL).
    `quota_images`: what the reservation counts against the member (default: the job's)."""
    cost = to_micro_usd(new.cost_usd)
    params = {
        "guild_id": new.guild_id,
        "channel_id": new.channel_id,
        "user_id": new.user_id,
        "request": _dumps(new.request),
        "fal_input": _dumps(new.fal_input),
        "images": new.images,
        "cost": cost,
        "parent": new.parent_job_id,
        "request_message_id": new.request_message_id,
        "seed": new.seed,
        "lora_ids": _dumps(new.lora_ids),
        "deadline_at": to_us(new.deadline_at),
        "now": to_us(now),
    }
    try:
        row = await tx.fetchrow(
            """INSERT INTO jobs (guild_id, channel_id, user_id, state, request, fal_input,
                                 images, cost_micro_usd, parent_job_id,
                                 request_message_id, seed, lora_ids, deadline_at,
                                 created_at, updated_at)
               VALUES (:guild_id, :channel_id, :user_id, 'admitted', :request, :fal_input,
                       :images, :cost, :parent, :request_message_id, :seed, :lora_ids,
                       :deadline_at, :now, :now)
               RETURNING *""",
            params,
        )
    except ConstraintError as error:
        if new.parent_job_id is not None and error.kind == "foreign_key":
            raise JobNotFound(new.parent_job_id) from error
        raise
    assert row is not None  # INSERT … RETURNING returns the row
    await quotas.reserve(
        tx,
        guild_id=new.guild_id,
        user_id=new.user_id,
        job_id=row["id"],
        images=new.images if quota_images is None else quota_images,
        cost_micro_usd=cost,
        now=now,
        budget=budget,
    )
    return row


class JobRepository(Generic[RequestT, ResultT]):
    """Jobs come back as `model`: the plain `Job` keeps payloads as JSON dicts; the bot passes
    `Job[ItsRequest, ItsResult]` so every job it reads is typed."""

    def __init__(self, conn: Database, model: type[Job[RequestT, ResultT]]) -> None:
        self._conn = conn
        self._model = model

    async def admit(
        self,
        new: NewJob[RequestT],
        limits: QuotaLimits,
        *,
        now: datetime | None = None,
        quota_images: int | None = None,
    ) -> Job[RequestT, ResultT] | Refusal:
        """Check window usage, jobs in flight and the server's month spend against `limits`
        and, if all fit, write the job (admitted) and its reservation: one transaction, so
        concurrent admissions, from any number of tasks or processes, never exceed a limit.

        `quota_images` is what the reservation counts against the member (default: the job's
        images). 0 is work the server's budget pays alone (a training and its sample edit):
        only its cost is reserved, and it is neither in the member's window nor in flight."""
        moment = utc(now)
        charged = new.images if quota_images is None else quota_images
        if charged < 0:
            raise ValueError("quota_images must not be negative")

        async def work(tx: Tx) -> Row | Refusal:
            # The member's lock first: their window and jobs in flight cannot change until
            # this commits (a no-op on SQLite, where write transactions take turns).
            await tx.lock("quota", new.guild_id, new.user_id)
            refusal = await quotas.check_admission(
                tx,
                guild_id=new.guild_id,
                user_id=new.user_id,
                images=charged,
                cost_micro_usd=to_micro_usd(new.cost_usd),
                limits=limits,
                now=moment,
                member_pays=charged > 0,
            )
            if refusal is not None:
                return refusal
            return await insert(
                tx, new, now=moment, budget=limits.monthly_budget_usd, quota_images=charged
            )

        try:
            outcome = await self._conn.write(work)
        except quotas.BudgetRaced as raced:
            outcome = raced.refusal
        if isinstance(outcome, Refusal):
            log.info(
                "admission refused for user %d in guild %d: %s (%s of %s)",
                new.user_id,
                new.guild_id,
                outcome.kind,
                outcome.used,
                outcome.limit,
            )
            return outcome
        job = _job(outcome, self._model)
        log.info("job %d admitted (%d images, $%.3f)", job.id, job.images, job.cost_usd)
        return job

    async def transition(
        self,
        job_id: int,
        to: JobState,
        *,
        expect: AbstractSet[JobState] | None = None,
        now: datetime | None = None,
        **fields: Unpack[JobFields],
    ) -> Job[RequestT, ResultT]:
        """Move the job to `to` and set `fields`, in one transaction with its ledger change.

        Raises IllegalTransition when the lifecycle forbids the move or the job is not in one
        of the `expect`ed states. Repeating a transition that already happened with the same
        fields returns the job unchanged, so recovery may retry freely.
        """
        target = JobState(to)
        unknown = set(fields) - _SETTABLE
        if unknown:
            raise TypeError(f"transition() cannot set {sorted(unknown)}")
        moment = utc(now)
        sources = _SOURCES[target]
        if expect is not None:
            sources &= frozenset(JobState(state) for state in expect)
        params: dict[str, Any] = {"id": job_id, "now": to_us(moment)}
        for column, value in fields.items():
            params[column] = (
                _dumps(value) if column in _JSON_FIELDS and value is not None else value
            )
        update = _update_sql(target, tuple(fields), sources) if sources else None

        async def work(tx: Tx) -> tuple[Row, bool]:
            row = await tx.fetchrow(update, params) if update else None
            if row is None:
                current = await tx.fetchrow("SELECT * FROM jobs WHERE id = ?", (job_id,))
                if current is None:
                    raise JobNotFound(job_id)
                state = JobState(current["state"])
                if state == target:
                    differing = [c for c, v in fields.items() if not _stored_equals(current, c, v)]
                    if not differing:
                        return current, False  # a retry of a transition that already happened
                    raise IllegalTransition(
                        job_id, state, target, f"already {target} with other {', '.join(differing)}"
                    )
                if expect is not None and state not in expect:
                    raise IllegalTransition(
                        job_id, state, target, f"expected {', '.join(sorted(expect))}"
                    )
                raise IllegalTransition(job_id, state, target)
            if target is JobState.DELIVERED:
                await quotas.commit(tx, job_id=job_id, now=moment)
            elif target in REFUND_STATES:
                await quotas.refund(tx, job_id=job_id, now=moment)
            return row, True

        row, changed = await self._conn.write(work)
        job = _job(row, self._model)
        if changed:
            log.info("job %d → %s", job_id, target)
        return job

    async def set_status_message(
        self, job_id: int, message_id: int | None, *, now: datetime | None = None
    ) -> Job[RequestT, ResultT]:
        """Record the message that shows the job's progress (any state)."""
        stamp = to_us(utc(now))

        async def work(tx: Tx) -> Row:
            row = await tx.fetchrow(
                "UPDATE jobs SET status_message_id = ?, updated_at = ? WHERE id = ? RETURNING *",
                (message_id, stamp, job_id),
            )
            if row is None:
                raise JobNotFound(job_id)
            return row

        return _job(await self._conn.write(work), self._model)

    async def mark_announced(self, job_id: int, *, now: datetime | None = None) -> None:
        """The job's final state has been shown to the member; recovery leaves it alone."""
        stamp = to_us(utc(now))

        async def work(tx: Tx) -> None:
            await tx.execute(
                "UPDATE jobs SET announced_at = ? WHERE id = ? AND announced_at IS NULL",
                (stamp, job_id),
            )

        await self._conn.write(work)

    async def unannounced(self) -> builtins.list[Job[RequestT, ResultT]]:
        """Finished jobs whose final state was never shown (the process died in between)."""
        return await self._select(
            "SELECT * FROM jobs WHERE announced_at IS NULL"
            f" AND state IN ({_TERMINAL_SQL}) ORDER BY id",
            (),
        )

    async def get(self, job_id: int) -> Job[RequestT, ResultT] | None:
        rows = await self._select("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    async def unfinished(self) -> builtins.list[Job[RequestT, ResultT]]:
        """Every job not yet in a terminal state, oldest first: what recovery continues."""
        return await self._select(
            f"SELECT * FROM jobs WHERE state IN ({_UNFINISHED_SQL}) ORDER BY id", ()
        )

    async def active(self, guild_id: int | None = None) -> builtins.list[Job[RequestT, ResultT]]:
        """Running or stuck jobs, of one server or of all, oldest first."""
        if guild_id is None:
            return await self.unfinished()
        return await self._select(
            f"SELECT * FROM jobs WHERE guild_id = ? AND state IN ({_UNFINISHED_SQL}) ORDER BY id",
            (guild_id,),
        )

    async def delivered_since(self, since: datetime) -> builtins.list[Job[RequestT, ResultT]]:
        """Results posted at or after `since`, oldest first."""
        return await self._select(
            "SELECT * FROM jobs WHERE state = 'delivered' AND result_message_id IS NOT NULL"
            " AND finished_at >= ? ORDER BY id",
            (to_us(utc(since)),),
        )

    async def by_result_message(self, message_id: int) -> Job[RequestT, ResultT] | None:
        rows = await self._select("SELECT * FROM jobs WHERE result_message_id = ?", (message_id,))
        return rows[0] if rows else None

    async def children(self, job_id: int) -> builtins.list[Job[RequestT, ResultT]]:
        """Reruns made from this job, oldest first."""
        return await self._select(
            "SELECT * FROM jobs WHERE parent_job_id = ? ORDER BY id", (job_id,)
        )

    async def recent_for_user(
        self, guild_id: int, user_id: int, limit: int = 10
    ) -> builtins.list[Job[RequestT, ResultT]]:
        """The member's latest jobs on the server, newest first."""
        return await self._select(
            "SELECT * FROM jobs WHERE guild_id = ? AND user_id = ? ORDER BY id DESC LIMIT ?",
            (guild_id, user_id, limit),
        )

    async def _select(
        self, sql: str, args: tuple[Any, ...]
    ) -> builtins.list[Job[RequestT, ResultT]]:
        async def work(tx: Tx) -> builtins.list[Row]:
            return await tx.fetch(sql, args)

        return [_job(row, self._model) for row in await self._conn.read(work)]
