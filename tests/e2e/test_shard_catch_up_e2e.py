"""Processes that split the shards catch up only their own servers' 🔁 reactions made while
they were down: each rerun runs once, in the process Discord sends that server to."""

from __future__ import annotations

import asyncio

from emulators.discord_emulator import Guild, Message
from tests.harness.e2e import RESULT_TIMEOUT, World
from tests.harness.images import png

# Processes that split the shards share one PostgreSQL database (SQLite is refused).
E2E_BACKENDS = ("postgres",)


async def edit_in(world: World, guild: Guild) -> Message:
    emu = world.emu
    general = emu.channel("general", guild)
    ix = await emu.slash(
        emu.member("alice", guild),
        general,
        "edit",
        {"prompt": "make it clay"},
        attachments={"image": emu.attachment(png(), "input.png")},
    )
    assert "is on its way" in await world.reply_text(ix)
    return await emu.wait_for_message(general, lambda m: bool(m.files), timeout=RESULT_TIMEOUT)


async def run_shards(world: World, *shard_ids: int) -> int:
    """Start a process running `shard_ids` of 2; how many reactions its catch-up handled."""
    world.settings = world.settings.model_copy(update={"shard_count": 2, "shard_ids": shard_ids})
    world.bot = await world.emu.start_bot(world.make_bot())
    cog = world.bot.get_cog("Iterate")
    assert cog is not None
    handled: int = await asyncio.wait_for(cog.catching_up, 15)  # type: ignore[attr-defined, arg-type]
    return handled


async def test_each_process_catches_up_only_its_shards_servers(world: World) -> None:
    emu = world.emu
    emu.max_concurrency = 2
    second = emu.add_guild("Second Server", shard=(1 - emu.shard_of(emu.guild, 2), 2))
    guilds = {emu.shard_of(g, 2): g for g in (emu.guild, second)}
    await emu.stop_bot()
    await run_shards(world, 0, 1)
    results = {shard: await edit_in(world, guild) for shard, guild in guilds.items()}
    await emu.stop_bot()

    # While every process is down, alice asks for a rerun in both servers.
    for shard, guild in guilds.items():
        await emu.react(emu.member("alice", guild), results[shard], "🔁")

    assert await run_shards(world, 0) == 1  # the process of shard 0 reruns shard 0's only
    rerun_0 = await emu.wait_for_message(
        emu.channel("general", guilds[0]), lambda m: bool(m.files), timeout=RESULT_TIMEOUT
    )
    assert rerun_0.embeds[0]["title"] == "Edit #3"
    await world.job_in(3, "delivered")
    assert await world.bot.storage.jobs.get(4) is None  # shard 1's server was left alone
    await emu.stop_bot()

    assert await run_shards(world, 1) == 1  # and the process of shard 1 reruns its own
    rerun_1 = await emu.wait_for_message(
        emu.channel("general", guilds[1]), lambda m: bool(m.files), timeout=RESULT_TIMEOUT
    )
    assert rerun_1.embeds[0]["title"] == "Edit #4"
    job = await world.job_in(4, "delivered")
    assert job.guild_id == guilds[1].id
    assert await world.bot.storage.jobs.get(5) is None
