"""Iterating on results: 🔁 reactions, Rerun / Tweak / Use as input / Delete, the context menu."""

from __future__ import annotations

import asyncio
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
    Reaction,
    draft_inputs,
    flux_bot,
    requester_from,
    requester_from_reaction,
)
from cogs.utils.edits import start_edit
from cogs.utils.forms import FormHandler, dispatch_form, send_form
from cogs.utils.render import RERUN_EMOJI, follow_link, markup, shown
from cogs.utils.replies import reply
from cogs.utils.sweep_ui import SWEEP_FORM, post_comparison, sweep_form, sweep_submitted
from cogs.utils.ui import AnswersErrors
from jobs.errors import BadRequest, MemberError
from jobs.forms import DraftImage, EditDraft
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


def tweak_form(job_id: int, request: EditRequest) -> discord.ui.Modal:
    form = discord.ui.Modal(title=f"Tweak edit #{job_id}"[:45], custom_id=f"form:tweak:{job_id}")
    form.add_item(
        discord.ui.TextInput(
            label="Prompt",
            custom_id="prompt",
            style=discord.TextStyle.paragraph,
            default=request.prompt[:2000],
            max_length=2000,
        )
    )
    form.add_item(
        discord.ui.TextInput(
            label="Seed (empty for a new random one)",
            custom_id="seed",
            default=str(request.seed),
            required=False,
            max_length=10,
        )
    )
    for lora in request.loras[:3]:
        form.add_item(
            discord.ui.TextInput(
                label=f"Scale of {lora.name}"[:45],
                custom_id=f"scale:{lora.name}",
                default=_scale_text(lora.scale),
                max_length=24,
            )
        )
    return form


def reuse_form(job_id: int, message_id: int) -> discord.ui.Modal:
    form = discord.ui.Modal(
        title=f"Use edit #{job_id} as input"[:45], custom_id=f"form:reuse:{job_id}:{message_id}"
    )
    form.add_item(
        discord.ui.TextInput(
            label="Prompt for the next edit",
            custom_id="prompt",
            style=discord.TextStyle.paragraph,
            max_length=2000,
        )
    )
    return form


def context_edit_form(draft_id: int) -> discord.ui.Modal:
    form = discord.ui.Modal(title="Edit with FLUX.2 LoRA", custom_id=f"form:edit:{draft_id}")
    form.add_item(
        discord.ui.TextInput(
            label="Prompt", custom_id="prompt", style=discord.TextStyle.paragraph, max_length=2000
        )
    )
    form.add_item(
        discord.ui.TextInput(
            label="LoRAs (up to 3, comma-separated)",
            custom_id="loras",
            required=False,
            max_length=400,  # three names of up to 100 characters, with scales
            placeholder="name, or name:scale",
        )
    )
    return form


async def tweak_submitted(
    interaction: discord.Interaction, match: re.Match[str], values: dict[str, str]
) -> None:
    await interaction.response.defer(ephemeral=True, thinking=True)
    seed_text = values.get("seed", "").strip()
    seed = _parse_int("Seed", seed_text) if seed_text else None
    scales = {
        key.removeprefix("scale:"): _parse_float(f"Scale of {key.removeprefix('scale:')}", value)
        for key, value in values.items()
        if key.startswith("scale:")
    }
    bot = flux_bot(interaction)
    job = await bot.jobs.rerun(
        int(match["job"]),
        requester_from(interaction),
        seed=seed,
        prompt=values.get("prompt", ""),
        scales=scales,
    )
    bot.parts.publisher.remember(job.id, interaction)
    await reply(interaction, f"Tweaked rerun started as edit #{job.id}.{follow_link(job)}")


async def _images_of(interaction: discord.Interaction, message_id: int) -> list[discord.Attachment]:
    """The image attachments of a message in this channel, read again from Discord: a form
    submitted after a restart has only the message's id."""
    message = (
        interaction.message
        if interaction.message and interaction.message.id == message_id
        else None
    )
    if message is None:
        channel = interaction.channel
        if not isinstance(channel, discord.abc.Messageable):
            raise BadRequest("I can't read that message any more.")
        try:
            message = await channel.fetch_message(message_id)
        except discord.HTTPException:
            raise BadRequest("That message is gone, so there is no image to edit.") from None
    return [a for a in message.attachments if _is_image(a)]


