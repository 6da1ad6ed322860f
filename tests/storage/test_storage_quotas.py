"""Quota reads: rolling-window usage, next free time, reset, month spend, member report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storage import Job, JobState, MemberUsage, Refusal, Storage
from tests.harness.storage_fixtures import T0, limits, make_job

# An exception in a storage thread (say, reporting into a closed loop) fails the test.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

HOUR = timedelta(hours=1)


async def admit(storage: Storage, now: datetime, **kwargs: object) -> Job:
    job = await storage.jobs.admit(make_job(**kwargs), limits(None), now=now)
    assert isinstance(job, Job)
    return job


async def deliver(storage: Storage, job: Job) -> None:
    for state in (JobState.SUBMITTED, JobState.COMPLETED, JobState.DELIVERED):
        await storage.jobs.transition(job.id, state, now=job.created_at)


async def test_usage_of_a_member_with_no_history(storage: Storage) -> None:
    usage = await storage.quotas.usage(1, 100, 3600, limit=5, now=T0)
    assert (usage.images_used, usage.in_flight, usage.next_free_at, usage.remaining) == (
        0,
        0,
        None,
        5,
    )


async def test_usage_counts_the_window_and_names_the_next_free_time(storage: Storage) -> None:
    await admit(storage, T0 - 2 * HOUR, images=4)  # outside a 1 h window
    first = await admit(storage, T0 - 50 * timedelta(minutes=1), images=2)
    await admit(storage, T0 - 10 * timedelta(minutes=1), images=1)
    await deliver(storage, first)

    usage = await storage.quotas.usage(1, 100, 3600, limit=4, now=T0)

    assert usage.images_used == 3
    assert usage.in_flight == 2  # the 4-image job and the last one are still reserved
    assert usage.remaining == 1
    assert usage.next_free_at == T0 + 10 * timedelta(minutes=1)


async def test_reset_forgives_the_window_but_not_the_money_or_running_jobs(
    storage: Storage,
) -> None:
    rules = limits(3, in_flight=5)
    delivered = await admit(storage, T0, images=2, cost_usd=0.1)
    await deliver(storage, delivered)
    await admit(storage, T0, images=1, cost_usd=0.05)
    await admit(storage, T0, images=1, user_id=999)  # someone else
    assert isinstance(await storage.jobs.admit(make_job(), rules, now=T0), Refusal)

    forgiven = await storage.quotas.reset(1, 100, now=T0)

    assert forgiven == 3
    usage = await storage.quotas.usage(1, 100, 86_400, now=T0)
    assert (usage.images_used, usage.in_flight) == (0, 1)
    assert await storage.quotas.guild_spend(1, now=T0) == pytest.approx(0.192)
    assert isinstance(await storage.jobs.admit(make_job(images=3), rules, now=T0), Job)
    other = await storage.quotas.usage(1, 999, 86_400, now=T0)
    assert other.images_used == 1


async def test_reset_does_not_forgive_images_used_afterwards(storage: Storage) -> None:
    await admit(storage, T0, images=2)
    await storage.quotas.reset(1, 100, now=T0)
    await admit(storage, T0 + HOUR, images=1)
    assert (await storage.quotas.usage(1, 100, 86_400, now=T0 + HOUR)).images_used == 1


async def test_guild_spend_is_this_calendar_month_in_utc(storage: Storage) -> None:
    await admit(storage, datetime(2025, 2, 28, 23, 59, tzinfo=UTC), cost_usd=1.0)
    await admit(storage, datetime(2025, 3, 1, 0, 0, tzinfo=UTC), cost_usd=0.25)
    await admit(storage, datetime(2025, 3, 20, tzinfo=UTC), cost_usd=0.5)
    await admit(storage, datetime(2025, 3, 20, tzinfo=UTC), cost_usd=9.0, guild_id=2)

    assert await storage.quotas.guild_spend(1, now=T0) == pytest.approx(0.75)
    # A timezone east of UTC still reads the UTC month.
    tokyo = datetime(2025, 3, 1, 8, 0, tzinfo=UTC).astimezone()
    assert await storage.quotas.guild_spend(1, now=tokyo) == pytest.approx(0.75)
    assert await storage.quotas.guild_spend(3, now=T0) == 0.0


async def test_member_report_today_and_this_month_biggest_spender_first(
    storage: Storage,
) -> None:
    day_start = T0.replace(hour=0)
    await admit(storage, day_start + HOUR, user_id=1, images=2, cost_usd=0.2)
    await admit(storage, day_start - 3 * 24 * HOUR, user_id=1, images=1, cost_usd=0.1)
    await admit(storage, day_start - HOUR, user_id=2, images=4, cost_usd=0.4)
    refunded = await admit(storage, day_start + HOUR, user_id=2, images=4, cost_usd=5.0)
    await storage.jobs.transition(refunded.id, JobState.FAILED, now=T0)
    await admit(storage, datetime(2025, 2, 27, tzinfo=UTC), user_id=3, cost_usd=9.0)
    await admit(storage, day_start + HOUR, guild_id=2, user_id=4, cost_usd=1.0)

    report = await storage.quotas.member_report(1, now=T0)

    rows = [
        (r.guild_id, r.user_id, r.images_today, r.usd_today, r.images_month, r.usd_month)
        for r in report
    ]
    assert rows == [
        (1, 2, 0, 0.0, 4, pytest.approx(0.4)),
        (1, 1, 2, pytest.approx(0.2), 3, pytest.approx(0.3)),
    ]
    assert all(isinstance(r, MemberUsage) for r in report)
