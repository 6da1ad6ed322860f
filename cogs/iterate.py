"""Iterating on results: 🔁 reactions, Rerun / Tweak / Use as input / Delete, the context menu."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.common import (
    AttachmentInput,
    channel_is_nsfw,
    flux_bot,
    parent_channel_id,
    reply,
    requester_from,
)
from cogs.options import shown
from cogs.render import RERUN_EMOJI
from cogs.views import RESULT_HANDLERS
from jobs.errors import BadRequest, MemberError
from jobs.loras import check_name
from jobs.policy import Requester
from jobs.request import MAX_IMAGES_IN, EditOptions, EditRequest, LoraPick
from storage.models import Job

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


def _follow(job: Job) -> str:
    """Where the member can watch the new job, as /edit's answer says it."""
    if job.status_message_id is None:
        return ""
    link = f"https://discord.com/channels/{job.guild_id}/{job.channel_id}/{job.status_message_id}"
    return f" Follow it [here]({link})."


class TweakModal(discord.ui.Modal):
    def __init__(self, cog: Iterate, job_id: int, request: EditRequest) -> None:
        super().__init__(title=f"Tweak edit #{job_id}"[:45], timeout=900)
        self.cog = cog
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
        try:
            seed_text = self.seed.value.strip()
            seed = _parse_int("Seed", seed_text) if seed_text else None
            scales = {
                name: _parse_float(f"Scale of {name}", f.value) for name, f in self.scales.items()
            }
            who = requester_from(interaction)
            job = await flux_bot(interaction).jobs.rerun(
                self.job_id, who, seed=seed, prompt=self.prompt.value, scales=scales
            )
        except MemberError as error:
            await reply(interaction, str(error))
            return
        flux_bot(interaction).publisher.remember(job.id, interaction)
        await reply(interaction, f"Tweaked rerun started as edit #{job.id}.{_follow(job)}")


