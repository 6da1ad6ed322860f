"""`/edit`: a member's images, prompt and LoRAs in; a job admitted and its status shown. Also
the Cancel button on status messages and job lists."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils.buttons import CANCEL_TEMPLATE
from cogs.utils.context import AttachmentInput, flux_bot, requester_from
from cogs.utils.edits import start_edit
from cogs.utils.lora_ui import lora_autocomplete
from cogs.utils.preset_ui import preset_autocomplete
from cogs.utils.replies import reply
from cogs.utils.ui import AnswersErrors
from jobs.records import is_training
from jobs.request import SIZE_CHOICES, EditOptions, LoraPick

if TYPE_CHECKING:
    from bot import FluxBot

log = logging.getLogger(__name__)


class CancelButton(
    AnswersErrors, discord.ui.DynamicItem[discord.ui.Button[Any]], template=CANCEL_TEMPLATE
):
    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(custom_id=f"job:{job_id}:cancel"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> CancelButton:
        return cls(int(match["id"]))

    async def run(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        job = await flux_bot(interaction).jobs.cancel(self.job_id, requester_from(interaction))
        if is_training(job):
            text = f"Training #{job.id} is cancelled; its cost went back to the server's budget."
        else:
            text = f"Edit #{self.job_id} is cancelled; you were not charged."
        await reply(interaction, text)


class Edit(commands.Cog):
    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot

    @app_commands.command(name="edit", description="Edit 1–3 images with this server's LoRAs")
    @app_commands.guild_only()
    @app_commands.describe(
        prompt="What the edit should do; the LoRA's trigger words are added for you",
        image="The image to edit",
        image2="A second input image (optional)",
        image3="A third input image (optional)",
        lora="A LoRA from this server's registry",
        lora2="A second LoRA to combine",
        lora3="A third LoRA to combine",
        scale="Strength of the first LoRA, 0–4 (default: the LoRA's own)",
        scale2="Strength of the second LoRA, 0–4",
        scale3="Strength of the third LoRA, 0–4",
        seed="Fix the seed to reproduce or compare results (default: random)",
        guidance="How closely to follow the prompt, 0–20 (default 2.5)",
        steps="Denoising steps, 4–50: more is finer and slower (default 28)",
        size="Output size (default: match image 1 at about 1 MP)",
        width="Output width in pixels, 512–2048 (set height too)",
        height="Output height in pixels, 512–2048 (set width too)",
        count="How many images to make, 1–4 (each counts against your quota)",
        acceleration="Faster generation trades some quality (default regular)",
        expand_prompt="Let the model elaborate your prompt before editing",
        format="File format of the result (default png)",
        preset="A server preset: its LoRAs, prompt template and settings fill what you leave unset",
    )
    @app_commands.choices(
        size=[app_commands.Choice(name=label, value=key) for key, label in SIZE_CHOICES.items()],
        acceleration=[
            app_commands.Choice(name="none (best quality, slowest)", value="none"),
            app_commands.Choice(name="regular", value="regular"),
            app_commands.Choice(name="high (fastest, for drafts)", value="high"),
        ],
        format=[
            app_commands.Choice(name="PNG", value="png"),
            app_commands.Choice(name="JPEG", value="jpeg"),
            app_commands.Choice(name="WebP", value="webp"),
        ],
    )
    @app_commands.autocomplete(lora=lora_autocomplete, lora2=lora_autocomplete)
    @app_commands.autocomplete(lora3=lora_autocomplete, preset=preset_autocomplete)
    async def edit(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 2000],
        image: discord.Attachment,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
        lora: str | None = None,
        lora2: str | None = None,
        lora3: str | None = None,
        scale: app_commands.Range[float, 0.0, 4.0] | None = None,
        scale2: app_commands.Range[float, 0.0, 4.0] | None = None,
        scale3: app_commands.Range[float, 0.0, 4.0] | None = None,
        seed: app_commands.Range[int, 0, 4294967295] | None = None,
        guidance: app_commands.Range[float, 0.0, 20.0] | None = None,
        steps: app_commands.Range[int, 4, 50] | None = None,
        size: str | None = None,
        width: app_commands.Range[int, 512, 2048] | None = None,
        height: app_commands.Range[int, 512, 2048] | None = None,
        count: app_commands.Range[int, 1, 4] | None = None,
        acceleration: str | None = None,
        expand_prompt: bool | None = None,
        format: str | None = None,
        preset: app_commands.Range[str, 1, 100] | None = None,
    ) -> None:
        files = [
            AttachmentInput(label, attachment)
            for label, attachment in (("image", image), ("image2", image2), ("image3", image3))
            if attachment is not None
        ]
        for file in files:  # the downloads overlap the defer round trip
            file.prefetch(self.bot.jobs.config.max_input_bytes)
        await interaction.response.defer(ephemeral=True, thinking=True)
        slots = ((lora, scale), (lora2, scale2), (lora3, scale3))
        # With a preset each lora/scale pair keeps its position (a scale alone sets the
        # preset's LoRA there); without one, a scale without its LoRA means nothing.
        picks = [LoraPick(name=name or "", scale=s) for name, s in slots if name or preset]
        options = EditOptions.model_validate(
            {
                "prompt": prompt,
                "loras": picks,
                "seed": seed,
                "guidance": guidance,
                "steps": steps,
                "size": size,
                "width": width,
                "height": height,
                "count": count,
                "acceleration": acceleration,
                "expand_prompt": expand_prompt,
                "output_format": format,
                "preset": preset,
            }
        )
        await start_edit(interaction, options, files)


async def setup(bot: FluxBot) -> None:
    bot.add_dynamic_items(CancelButton)
    await bot.add_cog(Edit(bot))
