"""How presets look in Discord: their cards, the /presets list and the preset autocompletes."""

from __future__ import annotations

import discord
from discord import app_commands

from cogs.utils.choices import AUTOCOMPLETE_LIMIT, CHOICE_MAX
from cogs.utils.context import flux_bot, requester_from
from cogs.utils.render import FIELD_MAX, quote_prompt
from jobs.errors import MemberError
from jobs.presets import PresetView
from jobs.request import SIZE_CHOICES

EMBED_FIELDS_MAX = 25

SIZE_OPTIONS = [app_commands.Choice(name=label, value=key) for key, label in SIZE_CHOICES.items()]
ACCELERATION_OPTIONS = [
    app_commands.Choice(name="none (best quality, slowest)", value="none"),
    app_commands.Choice(name="regular", value="regular"),
    app_commands.Choice(name="high (fastest, for drafts)", value="high"),
]
FORMAT_OPTIONS = [
    app_commands.Choice(name="PNG", value="png"),
    app_commands.Choice(name="JPEG", value="jpeg"),
    app_commands.Choice(name="WebP", value="webp"),
]


def loras_text(view: PresetView) -> str:
    return ", ".join(f"{name} × {scale:g}" for name, scale in view.loras) or "no LoRA"


def settings_text(view: PresetView) -> str:
    recipe = view.recipe
    parts = [
        f"{label} {value:g}" if isinstance(value, float) else f"{label} {value}"
        for label, value in (
            ("guidance", recipe.guidance),
            ("steps", recipe.steps),
            ("size", recipe.size),
            ("acceleration", recipe.acceleration),
            ("format", recipe.output_format),
        )
        if value is not None
    ]
    return " · ".join(parts)


def choice_label(view: PresetView) -> str:
    label = f"{view.name} · {loras_text(view)}"
    if view.recipe.description:
        label += " · " + " ".join(view.recipe.description.split())
    return label if len(label) <= CHOICE_MAX else label[: CHOICE_MAX - 1].rstrip() + "…"


def _describe(view: PresetView) -> str:
    lines = [f"LoRAs: {quote_prompt(loras_text(view), 300)}"]
    if view.recipe.template:
        lines.append(f"Template: {quote_prompt(view.recipe.template, 300)}")
    if settings_text(view):
        lines.append(settings_text(view))
    if view.recipe.description:
        lines.append(f"*{quote_prompt(view.recipe.description, 200)}*")
    if view.problem is not None:
        lines.append(f"⚠️ Can't be used now: {view.problem}.")
    return "\n".join(lines)[:FIELD_MAX]


def preset_card(view: PresetView) -> discord.Embed:
    embed = discord.Embed(
        title=f"Preset `{view.name}`", description=_describe(view), colour=discord.Colour.teal()
    )
    embed.set_footer(text=f"Use it with /edit preset:{view.name}")
    return embed


def presets_embed(views: list[PresetView]) -> discord.Embed:
    embed = discord.Embed(title="Presets", colour=discord.Colour.teal())
    if not views:
        embed.description = "No presets to show here. Admins add them with `/admin preset add`."
        return embed
    embed.description = "Use one with `/edit preset:`; what you set yourself wins."
    shown = views[:EMBED_FIELDS_MAX]
    for view in shown:
        embed.add_field(name=view.name, value=_describe(view), inline=False)
    if len(views) > len(shown):
        embed.set_footer(
            text=f"…and {len(views) - len(shown)} more; type in /edit preset: to find them"
        )
    return embed


async def _search(
    interaction: discord.Interaction, current: str, *, usable_only: bool
) -> list[app_commands.Choice[str]]:
    if interaction.guild_id is None:
        return []
    try:
        who = requester_from(interaction)
    except MemberError:
        return []
    found = await flux_bot(interaction).jobs.presets.search(who, current, usable_only=usable_only)
    return [
        app_commands.Choice(name=choice_label(view), value=view.name)
        for view in found[:AUTOCOMPLETE_LIMIT]
    ]


async def preset_autocomplete(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    """The presets a member can use here (none with a removed, disabled or, outside an
    age-restricted channel, NSFW LoRA)."""
    return await _search(interaction, current, usable_only=True)


async def admin_preset_autocomplete(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    return await _search(interaction, current, usable_only=False)
