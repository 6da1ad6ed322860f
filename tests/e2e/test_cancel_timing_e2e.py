"""Cancel pressed at every moment of an edit's first status updates: each press is answered,
and the channel keeps working for everyone (the next edit is delivered)."""

from __future__ import annotations

import asyncio

from tests.harness.e2e import World

# Loop turns between the status message appearing and the press. The bot edits the status
# message (to "queued") a few turns after it appears, so these presses land before, during
# and after that edit, including the moment its answer has arrived and discord.py is finishing
# the request, which is where a cancelled edit used to stall the whole channel for 30 s.
TURNS = range(4, 24)
PASSES = 4


async def test_cancel_at_any_moment_is_answered_and_the_channel_keeps_working(
    world: World,
) -> None:
    await world.set_settings(default_quota=1000, max_in_flight=100)
    world.fal.queue_delay = 60.0  # fal holds every edit in its queue
    emu = world.emu
    general, alice = emu.channel("general"), emu.member("alice")
    for turns in [t for _ in range(PASSES) for t in TURNS]:
        started = await world.reply_text(await world.edit(prompt=f"held {turns}"))
        job_id = int(started.split("#", 1)[1].split()[0])
        status = await emu.wait_for_message(
            general,
            lambda m, job=job_id: (
                m.content.startswith(f"**Edit #{job}**") and f"job:{job}:cancel" in m.custom_ids()
            ),
        )
        for _ in range(turns):
            await asyncio.sleep(0)  # one event-loop turn, not a wait for time to pass
        press = await emu.click(alice, status, f"job:{job_id}:cancel")
        answer = await world.reply_text(press)  # the member's answer, within 10 s
        assert f"Edit #{job_id}" in answer and "cancelled" in answer, answer
    world.fal.queue_delay = 0.0
    after = await world.reply_text(await world.edit(prompt="after"))
    assert "is on its way" in after, after
    await world.job_in(int(after.split("#", 1)[1].split()[0]), "delivered")
    result = await world.result()
    assert result.embeds[0]["description"].startswith("after")
    assert await world.usage() == (1, 0), "only the delivered edit is charged"
