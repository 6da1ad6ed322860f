"""Discord misbehaving around results: 429 with retry_after and 500 on the result post, the
interaction token dying before delivery, Attach Files taken away, the gateway dropping and
resuming mid-jobs. Results arrive once, in the channel; failures are told and refunded."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from emulators.discord_emulator.permissions import Permission
from jobs.publisher import Delivery, ResultImage
from jobs.request import EditRequest
from storage.models import GuildSettings
from tests.harness.e2e import World
from tests.harness.images import png
from tests.soak.soak_faults import RESULT_POST, DiscordFaultConfig, run_discord_faults


async def started(world: World, member: str = "alice", **options: Any) -> Any:
    ix = await world.edit(member, **options)
    assert "is on its way" in await world.reply_text(ix)
    return ix


def channel_posts(world: World) -> list[int]:
    """Statuses of the bot's message posts (a faulted one never had its body read)."""
    return [
        r.status
        for r in world.emu.requests
        if r.method == "POST" and re.fullmatch(RESULT_POST.rstrip("$"), r.path)
    ]


async def test_result_post_rate_limited_then_server_error_is_delivered_once(world: World) -> None:
    world.fal.queue_delay = 0.3
    await started(world)
    await world.job_in(1, "submitted")
    # discord.py waits 1 + 2 × tries seconds after a 500: the 500 first keeps this fast.
    broken = world.emu.fail_next("POST", RESULT_POST, status=500, count=1)
    limited = world.emu.fail_next("POST", RESULT_POST, status=429, retry_after=0.2, count=2)
    result = await world.result()
    job = await world.job_in(1, "delivered")
    assert (limited.hits, broken.hits) == (2, 1)
    assert channel_posts(world) == [200, 500, 429, 429, 200]  # status message, then result
    assert job.result_message_id == result.id
    assert len([m for m in world.emu.messages_in(world.emu.channel("general")) if m.files]) == 1
    assert await world.usage() == (1, 0)


async def test_result_post_failing_for_good_is_refunded_and_said(world: World) -> None:
    world.fal.queue_delay = 0.3
    await started(world)
    await world.job_in(1, "submitted")
    world.emu.fail_next("POST", RESULT_POST, status=429, retry_after=0.05, count=5)
    failed = await world.job_in(1, "failed")
    assert failed.error == "Discord didn't accept the result message. You were not charged."
    status = world.emu.message(failed.status_message_id)
    await world.emu.wait_for_edit(status, lambda m: "❌ Failed" in m.content)
    assert "You were not charged" in status.content
    assert await world.usage() == (0, 0)


async def test_token_expired_before_delivery_result_still_posted_in_channel(world: World) -> None:
    world.fal.queue_delay = 1.0
    ix = await started(world)
    await world.job_in(1, "submitted")
    world.emu.clock.advance(16 * 60)  # the interaction token (15 min) is dead
    result = await world.result()
    assert result.channel_id == world.emu.channel("general").id
    assert not result.ephemeral and result.files
    assert "<@" in result.content  # it pings the requester in the channel
    await world.job_in(1, "delivered")
    assert await world.usage() == (1, 0)
    tokens = [r for r in world.emu.requests if r.path.startswith("/webhooks/")]
    assert all(r.status < 400 for r in tokens)  # nothing needed the dead token
    assert ix.callbacks  # the member's own answer came while the token lived


async def test_attach_files_lost_after_token_expired_member_told_by_dm(world: World) -> None:
    world.fal.queue_delay = 1.0
    await started(world)
    await world.job_in(1, "submitted")
    world.emu.clock.advance(16 * 60)
    channel = world.emu.channel("general")
    world.emu.set_overwrite(
        channel, world.emu.world.bot_member(world.emu.guild), deny=Permission.ATTACH_FILES
    )
    failed = await world.job_in(1, "failed")
    assert failed.error is not None and "I'm not allowed to post results" in failed.error
    dm = await world.emu.wait_for_message(world.emu.dm_channel(world.emu.member("alice")))
    assert "About your edit #1" in dm.content and "not charged" in dm.content
    status = world.emu.message(failed.status_message_id)
    await world.emu.wait_for_edit(status, lambda m: "❌ Failed" in m.content)
    assert "Attach Files" in status.content
    assert await world.usage() == (0, 0)
    assert not [m for m in world.emu.messages_in(channel) if m.files]


async def test_gateway_drop_and_resume_mid_jobs(world: World) -> None:
    guild = world.emu.guild.id
    await world.bot.storage.settings.save(guild, GuildSettings(max_in_flight=10))
    world.fal.run_time = 0.5
    for n in range(3):
        await started(world, prompt=f"before the drop {n}")
    identifies = world.emu.hub.identifies
    assert await world.emu.drop_gateway() == 1
    late = await world.edit(prompt="sent while the gateway was down")
    await world.emu.wait_for("resume", timeout=15)
    assert "is on its way" in await world.reply_text(late)
    for job_id in range(1, 5):
        await world.job_in(job_id, "delivered")
    results = [m for m in world.emu.messages_in(world.emu.channel("general")) if m.files]
    assert sorted(m.embeds[0]["title"] for m in results) == [f"Edit #{n}" for n in range(1, 5)]
    assert world.emu.hub.identifies == identifies  # resumed, not a new session
    assert await world.usage() == (4, 0)


async def test_discord_fault_mix_delivers_once_and_refunds_with_a_message(
    tmp_path: Path,
) -> None:
    outcome = await run_discord_faults(tmp_path, DiscordFaultConfig(seed=30, jobs=24))
    summary = outcome.summary
    assert summary.problems == [], "\n".join(summary.problems)
    assert (summary.lost, summary.duplicates, summary.double_charges) == (0, 0, 0)
    assert summary.refunded >= 2  # the #lab jobs, after Attach Files was taken away
    assert summary.delivered + summary.refunded == summary.jobs
    assert outcome.resumes >= 1 and outcome.identifies == 0
    assert outcome.refused_posts[429] >= 3 and outcome.refused_posts[500] >= 1


async def test_result_posts_without_a_status_message_to_reply_to(world: World) -> None:
    # After a crash that lost the status message's id and a restart whose status post Discord
    # refused, delivery has nothing to reply to: the result must go out all the same.
    await started(world)
    job = await world.job_in(1, "delivered")
    await world.result()
    orphan = job.model_copy(update={"id": 99, "status_message_id": None})
    delivery = Delivery(
        request=EditRequest.model_validate(job.request),
        images=[ResultImage(png(), "edit-99-1.png", "image/png", 640, 480)],
        seed=1,
        seconds=1.0,
        cost_usd=job.cost_usd,
    )
    message_id = await world.bot.publisher.deliver(orphan, delivery)
    posted = world.emu.message(message_id)
    assert posted.reference is None and posted.files[0][0] == "edit-99-1.png"
