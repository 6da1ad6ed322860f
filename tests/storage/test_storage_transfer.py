"""Copying a SQLite database into an empty PostgreSQL one: everything, exactly, or nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from storage import (
    ChannelSettings,
    GuildSettings,
    Job,
    JobState,
    Storage,
    StoredInput,
)
from storage.models import LoraFields
from storage.transfer import TABLES, TransferError, copy_sqlite_to_postgres
from tests.harness.postgres import ScratchDatabases
from tests.harness.storage_fixtures import T0, limits, make_job, query

KEYS = {
    "loras": "id",
    "lora_changes": "id",
    "jobs": "id",
    "quota_ledger": "job_id",
    "guild_spend": "guild_id, month",
    "guild_settings": "guild_id",
    "channel_settings": "guild_id, channel_id",
    "inputs": "sha256",
    "meta": "key",
    "budget_alerts": "guild_id, month, kind",
    "presets": "id",
    "sweeps": "id",
    "sweep_cells": "sweep_id, cell",
    "training_pairs": "id",
    "lora_trainings": "job_id",
}


@pytest.fixture
async def target(postgres_databases: ScratchDatabases) -> Any:
    url = await postgres_databases.create()
    yield url
    await postgres_databases.drop(url)


async def populate(path: Path) -> None:
    """A bit of everything the bot keeps, in every state a job can be in."""
    storage = await Storage.open(path)
    try:
        await storage.loras.add(1, "Anime", "owner/anime", trigger_words=["ANIME"], actor_id=9)
        await storage.loras.add(1, "Clay", "owner/clay", default_scale=0.75, actor_id=9)
        await storage.loras.add(2, "Ink", "owner/ink", description="Ünïcode ✓", actor_id=9)
        await storage.loras.update(1, "anime", 9, description="big eyes")
        await storage.loras.set_enabled(1, "clay", False, actor_id=9)
        gone = await storage.loras.add(1, "Zed", "owner/zed", actor_id=9)
        await storage.loras.remove(1, "zed", actor_id=9)  # the highest id is gone
        assert gone.id == 4
        rules = limits(100, budget=50.0)
        ids = []
        for n in range(7):
            job = await storage.jobs.admit(
                make_job(user_id=100 + n % 3, images=1 + n % 2, now=T0), rules, now=T0
            )
            assert isinstance(job, Job)
            ids.append(job.id)
        rerun = await storage.jobs.admit(make_job(parent_job_id=ids[0], now=T0), rules, now=T0)
        assert isinstance(rerun, Job)
        for job_id in ids[:4]:
            await storage.jobs.transition(job_id, JobState.SUBMITTED, fal_request_id=f"r{job_id}")
            await storage.jobs.transition(job_id, JobState.COMPLETED, result={"images": ["a"]})
        await storage.jobs.transition(ids[0], JobState.DELIVERED, result_message_id=5000)
        await storage.jobs.mark_announced(ids[0])
        await storage.jobs.transition(ids[1], JobState.FAILED, error="boom")
        await storage.jobs.transition(ids[4], JobState.CANCELLED)
        await storage.quotas.reset(1, 102, now=T0 + timedelta(minutes=1))
        await storage.settings.save(1, GuildSettings(max_images_per_job=2))
        await storage.settings.save_channel(1, 10, ChannelSettings(max_steps=20))
        await storage.settings.set_meta("command_tree_hash", "abc")
        await storage.presets.add(1, "Soft", {"loras": [{"name": "Anime"}]}, actor_id=9)
        ref = {"url": "https://v3.fal.media/a.png", "sha256": "b" * 64}
        for n in range(3):
            await storage.pairs.add(1, [ref], ref, instruction=f"pair {n}", added_by=9)
        await storage.pairs.remove(1, 3)  # the highest pair id is gone
        training = await storage.jobs.admit(make_job(now=T0), rules, now=T0, quota_images=0)
        assert isinstance(training, Job)
        await storage.trainings.register(
            1,
            training.id,
            LoraFields(name="Trained", path="https://v3.fal.media/w.safetensors"),
            replace=False,
            recipe={"steps": 500},
            trained={"job": training.id},
            actor_id=9,
        )
        await storage.inputs.put(
            StoredInput(
                sha256="a" * 64,
                url="https://v3.fal.media/in.png",
                content_type="image/png",
                byte_size=1234,
                width=64,
                height=48,
                created_at=T0,
            )
        )
    finally:
        await storage.close()


async def test_everything_is_copied_exactly(storage_path: Path, target: str) -> None:
    await populate(storage_path)
    said: list[str] = []

    copied = await copy_sqlite_to_postgres(storage_path, target, say=said.append)

    assert [item.table for item in copied] == list(TABLES)
    for table in TABLES:
        order = KEYS[table]
        source = await query(str(storage_path), f"SELECT * FROM {table} ORDER BY {order}")
        copy = await query(target, f"SELECT * FROM {table} ORDER BY {order}")
        assert copy == source, table
        assert f"{table}: {len(source)} rows copied" in said
    assert any(line.startswith("to:   PostgreSQL") for line in said)


async def test_the_copy_serves_as_before_and_never_reuses_an_id(
    storage_path: Path, target: str
) -> None:
    await populate(storage_path)
    before = await Storage.open(storage_path)
    try:
        usage_before = await before.quotas.usage(1, 100, 86_400, now=T0)
        spend_before = await before.quotas.guild_spend(1, now=T0)
        jobs_before = await before.jobs.recent_for_user(1, 100, 20)
        loras_before = await before.loras.list(1, include_disabled=True)
        history_before = await before.loras.history(1, "zed")
        unfinished_before = await before.jobs.unfinished()
    finally:
        await before.close()

    await copy_sqlite_to_postgres(storage_path, target)

    after = await Storage.open(target)
    try:
        assert await after.quotas.usage(1, 100, 86_400, now=T0) == usage_before
        assert await after.quotas.guild_spend(1, now=T0) == spend_before
        assert await after.jobs.recent_for_user(1, 100, 20) == jobs_before
        assert await after.loras.list(1, include_disabled=True) == loras_before
        assert await after.loras.history(1, "zed") == history_before
        assert (await after.settings.get(1)).max_images_per_job == 2
        assert [p.instruction for p in await after.pairs.list(1)] == ["pair 0", "pair 1"]
        trained = await after.loras.get(1, "trained")
        assert trained is not None
        recipe = await after.trainings.latest(trained.id)
        assert recipe is not None and recipe.recipe == {"steps": 500}
        ref = {"url": "https://v3.fal.media/c.png"}
        added_pair = await after.pairs.add(1, [ref], ref, instruction=None, added_by=9)
        assert added_pair is not None and added_pair[0].id == 4 and added_pair[1] == 3
        # SQLite handed out LoRA ids 1..5 (4 removed since) and jobs 1..9: none comes back.
        added = await after.loras.add(1, "New", "owner/new", actor_id=9)
        assert added.id == 6
        job = await after.jobs.admit(make_job(now=T0), limits(100), now=T0)
        assert isinstance(job, Job) and job.id == 10
        assert await after.jobs.unfinished() == [*unfinished_before, job]  # they go on
    finally:
        await after.close()


async def test_a_target_that_holds_data_is_refused_and_left_alone(
    storage_path: Path, target: str
) -> None:
    await populate(storage_path)
    busy = await Storage.open(target)
    await busy.settings.set_meta("mine", "keep me")
    await busy.close()

    with pytest.raises(TransferError, match=r"not empty \(1 in meta rows\)"):
        await copy_sqlite_to_postgres(storage_path, target)

    assert await query(target, "SELECT key, value FROM meta") == [("mine", "keep me")]
    assert await query(target, "SELECT COUNT(*) FROM jobs") == [(0,)]


async def test_a_missing_file_or_a_non_postgres_target_is_refused(
    tmp_path: Path, target: str
) -> None:
    with pytest.raises(TransferError, match="there is no SQLite database at"):
        await copy_sqlite_to_postgres(tmp_path / "nothing.sqlite3", target)
    assert not (tmp_path / "nothing.sqlite3").exists()
    with pytest.raises(TransferError, match="must be a postgresql://"):
        await copy_sqlite_to_postgres(tmp_path / "nothing.sqlite3", str(tmp_path / "x"))
