"""/edit refusals: each bad input gets its own private message, creates no job, charges nothing."""

from __future__ import annotations

from typing import Any

import pytest

from storage import GuildSettings
from tests.harness.e2e import World
from tests.harness.images import animated_gif, bomb_png, png


async def assert_nothing_happened(world: World) -> None:
    assert world.fal.submissions() == []
    assert (
        await world.bot.storage.jobs.recent_for_user(
            world.emu.guild.id, world.emu.member("alice").id, 10
        )
        == []
    )
    usage = await world.bot.storage.quotas.usage(
        world.emu.guild.id, world.emu.member("alice").id, 86400
    )
    assert usage.images_used == 0 and usage.in_flight == 0
    assert world.emu.messages_in(world.emu.channel("general")) == []


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        ([b"%PDF-1.7\n%stuff"], "image (input1.png) is a PDF, not an image"),
        ([b"<svg xmlns='http://www.w3.org/2000/svg'/>"], "is an SVG (vector) file, not an image"),
        ([png()[:100]], "is damaged"),
        ([animated_gif()], "is an animated image; send a still image"),
        ([bomb_png()], "far more pixels than the limit of 40 MP"),
        ([png(), b"not an image at all"], "image2 (input2.png) is not an image I can read"),
        ([b"\x89PNG" + bytes(21 * 1024 * 1024)], "is 21.0 MB; the limit is 20.0 MB"),
    ],
)
async def test_bad_files(world: World, images: list[bytes], expected: str) -> None:
    ix = await world.edit(images=images)
    text = await world.reply_text(ix)
    assert ix.ephemeral
    assert expected in text
    await assert_nothing_happened(world)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"prompt": "   "}, "The prompt is empty"),
        ({"lora": "nope"}, "This server has no LoRA named `nope`"),
        ({"lora": "hidden"}, "The LoRA `hidden` is disabled on this server"),
        ({"lora": "spicy"}, "The LoRA `spicy` is marked NSFW; use it in an age-restricted channel"),
        ({"lora": "clay", "lora2": "CLAY"}, "You picked the LoRA `CLAY` twice"),
        ({"width": 1024}, "You gave a width without a height"),
        ({"size": "square", "width": 800, "height": 800}, "either a size preset or width"),
    ],
)
async def test_bad_options(world: World, options: dict[str, Any], expected: str) -> None:
    await world.add_lora("clay")
    await world.add_lora("hidden")
    await world.bot.storage.loras.set_enabled(world.emu.guild.id, "hidden", False, actor_id=1)
    await world.add_lora("spicy", nsfw=True)
    ix = await world.edit(**options)
    text = await world.reply_text(ix)
    assert ix.ephemeral
    assert expected in text
    await assert_nothing_happened(world)


async def test_server_caps_apply(world: World) -> None:
    await world.set_settings(max_images_per_job=2, max_steps=20)
    ix = await world.edit(count=3, steps=20)
    assert "count must be between 1 and 2 (this server's cap)" in await world.reply_text(ix)
    ix = await world.edit(steps=30)
    assert "steps must be between 4 and 20 (this server's cap)" in await world.reply_text(ix)
    await assert_nothing_happened(world)


async def test_denied_channel(world: World) -> None:
    await world.set_settings(channel_rules={world.emu.channel("general").id: "deny"})
    ix = await world.edit()
    assert "Edits are turned off in this channel." in await world.reply_text(ix)
    await assert_nothing_happened(world)


@pytest.mark.parametrize(
    ("channel", "missing"), [("read-only", "Send Messages"), ("no-attach", "Attach Files")]
)
async def test_channel_where_the_bot_cannot_post(world: World, channel: str, missing: str) -> None:
    ix = await world.edit(channel=channel)
    text = await world.reply_text(ix)
    assert f"I can't post results in this channel: I need {missing}" in text
    assert world.fal.submissions() == []


async def test_over_quota_says_when_the_next_image_frees(world: World) -> None:
    await world.set_settings(default_quota=1)
    first = await world.edit(prompt="first")
    await world.reply_text(first)
    await world.result()
    second = await world.edit(prompt="second")
    text = await world.reply_text(second)
    assert "You've used 1 of 1 images in the last 24 h; the next one frees <t:" in text
    assert len(world.fal.submissions()) == 1


async def test_a_quota_of_two_refuses_a_job_of_three(world: World) -> None:
    await world.set_settings(default_quota=2)
    ix = await world.edit(count=3)
    text = await world.reply_text(ix)
    assert "You've used 0 of 2 images in the last 24 h; this edit makes 3" in text
    await assert_nothing_happened(world)


async def test_too_many_jobs_in_flight(world: World) -> None:
    await world.set_settings(max_in_flight=1)
    world.fal.queue_delay = 30.0
    first = await world.edit(prompt="first")
    await world.reply_text(first)
    second = await world.edit(prompt="second")
    text = await world.reply_text(second)
    assert "You already have 1 edit running (the limit is 1)" in text
    assert len(world.fal.submissions()) == 1


async def test_spent_budget_stops_everyone(world: World) -> None:
    await world.set_settings(monthly_budget_usd=0.05)
    first = await world.edit(member="alice", size="square_hd")
    await world.reply_text(first)
    await world.result()
    bob = await world.edit(member="bob", size="square_hd")
    text = await world.reply_text(bob)
    assert "This edit (about $0.04) would take the server past its $0.05 monthly budget" in text
    assert "($0.04 spent so far)" in text
    await world.set_settings(monthly_budget_usd=0.04)
    carol = await world.edit(member="carol", size="square")
    text = await world.reply_text(carol)
    assert "This server has spent $0.04 of its $0.04 monthly budget for edits; it resets" in text
    assert len(world.fal.submissions()) == 1


async def test_default_settings_are_a_guild_settings(world: World) -> None:
    assert await world.bot.storage.settings.get(world.emu.guild.id) == GuildSettings()


async def test_fal_refusing_the_upload_is_not_the_members_fault(world: World) -> None:
    world.fal.locked_reason = "Exhausted balance. Top up your balance at fal.ai/dashboard/billing."
    ix = await world.edit()
    text = await world.reply_text(ix)
    assert "The bot's fal.ai account can't run jobs right now; an admin has to check it." in text
    assert "You were not charged" in text
    await assert_nothing_happened(world)
