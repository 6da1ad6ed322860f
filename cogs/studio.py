"""Studio features: `/sweep` (one seed over a LoRA's strengths, or a stack's on/off
combinations, posted as one contact sheet), the sheet's menus, and `/presets`."""

from __future__ import annotations

import io
import logging
import re
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils.context import AttachmentInput, flux_bot, requester_from
from cogs.utils.forms import dispatch_form, send_form
from cogs.utils.lora_ui import lora_autocomplete
from cogs.utils.preset_ui import presets_embed
from cogs.utils.replies import reply
from cogs.utils.studio import SHEET_TEMPLATE, started_text
from cogs.utils.sweep_ui import CELL_FORM, cell_form, cell_submitted
from cogs.utils.ui import AnswersErrors
from jobs.errors import BadRequest
from jobs.request import LoraPick
from jobs.sweep_plan import SweepSpec, parse_mode

if TYPE_CHECKING:
    from bot import FluxBot

log = logging.getLogger(__name__)


class SheetMenu(
    AnswersErrors, discord.ui.DynamicItem[discord.ui.Select[Any]], template=SHEET_TEMPLATE
):
    """The sheet's two menus: a cell at full size, or a cell as the next edit's input. The sweep
    id is in the custom_id, so they work on sheets of any age."""

    def __init__(self, sweep_id: int, action: str) -> None:
        super().__init__(discord.ui.Select(custom_id=f"sweep:{sweep_id}:{action}"))
        self.sweep_id = sweep_id
        self.action = action

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> SheetMenu:
        return cls(int(match["id"]), match["action"])

    async def run(self, interaction: discord.Interaction) -> None:
        data: dict[str, Any] = dict(interaction.data or {})
        values = list(data.get("values") or [])
        try:
            cell = int(str(values[0]))
        except (IndexError, ValueError):
            raise BadRequest("Pick one cell of the sheet.") from None
        sweeps = flux_bot(interaction).jobs.sweeps
        who = requester_from(interaction)
        if self.action == "next":
            found = await sweeps.check_next_input(who, self.sweep_id, cell)
            await send_form(interaction, cell_form(self.sweep_id, cell, found.label))
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        image = await sweeps.cell_file(who, self.sweep_id, cell)
        file = discord.File(io.BytesIO(image.data), filename=image.filename, spoiler=image.spoiler)
        await reply(
            interaction, f"Cell {cell + 1} of sweep #{self.sweep_id}, full size.", file=file
        )


class Studio(commands.Cog):
    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot

    @app_commands.command(
        name="sweep", description="One seed across a LoRA's strengths (or its combinations)"
    )
    @app_commands.guild_only()
    @app_commands.rename(start="from", stop="to")
    @app_commands.describe(
        image="The image to edit",
        prompt="What the edit should do; the LoRAs' trigger words are added for you",
        lora="The LoRA whose strength is swept",
        start="The first strength, 0–4 (default 0.25)",
        stop="The last strength, 0–4 (default 1.5)",
        cells="How many strengths, 4–8 (default 6); each cell is one image of your quota",
        mode="scale: one LoRA's strength; combinations: every on/off mix of the LoRAs",
        lora2="Another LoRA, at its own strength (combined in combinations mode)",
        lora3="A third LoRA, at its own strength",
        seed="The one seed of every cell (default: random)",
    )
    @app_commands.choices(
        mode=[
            app_commands.Choice(name="scale", value="scale"),
            app_commands.Choice(name="combinations", value="combinations"),
        ]
    )
    @app_commands.autocomplete(lora=lora_autocomplete, lora2=lora_autocomplete)
    @app_commands.autocomplete(lora3=lora_autocomplete)
    async def sweep(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: app_commands.Range[str, 1, 2000],
        lora: str,
        start: app_commands.Range[float, 0.0, 4.0] | None = None,
        stop: app_commands.Range[float, 0.0, 4.0] | None = None,
        cells: app_commands.Range[int, 4, 8] | None = None,
        mode: str | None = None,
        lora2: str | None = None,
        lora3: str | None = None,
        seed: app_commands.Range[int, 0, 4294967295] | None = None,
    ) -> None:
        file = AttachmentInput("image", image)
        file.prefetch(self.bot.jobs.config.max_input_bytes)
        await interaction.response.defer(ephemeral=True, thinking=True)
        spec = SweepSpec(mode=parse_mode(mode), lora=lora, start=start, stop=stop, cells=cells)
        picks = [LoraPick(name=name) for name in (lora, lora2, lora3) if name]
        try:
            started = await self.bot.jobs.sweeps.start(
                requester_from(interaction), spec, prompt, [file], picks, seed=seed
            )
        finally:
            file.discard()
        await reply(interaction, started_text(started.sweep, started.recipe))

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        await dispatch_form(interaction, {CELL_FORM: cell_submitted})

    @app_commands.command(name="presets", description="This server's presets, for /edit preset:")
    @app_commands.guild_only()
    async def presets(self, interaction: discord.Interaction) -> None:
        views = await self.bot.jobs.presets.listing(requester_from(interaction))
        await reply(interaction, embed=presets_embed(views))


async def setup(bot: FluxBot) -> None:
    bot.add_dynamic_items(SheetMenu)
    await bot.add_cog(Studio(bot))
