"""The month's money at a glance: spend per day against the budget, a projection to the end of
the month ("at this rate the budget runs out on the 23rd"), and who and which LoRAs made the
most images. The chart itself is drawn by the cogs from a `SpendChart`.

The projection is linear: the month's spend so far divided by the days gone (at least one,
so an edit in the first hour does not look like a fortune a day), carried to the month's end.
"""

from __future__ import annotations

import logging
from calendar import monthrange
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from jobs.policy import Requester
from jobs.records import JobStorage
from storage.clock import month_start, next_month_start, to_micro_usd
from storage.models import DaySpend

log = logging.getLogger(__name__)

TOP = 5  # members and LoRAs shown on the chart
_SUFFIXES = {1: "st", 2: "nd", 3: "rd"}


def ordinal(day: int) -> str:
    """1st, 2nd, 3rd, 4th … 11th, 12th, 13th … 21st, 22nd, 23rd … 31st."""
    suffix = "th" if 11 <= day % 100 <= 13 else _SUFFIXES.get(day % 10, "th")
    return f"{day}{suffix}"


@dataclass(frozen=True, slots=True)
class Projection:
    spent_usd: float
    budget_usd: float  # 0: no budget
    per_day_usd: float
    month_end_usd: float  # where the month ends at this rate
    runs_out_on: date | None = None  # in this month, at this rate
    ran_out_on: date | None = None  # already happened: spend reached the budget that day

    def sentence(self) -> str:
        """The projection in one sentence, for the message and the chart."""
        if self.ran_out_on is not None:
            return f"The budget ran out on the {ordinal(self.ran_out_on.day)}."
        if self.runs_out_on is not None:
            return f"At this rate the budget runs out on the {ordinal(self.runs_out_on.day)}."
        if self.spent_usd == 0:
            return "Nothing spent this month yet."
        end = f"${self.month_end_usd:,.2f}"
        if self.budget_usd > 0:
            return f"At this rate the month ends at {end}, within the budget."
        return f"At this rate the month ends at {end} (no budget set)."


def project(
    spent_usd: float,
    budget_usd: float,
    now: datetime,
    days: Sequence[DaySpend] = (),
) -> Projection:
    """Where this month's spend is heading. `days` (spend per day, oldest first) only serves to
    name the day an exhausted budget ran out."""
    start, end = month_start(now), next_month_start(now)
    gone = (now - start) / timedelta(days=1)
    left = (end - now) / timedelta(days=1)
    per_day = spent_usd / max(gone, 1.0)
    month_end = spent_usd + per_day * left
    if budget_usd <= 0:
        return Projection(spent_usd, 0.0, per_day, month_end)
    if to_micro_usd(spent_usd) >= to_micro_usd(budget_usd):
        return Projection(
            spent_usd, budget_usd, per_day, month_end, ran_out_on=_ran_out(days, budget_usd, now)
        )
    if per_day <= 0:
        return Projection(spent_usd, budget_usd, per_day, month_end)
    runs_out = now + timedelta(days=(budget_usd - spent_usd) / per_day)
    return Projection(
        spent_usd,
        budget_usd,
        per_day,
        month_end,
        runs_out_on=runs_out.date() if runs_out < end else None,
    )


def _ran_out(days: Sequence[DaySpend], budget_usd: float, now: datetime) -> date:
    total, budget = 0, to_micro_usd(budget_usd)
    for day in days:
        total += to_micro_usd(day.usd)
        if total >= budget:
            return day.day
    return now.date()  # the budget was lowered below what was already spent


@dataclass(frozen=True, slots=True)
class SpendChart:
    """Everything the usage chart shows, in plain numbers."""

    month: date  # its first day
    days_in_month: int
    today: int  # day of the month
    cumulative: tuple[tuple[int, float], ...]  # (day of month, spend up to and including it)
    projection: Projection
    top_members: tuple[tuple[int, int], ...]  # (user id, images), most first
    top_loras: tuple[tuple[str, int], ...]  # (LoRA name, images), most first


def build_chart(
    days: Sequence[DaySpend],
    budget_usd: float,
    now: datetime,
    *,
    top_members: Sequence[tuple[int, int]] = (),
    top_loras: Sequence[tuple[str, int]] = (),
) -> SpendChart:
    """Cumulative spend on every day of the month so far (days without spend included, so the
    line is a staircase the eye can read), and the projection."""
    per_day = {d.day.day: to_micro_usd(d.usd) for d in days}
    running, cumulative = 0, []
    for day in range(1, now.day + 1):
        running += per_day.get(day, 0)
        cumulative.append((day, running / 1_000_000))
    spent = running / 1_000_000
    first = month_start(now)
    return SpendChart(
        month=first.date(),
        days_in_month=monthrange(now.year, now.month)[1],
        today=now.day,
        cumulative=tuple(cumulative),
        projection=project(spent, budget_usd, now, days),
        top_members=tuple(top_members[:TOP]),
        top_loras=tuple(top_loras[:TOP]),
    )


class SpendViews:
    """`/admin usage`'s chart data, read from the ledger of one server."""

    def __init__(self, storage: JobStorage, now: Callable[[], datetime]) -> None:
        self._storage = storage
        self._now = now

    async def chart(self, who: Requester) -> SpendChart:
        now = self._now()
        storage = self._storage
        days = await storage.spend.daily(who.guild_id, now=now)
        settings = await storage.settings.get(who.guild_id)
        members = await storage.quotas.member_report(who.guild_id, now=now)
        by_images = sorted(members, key=lambda m: (-m.images_month, m.user_id))
        loras = await storage.spend.top_loras(who.guild_id, limit=TOP, now=now)
        chart = build_chart(
            days,
            settings.monthly_budget_usd,
            now,
            top_members=[(m.user_id, m.images_month) for m in by_images if m.images_month],
            top_loras=[(lora.name, lora.images) for lora in loras],
        )
        log.info(
            "guild %s: spend chart for %s, $%.2f this month",
            who.guild_id,
            who.user_id,
            chart.projection.spent_usd,
        )
        return chart
