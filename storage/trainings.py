"""LoRAs made by trainings: registered once per training, in one transaction with their
history and recipe (the `lora_trainings` table; see migration 0005)."""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import datetime
from typing import Any

from .clock import from_us, to_us, utc
from .connection import Connection
from .errors import DuplicateName, LoraLimitReached
from .loras import _find, _lora, _record, name_key
from .models import Lora, LoraFields, LoraTraining

log = logging.getLogger(__name__)


def _training(row: sqlite3.Row) -> LoraTraining:
    return LoraTraining(
        job_id=row["job_id"],
        lora_id=row["lora_id"],
        guild_id=row["guild_id"],
        recipe=json.loads(row["recipe"]),
        at=from_us(row["at"]),
    )


class TrainingRepository:
    def __init__(self, conn: Connection) -> None:
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

        def work(conn: sqlite3.Connection) -> tuple[sqlite3.Row | None, bool]:
            done = conn.execute(
                "SELECT lora_id FROM lora_trainings WHERE job_id = ?", (job_id,)
            ).fetchone()
            if done is not None:
                again: sqlite3.Row | None = conn.execute(
                    "SELECT * FROM loras WHERE id = ?", (done["lora_id"],)
                ).fetchone()
                return again, False
            existing = _find(conn, guild_id, fields.name)
            if existing is not None and not replace:
                raise DuplicateName(guild_id, fields.name, existing["name"])
            if existing is None:
                row = _insert(conn, guild_id, fields, actor_id, stamp, max_per_guild)
                details = {**fields.model_dump(exclude={"name"}), "trained": trained}
                _record(conn, row, actor_id=actor_id, action="add", details=details, at=stamp)
            else:
                row = _retrain(conn, existing, fields, stamp)
                old, new = dict(existing), dict(row)
                diff: dict[str, Any] = {
                    key: {"old": _plain(key, old[key]), "new": _plain(key, new[key])}
                    for key in ("path", "default_scale", "trigger_words", "description", "nsfw")
                    if old[key] != new[key]
                }
                diff["trained"] = trained
                _record(conn, row, actor_id=actor_id, action="edit", details=diff, at=stamp)
            conn.execute(
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

        def work(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row: sqlite3.Row | None = conn.execute(
                "SELECT * FROM lora_trainings WHERE lora_id = ? ORDER BY at DESC, job_id DESC"
                " LIMIT 1",
                (lora_id,),
            ).fetchone()
            return row

        row = await self._conn.read(work)
        return None if row is None else _training(row)

    async def of_job(self, job_id: int) -> LoraTraining | None:
        def work(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row: sqlite3.Row | None = conn.execute(
                "SELECT * FROM lora_trainings WHERE job_id = ?", (job_id,)
            ).fetchone()
            return row

        row = await self._conn.read(work)
        return None if row is None else _training(row)


def _plain(key: str, value: Any) -> Any:
    """A column as the history shows it (as LoraFields would dump it)."""
    if key == "trigger_words":
        return json.loads(value)
    if key == "nsfw":
        return bool(value)
    return value


def _insert(
    conn: sqlite3.Connection,
    guild_id: int,
    fields: LoraFields,
    actor_id: int,
    stamp: int,
    max_per_guild: int | None,
) -> sqlite3.Row:
    if max_per_guild is not None:
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM loras WHERE guild_id = ?", (guild_id,)
        ).fetchone()
        if count >= max_per_guild:
            raise LoraLimitReached(guild_id, max_per_guild)
    row: sqlite3.Row = conn.execute(
        """INSERT INTO loras (guild_id, name, name_key, path, default_scale, trigger_words,
                              description, description_key, nsfw, created_by, created_at,
                              updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           RETURNING *""",
        (
            guild_id,
            fields.name,
            name_key(fields.name),
            fields.path,
            fields.default_scale,
            json.dumps(fields.trigger_words, ensure_ascii=False),
            fields.description,
            fields.description.casefold(),
            int(fields.nsfw),
            actor_id,
            stamp,
            stamp,
        ),
    ).fetchone()
    return row


def _retrain(
    conn: sqlite3.Connection, existing: sqlite3.Row, fields: LoraFields, stamp: int
) -> sqlite3.Row:
    """The same LoRA (name, id, uses, enabled) with the new weights and words: a new version."""
    row: sqlite3.Row = conn.execute(
        """UPDATE loras
              SET path = ?, default_scale = ?, trigger_words = ?, description = ?,
                  description_key = ?, nsfw = ?, version = version + 1, updated_at = ?
            WHERE id = ?
        RETURNING *""",
        (
            fields.path,
            fields.default_scale,
            json.dumps(fields.trigger_words, ensure_ascii=False),
            fields.description,
            fields.description.casefold(),
            int(fields.nsfw),
            stamp,
            existing["id"],
        ),
    ).fetchone()
    return row
