"""A server's policy as its managers set it: quotas and their overrides, exemptions, the
budget, reruns, NSFW handling, channel rules, caps, and who manages the bot.

Every change is read-modify-write in one transaction, so two managers at once never undo
each other. Who may change what is decided here, not by the commands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from jobs.errors import BadRequest, NotAllowed
from jobs.policy import Requester, is_manager
from storage.models import GuildSettings, NsfwPolicy, RerunPolicy
from storage.quotas import QuotaRepository
from storage.settings import SettingsRepository

log = logging.getLogger(__name__)

NOT_MANAGER = (
    "Only members with Manage Server or a bot-manager role can use `/admin`. "
    "If your server shows `/admin` to your role (Server Settings → Integrations), an admin "
    "must also name that role a bot manager with `/admin settings managers add`."
)
ONLY_OWNERS_NAME_MANAGERS = (
    "Only members with Manage Server can name or unname bot-manager roles; bot managers "
    "can use every other `/admin` command."
)
EVERYONE_CANT_MANAGE = "@everyone can't be a bot-manager role: every member would manage the bot."


@dataclass(frozen=True, slots=True)
class Budget:
    spent_usd: float
    cap_usd: float  # 0: no cap


class ServerPolicy:
    def __init__(self, settings: SettingsRepository, quotas: QuotaRepository) -> None:
        self._settings = settings
        self._quotas = quotas

    async def is_manager(self, who: Requester) -> bool:
        """Manage Server, or a role the server named as bot managers."""
        if who.can_manage_guild:
            return True
        return is_manager(await self._settings.get(who.guild_id), who)

    async def require_manager(self, who: Requester) -> None:
        if not await self.is_manager(who):
            raise NotAllowed(NOT_MANAGER)

    async def show(self, who: Requester) -> GuildSettings:
        return await self._settings.get(who.guild_id)

    async def _change(
        self, who: Requester, change: Callable[[GuildSettings], GuildSettings]
    ) -> GuildSettings:
        return await self._settings.update(who.guild_id, change)

    async def set_default_quota(
        self, who: Requester, images: int, window_hours: int | None
    ) -> GuildSettings:
        update: dict[str, int] = {"default_quota": images}
        if window_hours is not None:
            update["window_hours"] = window_hours
        return await self._change(who, lambda s: s.model_copy(update=update))

    async def set_override(
        self,
        who: Requester,
        kind: Literal["role", "user"],
        target_id: int,
        images: int,
    ) -> GuildSettings:
        """Set (or with a negative count, remove) one role's or member's quota override."""
        field = "role_quotas" if kind == "role" else "user_quotas"

        def change(settings: GuildSettings) -> GuildSettings:
            quotas = dict(getattr(settings, field))
            if images < 0:
                quotas.pop(target_id, None)
            else:
                quotas[target_id] = images
            return settings.model_copy(update={field: quotas})

        return await self._change(who, change)

    async def set_exempt(self, who: Requester, role_id: int, *, remove: bool) -> GuildSettings:
        def change(settings: GuildSettings) -> GuildSettings:
            exempt = [r for r in settings.exempt_roles if r != role_id]
            if not remove:
                exempt.append(role_id)
            return settings.model_copy(update={"exempt_roles": exempt})

        return await self._change(who, change)

    async def reset_quota(self, who: Requester, member_id: int) -> None:
        await self._quotas.reset(who.guild_id, member_id)

    async def set_budget(self, who: Requester, usd: float) -> GuildSettings:
        return await self._change(who, lambda s: s.model_copy(update={"monthly_budget_usd": usd}))

    async def budget(self, who: Requester) -> Budget:
        settings = await self._settings.get(who.guild_id)
        spent = await self._quotas.guild_spend(who.guild_id)
        return Budget(spent_usd=spent, cap_usd=settings.monthly_budget_usd)

    async def set_rerun_policy(self, who: Requester, policy: RerunPolicy) -> GuildSettings:
        return await self._change(who, lambda s: s.model_copy(update={"rerun_policy": policy}))

    async def set_nsfw_policy(self, who: Requester, policy: str) -> GuildSettings:
        if policy not in get_args(NsfwPolicy):
            raise BadRequest(f"`{policy[:40]}` is not an NSFW policy I know.")
        return await self._change(who, lambda s: s.model_copy(update={"nsfw_policy": policy}))

    async def set_channel_rule(
        self, who: Requester, channel_id: int, rule: Literal["allow", "deny", "clear"]
    ) -> GuildSettings:
        def change(settings: GuildSettings) -> GuildSettings:
            rules = dict(settings.channel_rules)
            if rule == "clear":
                rules.pop(channel_id, None)
            else:
                rules[channel_id] = rule
            return settings.model_copy(update={"channel_rules": rules})

        return await self._change(who, change)

    async def set_caps(
        self,
        who: Requester,
        *,
        max_images: int | None = None,
        max_steps: int | None = None,
        max_in_flight: int | None = None,
    ) -> GuildSettings:
        update = {
            k: v
            for k, v in (
                ("max_images_per_job", max_images),
                ("max_steps", max_steps),
                ("max_in_flight", max_in_flight),
            )
            if v is not None
        }
        return await self._change(who, lambda s: s.model_copy(update=update))

    async def set_manager(
        self, who: Requester, action: Literal["add", "remove"], role_id: int
    ) -> GuildSettings:
        """Only Manage Server names managers: a delegated manager must not be able to hand the
        keys to further roles. @everyone (whose id is the server's) can never be one."""
        if not who.can_manage_guild:
            raise NotAllowed(ONLY_OWNERS_NAME_MANAGERS)
        if role_id == who.guild_id:
            raise NotAllowed(EVERYONE_CANT_MANAGE)

        def change(settings: GuildSettings) -> GuildSettings:
            roles = [r for r in settings.manager_roles if r != role_id]
            if action == "add":
                roles.append(role_id)
            return settings.model_copy(update={"manager_roles": roles})

        settings = await self._change(who, change)
        log.info(
            "guild %d: role %d %s bot managers by %d",
            who.guild_id,
            role_id,
            "added to" if action == "add" else "removed from",
            who.user_id,
        )
        return settings
