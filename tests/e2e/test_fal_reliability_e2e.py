"""What members see when fal's answers are ambiguous: a request fal holds is followed and
charged once, a lost submit is never called "not charged, try again", a Cancel pressed while fal
has not yet answered still reaches fal, and nothing is uploaded for an edit that cannot fit."""

from __future__ import annotations

from typing import Any

from tests.harness.e2e import World, is_status


def ambiguous_submits(world: World) -> float:
    total = 0.0
    for metric in world.bot.metrics.registry.collect():
        if metric.name == "flux_fal_ambiguous_submits":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total


def uploads(world: World) -> list[Any]:
    return [r for r in world.fal.requests if r.host in ("rest", "cdn")]


async def test_a_submit_answered_500_with_a_request_id_is_delivered_once_and_charged_once(
    world: World,
) -> None:
    world.fal.script_faults("submit", "server_error")
    ix = await world.edit(prompt="held by fal")
    assert "is on its way" in await world.reply_text(ix)

    result = await world.result()

    assert result.files
    assert len(world.fal.jobs) == 1 and world.fal.count("submit") == 1
    job = await world.job_in(1, "delivered")
    assert job.fal_request_id == next(iter(world.fal.jobs))
    assert await world.usage() == (1, 0)
    assert ambiguous_submits(world) == 1


async def test_a_submit_lost_after_fal_queued_it_is_not_called_free_to_retry(
    world: World,
) -> None:
    world.fal.queue_delay = 30.0  # what fal took stays queued: the test reads, fal runs nothing
    world.fal.script_faults("submit", "reset")
    ix = await world.edit(prompt="lost answer")
    assert "is on its way" in await world.reply_text(ix)

    job = await world.job_in(1, "failed")

    assert job.error is not None
    assert "may be billed" in job.error and "your quota was not used" in job.error
    assert "try again" not in job.error.lower()
    status = await world.emu.wait_for_message(
        world.emu.channel("general"), lambda m: is_status(m) and "Failed" in m.content
    )
    assert "may be billed" in status.content
    assert world.fal.count("submit") == 1 and len(world.fal.jobs) == 1
    assert await world.usage() == (0, 0)
    assert ambiguous_submits(world) == 1


async def test_cancel_pressed_before_fal_answered_the_submit_still_cancels_at_fal(
    world: World,
) -> None:
    world.fal.queue_delay = 30.0
    world.fal.slow_response_delay = 3.0
    world.fal.script_faults("submit", "slow")  # fal queues it at once, answers 3 s later
    ix = await world.edit(prompt="cancel me early")
    assert "is on its way" in await world.reply_text(ix)
    status = await world.emu.wait_for_message(world.emu.channel("general"), is_status)
    [fal_job] = await world.fal.wait_for_jobs(1)
    assert (await world.bot.storage.jobs.get(1)).state == "admitted"  # type: ignore[union-attr]

    click = await world.emu.click(world.emu.member("alice"), status, "job:1:cancel")

    assert "Edit #1 is cancelled; you were not charged." in await world.reply_text(click)
    job = await world.job_in(1, "cancelled")
    assert job.fal_request_id == fal_job.request_id  # the request fal holds is on record
    assert fal_job.cancel_requested and not fal_job.ran
    assert await world.usage() == (0, 0)


async def test_an_edit_larger_than_the_quota_left_is_refused_before_any_upload(
    world: World,
) -> None:
    await world.set_settings(default_quota=1)

    text = await world.reply_text(await world.edit(count=2))

    assert "this edit makes 2 and you have 1 left" in text
    assert uploads(world) == [] and world.fal.count("submit") == 0
    assert await world.usage() == (0, 0)


async def test_an_edit_dearer_than_the_budget_left_is_refused_before_any_upload(
    world: World,
) -> None:
    await world.set_settings(monthly_budget_usd=0.01)  # one edit costs about $0.03

    text = await world.reply_text(await world.edit())

    assert "would take the server past its $0.01 monthly budget" in text
    assert uploads(world) == [] and world.fal.count("submit") == 0
    assert await world.usage() == (0, 0)
