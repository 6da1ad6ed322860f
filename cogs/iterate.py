"""Iterating on results: 🔁 reactions, Rerun / Tweak / Use as input / Delete, the context menu."""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils.buttons import RESULT_TEMPLATE
from cogs.utils.context import (
    AttachmentInput,
    attachment_inputs,
    flux_bot,
    requester_from,
    requester_from_reaction,
)
from cogs.utils.edits import start_edit
from cogs.utils.render import RERUN_EMOJI, follow_link, markup, shown
from cogs.utils.replies import reply
from cogs.utils.sweep_ui import SweepModal, post_comparison
from cogs.utils.ui import AnswersErrors, Modal
from jobs.errors import BadRequest, MemberError
from jobs.loras import check_name
from jobs.request import MAX_IMAGES_IN, EditOptions, EditRequest, LoraPick

if TYPE_CHECKING:
    from bot import FluxBot

log = logging.getLogger(__name__)

REFUSAL_LIFETIME = 15.0  # seconds a refused reaction's reply stays in the channel
# A member's 🔁 on a result within this many seconds of their admitted rerun of it is a double
# tap (or a client retry), not a request for another job.
REACTION_COOLDOWN = 5.0
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")


def _is_image(attachment: discord.Attachment) -> bool:
    if attachment.content_type:
        return attachment.content_type.split(";")[0].strip() in IMAGE_TYPES
    return attachment.filename.lower().endswith((".png", ".jpg", ".jpeg", ".webp", ".gif"))


class TweakModal(Modal):
    def __init__(self, job_id: int, request: EditRequest) -> None:
        super().__init__(title=f"Tweak edit #{job_id}"[:45], timeout=900)
        self.job_id = job_id
        self.prompt: discord.ui.TextInput[TweakModal] = discord.ui.TextInput(
            label="Prompt",
            style=discord.TextStyle.paragraph,
            default=request.prompt[:2000],
            max_length=2000,
        )
        self.seed: discord.ui.TextInput[TweakModal] = discord.ui.TextInput(
            label="Seed (empty for a new random one)",
            default=str(request.seed),
            required=False,
            max_length=10,
        )
        self.add_item(self.prompt)
        self.add_item(self.seed)
        self.scales: dict[str, discord.ui.TextInput[TweakModal]] = {}
        for lora in request.loras[:3]:
            field: discord.ui.TextInput[TweakModal] = discord.ui.TextInput(
                label=f"Scale of {lora.name}"[:45], default=_scale_text(lora.scale), max_length=24
            )
            self.scales[lora.name] = field
            self.add_item(field)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        seed_text = self.seed.value.strip()
        seed = _parse_int("Seed", seed_text) if seed_text else None
        scales = {
            name: _parse_float(f"Scale of {name}", f.value) for name, f in self.scales.items()
        }
        bot = flux_bot(interaction)
        job = await bot.jobs.rerun(
            self.job_id,
            requester_from(interaction),
            seed=seed,
            prompt=self.prompt.value,
            scales=scales,
        )
        bot.parts.publisher.remember(job.id, interaction)
        await reply(interaction, f"Tweaked rerun started as edit #{job.id}.{follow_link(job)}")


