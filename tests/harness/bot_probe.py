"""`python -m tests.harness.bot_probe`: the bot exactly as `python bot.py` runs it, plus a probe
for load tests: event-loop lag, CPU time and peak RSS of the bot process alone.

SIGUSR1 opens the measured window (lag samples and CPU reset), SIGUSR2 closes it, and on exit
(SIGINT) the figures go as JSON to the file named by $BOT_PROBE_STATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import time
from pathlib import Path
from typing import Any

import discord

import bot as bot_module

SAMPLE_INTERVAL = 0.02


class Probe:
    def __init__(self) -> None:
        self.lags: list[float] = []
        self.window_open = False
        self.cpu_start = 0.0
        self.cpu_seconds = 0.0
        self.wall_start = 0.0
        self.wall_seconds = 0.0

    def open(self) -> None:
        self.lags.clear()
        self.window_open = True
        self.cpu_start = time.process_time()
        self.wall_start = time.monotonic()

    def close(self) -> None:
        if self.window_open:
            self.window_open = False
            self.cpu_seconds = time.process_time() - self.cpu_start
            self.wall_seconds = time.monotonic() - self.wall_start

    async def sample(self) -> None:
        # The sleep is the measurement: how late the loop wakes us is its lag.
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(SAMPLE_INTERVAL)
            if self.window_open:
                self.lags.append(max(0.0, loop.time() - start - SAMPLE_INTERVAL))

    def figures(self) -> dict[str, Any]:
        self.close()
        lags = sorted(self.lags)

        def pct(p: float) -> float:
            return lags[min(len(lags) - 1, int(p * len(lags)))] if lags else 0.0

        return {
            "lag_samples": len(lags),
            "lag_p50_ms": pct(0.50) * 1000,
            "lag_p99_ms": pct(0.99) * 1000,
            "lag_max_ms": (lags[-1] if lags else 0.0) * 1000,
            "cpu_seconds": self.cpu_seconds,
            "wall_seconds": self.wall_seconds,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }


async def _run(settings: bot_module.Settings, probe: Probe) -> None:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, probe.open)
    loop.add_signal_handler(signal.SIGUSR2, probe.close)
    sampler = asyncio.create_task(probe.sample())
    try:
        bot = bot_module.create_bot(settings)
        async with bot:
            await bot.start(settings.discord_token.get_secret_value())
    finally:
        sampler.cancel()


def main() -> int:
    settings = bot_module.load_settings()
    discord.utils.setup_logging(level=getattr(logging, settings.log_level))
    bot_module.apply_discord_overrides(settings)
    probe = Probe()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run(settings, probe))
    finally:
        target = os.environ.get("BOT_PROBE_STATS")
        if target:
            Path(target).write_text(json.dumps(probe.figures()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
