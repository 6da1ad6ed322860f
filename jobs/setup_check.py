"""A server's first five minutes: the setup checklist behind `/admin setup`, and whether the
bot may greet a server it just joined.

What is missing is decided here, from plain facts: the server's stored settings and LoRAs,
and the bot's permissions per channel as the cog read them from Discord (a mapping of
Discord's permission flag names to booleans, e.g. `{"send_messages": True, ...}`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from jobs.policy import Requester
from jobs.records import JobStorage
from jobs.text import ChannelRef, Part, RoleRef, Words, plural
from storage.models import GuildSettings

log = logging.getLogger(__name__)

# What the bot needs in a channel where members edit, by Discord's flag name → the name members
# see in Discord's settings: posting results takes the first four, 🔁 the fifth, and replying
# to (and finding) status messages the sixth.
NEEDED_PERMISSIONS: dict[str, str] = {
    "view_channel": "View Channel",
    "send_messages": "Send Messages",
    "attach_files": "Attach Files",
    "embed_links": "Embed Links",
    "add_reactions": "Add Reactions",
    "read_message_history": "Read Message History",
}
# Enough to post one plain message (the welcome, an alert).
POST_PERMISSIONS = ("view_channel", "send_messages")
CHANNELS_CHECKED = 10  # keeps the checklist inside one Discord message

Granted = Mapping[str, bool]

WELCOME: Words = (
    "👋 Hi! I edit images with this server's FLUX.2 edit LoRAs on fal.ai. "
    "To set me up, a member with **Manage Server** (the owner, or an admin) runs "
    "`/admin setup`: it lists what is ready and what is missing (LoRAs, quotas, the monthly "
    "budget, channels and my permissions), each with the command that fixes it. "
    "Everyone else: `/help` shows what you can do.",
)


@dataclass(frozen=True, slots=True)
class ChannelFacts:
    """The bot's permissions in one channel, or None when the channel no longer exists."""

    channel_id: int
    granted: Granted | None


@dataclass(frozen=True, slots=True)
class CheckItem:
    key: str  # "loras", "quota", "budget", "managers", "channels", "permissions"
    ok: bool
    text: Words
    fix: Words = ()


@dataclass(frozen=True, slots=True)
class Checklist:
    items: tuple[CheckItem, ...]
    more_channels: int = 0  # allowed channels beyond CHANNELS_CHECKED, not checked

    @property
    def done(self) -> int:
        return sum(item.ok for item in self.items)

    @property
    def missing(self) -> tuple[CheckItem, ...]:
        return tuple(item for item in self.items if not item.ok)


def missing_permissions(granted: Granted | None) -> list[str]:
    """The needed permissions the bot lacks, as Discord names them, in a fixed order."""
    if granted is None:
        return list(NEEDED_PERMISSIONS.values())
    return [name for flag, name in NEEDED_PERMISSIONS.items() if not granted.get(flag, False)]


def may_post(granted: Granted | None) -> bool:
    return granted is not None and all(granted.get(flag, False) for flag in POST_PERMISSIONS)


def channels_to_check(settings: GuildSettings, current_channel_id: int) -> list[int]:
    """The allowed channels when the server has allow rules (edits work only there); else the
    channel the manager asked from."""
    allowed = [cid for cid, rule in settings.channel_rules.items() if rule == "allow"]
    return allowed or [current_channel_id]


def build_checklist(
    settings: GuildSettings,
    *,
    enabled_loras: int,
    channels: Sequence[ChannelFacts],
) -> Checklist:
    items = [
        _loras(enabled_loras),
        _quota(settings),
        _budget(settings),
        _managers(settings),
        _channels(settings),
    ]
    shown = channels[:CHANNELS_CHECKED]
    items += [_permissions(facts) for facts in shown]
    return Checklist(items=tuple(items), more_channels=len(channels) - len(shown))


