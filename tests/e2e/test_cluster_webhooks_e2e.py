"""Two bot processes on one PostgreSQL database with fal webhooks on, and every webhook sent
to one of them (as a reverse proxy in front of a cluster may): each edit is still finished by
the process that drives it, with one submit and no status request at fal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from emulators.discord_emulator import DiscordEmulator
from emulators.fal_emulator.server import FalEmulator
from tests.harness.cluster import Cluster
from tests.harness.hook_world import free_port
from tests.harness.images import png
from tests.harness.postgres import ScratchDatabases

pytestmark = pytest.mark.timeout(300)

WITHIN = 90.0


@pytest.fixture
async def cluster(postgres_databases: ScratchDatabases, tmp_path: Path) -> AsyncIterator[Cluster]:
    url = await postgres_databases.create()
    try:
        async with DiscordEmulator() as emu, FalEmulator(seed=19) as fal:
            emu.recommended_shards = 2
            ports = [free_port(), free_port()]
            made = Cluster(
                emu,
                fal,
                url,
                tmp_path,
                extra={
                    # Every process tells fal the same address: process 0's listener.
                    "FAL_WEBHOOK_URL": f"http://127.0.0.1:{ports[0]}/fal/webhook",
                    "WEBHOOK_HOST": "127.0.0.1",
                },
                node_extra={i: {"WEBHOOK_PORT": str(port)} for i, port in enumerate(ports)},
            )
            try:
                yield made
            finally:
                await made.close()
    finally:
        await postgres_databases.drop(url)


async def test_webhooks_received_by_one_process_finish_the_jobs_the_other_drives(
    cluster: Cluster,
) -> None:
    guilds = cluster.add_guilds(per_shard=2)
    await cluster.start_all()
    emu = cluster.emu
    for n, guild in enumerate(guilds):
        await emu.slash(
            emu.member("alice", guild),
            emu.channel("general", guild),
            "edit",
            {"prompt": f"hooked {n}"},
            attachments={"image": emu.attachment(png(64, 64), "in.png")},
        )
    jobs = await cluster.until_jobs(
        lambda rows: len(rows) == 4 and all(r["state"] == "delivered" for r in rows),
        WITHIN,
        "four edits delivered",
    )
    drivers = {str(job["lease_owner"]).split("/")[0] for job in jobs}
    assert drivers == {node.instance for node in cluster.nodes}  # both processes drove some
    fal = cluster.fal
    assert (fal.count("submit"), fal.count("status"), fal.count("stream")) == (4, 0, 0)
    assert fal.count("result") == 0
    attempts = fal.webhook_attempts
    assert len(attempts) == 4 and {attempt.status for attempt in attempts} == {200}
    assert len({attempt.url for attempt in attempts}) == 1
    assert len(cluster.results()) == 4
    assert cluster.tracebacks() == []
