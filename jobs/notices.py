"""Things the domain tells whoever listens, off the job's path: spend changed, fal refused
the account. Budget alerts listen (jobs/alerts.py). Each notice runs as its own task, so a
slow or failing listener never delays or breaks an edit; its failure is logged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from client.errors import FalError

log = logging.getLogger(__name__)


class NoticeListener(Protocol):
    async def spend_changed(self, guild_id: int, *, refused: bool) -> None:
        """A server's month spend grew (an edit was admitted), or an edit was refused for the
        budget (`refused`)."""

    async def fal_failed(self, error: FalError) -> None:
        """fal refused or failed a call made for some job."""


class Notices:
    def __init__(self) -> None:
        self._listeners: list[NoticeListener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def listen(self, listener: NoticeListener) -> None:
        self._listeners.append(listener)

    def spend_changed(self, guild_id: int, *, refused: bool = False) -> None:
        self._tell(lambda listener: listener.spend_changed(guild_id, refused=refused))

    def fal_failed(self, error: FalError) -> None:
        self._tell(lambda listener: listener.fal_failed(error))

    def _tell(self, call: Callable[[NoticeListener], Coroutine[Any, Any, None]]) -> None:
        if self._closed:
            return
        for listener in self._listeners:
            task = asyncio.create_task(self._run(call(listener)), name="notice")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("a notice listener failed")

    async def wait_idle(self) -> None:
        """Until every notice told so far has been handled (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
