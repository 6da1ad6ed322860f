"""Jobs: admission against quota, in-flight and budget limits; the lifecycle; lookups."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from storage import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATES,
    IllegalTransition,
    Job,
    JobNotFound,
    JobState,
    Refusal,
    Storage,
)
from tests.harness.storage_fixtures import T0, limits, make_job

# An exception in a storage thread (say, reporting into a closed loop) fails the test.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# A legal way to reach each state from admitted.
ROUTE: dict[JobState, list[JobState]] = {
    JobState.ADMITTED: [],
    JobState.SUBMITTED: [JobState.SUBMITTED],
    JobState.COMPLETED: [JobState.SUBMITTED, JobState.COMPLETED],
    JobState.DELIVERED: [JobState.SUBMITTED, JobState.COMPLETED, JobState.DELIVERED],
    JobState.FAILED: [JobState.FAILED],
    JobState.CANCELLED: [JobState.CANCELLED],
    JobState.EXPIRED: [JobState.EXPIRED],
}


async def admitted(storage: Storage, now: datetime = T0, **kwargs: object) -> Job:
    outcome = await storage.jobs.admit(make_job(now=now, **kwargs), limits(None), now=now)
    assert isinstance(outcome, Job), outcome
    return outcome


async def job_in(storage: Storage, state: JobState, now: datetime = T0, **kwargs: object) -> Job:
    job = await admitted(storage, now, **kwargs)
    for step in ROUTE[state]:
        job = await storage.jobs.transition(job.id, step, now=now)
    assert job.state == state
    return job


# --- admission ------------------------------------------------------------------------------


async def test_admit_writes_the_job_and_reserves_its_quota(storage: Storage) -> None:
    new = make_job(
        user_id=7,
        images=2,
        cost_usd=0.084,
        request_message_id=555,
        seed=42,
        lora_ids=[3, 4],
        request={"prompt": "café ☕ in Kyoto", "nested": {"a": [1, 2.5, None]}},
    )
    job = await storage.jobs.admit(new, limits(10), now=T0)

    assert isinstance(job, Job)
    assert job.id >= 1
    assert job.state is JobState.ADMITTED
    assert job.model_dump(include=set(type(new).model_fields)) == new.model_dump()
    assert job.created_at == job.updated_at == T0
    assert job.submitted_at is job.completed_at is job.finished_at is None
    assert await storage.jobs.get(job.id) == job

    usage = await storage.quotas.usage(1, 7, 86_400, limit=10, now=T0)
    assert (usage.images_used, usage.in_flight, usage.remaining) == (2, 1, 8)
    assert await storage.quotas.guild_spend(1, now=T0) == pytest.approx(0.084)


async def test_quota_refusal_says_when_enough_frees_up(storage: Storage) -> None:
    rules = limits(4)
    for offset, images in ((0, 1), (1, 2), (2, 1)):
        now = T0 + offset * HOUR
        assert isinstance(await storage.jobs.admit(make_job(images=images), rules, now=now), Job)

    refusal = await storage.jobs.admit(make_job(images=3), rules, now=T0 + 3 * HOUR)

    # 4 used, 3 wanted, limit 4: three must leave the window; the 1@T0 and 2@T0+1h do.
    assert refusal == Refusal(
        kind="quota", used=4, limit=4, requested=3, next_free_at=T0 + HOUR + DAY
    )
    usage = await storage.quotas.usage(1, 100, 86_400, now=T0 + 3 * HOUR)
    assert usage.images_used == 4  # the refusal reserved nothing


async def test_quota_refusal_for_more_than_the_window_allows_has_no_free_time(
    storage: Storage,
) -> None:
    refusal = await storage.jobs.admit(make_job(images=4), limits(3), now=T0)
    assert isinstance(refusal, Refusal)
    assert (refusal.kind, refusal.used, refusal.limit, refusal.next_free_at) == (
        "quota",
        0,
        3,
        None,
    )


async def test_window_is_rolling_and_an_image_frees_exactly_one_window_later(
    storage: Storage,
) -> None:
    rules = limits(1, window_seconds=3600)
    assert isinstance(await storage.jobs.admit(make_job(), rules, now=T0), Job)
    just_before = T0 + HOUR - timedelta(microseconds=1)
    refusal = await storage.jobs.admit(make_job(), rules, now=just_before)
    assert isinstance(refusal, Refusal) and refusal.next_free_at == T0 + HOUR
    assert isinstance(await storage.jobs.admit(make_job(), rules, now=T0 + HOUR), Job)


async def test_exempt_member_is_never_refused_for_quota_but_usage_still_counts(
    storage: Storage,
) -> None:
    for _ in range(25):
        assert isinstance(await storage.jobs.admit(make_job(), limits(None), now=T0), Job)
    usage = await storage.quotas.usage(1, 100, 86_400, now=T0)
    assert usage.images_used == 25 and usage.limit is None and usage.remaining is None


async def test_in_flight_limit_counts_reserved_jobs_only(storage: Storage) -> None:
    rules = limits(100, in_flight=2)
    first = await storage.jobs.admit(make_job(), rules, now=T0)
    second = await storage.jobs.admit(make_job(), rules, now=T0)
    assert isinstance(first, Job) and isinstance(second, Job)

    refusal = await storage.jobs.admit(make_job(), rules, now=T0)
    assert refusal == Refusal(kind="in_flight", used=2, limit=2, requested=1, next_free_at=None)

    for step in ROUTE[JobState.DELIVERED]:
        await storage.jobs.transition(first.id, step, now=T0)
    assert isinstance(await storage.jobs.admit(make_job(), rules, now=T0), Job)


async def test_budget_counts_reserved_and_committed_this_month_and_refunds_free_it(
    storage: Storage,
) -> None:
    rules = limits(None, budget=0.1)
    first = await storage.jobs.admit(make_job(cost_usd=0.042), rules, now=T0)
    second = await storage.jobs.admit(make_job(cost_usd=0.042, user_id=200), rules, now=T0)
    assert isinstance(first, Job) and isinstance(second, Job)
    for step in ROUTE[JobState.DELIVERED]:
        await storage.jobs.transition(first.id, step, now=T0)

    refusal = await storage.jobs.admit(make_job(cost_usd=0.042, user_id=300), rules, now=T0)
    assert isinstance(refusal, Refusal)
    assert refusal.kind == "budget"
    assert refusal.used == pytest.approx(0.084)
    assert refusal.limit == 0.1 and refusal.requested == pytest.approx(0.042)
    assert refusal.next_free_at == datetime(2025, 4, 1, tzinfo=UTC)

    await storage.jobs.transition(second.id, JobState.FAILED, error="fal said no", now=T0)
    assert await storage.quotas.guild_spend(1, now=T0) == pytest.approx(0.042)
    assert isinstance(await storage.jobs.admit(make_job(cost_usd=0.042), rules, now=T0), Job)


async def test_budget_is_per_calendar_month_and_zero_means_no_cap(storage: Storage) -> None:
    march_end = datetime(2025, 3, 31, 23, 59, tzinfo=UTC)
    april = datetime(2025, 4, 1, 0, 0, tzinfo=UTC)
    rules = limits(None, budget=0.05)
    assert isinstance(await storage.jobs.admit(make_job(cost_usd=0.05), rules, now=march_end), Job)
    assert isinstance(
        await storage.jobs.admit(make_job(cost_usd=0.01), rules, now=march_end), Refusal
    )
    assert isinstance(await storage.jobs.admit(make_job(cost_usd=0.05), rules, now=april), Job)
    for uncapped in (0.0, None):
        outcome = await storage.jobs.admit(
            make_job(cost_usd=5.0), limits(None, budget=uncapped), now=april
        )
        assert isinstance(outcome, Job)


async def test_a_request_dearer_than_the_whole_budget_never_fits(storage: Storage) -> None:
    refusal = await storage.jobs.admit(make_job(cost_usd=2.0), limits(None, budget=1.5), now=T0)
    assert isinstance(refusal, Refusal)
    assert (refusal.kind, refusal.used, refusal.next_free_at) == ("budget", 0.0, None)


async def test_refund_goes_back_to_the_month_the_job_was_reserved_in(storage: Storage) -> None:
    march_end = datetime(2025, 3, 31, 23, 59, tzinfo=UTC)
    april = datetime(2025, 4, 1, 0, 5, tzinfo=UTC)
    march_job = await admitted(storage, march_end, cost_usd=0.5)
    await admitted(storage, april, cost_usd=0.25)

    await storage.jobs.transition(march_job.id, JobState.EXPIRED, now=april)

    assert await storage.quotas.guild_spend(1, now=march_end) == 0.0
    assert await storage.quotas.guild_spend(1, now=april) == pytest.approx(0.25)


async def test_the_longest_wait_is_reported_first(storage: Storage) -> None:
    await admitted(storage, cost_usd=0.1)
    everything_full = limits(1, in_flight=1, budget=0.1)
    refusal = await storage.jobs.admit(make_job(cost_usd=0.1), everything_full, now=T0)
    assert isinstance(refusal, Refusal) and refusal.kind == "budget"
    no_budget_cap = limits(1, in_flight=1)
    refusal = await storage.jobs.admit(make_job(), no_budget_cap, now=T0)
    assert isinstance(refusal, Refusal) and refusal.kind == "quota"


async def test_limits_are_per_member_and_per_server(storage: Storage) -> None:
    rules = limits(1, in_flight=1)
    for guild_id, user_id in ((1, 100), (1, 101), (2, 100)):
        outcome = await storage.jobs.admit(
            make_job(guild_id=guild_id, user_id=user_id), rules, now=T0
        )
        assert isinstance(outcome, Job)
    assert isinstance(await storage.jobs.admit(make_job(), rules, now=T0), Refusal)


async def test_admit_with_unknown_parent_fails_and_writes_nothing(storage: Storage) -> None:
    with pytest.raises(JobNotFound):
        await storage.jobs.admit(make_job(parent_job_id=999), limits(10), now=T0)
    assert await storage.jobs.unfinished() == []
    assert (await storage.quotas.usage(1, 100, 86_400, now=T0)).images_used == 0


async def test_naive_clock_is_refused(storage: Storage) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await storage.jobs.admit(make_job(), limits(10), now=datetime(2025, 1, 1))


# --- transitions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "target"), list(itertools.product(JobState, JobState)), ids=lambda s: str(s)
)
async def test_every_transition_is_allowed_or_refused_as_the_lifecycle_says(
    storage: Storage, start: JobState, target: JobState
) -> None:
    job = await job_in(storage, start)
    if target in ALLOWED_TRANSITIONS[start]:
        moved = await storage.jobs.transition(job.id, target, now=T0 + HOUR)
        assert moved.state is target and moved.updated_at == T0 + HOUR
        assert (moved.finished_at is not None) == (target in TERMINAL_STATES)
    elif start == target:
        assert await storage.jobs.transition(job.id, target, now=T0 + HOUR) == job  # a retry
    else:
        with pytest.raises(IllegalTransition) as caught:
            await storage.jobs.transition(job.id, target, now=T0 + HOUR)
        assert (caught.value.current, caught.value.target) == (start, target)
        assert await storage.jobs.get(job.id) == job


async def test_lifecycle_stores_fal_ids_result_message_and_timestamps(storage: Storage) -> None:
    job = await admitted(storage)
    submitted = await storage.jobs.transition(
        job.id,
        JobState.SUBMITTED,
        fal_request_id="764cabcf-b745-4b3e-ae38-1200304cf45b",
        fal_status_url="https://queue.fal.run/x/requests/764/status",
        fal_response_url="https://queue.fal.run/x/requests/764",
        fal_cancel_url="https://queue.fal.run/x/requests/764/cancel",
        now=T0 + timedelta(seconds=1),
    )
    completed = await storage.jobs.transition(
        job.id,
        JobState.COMPLETED,
        result={"images": [{"url": "https://v3.fal.media/a.png"}], "seed": 7},
        seed=7,
        now=T0 + timedelta(seconds=30),
    )
    delivered = await storage.jobs.transition(
        job.id, JobState.DELIVERED, result_message_id=9001, now=T0 + timedelta(seconds=31)
    )

    assert submitted.fal_request_id == "764cabcf-b745-4b3e-ae38-1200304cf45b"
    assert submitted.submitted_at == T0 + timedelta(seconds=1)
    assert completed.result == {"images": [{"url": "https://v3.fal.media/a.png"}], "seed": 7}
    assert completed.seed == 7 and completed.completed_at == T0 + timedelta(seconds=30)
    assert delivered.result_message_id == 9001
    assert delivered.finished_at == T0 + timedelta(seconds=31)
    assert delivered.fal_cancel_url == "https://queue.fal.run/x/requests/764/cancel"
    assert await storage.jobs.by_result_message(9001) == delivered


async def test_delivery_commits_and_failure_refunds_the_reservation(storage: Storage) -> None:
    delivered = await job_in(storage, JobState.DELIVERED, images=2)
    for state in (JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED):
        await job_in(storage, state, images=3)
    failed_late = await job_in(storage, JobState.COMPLETED, images=4)
    await storage.jobs.transition(failed_late.id, JobState.FAILED, error="could not post")

    usage = await storage.quotas.usage(1, 100, 86_400, now=T0)
    assert usage.images_used == delivered.images  # refunds are gone, the delivery stays
    assert usage.in_flight == 0


async def test_retrying_a_done_transition_is_harmless_but_a_conflicting_one_is_not(
    storage: Storage,
) -> None:
    job = await admitted(storage)
    first = await storage.jobs.transition(
        job.id, JobState.SUBMITTED, expect={JobState.ADMITTED}, fal_request_id="req-1", now=T0
    )
    again = await storage.jobs.transition(
        job.id,
        JobState.SUBMITTED,
        expect={JobState.ADMITTED},
        fal_request_id="req-1",
        now=T0 + HOUR,
    )
    assert again == first  # untouched, not even updated_at

    with pytest.raises(IllegalTransition, match="already submitted with other fal_request_id"):
        await storage.jobs.transition(job.id, JobState.SUBMITTED, fal_request_id="req-2")


async def test_retried_refund_refunds_once(storage: Storage) -> None:
    job = await admitted(storage, cost_usd=0.5)
    await admitted(storage, cost_usd=0.25)
    await storage.jobs.transition(job.id, JobState.CANCELLED, now=T0)
    await storage.jobs.transition(job.id, JobState.CANCELLED, now=T0)
    assert await storage.quotas.guild_spend(1, now=T0) == pytest.approx(0.25)


async def test_expect_guards_against_a_state_that_moved_meanwhile(storage: Storage) -> None:
    job = await job_in(storage, JobState.SUBMITTED)
    with pytest.raises(IllegalTransition, match="expected admitted"):
        await storage.jobs.transition(job.id, JobState.CANCELLED, expect={JobState.ADMITTED})
    assert (await storage.jobs.get(job.id)) == job


async def test_transition_of_a_missing_job_or_an_unknown_field(storage: Storage) -> None:
    with pytest.raises(JobNotFound, match="job 12345 does not exist"):
        await storage.jobs.transition(12345, JobState.SUBMITTED)
    job = await admitted(storage)
    with pytest.raises(TypeError, match="cannot set"):
        await storage.jobs.transition(job.id, JobState.SUBMITTED, state="delivered")


# --- lookups --------------------------------------------------------------------------------


async def test_unfinished_and_active_list_live_jobs_oldest_first(storage: Storage) -> None:
    live = [
        await job_in(storage, JobState.ADMITTED, guild_id=1),
        await job_in(storage, JobState.SUBMITTED, guild_id=2),
        await job_in(storage, JobState.COMPLETED, guild_id=1),
    ]
    for state in TERMINAL_STATES:
        await job_in(storage, state, guild_id=1)

    assert [job.id for job in await storage.jobs.unfinished()] == [job.id for job in live]
    assert await storage.jobs.active() == await storage.jobs.unfinished()
    assert [job.id for job in await storage.jobs.active(1)] == [live[0].id, live[2].id]
    assert await storage.jobs.active(3) == []


async def test_children_are_the_reruns_of_a_job(storage: Storage) -> None:
    parent = await job_in(storage, JobState.DELIVERED)
    first = await admitted(storage, parent_job_id=parent.id)
    second = await admitted(storage, parent_job_id=parent.id)
    await admitted(storage, parent_job_id=first.id)

    assert [job.id for job in await storage.jobs.children(parent.id)] == [first.id, second.id]
    assert first.parent_job_id == parent.id
    assert await storage.jobs.children(second.id) == []


async def test_recent_for_user_is_newest_first_and_limited(storage: Storage) -> None:
    mine = [await admitted(storage, T0 + n * HOUR, user_id=5) for n in range(4)]
    await admitted(storage, user_id=6)
    await admitted(storage, guild_id=2, user_id=5)

    recent = await storage.jobs.recent_for_user(1, 5, limit=3)
    assert [job.id for job in recent] == [job.id for job in reversed(mine)][:3]


async def test_status_message_and_missing_lookups(storage: Storage) -> None:
    job = await admitted(storage)
    updated = await storage.jobs.set_status_message(job.id, 4242, now=T0 + HOUR)
    assert updated.status_message_id == 4242 and updated.updated_at == T0 + HOUR
    assert (await storage.jobs.get(job.id)) == updated
    with pytest.raises(JobNotFound):
        await storage.jobs.set_status_message(999, 1)
    assert await storage.jobs.get(999) is None
    assert await storage.jobs.by_result_message(4242) is None
