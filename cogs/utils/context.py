"""Who is asking, from where: one Requester builder for interactions and reactions, and
Discord attachments seen by the domain as input files."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import discord

from jobs.errors import MemberError
from jobs.forms import EditDraft
from jobs.policy import Requester

if TYPE_CHECKING:
    from bot import FluxBot

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024


def flux_bot(interaction: discord.Interaction) -> FluxBot:
    return cast("FluxBot", interaction.client)


def channel_is_nsfw(channel: object) -> bool:
    """Age-restricted channel; a thread inherits its parent's flag."""
    if isinstance(channel, discord.Thread):
        channel = channel.parent
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


def _missing_post_permissions(perms: discord.Permissions) -> tuple[str, ...]:
    """What the bot lacks to post results in a channel, as Discord names it."""
    needed = {
        "View Channel": perms.view_channel,
        "Send Messages": perms.send_messages,
        "Attach Files": perms.attach_files,
        "Embed Links": perms.embed_links,
    }
    return tuple(name for name, ok in needed.items() if not ok)


def make_requester(
    *,
    guild_id: int,
    channel_id: int,
    channel: object,
    user: object,
    permissions: discord.Permissions,
    upload_limit: int,
    bot_permissions: discord.Permissions | None = None,
) -> Requester:
    return Requester(
        guild_id=guild_id,
        channel_id=channel_id,
        user_id=cast("discord.abc.Snowflake", user).id,
        role_ids=frozenset(role.id for role in getattr(user, "roles", ())),
        channel_nsfw=channel_is_nsfw(channel),
        can_manage_messages=permissions.manage_messages,
        can_manage_guild=permissions.manage_guild,
        upload_limit=upload_limit,
        parent_channel_id=channel.parent_id if isinstance(channel, discord.Thread) else None,
        bot_missing=() if bot_permissions is None else _missing_post_permissions(bot_permissions),
    )


def requester_from(interaction: discord.Interaction) -> Requester:
    if interaction.guild_id is None or interaction.channel_id is None:
        raise MemberError("This works in a server, not in direct messages.")
    return make_requester(
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        channel=interaction.channel,
        user=interaction.user,
        permissions=interaction.permissions,
        upload_limit=interaction.filesize_limit,
        bot_permissions=interaction.app_permissions,
    )


@dataclass(frozen=True, slots=True)
class Reaction:
    """A member's 🔁 on a message: from the gateway, or found at start (catch-up)."""

    guild_id: int
    channel_id: int
    message_id: int
    user_id: int
    member: discord.Member | None

    @classmethod
    def from_event(cls, payload: discord.RawReactionActionEvent) -> Reaction:
        return cls(
            payload.guild_id or 0,
            payload.channel_id,
            payload.message_id,
            payload.user_id,
            payload.member,
        )


def requester_from_reaction(bot: discord.Client, payload: Reaction) -> Requester:
    guild = bot.get_guild(payload.guild_id)
    channel = guild.get_channel_or_thread(payload.channel_id) if guild else None
    member = payload.member
    perms = (
        channel.permissions_for(member)
        if channel is not None and member is not None
        else discord.Permissions.none()
    )
    return make_requester(
        guild_id=payload.guild_id,
        channel_id=payload.channel_id,
        channel=channel,
        user=member or discord.Object(payload.user_id),
        permissions=perms,
        upload_limit=guild.filesize_limit if guild else DEFAULT_UPLOAD_LIMIT,
    )


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


IMAGE_LABELS = ("image", "image2", "image3")  # as members see them in /edit's options


@dataclass
class CdnAttachmentInput:
    """An attachment known by its Discord CDN URL only (from a stored form draft)."""

    label: str
    url: str
    filename: str
    size: int
    http: discord.http.HTTPClient = field(repr=False)

    def discard(self) -> None:
        pass

    async def read(self) -> bytes:
        return await self.http.get_from_cdn(self.url)


def draft_inputs(bot: discord.Client, draft: EditDraft) -> list[CdnAttachmentInput]:
    return [
        CdnAttachmentInput(label, image.url, image.filename, image.size, bot.http)
        for label, image in zip(IMAGE_LABELS, draft.images, strict=False)
    ]


def _retrieve(task: asyncio.Task[bytes]) -> None:
    """Mark a prefetch's failure as seen; read() raises it again to whoever awaits it."""
    if not task.cancelled():
        task.exception()
