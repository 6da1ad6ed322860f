"""A tiny discord.py bot for the emulator's own tests (not our cogs), and a process entry point.

In-process: `bot = make_tiny_bot()`, add commands to `bot.tree`, `await emu.start_bot(bot)`.
Another process: `python -m emulators.discord_emulator.tinybot` with DISCORD_TOKEN, DISCORD_API_URL
and DISCORD_GATEWAY_URL set (the same names as the real bot's settings).
"""

# The test API takes `timeout=` arguments by design: each wait of a test names its own bound.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import logging
import os
from collections import defaultdict
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.ext import commands

log = logging.getLogger(__name__)


class TinyBot(commands.Bot):
    """Syncs its tree in setup_hook and records what it saw and what failed, for assertions."""

    def __init__(self, *, guild_ids: tuple[int, ...] = (), **options: Any) -> None:
        options.setdefault("intents", discord.Intents.default())
        options.setdefault("guild_ready_timeout", 0.1)
        options.setdefault("command_prefix", commands.when_mentioned)
        options.setdefault("help_command", None)
        super().__init__(**options)
        self.guild_ids = guild_ids
        self.errors: list[BaseException] = []
        self._seen: defaultdict[str, asyncio.Queue[Any]] = defaultdict(asyncio.Queue)
        self.tree.on_error = self._on_tree_error  # type: ignore[method-assign]

    async def setup_hook(self) -> None:
        await self.tree.sync()
        for guild_id in self.guild_ids:
            await self.tree.sync(guild=discord.Object(guild_id))

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        pass  # discord.py sleeps 5 s before a re-IDENTIFY; tests need not

    def record(self, name: str, value: Any) -> None:
        self._seen[name].put_nowait(value)

    async def next(self, name: str, timeout: float = 5.0) -> Any:
        """The next recorded `name` (e.g. "raw_reaction_add"), waiting for it if needed."""
        return await asyncio.wait_for(self._seen[name].get(), timeout)

    async def _on_tree_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        self.errors.append(error)
        self.record("app_command_error", error)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        import sys

        error = sys.exc_info()[1]
        if error is not None:
            self.errors.append(error)
            self.record("error", error)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        self.record("raw_reaction_add", payload)

    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        self.record("raw_reaction_remove", payload)

    async def on_reaction_add(self, reaction: discord.Reaction, user: discord.abc.User) -> None:
        self.record("reaction_add", (reaction, user))

    async def on_message(self, message: discord.Message) -> None:
        self.record("message", message)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        self.record("guild_join", guild)

    async def on_resumed(self) -> None:
        self.record("resumed", True)


class ShardedTinyBot(TinyBot, commands.AutoShardedBot):
    """The same bot as discord.py's AutoShardedBot: it asks GET /gateway/bot how many shards to
    run (unless `shard_count`/`shard_ids` are given) and holds one gateway session per shard."""


def make_tiny_bot(*, sharded: bool = False, **options: Any) -> TinyBot:
    return ShardedTinyBot(**options) if sharded else TinyBot(**options)


def _process_bot() -> TinyBot:
    bot = make_tiny_bot()

    @bot.tree.command(description="Answers pong and this process id")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"pong from {os.getpid()}")

    return bot


async def _main() -> None:
    discord.http.Route.BASE = os.environ["DISCORD_API_URL"].rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["DISCORD_GATEWAY_URL"])
    bot = _process_bot()
    async with bot:
        await bot.start(os.environ["DISCORD_TOKEN"])


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_main())