async def reuse_submitted(
    interaction: discord.Interaction, match: re.Match[str], values: dict[str, str]
) -> None:
    await interaction.response.defer(ephemeral=True, thinking=True)
    images = await _images_of(interaction, int(match["message"]))
    if not images:
        raise BadRequest("That result has no image left to use.")
    bot = flux_bot(interaction)
    who = requester_from(interaction)
    inputs = await bot.jobs.prepare_inputs([AttachmentInput("the result image", images[0])])
    job = await bot.jobs.rerun(
        int(match["job"]), who, prompt=values.get("prompt", ""), first_input=inputs[0]
    )
    bot.parts.publisher.remember(job.id, interaction)
    await reply(interaction, f"Started edit #{job.id} from that result.{follow_link(job)}")


async def context_edit_submitted(
    interaction: discord.Interaction, match: re.Match[str], values: dict[str, str]
) -> None:
    await interaction.response.defer(ephemeral=True, thinking=True)
    bot = flux_bot(interaction)
    draft = await bot.jobs.forms.take_edit(requester_from(interaction), int(match["draft"]))
    options = EditOptions(
        prompt=values.get("prompt", ""), loras=parse_lora_list(values.get("loras", ""))
    )
    await start_edit(interaction, options, draft_inputs(bot, draft), note=draft.note)


