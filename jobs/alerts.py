"""Budget alerts: a server that names a channel (`/admin settings alerts`) hears once when the
month's spend passes 50 %, 80 % and 100 % of its budget, and when fal reports the bot's
account locked (usually out of credit).

Each alert is claimed in the database before it is posted: one row per (server, month, kind)
that only one caller can insert, so it goes out once per month, across restarts and processes.
A post that fails for a passing reason gives the claim back, so the next change tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from client.errors import FalAccountLocked, FalError
from jobs.context import JobContext
from jobs.errors import Refused
from jobs.policy import Requester
from jobs.publisher import DeliveryError, DeliveryForbidden
from jobs.refusals import next_month
from jobs.server_policy import ServerPolicy
from jobs.setup_check import POST_PERMISSIONS, may_post
from jobs.spend import project
from jobs.text import ChannelRef, When, Words
from storage.clock import month_key, to_micro_usd
from storage.models import GuildSettings

log = logging.getLogger(__name__)

SPEND_THRESHOLDS = (50, 80, 100)
FAL_LOCKED = "fal_locked"
REASON_SHOWN = 200


def spend_kind(threshold: int) -> str:
    return f"spend_{threshold}"


def crossed_thresholds(spent_usd: float, budget_usd: float, *, refused: bool = False) -> list[int]:
    """The thresholds the month's spend has reached (exact, in micro-dollars). An edit refused
    for the budget means it is used up for members, whatever the percentage."""
    if budget_usd <= 0:
        return []
    spent, budget = to_micro_usd(spent_usd), to_micro_usd(budget_usd)
    crossed = [t for t in SPEND_THRESHOLDS if spent * 100 >= budget * t]
    if refused and 100 not in crossed:
        crossed.append(100)
    return crossed


class BudgetAlerts:
    def __init__(self, ctx: JobContext, policy: ServerPolicy) -> None:
        self._ctx = ctx
        self._policy = policy
        self._locked_told: set[str] = set()  # months whose lock alert this process handled

    # ------------------------------------------------------------------ managers

    async def set_channel(
        self,
        who: Requester,
        channel_id: int | None,
        granted: Mapping[str, bool] | None = None,
    ) -> GuildSettings:
        """Send alerts to `channel_id` (where the bot has `granted`), or turn them off (None)."""
        await self._policy.require_manager(who)
        if channel_id is not None and not may_post(granted):
            names = ", ".join(flag.replace("_", " ").title() for flag in POST_PERMISSIONS)
            raise Refused(
                "I can't post in ",
                ChannelRef(channel_id),
                f": I need {names} there. Give my role those, or pick another channel.",
            )
        settings = await self._ctx.storage.settings.update(
            who.guild_id, lambda s: s.model_copy(update={"alerts_channel_id": channel_id})
        )
        log.info("guild %s: budget alerts to %s by %s", who.guild_id, channel_id, who.user_id)
        return settings

    async def channel(self, who: Requester) -> GuildSettings:
        await self._policy.require_manager(who)
        return await self._ctx.storage.settings.get(who.guild_id)

    # ------------------------------------------------------------------ notices

    async def spend_changed(self, guild_id: int, *, refused: bool) -> None:
        ctx = self._ctx
        settings = await ctx.storage.settings.get(guild_id)
        budget = settings.monthly_budget_usd
        if settings.alerts_channel_id is None or budget <= 0:
            return
        now = ctx.now()
        spent = await ctx.storage.quotas.guild_spend(guild_id, now=now)
        crossed = crossed_thresholds(spent, budget, refused=refused)
        if not crossed:
            return
        month = month_key(now)
        won = await ctx.storage.spend.claim_alerts(
            guild_id, month, [spend_kind(t) for t in crossed], now=now
        )
        if not won:
            return
        # Passing two thresholds at once (a big edit, alerts turned on late) says the higher.
        top = max(t for t in crossed if spend_kind(t) in won)
        if top == 100:
            text = _used_up(spent, budget, next_month(now))
        else:
            sentence = project(spent, budget, now).sentence()
            text = (
                f"💸 **Budget: {top} % used.** This server has spent ${spent:,.2f} of its "
                f"${budget:,.2f} monthly budget. {sentence} The chart: `/admin usage`; the "
                "budget: `/admin budget set`.",
            )
        await self._post(guild_id, settings.alerts_channel_id, month, won, text)

    async def fal_failed(self, error: FalError) -> None:
        """fal's account serves every server, so each server with alerts hears about a lock."""
        if not isinstance(error, FalAccountLocked):
            return
        ctx = self._ctx
        now = ctx.now()
        month = month_key(now)
        if month in self._locked_told:
            return
        self._locked_told.add(month)
        reason = " ".join(error.reason.split())[:REASON_SHOWN] or "no reason given"
        text: Words = (
            f"⚠️ **fal.ai locked the bot's account** ({reason}), usually because its credit ran "
            "out. Every edit fails until whoever runs the bot tops it up or unlocks it on "
            "fal.ai; members are not charged for the failed edits.",
        )
        channels = await ctx.storage.settings.alert_channels()
        for guild_id, channel_id in channels.items():
            won = await ctx.storage.spend.claim_alerts(guild_id, month, [FAL_LOCKED], now=now)
            if won:
                await self._post(guild_id, channel_id, month, won, text)

    async def _post(
        self, guild_id: int, channel_id: int, month: str, kinds: list[str], text: Words
    ) -> None:
        try:
            await self._ctx.publisher.post_alert(guild_id, channel_id, text)
        except DeliveryForbidden:
            # No permission or no channel: retrying on every edit would only repeat the error.
            log.warning("guild %s: could not post alerts %s in %s", guild_id, kinds, channel_id)
            return
        except DeliveryError:
            await self._ctx.storage.spend.release_alerts(guild_id, month, kinds)
            log.warning("guild %s: alerts %s not posted; will try again", guild_id, kinds)
            return
        log.info("guild %s: alerts %s posted for %s", guild_id, kinds, month)


def _used_up(spent: float, budget: float, resets: datetime) -> Words:
    head = f"🛑 **Budget: 100 % used.** This server has spent ${spent:,.2f} of its "
    head += f"${budget:,.2f} monthly budget"
    if to_micro_usd(spent) < to_micro_usd(budget):
        head += f"; the ${budget - spent:,.2f} left is less than an edit just asked for"
    return (
        head + ", so members' edits are refused until ",
        When(resets, "D"),
        " unless a manager raises it with `/admin budget set`.",
    )
