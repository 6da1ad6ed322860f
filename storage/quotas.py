"""The quota ledger: reserve at admission, commit at delivery, refund on failure; usage reads.

The module-level functions run inside a transaction another repository opened (admission and
job transitions live in jobs.py so that a job and its reservation change together); the
`QuotaRepository` is what callers use to read usage and forgive a member's window.

Exactness across processes (docs/storage.md): admission first takes the member's lock
(`tx.lock`, a no-op on SQLite where writers take turns anyway), so the member's window and jobs
in flight cannot change under it; the server's month spend is then checked again by the very
statement that adds to it (`reserve`), which holds that row's lock to the commit. Sums are
CAST to BIGINT so both backends return integers.
"""

from __future__ import annotations

from datetime import datetime

from .clock import (
    MICROS_PER_SECOND,
    day_start,
    from_micro_usd,
    from_us,
    month_key,
    month_start,
    next_month_start,
    to_micro_usd,
    to_us,
    utc,
)
from .dialect import Database, Row, Tx
from .models import MemberUsage, QuotaLimits, Refusal, Usage

# Rows that still count against a member: reserved or committed, and not forgiven by an admin.
_COUNTED = "state <> 'refunded' AND forgiven = 0"

# Each figure is computed only when its limit applies: an exempt member's window or an
# uncapped server's month is never summed on the hot path.
_WINDOW_USED = f"""(SELECT CAST(COALESCE(SUM(images), 0) AS BIGINT) FROM quota_ledger
      WHERE guild_id = :guild AND user_id = :user AND created_at > :window_start
        AND {_COUNTED})"""
# Reservations of 0 images are the server's (a training and its sample), not the member's.
_IN_FLIGHT = """(SELECT COUNT(*) FROM quota_ledger
      WHERE guild_id = :guild AND user_id = :user AND state = 'reserved' AND images > 0)"""
_MONTH_SPEND = """(SELECT CAST(COALESCE(SUM(micro_usd), 0) AS BIGINT) FROM guild_spend
      WHERE guild_id = :guild AND month = :month)"""


def _figures_sql(limits: QuotaLimits) -> str:
    window = _WINDOW_USED if limits.images_per_window is not None else "0"
    in_flight = _IN_FLIGHT if limits.max_in_flight is not None else "0"
    spend = _MONTH_SPEND if limits.monthly_budget_usd else "0"
    return f"SELECT {window} AS window_used, {in_flight} AS in_flight, {spend} AS month_spend"


class BudgetRaced(Exception):
    """The month's spend grew past the budget between the check and the reservation (another
    process admitted meanwhile): the transaction is undone and the request refused."""

    def __init__(self, refusal: Refusal) -> None:
        self.refusal = refusal
        super().__init__(f"budget reached meanwhile: {refusal.used} of {refusal.limit}")


def _budget_refusal(spend_micro: int, cost_micro_usd: int, budget: float, now: datetime) -> Refusal:
    budget_micro = to_micro_usd(budget)
    return Refusal(
        kind="budget",
        used=from_micro_usd(spend_micro),
        limit=budget,
        requested=from_micro_usd(cost_micro_usd),
        # A request dearer than the whole budget will not fit next month either.
        next_free_at=None if cost_micro_usd > budget_micro else next_month_start(now),
    )


async def check_admission(
    tx: Tx,
    *,
    guild_id: int,
    user_id: int,
    images: int,
    cost_micro_usd: int,
    limits: QuotaLimits,
    now: datetime,
    member_pays: bool = True,
) -> Refusal | None:
    """Why this request may not be admitted now, or None. Call inside a write transaction,
    after `tx.lock("quota", guild_id, user_id)`.
    `member_pays=False`: work the server's budget pays alone (a training, its sample edit),
    held to the budget only, never to the member's window or jobs in flight."""
    window_us = limits.window_seconds * MICROS_PER_SECOND
    now_us = to_us(now)
    figures = await tx.fetchrow(
        _figures_sql(limits),
        {
            "guild": guild_id,
            "user": user_id,
            "window_start": now_us - window_us,
            "month": month_key(now),
        },
    )
    assert figures is not None  # a SELECT without FROM has one row
    # The longest wait is reported first: telling a member to wait for a running job when the
    # server's budget is gone until next month would only send them into the next refusal.
    budget = limits.monthly_budget_usd
    if budget and figures["month_spend"] + cost_micro_usd > to_micro_usd(budget):
        return _budget_refusal(figures["month_spend"], cost_micro_usd, budget, now)
    limit = limits.images_per_window
    if member_pays and limit is not None and figures["window_used"] + images > limit:
        return Refusal(
            kind="quota",
            used=figures["window_used"],
            limit=limit,
            requested=images,
            next_free_at=await _frees_enough_at(
                tx,
                guild_id=guild_id,
                user_id=user_id,
                now_us=now_us,
                window_us=window_us,
                must_free=figures["window_used"] + images - limit,
                impossible=images > limit,
            ),
        )
    max_in_flight = limits.max_in_flight
    if member_pays and max_in_flight is not None and figures["in_flight"] >= max_in_flight:
        return Refusal(
            kind="in_flight",
            used=figures["in_flight"],
            limit=max_in_flight,
            requested=1,
            next_free_at=None,  # frees when a running job ends, not at a known time
        )
    return None


