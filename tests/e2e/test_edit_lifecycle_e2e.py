"""/edit after admission: cancel, fal failures, NSFW policy, upload limits, restarts."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from emulators.discord_emulator.permissions import Permission
from tests.harness.e2e import World, is_status
from tests.harness.images import noisy_png


async def status_message(world: World, job_id: int = 1) -> Any:
    return await world.emu.wait_for_message(
        world.emu.channel("general"), lambda m: m.content.startswith(f"**Edit #{job_id}**")
    )


async def started(world: World, prompt: str = "make it clay", **options: Any) -> Any:
    ix = await world.edit(prompt=prompt, **options)
    assert "is on its way" in await world.reply_text(ix)
    return ix


async def test_cancel_while_queued_refunds_and_never_runs(world: World) -> None:
    world.fal.queue_delay = 30.0
    await started(world)
    status = await status_message(world)
    job = await world.job_in(1, "submitted")
    ix = await world.emu.click(world.emu.member("alice"), status, "job:1:cancel")
    assert "Edit #1 is cancelled; you were not charged." in await world.reply_text(ix)
    assert ix.ephemeral
    fal_job = world.fal.jobs[job.fal_request_id]
    assert fal_job.cancel_requested and not fal_job.ran
    assert (await world.job_in(1, "cancelled")).state == "cancelled"
    assert await world.usage() == (0, 0)
    edited = world.emu.message(status.id)
    assert "Cancelled" in edited.content
    assert edited.components == []  # no Cancel button on a finished job


async def test_cancel_while_running(world: World) -> None:
    world.fal.run_time = 30.0
    await started(world)
    status = await status_message(world)
    job = await world.job_in(1, "submitted")
    await world.fal.wait_for_status(job.fal_request_id, "IN_PROGRESS")
    ix = await world.emu.click(world.emu.member("alice"), status, "job:1:cancel")
    assert "cancelled" in await world.reply_text(ix)
    assert world.fal.jobs[job.fal_request_id].cancel_requested
    assert await world.usage() == (0, 0)


async def test_only_the_requester_or_a_moderator_can_cancel(world: World) -> None:
    world.fal.queue_delay = 30.0
    await started(world)
    status = await status_message(world)
    bob = await world.emu.click(world.emu.member("bob"), status, "job:1:cancel")
    assert (
        "Only the member who started this edit (or a moderator) can cancel it."
        in await world.reply_text(bob)
    )
    erin = await world.emu.click(world.emu.member("erin"), status, "job:1:cancel")  # Mod
    assert "is cancelled" in await world.reply_text(erin)


async def test_fal_validation_failure_refunds_and_names_the_field(world: World) -> None:
    world.fal.queue_delay = 0.3
    await started(world)
    job = await world.job_in(1, "submitted")
    world.fal.files.clear()  # the re-hosted input is gone when the runner fetches it
    failed = await world.job_in(1, "failed")
    assert failed.error is not None and "fal rejected the request: image_urls" in failed.error
    status = await world.emu.wait_for_edit(
        await status_message(world), lambda m: "Failed" in m.content
    )
    assert "You were not charged" in status.content
    assert await world.usage() == (0, 0)
    assert job.fal_request_id is not None


async def test_fal_infrastructure_failure_refunds(world: World) -> None:
    world.fal.runner_failure_rate = 1.0
    await world.add_lora("clay")
    await started(world, lora="clay")
    failed = await world.job_in(1, "failed")
    assert failed.error is not None
    assert "infrastructure problem (runner_disconnected)" in failed.error
    assert "not charged" in failed.error
    assert await world.usage() == (0, 0)
    lora = await world.bot.storage.loras.get(world.emu.guild.id, "clay")
    assert lora is not None and lora.uses == 0  # a failed job is not a use


async def test_nsfw_result_blocked_by_default_and_refunded(world: World) -> None:
    await started(world, prompt="something [nsfw]")
    failed = await world.job_in(1, "failed")
    assert failed.error is not None and "safety checker flagged the result" in failed.error
    assert all(not m.files for m in world.emu.messages_in(world.emu.channel("general")))
    assert await world.usage() == (0, 0)


async def test_nsfw_result_spoilered_when_the_server_says_so(world: World) -> None:
    await world.set_settings(nsfw_policy="spoiler")
    await started(world, prompt="something [nsfw]")
    result = await world.result()
    assert result.files[0][0].startswith("SPOILER_")
    await world.job_in(1, "delivered")
    assert await world.usage() == (1, 0)


async def test_safety_checker_off_only_in_allowed_nsfw_channel(world: World) -> None:
    await world.set_settings(nsfw_policy="allow_in_nsfw_channels")
    await started(world, channel="nsfw", prompt="art [nsfw]")
    await world.result(channel="nsfw")
    await started(world, channel="general", prompt="art")
    await world.result()
    first, second = world.fal.submissions()
    assert first["enable_safety_checker"] is False
    assert second["enable_safety_checker"] is True


async def test_output_over_the_upload_limit_is_reencoded_to_fit(world: World) -> None:
    world.emu.guild.upload_limit = 400_000
    await started(world, images=[noisy_png(1024, 1024)], size="square_hd")
    result = await world.result()
    [(name, data, content_type)] = result.files
    assert len(data) <= 400_000
    assert content_type in ("image/webp", "image/jpeg")
    with Image.open(io.BytesIO(data)) as image:
        assert image.width >= 512
    embed = result.embeds[0]
    assert "re-encoded to fit the upload limit" in embed["footer"]["text"]
    assert name.startswith("edit-1-1.")


async def test_losing_attach_files_mid_job_tells_the_member_and_refunds(world: World) -> None:
    world.fal.queue_delay = 0.5
    ix = await started(world)
    await world.job_in(1, "submitted")
    channel = world.emu.channel("general")
    bot_member = world.emu.world.bot_member(world.emu.guild)
    world.emu.set_overwrite(channel, bot_member, deny=Permission.ATTACH_FILES)
    failed = await world.job_in(1, "failed")
    assert failed.error is not None and "I'm not allowed to post results" in failed.error
    note = await ix.wait_followup(lambda m: "not charged" in m.content)
    assert note.ephemeral
    assert await world.usage() == (0, 0)


async def test_restart_while_queued_delivers_once(world: World) -> None:
    world.fal.queue_delay = 1.0
    await started(world)
    await world.job_in(1, "submitted")
    await world.restart()
    result = await world.result()
    await world.job_in(1, "delivered")
    results = [m for m in world.emu.messages_in(world.emu.channel("general")) if m.files]
    assert [m.id for m in results] == [result.id]
    assert len(world.fal.submissions()) == 1
    assert await world.usage() == (1, 0)


async def test_restart_while_running_delivers_once(world: World) -> None:
    world.fal.run_time = 1.0
    await started(world)
    job = await world.job_in(1, "submitted")
    await world.fal.wait_for_status(job.fal_request_id, "IN_PROGRESS")
    await world.restart()
    await world.result()
    await world.job_in(1, "delivered")
    assert len([m for m in world.emu.messages_in(world.emu.channel("general")) if m.files]) == 1
    assert len(world.fal.submissions()) == 1
    assert await world.usage() == (1, 0)


async def test_restart_after_completion_delivers_once(world: World) -> None:
    # The result post is rate limited for long enough to restart the bot while the job is
    # completed but not yet delivered.
    world.fal.run_time = 0.5
    await started(world)
    await status_message(world)
    fault = world.emu.fail_next("POST", r"/channels/\d+/messages$", status=429, retry_after=30.0)
    await world.job_in(1, "completed")
    await world.emu.wait_for("request", lambda r: fault.hits >= 1)
    await world.restart()
    await world.result()
    await world.job_in(1, "delivered")
    assert len([m for m in world.emu.messages_in(world.emu.channel("general")) if m.files]) == 1
    assert len(world.fal.submissions()) == 1
    assert await world.usage() == (1, 0)


async def test_status_message_tracks_the_job(world: World) -> None:
    await started(world)
    status = await status_message(world)
    await world.result()
    final = await world.emu.wait_for_edit(status, lambda m: "✅ Done" in m.content)
    assert is_status(final)
    phases = [edit.payload.get("content", "") for edit in final.edits]
    assert any("queue" in p or "Editing" in p or "Posting" in p for p in phases)


async def test_a_final_state_never_shown_is_shown_after_a_restart(world: World) -> None:
    # The state a crash leaves between storing "delivered" and showing it: no ✅, no 🔁.
    await started(world)
    status = await status_message(world)
    result = await world.result()
    await world.emu.wait_for_edit(status, lambda m: "✅ Done" in m.content)
    await world.emu.stop_bot()
    await world.execute("UPDATE jobs SET announced_at = NULL WHERE id = 1")
    assert world.bot.user is not None
    result.reactions["🔁"].discard(world.bot.user.id)
    mark = world.emu.mark()
    world.bot = await world.emu.start_bot(world.make_bot())
    await world.emu.wait_for("reaction_add", since=mark)
    assert world.bot.user.id in result.reactions["🔁"]
    shown = await world.emu.wait_for_edit(status, lambda m: "✅ Done" in m.content)
    assert shown.components == []
    job = await world.bot.storage.jobs.get(1)
    assert job is not None and job.announced_at is not None
    assert len([m for m in world.emu.messages_in(world.emu.channel("general")) if m.files]) == 1


async def test_a_failure_never_shown_is_shown_after_a_restart(world: World) -> None:
    world.fal.runner_failure_rate = 1.0
    await started(world)
    status = await status_message(world)
    await world.emu.wait_for_edit(status, lambda m: "Failed" in m.content)
    await world.emu.stop_bot()
    await world.execute("UPDATE jobs SET announced_at = NULL WHERE id = 1")
    world.bot = await world.emu.start_bot(world.make_bot())
    shown = await world.emu.wait_for_edit(status, lambda m: "Failed" in m.content)
    assert "infrastructure problem (runner_disconnected)" in shown.content
    assert (await world.bot.storage.jobs.get(1)).announced_at is not None  # type: ignore[union-attr]
