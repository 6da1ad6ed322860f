"""Starting an edit from Discord: /edit and the message menu hand their options and files to
the domain's one `start_edit`, and point the member at the new job."""

from __future__ import annotations

from collections.abc import Sequence

import discord

from cogs.utils.context import AttachmentInput, CdnAttachmentInput, flux_bot, requester_from
from cogs.utils.render import started_text
from cogs.utils.replies import reply
from jobs.request import EditOptions


async def start_edit(
    interaction: discord.Interaction,
    options: EditOptions,
    files: Sequence[AttachmentInput | CdnAttachmentInput],
    *,
    note: str = "",
) -> None:
    """/edit and the message menu: the domain admits it; the member is pointed at it."""
    bot = flux_bot(interaction)
    try:
        started = await bot.jobs.start_edit(requester_from(interaction), options, files)
    finally:
        for file in files:
            file.discard()
    bot.parts.publisher.remember(started.job.id, interaction)
    await reply(interaction, started_text(started.job, note))
