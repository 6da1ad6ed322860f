"""Small helpers every cog shares: who is asking, attachments as domain inputs, replies."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import discord

from jobs.errors import MemberError
from jobs.policy import Requester
from storage.errors import DuplicateName, LoraLimitReached, LoraNotFound

# Storage refusals an admin can act on; anything else is our bug and goes to the log.
MEMBER_FACING = (MemberError, DuplicateName, LoraLimitReached, LoraNotFound)
MESSAGE_MAX = 2000


def member_text(error: BaseException) -> str:
    if isinstance(error, DuplicateName):
        return f"A LoRA named `{error.existing}` already exists here (names ignore case)."
    if isinstance(error, LoraNotFound):
        return f"This server has no LoRA named `{error.name[:40]}`."
    if isinstance(error, LoraLimitReached):
        return f"This server already has {error.limit} LoRAs, the most allowed; remove one first."
    return str(error)


if TYPE_CHECKING:
    from bot import FluxBot

log = logging.getLogger(__name__)


def flux_bot(interaction: discord.Interaction) -> FluxBot:
    return cast("FluxBot", interaction.client)


def channel_is_nsfw(channel: object) -> bool:
    """Age-restricted channel; a thread inherits its parent's flag."""
    if isinstance(channel, discord.Thread):
        channel = channel.parent
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


def requester_from(interaction: discord.Interaction) -> Requester:
    if interaction.guild_id is None or interaction.channel_id is None:
        raise MemberError("This works in a server, not in direct messages.")
    user = interaction.user
    roles = frozenset(role.id for role in getattr(user, "roles", ()))
    perms = interaction.permissions
    return Requester(
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        user_id=user.id,
        role_ids=roles,
        channel_nsfw=channel_is_nsfw(interaction.channel),
        can_manage_messages=perms.manage_messages,
        can_manage_guild=perms.manage_guild,
        upload_limit=interaction.filesize_limit,
        parent_channel_id=parent_channel_id(interaction.channel),
    )


def parent_channel_id(channel: object) -> int | None:
    return channel.parent_id if isinstance(channel, discord.Thread) else None


def missing_post_permissions(interaction: discord.Interaction) -> list[str]:
    """What the bot lacks to post results in this channel, as Discord names it."""
    perms = interaction.app_permissions
    needed = {
        "View Channel": perms.view_channel,
        "Send Messages": perms.send_messages,
        "Attach Files": perms.attach_files,
        "Embed Links": perms.embed_links,
    }
    return [name for name, ok in needed.items() if not ok]


@dataclass
class AttachmentInput:
    """A Discord attachment seen by the domain as an InputFile."""

    label: str
    attachment: discord.Attachment
    _prefetch: asyncio.Task[bytes] | None = field(default=None, repr=False)

    def prefetch(self, max_bytes: int) -> None:
        """Start downloading now (while the interaction is being deferred); small files only."""
        if self._prefetch is None and self.attachment.size <= max_bytes:
            self._prefetch = asyncio.create_task(self.attachment.read())
            self._prefetch.add_done_callback(_retrieve)

    def discard(self) -> None:
        if self._prefetch is not None and not self._prefetch.done():
            self._prefetch.cancel()

    @property
    def filename(self) -> str:
        return self.attachment.filename

    @property
    def size(self) -> int:
        return self.attachment.size

    async def read(self) -> bytes:
        if self._prefetch is not None:
            return await self._prefetch
        return await self.attachment.read()


def _retrieve(task: asyncio.Task[bytes]) -> None:
    """Mark a prefetch's failure as seen; read() raises it again to whoever awaits it."""
    if not task.cancelled():
        task.exception()


async def reply(interaction: discord.Interaction, text: str, *, ephemeral: bool = True) -> None:
    """Answer an interaction whether or not it was deferred; never raises."""
    mentions = discord.AllowedMentions.none()
    text = text[:MESSAGE_MAX]  # a longer answer is refused by Discord and the member sees nothing
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(
                text, ephemeral=ephemeral, allowed_mentions=mentions
            )
        else:
            await interaction.followup.send(text, ephemeral=ephemeral, allowed_mentions=mentions)
    except discord.HTTPException:
        log.warning("could not answer interaction %s", interaction.id, exc_info=True)


async def is_bot_manager(interaction: discord.Interaction) -> bool:
    """Manage Server, or a role the server named as bot managers (`/admin settings managers`)."""
    if interaction.guild_id is None:
        return False
    if interaction.permissions.manage_guild:
        return True
    settings = await flux_bot(interaction).storage.settings.get(interaction.guild_id)
    roles = {role.id for role in getattr(interaction.user, "roles", ())}
    return bool(roles & set(settings.manager_roles))
