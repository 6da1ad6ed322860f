"""Job leases: the admitting process holds its jobs, renews them while alive, and anyone may adopt
a job whose lease ran out; two processes racing for one job, exactly one gets it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import pytest

from storage import Job, JobState, Storage
from storage.leases import LeaseTerms
from tests.harness.storage_fixtures import T0, limits, make_job

LEASE = 30.0


def terms(instance: str, boot: str = "b1") -> LeaseTerms:
    return LeaseTerms(instance=instance, boot=boot, seconds=LEASE)


Opener = Callable[[LeaseTerms], Awaitable[Storage]]


@pytest.fixture
async def open_as(database: str) -> AsyncIterator[Opener]:
    """Open the test's database as one more process (its own connection or pool)."""
    opened: list[Storage] = []

    async def open_(lease: LeaseTerms) -> Storage:
        opened.append(await Storage.open(database, lease=lease, pool_size=4))
        return opened[-1]

    yield open_
    for storage in opened:
        await storage.close()


async def admit(storage: Storage, **kwargs: object) -> Job:
    job = await storage.jobs.admit(make_job(**kwargs), limits(None), now=T0)
    assert isinstance(job, Job)
    return job


async def test_the_admitting_process_holds_the_lease(open_as: Opener) -> None:
    a = await open_as(terms("a"))
    job = await admit(a)
    owner, until = await a.leases.holder(job.id)
    assert owner == "a/b1"
    assert until == T0 + timedelta(seconds=LEASE)
    b = await open_as(terms("b"))
    assert not await b.leases.claim(job.id, now=T0 + timedelta(seconds=1))
    assert await b.leases.adopt(now=T0 + timedelta(seconds=1)) == []


async def test_an_expired_lease_is_adopted_and_the_old_owner_learns_it(open_as: Opener) -> None:
    a = await open_as(terms("a"))
    kept, lost = await admit(a), await admit(a)
    later = T0 + timedelta(seconds=LEASE / 2)
    assert await a.leases.renew(now=later) == {kept.id, lost.id}
    # a stalls past its lease for `lost` only: b adopts it the moment it runs out
    b = await open_as(terms("b"))
    expired = later + timedelta(seconds=LEASE)
    assert await b.leases.claim(lost.id, now=expired)
    assert await a.leases.renew(now=expired) == {kept.id}
    assert (await b.leases.holder(lost.id))[0] == "b/b1"


async def test_finished_and_shown_jobs_are_not_adopted(open_as: Opener) -> None:
    a = await open_as(terms("a"))
    shown, unshown, running = await admit(a), await admit(a), await admit(a)
    for job in (shown, unshown):
        await a.jobs.transition(job.id, JobState.FAILED, error="boom", now=T0)
    await a.jobs.mark_announced(shown.id)
    b = await open_as(terms("b"))
    gone = T0 + timedelta(seconds=LEASE + 1)
    assert await b.leases.adopt(now=gone) == [unshown.id, running.id]
    assert await b.leases.renew(now=gone) == {unshown.id, running.id}


async def test_a_restarted_instance_takes_its_jobs_back_at_once(open_as: Opener) -> None:
    before = await open_as(terms("shards-0-1", boot="old"))
    job = await admit(before)
    other = await open_as(terms("shards-2-3"))
    assert await other.leases.adopt(now=T0) == []  # still held: nobody else may take it
    again = await open_as(terms("shards-0-1", boot="new"))
    assert await again.leases.adopt(earlier_lives=True, now=T0) == [job.id]
    assert (await again.leases.holder(job.id))[0] == "shards-0-1/new"


async def test_the_only_process_takes_everything(open_as: Opener) -> None:
    before = await open_as(terms("all", boot="old"))
    job = await admit(before)
    renamed = await open_as(terms("renamed"))
    assert await renamed.leases.adopt(everything=True, now=T0) == [job.id]


async def test_a_released_lease_is_adopted_at_once(open_as: Opener) -> None:
    a = await open_as(terms("a"))
    job = await admit(a)
    assert await a.leases.release() == 1
    b = await open_as(terms("b"))
    assert await b.leases.adopt(now=T0) == [job.id]
    assert await a.leases.renew(now=T0) == set()


async def test_rows_from_before_leases_are_free(storage: Storage, open_as: Opener) -> None:
    job = await admit(storage)  # opened without lease terms, like a bot from before leases
    assert (await storage.leases.holder(job.id))[0] is None
    b = await open_as(terms("b"))
    assert await b.leases.adopt(now=T0) == [job.id]


async def test_processes_racing_for_expired_jobs_each_get_a_job_once(open_as: Opener) -> None:
    dead = await open_as(terms("dead"))
    jobs = [await admit(dead, user_id=100 + n) for n in range(60)]
    racers = [await open_as(terms(f"p{n}")) for n in range(4)]
    gone = T0 + timedelta(seconds=LEASE + 1)

    async def race(storage: Storage) -> list[int]:
        won: list[int] = []
        for job in jobs:  # everyone goes for every job, in the same order
            if await storage.leases.claim(job.id, now=gone):
                won.append(job.id)
        return won

    async def sweep(storage: Storage) -> list[int]:
        return await storage.leases.adopt(limit=25, now=gone)

    claimed = await asyncio.gather(*(race(s) for s in racers[:2]), *(sweep(s) for s in racers[2:]))
    every = [job_id for won in claimed for job_id in won]
    assert sorted(every) == sorted(set(every))  # nobody won a job twice
    # whatever the sweeps left, the claims took: every job has exactly one owner
    assert len(every) == len(jobs)
    owners = {job.id: (await racers[0].leases.holder(job.id))[0] for job in jobs}
    for racer, won in zip(racers, claimed, strict=True):
        assert racer.leases.terms is not None
        assert all(owners[job_id] == racer.leases.terms.owner for job_id in won)


async def test_a_named_lock_has_one_holder_until_it_lets_go_or_expires(open_as: Opener) -> None:
    a, b = await open_as(terms("a")), await open_as(terms("b"))
    assert await a.settings.hold("command-sync", "a", seconds=60, now=T0)
    assert not await b.settings.hold("command-sync", "b", seconds=60, now=T0)
    await b.settings.let_go("command-sync", "b")  # not b's to give up
    assert not await b.settings.hold("command-sync", "b", seconds=60, now=T0)
    await a.settings.let_go("command-sync", "a")
    assert await b.settings.hold("command-sync", "b", seconds=60, now=T0)
    # b dies holding it: after 60 s it is anyone's
    assert not await a.settings.hold(
        "command-sync", "a", seconds=60, now=T0 + timedelta(seconds=59)
    )
    assert await a.settings.hold("command-sync", "a", seconds=60, now=T0 + timedelta(seconds=61))


async def test_racing_for_a_named_lock_one_wins(open_as: Opener) -> None:
    racers = [await open_as(terms(f"p{n}")) for n in range(4)]
    won = await asyncio.gather(
        *(
            s.settings.hold("command-sync", f"p{n}", seconds=60, now=T0)
            for n, s in enumerate(racers)
        )
    )
    assert sorted(won) == [False, False, False, True]
