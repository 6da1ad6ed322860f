"""The fair queue across processes: two bot processes (one shard each) on one PostgreSQL
database share FAL_MAX_CONCURRENT between them, and a member served by one process goes before
another member's backlog in the other process's server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from emulators.discord_emulator import DiscordEmulator
from emulators.discord_emulator.world import Guild
from emulators.fal_emulator.jobs import COMPLETED
from emulators.fal_emulator.server import FalEmulator
from storage import GuildSettings, Storage
from tests.harness.cluster import Cluster
from tests.harness.images import png
from tests.harness.postgres import ScratchDatabases
from tests.harness.storage_fixtures import query

pytestmark = pytest.mark.timeout(300)

WITHIN = 90.0
CAP = 2


@pytest.fixture
async def cluster(postgres_databases: ScratchDatabases, tmp_path: Path) -> AsyncIterator[Cluster]:
    url = await postgres_databases.create()
    try:
        async with DiscordEmulator() as emu, FalEmulator(seed=19) as fal:
            emu.recommended_shards = 2
            made = Cluster(emu, fal, url, tmp_path, extra={"FAL_MAX_CONCURRENT": str(CAP)})
            try:
                yield made
            finally:
                await made.close()
    finally:
        await postgres_databases.drop(url)


async def test_two_processes_share_the_cap_and_members_take_turns(cluster: Cluster) -> None:
    busy_server, quiet_server = cluster.add_guilds(per_shard=1)
    assert cluster.owner_of(busy_server) is not cluster.owner_of(quiet_server)
    storage = await Storage.open(cluster.database_url)
    try:
        for guild in (busy_server, quiet_server):
            await storage.settings.save(
                guild.id, GuildSettings(default_quota=100, max_in_flight=10)
            )
    finally:
        await storage.close()
    await cluster.start_all()
    emu, fal = cluster.emu, cluster.fal
    most_at_fal = 0

    def count_at_fal() -> None:
        nonlocal most_at_fal
        busy = sum(1 for job in fal.jobs.values() if job.status != COMPLETED)
        most_at_fal = max(most_at_fal, busy)

    cluster.watch.hooks.append(count_at_fal)
    fal.paused = True  # fal holds what it gets: both slots stay busy
    fal.concurrency = 1  # then finishes one at a time: each frees one slot

    async def start(guild: Guild, member: str, prompt: str) -> None:
        await emu.slash(
            emu.member(member, guild),
            emu.channel("general", guild),
            "edit",
            {"prompt": prompt},
            attachments={"image": emu.attachment(png(64, 64), "in.png")},
        )

    for n in range(4):
        await start(busy_server, "alice", f"alice {n}")
    await cluster.watch.until(lambda: len(fal.jobs) == CAP, WITHIN, "two requests at fal")
    await start(quiet_server, "bob", "bob 0")

    async def waiting() -> int:
        rows = await query(
            cluster.database_url,
            "SELECT COUNT(*) FROM jobs WHERE state = 'admitted' AND released_at IS NULL",
        )
        return int(rows[0][0])

    await cluster.until_jobs(lambda jobs: len(jobs) == 5, WITHIN, "five edits admitted")
    assert await waiting() == 3 and len(fal.jobs) == CAP
    fal.paused = False
    await cluster.until_jobs(
        lambda jobs: len(jobs) == 5 and all(j["state"] == "delivered" for j in jobs),
        WITHIN,
        "every edit delivered",
    )
    # Bob's only edit, admitted by the other process, was released before Alice's third. (The
    # order fal heard them in may differ: the process holding a job released by another one
    # learns of it at its next look at the queue.)
    rows = await query(
        cluster.database_url, "SELECT id, request, lease_owner FROM jobs ORDER BY released_at, id"
    )
    member = {job_id: json.loads(request)["prompt"].split()[0] for job_id, request, _ in rows}
    alice = sorted(job_id for job_id, who in member.items() if who == "alice")
    [bob] = [job_id for job_id, who in member.items() if who == "bob"]
    released = [job_id for job_id, _request, _owner in rows]
    assert released == [*alice[:2], bob, *alice[2:]], rows
    owners = {job_id: owner for job_id, _request, owner in rows}
    assert str(owners[bob]).startswith(cluster.owner_of(quiet_server).instance + "/")
    assert len(fal.submissions()) == 5, "each edit was sent once"
    assert most_at_fal <= CAP
    assert cluster.tracebacks() == []
