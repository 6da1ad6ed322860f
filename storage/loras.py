"""The per-server LoRA registry, with a history of every change."""

from __future__ import annotations

import builtins
import json
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Unpack

from .clock import from_us, to_us, utc
from .dialect import Database, Row, Tx
from .errors import DuplicateName, LoraLimitReached, LoraNotFound
from .models import Lora, LoraAction, LoraChange, LoraEdit, LoraFields

log = logging.getLogger(__name__)


def name_key(name: str) -> str:
    """The form names are compared in: stripped and casefolded (Unicode-aware, unlike NOCASE)."""
    return name.strip().casefold()


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _lora(row: Row) -> Lora:
    return Lora(
        id=row["id"],
        guild_id=row["guild_id"],
        name=row["name"],
        path=row["path"],
        default_scale=row["default_scale"],
        trigger_words=json.loads(row["trigger_words"]),
        description=row["description"],
        nsfw=bool(row["nsfw"]),
        enabled=bool(row["enabled"]),
        version=row["version"],
        uses=row["uses"],
        created_by=row["created_by"],
        created_at=from_us(row["created_at"]),
        updated_at=from_us(row["updated_at"]),
    )


def _change(row: Row) -> LoraChange:
    return LoraChange(
        lora_id=row["lora_id"],
        guild_id=row["guild_id"],
        lora_name=row["lora_name"],
        actor_id=row["actor_id"],
        action=row["action"],
        details=json.loads(row["details"]),
        at=from_us(row["at"]),
    )


def _fields(row: Row) -> LoraFields:
    return LoraFields(
        name=row["name"],
        path=row["path"],
        default_scale=row["default_scale"],
        trigger_words=json.loads(row["trigger_words"]),
        description=row["description"],
        nsfw=bool(row["nsfw"]),
    )


async def _record(
    tx: Tx,
    row: Row,
    *,
    actor_id: int,
    action: LoraAction,
    details: dict[str, Any],
    at: int,
) -> None:
    await tx.execute(
        """INSERT INTO lora_changes
               (lora_id, guild_id, lora_name, name_key, actor_id, action, details, at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            row["id"],
            row["guild_id"],
            row["name"],
            row["name_key"],
            actor_id,
            action,
            json.dumps(details, ensure_ascii=False),
            at,
        ),
    )


async def _find(tx: Tx, guild_id: int, name: str) -> Row | None:
    return await tx.fetchrow(
        "SELECT * FROM loras WHERE guild_id = ? AND name_key = ?", (guild_id, name_key(name))
    )


async def _require(tx: Tx, guild_id: int, name: str) -> Row:
    row = await _find(tx, guild_id, name)
    if row is None:
        raise LoraNotFound(guild_id, name)
    return row


async def insert_lora(
    tx: Tx,
    guild_id: int,
    fields: LoraFields,
    *,
    actor_id: int,
    at: int,
    max_per_guild: int | None,
    noted: dict[str, Any] | None = None,
) -> Row:
    """Register a new LoRA and its "add" history entry (with `noted` added to the details).
    The caller holds the server's registry lock. Raises DuplicateName or LoraLimitReached."""
    existing = await _find(tx, guild_id, fields.name)
    if existing is not None:
        raise DuplicateName(guild_id, fields.name, existing["name"])
    if max_per_guild is not None:
        count = await tx.fetchval("SELECT COUNT(*) FROM loras WHERE guild_id = ?", (guild_id,))
        if count >= max_per_guild:
            raise LoraLimitReached(guild_id, max_per_guild)
    row = await tx.fetchrow(
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
            at,
            at,
        ),
    )
    assert row is not None  # INSERT … RETURNING returns the row
    details = {**fields.model_dump(exclude={"name"}), **(noted or {})}
    await _record(tx, row, actor_id=actor_id, action="add", details=details, at=at)
    return row


