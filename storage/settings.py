"""Server settings, per-channel overrides, and a small key/value store for the bot itself."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from .clock import to_us, utc
from .dialect import Database, Tx
from .models import ChannelSettings, EffectiveSettings, GuildSettings

T = TypeVar("T")


def _guild(text: str | None) -> GuildSettings:
    return GuildSettings() if text is None else GuildSettings.model_validate_json(text)


def _channel(text: str | None) -> ChannelSettings:
    return ChannelSettings() if text is None else ChannelSettings.model_validate_json(text)


async def _save_guild(tx: Tx, guild_id: int, settings: GuildSettings, at: int) -> None:
    await tx.execute(
        """INSERT INTO guild_settings (guild_id, settings, updated_at) VALUES (?, ?, ?)
           ON CONFLICT (guild_id)
           DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at""",
        (guild_id, settings.model_dump_json(), at),
    )


def _first(override: T | None, default: T) -> T:
    return default if override is None else override


def resolve(
    guild_id: int, channel_id: int, guild: GuildSettings, channel: ChannelSettings
) -> EffectiveSettings:
    """What applies in one channel: its overrides where set, the server's settings elsewhere."""
    return EffectiveSettings(
        guild_id=guild_id,
        channel_id=channel_id,
        channel_allowed=guild.channel_allowed(channel_id),
        nsfw_policy=_first(channel.nsfw_policy, guild.nsfw_policy),
        rerun_policy=_first(channel.rerun_policy, guild.rerun_policy),
        max_images_per_job=_first(channel.max_images_per_job, guild.max_images_per_job),
        max_steps=_first(channel.max_steps, guild.max_steps),
        guild=guild,
        channel=channel,
    )


class SettingsRepository:
    def __init__(self, conn: Database) -> None:
        self._conn = conn

    async def get(self, guild_id: int) -> GuildSettings:
        """The server's settings; defaults when it never saved any."""

        async def work(tx: Tx) -> str | None:
            value = await tx.fetchval(
                "SELECT settings FROM guild_settings WHERE guild_id = ?", (guild_id,)
            )
            return None if value is None else str(value)

        return _guild(await self._conn.read(work))

    async def save(
        self, guild_id: int, settings: GuildSettings, *, now: datetime | None = None
    ) -> None:
        stamp = to_us(utc(now))
        # model_copy(update=...) skips validation; never store what the next read can't load.
        settings = GuildSettings.model_validate(settings.model_dump())
        await self._conn.write(lambda tx: _save_guild(tx, guild_id, settings, stamp))

    async def update(
        self,
        guild_id: int,
        change: Callable[[GuildSettings], GuildSettings],
        *,
        now: datetime | None = None,
    ) -> GuildSettings:
        """Read, change and save in one transaction, so two admins never undo each other.
        `change` must be a quick pure function (it runs inside the transaction)."""
        stamp = to_us(utc(now))

        async def work(tx: Tx) -> GuildSettings:
            # Two admins changing settings at once take turns (a no-op on SQLite).
            await tx.lock("settings", guild_id)
            value = await tx.fetchval(
                "SELECT settings FROM guild_settings WHERE guild_id = ?", (guild_id,)
            )
            changed = GuildSettings.model_validate(
                change(_guild(None if value is None else str(value))).model_dump()
            )
            await _save_guild(tx, guild_id, changed, stamp)
            return changed

        return await self._conn.write(work)

    async def get_channel(self, guild_id: int, channel_id: int) -> ChannelSettings:
        async def work(tx: Tx) -> str | None:
            value = await tx.fetchval(
                "SELECT settings FROM channel_settings WHERE guild_id = ? AND channel_id = ?",
                (guild_id, channel_id),
            )
            return None if value is None else str(value)

        return _channel(await self._conn.read(work))

    async def save_channel(
        self,
        guild_id: int,
        channel_id: int,
        settings: ChannelSettings,
        *,
        now: datetime | None = None,
    ) -> None:
        """Store the channel's overrides; all-None overrides delete the row."""
        stamp = to_us(utc(now))

        async def work(tx: Tx) -> None:
            if settings == ChannelSettings():
                await tx.execute(
                    "DELETE FROM channel_settings WHERE guild_id = ? AND channel_id = ?",
                    (guild_id, channel_id),
                )
                return
            await tx.execute(
                """INSERT INTO channel_settings (guild_id, channel_id, settings, updated_at)
                   VALUES (?, ?, ?, ?)
                   ON CONFLICT (guild_id, channel_id)
                   DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at""",
                (guild_id, channel_id, settings.model_dump_json(), stamp),
            )

        await self._conn.write(work)

    async def effective(self, guild_id: int, channel_id: int) -> EffectiveSettings:
        """Server settings with the channel's overrides applied, read in one statement.
        Pass a thread's parent channel: rules and overrides are set on channels."""

        async def work(tx: Tx) -> tuple[str | None, str | None]:
            row = await tx.fetchrow(
                """SELECT (SELECT settings FROM guild_settings WHERE guild_id = :guild),
                          (SELECT settings FROM channel_settings
                            WHERE guild_id = :guild AND channel_id = :channel)""",
                {"guild": guild_id, "channel": channel_id},
            )
            assert row is not None  # a SELECT without FROM has one row
            return row[0], row[1]

        guild_text, channel_text = await self._conn.read(work)
        return resolve(guild_id, channel_id, _guild(guild_text), _channel(channel_text))

    async def get_meta(self, key: str) -> str | None:
        async def work(tx: Tx) -> str | None:
            value = await tx.fetchval("SELECT value FROM meta WHERE key = ?", (key,))
            return None if value is None else str(value)

        return await self._conn.read(work)

    async def claim_meta(self, key: str, value: str) -> bool:
        """Write the key only if it is not there yet; True when this call wrote it (a claim
        that two processes, or two restarts, can't both win)."""

        async def work(tx: Tx) -> bool:
            written = await tx.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                (key, value),
            )
            return written == 1

        return await self._conn.write(work)

    async def take_meta(self, key: str) -> str | None:
        """Read and delete a value in one step (one-shot records such as form drafts)."""

        async def work(tx: Tx) -> str | None:
            value = await tx.fetchval("DELETE FROM meta WHERE key = ? RETURNING value", (key,))
            return None if value is None else str(value)

        return await self._conn.write(work)

    async def set_meta(self, key: str, value: str) -> None:
        async def work(tx: Tx) -> None:
            await tx.execute(
                """INSERT INTO meta (key, value) VALUES (?, ?)
                   ON CONFLICT (key) DO UPDATE SET value = excluded.value""",
                (key, value),
            )

        await self._conn.write(work)

    async def alert_channels(self) -> dict[int, int]:
        """Every server that named a budget-alerts channel: server id → channel id."""

        async def work(tx: Tx) -> dict[int, int]:
            # Read as JSON here rather than with SQL's JSON functions, which differ per
            # backend; one row per server that saved settings.
            rows = await tx.fetch("SELECT guild_id, settings FROM guild_settings")
            found = {int(row["guild_id"]): _guild(str(row["settings"])) for row in rows}
            return {
                guild: settings.alerts_channel_id
                for guild, settings in found.items()
                if settings.alerts_channel_id is not None
            }

        return await self._conn.read(work)
