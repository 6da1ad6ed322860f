"""Emulator time: real time plus an offset that a test can push forward.

Discord's deadlines (3 s to acknowledge, 15 min token life, signed attachment URLs) are
measured on this clock, so a test proves an expiry by advancing it instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Clock:
    def __init__(self) -> None:
        self._offset = 0.0
        self._listeners: list[Callable[[], None]] = []

    def monotonic(self) -> float:
        """Seconds on a monotonic scale; use for deadlines."""
        return time.monotonic() + self._offset

    def time(self) -> float:
        """Unix time in seconds; use for timestamps, snowflakes and URL expiry."""
        return time.time() + self._offset

    @property
    def offset(self) -> float:
        return self._offset

    def advance(self, seconds: float) -> None:
        """Jump forward; every waiter re-checks its deadline at once."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds
        for listener in list(self._listeners):
            listener()

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)
