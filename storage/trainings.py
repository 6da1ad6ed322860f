"""LoRAs made by trainings: registered once per training, in one transaction with their
history and recipe (the `lora_trainings` table; see migration 0005)."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from .clock import from_us, to_us, utc
from .dialect import Database, Row, Tx
from .errors import DuplicateName
from .loras import _find, _lora, change_lora, insert_lora
from .models import Lora, LoraFields, LoraTraining

log = logging.getLogger(__name__)


def _training(row: Row) -> LoraTraining:
    return LoraTraining(
        job_id=row["job_id"],
        lora_id=row["lora_id"],
        guild_id=row["guild_id"],
        recipe=json.loads(row["recipe"]),
        at=from_us(row["at"]),
    )


class TrainingRepository:
    def __init__(self, conn: Database) -> None:
        self._conn = conn

    async def register(
        self,
        guild_id: int,
        job_id: int,
        fields: LoraFields,
        *,
        replace: bool,
        recipe: dict[str, Any],
        trained: dict[str, Any],
        actor_id: int,
        max_per_guild: int | None = None,
        now: datetime | None = None,
    ) -> tuple[Lora | None, bool]:
        """Register what training `job_id` made: a new LoRA, or (`replace`) the LoRA of that
        name changed in place, its history kept. The history entry carries `trained` (a short
        summary) and `recipe` is kept for the LoRA's card.

        Once per training: repeating it returns (the LoRA it registered, False), or (None,
        False) if that LoRA was removed since. Otherwise (the LoRA, True). Raises DuplicateName
        when the name is taken and `replace` is off, LoraLimitReached when a new LoRA would
        pass `max_per_guild`."""
        stamp = to_us(utc(now))

        async def work(tx: Tx) -> tuple[Row | None, bool]:
            # The registry lock first (docs/storage.md): two deliveries of one training, in two
            # processes, then find each other's row below.
            await tx.lock("loras", guild_id)
            done = await tx.fetchrow(
                "SELECT lora_id FROM lora_trainings WHERE job_id = ?", (job_id,)
            )
            if done is not None:
                again = await tx.fetchrow("SELECT * FROM loras WHERE id = ?", (done["lora_id"],))
                return again, False
            noted = {"trained": trained}
            existing = await _find(tx, guild_id, fields.name)
            if existing is None:
                row = await insert_lora(
                    tx,
                    guild_id,
                    fields,
                    actor_id=actor_id,
                    at=stamp,
                    max_per_guild=max_per_guild,
                    noted=noted,
                )
            elif replace:
                # The same LoRA (name, id, uses, enabled) with the new weights: a new version.
                after = fields.model_copy(update={"name": existing["name"]})
                row = await change_lora(
                    tx, existing, after, actor_id=actor_id, at=stamp, noted=noted
                )
            else:
                raise DuplicateName(guild_id, fields.name, existing["name"])
            await tx.execute(
                """INSERT INTO lora_trainings (job_id, lora_id, guild_id, recipe, at)
                   VALUES (?, ?, ?, ?, ?)""",
                (job_id, row["id"], guild_id, json.dumps(recipe, ensure_ascii=False), stamp),
            )
            return row, True

        row, fresh = await self._conn.write(work)
        lora = None if row is None else _lora(row)
        if fresh and lora is not None:
            log.info("guild %d: LoRA %r registered by training job %d", guild_id, lora.name, job_id)
        return lora, fresh

    async def latest(self, lora_id: int) -> LoraTraining | None:
        """The newest training that made or retrained this LoRA."""

        async def work(tx: Tx) -> Row | None:
            return await tx.fetchrow(
                "SELECT * FROM lora_trainings WHERE lora_id = ? ORDER BY at DESC, job_id DESC"
                " LIMIT 1",
                (lora_id,),
            )

        row = await self._conn.read(work)
        return None if row is None else _training(row)

    async def of_job(self, job_id: int) -> LoraTraining | None:
        async def work(tx: Tx) -> Row | None:
            return await tx.fetchrow("SELECT * FROM lora_trainings WHERE job_id = ?", (job_id,))

        row = await self._conn.read(work)
        return None if row is None else _training(row)
