"""Spend over time and the budget alerts already sent.

The month's spend per day and the images per LoRA feed `/admin usage`'s chart; both read the
quota ledger like the member report does (reserved and committed rows count, refunded ones do
not), so the chart adds up to the month's spend that admission checks against the budget.
Alerts are claimed before they are posted: a row per (server, month, kind) that only one
caller, in any process, can insert.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import date, datetime

from .clock import MICROS_PER_SECOND, from_micro_usd, from_us, month_start, to_us, utc
from .dialect import Database, Row, Tx
from .models import DaySpend, LoraImages

_MICROS_PER_DAY = 86_400 * MICROS_PER_SECOND

# The month's ledger rows that still count as spend (the member report's rule).
_MONTH_ROWS = """quota_ledger q
    WHERE q.guild_id = :guild AND q.created_at >= :month AND q.created_at <= :now
      AND q.state <> 'refunded'"""


class SpendRepository:
    def __init__(self, conn: Database) -> None:
        self._conn = conn

    def _month(self, guild_id: int, now: datetime | None) -> dict[str, int]:
        moment = utc(now)
        return {"guild": guild_id, "month": to_us(month_start(moment)), "now": to_us(moment)}

    async def daily(self, guild_id: int, *, now: datetime | None = None) -> list[DaySpend]:
        """USD and images per UTC day of the current month, days without spend left out."""
        params = self._month(guild_id, now)

        async def work(tx: Tx) -> list[Row]:
            return await tx.fetch(
                f"""SELECT q.created_at / {_MICROS_PER_DAY} AS day,
                           CAST(SUM(q.cost_micro_usd) AS BIGINT) AS micro,
                           CAST(SUM(q.images) AS BIGINT) AS images
                      FROM {_MONTH_ROWS}
                     GROUP BY q.created_at / {_MICROS_PER_DAY}
                     ORDER BY day""",
                params,
            )

        return [
            DaySpend(
                day=_day(int(row["day"])),
                usd=from_micro_usd(int(row["micro"])),
                images=int(row["images"]),
            )
            for row in await self._conn.read(work)
        ]

    async def top_loras(
        self, guild_id: int, *, limit: int = 5, now: datetime | None = None
    ) -> list[LoraImages]:
        """The LoRAs used for the most images this month, most first; a removed LoRA keeps
        the last name it had."""
        params = self._month(guild_id, now)

        async def work(tx: Tx) -> tuple[Counter[int], dict[int, str]]:
            counts: Counter[int] = Counter()
            rows = await tx.fetch(
                """SELECT j.lora_ids, q.images
                     FROM quota_ledger q JOIN jobs j ON j.id = q.job_id
                    WHERE q.guild_id = :guild AND q.created_at >= :month
                      AND q.created_at <= :now AND q.state <> 'refunded'""",
                params,
            )
            for row in rows:
                for lora_id in json.loads(row["lora_ids"]):
                    counts[int(lora_id)] += int(row["images"])
            top = [lora_id for lora_id, _ in counts.most_common(limit)]
            names: dict[int, str] = {}
            if top:
                marks = ", ".join("?" for _ in top)
                for row in await tx.fetch(
                    f"SELECT lora_id, lora_name FROM lora_changes WHERE lora_id IN ({marks})"
                    " ORDER BY id",
                    top,
                ):
                    names[int(row["lora_id"])] = str(row["lora_name"])
                for row in await tx.fetch(f"SELECT id, name FROM loras WHERE id IN ({marks})", top):
                    names[int(row["id"])] = str(row["name"])
            return Counter({k: counts[k] for k in top}), names

        counts, names = await self._conn.read(work)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return [
            LoraImages(lora_id=lora_id, name=names.get(lora_id, f"LoRA #{lora_id}"), images=n)
            for lora_id, n in ranked
        ]

    async def claim_alerts(
        self, guild_id: int, month: str, kinds: Sequence[str], *, now: datetime | None = None
    ) -> list[str]:
        """Record these alerts as sent; returns the ones nobody had claimed before (only
        those may be posted)."""
        stamp = to_us(utc(now))

        async def work(tx: Tx) -> list[str]:
            won: list[str] = []
            for kind in kinds:
                row = await tx.fetchrow(
                    """INSERT INTO budget_alerts (guild_id, month, kind, sent_at)
                       VALUES (?, ?, ?, ?)
                       ON CONFLICT (guild_id, month, kind) DO NOTHING
                       RETURNING kind""",
                    (guild_id, month, kind, stamp),
                )
                if row is not None:
                    won.append(str(row["kind"]))
            return won

        return await self._conn.write(work)

    async def release_alerts(self, guild_id: int, month: str, kinds: Sequence[str]) -> None:
        """Forget claims whose alert could not be posted, so a later check tries again."""

        async def work(tx: Tx) -> None:
            for kind in kinds:
                await tx.execute(
                    "DELETE FROM budget_alerts WHERE guild_id = ? AND month = ? AND kind = ?",
                    (guild_id, month, kind),
                )

        await self._conn.write(work)

    async def sent_alerts(self, guild_id: int, month: str) -> list[str]:
        async def work(tx: Tx) -> list[str]:
            rows = await tx.fetch(
                "SELECT kind FROM budget_alerts WHERE guild_id = ? AND month = ? ORDER BY kind",
                (guild_id, month),
            )
            return [str(row["kind"]) for row in rows]

        return await self._conn.read(work)


def _day(index: int) -> date:
    return from_us(index * _MICROS_PER_DAY).date()
