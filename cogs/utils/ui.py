"""Base classes for views and persistent buttons: an exception in their callbacks reaches the
member through the same answer as a command's (`replies.answer_error`). Modals are forms
handled by custom id (`forms.py`), answered the same way."""

from __future__ import annotations

from typing import Any

import discord

from cogs.utils.replies import answer_error


class View(discord.ui.View):
    async def on_error(
        self, interaction: discord.Interaction, error: Exception, item: discord.ui.Item[Any], /
    ) -> None:
        await answer_error(interaction, error)


class AnswersErrors:
    """Mixed into a `discord.ui.DynamicItem` (a button that works after a restart: its state
    is in the custom_id, its behaviour in `run`). discord.py gives dynamic items a plain View,
    whose error handler only logs, so errors are answered here."""

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await self.run(interaction)
        except Exception as error:
            await answer_error(interaction, error)

    async def run(self, interaction: discord.Interaction) -> None:
        raise NotImplementedError
