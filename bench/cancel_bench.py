"""Cancel pressed at every moment of an edit's first status update: how long the member waits.

    .venv/bin/python -m bench.cancel_bench [--passes 6]

Our bot in-process against both emulators, as the end-to-end tests run it. fal holds every
edit; each press lands a given number of event-loop turns after the edit's status message
appears, so the presses sweep across the bot's "queued" edit of that message. Two runs side by
side: the Discord emulator as it is (it sends Discord's rate-limit headers) and as it was (no
headers). Without the headers discord.py could be left with an empty bucket and nobody woken
when a press cancelled the job's task at the end of that edit: every later edit in the
channel, and so the member's answer, waited discord.py's 30 s fallback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emulators.discord_emulator.fixtures import running_emulator  # noqa: E402
from emulators.fal_emulator.fixtures import SEED  # noqa: E402
from emulators.fal_emulator.server import FalEmulator  # noqa: E402
from tests.harness.e2e import start_world  # noqa: E402

TURNS = range(4, 24)  # as tests/e2e/test_cancel_timing_e2e.py
ANSWER_WITHIN = 45.0  # seconds; past discord.py's 30 s fallback


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def presses(headers: bool, passes: int) -> list[float]:
    """Seconds from each Cancel press to the member's answer."""
    waits: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with running_emulator() as emu, FalEmulator(seed=SEED) as fal:
            emu.rate_limits.enabled = headers
            world = await start_world(emu, fal, Path(tmp))
            await world.set_settings(default_quota=10_000, max_in_flight=1_000)
            fal.queue_delay = 3600.0
            general, alice = emu.channel("general"), emu.member("alice")
            for turns in [t for _ in range(passes) for t in TURNS]:
                started = await world.reply_text(await world.edit(prompt=f"held {turns}"))
                job_id = int(started.split("#", 1)[1].split()[0])
                status = await emu.wait_for_message(
                    general,
                    lambda m, job=job_id: f"job:{job}:cancel" in m.custom_ids(),
                    timeout=ANSWER_WITHIN,
                )
                for _ in range(turns):
                    await asyncio.sleep(0)  # one event-loop turn
                pressed = time.monotonic()
                press = await emu.click(alice, status, f"job:{job_id}:cancel")
                await press.response(timeout=ANSWER_WITHIN)
                await press.wait_followup(timeout=ANSWER_WITHIN)
                waits.append(time.monotonic() - pressed)
    return waits


def line(label: str, waits: list[float]) -> str:
    stalled = sum(1 for wait in waits if wait > 1.0)
    return (
        f"{label:<34} p50 {pct(waits, 50) * 1000:7.1f} ms   max {max(waits):6.1f} s   "
        f"presses answered after more than 1 s: {stalled} of {len(waits)}"
    )


async def main(args: argparse.Namespace) -> None:
    now = await presses(headers=True, passes=args.passes)
    before = await presses(headers=False, passes=args.passes)
    print(f"Cancel press → the member's answer, {len(now)} presses swept across a status edit")
    print(line("emulator with Discord's headers:", now))
    print(line("emulator without them (as it was):", before))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--passes", type=int, default=6, help="sweeps over the press moments")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