async def change_lora(
    tx: Tx,
    row: Row,
    after: LoraFields,
    *,
    actor_id: int,
    at: int,
    noted: dict[str, Any] | None = None,
) -> Row:
    """Give a registered LoRA the fields `after`: a new version with an "edit" history entry
    of what differs (plus `noted`). Nothing differing and nothing noted changes nothing.
    The caller holds the server's registry lock. Raises DuplicateName on a rename clash."""
    old, new = _fields(row).model_dump(), after.model_dump()
    diff: dict[str, Any] = {
        key: {"old": old[key], "new": new[key]} for key in new if new[key] != old[key]
    }
    if not diff and not noted:
        return row
    if name_key(after.name) != row["name_key"]:
        clash = await _find(tx, row["guild_id"], after.name)
        if clash is not None:
            raise DuplicateName(row["guild_id"], after.name, clash["name"])
    updated = await tx.fetchrow(
        """UPDATE loras
              SET name = ?, name_key = ?, path = ?, default_scale = ?, trigger_words = ?,
                  description = ?, description_key = ?, nsfw = ?,
                  version = version + 1, updated_at = ?
            WHERE id = ?
        RETURNING *""",
        (
            after.name,
            name_key(after.name),
            after.path,
            after.default_scale,
            json.dumps(after.trigger_words, ensure_ascii=False),
            after.description,
            after.description.casefold(),
            int(after.nsfw),
            at,
            row["id"],
        ),
    )
    assert updated is not None
    diff.update(noted or {})
    await _record(tx, updated, actor_id=actor_id, action="edit", details=diff, at=at)
    return updated


def _filters(*, include_disabled: bool, include_nsfw: bool) -> str:
    clauses = []
    if not include_disabled:
        clauses.append("AND enabled = 1")
    if not include_nsfw:
        clauses.append("AND nsfw = 0")
    return " ".join(clauses)


