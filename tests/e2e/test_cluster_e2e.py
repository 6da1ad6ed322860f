"""A shard cluster: two bot processes, two shards, four servers, one PostgreSQL database.

Members in every server are served by the process that owns their server's shard; any process
finishes work another one started; a process killed with jobs in every state loses none of
them (the other adopts them, delivers each once, charges each once) and takes its shards back
when it restarts; a process stopped with SIGTERM hands its jobs over at once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from emulators.discord_emulator import DiscordEmulator
from emulators.discord_emulator.world import Guild
from emulators.fal_emulator.server import FalEmulator
from tests.harness.cluster import Cluster
from tests.harness.emulator_watch import KillSwitch
from tests.harness.images import png
from tests.harness.postgres import ScratchDatabases

pytestmark = pytest.mark.timeout(300)

WITHIN = 90.0
FINISHED = {"delivered", "failed", "cancelled", "expired"}


@pytest.fixture
async def cluster(postgres_databases: ScratchDatabases, tmp_path: Path) -> AsyncIterator[Cluster]:
    url = await postgres_databases.create()
    try:
        async with DiscordEmulator() as emu, FalEmulator(seed=18) as fal:
            emu.recommended_shards = 2
            made = Cluster(emu, fal, url, tmp_path)
            try:
                yield made
            finally:
                await made.close()
    finally:
        await postgres_databases.drop(url)


async def edit(cluster: Cluster, guild: Guild, prompt: str, member: str = "alice") -> None:
    emu = cluster.emu
    await emu.slash(
        emu.member(member, guild),
        emu.channel("general", guild),
        "edit",
        {"prompt": prompt},
        attachments={"image": emu.attachment(png(64, 64), "in.png")},
    )


def finished(count: int) -> Any:
    return lambda jobs: len(jobs) == count and all(j["state"] in FINISHED for j in jobs)


def result_for(cluster: Cluster, guild: Guild, prompt: str) -> Any:
    for message in cluster.results(guild):
        if prompt in str(message.embeds[0].get("description", "")):
            return message
    raise AssertionError(f"no result for {prompt!r} in {guild.name}")


async def test_each_process_serves_its_servers_and_finishes_the_others_work(
    cluster: Cluster,
) -> None:
    guilds = cluster.add_guilds(per_shard=2)
    # Both start at once, as a deployment does: the commands are synced once, not per process.
    await asyncio.gather(cluster.start(0), cluster.start(1))
    syncs = [event for event in cluster.emu.state.events if event.kind == "commands_synced"]
    assert len(syncs) == 1
    by_guild = {guild.id: guild for guild in guilds}

    for n, guild in enumerate(guilds):
        await edit(cluster, guild, f"first edit {n}")
    jobs = await cluster.until_jobs(finished(4), WITHIN, "four first edits delivered")
    assert [job["state"] for job in jobs] == ["delivered"] * 4
    for job in jobs:
        owner = cluster.owner_of(by_guild[job["guild_id"]])
        assert str(job["lease_owner"]).startswith(owner.instance + "/"), job

    # 🔁 on every result, and the Rerun button under it: each handled where the server lives
    for n, guild in enumerate(guilds):
        result = result_for(cluster, guild, f"first edit {n}")
        member = cluster.emu.member("bob", guild)
        await cluster.emu.react(member, result, "🔁")
        job_id = next(j["id"] for j in jobs if j["result_message_id"] == result.id)
        await cluster.emu.click(member, result, f"job:{job_id}:rerun")
    jobs = await cluster.until_jobs(finished(12), WITHIN, "every rerun delivered")
    reruns = [job for job in jobs if job["parent_job_id"] is not None]
    assert len(reruns) == 8 and {job["state"] for job in reruns} == {"delivered"}
    for job in reruns:
        owner = cluster.owner_of(by_guild[job["guild_id"]])
        assert str(job["lease_owner"]).startswith(owner.instance + "/"), job
    assert Counter(job["guild_id"] for job in reruns) == {guild.id: 2 for guild in guilds}
    assert cluster.tracebacks() == []


async def test_a_killed_process_loses_nothing_and_takes_its_shards_back(cluster: Cluster) -> None:
    guilds = cluster.add_guilds(per_shard=2)
    await cluster.start_all()
    fal = cluster.fal
    fal.concurrency = 1  # one request runs at a time: the others wait in fal's queue
    fal.run_time = 0.4
    victim = cluster.nodes[0]
    mine = [guild for guild in guilds if cluster.owner_of(guild) is victim]
    theirs = [guild for guild in guilds if cluster.owner_of(guild) is not victim]
    fal.paused = True  # every edit reaches fal before any runs
    members = ("alice", "bob", "carol")  # one edit each: nobody's jobs-in-flight cap applies
    prompts = [f"edit {n} in {guild.name}" for guild in mine for n in range(3)]
    for n, prompt in enumerate(prompts):
        guild = next(g for g in mine if prompt.endswith(g.name))
        await edit(cluster, guild, prompt, member=members[n % 3])
    await cluster.watch.until(lambda: len(fal.jobs) == 6, WITHIN, "six requests at fal")
    # Node 0 dies the moment Discord has its first result, before it records that: one job
    # completed and posted but not known to be, one running at fal, the rest queued there.
    switch = KillSwitch(cluster.watch, victim.process.kill)
    switch.arm("posting", 1)
    fal.paused = False
    await cluster.watch.until(lambda: switch.fired, WITHIN, "node 0 was killed while posting")
    await victim.process.wait()
    assert len(fal.jobs) >= 2  # some were still at fal when it died

    jobs = await cluster.until_jobs(finished(6), WITHIN, "node 1 finished node 0's jobs")
    assert {job["state"] for job in jobs} == {"delivered"}
    survivor = cluster.nodes[1]
    adopted = [job for job in jobs if str(job["lease_owner"]).startswith(survivor.instance)]
    assert adopted, "node 1 adopted node 0's jobs"
    # Each delivered once: one result message per job, and each job charged once.
    posted = Counter(message.id for message in cluster.results())
    assert len(posted) == 6 and set(posted.values()) == {1}
    assert {job["result_message_id"] for job in jobs} == set(posted)
    for prompt, guild in ((p, g) for p in prompts for g in mine if p.endswith(g.name)):
        assert result_for(cluster, guild, prompt) is not None
    ledger = await cluster.ledger()
    assert {state for state, _cost in ledger.values()} == {"committed"}
    assert await cluster.month_spend() == sum(cost for _state, cost in ledger.values())
    assert len(fal.jobs) == 6  # nothing was submitted twice

    # It comes back and serves its servers again.
    await cluster.start(0)
    await edit(cluster, mine[0], "after the restart")
    await edit(cluster, theirs[0], "meanwhile on shard 1")
    jobs = await cluster.until_jobs(finished(8), WITHIN, "edits after the restart delivered")
    newest = {job["guild_id"]: job for job in jobs[-2:]}
    assert str(newest[mine[0].id]["lease_owner"]).startswith(victim.instance + "/")
    assert str(newest[theirs[0].id]["lease_owner"]).startswith(survivor.instance + "/")
    assert cluster.tracebacks() == []


async def test_sigterm_hands_the_jobs_over_at_once(cluster: Cluster) -> None:
    # Leases far longer than the test: only a release lets node 1 take the jobs in time.
    cluster.extra["LEASE_SECONDS"] = "600"
    guilds = cluster.add_guilds(per_shard=1)
    await cluster.start_all()
    fal = cluster.fal
    fal.paused = True  # requests wait at fal until the test lets them run
    leaving = cluster.nodes[0]
    mine = next(guild for guild in guilds if cluster.owner_of(guild) is leaving)
    for n, member in enumerate(("alice", "bob", "carol")):
        await edit(cluster, mine, f"handed over {n}", member=member)
    await cluster.watch.until(lambda: len(fal.jobs) == 3, WITHIN, "three requests at fal")

    assert await cluster.terminate(0) == 0
    log = leaving.process.log_text()
    assert "released 3 leases" in log
    fal.paused = False
    jobs = await cluster.until_jobs(finished(3), WITHIN, "node 1 delivered the handed-over jobs")
    assert {job["state"] for job in jobs} == {"delivered"}
    survivor = cluster.nodes[1]
    assert all(str(job["lease_owner"]).startswith(survivor.instance + "/") for job in jobs)
    assert len(fal.jobs) == 3
    assert cluster.tracebacks() == []
