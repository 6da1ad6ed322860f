"""Slash-command options checked against the command's own declaration before it runs.

Discord's client refuses values outside an option's type, range, length or choices, but a
modified client can send them, and discord.py passes them through unchecked (a string in a
number option even crashes its option parsing). One check here, on every command, answers such a
value with a specific message instead of a stack trace, and keeps out-of-range values away from
the settings and the registry that every later request reads.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import discord
from discord import AppCommandOptionType as OptionType
from discord import app_commands
from discord.ext import commands

from cogs.utils.render import shown
from cogs.utils.replies import reply

if TYPE_CHECKING:
    from bot import FluxBot

STRING_MAX = 6000  # Discord's own cap on a string option

_SUBCOMMANDS = (OptionType.subcommand.value, OptionType.subcommand_group.value)
_RESOLVED_IN: dict[OptionType, tuple[str, ...]] = {
    OptionType.user: ("users",),
    OptionType.role: ("roles",),
    OptionType.channel: ("channels",),
    OptionType.mentionable: ("users", "roles"),
    OptionType.attachment: ("attachments",),
}
_KIND_NAMES: dict[OptionType, str] = {
    OptionType.user: "a member of this server",
    OptionType.role: "a role of this server",
    OptionType.channel: "a channel of this server",
    OptionType.mentionable: "a member or a role of this server",
    OptionType.attachment: "an uploaded file",
}


def leaf_options(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The options of the subcommand that runs (Discord nests them under groups)."""
    options: list[dict[str, Any]] = list(data.get("options") or [])
    while len(options) == 1 and options[0].get("type") in _SUBCOMMANDS:
        options = list(options[0].get("options") or [])
    return options


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _num(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:g}"


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"between {_num(low)} and {_num(high)}"
    if low is not None:
        return f"at least {_num(low)}"
    return f"at most {_num(high or 0)}"


def _check_value(
    param: app_commands.Parameter, value: Any, resolved: Mapping[str, Any]
) -> str | None:
    name = f"`{param.display_name}`"
    kind = param.type
    if kind in _RESOLVED_IN:
        found = isinstance(value, str) and any(
            value in (resolved.get(part) or {}) for part in _RESOLVED_IN[kind]
        )
        return None if found else f"{name} must be {_KIND_NAMES[kind]}."
    if kind is OptionType.boolean:
        if not isinstance(value, bool):
            return f"{name} must be true or false; you gave `{shown(value)}`."
        return None
    if kind is OptionType.string:
        if not isinstance(value, str):
            return f"{name} must be text; you gave `{shown(value)}`."
        low, high = param.min_value, param.max_value
        high = STRING_MAX if high is None else min(int(high), STRING_MAX)
        if low is not None and len(value) < low:
            return f"{name} needs at least {_num(low)} character(s)."
        if len(value) > high:
            return f"{name} is {len(value):,} characters; the limit is {high:,}."
    elif kind is OptionType.integer:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{name} must be a whole number; you gave `{shown(value)}`."
    elif kind is OptionType.number:
        number = _number(value)
        if number is None or not math.isfinite(number):
            return f"{name} must be a number; you gave `{shown(value)}`."
    if kind in (OptionType.integer, OptionType.number):
        low, high = param.min_value, param.max_value
        if (low is not None and value < low) or (high is not None and value > high):
            return f"{name} must be {_range_text(low, high)}; you gave {_num(value)}."
    choices = param.choices
    if choices and value not in [choice.value for choice in choices]:
        offered = ", ".join(choice.name for choice in choices)
        return f"{name} must be one of: {offered}. You gave `{shown(value)}`."
    return None


def option_problem(
    command: app_commands.Command[Any, ..., Any],
    options: Sequence[Mapping[str, Any]],
    resolved: Mapping[str, Any],
) -> str | None:
    """What is wrong with the options as sent, in the member's words; None when all is well."""
    params = {param.display_name: param for param in command.parameters}
    given: set[str] = set()
    for option in options:
        key = str(option.get("name"))
        param = params.get(key)
        if param is None:
            return f"`/{command.qualified_name}` has no option `{shown(key)}`."
        if key in given:
            return f"`{param.display_name}` was given twice."
        given.add(key)
        problem = _check_value(param, option.get("value"), resolved)
        if problem is not None:
            return problem
    missing = [
        p.display_name for p in command.parameters if p.required and p.display_name not in given
    ]
    if missing:
        return f"`/{command.qualified_name}` needs `{missing[0]}`."
    return None


class OptionGuard(commands.Cog):
    """Installs the check as the command tree's interaction_check (runs before option parsing)."""

    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot
        self._previous: Callable[[Any], Awaitable[bool]] = bot.tree.interaction_check
        bot.tree.interaction_check = self.check  # type: ignore[method-assign]

    async def cog_unload(self) -> None:
        self.bot.tree.interaction_check = self._previous  # type: ignore[method-assign, assignment]

    async def check(self, interaction: discord.Interaction[Any]) -> bool:
        command = interaction.command
        if interaction.type is discord.InteractionType.application_command and isinstance(
            command, app_commands.Command
        ):
            data: Mapping[str, Any] = interaction.data or {}
            problem = option_problem(command, leaf_options(data), data.get("resolved") or {})
            if problem is not None:
                await reply(interaction, problem)
                return False
        return await self._previous(interaction)


async def setup(bot: FluxBot) -> None:
    await bot.add_cog(OptionGuard(bot))
