"""Sweeps, Compare and presets obey every rule an edit obeys: a sweep is admitted whole or not at
all within the member's quota, jobs in flight and the server's budget (also when sweeps arrive
at once); channel rules, the NSFW policy, caps and the rerun policy apply; other servers'
sweeps, results and presets do not exist."""

from __future__ import annotations

import asyncio

import pytest

from client.pricing import estimate_cost_usd
from emulators.discord_emulator.world import Guild
from jobs.errors import NotFound
from jobs.policy import Requester
from tests.harness.e2e import World
from tests.harness.images import png
from tests.harness.studio import sheet, sweep

CELL_COST = estimate_cost_usd(1, 688, 512, 1)


async def refused(world: World, member: str = "alice", **options: object) -> str:
    ix = await sweep(world, member, **options)
    text = await world.reply_text(ix)
    assert ix.ephemeral
    return text


async def nothing_happened(world: World, member: str = "alice") -> None:
    await world.bot.jobs.wait_idle()
    assert world.fal.submissions() == []
    assert await world.usage(member) == (0, 0)
    assert await world.bot.storage.sweeps.unfinished() == []
    assert await world.bot.storage.jobs.get(1) is None


@pytest.fixture
async def clay(world: World) -> World:
    await world.add_lora("clay", path="owner/clay")
    return world


async def test_a_sweep_over_the_quota_is_refused_whole(clay: World) -> None:
    world = clay
    await world.set_settings(default_quota=5)
    text = await refused(world, lora="clay")
    assert text.startswith(
        "You've used 0 of 5 images in the last 24 h; this sweep makes 6 and you have 5 left"
    )
    await nothing_happened(world)
    assert "Sweep #1 is on its way: 4 images" in await refused(world, lora="clay", cells=4)


async def test_a_sweep_over_the_budget_is_refused_whole(clay: World) -> None:
    world = clay
    await world.set_settings(monthly_budget_usd=round(5 * CELL_COST, 6))
    text = await refused(world, lora="clay")
    assert text.startswith(f"This sweep (about ${6 * CELL_COST:.2f}) would take the server past")
    await nothing_happened(world)
    assert "is on its way" in await refused(world, lora="clay", cells=5)
    await sheet(world)
    await world.bot.jobs.wait_idle()
    spend = await world.bot.storage.quotas.guild_spend(world.emu.guild.id)
    assert spend == pytest.approx(5 * CELL_COST)


async def test_a_sweep_needs_a_free_slot_in_flight(clay: World) -> None:
    world = clay
    await world.set_settings(max_in_flight=1)
    world.fal.queue_delay = 30.0
    ix = await world.edit()
    assert "is on its way" in await world.reply_text(ix)
    await world.job_in(1, "submitted")
    text = await refused(world, lora="clay")
    assert text.startswith("You already have 1 edit running (the limit is 1)")
    assert len(world.fal.submissions()) == 1


async def test_sweeps_sent_at_once_never_exceed_the_quota(clay: World) -> None:
    world = clay
    await world.set_settings(default_quota=10, max_in_flight=10)
    sent = [await sweep(world, lora="clay", cells=4) for _ in range(4)]
    answers = await asyncio.gather(*(world.reply_text(ix) for ix in sent))
    assert sum("is on its way" in text for text in answers) == 2
    assert sum("you have 2 left" in text for text in answers) == 2
    await world.bot.jobs.wait_idle()
    assert len(world.fal.submissions()) == 8
    assert (await world.usage())[0] == 8


async def test_channel_rules_nsfw_loras_and_caps_apply(clay: World) -> None:
    world = clay
    await world.add_lora("spicy", path="owner/spicy", nsfw=True)
    general = world.emu.channel("general").id
    await world.set_settings(channel_rules={general: "deny"})
    assert await refused(world, lora="clay") == "Edits are turned off in this channel."
    await world.set_settings(channel_rules={})
    text = await refused(world, lora="spicy")
    assert text == "The LoRA `spicy` is marked NSFW; use it in an age-restricted channel."
    await nothing_happened(world)
    await world.bot.storage.loras.set_enabled(world.emu.guild.id, "clay", False, actor_id=1)
    assert await refused(world, lora="clay") == "The LoRA `clay` is disabled on this server."
    await nothing_happened(world)