class ReuseModal(discord.ui.Modal):
    def __init__(self, cog: Iterate, job_id: int, image: discord.Attachment) -> None:
        super().__init__(title=f"Use edit #{job_id} as input"[:45], timeout=900)
        self.cog = cog
        self.job_id = job_id
        self.image = image
        self.prompt: discord.ui.TextInput[ReuseModal] = discord.ui.TextInput(
            label="Prompt for the next edit", style=discord.TextStyle.paragraph, max_length=2000
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        jobs = flux_bot(interaction).jobs
        try:
            who = requester_from(interaction)
            inputs = await jobs.prepare_inputs([AttachmentInput("the result image", self.image)])
            job = await jobs.rerun(
                self.job_id, who, prompt=self.prompt.value, first_input=inputs[0]
            )
        except MemberError as error:
            await reply(interaction, str(error))
            return
        flux_bot(interaction).publisher.remember(job.id, interaction)
        await reply(interaction, f"Started edit #{job.id} from that result.{_follow(job)}")


class ContextEditModal(discord.ui.Modal, title="Edit with FLUX.2 LoRA"):
    prompt: discord.ui.TextInput[ContextEditModal] = discord.ui.TextInput(
        label="Prompt", style=discord.TextStyle.paragraph, max_length=2000
    )
    loras: discord.ui.TextInput[ContextEditModal] = discord.ui.TextInput(
        label="LoRAs (up to 3, comma-separated)",
        required=False,
        max_length=400,  # three names of up to 100 characters, with scales
        placeholder="name, or name:scale",
    )

    def __init__(self, cog: Iterate, images: list[discord.Attachment], note: str) -> None:
        super().__init__(timeout=900)
        self.cog = cog
        self.images = images
        self.note = note

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            picks = parse_lora_list(self.loras.value)
            options = EditOptions(prompt=self.prompt.value, loras=picks)
        except MemberError as error:
            await reply(interaction, str(error))
            return
        files = [
            AttachmentInput(label, image)
            for label, image in zip(("image", "image2", "image3"), self.images, strict=False)
        ]
        edit_cog = flux_bot(interaction).get_cog("Edit")
        if edit_cog is None:
            await reply(interaction, "Editing is not available right now.")
            return
        await edit_cog.run_edit(interaction, options, files, note=self.note)  # type: ignore[attr-defined]


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
        RESULT_HANDLERS.update(
            rerun=self.on_rerun, tweak=self.on_tweak, reuse=self.on_reuse, delete=self.on_delete
        )

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)
        RESULT_HANDLERS.clear()

    # -------------------------------------------------------------- buttons

    async def on_rerun(self, interaction: discord.Interaction, job_id: int) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            job = await self.bot.jobs.rerun(job_id, requester_from(interaction))
        except MemberError as error:
            await reply(interaction, str(error))
            return
        self.bot.publisher.remember(job.id, interaction)
        await reply(
            interaction, f"Rerun started as edit #{job.id} with seed {job.seed}.{_follow(job)}"
        )

    async def _check_before_modal(self, interaction: discord.Interaction, job_id: int) -> Job:
        """Refuse at the click, not after the member has filled in a modal."""
        who = requester_from(interaction)
        job = await self.bot.jobs.check_rerun(who, job_id)
        await self.bot.jobs.check_allowed(who)
        return job

    async def on_tweak(self, interaction: discord.Interaction, job_id: int) -> None:
        try:
            job = await self._check_before_modal(interaction, job_id)
        except MemberError as error:
            await reply(interaction, str(error))
            return
        request = EditRequest.model_validate(job.request)
        await interaction.response.send_modal(TweakModal(self, job_id, request))

    async def on_reuse(self, interaction: discord.Interaction, job_id: int) -> None:
        message = interaction.message
        images = [a for a in (message.attachments if message else []) if _is_image(a)]
        if not images:
            await reply(interaction, "That result has no image left to use.")
            return
        try:
            await self._check_before_modal(interaction, job_id)
        except MemberError as error:
            await reply(interaction, str(error))
            return
        await interaction.response.send_modal(ReuseModal(self, job_id, images[0]))

    async def on_delete(self, interaction: discord.Interaction, job_id: int) -> None:
        try:
            who = requester_from(interaction)
            job = await self.bot.jobs.result_job(who, job_id)
        except MemberError as error:
            await reply(interaction, str(error))
            return
        if job.user_id != who.user_id and not who.can_manage_messages:
            await reply(
                interaction, "Only the member who made this edit (or a moderator) can delete it."
            )
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            if interaction.message is not None:
                await interaction.message.delete()
        except discord.HTTPException:
            await reply(interaction, "I couldn't delete that message.")
            return
        await reply(interaction, f"Deleted the result of edit #{job_id}.")

    # -------------------------------------------------------------- context menu

    async def edit_message_images(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        images = [a for a in message.attachments if _is_image(a)]
        if not images:
            await reply(interaction, "That message has no image attachments to edit.")
            return
        note = ""
        if len(images) > MAX_IMAGES_IN:
            note = f"That message has {len(images)} images; I'm using the first {MAX_IMAGES_IN}."
            images = images[:MAX_IMAGES_IN]
        await interaction.response.send_modal(ContextEditModal(self, images, note))

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
            job = await self.bot.storage.jobs.by_result_message(payload.message_id)
            if job is not None and job.guild_id == payload.guild_id:
                await self._rerun_from_reaction(payload, job.id)
        finally:
            self._reacting.discard(key)

    def _recently_admitted(self, key: tuple[int, int]) -> bool:
        now = time.monotonic()
        for old, at in list(self._admitted.items()):
            if now - at >= self.reaction_cooldown:
                del self._admitted[old]
        return key in self._admitted

    def _reaction_requester(self, payload: discord.RawReactionActionEvent) -> Requester:
        guild = self.bot.get_guild(payload.guild_id or 0)
        channel = guild.get_channel_or_thread(payload.channel_id) if guild else None
        member = payload.member
        perms = (
            channel.permissions_for(member)
            if channel is not None and member is not None
            else discord.Permissions.none()
        )
        return Requester(
            guild_id=payload.guild_id or 0,
            channel_id=payload.channel_id,
            user_id=payload.user_id,
            role_ids=frozenset(r.id for r in member.roles) if member else frozenset(),
            channel_nsfw=channel_is_nsfw(channel),
            can_manage_messages=perms.manage_messages,
            can_manage_guild=perms.manage_guild,
            upload_limit=guild.filesize_limit if guild else 10 * 1024 * 1024,
            parent_channel_id=parent_channel_id(channel),
        )

    async def _rerun_from_reaction(
        self, payload: discord.RawReactionActionEvent, job_id: int
    ) -> None:
        channel = self.bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id)
        try:
            await self.bot.jobs.rerun(job_id, self._reaction_requester(payload))
        except MemberError as error:
            await self._take_back(payload)  # so the member can simply react again later
            await self._short_reply(channel, payload.user_id, str(error))
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
    await bot.add_cog(Iterate(bot))
