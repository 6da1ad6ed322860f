"""What members and managers read about use: a member's quota, the server's usage report
(with a CSV), recent and running jobs."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from datetime import datetime

from jobs.policy import Requester, quota_limits
from jobs.records import AnyJob, JobStorage
from jobs.server_policy import Budget, ServerPolicy
from storage.models import MemberUsage

log = logging.getLogger(__name__)

RECENT_JOBS = 10


@dataclass(frozen=True, slots=True)
class QuotaView:
    used: int
    limit: int | None  # None: exempt
    window_hours: float
    next_free_at: datetime | None
    in_flight: int
    max_in_flight: int | None
    budget: Budget | None  # managers only

    @property
    def left(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used)


@dataclass(frozen=True, slots=True)
class UsageReport:
    rows: list[MemberUsage]
    csv: bytes


class UsageViews:
    def __init__(self, storage: JobStorage, policy: ServerPolicy) -> None:
        self._storage = storage
        self._policy = policy

    async def quota(self, who: Requester) -> QuotaView:
        settings = await self._storage.settings.effective(who.guild_id, who.rules_channel_id)
        limits = quota_limits(settings.guild, who)
        usage = await self._storage.quotas.usage(who.guild_id, who.user_id, limits.window_seconds)
        budget = await self._policy.budget(who) if await self._policy.is_manager(who) else None
        return QuotaView(
            used=usage.images_used,
            limit=limits.images_per_window,
            window_hours=limits.window_seconds / 3600,
            next_free_at=usage.next_free_at,
            in_flight=usage.in_flight,
            max_in_flight=limits.max_in_flight,
            budget=budget,
        )

    async def report(self, who: Requester) -> UsageReport:
        rows = await self._storage.quotas.member_report(who.guild_id)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["user_id", "images_today", "usd_today", "images_month", "usd_month"])
        for row in rows:
            writer.writerow(
                [
                    row.user_id,
                    row.images_today,
                    f"{row.usd_today:.4f}",
                    row.images_month,
                    f"{row.usd_month:.4f}",
                ]
            )
        log.info(
            "guild %s: usage report for %d members by %s", who.guild_id, len(rows), who.user_id
        )
        return UsageReport(rows=rows, csv=out.getvalue().encode())

    async def recent(self, who: Requester) -> list[AnyJob]:
        return await self._storage.jobs.recent_for_user(who.guild_id, who.user_id, RECENT_JOBS)

    async def running(self, who: Requester) -> list[AnyJob]:
        return await self._storage.jobs.active(who.guild_id)
