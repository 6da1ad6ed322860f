"""The fair queue as members see it: with FAL_MAX_CONCURRENT set, at most that many edits are
at fal; the rest wait in the bot's queue, members taking turns, so one member's burst does not
hold back another's single edit. A waiting edit shows its place, can be cancelled without ever
reaching fal, and keeps its place across a restart."""

from __future__ import annotations

import httpx

from emulators.discord_emulator.messages import Message
from storage import JobState, Storage
from tests.harness.e2e import World


async def capped(world: World, cap: int) -> None:
    """Restart the bot with FAL_MAX_CONCURRENT=cap, members free to start many edits."""
    world.settings = world.settings.model_copy(update={"fal_max_concurrent": cap})
    await world.restart()
    await world.set_settings(default_quota=1000, max_in_flight=100)


async def start(world: World, member: str, prompt: str) -> int:
    text = await world.reply_text(await world.edit(member, prompt=prompt))
    assert "is on its way" in text, text
    return int(text.split("#", 1)[1].split()[0])


def submitted_prompts(world: World) -> list[str]:
    """The prompts fal received, in the order it received them."""
    return [str(body.get("prompt")) for body in world.fal.submissions()]


async def status_shows(world: World, job_id: int, text: str) -> Message:
    """The job's status message once it reads `text` (each message is returned once)."""
    return await world.emu.wait_for_message(
        world.emu.channel("general"),
        lambda m: m.content.startswith(f"**Edit #{job_id}**") and text in m.content,
    )


async def test_a_burst_from_one_member_does_not_hold_back_another_members_edit(
    world: World,
) -> None:
    await capped(world, 2)
    world.fal.paused = True  # fal holds what it gets: the two slots stay busy
    world.fal.concurrency = 1  # then finishes one at a time: each frees one slot
    alice = [await start(world, "alice", f"alice {n}") for n in range(1, 7)]
    await world.fal.wait_for_jobs(2)
    bob = await start(world, "bob", "bob 1")
    # Bob's only edit goes before Alice's third: he is next, of the five waiting
    shown = (await status_shows(world, bob, "position 1 of 5")).content
    assert "Waiting for a free slot" in shown and "ETA" in shown
    await status_shows(world, alice[-1], "position 5 of 5")
    assert len(world.fal.submissions()) == 2, "never more than the cap at fal"
    world.fal.paused = False
    for job_id in [*alice, bob]:
        await world.job_in(job_id, "delivered", within=30)
    assert submitted_prompts(world) == [
        "alice 1",
        "alice 2",
        "bob 1",
        "alice 3",
        "alice 4",
        "alice 5",
        "alice 6",
    ]
    assert await world.usage("alice") == (6, 0) and await world.usage("bob") == (1, 0)


async def test_cancel_while_waiting_refunds_and_nothing_reaches_fal(world: World) -> None:
    await capped(world, 1)
    world.fal.paused = True
    first = await start(world, "alice", "first")
    await world.fal.wait_for_jobs(1)
    waiting = await start(world, "alice", "waiting")
    status = await status_shows(world, waiting, "position 1 of 1")
    press = await world.emu.click(world.emu.member("alice"), status, f"job:{waiting}:cancel")
    assert f"Edit #{waiting} is cancelled; you were not charged." in await world.reply_text(press)
    assert await world.usage("alice") == (1, 1), "only the first edit is still reserved"
    world.fal.paused = False
    await world.job_in(first, "delivered")
    assert submitted_prompts(world) == ["first"]
    assert (await world.job_in(waiting, "cancelled")).fal_request_id is None
    assert await world.usage("alice") == (1, 0)
    assert "Cancelled" in world.emu.message(status.id).content


async def test_the_queue_keeps_its_order_across_a_restart(world: World) -> None:
    await capped(world, 1)
    world.fal.paused = True
    first = await start(world, "alice", "alice 1")
    await world.fal.wait_for_jobs(1)
    second = await start(world, "alice", "alice 2")
    bob = await start(world, "bob", "bob 1")
    await status_shows(world, bob, "position 1 of 2")
    await world.restart()
    await status_shows(world, second, "position 2 of 2")
    world.fal.paused = False
    for job_id in (first, second, bob):
        await world.job_in(job_id, "delivered", within=30)
    assert submitted_prompts(world) == ["alice 1", "bob 1", "alice 2"], "each sent once"


async def test_waiting_counts_towards_the_deadline_from_admission(world: World) -> None:
    await capped(world, 1)
    world.fal.paused = True
    first = await start(world, "alice", "first")
    await world.fal.wait_for_jobs(1)
    waiting = await start(world, "bob", "waiting")
    status = await status_shows(world, waiting, "position 1 of 1")
    # Admitted five minutes ago with a two-minute timeout: its time ran out while it waited.
    await world.execute(
        "UPDATE jobs SET created_at = created_at - 300000000,"
        " deadline_at = created_at - 180000000 WHERE id = ?",
        waiting,
    )
    await world.restart()
    await world.job_in(waiting, "expired")
    ended = await world.emu.wait_for_edit(status, lambda m: "Timed out" in m.content)
    assert "No slot at fal freed up within 2 minutes" in ended.content
    assert "You were not charged." in ended.content
    assert await world.usage("bob") == (0, 0)
    world.fal.paused = False
    await world.job_in(first, "delivered")
    assert submitted_prompts(world) == ["first"]


async def test_a_job_another_process_releases_is_sent_by_its_holder(world: World) -> None:
    """Another process on the same database cancels the job at fal (a member pressed Cancel
    where it runs) and releases the next; the waiting job's holder learns of it by looking,
    and submits it."""
    await capped(world, 1)
    world.fal.paused = True
    first = await start(world, "alice", "first")
    at_fal = await world.job_in(first, "submitted")
    second = await start(world, "bob", "second")
    await status_shows(world, second, "position 1 of 1")
    assert at_fal.fal_cancel_url is not None
    other = await Storage.open(world.settings.database_location())
    try:
        await other.jobs.transition(first, JobState.CANCELLED, error="cancelled elsewhere")
        async with httpx.AsyncClient() as http:
            cancel = await http.put(
                at_fal.fal_cancel_url, headers={"Authorization": f"Key {world.fal.key}"}
            )
        assert cancel.status_code in (200, 202), cancel.text
        await other.queue.release(1)
    finally:
        await other.close()
    world.fal.paused = False
    await world.job_in(second, "delivered")
    assert submitted_prompts(world) == ["first", "second"]
    assert await world.usage("alice") == (0, 0) and await world.usage("bob") == (1, 0)


async def test_with_no_cap_every_edit_goes_to_fal_at_once(world: World) -> None:
    await capped(world, 0)
    world.fal.paused = True
    jobs = [await start(world, "alice", f"edit {n}") for n in range(12)]
    await world.fal.wait_for_jobs(12)
    world.fal.paused = False
    for job_id in jobs:
        await world.job_in(job_id, "delivered", within=30)
    assert sorted(submitted_prompts(world)) == sorted(f"edit {n}" for n in range(12))