class ReuseModal(Modal):
    def __init__(self, job_id: int, image: discord.Attachment) -> None:
        super().__init__(title=f"Use edit #{job_id} as input"[:45], timeout=900)
        self.job_id = job_id
        self.image = image
        self.prompt: discord.ui.TextInput[ReuseModal] = discord.ui.TextInput(
            label="Prompt for the next edit", style=discord.TextStyle.paragraph, max_length=2000
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        bot = flux_bot(interaction)
        who = requester_from(interaction)
        inputs = await bot.jobs.prepare_inputs([AttachmentInput("the result image", self.image)])
        job = await bot.jobs.rerun(
            self.job_id, who, prompt=self.prompt.value, first_input=inputs[0]
        )
        bot.parts.publisher.remember(job.id, interaction)
        await reply(interaction, f"Started edit #{job.id} from that result.{follow_link(job)}")


class ContextEditModal(Modal, title="Edit with FLUX.2 LoRA"):
    prompt: discord.ui.TextInput[ContextEditModal] = discord.ui.TextInput(
        label="Prompt", style=discord.TextStyle.paragraph, max_length=2000
    )
    loras: discord.ui.TextInput[ContextEditModal] = discord.ui.TextInput(
        label="LoRAs (up to 3, comma-separated)",
        required=False,
        max_length=400,  # three names of up to 100 characters, with scales
        placeholder="name, or name:scale",
    )

    def __init__(self, images: list[discord.Attachment], note: str) -> None:
        super().__init__(timeout=900)
        self.images = images
        self.note = note

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        options = EditOptions(prompt=self.prompt.value, loras=parse_lora_list(self.loras.value))
        await start_edit(interaction, options, attachment_inputs(self.images), note=self.note)


class ResultButton(
    AnswersErrors, discord.ui.DynamicItem[discord.ui.Button[Any]], template=RESULT_TEMPLATE
):
    """Rerun, Tweak, Use as input, Sweep, Compare and Delete under every result."""

    def __init__(self, job_id: int, action: str) -> None:
        super().__init__(discord.ui.Button(custom_id=f"job:{job_id}:{action}"))
        self.job_id = job_id
        self.action = action

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> ResultButton:
        return cls(int(match["id"]), match["action"])

    async def run(self, interaction: discord.Interaction) -> None:
        handler = {
            "rerun": self._rerun,
            "tweak": self._tweak,
            "reuse": self._reuse,
            "sweep": self._sweep,
            "compare": self._compare,
            "delete": self._delete,
        }[self.action]
        await handler(interaction)

    async def _rerun(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        bot = flux_bot(interaction)
        job = await bot.jobs.rerun(self.job_id, requester_from(interaction))
        bot.parts.publisher.remember(job.id, interaction)
        await reply(
            interaction, f"Rerun started as edit #{job.id} with seed {job.seed}.{follow_link(job)}"
        )

    async def _tweak(self, interaction: discord.Interaction) -> None:
        reruns = flux_bot(interaction).jobs.reruns
        job = await reruns.check_before_form(requester_from(interaction), self.job_id)
        await interaction.response.send_modal(TweakModal(self.job_id, job.request))

    async def _reuse(self, interaction: discord.Interaction) -> None:
        message = interaction.message
        images = [a for a in (message.attachments if message else []) if _is_image(a)]
        if not images:
            raise BadRequest("That result has no image left to use.")
        reruns = flux_bot(interaction).jobs.reruns
        await reruns.check_before_form(requester_from(interaction), self.job_id)
        await interaction.response.send_modal(ReuseModal(self.job_id, images[0]))

    async def _sweep(self, interaction: discord.Interaction) -> None:
        reruns = flux_bot(interaction).jobs.reruns
        job = await reruns.check_before_form(requester_from(interaction), self.job_id)
        await interaction.response.send_modal(SweepModal(self.job_id, job.request))

    async def _compare(self, interaction: discord.Interaction) -> None:
        message = interaction.message
        images = [a for a in (message.attachments if message else []) if _is_image(a)]
        if not images:
            raise BadRequest("That result has no image left to compare.")
        compare = flux_bot(interaction).jobs.compare
        who = requester_from(interaction)
        await compare.check(who, self.job_id)
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            data = await images[0].read()
        except discord.HTTPException:
            raise BadRequest("I couldn't download that result's image from Discord.") from None
        comparison = await compare.compare(who, self.job_id, data, spoiler=images[0].is_spoiler())
        await post_comparison(interaction, comparison, message)

    async def _delete(self, interaction: discord.Interaction) -> None:
        reruns = flux_bot(interaction).jobs.reruns
        await reruns.check_delete(requester_from(interaction), self.job_id)
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            if interaction.message is not None:
                await interaction.message.delete()
        except discord.HTTPException:
            await reply(interaction, "I couldn't delete that message.")
            return
        await reply(interaction, f"Deleted the result of edit #{self.job_id}.")


def _scale_text(scale: float) -> str:
    """Short where that loses nothing, so an unchanged field submits the same scale."""
    short = f"{scale:g}"
    return short if float(short) == scale else repr(scale)


def _parse_int(name: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise BadRequest(f"{name} must be a whole number; you gave `{shown(text)}`.") from None


def _parse_float(name: str, text: str) -> float:
    try:
        return float(text.strip().replace(",", "."))
    except ValueError:
        raise BadRequest(f"{name} must be a number; you gave `{shown(text)}`.") from None


def parse_lora_list(text: str) -> list[LoraPick]:
    """`name, other:0.8` → picks. At most three."""
    picks: list[LoraPick] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, scale = part.partition(":")
        name = check_name(name)  # before it is echoed in a message about its scale
        picks.append(
            LoraPick(name=name, scale=_parse_float(f"The scale of {name}", scale) if sep else None)
        )
    if len(picks) > 3:
        raise BadRequest("At most 3 LoRAs can be combined.")
    return picks


class Iterate(commands.Cog):
    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot
        self._reacting: set[tuple[int, int]] = set()
        self._admitted: dict[tuple[int, int], float] = {}  # (message, member) → monotonic time
        # Per instance: discord.py loads extensions as fresh modules, so tests tune them here.
        self.refusal_lifetime = REFUSAL_LIFETIME
        self.reaction_cooldown = REACTION_COOLDOWN
        self.menu = app_commands.ContextMenu(
            name="Edit with FLUX.2 LoRA…", callback=self.edit_message_images
        )
        self.menu.guild_only = True

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    # -------------------------------------------------------------- context menu

    async def edit_message_images(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        images = [a for a in message.attachments if _is_image(a)]
        if not images:
            raise BadRequest("That message has no image attachments to edit.")
        note = ""
        if len(images) > MAX_IMAGES_IN:
            note = f"That message has {len(images)} images; I'm using the first {MAX_IMAGES_IN}."
            images = images[:MAX_IMAGES_IN]
        await interaction.response.send_modal(ContextEditModal(images, note))

    # -------------------------------------------------------------- reactions

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if str(payload.emoji) != RERUN_EMOJI or payload.guild_id is None:
            return
        if self.bot.user is not None and payload.user_id == self.bot.user.id:
            return
        key = (payload.message_id, payload.user_id)
        if key in self._reacting:
            return  # a second quick reaction while the first is being admitted
        if self._recently_admitted(key):
            await self._take_back(payload)
            return
        self._reacting.add(key)
        try:
            job = await self.bot.jobs.reruns.by_result_message(payload.guild_id, payload.message_id)
            if job is not None:
                await self._rerun_from_reaction(payload, job.id)
        finally:
            self._reacting.discard(key)

    def _recently_admitted(self, key: tuple[int, int]) -> bool:
        now = time.monotonic()
        for old, at in list(self._admitted.items()):
            if now - at >= self.reaction_cooldown:
                del self._admitted[old]
        return key in self._admitted

    async def _rerun_from_reaction(
        self, payload: discord.RawReactionActionEvent, job_id: int
    ) -> None:
        channel = self.bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id)
        try:
            await self.bot.jobs.rerun(job_id, requester_from_reaction(self.bot, payload))
        except MemberError as error:
            await self._take_back(payload)  # so the member can simply react again later
            await self._short_reply(channel, payload.user_id, markup(error.parts))
            return
        self._admitted[(payload.message_id, payload.user_id)] = time.monotonic()
        await self._take_back(payload)

    async def _take_back(self, payload: discord.RawReactionActionEvent) -> None:
        """Remove the member's 🔁: it was handled, and the next tap can start another rerun."""
        channel = self.bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id)
        try:
            await channel.get_partial_message(payload.message_id).remove_reaction(
                RERUN_EMOJI, discord.Object(payload.user_id)
            )
        except discord.HTTPException:
            log.info("could not remove a rerun reaction (missing Manage Messages?)")

    async def _short_reply(
        self, channel: discord.PartialMessageable, user_id: int, text: str
    ) -> None:
        try:
            await channel.send(
                f"<@{user_id}> {text}",
                delete_after=self.refusal_lifetime,
                allowed_mentions=discord.AllowedMentions(users=[discord.Object(user_id)]),
            )
        except discord.HTTPException:
            log.info("could not post a reaction refusal for %s", user_id)


async def setup(bot: FluxBot) -> None:
    bot.add_dynamic_items(ResultButton)
    await bot.add_cog(Iterate(bot))
