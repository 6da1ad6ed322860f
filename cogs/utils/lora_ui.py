"""How the LoRA registry looks in Discord: cards with their history, pages, the removal
question, and the autocomplete of every LoRA option."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

from cogs.utils.choices import search_choices
from cogs.utils.context import channel_is_nsfw, flux_bot, requester_from
from cogs.utils.render import FIELD_MAX, markup, quote_prompt, timestamp
from cogs.utils.ui import View
from jobs.errors import MemberError
from jobs.records import Lora, LoraChange, LoraTraining
from jobs.registry import Page, Viewer
from jobs.text import plural

log = logging.getLogger(__name__)

HISTORY_SHOWN = 10


async def lora_autocomplete(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    """Registry matches for this server as members see them in this channel."""
    if interaction.guild_id is None:
        return []
    viewer = Viewer(manager=False, channel_nsfw=channel_is_nsfw(interaction.channel))
    registry = flux_bot(interaction).jobs.registry
    return await search_choices(registry, interaction.guild_id, viewer, current)


async def admin_lora_autocomplete(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    """Managers also see disabled LoRAs, flagged. discord.py runs no interaction_check before
    an autocomplete, so a member shown /admin by integration settings gets the member view."""
    if interaction.guild_id is None:
        return []
    jobs = flux_bot(interaction).jobs
    manager = await jobs.policy.is_manager(requester_from(interaction))
    viewer = Viewer(manager=manager, channel_nsfw=channel_is_nsfw(interaction.channel))
    return await search_choices(jobs.registry, interaction.guild_id, viewer, current)


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) or "none"


_FIELD_NAMES = {"default_scale": "scale", "trigger_words": "triggers"}
_ACTION_WORDS = {
    "add": "added",
    "edit": "changed",
    "disable": "disabled",
    "enable": "enabled",
    "remove": "removed",
}


def describe_change(change: LoraChange) -> str:
    """One history line: when, what, who; an edit also says what it changed, and a training
    says so (it names who trained it)."""
    trained = change.details.get("trained")
    if isinstance(trained, dict):
        word = "trained" if change.action == "add" else "retrained"
        line = (
            f"{timestamp(change.at, 'd')} {word} (training #{trained.get('job')}, "
            f"{trained.get('pairs')} pairs, {trained.get('steps')} steps)"
        )
        return f"{line} by <@{change.actor_id}>"
    line = f"{timestamp(change.at, 'd')} {_ACTION_WORDS[change.action]}"
    if change.action == "edit":
        parts = [
            f"{_FIELD_NAMES.get(key, key)} {_value(diff.get('old'))[:40]} → "
            f"{_value(diff.get('new'))[:40]}"
            for key, diff in change.details.items()
            if isinstance(diff, dict)
        ]
        if parts:
            line += " " + quote_prompt("; ".join(parts), 300)
    return f"{line} by <@{change.actor_id}>"


def _history_value(lines: list[str]) -> str:
    """The newest lines that fit one embed field, oldest of them first."""
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        if size + len(line) + 1 > FIELD_MAX or len(kept) == HISTORY_SHOWN:
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(reversed(kept)) or "none"


def lora_card(
    lora: Lora, history: list[LoraChange] | None = None, training: LoraTraining | None = None
) -> discord.Embed:
    embed = discord.Embed(
        title=lora.name,
        description=quote_prompt(lora.description or "No description.", 1000),
        colour=discord.Colour.dark_teal() if lora.enabled else discord.Colour.dark_grey(),
    )
    embed.add_field(name="Default scale", value=f"{lora.default_scale:g}")
    triggers = ", ".join(f"`{w}`" for w in lora.trigger_words) or "none"
    embed.add_field(name="Trigger words", value=triggers[:1024])
    embed.add_field(name="Uses", value=str(lora.uses))
    state = "enabled" if lora.enabled else "disabled"
    embed.add_field(name="State", value=state + (" · NSFW" if lora.nsfw else ""))
    embed.add_field(name="Version", value=str(lora.version))
    if history is not None:
        embed.add_field(name="Path", value=f"`{lora.path[:1000]}`", inline=False)
        lines = [describe_change(change) for change in history]
        embed.add_field(name="History", value=_history_value(lines), inline=False)
        if training is not None:
            embed.add_field(name="Training", value=recipe_value(training)[:FIELD_MAX], inline=False)
    return embed


def recipe_value(training: LoraTraining) -> str:
    """A trained LoRA's recipe, for managers: pairs, steps, learning rate, cost, who, when."""
    recipe = training.recipe
    parts = [
        plural(int(recipe.get("pairs", 0)), "pair"),
        f"{int(recipe.get('steps', 0)):,} steps",
        f"learning rate {float(recipe.get('learning_rate', 0)):g}",
        f"${float(recipe.get('cost_usd', 0)):.2f}",
    ]
    if recipe.get("caption"):
        parts.append(f"caption “{quote_prompt(str(recipe['caption']), 120)}”")
    who = recipe.get("trained_by")
    by = f" by <@{who}>" if who else ""
    return f"{' · '.join(parts)}\ntraining #{training.job_id}{by} {timestamp(training.at, 'd')}"


def page_embed(page: Page) -> discord.Embed:
    embed = discord.Embed(title="LoRAs on this server", colour=discord.Colour.dark_teal())
    if not page.loras:
        embed.description = "No LoRAs yet. An admin can add one with `/admin lora add`."
    for lora in page.loras:
        triggers = ", ".join(lora.trigger_words) or "—"
        value = (
            f"scale {lora.default_scale:g} · triggers: {quote_prompt(triggers, 200)} · "
            f"{lora.uses} uses\n{quote_prompt(lora.description or '', 300)}"
        )
        embed.add_field(name=lora.name, value=value[:1024], inline=False)
    embed.set_footer(
        text=f"Page {page.page + 1} of {page.pages} · {page.total} LoRAs · /loras name for a card"
    )
    return embed


class ConfirmRemove(View):
    """A one-shot confirmation on an ephemeral message; it may expire, the command can be rerun."""

    TIMEOUT = 120.0

    def __init__(self, lora: Lora) -> None:
        super().__init__(timeout=self.TIMEOUT)
        self.lora = lora
        self.interaction: discord.Interaction | None = None  # set once the question is shown

    async def on_timeout(self) -> None:
        # Dead buttons would answer "This interaction failed"; say what happened instead.
        if self.interaction is None:
            return
        try:
            await self.interaction.edit_original_response(
                content=f"Nothing was removed: the question expired. Run `/admin lora remove "
                f"{self.lora.name}` again if you still want to.",
                view=None,
            )
        except discord.HTTPException:
            log.info("could not close the expired remove question for %r", self.lora.name)

    @discord.ui.button(label="Remove", style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: discord.Interaction, _: discord.ui.Button[Any]) -> None:
        try:
            await flux_bot(interaction).jobs.registry.remove(requester_from(interaction), self.lora)
        except MemberError as error:
            await interaction.response.edit_message(content=markup(error.parts), view=None)
        else:
            await interaction.response.edit_message(
                content=f"Removed `{self.lora.name}`. Past results keep their recipe.", view=None
            )
        self.stop()

    @discord.ui.button(label="Keep it", style=discord.ButtonStyle.secondary)
    async def keep(self, interaction: discord.Interaction, _: discord.ui.Button[Any]) -> None:
        await interaction.response.edit_message(content=f"Kept `{self.lora.name}`.", view=None)
        self.stop()
