"""Storage for trainings: server-paid reservations (no images, only money), the draft set of
pairs, and LoRAs registered once per training with their recipe."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storage import DuplicateName, Job, JobState, LoraLimitReached, Refusal, Storage
from storage.models import LoraFields
from storage.schema import load_migrations
from tests.harness.storage_fixtures import T0, limits, make_job

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


async def server_paid(storage: Storage, **kwargs: object) -> Job:
    job = await storage.jobs.admit(
        make_job(**kwargs), limits(None, budget=20.0), now=T0, quota_images=0
    )
    assert isinstance(job, Job)
    return job


async def test_a_server_paid_job_reserves_money_but_no_images_nor_a_slot(storage: Storage) -> None:
    await server_paid(storage, cost_usd=11.82)
    usage = await storage.quotas.usage(1, 100, 86_400, now=T0)
    assert (usage.images_used, usage.in_flight) == (0, 0)
    assert await storage.quotas.guild_spend(1, now=T0) == pytest.approx(11.82)


async def test_a_member_out_of_quota_and_slots_may_still_start_server_paid_work(
    storage: Storage,
) -> None:
    rules = limits(1, in_flight=1, budget=20.0)
    member = await storage.jobs.admit(make_job(images=1, cost_usd=0.1), rules, now=T0)
    assert isinstance(member, Job)
    assert isinstance(await storage.jobs.admit(make_job(), rules, now=T0), Refusal)
    trained = await storage.jobs.admit(make_job(cost_usd=5.0), rules, now=T0, quota_images=0)
    assert isinstance(trained, Job)


async def test_server_paid_work_is_still_held_to_the_budget(storage: Storage) -> None:
    refusal = await storage.jobs.admit(
        make_job(cost_usd=25.0), limits(None, budget=20.0), now=T0, quota_images=0
    )
    assert isinstance(refusal, Refusal) and refusal.kind == "budget"


@pytest.mark.parametrize(
    "end", [JobState.CANCELLED, JobState.FAILED, JobState.EXPIRED], ids=lambda s: s.value
)
async def test_a_server_paid_job_that_ends_early_gives_the_money_back(
    storage: Storage, end: JobState
) -> None:
    job = await server_paid(storage, cost_usd=11.82)
    await storage.jobs.transition(job.id, JobState.SUBMITTED, now=T0)
    await storage.jobs.transition(job.id, end, now=T0)
    assert await storage.quotas.guild_spend(1, now=T0) == 0.0


async def test_delivered_server_paid_job_keeps_its_cost(storage: Storage) -> None:
    job = await server_paid(storage, cost_usd=11.82)
    for state in (JobState.SUBMITTED, JobState.COMPLETED, JobState.DELIVERED):
        await storage.jobs.transition(job.id, state, now=T0)
    assert await storage.quotas.guild_spend(1, now=T0) == pytest.approx(11.82)
    [row] = await storage.quotas.member_report(1, now=T0)
    assert (row.images_month, row.usd_month) == (0, pytest.approx(11.82))


async def test_upgrading_keeps_every_ledger_row(storage_path: Path) -> None:
    migrations = load_migrations()
    before = migrations[:3]
    old = await Storage.open(storage_path, migrations=before)
    job = await old.jobs.admit(make_job(images=2, cost_usd=0.5), limits(), now=T0)
    assert isinstance(job, Job)
    await old.close()
    new = await Storage.open(storage_path)
    try:
        usage = await new.quotas.usage(1, 100, 86_400, now=T0)
        assert (usage.images_used, usage.in_flight) == (2, 1)
        assert await new.quotas.guild_spend(1, now=T0) == 0.5
        await new.jobs.transition(job.id, JobState.FAILED, now=T0)
        assert await new.quotas.guild_spend(1, now=T0) == 0.0
    finally:
        await new.close()
    with sqlite3.connect(storage_path) as conn:
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(quota_ledger)")}
    assert {"quota_ledger_window", "quota_ledger_in_flight"} <= indexes


# ---------------------------------------------------------------------------- the draft set


def ref(name: str) -> dict[str, object]:
    return {"sha256": name * 64, "url": f"https://cdn/{name}.png", "content_type": "image/png"}


async def test_pairs_keep_their_order_and_positions(storage: Storage) -> None:
    for name in "abc":
        added = await storage.pairs.add(1, [ref(name)], ref("e"), instruction=name, added_by=7)
        assert added is not None
    await storage.pairs.add(2, [ref("z")], ref("e"), instruction=None, added_by=7)
    assert [p.instruction for p in await storage.pairs.list(1)] == ["a", "b", "c"]
    removed = await storage.pairs.remove(1, 2)
    assert removed is not None and removed.instruction == "b"
    assert [p.instruction for p in await storage.pairs.list(1)] == ["a", "c"]
    assert await storage.pairs.remove(1, 3) is None
    assert await storage.pairs.remove(1, 0) is None
    assert await storage.pairs.clear(1) == 2
    assert await storage.pairs.count(1) == 0
    assert await storage.pairs.count(2) == 1


async def test_a_full_draft_set_takes_no_more_pairs(storage: Storage) -> None:
    for _ in range(2):
        assert await storage.pairs.add(
            1, [ref("a")], ref("e"), instruction=None, added_by=7, max_pairs=2
        )
    assert (
        await storage.pairs.add(1, [ref("a")], ref("e"), instruction=None, added_by=7, max_pairs=2)
        is None
    )


# ---------------------------------------------------------------------------- trained LoRAs


def fields(name: str = "water", path: str = "https://cdn/w1.safetensors") -> LoraFields:
    return LoraFields(name=name, path=path, trigger_words=["paint it"], description="trained")


async def training_job(storage: Storage) -> int:
    return (await server_paid(storage)).id


async def test_a_training_registers_its_lora_once(storage: Storage) -> None:
    job_id = await training_job(storage)
    recipe = {"pairs": 20, "steps": 1000}
    first, fresh = await storage.trainings.register(
        1,
        job_id,
        fields(),
        replace=False,
        recipe=recipe,
        trained={"job": job_id},
        actor_id=7,
        now=T0,
    )
    again, fresh_again = await storage.trainings.register(
        1,
        job_id,
        fields(path="https://other"),
        replace=False,
        recipe={},
        trained={},
        actor_id=7,
        now=T0,
    )
    assert fresh and not fresh_again
    assert first is not None and again is not None and again.id == first.id
    assert again.path == "https://cdn/w1.safetensors"
    history = await storage.loras.history(1, "water")
    assert [(c.action, c.actor_id, c.details["trained"]) for c in history] == [
        ("add", 7, {"job": job_id})
    ]
    recorded = await storage.trainings.latest(first.id)
    assert recorded is not None and recorded.recipe == recipe and recorded.job_id == job_id


async def test_a_retraining_keeps_the_lora_and_its_history(storage: Storage) -> None:
    old = await storage.loras.add(1, "Water", "owner/water", actor_id=3, now=T0)
    job_id = await training_job(storage)
    lora, fresh = await storage.trainings.register(
        1,
        job_id,
        fields(),
        replace=True,
        recipe={"steps": 500},
        trained={"job": job_id},
        actor_id=7,
        now=T0,
    )
    assert fresh and lora is not None
    assert (lora.id, lora.name, lora.version) == (old.id, "Water", 2)
    assert lora.path == "https://cdn/w1.safetensors"
    history = await storage.loras.history(1, "water")
    assert [c.action for c in history] == ["add", "edit"]
    assert history[1].details["path"] == {"old": "owner/water", "new": lora.path}
    assert history[1].details["trained"] == {"job": job_id}


async def test_a_taken_name_without_replace_is_refused(storage: Storage) -> None:
    await storage.loras.add(1, "water", "owner/water", actor_id=3, now=T0)
    job_id = await training_job(storage)
    with pytest.raises(DuplicateName):
        await storage.trainings.register(
            1, job_id, fields(), replace=False, recipe={}, trained={}, actor_id=7
        )
    assert await storage.trainings.of_job(job_id) is None


async def test_a_new_trained_lora_respects_the_server_limit(storage: Storage) -> None:
    await storage.loras.add(1, "other", "owner/other", actor_id=3, now=T0)
    job_id = await training_job(storage)
    with pytest.raises(LoraLimitReached):
        await storage.trainings.register(
            1,
            job_id,
            fields(),
            replace=False,
            recipe={},
            trained={},
            actor_id=7,
            max_per_guild=1,
        )
