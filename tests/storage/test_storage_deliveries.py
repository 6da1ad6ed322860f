"""Recorded fal webhooks: a delivery is stored only for a job still waiting at fal, once per
request, and read back for many jobs with one query; it goes when the job has moved on."""

from __future__ import annotations

from storage import Job, JobState, Storage
from tests.harness.storage_fixtures import T0, limits, make_job


async def submitted(storage: Storage, request_id: str) -> Job:
    job = await storage.jobs.admit(make_job(now=T0), limits(None), now=T0)
    assert isinstance(job, Job)
    return await storage.jobs.transition(
        job.id, JobState.SUBMITTED, now=T0, fal_request_id=request_id
    )


async def test_a_delivery_for_a_waiting_job_is_recorded_once(storage: Storage) -> None:
    job = await submitted(storage, "req-1")
    first = await storage.deliveries.record("req-1", True, '{"n": 1}', now=T0)
    again = await storage.deliveries.record("req-1", True, '{"n": 2}', now=T0)
    assert (first.outcome, first.job_id) == ("recorded", job.id)
    assert (again.outcome, again.job_id) == ("recorded", job.id)
    stored = await storage.deliveries.for_job(job.id)
    assert stored is not None
    assert (stored.request_id, stored.ok, stored.body) == ("req-1", True, '{"n": 1}')


async def test_an_unknown_request_or_a_job_past_waiting_records_nothing(storage: Storage) -> None:
    assert (await storage.deliveries.record("nobody", True, "{}", now=T0)).outcome == "unknown"
    job = await submitted(storage, "req-2")
    await storage.jobs.transition(job.id, JobState.COMPLETED, now=T0)
    past = await storage.deliveries.record("req-2", False, "{}", now=T0)
    assert (past.outcome, past.job_id) == ("past", job.id)
    assert await storage.deliveries.for_job(job.id) is None


async def test_many_jobs_read_in_one_query_and_forgotten_one_by_one(storage: Storage) -> None:
    jobs = [await submitted(storage, f"req-{n}") for n in range(3)]
    for job in jobs[:2]:
        await storage.deliveries.record(job.fal_request_id or "", True, "{}", now=T0)
    found = await storage.deliveries.for_jobs([job.id for job in jobs])
    assert sorted(found) == [jobs[0].id, jobs[1].id]
    await storage.deliveries.forget(jobs[0].id)
    assert sorted(await storage.deliveries.for_jobs([job.id for job in jobs])) == [jobs[1].id]
    assert await storage.deliveries.for_jobs([]) == {}
