"""A server's presets: named recipes (LoRAs, scales, a prompt template, parameters) as JSON."""

from __future__ import annotations

import builtins
import json
import logging
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from .clock import from_us, to_us, utc
from .dialect import Database, Row, Tx
from .errors import StorageError
from .loras import _like_escape, name_key
from .models import UtcDatetime

log = logging.getLogger(__name__)


class Preset(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    guild_id: int
    name: str
    recipe: dict[str, Any]
    created_by: int
    created_at: UtcDatetime
    updated_at: UtcDatetime


class PresetNotFound(StorageError):
    def __init__(self, guild_id: int, name: str) -> None:
        self.guild_id = guild_id
        self.name = name
        super().__init__(f"no preset named {name!r} on this server")


class DuplicatePreset(StorageError):
    def __init__(self, guild_id: int, name: str, existing: str) -> None:
        self.guild_id = guild_id
        self.name = name
        self.existing = existing
        super().__init__(f"a preset named {existing!r} already exists on this server")


class PresetLimitReached(StorageError):
    def __init__(self, guild_id: int, limit: int) -> None:
        self.guild_id = guild_id
        self.limit = limit
        super().__init__(f"this server already has {limit} presets")


def _preset(row: Row) -> Preset:
    return Preset(
        id=row["id"],
        guild_id=row["guild_id"],
        name=row["name"],
        recipe=json.loads(row["recipe"]),
        created_by=row["created_by"],
        created_at=from_us(row["created_at"]),
        updated_at=from_us(row["updated_at"]),
    )


async def _find(tx: Tx, guild_id: int, name: str) -> Row | None:
    return await tx.fetchrow(
        "SELECT * FROM presets WHERE guild_id = ? AND name_key = ?", (guild_id, name_key(name))
    )


def _dumps(recipe: dict[str, Any]) -> str:
    return json.dumps(recipe, separators=(",", ":"), ensure_ascii=False)


class PresetRepository:
    def __init__(self, conn: Database) -> None:
        self._conn = conn

    async def add(
        self,
        guild_id: int,
        name: str,
        recipe: dict[str, Any],
        *,
        actor_id: int,
        max_per_guild: int | None = None,
        now: datetime | None = None,
    ) -> Preset:
        """Raises DuplicatePreset (names ignore case) or PresetLimitReached."""
        stamp = to_us(utc(now))
        name = name.strip()

        async def work(tx: Tx) -> Row:
            await tx.lock("presets", guild_id)  # the name check and the count hold to the end
            existing = await _find(tx, guild_id, name)
            if existing is not None:
                raise DuplicatePreset(guild_id, name, existing["name"])
            if max_per_guild is not None:
                count = await tx.fetchval(
                    "SELECT COUNT(*) FROM presets WHERE guild_id = ?", (guild_id,)
                )
                if count >= max_per_guild:
                    raise PresetLimitReached(guild_id, max_per_guild)
            row = await tx.fetchrow(
                """INSERT INTO presets (guild_id, name, name_key, recipe, created_by,
                                        created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *""",
                (guild_id, name, name_key(name), _dumps(recipe), actor_id, stamp, stamp),
            )
            assert row is not None  # INSERT … RETURNING returns the row
            return row

        preset = _preset(await self._conn.write(work))
        log.info("guild %d: preset %r added by %d", guild_id, preset.name, actor_id)
        return preset

    async def update(
        self,
        guild_id: int,
        name: str,
        *,
        new_name: str | None = None,
        recipe: dict[str, Any],
        now: datetime | None = None,
    ) -> Preset:
        """Replace the recipe (and rename): raises PresetNotFound or DuplicatePreset."""
        stamp = to_us(utc(now))

        async def work(tx: Tx) -> Row:
            await tx.lock("presets", guild_id)
            row = await _find(tx, guild_id, name)
            if row is None:
                raise PresetNotFound(guild_id, name)
            renamed = (new_name or row["name"]).strip()
            if name_key(renamed) != row["name_key"]:
                clash = await _find(tx, guild_id, renamed)
                if clash is not None:
                    raise DuplicatePreset(guild_id, renamed, clash["name"])
            updated = await tx.fetchrow(
                """UPDATE presets SET name = ?, name_key = ?, recipe = ?, updated_at = ?
                    WHERE id = ? RETURNING *""",
                (renamed, name_key(renamed), _dumps(recipe), stamp, row["id"]),
            )
            assert updated is not None
            return updated

        return _preset(await self._conn.write(work))

    async def remove(self, guild_id: int, name: str) -> Preset:
        async def work(tx: Tx) -> Row:
            await tx.lock("presets", guild_id)
            row = await _find(tx, guild_id, name)
            if row is None:
                raise PresetNotFound(guild_id, name)
            await tx.execute("DELETE FROM presets WHERE id = ?", (row["id"],))
            return row

        preset = _preset(await self._conn.write(work))
        log.info("guild %d: preset %r removed", guild_id, preset.name)
        return preset

    async def get(self, guild_id: int, name: str) -> Preset | None:
        row = await self._conn.read(lambda tx: _find(tx, guild_id, name))
        return None if row is None else _preset(row)

    async def list(self, guild_id: int, *, limit: int = 100) -> builtins.list[Preset]:
        """The server's presets in name order."""

        async def work(tx: Tx) -> builtins.list[Row]:
            return await tx.fetch(
                "SELECT * FROM presets WHERE guild_id = ? ORDER BY name_key LIMIT ?",
                (guild_id, limit),
            )

        return [_preset(row) for row in await self._conn.read(work)]

    async def search(self, guild_id: int, query: str, *, limit: int = 25) -> builtins.list[Preset]:
        """Autocomplete: names starting with `query` first, then names containing it."""
        needle = _like_escape(name_key(query))

        async def work(tx: Tx) -> builtins.list[Row]:
            return await tx.fetch(
                """SELECT * FROM presets
                    WHERE guild_id = :guild AND name_key LIKE :infix ESCAPE '\\'
                    ORDER BY CASE WHEN name_key LIKE :prefix ESCAPE '\\' THEN 0 ELSE 1 END,
                             name_key
                    LIMIT :limit""",
                {"guild": guild_id, "prefix": needle + "%", "infix": f"%{needle}%", "limit": limit},
            )

        return [_preset(row) for row in await self._conn.read(work)]
