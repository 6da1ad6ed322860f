"""The fair queue's storage: waiting jobs are released in fair order (members take turns, then
servers, oldest first within a member), never more than the cap at fal, even when several
processes release at once, and never the same job twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import pytest

from storage import Job, JobState, Storage
from tests.harness.storage_fixtures import T0, limits, make_job

Opener = Callable[[], Awaitable[Storage]]


@pytest.fixture
async def open_another(database: str) -> AsyncIterator[Opener]:
    """Open the test's database once more, as another process would (its own connection or
    pool)."""
    opened: list[Storage] = []

    async def open_() -> Storage:
        opened.append(await Storage.open(database, pool_size=4))
        return opened[-1]

    yield open_
    for storage in opened:
        await storage.close()


async def admit(storage: Storage, user: int, guild: int = 1, at: datetime = T0) -> int:
    new = make_job(guild_id=guild, user_id=user, now=at)
    job = await storage.jobs.admit(new, limits(None), now=at)
    assert isinstance(job, Job)
    return job.id


async def admit_many(storage: Storage, users: str) -> dict[str, int]:
    """One job per letter, in order; the second job of member `a` is named `a2`."""
    ids: dict[str, int] = {}
    for letter in users:
        count = sum(1 for name in ids if name[0] == letter) + 1
        ids[f"{letter}{count}"] = await admit(storage, user=ord(letter))
    return ids


def names(ids: dict[str, int], job_ids: list[int]) -> list[str]:
    by_id = {job_id: name for name, job_id in ids.items()}
    return [by_id[job_id] for job_id in job_ids]


async def leave_fal(
    storage: Storage,
    job_id: int,
    how: JobState = JobState.COMPLETED,
    at: datetime | None = None,
) -> None:
    if how == JobState.COMPLETED:
        await storage.jobs.transition(
            job_id, JobState.SUBMITTED, fal_request_id=f"r{job_id}", now=at
        )
    error = None if how == JobState.COMPLETED else "x"
    await storage.jobs.transition(job_id, how, error=error, now=at)


async def test_members_take_turns_and_a_burst_waits_behind_everyones_first(
    storage: Storage,
) -> None:
    ids = await admit_many(storage, "aaaaabcc")
    assert names(ids, await storage.queue.release(3)) == ["a1", "b1", "c1"]
    view = await storage.queue.view()
    assert view.at_fal == 3
    # a and c each have one at fal: their second jobs come next, oldest first, then a's rest
    assert names(ids, view.waiting) == ["a2", "c2", "a3", "a4", "a5"]
    assert view.position(ids["c2"]) == 2 and view.position(ids["a1"]) is None
    assert await storage.queue.release(3) == [], "the cap is reached"
    await leave_fal(storage, ids["b1"])
    assert names(ids, await storage.queue.release(3)) == ["a2"]


async def test_a_new_member_goes_before_a_busy_members_older_jobs(storage: Storage) -> None:
    ids = await admit_many(storage, "aaaa")
    assert names(ids, await storage.queue.release(2)) == ["a1", "a2"]
    ids |= {"b1": await admit(storage, user=ord("b"))}
    await leave_fal(storage, ids["a1"], JobState.FAILED)
    assert names(ids, await storage.queue.release(2)) == ["b1"]
    assert names(ids, (await storage.queue.view()).waiting) == ["a3", "a4"]


async def test_a_member_whose_job_just_finished_still_waits_behind_a_first_job(
    storage: Storage,
) -> None:
    """With one slot, the member's job is never at fal at the moment of a release; the slot
    they used while others waited still counts."""
    ids = await admit_many(storage, "aa")
    assert names(ids, await storage.queue.release(1)) == ["a1"]
    ids["b1"] = await admit(storage, user=ord("b"), at=T0 + timedelta(seconds=1))
    await leave_fal(storage, ids["a1"], at=T0 + timedelta(seconds=20))
    assert names(ids, await storage.queue.release(1)) == ["b1"]
    await leave_fal(storage, ids["b1"], at=T0 + timedelta(seconds=40))
    assert names(ids, await storage.queue.release(1)) == ["a2"]


async def test_once_nothing_waits_the_next_burst_starts_level(storage: Storage) -> None:
    early = await admit(storage, user=1)
    assert await storage.queue.release(1) == [early]
    await leave_fal(storage, early, at=T0 + timedelta(seconds=10))
    later = T0 + timedelta(seconds=60)
    again, other = await admit(storage, user=1, at=later), await admit(storage, user=2, at=later)
    assert (await storage.queue.view()).waiting == [again, other]


async def test_servers_take_turns_within_a_round(storage: Storage) -> None:
    busy = [await admit(storage, user=user, guild=1) for user in (1, 2, 3)]
    quiet = await admit(storage, user=9, guild=2)
    assert await storage.queue.release(2) == [busy[0], quiet]
    assert (await storage.queue.view()).waiting == busy[1:]


async def test_a_server_with_jobs_at_fal_waits_behind_one_without(storage: Storage) -> None:
    first = await admit(storage, user=1, guild=1)
    assert await storage.queue.release(1) == [first]
    later_same_server = await admit(storage, user=2, guild=1)
    other_server = await admit(storage, user=3, guild=2)
    assert (await storage.queue.view()).waiting == [other_server, later_same_server]


async def test_cancelled_or_expired_waiting_jobs_are_never_released(storage: Storage) -> None:
    ids = await admit_many(storage, "abc")
    await storage.jobs.transition(ids["a1"], JobState.CANCELLED, error="cancelled")
    await storage.jobs.transition(ids["b1"], JobState.EXPIRED, error="expired")
    assert names(ids, await storage.queue.release(5)) == ["c1"]
    assert not await storage.queue.waiting(ids["c1"])
    assert (await storage.queue.view()).waiting == []


async def test_every_way_of_leaving_fal_frees_a_slot(storage: Storage) -> None:
    ids = await admit_many(storage, "abcdefg")
    at_fal = await storage.queue.release(4)
    assert len(at_fal) == 4 and await storage.queue.at_fal() == 4
    await leave_fal(storage, at_fal[0], JobState.COMPLETED)
    await leave_fal(storage, at_fal[1], JobState.CANCELLED)  # cancelled at fal
    await storage.jobs.transition(at_fal[2], JobState.FAILED, error="submit failed")
    assert await storage.queue.at_fal() == 1
    assert names(ids, await storage.queue.release(4)) == ["e1", "f1", "g1"]


async def test_jobs_sent_to_fal_without_a_release_count_at_fal(storage: Storage) -> None:
    """With no cap (0) jobs go straight to fal, unreleased; should a cap be set later, they
    count, so the cap is not overshot while they finish."""
    direct = await admit(storage, user=1)
    await storage.jobs.transition(direct, JobState.SUBMITTED, fal_request_id="r")
    waiting = await admit(storage, user=2)
    assert await storage.queue.at_fal() == 1
    assert await storage.queue.release(1) == []
    assert await storage.queue.waiting(waiting)
    with pytest.raises(ValueError):
        await storage.queue.release(0)


async def test_the_queue_survives_reopening(database: str, storage: Storage) -> None:
    ids = await admit_many(storage, "aab")
    assert names(ids, await storage.queue.release(1)) == ["a1"]
    await storage.close()
    reopened = await Storage.open(database)
    try:
        view = await reopened.queue.view()
        assert (view.at_fal, names(ids, view.waiting)) == (1, ["b1", "a2"])
        assert not await reopened.queue.waiting(ids["a1"])
    finally:
        await reopened.close()


async def test_concurrent_releases_from_several_processes_never_exceed_the_cap(
    storage: Storage, open_another: Opener
) -> None:
    cap = 5
    others = [await open_another() for _ in range(3)]
    everyone = [storage, *others]
    jobs = [await admit(storage, user=100 + n % 7) for n in range(40)]

    async def release_all() -> list[int]:
        calls = [process.queue.release(cap) for process in everyone for _ in range(8)]
        batches = await asyncio.gather(*calls)
        released = [job_id for batch in batches for job_id in batch]
        assert len(released) == len(set(released)), "a job was released twice"
        return released

    first = await release_all()
    assert len(first) == cap and await storage.queue.at_fal() == cap
    for job_id in first[:3]:
        await leave_fal(others[0], job_id)
    second = await release_all()
    assert len(second) == 3 and not set(second) & set(first)
    assert await storage.queue.at_fal() == cap
    waiting = (await storage.queue.view()).waiting
    assert sorted(waiting + first + second) == jobs
