"""The domain's Publisher, on Discord: status messages, result messages, private notes, and
alerts for a server's managers."""

from __future__ import annotations

import io
import logging
from datetime import timedelta
from typing import Any

import discord
from discord.ext import commands

from cogs.utils.buttons import result_view, status_view
from cogs.utils.render import MESSAGE_MAX, RERUN_EMOJI, markup, recipe_embed, status_text
from cogs.utils.studio import (
    sheet_embed,
    sheet_nonce,
    sheet_view,
    sweep_status_text,
)
from cogs.utils.studio import (
    status_nonce as sweep_status_nonce,
)
from jobs.metrics import Metrics
from jobs.publisher import (
    Delivery,
    DeliveryError,
    DeliveryForbidden,
    DeliveryTooLarge,
    SheetDelivery,
    StatusUpdate,
    SweepStatus,
)
from jobs.records import AnyJob, EditJob, is_training
from jobs.text import Words
from storage.sweeps import Sweep

log = logging.getLogger(__name__)

TOKEN_LIFETIME = timedelta(minutes=14)  # Discord's is 15; leave a margin for the request itself
LIVE_PHASES = {"admitted", "waiting", "queued", "running"}


def delivery_nonce(job_id: int) -> str:
    """Deterministic per job: Discord drops a second send with the same nonce (enforce_nonce)."""
    return f"flux-job-{job_id}"


def status_nonce(job_id: int) -> str:
    """The status message's own nonce: a restart that never learned the id of the status
    message it posted gets the same message back instead of leaving a stale second one."""
    return f"flux-status-{job_id}"


def _translate(
    error: discord.HTTPException, channel_id: int, metrics: Metrics | None = None
) -> DeliveryError:
    if metrics is not None:
        metrics.discord_errors.labels(status=str(error.status)).inc()
    if isinstance(error, discord.Forbidden):
        return DeliveryForbidden(
            f"I'm not allowed to post results in <#{channel_id}> (I need View Channel, "
            "Send Messages, Attach Files and Embed Links there; ask an admin)."
        )
    if isinstance(error, discord.NotFound):
        return DeliveryForbidden(f"The channel <#{channel_id}> is gone.")
    if error.status == 413 or error.code == 40005:
        return DeliveryTooLarge("The result is larger than this channel's upload limit.")
    return DeliveryError("Discord didn't accept the result message.")