FORMS: dict[re.Pattern[str], FormHandler] = {
    re.compile(r"form:tweak:(?P<job>\d+)"): tweak_submitted,
    re.compile(r"form:reuse:(?P<job>\d+):(?P<message>\d+)"): reuse_submitted,
    re.compile(r"form:edit:(?P<draft>\d+)"): context_edit_submitted,
    SWEEP_FORM: sweep_submitted,
}


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
        await send_form(interaction, tweak_form(self.job_id, job.request))

    async def _reuse(self, interaction: discord.Interaction) -> None:
        message = interaction.message
        images = [a for a in (message.attachments if message else []) if _is_image(a)]
        if not images:
            raise BadRequest("That result has no image left to use.")
        reruns = flux_bot(interaction).jobs.reruns
        await reruns.check_before_form(requester_from(interaction), self.job_id)
        assert message is not None  # it had images
        await send_form(interaction, reuse_form(self.job_id, message.id))

    async def _sweep(self, interaction: discord.Interaction) -> None:
        reruns = flux_bot(interaction).jobs.reruns
        job = await reruns.check_before_form(requester_from(interaction), self.job_id)
        await send_form(interaction, sweep_form(self.job_id, job.request))

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
        self.catching_up: asyncio.Task[int] | None = None
        self.menu = app_commands.ContextMenu(
            name="Edit with FLUX.2 LoRA…", callback=self.edit_message_images
        )
        self.menu.guild_only = True

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)
        if self.catching_up is not None:
            self.catching_up.cancel()

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
        who = requester_from(interaction)
        # The images go with the draft: after a restart, reading the message again would not
        # return them (docs/discord-limits.md, "Interactions").
        draft = EditDraft(
            guild_id=who.guild_id,
            user_id=who.user_id,
            message_id=message.id,
            images=[
                DraftImage(url=a.url, filename=a.filename, size=a.size, content_type=a.content_type)
                for a in images
            ],
            note=note,
        )
        await self.bot.jobs.forms.save_edit(interaction.id, draft)
        await send_form(interaction, context_edit_form(interaction.id))

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        await dispatch_form(interaction, FORMS)

    # -------------------------------------------------------------- reactions

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if str(payload.emoji) != RERUN_EMOJI or payload.guild_id is None:
            return
        if self.bot.user is not None and payload.user_id == self.bot.user.id:
            return
        await self._on_rerun_reaction(Reaction.from_event(payload), fresh=True)

    async def _on_rerun_reaction(self, reaction: Reaction, *, fresh: bool) -> bool:
        """True when this reaction was handled now (a rerun, or the refusal of one)."""
        key = (reaction.message_id, reaction.user_id)
        # A tap while the member's last one is still being handled, or just after its rerun was
        # admitted, is a double tap (or a client retry): taken back, not a second job.
        if key in self._reacting or self._recently_admitted(key):
            await self._take_back(reaction)
            return False
        if key in self._reacting:
            return False  # a second quick reaction while the first is being admitted
        self._reacting.add(key)
        try:
            reruns = self.bot.jobs.reruns
            job = await reruns.by_result_message(reaction.guild_id, reaction.message_id)
            if job is None or not await reruns.note_reaction(*key, fresh=fresh):
                return False
            await self._rerun_from_reaction(reaction, job.id)
            return True
        finally:
            self._reacting.discard(key)

    def _recently_admitted(self, key: tuple[int, int]) -> bool:
        now = time.monotonic()
        for old, at in list(self._admitted.items()):
            if now - at >= self.reaction_cooldown:
                del self._admitted[old]
        return key in self._admitted

    async def _rerun_from_reaction(self, reaction: Reaction, job_id: int) -> None:
        channel = self.bot.get_partial_messageable(reaction.channel_id, guild_id=reaction.guild_id)
        try:
            await self.bot.jobs.rerun(job_id, requester_from_reaction(self.bot, reaction))
        except MemberError as error:
            await self._take_back(reaction)  # so the member can simply react again later
            await self._short_reply(channel, reaction.user_id, markup(error.parts))
            return
        self._admitted[(reaction.message_id, reaction.user_id)] = time.monotonic()
        await self._take_back(reaction)

    async def _take_back(self, reaction: Reaction) -> None:
        """Remove the member's 🔁: it was handled, and the next tap can start another rerun.
        Where the bot may not remove it, the record of it keeps a restart from running it
        again."""
        channel = self.bot.get_partial_messageable(reaction.channel_id, guild_id=reaction.guild_id)
        try:
            await channel.get_partial_message(reaction.message_id).remove_reaction(
                RERUN_EMOJI, discord.Object(reaction.user_id)
            )
        except discord.HTTPException:
            log.info("could not remove a rerun reaction (missing Manage Messages?)")
            return
        await self.bot.jobs.reruns.forget_reaction(reaction.message_id, reaction.user_id)

    async def _short_reply(
        self, channel: discord.PartialMessageable, user_id: int, text: str
    ) -> None:
        """The answer to a refused reaction: ephemeral messages need an interaction, which a
        reaction is not, so a short reply that deletes itself (a DM may be closed or unwanted;
        the member is looking at the channel)."""
        try:
            await channel.send(
                f"<@{user_id}> {text}",
                delete_after=self.refusal_lifetime,
                allowed_mentions=discord.AllowedMentions(users=[discord.Object(user_id)]),
            )
        except discord.HTTPException:
            log.info("could not post a reaction refusal for %s", user_id)

    # -------------------------------------------------------------- catching up

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        if self.catching_up is None and self.bot.settings.catch_up_hours > 0:
            self.catching_up = asyncio.create_task(self.catch_up(), name="reaction-catch-up")

    async def catch_up(self) -> int:
        """Run the 🔁 reruns members asked for while the bot was down, once each, on results
        of the last CATCH_UP_HOURS. Returns how many reactions it handled."""
        handled = 0
        me = self.bot.user.id if self.bot.user else 0
        for job in await self.bot.jobs.reruns.recent_results(self.bot.settings.catch_up_hours):
            assert job.result_message_id is not None
            if not self.bot.owns_guild(job.guild_id):
                continue  # the process running that server's shard catches up there
            try:
                users = await self._reactors(job.channel_id, job.result_message_id)
            except discord.HTTPException:
                log.info("job %s: could not read the reactions on its result", job.id)
                continue
            for user_id in users:
                if user_id == me:
                    continue
                member = await self._member(job.guild_id, user_id)
                reaction = Reaction(
                    job.guild_id, job.channel_id, job.result_message_id, user_id, member
                )
                handled += await self._on_rerun_reaction(reaction, fresh=False)
        log.info("caught up with %d rerun reactions made while offline", handled)
        return handled

    async def _reactors(self, channel_id: int, message_id: int) -> list[int]:
        users: list[int] = []
        after: int | None = None
        while True:
            page = await self.bot.http.get_reaction_users(
                channel_id, message_id, RERUN_EMOJI, 100, after=after
            )
            users += [int(user["id"]) for user in page]
            if len(page) < 100:
                return users
            after = users[-1]

    async def _member(self, guild_id: int, user_id: int) -> discord.Member | None:
        """The member with their roles (quotas depend on them); None if they left."""
        guild = self.bot.get_guild(guild_id)
        if guild is None:
            return None
        try:
            return guild.get_member(user_id) or await guild.fetch_member(user_id)
        except discord.HTTPException:
            return None


async def setup(bot: FluxBot) -> None:
    bot.add_dynamic_items(ResultButton)
    await bot.add_cog(Iterate(bot))
