"""The load scenario: many members' /edit jobs in flight at once in one bot process.

The bot runs as a child process under `tests.harness.bot_probe`, so its figures (event-loop
lag, CPU per job, peak RSS) are its own, not the emulators'. Shared by
tests/soak/test_load_jobs.py and bench/soak.py.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulators.discord_emulator import DiscordEmulator
from emulators.fal_emulator.server import FalEmulator
from tests.harness.bot_process import BotProcess, bot_environment
from tests.harness.emulator_watch import Cursor, Watch, is_result_message
from tests.harness.images import png
from tests.soak.soak_audit import Summary, audit, settled
from tests.soak.soak_kill import bot_settings, prepare_database


@dataclass(frozen=True)
class LoadConfig:
    seed: int = 40
    jobs: int = 300
    members: int = 30
    run_time: float = 0.5  # fal holds every request until all arrived, then runs them at once
    timeout: float = 180.0


@dataclass
class LoadOutcome:
    summary: Summary
    peak_in_flight: int = 0
    admission_seconds: float = 0.0
    notice_ms: list[float] = field(default_factory=list)  # fal COMPLETED → result in Discord
    probe: dict[str, Any] = field(default_factory=dict)


def peak_overlap(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one moment (submitted → completed at fal)."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else 0.0


async def run_load(
    workdir: Path, config: LoadConfig, *, say: Callable[[str], None] = print
) -> LoadOutcome:
    db_path = workdir / "data" / "bot.sqlite3"
    stats_path = workdir / "probe.json"
    async with (
        DiscordEmulator() as emu,
        FalEmulator(seed=config.seed, concurrency=config.jobs) as fal,
    ):
        fal.run_time = config.run_time
        fal.paused = True
        member_role = emu.role("Member")
        names = [f"member{i:02d}" for i in range(config.members)]
        for name in names:
            emu.add_member(emu.guild, name, [member_role])
        await prepare_database(db_path, emu.guild.id, quota=10_000, in_flight=config.jobs)
        env = bot_environment({**bot_settings(emu, fal, db_path), "BOT_PROBE_STATS": ""})
        env["BOT_PROBE_STATS"] = str(stats_path)
        env["LOG_LEVEL"] = "WARNING"  # a line per transition is 2,000 lines of I/O here
        # Every job is held at fal at once, so the bot's own fair queue is off here
        # (bench/fair_queue_bench.py measures that queue).
        env["FAL_MAX_CONCURRENT"] = "0"
        bot = BotProcess(
            env, workdir / "bot.log", argv=[sys.executable, "-m", "tests.harness.bot_probe"]
        )
        watch = Watch(emu, fal)
        posted_at: dict[str, float] = {}
        events = Cursor(emu.state.events)

        def stamp() -> None:
            for event in events.new():
                if event.kind == "message_create" and is_result_message(event.data):
                    prompt = str(event.data.embeds[0].get("description", ""))
                    posted_at.setdefault(prompt, time.monotonic())

        watch.hooks.append(stamp)
        channel = emu.channel("general")
        images = [png(64, 64, ((i * 37) % 256, (i * 11) % 256, 200)) for i in range(config.jobs)]
        outcome = LoadOutcome(Summary("load"))
        try:
            mark = emu.mark()
            await bot.start()
            await emu.wait_for("identify", since=mark, timeout=30.0)
            assert bot.pid is not None
            os.kill(bot.pid, signal.SIGUSR1)
            started = time.monotonic()
            for i in range(config.jobs):
                await emu.slash(
                    emu.member(names[i % len(names)]),
                    channel,
                    "edit",
                    {"prompt": f"load {i}", "size": "square"},
                    attachments={"image": emu.attachment(images[i], f"in{i}.png")},
                )
            await watch.until(
                lambda: len(fal.jobs) >= config.jobs,
                config.timeout,
                f"only {len(fal.jobs)} jobs reached fal; bot log:\n{bot.log_tail()}",
            )
            outcome.admission_seconds = time.monotonic() - started
            fal.paused = False  # every job is in flight: let fal run them all
            await watch.until(
                lambda: len(posted_at) >= config.jobs,
                config.timeout,
                f"{len(posted_at)} of {config.jobs} results; bot log:\n{bot.log_tail()}",
            )
            await watch.until(
                lambda: settled(emu, db_path), config.timeout, "jobs unfinished or untold"
            )
            os.kill(bot.pid, signal.SIGUSR2)
            await bot.stop()
        finally:
            await bot.close()
        if stats_path.exists():
            outcome.probe = json.loads(stats_path.read_text())

        spans = [
            (job.submitted_at, job.completed_at)
            for job in fal.jobs.values()
            if job.completed_at is not None
        ]
        outcome.peak_in_flight = peak_overlap(spans)
        for job in fal.jobs.values():
            prompt = str(job.body.get("prompt"))
            if job.completed_at is not None and prompt in posted_at:
                outcome.notice_ms.append((posted_at[prompt] - job.completed_at) * 1000)
        summary = await audit("load", emu, fal, db_path, guild_id=emu.guild.id)
        probe = outcome.probe
        cpu_ms = 1000 * float(probe.get("cpu_seconds", 0.0)) / max(1, summary.jobs)
        summary.figures.update(
            {
                "members": str(config.members),
                "peak_in_flight": str(outcome.peak_in_flight),
                "admit_all_s": f"{outcome.admission_seconds:.1f}",
                "peak_rss_mib": f"{float(probe.get('peak_rss_mib', 0.0)):.0f}",
                "loop_lag_p99_ms": f"{float(probe.get('lag_p99_ms', 0.0)):.1f}",
                "loop_lag_max_ms": f"{float(probe.get('lag_max_ms', 0.0)):.1f}",
                "cpu_ms_per_job": f"{cpu_ms:.1f}",
                "completed_to_posted_p50_ms": f"{percentile(outcome.notice_ms, 0.5):.0f}",
                "completed_to_posted_p99_ms": f"{percentile(outcome.notice_ms, 0.99):.0f}",
            }
        )
        outcome.summary = summary
        say(summary.line())
    return outcome