async def _frees_enough_at(
    tx: Tx,
    *,
    guild_id: int,
    user_id: int,
    now_us: int,
    window_us: int,
    must_free: int,
    impossible: bool,
) -> datetime | None:
    if impossible:
        return None  # more images than the whole window allows: waiting never helps
    rows = await tx.fetch(
        f"""SELECT images, created_at FROM quota_ledger
             WHERE guild_id = ? AND user_id = ? AND created_at > ? AND {_COUNTED}
             ORDER BY created_at, job_id""",
        (guild_id, user_id, now_us - window_us),
    )
    freed = 0
    for row in rows:
        freed += row["images"]
        if freed >= must_free:
            return from_us(row["created_at"] + window_us)
    return None


async def reserve(
    tx: Tx,
    *,
    guild_id: int,
    user_id: int,
    job_id: int,
    images: int,
    cost_micro_usd: int,
    now: datetime,
    budget: float | None = None,
) -> None:
    """Write the reservation and count its cost in the month (inside a write transaction).

    The month's new total is checked against `budget` by the statement that adds to it, which
    locks the row to the commit: raises BudgetRaced when another process got there first."""
    await tx.execute(
        """INSERT INTO quota_ledger
               (guild_id, user_id, job_id, images, cost_micro_usd, state, created_at)
           VALUES (?, ?, ?, ?, ?, 'reserved', ?)""",
        (guild_id, user_id, job_id, images, cost_micro_usd, to_us(now)),
    )
    if cost_micro_usd:
        total = await tx.fetchval(
            """INSERT INTO guild_spend (guild_id, month, micro_usd) VALUES (?, ?, ?)
               ON CONFLICT (guild_id, month)
               DO UPDATE SET micro_usd = guild_spend.micro_usd + excluded.micro_usd
               RETURNING micro_usd""",
            (guild_id, month_key(now), cost_micro_usd),
        )
        if budget and int(total) > to_micro_usd(budget):
            raise BudgetRaced(
                _budget_refusal(int(total) - cost_micro_usd, cost_micro_usd, budget, now)
            )


async def commit(tx: Tx, *, job_id: int, now: datetime) -> bool:
    """Turn the job's reservation into usage; False if there was none left to commit."""
    changed = await tx.execute(
        """UPDATE quota_ledger SET state = 'committed', settled_at = ?
            WHERE job_id = ? AND state = 'reserved'""",
        (to_us(now), job_id),
    )
    return changed > 0


async def refund(tx: Tx, *, job_id: int, now: datetime) -> bool:
    """Give the job's reservation back, images and money; False if nothing was reserved."""
    row = await tx.fetchrow(
        """UPDATE quota_ledger SET state = 'refunded', settled_at = ?
            WHERE job_id = ? AND state = 'reserved'
        RETURNING guild_id, cost_micro_usd, created_at""",
        (to_us(now), job_id),
    )
    if row is None:
        return False
    if row["cost_micro_usd"]:
        # The money goes back to the month it was reserved in, not the current one.
        await tx.execute(
            "UPDATE guild_spend SET micro_usd = micro_usd - ? WHERE guild_id = ? AND month = ?",
            (row["cost_micro_usd"], row["guild_id"], month_key(from_us(row["created_at"]))),
        )
    return True


