"""fal webhook deliveries kept until the job's driver has used them (docs/fal-webhooks.md,
"How the bot receives them").

`record` looks the request id up and stores the verified delivery in one transaction, so the
answer fal gets (unknown, already past, recorded) and what is stored always agree. A job's
driver reads its row with `for_job`; a process waiting on many jobs reads theirs with one
`for_jobs` query. The row is removed (`forget`) once the job has moved on.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from .clock import to_us, utc
from .dialect import Database, Tx

log = logging.getLogger(__name__)

Outcome = Literal["unknown", "past", "recorded"]


@dataclass(frozen=True)
class Recorded:
    """What became of a delivery: `unknown` (no job has that request id), `past` (its job
    has already moved past waiting for fal: nothing stored), `recorded` (stored, or stored
    before by an earlier copy)."""

    outcome: Outcome
    job_id: int | None = None


@dataclass(frozen=True)
class StoredDelivery:
    request_id: str
    job_id: int
    ok: bool
    body: str  # the delivery's JSON, as verified


class DeliveryRepository:
    def __init__(self, conn: Database) -> None:
        self._conn = conn

    async def record(
        self, request_id: str, ok: bool, body: str, *, now: datetime | None = None
    ) -> Recorded:
        moment = to_us(utc(now))

        async def work(tx: Tx) -> Recorded:
            # On PostgreSQL the job's row is locked until the delivery is stored, so a
            # transition of the job waits: a delivery is never stored for a job that has just
            # moved on (SQLite writers take turns anyway).
            lock = " FOR UPDATE" if tx.dialect == "postgres" else ""
            row = await tx.fetchrow(
                "SELECT id, state FROM jobs WHERE fal_request_id = ? ORDER BY id LIMIT 1" + lock,
                (request_id,),
            )
            if row is None:
                return Recorded("unknown")
            job_id = int(row["id"])
            if row["state"] != "submitted":
                return Recorded("past", job_id)
            await tx.execute(
                """INSERT INTO fal_deliveries (request_id, job_id, ok, body, received_at)
                   VALUES (?, ?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING""",
                (request_id, job_id, int(ok), body, moment),
            )
            return Recorded("recorded", job_id)

        return await self._conn.write(work)

    async def for_job(self, job_id: int) -> StoredDelivery | None:
        found = await self.for_jobs([job_id])
        return found.get(job_id)

    async def for_jobs(self, job_ids: Collection[int]) -> dict[int, StoredDelivery]:
        """The recorded deliveries of these jobs, in one query."""
        if not job_ids:
            return {}
        ids = builtins.list(job_ids)
        marks = ", ".join("?" for _ in ids)

        async def work(tx: Tx) -> builtins.list[StoredDelivery]:
            rows = await tx.fetch(
                "SELECT request_id, job_id, ok, body FROM fal_deliveries"
                f" WHERE job_id IN ({marks})",
                ids,
            )
            return [
                StoredDelivery(
                    str(row["request_id"]), int(row["job_id"]), bool(row["ok"]), str(row["body"])
                )
                for row in rows
            ]

        return {stored.job_id: stored for stored in await self._conn.read(work)}

    async def forget(self, job_id: int) -> None:
        async def work(tx: Tx) -> None:
            await tx.execute("DELETE FROM fal_deliveries WHERE job_id = ?", (job_id,))

        await self._conn.write(work)
