"""Autocomplete choices for every LoRA option: one ranking and one label, wherever it is typed.

Kept free of interactions so the benchmark times exactly what a keystroke costs.
"""

from __future__ import annotations

from discord import app_commands

from jobs.records import Lora
from jobs.registry import Registry, Viewer

AUTOCOMPLETE_LIMIT = 25  # Discord refuses a 26th choice
CHOICE_MAX = 100  # Discord's limit for a choice's name and value


def choice_label(lora: Lora, *, show_state: bool = False) -> str:
    """`name · scale · description…`; managers also see whether it is disabled or NSFW."""
    head = lora.name
    if show_state:
        head += "".join([" (disabled)" if not lora.enabled else "", " (NSFW)" if lora.nsfw else ""])
    label = f"{head} · {lora.default_scale:g}"
    if lora.description:
        # Descriptions may hold newlines; a choice name is one line.
        label += " · " + " ".join(lora.description.split())
    if len(label) > CHOICE_MAX:
        label = label[: CHOICE_MAX - 1].rstrip() + "…"
    return label


def lora_choices(loras: list[Lora], *, show_state: bool = False) -> list[app_commands.Choice[str]]:
    return [
        app_commands.Choice(name=choice_label(lora, show_state=show_state), value=lora.name)
        for lora in loras[:AUTOCOMPLETE_LIMIT]
    ]


async def search_choices(
    registry: Registry, guild_id: int, viewer: Viewer, current: str
) -> list[app_commands.Choice[str]]:
    """Prefix matches of the name, then name substrings, then description substrings."""
    found = await registry.search(guild_id, viewer, current, CHOICE_MAX)
    return lora_choices(found, show_state=viewer.manager)
