"""Modals that survive a restart. discord.py keeps a sent modal in memory and drops its submit
after a restart, losing what the member typed; so a form is sent for its layout only, and its
submit is handled by its custom id (like the persistent buttons) by the extension that owns it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import discord

from cogs.utils.replies import answer_error

FormHandler = Callable[[discord.Interaction, re.Match[str], dict[str, str]], Awaitable[None]]


async def send_form(interaction: discord.Interaction, modal: discord.ui.Modal) -> None:
    """Show the modal; its submit comes back through `dispatch_form`, before or after a
    restart alike."""
    await interaction.response.send_modal(modal)
    modal.stop()  # forget it in memory: the custom id carries everything its submit needs


def form_values(data: Mapping[str, Any]) -> dict[str, str]:
    """Submitted text by field custom id (fields sit in action rows or in labels)."""
    values: dict[str, str] = {}
    for top in data.get("components") or []:
        children = top.get("components") or []
        if isinstance(top.get("component"), dict):
            children = [top["component"]]
        for child in children:
            if isinstance(child, dict) and "custom_id" in child:
                values[str(child["custom_id"])] = str(child.get("value") or "")
    return values


async def dispatch_form(
    interaction: discord.Interaction, forms: Mapping[re.Pattern[str], FormHandler]
) -> bool:
    """Run the handler whose template matches this modal submit; False if none does."""
    if interaction.type is not discord.InteractionType.modal_submit:
        return False
    data: Mapping[str, Any] = interaction.data or {}
    custom_id = str(data.get("custom_id", ""))
    for template, handler in forms.items():
        match = template.fullmatch(custom_id)
        if match is not None:
            try:
                await handler(interaction, match, form_values(data))
            except Exception as error:
                await answer_error(interaction, error)
            return True
    return False
