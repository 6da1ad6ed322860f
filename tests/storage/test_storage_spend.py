"""Spend per day and images per LoRA for the usage chart, and budget alerts claimed once."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta

import pytest

from storage import DaySpend, Job, JobState, LoraImages, Storage
from tests.harness.storage_fixtures import T0, limits, make_job

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

DAY = timedelta(days=1)


async def admit(storage: Storage, now: datetime, **kwargs: object) -> Job:
    job = await storage.jobs.admit(make_job(now=now, **kwargs), limits(None), now=now)
    assert isinstance(job, Job)
    return job


async def test_daily_spend_counts_this_month_per_utc_day(storage: Storage) -> None:
    await admit(storage, T0 - 20 * DAY, cost_usd=9.0)  # last month
    await admit(storage, T0.replace(day=2, hour=23), cost_usd=0.5, images=2)
    await admit(storage, T0.replace(day=2, hour=1), cost_usd=0.25)
    refunded = await admit(storage, T0.replace(day=5), cost_usd=7.0)
    await storage.jobs.transition(refunded.id, JobState.FAILED, error="x", now=T0)
    await admit(storage, T0, cost_usd=0.1, guild_id=2)  # another server
    await admit(storage, T0, cost_usd=0.042, user_id=101)

    days = await storage.spend.daily(1, now=T0)

    assert days == [
        DaySpend(day=date(2025, 3, 2), usd=0.75, images=3),
        DaySpend(day=date(2025, 3, 14), usd=0.042, images=1),
    ]
    assert sum(d.usd for d in days) == pytest.approx(await storage.quotas.guild_spend(1, now=T0))


async def test_top_loras_by_images_this_month_keep_a_removed_loras_name(
    storage: Storage,
) -> None:
    clay = await storage.loras.add(1, "claymation", "owner/clay", actor_id=7, now=T0)
    ink = await storage.loras.add(1, "ink", "owner/ink", actor_id=7, now=T0)
    gone = await storage.loras.add(1, "retired", "owner/retired", actor_id=7, now=T0)
    await admit(storage, T0, images=4, lora_ids=[clay.id, ink.id])
    await admit(storage, T0, images=1, lora_ids=[ink.id])
    await admit(storage, T0, images=2, lora_ids=[gone.id])
    await admit(storage, T0, images=3, lora_ids=[])
    await admit(storage, T0 - 20 * DAY, images=4, lora_ids=[gone.id])  # last month
    await storage.loras.remove(1, "retired", actor_id=7, now=T0)

    top = await storage.spend.top_loras(1, now=T0)

    assert top == [
        LoraImages(lora_id=ink.id, name="ink", images=5),
        LoraImages(lora_id=clay.id, name="claymation", images=4),
        LoraImages(lora_id=gone.id, name="retired", images=2),
    ]
    assert await storage.spend.top_loras(1, limit=1, now=T0) == top[:1]
    assert await storage.spend.top_loras(2, now=T0) == []


async def test_each_alert_is_claimed_once_even_by_racing_callers(storage: Storage) -> None:
    kinds = ["spend_50", "spend_80"]
    results = await asyncio.gather(
        *(storage.spend.claim_alerts(1, "2025-03", kinds, now=T0) for _ in range(5))
    )
    assert sorted(kind for won in results for kind in won) == kinds
    assert await storage.spend.claim_alerts(1, "2025-04", ["spend_50"], now=T0) == ["spend_50"]
    assert await storage.spend.claim_alerts(2, "2025-03", ["spend_50"], now=T0) == ["spend_50"]
    assert await storage.spend.sent_alerts(1, "2025-03") == kinds


async def test_a_released_alert_can_be_claimed_again(storage: Storage) -> None:
    assert await storage.spend.claim_alerts(1, "2025-03", ["fal_locked"]) == ["fal_locked"]
    await storage.spend.release_alerts(1, "2025-03", ["fal_locked"])
    assert await storage.spend.sent_alerts(1, "2025-03") == []
    assert await storage.spend.claim_alerts(1, "2025-03", ["fal_locked"]) == ["fal_locked"]


async def test_claims_survive_reopening_the_database(database: str) -> None:
    async with await Storage.open(database) as first:
        assert await first.spend.claim_alerts(1, "2025-03", ["spend_100"]) == ["spend_100"]
    async with await Storage.open(database) as second:
        assert await second.spend.claim_alerts(1, "2025-03", ["spend_100"]) == []
