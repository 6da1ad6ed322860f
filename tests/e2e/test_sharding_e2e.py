"""One bot process running shards 0 and 1 of 2: Discord sends each server's commands and
reactions to the shard that owns it, and members on either shard get their edits; the
process's health lists both shards."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import pytest

from emulators.discord_emulator import Guild, Message
from settings import Settings
from tests.harness.e2e import RESULT_TIMEOUT, World
from tests.harness.images import png

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def two_shards(world: World) -> tuple[World, dict[int, Guild]]:
    """The test server and a second one on the other shard of two; the bot runs both shards."""
    emu = world.emu
    emu.max_concurrency = 2  # both shards may IDENTIFY at once (the bot waits 5 s otherwise)
    second = emu.add_guild("Second Server", shard=(1 - emu.shard_of(emu.guild, 2), 2))
    world.settings = world.settings.model_copy(
        update={
            "shard_count": 2,
            "shard_ids": (0, 1),
            "metrics_port": 0,
            "metrics_host": "127.0.0.1",
        }
    )
    await world.restart()
    guilds = {emu.shard_of(g, 2): g for g in (emu.guild, second)}
    assert sorted(guilds) == [0, 1]
    return world, guilds


async def result_in(world: World, guild: Guild) -> Message:
    return await world.emu.wait_for_message(
        world.emu.channel("general", guild), lambda m: bool(m.files), timeout=RESULT_TIMEOUT
    )


async def test_members_on_both_shards_edit_and_get_their_results(
    two_shards: tuple[World, dict[int, Guild]],
) -> None:
    world, guilds = two_shards
    emu = world.emu
    assert sorted(str(s.shard) for s in emu.hub.connected_sessions()) == ["[0, 2]", "[1, 2]"]
    results: dict[int, Message] = {}
    for number, shard_id in enumerate((0, 1), start=1):
        guild = guilds[shard_id]
        alice, general = emu.member("alice", guild), emu.channel("general", guild)
        ix = await emu.slash(
            alice,
            general,
            "edit",
            {"prompt": f"make it clay on shard {shard_id}"},
            attachments={"image": emu.attachment(png(), "input.png")},
        )
        # Only the shard that owns the server heard the command.
        heard = {int(e["id"]) for e in emu.sent_events("INTERACTION_CREATE", shard=shard_id)}
        elsewhere = emu.sent_events("INTERACTION_CREATE", shard=1 - shard_id)
        assert ix.id in heard and ix.id not in {int(e["id"]) for e in elsewhere}
        assert f"Edit #{number} is on its way" in await world.reply_text(ix)
        results[shard_id] = await result_in(world, guild)
        assert results[shard_id].files[0].filename.endswith(".png")
        job = await world.job_in(number, "delivered")
        assert job.guild_id == guild.id and job.user_id == alice.id

    # A 🔁 on shard 1's result reaches shard 1, and the rerun is posted in that server.
    await emu.react(emu.member("alice", guilds[1]), results[1], "🔁")
    rerun = await result_in(world, guilds[1])
    assert rerun.embeds[0]["title"] == "Edit #3"
    assert (await world.job_in(3, "delivered")).guild_id == guilds[1].id


async def test_healthz_lists_both_shards(two_shards: tuple[World, dict[int, Guild]]) -> None:
    world, _ = two_shards
    port = world.bot.get_cog("Health").port  # type: ignore[union-attr]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        plain = await http.get("/healthz")
        assert (plain.status_code, plain.text) == (200, "ok\n")
        verbose = await http.get("/healthz?verbose")
        lines = verbose.text.splitlines()
        assert verbose.status_code == 200 and lines[0] == "ok"
        assert [line.split(":")[0] for line in lines[1:]] == [
            "shard 0 of 2",
            "shard 1 of 2",
            "database",
        ]
        assert all(line.split(": ")[1].startswith("connected") for line in lines[1:3])
        metrics = (await http.get("/metrics")).text
        assert 'flux_gateway_connected{shard="0"} 1.0' in metrics
        assert 'flux_gateway_connected{shard="1"} 1.0' in metrics
        assert 'flux_gateway_latency_seconds{shard="1"}' in metrics

        # Shard 1's connection drops and cannot come back: the process is unhealthy and says
        # which shard.
        await world.bot.shards[1].disconnect()
        down = await http.get("/healthz?verbose")
        assert down.status_code == 503
        assert down.text.splitlines()[0] == "gateway disconnected on shard 1"
        assert "shard 1 of 2: disconnected" in down.text
        assert "shard 0 of 2: connected" in down.text
        assert 'flux_gateway_connected{shard="1"} 0.0' in (await http.get("/metrics")).text


async def test_too_few_shards_for_the_servers_stops_with_one_line(world: World) -> None:
    """Discord closes with 4011 when a shard would hold too many servers: the bot says which
    setting to change and exits 2, as for other bad settings."""
    emu = world.emu
    emu.max_guilds_per_shard = 1  # Discord's cap is 2,500; two servers trip this one
    emu.add_guild("Second Server", shard=(1 - emu.shard_of(emu.guild, 2), 2))
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    env |= emu.bot_env() | {
        "FAL_KEY": world.settings.fal_key.get_secret_value(),
        "FAL_QUEUE_URL": world.fal.queue_url,
        "FAL_REST_URL": world.fal.rest_url,
        "FAL_CDN_URL": world.fal.cdn_url,
        "DATABASE_PATH": str(world.settings.database_path.parent / "shards.sqlite3"),
        "SHARD_COUNT": "1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bot.py"),
        cwd=str(world.settings.database_path.parent),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    lines = err.decode().splitlines()
    assert "Traceback" not in err.decode()
    assert lines[-1].startswith("Discord refused the gateway connection (4011, sharding required)")
    assert "Raise SHARD_COUNT" in lines[-1]
