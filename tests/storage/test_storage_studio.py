"""Sweeps admitted as one group (all or none, exact under concurrency) and recorded until their
sheet is posted; presets stored per server with names that ignore case."""

from __future__ import annotations

import asyncio

import pytest

from storage import JobState, Refusal, Storage
from storage.presets import DuplicatePreset, PresetLimitReached, PresetNotFound
from storage.sweeps import NewSweep
from tests.harness.storage_fixtures import T0, limits, make_job, query


def new_sweep(cells: int, *, user_id: int = 100, guild_id: int = 1) -> NewSweep:
    return NewSweep(
        guild_id=guild_id,
        channel_id=10,
        user_id=user_id,
        recipe={"mode": "scale", "lora": "clay"},
        labels=[f"clay {0.25 * (i + 1):g}" for i in range(cells)],
    )


async def ledger(database: str) -> tuple[int, int, int]:
    """(jobs, sweep cells, images reserved or committed)."""
    [(jobs,)] = await query(database, "SELECT COUNT(*) FROM jobs")
    [(cells,)] = await query(database, "SELECT COUNT(*) FROM sweep_cells")
    [(images,)] = await query(
        database,
        "SELECT CAST(COALESCE(SUM(images), 0) AS BIGINT) FROM quota_ledger"
        " WHERE state <> 'refunded'",
    )
    return jobs, cells, images


async def test_a_sweep_writes_its_jobs_reservations_and_cells_together(
    storage: Storage, database: str
) -> None:
    outcome = await storage.sweeps.admit(
        new_sweep(4), [make_job() for _ in range(4)], limits(10), now=T0
    )
    assert not isinstance(outcome, Refusal)
    sweep, jobs = outcome
    assert [cell.label for cell in sweep.cells] == ["clay 0.25", "clay 0.5", "clay 0.75", "clay 1"]
    assert [cell.job_id for cell in sweep.cells] == [job.id for job in jobs]
    assert all(job.state == JobState.ADMITTED for job in jobs)
    assert await ledger(database) == (4, 4, 4)
    for job in jobs:
        assert await storage.sweeps.of_job(job.id) == sweep.id
    usage = await storage.quotas.usage(1, 100, 86_400, now=T0)
    assert (usage.images_used, usage.in_flight) == (4, 4)


@pytest.mark.parametrize(
    ("rules", "kind"),
    [(limits(5), "quota"), (limits(None, budget=0.1), "budget")],
    ids=["quota", "budget"],
)
async def test_a_sweep_that_does_not_fit_writes_nothing(
    storage: Storage, database: str, rules: object, kind: str
) -> None:
    await storage.jobs.admit(make_job(), limits(None), now=T0)  # 1 image, $0.042 already used
    outcome = await storage.sweeps.admit(
        new_sweep(6),
        [make_job() for _ in range(6)],
        rules,
        now=T0,  # type: ignore[arg-type]
    )
    assert isinstance(outcome, Refusal) and outcome.kind == kind
    assert outcome.requested == (6 if kind == "quota" else pytest.approx(6 * 0.042))
    assert await ledger(database) == (1, 0, 1)
    assert await storage.sweeps.unfinished() == []


async def test_the_group_needs_one_free_slot_in_flight(storage: Storage) -> None:
    await storage.jobs.admit(make_job(), limits(None, in_flight=2), now=T0)
    outcome = await storage.sweeps.admit(
        new_sweep(4), [make_job() for _ in range(4)], limits(None, in_flight=2), now=T0
    )
    assert not isinstance(outcome, Refusal)
    refused = await storage.sweeps.admit(
        new_sweep(4), [make_job() for _ in range(4)], limits(None, in_flight=2), now=T0
    )
    assert isinstance(refused, Refusal) and refused.kind == "in_flight"


async def test_concurrent_sweeps_never_exceed_the_quota(storage: Storage, database: str) -> None:
    """Ten sweeps of 4 against a quota of 10 at once: exactly two fit, whole."""
    outcomes = await asyncio.gather(
        *(
            storage.sweeps.admit(new_sweep(4), [make_job() for _ in range(4)], limits(10), now=T0)
            for _ in range(10)
        )
    )
    admitted = [o for o in outcomes if not isinstance(o, Refusal)]
    assert len(admitted) == 2
    assert await ledger(database) == (8, 8, 8)


async def test_sheet_and_finish_are_recorded_once(storage: Storage) -> None:
    outcome = await storage.sweeps.admit(
        new_sweep(4), [make_job() for _ in range(4)], limits(10), now=T0
    )
    assert not isinstance(outcome, Refusal)
    sweep, _ = outcome
    await storage.sweeps.set_status_message(sweep.id, 555)
    await storage.sweeps.set_cell_image(sweep.id, 2, {"url": "https://cdn/x.png"})
    await storage.sweeps.set_sheet(sweep.id, 777)
    await storage.sweeps.set_sheet(sweep.id, 888)  # a repeat after a restart
    assert [s.id for s in await storage.sweeps.unfinished()] == [sweep.id]
    done = await storage.sweeps.finish(sweep.id, now=T0)
    again = await storage.sweeps.finish(sweep.id, error="late", now=T0)
    assert done == again
    assert (done.status_message_id, done.sheet_message_id, done.error) == (555, 777, None)
    assert done.cells[2].image == {"url": "https://cdn/x.png"} and done.cells[1].image is None
    assert await storage.sweeps.unfinished() == []
    assert await storage.sweeps.of_job(999) is None


async def test_presets_per_server_names_ignore_case(storage: Storage) -> None:
    recipe = {"loras": [{"id": 1, "name": "clay", "scale": 0.8}], "template": "{prompt}, clay"}
    added = await storage.presets.add(1, "Portrait", recipe, actor_id=7, now=T0)
    assert added.recipe == recipe and added.name == "Portrait"
    with pytest.raises(DuplicatePreset) as clash:
        await storage.presets.add(1, "portrait", recipe, actor_id=7)
    assert clash.value.existing == "Portrait"
    await storage.presets.add(2, "portrait", {}, actor_id=7)  # another server's own
    assert [p.name for p in await storage.presets.search(1, "TRAIT")] == ["Portrait"]

    renamed = await storage.presets.update(1, "PORTRAIT", new_name="headshot", recipe={})
    assert (renamed.name, renamed.recipe, renamed.id) == ("headshot", {}, added.id)
    assert await storage.presets.get(1, "portrait") is None
    with pytest.raises(PresetNotFound):
        await storage.presets.update(1, "portrait", recipe={})
    await storage.presets.add(1, "b-side", {}, actor_id=7)
    with pytest.raises(DuplicatePreset):
        await storage.presets.update(1, "b-side", new_name="HEADSHOT", recipe={})
    with pytest.raises(PresetLimitReached):
        await storage.presets.add(1, "third", {}, actor_id=7, max_per_guild=2)

    assert [p.name for p in await storage.presets.list(1)] == ["b-side", "headshot"]
    await storage.presets.remove(1, "Headshot")
    assert [p.name for p in await storage.presets.list(1)] == ["b-side"]
    assert [p.name for p in await storage.presets.list(2)] == ["portrait"]