def _loras(enabled: int) -> CheckItem:
    if enabled:
        return CheckItem("loras", True, (f"LoRAs: {plural(enabled, 'LoRA')} ready for `/edit`.",))
    return CheckItem(
        "loras",
        False,
        ("LoRAs: none registered (or all disabled), so `/edit` has no LoRA to offer.",),
        ("`/admin lora add name:<name> path:<https URL or owner/repo>`",),
    )


def _quota(settings: GuildSettings) -> CheckItem:
    window = f"{settings.window_hours} h"
    if settings.default_quota > 0:
        return CheckItem(
            "quota",
            True,
            (f"Quota: {plural(settings.default_quota, 'image')} per member per {window}.",),
        )
    return CheckItem(
        "quota",
        False,
        (f"Quota: 0 images per {window}, so members without an override can't edit.",),
        ("`/admin quota default images:<n>`",),
    )


def _budget(settings: GuildSettings) -> CheckItem:
    if settings.monthly_budget_usd > 0:
        text = f"Budget: ${settings.monthly_budget_usd:,.2f} per month."
        return CheckItem("budget", True, (text,))
    return CheckItem(
        "budget",
        False,
        ("Budget: none, so spend on fal is not capped.",),
        ("`/admin budget set usd:<dollars>`",),
    )


def _managers(settings: GuildSettings) -> CheckItem:
    if settings.manager_roles:
        parts: list[Part] = ["Bot managers: "]
        for index, role_id in enumerate(settings.manager_roles):
            parts += [", "] if index else []
            parts.append(RoleRef(role_id))
        parts.append(" (and Manage Server).")
        return CheckItem("managers", True, tuple(parts))
    return CheckItem(
        "managers",
        False,
        ("Bot managers: no role named, so only members with Manage Server can use `/admin`.",),
        ("`/admin settings managers action:add role:<role>`",),
    )


def _channels(settings: GuildSettings) -> CheckItem:
    allowed = [cid for cid, rule in settings.channel_rules.items() if rule == "allow"]
    if allowed:
        parts: list[Part] = ["Channels: edits only in "]
        for index, cid in enumerate(allowed):
            parts += [", "] if index else []
            parts.append(ChannelRef(cid))
        parts.append(".")
        return CheckItem("channels", True, tuple(parts))
    return CheckItem(
        "channels",
        False,
        ("Channels: none allowed by name, so members can edit in every channel.",),
        ("`/admin settings channel channel:<#channel> rule:allow`",),
    )


def _permissions(facts: ChannelFacts) -> CheckItem:
    where = ChannelRef(facts.channel_id)
    if facts.granted is None:
        return CheckItem(
            "permissions",
            False,
            ("Permissions in ", where, ": I can't find this channel any more."),
            ("`/admin settings channel` with another channel and `rule:allow`",),
        )
    missing = missing_permissions(facts.granted)
    if not missing:
        return CheckItem(
            "permissions", True, ("Permissions in ", where, ": everything I need to post results.")
        )
    return CheckItem(
        "permissions",
        False,
        ("Permissions in ", where, ": I'm missing " + ", ".join(missing) + "."),
        (
            "Channel settings → Permissions → my role → allow " + ", ".join(missing),
            " (or Server Settings → Roles → my role)",
        ),
    )


class SetupCheck:
    """`/admin setup`: reads what the server stored, then builds the checklist."""

    def __init__(self, storage: JobStorage) -> None:
        self._storage = storage

    async def channels_to_check(self, who: Requester) -> list[int]:
        settings = await self._storage.settings.get(who.guild_id)
        return channels_to_check(settings, who.rules_channel_id)

    async def checklist(self, who: Requester, channels: Sequence[ChannelFacts]) -> Checklist:
        settings = await self._storage.settings.get(who.guild_id)
        # NSFW LoRAs count too: they are registered, usable in age-restricted channels.
        loras = await self._storage.loras.count(who.guild_id, include_nsfw=True)
        checklist = build_checklist(settings, enabled_loras=loras, channels=channels)
        log.info(
            "guild %s: setup check by %s, %d of %d done",
            who.guild_id,
            who.user_id,
            checklist.done,
            len(checklist.items),
        )
        return checklist
