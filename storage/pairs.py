"""A server's draft set of training pairs, in the order they were added."""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .clock import from_us, to_us, utc
from .dialect import Database, Row, Tx
from .models import TrainingPair


def _pair(row: Row) -> TrainingPair:
    return TrainingPair(
        id=row["id"],
        guild_id=row["guild_id"],
        inputs=json.loads(row["inputs"]),
        expected=json.loads(row["expected"]),
        instruction=row["instruction"],
        added_by=row["added_by"],
        created_at=from_us(row["created_at"]),
    )


class PairRepository:
    def __init__(self, conn: Database) -> None:
        self._conn = conn

    async def add(
        self,
        guild_id: int,
        inputs: Sequence[dict[str, Any]],
        expected: dict[str, Any],
        *,
        instruction: str | None,
        added_by: int,
        max_pairs: int | None = None,
        now: datetime | None = None,
    ) -> tuple[TrainingPair, int] | None:
        """Append a pair; returns it with its 1-based position, or None when the set already
        holds `max_pairs` (checked in the same transaction)."""
        stamp = to_us(utc(now))

        async def work(tx: Tx) -> tuple[Row, int] | None:
            # The count holds until the commit, in any number of processes.
            await tx.lock("pairs", guild_id)
            count = await tx.fetchval(
                "SELECT COUNT(*) FROM training_pairs WHERE guild_id = ?", (guild_id,)
            )
            if max_pairs is not None and count >= max_pairs:
                return None
            row = await tx.fetchrow(
                """INSERT INTO training_pairs (guild_id, inputs, expected, instruction,
                                               added_by, created_at)
                   VALUES (?, ?, ?, ?, ?, ?) RETURNING *""",
                (
                    guild_id,
                    json.dumps(list(inputs), ensure_ascii=False),
                    json.dumps(expected, ensure_ascii=False),
                    instruction,
                    added_by,
                    stamp,
                ),
            )
            assert row is not None  # INSERT … RETURNING returns the row
            return row, int(count) + 1

        outcome = await self._conn.write(work)
        return None if outcome is None else (_pair(outcome[0]), outcome[1])

    async def list(
        self, guild_id: int, *, offset: int = 0, limit: int | None = None
    ) -> builtins.list[TrainingPair]:
        """The set in the order pairs were added (position 1 first)."""
        # LIMIT ALL is PostgreSQL's; a bound past any set's size reads the same on both.
        bound = 2**62 if limit is None else limit

        async def work(tx: Tx) -> builtins.list[Row]:
            return await tx.fetch(
                "SELECT * FROM training_pairs WHERE guild_id = ? ORDER BY id LIMIT ? OFFSET ?",
                (guild_id, bound, offset),
            )

        return [_pair(row) for row in await self._conn.read(work)]

    async def count(self, guild_id: int) -> int:
        async def work(tx: Tx) -> int:
            return int(
                await tx.fetchval(
                    "SELECT COUNT(*) FROM training_pairs WHERE guild_id = ?", (guild_id,)
                )
            )

        return await self._conn.read(work)

    async def remove(self, guild_id: int, position: int) -> TrainingPair | None:
        """Remove the pair at this 1-based position; None when there is none."""
        if position < 1:
            return None

        async def work(tx: Tx) -> Row | None:
            await tx.lock("pairs", guild_id)  # positions stay put until the commit
            row = await tx.fetchrow(
                "SELECT * FROM training_pairs WHERE guild_id = ? ORDER BY id LIMIT 1 OFFSET ?",
                (guild_id, position - 1),
            )
            if row is not None:
                await tx.execute("DELETE FROM training_pairs WHERE id = ?", (row["id"],))
            return row

        row = await self._conn.write(work)
        return None if row is None else _pair(row)

    async def clear(self, guild_id: int) -> int:
        """Empty the server's set; returns how many pairs it held."""

        async def work(tx: Tx) -> int:
            await tx.lock("pairs", guild_id)
            return await tx.execute("DELETE FROM training_pairs WHERE guild_id = ?", (guild_id,))

        return await self._conn.write(work)
