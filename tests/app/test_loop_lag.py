"""The event-loop lag monitor: a blocked loop shows up as lag, in the bot's metrics and its log;
the monitor runs from the bot's start until it closes."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from bot import create_bot
from cogs.utils.loop_lag import LoopLagMonitor
from jobs.metrics import Metrics
from tests.app.test_bot_factory import offline_settings

BLOCKED = 0.5  # seconds the test holds the event loop with a blocking call
INTERVAL = 0.05


def samples(metrics: Metrics, above: float | None = None) -> float:
    """How many lag samples the histogram holds (only those over `above` seconds, if given)."""
    registry = metrics.registry
    total = registry.get_sample_value("flux_event_loop_lag_seconds_count") or 0.0
    if above is None:
        return total
    within = registry.get_sample_value("flux_event_loop_lag_seconds_bucket", {"le": str(above)})
    return total - (within or 0.0)


async def test_a_blocked_loop_is_reported_as_lag(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    monitor = LoopLagMonitor(metrics.loop_lag, interval=INTERVAL, warn_after=0.25)
    monitor.start()
    try:
        await monitor.next_sample()  # the monitor has just gone back to sleep
        assert samples(metrics, above=0.25) == 0
        with caplog.at_level(logging.WARNING, logger="cogs.utils.loop_lag"):
            time.sleep(BLOCKED)  # noqa: ASYNC251 - the blocking call under test
            lag = await monitor.next_sample()
    finally:
        await monitor.stop()
    # Due INTERVAL after it slept, run only when the loop was free again.
    assert lag >= BLOCKED - INTERVAL - 0.01
    assert monitor.last == lag
    assert samples(metrics, above=0.25) == 1
    assert [r.getMessage() for r in caplog.records] == [
        f"the event loop was blocked for {lag:.1f} s"
    ]


async def test_stop_ends_the_sampling() -> None:
    metrics = Metrics()
    monitor = LoopLagMonitor(metrics.loop_lag, interval=INTERVAL)
    monitor.start()
    await monitor.next_sample()
    await monitor.stop()
    assert not monitor.running
    with pytest.raises(RuntimeError):
        await monitor.next_sample()


async def test_the_bot_measures_its_loop_from_start_until_close(tmp_path: Path) -> None:
    bot = create_bot(offline_settings(tmp_path))
    async with bot:
        await bot.prepare()
        # (the extension's module is loaded afresh by discord.py: no isinstance on its class)
        monitor = getattr(bot.get_cog("Health"), "loop_lag", None)
        assert isinstance(monitor, LoopLagMonitor) and monitor.running
        await monitor.next_sample()
        assert samples(bot.metrics) >= 1
    assert bot.is_closed() and not monitor.running
