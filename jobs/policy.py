"""Server policy applied to one member in one channel: limits, channel rules, NSFW handling."""

from __future__ import annotations

from dataclasses import dataclass, field

from jobs.errors import Refused
from jobs.text import ChannelRef, Part
from storage.models import EffectiveSettings, GuildSettings, QuotaLimits


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asks, where, and what Discord told us about them. Built by the cogs."""

    guild_id: int
    channel_id: int
    user_id: int
    role_ids: frozenset[int] = field(default_factory=frozenset)
    channel_nsfw: bool = False
    can_manage_messages: bool = False
    can_manage_guild: bool = False
    upload_limit: int = 10 * 1024 * 1024
    parent_channel_id: int | None = None  # set in a thread: the channel whose rules apply
    # What the bot itself lacks to post results in this channel, as Discord names it.
    bot_missing: tuple[str, ...] = ()

    @property
    def rules_channel_id(self) -> int:
        """Channel rules follow the channel a thread lives in; a thread is not a way around."""
        return self.parent_channel_id or self.channel_id


def quota_limits(settings: GuildSettings, who: Requester) -> QuotaLimits:
    """Member override, else exempt, else the highest matching role quota, else the default.

    The member override is the most specific rule, so it holds even for an exempt role's
    members: an admin who limits one moderator by name means it. The budget always applies.
    """
    overridden = who.user_id in settings.user_quotas
    exempt = not overridden and bool(who.role_ids & set(settings.exempt_roles))
    images: int | None
    if overridden:
        images = settings.user_quotas[who.user_id]
    elif exempt:
        images = None
    else:
        role_limits = [n for role, n in settings.role_quotas.items() if role in who.role_ids]
        images = max(role_limits) if role_limits else settings.default_quota
    budget = settings.monthly_budget_usd or None
    return QuotaLimits(
        images_per_window=images,
        window_seconds=settings.window_hours * 3600,
        max_in_flight=None if exempt else settings.max_in_flight,
        monthly_budget_usd=budget,
    )


def check_channel(settings: EffectiveSettings) -> None:
    if not settings.channel_allowed:
        allowed = [cid for cid, r in settings.guild.channel_rules.items() if r == "allow"]
        parts: list[Part] = ["Edits are turned off in this channel."]
        if allowed:
            parts.append(" Try ")
            for index, cid in enumerate(allowed[:5]):
                parts += [", "] if index else []
                parts.append(ChannelRef(cid))
            parts.append(".")
        raise Refused(*parts)


def is_manager(settings: GuildSettings, who: Requester) -> bool:
    return who.can_manage_guild or bool(who.role_ids & set(settings.manager_roles))


def safety_checker_on(nsfw_policy: str, channel_nsfw: bool) -> bool:
    """Always on outside age-restricted channels; off only where the server allows NSFW."""
    return not (channel_nsfw and nsfw_policy == "allow_in_nsfw_channels")


def nsfw_action(nsfw_policy: str, channel_nsfw: bool) -> str:
    """What to do with an image fal flagged: 'block', 'spoiler' or 'allow'."""
    if nsfw_policy == "allow_in_nsfw_channels":
        return "allow" if channel_nsfw else "block"
    return "spoiler" if nsfw_policy == "spoiler" else "block"