class QuotaRepository:
    """Reads of the ledger for /quota and /admin usage, and the admin's reset."""

    def __init__(self, conn: Database) -> None:
        self._conn = conn

    async def would_refuse(
        self,
        guild_id: int,
        user_id: int,
        *,
        images: int,
        cost_usd: float,
        limits: QuotaLimits,
        now: datetime | None = None,
    ) -> Refusal | None:
        """The refusal `JobRepository.admit` would give this request now (a read: the binding
        check is admit's own), so a request that cannot fit is refused before any work."""
        moment = utc(now)

        async def work(tx: Tx) -> Refusal | None:
            return await check_admission(
                tx,
                guild_id=guild_id,
                user_id=user_id,
                images=images,
                cost_micro_usd=to_micro_usd(cost_usd),
                limits=limits,
                now=moment,
            )

        return await self._conn.read(work)

    async def usage(
        self,
        guild_id: int,
        user_id: int,
        window_seconds: int,
        *,
        limit: int | None = None,
        now: datetime | None = None,
    ) -> Usage:
        """Images counted in the rolling window, jobs in flight, and when the next image frees."""
        moment = utc(now)
        window_us = window_seconds * MICROS_PER_SECOND

        async def work(tx: Tx) -> Row:
            row = await tx.fetchrow(
                f"""SELECT
                    (SELECT CAST(COALESCE(SUM(images), 0) AS BIGINT) FROM quota_ledger
                      WHERE guild_id = :guild AND user_id = :user AND created_at > :start
                        AND {_COUNTED}) AS used,
                    (SELECT MIN(created_at) FROM quota_ledger
                      WHERE guild_id = :guild AND user_id = :user AND created_at > :start
                        AND {_COUNTED}) AS oldest,
                    (SELECT COUNT(*) FROM quota_ledger
                      WHERE guild_id = :guild AND user_id = :user
                        AND state = 'reserved' AND images > 0) AS in_flight""",
                {"guild": guild_id, "user": user_id, "start": to_us(moment) - window_us},
            )
            assert row is not None
            return row

        row = await self._conn.read(work)
        oldest = row["oldest"]
        return Usage(
            images_used=row["used"],
            in_flight=row["in_flight"],
            limit=limit,
            next_free_at=None if oldest is None else from_us(oldest + window_us),
        )

    async def guild_spend(self, guild_id: int, *, now: datetime | None = None) -> float:
        """USD reserved or committed this calendar month (UTC) by the server."""
        month = month_key(utc(now))

        async def work(tx: Tx) -> int:
            value = await tx.fetchval(
                "SELECT micro_usd FROM guild_spend WHERE guild_id = ? AND month = ?",
                (guild_id, month),
            )
            return 0 if value is None else int(value)

        return from_micro_usd(await self._conn.read(work))

    async def reset(self, guild_id: int, user_id: int, *, now: datetime | None = None) -> int:
        """Forgive every image the member has used so far; returns how many were forgiven.

        Forgiven images stop counting in the rolling window but remain spent money, and jobs
        still running stay in flight.
        """
        until = to_us(utc(now))

        async def work(tx: Tx) -> int:
            rows = await tx.fetch(
                f"""UPDATE quota_ledger SET forgiven = 1
                     WHERE guild_id = ? AND user_id = ? AND created_at <= ? AND {_COUNTED}
                 RETURNING images""",
                (guild_id, user_id, until),
            )
            return sum(int(row["images"]) for row in rows)

        return await self._conn.write(work)

    async def member_report(
        self, guild_id: int, *, now: datetime | None = None
    ) -> list[MemberUsage]:
        """Images and USD per member today and this month (UTC), biggest spender first."""
        moment = utc(now)

        async def work(tx: Tx) -> list[Row]:
            return await tx.fetch(
                """SELECT user_id,
                          CAST(SUM(CASE WHEN created_at >= :day THEN images ELSE 0 END)
                               AS BIGINT) AS images_day,
                          CAST(SUM(CASE WHEN created_at >= :day THEN cost_micro_usd ELSE 0 END)
                               AS BIGINT) AS micro_day,
                          CAST(SUM(images) AS BIGINT) AS images_month,
                          CAST(SUM(cost_micro_usd) AS BIGINT) AS micro_month
                     FROM quota_ledger
                    WHERE guild_id = :guild AND created_at >= :month AND created_at <= :now
                      AND state <> 'refunded'
                    GROUP BY user_id
                    ORDER BY micro_month DESC, images_month DESC, user_id""",
                {
                    "guild": guild_id,
                    "day": to_us(day_start(moment)),
                    "month": to_us(month_start(moment)),
                    "now": to_us(moment),
                },
            )

        rows = await self._conn.read(work)
        return [
            MemberUsage(
                guild_id=guild_id,
                user_id=row["user_id"],
                images_today=row["images_day"],
                usd_today=from_micro_usd(row["micro_day"]),
                images_month=row["images_month"],
                usd_month=from_micro_usd(row["micro_month"]),
            )
            for row in rows
        ]
