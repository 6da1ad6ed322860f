"""The persistent buttons' look and custom_id: the job id lives in the custom_id, so they work
after a restart. Each extension registers the DynamicItem that handles its own templates."""

from __future__ import annotations

from typing import Final

import discord

CANCEL_TEMPLATE: Final = r"job:(?P<id>\d+):cancel"
RESULT_TEMPLATE: Final = r"job:(?P<id>\d+):(?P<action>rerun|tweak|reuse|sweep|compare|delete)"

# In order; Delete goes on a row of its own, away from the others.
RESULT_ACTIONS: Final[dict[str, tuple[str, str, discord.ButtonStyle]]] = {
    "rerun": ("Rerun", "🔁", discord.ButtonStyle.primary),
    "tweak": ("Tweak", "🛠️", discord.ButtonStyle.secondary),
    "reuse": ("Use as input", "➡️", discord.ButtonStyle.secondary),
    "sweep": ("Sweep", "🎚️", discord.ButtonStyle.secondary),
    "compare": ("Compare", "🌓", discord.ButtonStyle.secondary),
    "delete": ("Delete", "🗑️", discord.ButtonStyle.danger),
}


def cancel_button(job_id: int, label: str = "Cancel") -> discord.ui.Button[discord.ui.View]:
    return discord.ui.Button(
        label=label, style=discord.ButtonStyle.secondary, custom_id=f"job:{job_id}:cancel"
    )


def result_button(job_id: int, action: str) -> discord.ui.Button[discord.ui.View]:
    label, emoji, style = RESULT_ACTIONS[action]
    return discord.ui.Button(
        label=label,
        emoji=emoji,
        style=style,
        custom_id=f"job:{job_id}:{action}",
        row=1 if action == "delete" else 0,
    )


def status_view(job_id: int, *, running: bool) -> discord.ui.View | None:
    if not running:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(cancel_button(job_id))
    return view


def result_view(job_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in RESULT_ACTIONS:
        view.add_item(result_button(job_id, action))
    return view


def cancel_list_view(job_ids: list[int]) -> discord.ui.View | None:
    """One Cancel button per running job (Discord allows 25 on a message)."""
    view = discord.ui.View(timeout=None)
    for job_id in job_ids[:25]:
        view.add_item(cancel_button(job_id, label=f"Cancel #{job_id}"))
    return view if view.children else None
