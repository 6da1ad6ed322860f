"""`/quota` and `/jobs`: what a member can see about their own use."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.common import is_bot_manager, reply, requester_from
from cogs.views import CancelButton
from jobs.errors import MemberError
from jobs.policy import quota_limits
from jobs.refusals import discord_time
from storage.models import TERMINAL_STATES, JobState

if TYPE_CHECKING:
    from bot import FluxBot

RECENT_JOBS = 10


class Members(commands.Cog):
    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot

    @app_commands.command(
        name="quota", description="Your images used and left, and when the next frees"
    )
    @app_commands.guild_only()
    async def quota(self, interaction: discord.Interaction) -> None:
        try:
            who = requester_from(interaction)
        except MemberError as error:
            await reply(interaction, str(error))
            return
        storage = self.bot.storage
        settings = await storage.settings.effective(who.guild_id, who.rules_channel_id)
        limits = quota_limits(settings.guild, who)
        usage = await storage.quotas.usage(who.guild_id, who.user_id, limits.window_seconds)
        hours = f"{limits.window_seconds / 3600:g} h"
        lines = []
        if limits.images_per_window is None:
            lines.append(
                f"You're exempt from the quota ({usage.images_used} images in the last {hours})."
            )
        else:
            left = max(0, limits.images_per_window - usage.images_used)
            lines.append(
                f"You've used {usage.images_used} of {limits.images_per_window} images in the "
                f"last {hours}; {left} left."
            )
            if usage.next_free_at is not None:
                lines.append(f"The next one frees {discord_time(usage.next_free_at)}.")
        flight = f" of {limits.max_in_flight}" if limits.max_in_flight else ""
        lines.append(f"Edits running: {usage.in_flight}{flight}.")
        if await is_bot_manager(interaction):
            spent = await storage.quotas.guild_spend(who.guild_id)
            cap = settings.guild.monthly_budget_usd
            budget = f" of ${cap:,.2f}" if cap else " (no cap)"
            lines.append(f"Server spend this month: ${spent:,.2f}{budget}.")
        await reply(interaction, "\n".join(lines))

    @app_commands.command(name="jobs", description="Your recent edits, with links and Cancel")
    @app_commands.guild_only()
    async def jobs(self, interaction: discord.Interaction) -> None:
        try:
            who = requester_from(interaction)
        except MemberError as error:
            await reply(interaction, str(error))
            return
        jobs = await self.bot.storage.jobs.recent_for_user(who.guild_id, who.user_id, RECENT_JOBS)
        if not jobs:
            await reply(interaction, "You have no edits yet. Try `/edit`.")
            return
        lines = []
        view = discord.ui.View(timeout=None)
        for job in jobs:
            when = discord_time(job.created_at)
            if job.result_message_id is not None:
                link = (
                    f"https://discord.com/channels/{job.guild_id}/{job.channel_id}/"
                    f"{job.result_message_id}"
                )
                lines.append(f"#{job.id} · [result]({link}) · {when}")
            else:
                note = (
                    f" · {job.error[:80]}" if job.error and job.state != JobState.DELIVERED else ""
                )
                lines.append(f"#{job.id} · {job.state.value}{note} · {when}")
            if job.state not in TERMINAL_STATES and job.state != JobState.COMPLETED:
                view.add_item(CancelButton(job.id, label=f"Cancel #{job.id}"))
        await interaction.response.send_message(
            "\n".join(lines)[:2000],
            view=view if view.children else discord.utils.MISSING,
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )


async def setup(bot: FluxBot) -> None:
    await bot.add_cog(Members(bot))
