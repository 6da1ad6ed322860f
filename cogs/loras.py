"""`/loras`: members browse the server's LoRA registry, page by page, or read one's card."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils.context import channel_is_nsfw, flux_bot, requester_from
from cogs.utils.lora_ui import lora_autocomplete, lora_card, page_embed
from cogs.utils.replies import reply
from cogs.utils.ui import AnswersErrors
from jobs.registry import Viewer
from jobs.service import JobService

if TYPE_CHECKING:
    from bot import FluxBot

log = logging.getLogger(__name__)


class PageButton(
    AnswersErrors,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"loras:(?P<page>-?\d+):(?P<nsfw>[01]):[PN]",
):
    """Stateless pagination: the page is in the custom_id, so buttons never expire."""

    def __init__(self, page: int, nsfw: bool, label: str, disabled: bool = False) -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=f"loras:{page}:{int(nsfw)}:{label[0]}",
                disabled=disabled,
            )
        )
        self.page = page
        self.nsfw = nsfw

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> PageButton:
        return cls(int(match["page"]), match["nsfw"] == "1", "Previous")

    async def run(self, interaction: discord.Interaction) -> None:
        if interaction.guild_id is None:
            return
        embed, view = await render_page(
            flux_bot(interaction).jobs, interaction.guild_id, self.page, self.nsfw
        )
        await interaction.response.edit_message(embed=embed, view=view)


async def render_page(
    jobs: JobService, guild_id: int, page: int, nsfw: bool
) -> tuple[discord.Embed, discord.ui.View]:
    shown = await jobs.registry.page(guild_id, page, channel_nsfw=nsfw)
    view = discord.ui.View(timeout=None)
    view.add_item(PageButton(shown.page - 1, nsfw, "Previous", disabled=shown.page == 0))
    view.add_item(PageButton(shown.page + 1, nsfw, "Next", disabled=shown.page >= shown.pages - 1))
    return page_embed(shown), view


class Loras(commands.Cog):
    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot

    @app_commands.command(name="loras", description="Browse this server's LoRAs, or see one's card")
    @app_commands.guild_only()
    @app_commands.describe(name="Show one LoRA's card")
    @app_commands.autocomplete(name=lora_autocomplete)
    async def loras(self, interaction: discord.Interaction, name: str | None = None) -> None:
        who = requester_from(interaction)
        if name is None:
            embed, view = await render_page(self.bot.jobs, who.guild_id, 0, who.channel_nsfw)
            await reply(interaction, embed=embed, view=view)
            return
        manager = await self.bot.jobs.policy.is_manager(who)
        viewer = Viewer(manager=manager, channel_nsfw=channel_is_nsfw(interaction.channel))
        card = await self.bot.jobs.registry.card(who, viewer, name)
        await reply(interaction, embed=lora_card(card.lora, card.history, card.training))


async def setup(bot: FluxBot) -> None:
    bot.add_dynamic_items(PageButton)
    await bot.add_cog(Loras(bot))
