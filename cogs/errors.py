"""The one answer to a failed command: a member error in the member's words, anything else a
short apology that says nothing was charged (the traceback goes to the log). Views, modals and
persistent buttons answer through the same function (`cogs/utils/ui.py`)."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils.replies import GENERIC_FAILURE, answer_error, reply
from jobs.errors import MemberError

log = logging.getLogger(__name__)


def describe(error: app_commands.AppCommandError) -> str:
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command works in a server, not in direct messages."
    if isinstance(error, app_commands.MissingPermissions):
        return "You need the " + ", ".join(error.missing_permissions) + " permission for this."
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down: try again in {error.retry_after:.0f} s."
    if isinstance(error, app_commands.TransformerError):
        return f"`{error.value}` is not a valid {error.type.name.lower()} here."
    if isinstance(error, app_commands.CheckFailure):
        return str(error) or "You can't use this command here."
    return GENERIC_FAILURE


class Errors(commands.Cog):
    def __init__(self, bot: commands.AutoShardedBot) -> None:
        self.bot = bot
        self._previous = bot.tree.on_error
        bot.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]

    async def cog_unload(self) -> None:
        self.bot.tree.on_error = self._previous  # type: ignore[method-assign]

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        original = getattr(error, "original", None)
        if isinstance(original, MemberError):
            await answer_error(interaction, original)
            return
        text = describe(error)
        if text is GENERIC_FAILURE:
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error("command %s failed", command, exc_info=error)
        await reply(interaction, text)


async def setup(bot: commands.AutoShardedBot) -> None:
    await bot.add_cog(Errors(bot))
