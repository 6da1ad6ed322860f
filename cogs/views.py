"""Persistent buttons: the job id lives in the custom_id, so they work after a restart."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import discord

from cogs.common import flux_bot, reply, requester_from
from jobs.errors import MemberError

log = logging.getLogger(__name__)

# Handlers for result buttons, registered by the cog that implements them (action → handler).
ButtonHandler = Callable[[discord.Interaction, int], Awaitable[None]]
RESULT_HANDLERS: dict[str, ButtonHandler] = {}


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"job:(?P<id>\d+):cancel"
):
    def __init__(self, job_id: int, label: str = "Cancel") -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=f"job:{job_id}:cancel",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> CancelButton:
        return cls(int(match["id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            who = requester_from(interaction)
            await flux_bot(interaction).jobs.cancel(self.job_id, who)
        except MemberError as error:
            await reply(interaction, str(error))
            return
        await reply(interaction, f"Edit #{self.job_id} is cancelled; you were not charged.")


class ResultButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"job:(?P<id>\d+):(?P<action>rerun|tweak|reuse|delete)",
):
    LABELS: ClassVar[dict[str, tuple[str, str, discord.ButtonStyle]]] = {
        "rerun": ("Rerun", "🔁", discord.ButtonStyle.primary),
        "tweak": ("Tweak", "🛠️", discord.ButtonStyle.secondary),
        "reuse": ("Use as input", "➡️", discord.ButtonStyle.secondary),
        "delete": ("Delete", "🗑️", discord.ButtonStyle.danger),
    }

    def __init__(self, job_id: int, action: str) -> None:
        label, emoji, style = self.LABELS[action]
        super().__init__(
            discord.ui.Button(
                label=label, emoji=emoji, style=style, custom_id=f"job:{job_id}:{action}"
            )
        )
        self.job_id = job_id
        self.action = action

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> ResultButton:
        return cls(int(match["id"]), match["action"])

    async def callback(self, interaction: discord.Interaction) -> None:
        handler = RESULT_HANDLERS.get(self.action)
        if handler is None:
            await reply(interaction, "That button isn't available right now.")
            return
        await handler(interaction, self.job_id)


def status_view(job_id: int, *, running: bool) -> discord.ui.View | None:
    if not running:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id))
    return view


def result_view(job_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in ResultButton.LABELS:
        view.add_item(ResultButton(job_id, action))
    return view


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (CancelButton, ResultButton)