async def test_the_nsfw_policy_blocks_flagged_cells_and_refunds_them(clay: World) -> None:
    world = clay
    await refused(world, lora="clay", cells=4, prompt="[nsfw] marker")
    status = await world.emu.wait_for_message(
        world.emu.channel("general"), lambda m: m.content.startswith("**Sweep #1**")
    )
    await world.emu.wait_for_edit(status, lambda m: "❌ Failed" in m.content)
    await world.bot.jobs.wait_idle()
    assert await world.usage() == (0, 0)
    assert not any(m.files for m in world.emu.messages_in(world.emu.channel("general")))


async def test_the_spoiler_policy_spoils_the_sheet(clay: World) -> None:
    world = clay
    await world.set_settings(nsfw_policy="spoiler")
    await refused(world, lora="clay", cells=4, prompt="[nsfw] marker")
    message = await sheet(world)
    assert message.files[0][0].startswith("SPOILER_")
    await world.bot.jobs.wait_idle()
    assert await world.usage() == (4, 0)


async def test_the_sweep_button_follows_the_rerun_policy_quota_and_caps(clay: World) -> None:
    world = clay
    emu = world.emu
    ix = await world.edit(lora="clay", steps=30)
    assert "is on its way" in await world.reply_text(ix)
    result = await world.result()
    await world.set_settings(rerun_policy="requester")
    ix = await emu.click(emu.member("bob"), result, "job:1:sweep")
    assert await world.reply_text(ix) == (
        "On this server only the member who made an edit can rerun it."
    )
    assert ix.modal is None
    await world.set_settings(rerun_policy="anyone", user_quotas={emu.member("bob").id: 0})
    ix = await emu.click(emu.member("bob"), result, "job:1:sweep")
    assert (await world.reply_text(ix)).startswith("Your quota on this server is 0 images")
    await world.set_settings(user_quotas={}, max_steps=20)
    ix = await emu.click(emu.member("bob"), result, "job:1:sweep")
    await ix.response()
    assert ix.modal is not None
    field = ix.modal["components"][0]
    custom_id = (field.get("components") or [field.get("component")])[0]["custom_id"]
    answer = await emu.submit_modal(emu.member("bob"), ix, {custom_id: "clay"})
    assert await world.reply_text(answer) == (
        "steps must be between 4 and 20 (this server's cap); you gave 30."
    )
    assert len(world.fal.submissions()) == 1


async def test_other_servers_sweeps_results_and_presets_do_not_exist(clay: World) -> None:
    world = clay
    emu = world.emu
    b: Guild = emu.add_guild("Second Server", members=("bob", "carol"))
    await world.add_lora("secret", path="owner/secret", guild_id=b.id)
    ix = await emu.slash(
        emu.member("bob", b),
        emu.channel("general", b),
        "sweep",
        {"prompt": "b's sweep", "lora": "secret", "cells": 4},
        attachments={"image": emu.attachment(png(), "b.png")},
    )
    assert "Sweep #1 is on its way" in await world.reply_text(ix)
    await world.emu.wait_for_message(
        emu.channel("general", b), lambda m: bool(m.files) and "Sweep #1" in str(m.embeds)
    )
    await world.bot.jobs.wait_idle()
    ix = await emu.slash(
        emu.member("carol", b),
        emu.channel("general", b),
        "admin preset add",
        {"name": "bonly", "lora": "secret"},
    )
    assert "Added the preset `bonly`" in await world.reply_text(ix)

    someone_in_a = Requester(
        guild_id=emu.guild.id,
        channel_id=emu.channel("general").id,
        user_id=emu.member("carol").id,
        can_manage_guild=True,
        can_manage_messages=True,
    )
    jobs = world.bot.jobs
    for attempt in (
        jobs.sweeps.cell_file(someone_in_a, 1, 0),
        jobs.sweeps.next_input(someone_in_a, 1, 0, "mine now"),
        jobs.compare.compare(someone_in_a, 1, png()),
    ):
        with pytest.raises(NotFound):
            await attempt
    assert await jobs.presets.listing(someone_in_a) == []
    text = await world.reply_text(await world.edit(prompt="x", preset="bonly"))
    assert text == "This server has no preset named `bonly`. See `/presets`."
    assert len(world.fal.submissions()) == 4  # B's sweep, nothing from A
