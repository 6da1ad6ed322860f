"""How late the bot's event loop runs: a task asks to wake up every `interval` seconds and
records how much later than asked it actually ran.

Everything the bot does shares one event loop: gateway heartbeats, interaction answers (3 s to
acknowledge), status edits, fal watches. Synchronous work on the loop (a big JSON, image work,
a blocking call) delays all of them at once; the lag shows it, as a histogram for Prometheus
and a warning in the log when the loop was held for a second or more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import Histogram

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 0.1  # seconds between samples
WARN_AFTER = 1.0  # seconds of lag worth a line in the log


class LoopLagMonitor:
    """Start with `start()` on the running loop, stop with `await stop()`."""

    def __init__(
        self,
        histogram: Histogram,
        *,
        interval: float = DEFAULT_INTERVAL,
        warn_after: float = WARN_AFTER,
    ) -> None:
        if interval <= 0:
            raise ValueError("the sampling interval must be positive")
        self._histogram = histogram
        self._interval = interval
        self._warn_after = warn_after
        self._task: asyncio.Task[None] | None = None
        self._waiters: list[asyncio.Future[float]] = []
        self.last: float | None = None  # seconds, the latest sample

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._run(), name="loop-lag-monitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for waiter in self._waiters:
            waiter.cancel()
        self._waiters.clear()

    async def next_sample(self) -> float:
        """The lag measured at the monitor's next wake-up, in seconds."""
        if not self.running:
            raise RuntimeError("the loop lag monitor is not running")
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return await waiter

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._interval
            await asyncio.sleep(self._interval)
            # The loop may run a timer up to its clock resolution early: that is no lag.
            lag = max(0.0, loop.time() - due)
            self._record(lag)

    def _record(self, lag: float) -> None:
        self.last = lag
        self._histogram.observe(lag)
        if lag >= self._warn_after:
            log.warning("the event loop was blocked for %.1f s", lag)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(lag)
