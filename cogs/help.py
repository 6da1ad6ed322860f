"""The first five minutes: `/help` for everyone, and one short welcome when the bot joins a
server (in its system channel, only where the bot may post, never pinging anyone)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils.context import requester_from
from cogs.utils.onboarding import granted_in, help_text
from cogs.utils.render import markup
from cogs.utils.replies import reply
from jobs.setup_check import WELCOME, may_post

if TYPE_CHECKING:
    from bot import FluxBot

log = logging.getLogger(__name__)


class Help(commands.Cog):
    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot

    @app_commands.command(name="help", description="What this bot does and how to use it")
    @app_commands.guild_only()
    async def help(self, interaction: discord.Interaction) -> None:
        manager = await self.bot.jobs.policy.is_manager(requester_from(interaction))
        commands_ = self.bot.tree.get_commands(type=discord.AppCommandType.chat_input)
        await reply(interaction, help_text(commands_, manager))

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        channel = guild.system_channel
        granted = granted_in(channel, guild.me) if channel is not None else None
        if channel is None or not may_post(granted):
            log.info("joined guild %s; no system channel I may post in, so no welcome", guild.id)
            return
        try:
            await channel.send(markup(WELCOME), allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException:
            log.warning("joined guild %s; the welcome could not be posted", guild.id)
            return
        log.info("joined guild %s; welcome posted in %s", guild.id, channel.id)


async def setup(bot: FluxBot) -> None:
    await bot.add_cog(Help(bot))
