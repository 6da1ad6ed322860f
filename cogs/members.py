"""`/quota` and `/jobs`: what a member can see about their own use."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils.buttons import cancel_list_view
from cogs.utils.context import requester_from
from cogs.utils.render import message_link, timestamp
from cogs.utils.replies import reply
from jobs.records import JobState
from jobs.runner import cancellable

if TYPE_CHECKING:
    from bot import FluxBot


class Members(commands.Cog):
    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot

    @app_commands.command(
        name="quota", description="Your images used and left, and when the next frees"
    )
    @app_commands.guild_only()
    async def quota(self, interaction: discord.Interaction) -> None:
        view = await self.bot.jobs.usage.quota(requester_from(interaction))
        hours = f"{view.window_hours:g} h"
        lines = []
        if view.limit is None:
            lines.append(f"You're exempt from the quota ({view.used} images in the last {hours}).")
        else:
            lines.append(
                f"You've used {view.used} of {view.limit} images in the last {hours}; "
                f"{view.left} left."
            )
            if view.next_free_at is not None:
                lines.append(f"The next one frees {timestamp(view.next_free_at)}.")
        flight = f" of {view.max_in_flight}" if view.max_in_flight else ""
        lines.append(f"Edits running: {view.in_flight}{flight}.")
        if view.budget is not None:
            cap = view.budget.cap_usd
            budget = f" of ${cap:,.2f}" if cap else " (no cap)"
            lines.append(f"Server spend this month: ${view.budget.spent_usd:,.2f}{budget}.")
        await reply(interaction, "\n".join(lines))

    @app_commands.command(name="jobs", description="Your recent edits, with links and Cancel")
    @app_commands.guild_only()
    async def jobs(self, interaction: discord.Interaction) -> None:
        jobs = await self.bot.jobs.usage.recent(requester_from(interaction))
        if not jobs:
            await reply(interaction, "You have no edits yet. Try `/edit`.")
            return
        lines = []
        for job in jobs:
            when = timestamp(job.created_at)
            if job.result_message_id is not None:
                link = message_link(job.guild_id, job.channel_id, job.result_message_id)
                lines.append(f"#{job.id} · [result]({link}) · {when}")
            else:
                note = (
                    f" · {job.error[:80]}" if job.error and job.state != JobState.DELIVERED else ""
                )
                lines.append(f"#{job.id} · {job.state.value}{note} · {when}")
        view = cancel_list_view([job.id for job in jobs if cancellable(job)])
        await reply(interaction, "\n".join(lines), view=view)


async def setup(bot: FluxBot) -> None:
    await bot.add_cog(Members(bot))
