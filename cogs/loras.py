"""The LoRA registry from Discord: `/loras` for members, `/admin lora …` for admins."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.common import MEMBER_FACING, channel_is_nsfw, flux_bot, is_bot_manager, member_text, reply
from cogs.edit import lora_autocomplete
from cogs.lora_choices import search_choices
from cogs.render import FIELD_MAX, quote_prompt
from jobs.errors import BadRequest
from jobs.loras import check_name
from storage.models import Lora, LoraChange

if TYPE_CHECKING:
    from bot import FluxBot

log = logging.getLogger(__name__)

PAGE_SIZE = 8
HISTORY_SHOWN = 10


async def admin_lora_autocomplete(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    """Managers also see disabled LoRAs, flagged. discord.py runs no interaction_check before
    an autocomplete, so a member shown /admin by integration settings gets the member view."""
    if interaction.guild_id is None:
        return []
    manager = await is_bot_manager(interaction)
    return await search_choices(
        flux_bot(interaction).storage.loras,
        interaction.guild_id,
        current,
        include_disabled=manager,
        include_nsfw=channel_is_nsfw(interaction.channel),
    )


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) or "none"


_FIELD_NAMES = {"default_scale": "scale", "trigger_words": "triggers"}
_ACTION_WORDS = {
    "add": "added",
    "edit": "changed",
    "disable": "disabled",
    "enable": "enabled",
    "remove": "removed",
}


def describe_change(change: LoraChange) -> str:
    """One history line: when, what, who; an edit also says what it changed."""
    line = f"<t:{int(change.at.timestamp())}:d> {_ACTION_WORDS[change.action]}"
    if change.action == "edit":
        parts = [
            f"{_FIELD_NAMES.get(key, key)} {_value(diff.get('old'))[:40]} → "
            f"{_value(diff.get('new'))[:40]}"
            for key, diff in change.details.items()
            if isinstance(diff, dict)
        ]
        if parts:
            line += " " + quote_prompt("; ".join(parts), 300)
    return f"{line} by <@{change.actor_id}>"


def _history_value(lines: list[str]) -> str:
    """The newest lines that fit one embed field, oldest of them first."""
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        if size + len(line) + 1 > FIELD_MAX or len(kept) == HISTORY_SHOWN:
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(reversed(kept)) or "none"


def lora_card(lora: Lora, history: list[str] | None = None) -> discord.Embed:
    embed = discord.Embed(
        title=lora.name,
        description=quote_prompt(lora.description or "No description.", 1000),
        colour=discord.Colour.dark_teal() if lora.enabled else discord.Colour.dark_grey(),
    )
    embed.add_field(name="Default scale", value=f"{lora.default_scale:g}")
    triggers = ", ".join(f"`{w}`" for w in lora.trigger_words) or "none"
    embed.add_field(name="Trigger words", value=triggers[:1024])
    embed.add_field(name="Uses", value=str(lora.uses))
    state = "enabled" if lora.enabled else "disabled"
    embed.add_field(name="State", value=state + (" · NSFW" if lora.nsfw else ""))
    embed.add_field(name="Version", value=str(lora.version))
    if history is not None:
        embed.add_field(name="Path", value=f"`{lora.path[:1000]}`", inline=False)
        embed.add_field(name="History", value=_history_value(history), inline=False)
    return embed


def page_embed(loras: list[Lora], page: int, pages: int, total: int) -> discord.Embed:
    embed = discord.Embed(title="LoRAs on this server", colour=discord.Colour.dark_teal())
    if not loras:
        embed.description = "No LoRAs yet. An admin can add one with `/admin lora add`."
    for lora in loras:
        triggers = ", ".join(lora.trigger_words) or "—"
        value = (
            f"scale {lora.default_scale:g} · triggers: {quote_prompt(triggers, 200)} · "
            f"{lora.uses} uses\n{quote_prompt(lora.description or '', 300)}"
        )
        embed.add_field(name=lora.name, value=value[:1024], inline=False)
    embed.set_footer(text=f"Page {page + 1} of {pages} · {total} LoRAs · /loras name for a card")
    return embed


class PageButton(
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

    async def callback(self, interaction: discord.Interaction) -> None:
        if interaction.guild_id is None:
            return
        embed, view = await render_page(
            flux_bot(interaction), interaction.guild_id, self.page, self.nsfw
        )
        await interaction.response.edit_message(embed=embed, view=view)


async def render_page(
    bot: FluxBot, guild_id: int, page: int, nsfw: bool
) -> tuple[discord.Embed, discord.ui.View]:
    total = await bot.storage.loras.count(guild_id, include_disabled=False, include_nsfw=nsfw)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(0, page), pages - 1)
    loras = await bot.storage.loras.list(
        guild_id,
        include_disabled=False,
        include_nsfw=nsfw,
        offset=page * PAGE_SIZE,
        limit=PAGE_SIZE,
    )
    view = discord.ui.View(timeout=None)
    view.add_item(PageButton(page - 1, nsfw, "Previous", disabled=page == 0))
    view.add_item(PageButton(page + 1, nsfw, "Next", disabled=page >= pages - 1))
    return page_embed(loras, page, pages, total), view


class Loras(commands.Cog):
    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot

    # ------------------------------------------------------------------ members

    @app_commands.command(name="loras", description="Browse this server's LoRAs, or see one's card")
    @app_commands.guild_only()
    @app_commands.describe(name="Show one LoRA's card")
    @app_commands.autocomplete(name=lora_autocomplete)
    async def loras(self, interaction: discord.Interaction, name: str | None = None) -> None:
        guild_id = interaction.guild_id
        if guild_id is None:
            return
        nsfw = channel_is_nsfw(interaction.channel)
        if name is None:
            embed, view = await render_page(self.bot, guild_id, 0, nsfw)
            await interaction.response.send_message(embed=embed, view=view, ephemeral=True)
            return
        try:
            name = check_name(name)  # refuses invisible and direction characters before echoing
        except BadRequest as error:
            await reply(interaction, str(error))
            return
        lora = await self.bot.storage.loras.get(guild_id, name)
        manager = await is_bot_manager(interaction)
        if lora is None or (not lora.enabled and not manager) or (lora.nsfw and not nsfw):
            await reply(interaction, f"This server has no LoRA named `{name}`.")
            return
        history = None
        if manager:
            changes = await self.bot.storage.loras.history(guild_id, lora.name)
            history = [describe_change(c) for c in changes]
        await interaction.response.send_message(embed=lora_card(lora, history), ephemeral=True)


class ConfirmRemove(discord.ui.View):
    """A one-shot confirmation on an ephemeral message; it may expire, the command can be rerun."""

    TIMEOUT = 120.0

    def __init__(self, bot: FluxBot, lora: Lora, actor_id: int) -> None:
        super().__init__(timeout=self.TIMEOUT)
        self.bot = bot
        self.lora = lora
        self.actor_id = actor_id
        self.interaction: discord.Interaction | None = None  # set once the question is shown

    async def on_timeout(self) -> None:
        # Dead buttons would answer "This interaction failed"; say what happened instead.
        if self.interaction is None:
            return
        try:
            await self.interaction.edit_original_response(
                content=f"Nothing was removed: the question expired. Run `/admin lora remove "
                f"{self.lora.name}` again if you still want to.",
                view=None,
            )
        except discord.HTTPException:
            log.info("could not close the expired remove question for %r", self.lora.name)

    @discord.ui.button(label="Remove", style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: discord.Interaction, _: discord.ui.Button[Any]) -> None:
        try:
            await self.bot.storage.loras.remove(
                self.lora.guild_id, self.lora.name, actor_id=self.actor_id
            )
        except MEMBER_FACING as error:
            await interaction.response.edit_message(content=member_text(error), view=None)
        else:
            await interaction.response.edit_message(
                content=f"Removed `{self.lora.name}`. Past results keep their recipe.", view=None
            )
        self.stop()

    @discord.ui.button(label="Keep it", style=discord.ButtonStyle.secondary)
    async def keep(self, interaction: discord.Interaction, _: discord.ui.Button[Any]) -> None:
        await interaction.response.edit_message(content=f"Kept `{self.lora.name}`.", view=None)
        self.stop()


async def setup(bot: FluxBot) -> None:
    bot.add_dynamic_items(PageButton)
    await bot.add_cog(Loras(bot))