class LoraRepository:
    def __init__(self, conn: Database) -> None:
        self._conn = conn

    async def add(
        self,
        guild_id: int,
        name: str,
        path: str,
        *,
        default_scale: float = 1.0,
        trigger_words: Sequence[str] = (),
        description: str = "",
        nsfw: bool = False,
        actor_id: int,
        max_per_guild: int | None = None,
        now: datetime | None = None,
    ) -> Lora:
        """Register a LoRA. Raises DuplicateName (ignoring case) or LoraLimitReached."""
        fields = LoraFields(
            name=name,
            path=path,
            default_scale=default_scale,
            trigger_words=list(trigger_words),
            description=description,
            nsfw=nsfw,
        )
        stamp = to_us(utc(now))

        async def work(tx: Tx) -> Row:
            # One registry change per server at a time: the name check and the count below
            # stay true until the commit (a no-op on SQLite, where writers take turns).
            await tx.lock("loras", guild_id)
            return await insert_lora(
                tx, guild_id, fields, actor_id=actor_id, at=stamp, max_per_guild=max_per_guild
            )

        lora = _lora(await self._conn.write(work))
        log.info("guild %d: LoRA %r added by %d", guild_id, lora.name, actor_id)
        return lora

    async def update(
        self,
        guild_id: int,
        name: str,
        actor_id: int,
        /,
        *,
        now: datetime | None = None,
        **changes: Unpack[LoraEdit],
    ) -> Lora:
        """Change fields (a `name` change renames). Bumps the version and records the change
        when anything actually differs; an update that changes nothing returns the LoRA as is."""
        stamp = to_us(utc(now))

        async def work(tx: Tx) -> Row:
            await tx.lock("loras", guild_id)
            row = await _require(tx, guild_id, name)
            after = LoraFields.model_validate({**_fields(row).model_dump(), **changes})
            return await change_lora(tx, row, after, actor_id=actor_id, at=stamp)

        return _lora(await self._conn.write(work))

    async def set_enabled(
        self,
        guild_id: int,
        name: str,
        enabled: bool,
        *,
        actor_id: int,
        now: datetime | None = None,
    ) -> Lora:
        """Enable or disable; recorded only when it changes something. Version unchanged:
        the LoRA itself is the same, only whether members may use it."""
        stamp = to_us(utc(now))

        async def work(tx: Tx) -> Row:
            await tx.lock("loras", guild_id)
            row = await _require(tx, guild_id, name)
            if bool(row["enabled"]) == enabled:
                return row
            updated = await tx.fetchrow(
                "UPDATE loras SET enabled = ?, updated_at = ? WHERE id = ? RETURNING *",
                (int(enabled), stamp, row["id"]),
            )
            assert updated is not None
            action: LoraAction = "enable" if enabled else "disable"
            await _record(tx, updated, actor_id=actor_id, action=action, details={}, at=stamp)
            return updated

        return _lora(await self._conn.write(work))

    async def remove(
        self, guild_id: int, name: str, *, actor_id: int, now: datetime | None = None
    ) -> Lora:
        """Delete the LoRA; its history stays. Returns what was removed."""
        stamp = to_us(utc(now))

        async def work(tx: Tx) -> Row:
            await tx.lock("loras", guild_id)
            row = await _require(tx, guild_id, name)
            await tx.execute("DELETE FROM loras WHERE id = ?", (row["id"],))
            details = {"path": row["path"], "version": row["version"], "uses": row["uses"]}
            await _record(tx, row, actor_id=actor_id, action="remove", details=details, at=stamp)
            return row

        lora = _lora(await self._conn.write(work))
        log.info("guild %d: LoRA %r removed by %d", guild_id, lora.name, actor_id)
        return lora

    async def get(self, guild_id: int, name: str) -> Lora | None:
        """The LoRA with this name on the server, ignoring case."""
        row = await self._conn.read(lambda tx: _find(tx, guild_id, name))
        return None if row is None else _lora(row)

    async def get_by_id(self, lora_id: int) -> Lora | None:
        rows = await self._rows("SELECT * FROM loras WHERE id = ?", (lora_id,))
        return _lora(rows[0]) if rows else None

    async def list(
        self,
        guild_id: int,
        *,
        include_disabled: bool = False,
        include_nsfw: bool = False,
        offset: int = 0,
        limit: int = 25,
    ) -> builtins.list[Lora]:
        """One page of the server's LoRAs in name order."""
        where = _filters(include_disabled=include_disabled, include_nsfw=include_nsfw)
        rows = await self._rows(
            f"SELECT * FROM loras WHERE guild_id = ? {where} ORDER BY name_key LIMIT ? OFFSET ?",
            (guild_id, limit, offset),
        )
        return [_lora(row) for row in rows]

    async def count(
        self, guild_id: int, *, include_disabled: bool = False, include_nsfw: bool = False
    ) -> int:
        where = _filters(include_disabled=include_disabled, include_nsfw=include_nsfw)
        rows = await self._rows(
            f"SELECT COUNT(*) FROM loras WHERE guild_id = ? {where}", (guild_id,)
        )
        return int(rows[0][0])

    async def search(
        self,
        guild_id: int,
        query: str,
        *,
        include_disabled: bool = False,
        include_nsfw: bool = False,
        limit: int = 25,
    ) -> builtins.list[Lora]:
        """Autocomplete: names starting with `query`, then names containing it, then
        descriptions containing it; alphabetical within each group; at most `limit`."""
        where = _filters(include_disabled=include_disabled, include_nsfw=include_nsfw)
        needle = _like_escape(name_key(query))
        rows = await self._rows(
            f"""SELECT *,
                       CASE WHEN name_key LIKE :prefix ESCAPE '\\' THEN 0
                            WHEN name_key LIKE :infix ESCAPE '\\' THEN 1
                            ELSE 2 END AS rank
                  FROM loras
                 WHERE guild_id = :guild {where}
                   AND (name_key LIKE :infix ESCAPE '\\' OR description_key LIKE :infix ESCAPE '\\')
                 ORDER BY rank, name_key
                 LIMIT :limit""",
            {"guild": guild_id, "prefix": needle + "%", "infix": f"%{needle}%", "limit": limit},
        )
        return [_lora(row) for row in rows]

    async def history(self, guild_id: int, name: str) -> builtins.list[LoraChange]:
        """Every change of the LoRA now called `name`, or else of the last one removed under
        that name; oldest first."""

        async def work(tx: Tx) -> builtins.list[Row]:
            row = await _find(tx, guild_id, name)
            if row is not None:
                lora_id = row["id"]
            else:
                last = await tx.fetchval(
                    """SELECT lora_id FROM lora_changes WHERE guild_id = ? AND name_key = ?
                        ORDER BY id DESC LIMIT 1""",
                    (guild_id, name_key(name)),
                )
                if last is None:
                    return []
                lora_id = last
            return await tx.fetch(
                "SELECT * FROM lora_changes WHERE guild_id = ? AND lora_id = ? ORDER BY id",
                (guild_id, lora_id),
            )

        return [_change(row) for row in await self._conn.read(work)]

    async def increment_uses(self, lora_ids: Iterable[int]) -> None:
        """Count one more use of each distinct LoRA (call once per delivered job)."""
        ids = sorted(set(lora_ids))
        if not ids:
            return
        marks = ", ".join("?" * len(ids))

        async def work(tx: Tx) -> None:
            await tx.execute(f"UPDATE loras SET uses = uses + 1 WHERE id IN ({marks})", ids)

        await self._conn.write(work)

    async def _rows(self, sql: str, args: tuple[Any, ...] | dict[str, Any]) -> builtins.list[Row]:
        async def work(tx: Tx) -> builtins.list[Row]:
            return await tx.fetch(sql, args)

        return await self._conn.read(work)
