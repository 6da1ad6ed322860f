"""Waiting on emulator state without sleeping: every change wakes the waiters, which re-check."""

# The test API takes `timeout=` arguments by design: each wait of a test names its own bound.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import EmulatorTimeout

T = TypeVar("T")


class _Pending:
    def __repr__(self) -> str:
        return "PENDING"


PENDING: Any = _Pending()


class Notifier:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_until(
        self,
        check: Callable[[], T],
        *,
        timeout: float,
        describe: Callable[[], str],
    ) -> T:
        """Return `check()` once it is not PENDING; `check` may raise to fail the wait early."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._event
            result = check()
            if result is not PENDING:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise EmulatorTimeout(f"after {timeout:.1f} s: {describe()}")
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                continue


@dataclass(frozen=True)
class Event(Generic[T]):
    """Something that happened in the emulator, in order: `kind` names it, `data` carries it."""

    index: int
    kind: str
    at: float
    data: T


KINDS = (
    "message_create",
    "message_update",
    "message_delete",
    "reaction_add",
    "reaction_remove",
    "interaction_create",
    "interaction_callback",
    "followup",
    "commands_synced",
    "typing",
    "request",
    "unknown_route",
    "identify",
    "resume",
    "disconnect",
)
