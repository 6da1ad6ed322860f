"""Job leases: which process drives which job (docs/storage.md, "Leases").

A lease is the pair (`lease_owner`, `lease_expires_at`) on a job's row. Every statement here is
a single conditional UPDATE, so on PostgreSQL two processes racing for one job serialise on its
row and the loser's condition no longer holds when it gets the row: exactly one wins, without an
explicit lock. On SQLite writers take turns anyway.
"""

from __future__ import annotations

import builtins
import logging
from dataclasses import dataclass
from datetime import datetime

from .clock import MICROS_PER_SECOND, opt_from_us, to_us, utc
from .dialect import Database, Tx
from .jobs import _TERMINAL_SQL, _UNFINISHED_SQL

log = logging.getLogger(__name__)

# Work left for a process: jobs not finished, and finished jobs whose end was never shown.
_NEEDS_DRIVING = (
    f"(state IN ({_UNFINISHED_SQL}) OR (announced_at IS NULL AND state IN ({_TERMINAL_SQL})))"
)
# Free for anyone: never leased, or the lease ran out (a dead or stalled owner).
_FREE = "(lease_expires_at IS NULL OR lease_expires_at <= :now)"


@dataclass(frozen=True)
class LeaseTerms:
    """Who this process is, and how long its leases last without renewal.

    `owner` is `instance/boot`: the instance (stable across restarts, e.g. its shards) and a
    token of this boot. A process may take back at once what its instance held before a
    restart; anyone else waits for those leases to expire."""

    instance: str
    boot: str
    seconds: float

    @property
    def owner(self) -> str:
        return f"{self.instance}/{self.boot}"

    def until(self, now: datetime) -> int:
        return to_us(now) + round(self.seconds * MICROS_PER_SECOND)


def _earlier_lives(instance: str) -> str:
    """A LIKE pattern for owners of this instance; instance names are [A-Za-z0-9._-]."""
    escaped = instance.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "/%"


class LeaseRepository:
    def __init__(self, conn: Database, terms: LeaseTerms | None) -> None:
        self._conn = conn
        self.terms = terms

    def _require(self) -> LeaseTerms:
        if self.terms is None:
            raise RuntimeError("this storage was opened without lease terms")
        return self.terms

    async def claim(self, job_id: int, *, now: datetime | None = None) -> bool:
        """Hold (or renew) this job's lease: True when it is ours now, False when another live
        process holds it."""
        terms = self._require()
        moment = utc(now)

        async def work(tx: Tx) -> int:
            return await tx.execute(
                f"""UPDATE jobs SET lease_owner = :owner, lease_expires_at = :until
                     WHERE id = :id AND (lease_owner = :owner OR {_FREE})""",
                {
                    "owner": terms.owner,
                    "until": terms.until(moment),
                    "id": job_id,
                    "now": to_us(moment),
                },
            )

        return await self._conn.write(work) == 1

    async def renew(self, *, now: datetime | None = None) -> set[int]:
        """Extend every lease this process holds on work left; returns those jobs' ids. A job
        missing from the answer was adopted by another process (ours had expired)."""
        terms = self._require()
        moment = utc(now)

        async def work(tx: Tx) -> builtins.list[int]:
            rows = await tx.fetch(
                f"""UPDATE jobs SET lease_expires_at = :until
                     WHERE lease_owner = :owner AND {_NEEDS_DRIVING}
                 RETURNING id""",
                {"owner": terms.owner, "until": terms.until(moment)},
            )
            return [int(row["id"]) for row in rows]

        return set(await self._conn.write(work))

    async def adopt(
        self,
        *,
        earlier_lives: bool = False,
        everything: bool = False,
        limit: int = 200,
        now: datetime | None = None,
    ) -> builtins.list[int]:
        """Take the leases of work no live process holds: jobs never leased or whose lease ran
        out, plus (`earlier_lives`) whatever this instance held before a restart, or
        (`everything`, for the only process there is) all work left. Returns the adopted job
        ids, oldest first; each is adopted by exactly one caller."""
        terms = self._require()
        moment = utc(now)
        if everything:
            takeable = "TRUE"
        elif earlier_lives:
            takeable = f"({_FREE} OR lease_owner LIKE :mine ESCAPE '\\')"
        else:
            takeable = _FREE
        params = {
            "owner": terms.owner,
            "until": terms.until(moment),
            "now": to_us(moment),
            "mine": _earlier_lives(terms.instance),
            "limit": limit,
        }

        async def work(tx: Tx) -> builtins.list[int]:
            # The outer condition is checked again on each row as it is locked (PostgreSQL's
            # READ COMMITTED re-reads a row another transaction just changed), so a job another
            # process adopted meanwhile is skipped rather than taken twice.
            rows = await tx.fetch(
                f"""UPDATE jobs SET lease_owner = :owner, lease_expires_at = :until
                     WHERE id IN (SELECT id FROM jobs
                                   WHERE {_NEEDS_DRIVING} AND {takeable}
                                     AND (lease_owner IS NULL OR lease_owner <> :owner)
                                   ORDER BY id LIMIT :limit)
                       AND {takeable} AND (lease_owner IS NULL OR lease_owner <> :owner)
                 RETURNING id""",
                params,
            )
            return sorted(int(row["id"]) for row in rows)

        adopted = await self._conn.write(work)
        if adopted:
            log.info("%s adopted %d jobs: %s", terms.owner, len(adopted), adopted[:20])
        return adopted

    async def release(self) -> int:
        """Give up every lease this process holds (a clean shutdown), so another process may
        adopt those jobs at once; returns how many."""
        terms = self._require()

        async def work(tx: Tx) -> int:
            return await tx.execute(
                """UPDATE jobs SET lease_expires_at = 0
                    WHERE lease_owner = ? AND lease_expires_at > 0""",
                (terms.owner,),
            )

        released = await self._conn.write(work)
        log.info("%s released %d leases", terms.owner, released)
        return released

    async def holder(self, job_id: int) -> tuple[str | None, datetime | None]:
        """Who holds this job's lease and until when (for tests and /admin)."""

        async def work(tx: Tx) -> tuple[str | None, int | None]:
            row = await tx.fetchrow(
                "SELECT lease_owner, lease_expires_at FROM jobs WHERE id = ?", (job_id,)
            )
            return (None, None) if row is None else (row["lease_owner"], row["lease_expires_at"])

        owner, until = await self._conn.read(work)
        return owner, opt_from_us(until)
