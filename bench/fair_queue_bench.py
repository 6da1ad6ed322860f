"""One member's burst against ten members' single edits: how long the ten wait to start.

    .venv/bin/python -m bench.fair_queue_bench [--heavy 20] [--light 10] [--slots 4]
                                              [--run-time 0.5]

Our bot in-process against both emulators, as the end-to-end tests run it. fal runs `--slots`
requests at once (the account's limit). One member starts `--heavy` edits, then `--light`
other members start one each. Two runs side by side, on equal capacity:

- fair queue: FAL_MAX_CONCURRENT = slots; the bot holds the rest and releases them in fair
  order (members take turns);
- arrival order: FAL_MAX_CONCURRENT = 0 (no cap, as before); every edit goes to fal at once and
  waits in fal's own queue, first come first served.

Time to start = from the member's edit being admitted to fal starting to run it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emulators.discord_emulator.fixtures import running_emulator  # noqa: E402
from emulators.fal_emulator.fixtures import SEED  # noqa: E402
from emulators.fal_emulator.server import FalEmulator  # noqa: E402
from tests.harness.e2e import World, start_world  # noqa: E402

WITHIN = 300.0  # seconds any one edit may take here


@dataclass(frozen=True)
class Run:
    label: str
    light: list[float]  # seconds to start, one per light member
    heavy: list[float]
    makespan: float  # first admission to the last edit delivered
    most_at_fal: int  # the most requests fal held (queued or running) at once


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def start(world: World, member: str, prompt: str) -> tuple[int, float]:
    text = await world.reply_text(await world.edit(member, prompt=prompt))
    if "is on its way" not in text:
        raise RuntimeError(f"{member}'s edit was not admitted: {text}")
    return int(text.split("#", 1)[1].split()[0]), time.monotonic()


async def run(label: str, cap: int, args: argparse.Namespace) -> Run:
    with tempfile.TemporaryDirectory() as tmp:
        async with running_emulator() as emu, FalEmulator(seed=SEED) as fal:
            world = await start_world(emu, fal, Path(tmp))
            world.settings = world.settings.model_copy(update={"fal_max_concurrent": cap})
            await world.restart()
            await world.set_settings(default_quota=10_000, max_in_flight=1_000)
            lights = [f"light{n}" for n in range(args.light)]
            for name in lights:
                emu.add_member(emu.guild, name)
            fal.concurrency = args.slots
            fal.run_time = args.run_time
            most = 0

            def watch() -> bool:
                nonlocal most
                busy = [job for job in fal.jobs.values() if job.completed_at is None]
                most = max(most, len(busy))
                return False

            watcher = asyncio.create_task(fal.wait_until(watch, within=WITHIN))
            began = time.monotonic()
            admitted: dict[str, tuple[int, float]] = {}
            for n in range(args.heavy):
                admitted[f"heavy {n}"] = await start(world, "alice", f"heavy {n}")
            for name in lights:
                admitted[name] = await start(world, name, name)
            for job_id, _ in admitted.values():
                await world.job_in(job_id, "delivered", within=WITHIN)
            makespan = time.monotonic() - began
            watcher.cancel()
            started: dict[str, float] = {}
            for prompt in admitted:
                [job] = fal.job_by_prompt(prompt)
                if job.started_at is None:
                    raise RuntimeError(f"{prompt} never ran at fal")
                started[prompt] = job.started_at - admitted[prompt][1]
            return Run(
                label,
                light=[started[name] for name in lights],
                heavy=[started[f"heavy {n}"] for n in range(args.heavy)],
                makespan=makespan,
                most_at_fal=most,
            )


def table(runs: list[Run], args: argparse.Namespace) -> str:
    head = (
        f"{args.heavy} edits from one member, then 1 each from {args.light} members; fal runs "
        f"{args.slots} at once, {args.run_time:g} s each"
    )
    rows: list[tuple[str, Callable[[Run], str]]] = [
        ("light members: start p50", lambda r: f"{pct(r.light, 50):.2f} s"),
        ("light members: start p95", lambda r: f"{pct(r.light, 95):.2f} s"),
        ("light members: start mean", lambda r: f"{statistics.fmean(r.light):.2f} s"),
        ("heavy member: start p50", lambda r: f"{pct(r.heavy, 50):.2f} s"),
        ("heavy member: last start", lambda r: f"{max(r.heavy):.2f} s"),
        ("all delivered after", lambda r: f"{r.makespan:.2f} s"),
        ("most requests at fal at once", lambda r: str(r.most_at_fal)),
    ]
    width = 30
    lines = [head, f"{'':<{width}}" + "".join(f"{r.label:>18}" for r in runs)]
    for name, value in rows:
        lines.append(f"{name:<{width}}" + "".join(f"{value(r):>18}" for r in runs))
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    fair = await run("fair queue", args.slots, args)
    arrival = await run("arrival order", 0, args)
    print(table([fair, arrival], args))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--heavy", type=int, default=20, help="edits of the busy member")
    parser.add_argument("--light", type=int, default=10, help="members with one edit each")
    parser.add_argument("--slots", type=int, default=4, help="FAL_MAX_CONCURRENT and fal's limit")
    parser.add_argument("--run-time", type=float, default=0.5, help="seconds fal runs an edit")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
