"""The one way to answer a member: capped at Discord's 2,000 characters, no pings, ephemeral
unless said otherwise, never raising. Member errors all come through `answer_error`."""

from __future__ import annotations

import logging

import discord

from cogs.utils.render import MESSAGE_MAX, markup
from jobs.errors import MemberError

log = logging.getLogger(__name__)

GENERIC_FAILURE = "Something went wrong on our side; nothing was charged. Please try again."


async def reply(
    interaction: discord.Interaction,
    text: str = "",
    *,
    ephemeral: bool = True,
    embed: discord.Embed | None = None,
    view: discord.ui.View | None = None,
    file: discord.File | None = None,
    files: list[discord.File] | None = None,
) -> None:
    """Answer an interaction whether or not it was deferred; never raises."""
    text = text[:MESSAGE_MAX]  # a longer answer is refused by Discord and the member sees nothing
    missing = discord.utils.MISSING
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(
                text or None,
                ephemeral=ephemeral,
                allowed_mentions=discord.AllowedMentions.none(),
                embed=embed or missing,
                view=view or missing,
                file=file or missing,
                files=files or missing,
            )
        else:
            await interaction.followup.send(
                text or missing,
                ephemeral=ephemeral,
                allowed_mentions=discord.AllowedMentions.none(),
                embed=embed or missing,
                view=view or missing,
                file=file or missing,
                files=files or missing,
            )
    except discord.HTTPException:
        log.warning("could not answer interaction %s", interaction.id, exc_info=True)


async def answer_error(interaction: discord.Interaction, error: BaseException) -> None:
    """A member error in the member's words; anything else is our bug: logged, and a short
    apology that says nothing was charged."""
    if isinstance(error, MemberError):
        await reply(interaction, markup(error.parts))
        return
    log.error("interaction %s failed", interaction.id, exc_info=error)
    await reply(interaction, GENERIC_FAILURE)
