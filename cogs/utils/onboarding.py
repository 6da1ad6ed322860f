"""The first five minutes on Discord: `/help`'s text, the setup checklist as a message, and
the bot's permissions in a channel as the plain facts `jobs/setup_check.py` decides from."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import discord
from discord import app_commands

from cogs.utils.render import MESSAGE_MAX, markup
from jobs.setup_check import NEEDED_PERMISSIONS, Checklist

ADMIN = "admin"
HELP = "help"

# One worked example per member command, as a member would type it.
EXAMPLES: dict[str, str] = {
    "edit": "`/edit image:photo.png prompt:make it look like clay lora:claymation`",
    "loras": "`/loras` to browse, or `/loras name:claymation` for one LoRA's card",
    "quota": '`/quota` → "You\'ve used 3 of 10 images in the last 24 h; 7 left."',
    "jobs": "`/jobs` → your last edits with links to the results, and Cancel on running ones",
    "sweep": "`/sweep image:photo.png prompt:make it clay lora:claymation`",
    "presets": "`/presets`, then `/edit … preset:portrait`",
}
MENU_EXAMPLE = "Right-click (or long-press) a message with pictures → Apps → Edit with FLUX.2 LoRA…"

# What a manager reaches for first, each with an example.
ADMIN_LINES: tuple[str, ...] = (
    "`/admin setup`: what is configured and what is missing, each with its fix",
    "`/admin lora add name:claymation path:owner/claymation`: register a LoRA",
    "`/admin preset add name:portrait lora:claymation`: a bundle for `/edit preset:`",
    "`/admin lora train name:watercolor pairs:pairs.zip`: train an edit LoRA from before/after "
    "pairs (shows the cost and asks first)",
    "`/admin quota default images:10 window_hours:24`: images per member",
    "`/admin budget set usd:50`: the server's monthly cap on fal spend",
    "`/admin settings alerts channel:#mods`: a message at 50 %, 80 % and 100 % of the budget",
    "`/admin usage`: spend per member, a chart of the month and a CSV",
)


AnyCommand = app_commands.Command[Any, ..., Any] | app_commands.Group | app_commands.ContextMenu


def help_text(commands: Iterable[AnyCommand], manager: bool) -> str:
    """What the bot does and the commands this member can use, one example each; managers
    also get `/admin`. Built from the synced tree, so a new member command shows up here."""
    lines = [
        "**FLUX.2 LoRA edit bot**: edit your images with this server's FLUX.2 edit LoRAs "
        "(trained transformations like photo → clay or day → night). Results are posted in the "
        "channel with their recipe; react 🔁 on any result to rerun it with a new seed.",
        "",
        "**Your commands**",
    ]
    for command in sorted(commands, key=lambda c: c.name):
        if command.name in (ADMIN, HELP) or isinstance(command, app_commands.ContextMenu):
            continue
        lines.append(f"`/{command.name}`: {command.description}")
        example = EXAMPLES.get(command.name)
        if example:
            lines.append(f"  e.g. {example}")
    lines.append("Message menu **Edit with FLUX.2 LoRA…**: edit the images of any message")
    lines.append(f"  e.g. {MENU_EXAMPLE}")
    lines += [
        "",
        "The LoRAs you can use are in `/loras`; what you have left of your quota is in `/quota`.",
    ]
    if manager:
        lines += ["", "**Managing the bot** (you can use `/admin`)"]
        lines += [f"• {line}" for line in ADMIN_LINES]
    return "\n".join(lines)[:MESSAGE_MAX]


def granted_in(
    channel: discord.abc.GuildChannel | discord.Thread, me: discord.Member
) -> dict[str, bool]:
    """The bot's permissions in a channel, by Discord's flag names (only those that matter)."""
    permissions = channel.permissions_for(me)
    return {flag: bool(getattr(permissions, flag)) for flag in NEEDED_PERMISSIONS}


def granted_from(permissions: discord.Permissions) -> dict[str, bool]:
    return {flag: bool(getattr(permissions, flag)) for flag in NEEDED_PERMISSIONS}


def checklist_text(checklist: Checklist) -> str:
    missing = len(checklist.missing)
    total = len(checklist.items)
    if missing:
        head = f"**Setup check**: {total - missing} of {total} ready, {missing} to do."
    else:
        head = f"**Setup check**: all {total} ready. Members can `/edit` now."
    lines = [head]
    for item in checklist.items:
        lines.append(f"{'✅' if item.ok else '❌'} {markup(item.text)}")
        if not item.ok and item.fix:
            lines.append(f"  ↳ fix: {markup(item.fix)}")
    if checklist.more_channels:
        lines.append(f"…and {checklist.more_channels} more allowed channels, not checked here.")
    return "\n".join(lines)[:MESSAGE_MAX]
