"""The fair queue's storage (docs/storage.md, "The fair queue"): which admitted jobs wait for a
slot at fal, which are at fal, and the release of the next ones in fair order.

A job is *waiting* while it is admitted and not released, *at fal* once released and until it
leaves `admitted`/`submitted` (completed, failed, cancelled, expired). Both are read from the
rows every time, never kept as a counter that could drift. A release is one write transaction
under the `fal-slots` lock: count the jobs at fal, mark the next waiting ones released. Every
release in every process takes that lock, so two never count the same free slot.
"""

from __future__ import annotations

import builtins
import logging
from dataclasses import dataclass
from datetime import datetime

from .clock import to_us, utc
from .dialect import Database, Tx
from .jobs import _UNFINISHED_SQL

log = logging.getLogger(__name__)

WAITING = "state = 'admitted' AND released_at IS NULL"  # the text of the partial index
# (the first term lets SQLite use the index of unfinished jobs)
AT_FAL = (
    f"(state IN ({_UNFINISHED_SQL})"
    " AND (state = 'submitted' OR (state = 'admitted' AND released_at IS NOT NULL)))"
)

# The fair order of every waiting job, first to be released first:
#  1. the member's round: the job's rank among the member's waiting jobs plus the slots the
#     member has used while jobs waited (their jobs at fal, and those that left fal since the
#     oldest waiting job was admitted), so a member's second job waits behind everyone's
#     first even when their first has just finished;
#  2. the server's round within that: the job's rank among its server's jobs of the same
#     member round plus the slots the server has used the same way, so servers take turns;
#  3. the job's id (oldest first). A rerun is a job like any other: no priority.
# Once nothing waits, the history is forgotten: the next burst starts level.
_FAIR_ORDER = f"""
WITH since AS (
    SELECT MIN(created_at) AS t FROM jobs WHERE {WAITING}
),
used AS (
    SELECT guild_id, user_id, COUNT(*) AS n FROM (
        SELECT guild_id, user_id FROM jobs
         WHERE state IN ({_UNFINISHED_SQL})
           AND ({AT_FAL} OR (state = 'completed' AND completed_at >= (SELECT t FROM since)))
        UNION ALL
        SELECT guild_id, user_id FROM jobs
         WHERE finished_at >= (SELECT t FROM since)
           AND (released_at IS NOT NULL OR submitted_at IS NOT NULL)
           AND COALESCE(completed_at, finished_at) >= (SELECT t FROM since)
    ) AS slots
     GROUP BY guild_id, user_id
),
server_used AS (
    SELECT guild_id, CAST(SUM(n) AS BIGINT) AS n FROM used GROUP BY guild_id
),
waiting AS (
    SELECT jobs.id, jobs.guild_id,
           ROW_NUMBER() OVER (PARTITION BY jobs.guild_id, jobs.user_id ORDER BY jobs.id)
               + COALESCE(m.n, 0) AS member_round
      FROM jobs
      LEFT JOIN used m ON m.guild_id = jobs.guild_id AND m.user_id = jobs.user_id
     WHERE jobs.state = 'admitted' AND jobs.released_at IS NULL
       AND jobs.guild_id >= 0  -- every id is; makes SQLite search the index, not walk it
),
ranked AS (
    SELECT w.id, w.member_round,
           ROW_NUMBER() OVER (PARTITION BY w.guild_id, w.member_round ORDER BY w.id)
               + COALESCE(s.n, 0) AS server_round
      FROM waiting w
      LEFT JOIN server_used s ON s.guild_id = w.guild_id
)"""
_ORDER_BY = "ORDER BY member_round, server_round, id"


@dataclass(frozen=True, slots=True)
class QueueView:
    """One consistent look at the queue: how many jobs are at fal, and every waiting job's id
    in the order they will be released."""

    at_fal: int
    waiting: builtins.list[int]

    def position(self, job_id: int) -> int | None:
        """1 for the next job to be released; None when the job is not waiting."""
        try:
            return self.waiting.index(job_id) + 1
        except ValueError:
            return None


class FairQueueRepository:
    def __init__(self, conn: Database) -> None:
        self._conn = conn

    async def release(self, cap: int, *, now: datetime | None = None) -> builtins.list[int]:
        """Release the next waiting jobs in fair order while fewer than `cap` are at fal;
        returns their ids (in release order). Safe from any number of tasks and processes:
        together they never have more than `cap` jobs at fal, and never release a job twice."""
        if cap <= 0:
            raise ValueError("release needs a cap above 0")
        stamp = to_us(utc(now))

        async def work(tx: Tx) -> builtins.list[int]:
            # The lock before the count: at READ COMMITTED the count below sees every release
            # that committed before we got it, and none can commit while we hold it.
            await tx.lock("fal-slots")
            at_fal = int(await tx.fetchval(f"SELECT COUNT(*) FROM jobs WHERE {AT_FAL}"))
            free = cap - at_fal
            if free <= 0:
                return []
            rows = await tx.fetch(
                f"""{_FAIR_ORDER}
                    SELECT id FROM ranked {_ORDER_BY} LIMIT :free""",
                {"free": free},
            )
            ids = [int(row["id"]) for row in rows]
            released: set[int] = set()
            for job_id in ids:
                # Guarded: a job cancelled since the read above is not released.
                changed = await tx.execute(
                    f"UPDATE jobs SET released_at = :now WHERE id = :id AND {WAITING}",
                    {"now": stamp, "id": job_id},
                )
                if changed:
                    released.add(job_id)
            return [job_id for job_id in ids if job_id in released]

        released = await self._conn.write(work)
        if released:
            log.info("released %d jobs to fal: %s", len(released), released[:20])
        return released

    async def view(self) -> QueueView:
        """Jobs at fal and the waiting jobs in fair order, from one snapshot."""

        async def work(tx: Tx) -> QueueView:
            at_fal = int(await tx.fetchval(f"SELECT COUNT(*) FROM jobs WHERE {AT_FAL}"))
            rows = await tx.fetch(f"{_FAIR_ORDER} SELECT id FROM ranked {_ORDER_BY}")
            return QueueView(at_fal=at_fal, waiting=[int(row["id"]) for row in rows])

        return await self._conn.read(work)

    async def waiting(self, job_id: int) -> bool:
        """Whether this job still waits for a slot (admitted, not released)."""

        async def work(tx: Tx) -> bool:
            row = await tx.fetchrow(f"SELECT 1 FROM jobs WHERE id = ? AND {WAITING}", (job_id,))
            return row is not None

        return await self._conn.read(work)

    async def at_fal(self) -> int:
        """How many jobs are at fal now: released or submitted, and not yet done there."""

        async def work(tx: Tx) -> int:
            return int(await tx.fetchval(f"SELECT COUNT(*) FROM jobs WHERE {AT_FAL}"))

        return await self._conn.read(work)