class DiscordPublisher:
    def __init__(self, bot: commands.AutoShardedBot, metrics: Metrics | None = None) -> None:
        self.bot = bot
        self.metrics = metrics
        self._interactions: dict[int, discord.Interaction] = {}

    def remember(self, job_id: int, interaction: discord.Interaction) -> None:
        """Keep the interaction so private notes can go through its token while it lives."""
        now = discord.utils.utcnow()
        for old_id, old in list(self._interactions.items()):
            if now - old.created_at > TOKEN_LIFETIME:
                del self._interactions[old_id]
        self._interactions[job_id] = interaction

    def _channel(self, job: AnyJob) -> discord.PartialMessageable:
        return self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)

    async def show_status(self, job: AnyJob, update: StatusUpdate) -> int | None:
        content = status_text(job, update)
        view = status_view(job.id, running=update.phase in LIVE_PHASES)
        channel = self._channel(job)
        try:
            if job.status_message_id is None:
                message = await channel.send(
                    content,
                    view=view or discord.utils.MISSING,
                    nonce=status_nonce(job.id),
                    allowed_mentions=discord.AllowedMentions.none(),
                )
                return message.id
            await channel.get_partial_message(job.status_message_id).edit(
                content=content, view=view, allowed_mentions=discord.AllowedMentions.none()
            )
        except discord.NotFound as error:
            if job.status_message_id is not None:
                log.info("job %s: its status message was deleted", job.id)
                return None
            raise _translate(error, job.channel_id, self.metrics) from error
        except discord.HTTPException as error:
            raise _translate(error, job.channel_id, self.metrics) from error
        return None

    async def deliver(self, job: EditJob, delivery: Delivery) -> int:
        files = [
            discord.File(io.BytesIO(image.data), filename=image.filename, spoiler=image.spoiler)
            for image in delivery.images
        ]
        # Reply to the status message when there is one. Without one the keyword is left out:
        # send() treats a MISSING reference as an object and raises TypeError.
        reply: dict[str, Any] = {}
        if job.status_message_id is not None:
            reply["reference"] = discord.MessageReference(
                message_id=job.status_message_id,
                channel_id=job.channel_id,
                guild_id=job.guild_id,
                fail_if_not_exists=False,
            )
        try:
            message = await self._channel(job).send(
                f"<@{job.user_id}>",
                embed=recipe_embed(job, delivery, job.guild_id),
                files=files,
                view=result_view(job.id),
                nonce=delivery_nonce(job.id),
                **reply,
                allowed_mentions=discord.AllowedMentions(
                    everyone=False, roles=False, users=[discord.Object(job.user_id)]
                ),
            )
        except discord.HTTPException as error:
            raise _translate(error, job.channel_id, self.metrics) from error
        return message.id

    async def decorate(self, job: AnyJob) -> None:
        """The 🔁 reaction, once the delivery is recorded; a failure here loses nothing."""
        if job.result_message_id is None:
            return
        message = self._channel(job).get_partial_message(job.result_message_id)
        try:
            await message.add_reaction(RERUN_EMOJI)
        except discord.HTTPException:
            log.info("job %s: could not add the rerun reaction", job.id)

    async def notify(self, job: AnyJob, text: str) -> None:
        interaction = self._interactions.pop(job.id, None)
        mentions = discord.AllowedMentions.none()
        if interaction is not None:
            age = discord.utils.utcnow() - interaction.created_at
            if age < TOKEN_LIFETIME:
                try:
                    await interaction.followup.send(text, ephemeral=True, allowed_mentions=mentions)
                    return
                except discord.HTTPException:
                    log.info("job %s: interaction follow-up failed; trying a DM", job.id)
        try:
            user = self.bot.get_user(job.user_id) or await self.bot.fetch_user(job.user_id)
            what = "training" if is_training(job) else "edit"
            await user.send(f"About your {what} #{job.id}: {text}", allowed_mentions=mentions)
        except discord.HTTPException:
            log.warning("job %s: could not tell member %s: %s", job.id, job.user_id, text)

    # ------------------------------------------------------------------ sweeps

    async def show_sweep(self, sweep: Sweep, update: SweepStatus) -> int | None:
        content = sweep_status_text(sweep, update)
        channel = self.bot.get_partial_messageable(sweep.channel_id, guild_id=sweep.guild_id)
        mentions = discord.AllowedMentions.none()
        try:
            if sweep.status_message_id is None:
                message = await channel.send(
                    content, nonce=sweep_status_nonce(sweep.id), allowed_mentions=mentions
                )
                return message.id
            await channel.get_partial_message(sweep.status_message_id).edit(
                content=content, allowed_mentions=mentions
            )
        except discord.NotFound as error:
            if sweep.status_message_id is not None:
                log.info("sweep %s: its status message was deleted", sweep.id)
                return None
            raise _translate(error, sweep.channel_id, self.metrics) from error
        except discord.HTTPException as error:
            raise _translate(error, sweep.channel_id, self.metrics) from error
        return None

    async def post_sheet(self, sweep: Sweep, sheet: SheetDelivery) -> int:
        image = sheet.image
        file = discord.File(io.BytesIO(image.data), filename=image.filename, spoiler=image.spoiler)
        reply: dict[str, Any] = {}
        if sweep.status_message_id is not None:
            reply["reference"] = discord.MessageReference(
                message_id=sweep.status_message_id,
                channel_id=sweep.channel_id,
                guild_id=sweep.guild_id,
                fail_if_not_exists=False,
            )
        view = sheet_view(sweep.id, sheet.cells)
        channel = self.bot.get_partial_messageable(sweep.channel_id, guild_id=sweep.guild_id)
        try:
            message = await channel.send(
                f"<@{sweep.user_id}>",
                embed=sheet_embed(sweep, sheet),
                file=file,
                view=view or discord.utils.MISSING,
                nonce=sheet_nonce(sweep.id),
                **reply,
                allowed_mentions=discord.AllowedMentions(
                    everyone=False, roles=False, users=[discord.Object(sweep.user_id)]
                ),
            )
        except discord.HTTPException as error:
            raise _translate(error, sweep.channel_id, self.metrics) from error
        return message.id

    async def post_alert(self, guild_id: int, channel_id: int, text: Words) -> None:
        channel = self.bot.get_partial_messageable(channel_id, guild_id=guild_id)
        try:
            await channel.send(
                markup(text)[:MESSAGE_MAX], allowed_mentions=discord.AllowedMentions.none()
            )
        except discord.Forbidden as error:
            raise DeliveryForbidden(f"I may not post in <#{channel_id}>.") from error
        except discord.NotFound as error:
            raise DeliveryForbidden(f"The channel <#{channel_id}> is gone.") from error
        except discord.HTTPException as error:
            if self.metrics is not None:
                self.metrics.discord_errors.labels(status=str(error.status)).inc()
            raise DeliveryError("Discord didn't accept the alert.") from error
