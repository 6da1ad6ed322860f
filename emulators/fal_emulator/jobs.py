"""Queue state of the emulator: one `Job` per submitted request and a scheduler that hands
runner slots out by (priority, arrival) under a concurrency limit, as fal does: queued requests
wait for a slot and are never refused for concurrency."""

from __future__ import annotations

import asyncio
import bisect
from dataclasses import dataclass, field
from typing import Any

IN_QUEUE = "IN_QUEUE"
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"


@dataclass
class Job:
    request_id: str
    endpoint: str
    app_path: str
    body: Any
    seq: int
    priority: int  # 0 normal, 1 low: low waits behind every normal request
    submitted_at: float
    start_timeout: float | None
    headers: dict[str, str]
    status: str = IN_QUEUE
    started_at: float | None = None
    completed_at: float | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None
    result_status: int | None = None
    result_body: Any = None
    result_headers: dict[str, str] = field(default_factory=dict)
    cancel_requested: bool = False
    ran: bool = False  # a runner picked it up (cancelled-while-queued jobs never run)
    webhook_url: str | None = None  # the submit's `fal_webhook`
    webhook_dropped: bool = False  # the `webhook_drop` knob swallowed its delivery
    timeline: list[tuple[str, float]] = field(default_factory=list)
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    _event: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def changed(self) -> asyncio.Event:
        """Set at this job's next change (its state, logs or queue position). Take it before
        reading the job, then wait on it, and no change can slip in between."""
        return self._event

    def touch(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    @property
    def key(self) -> tuple[int, int]:
        return self.priority, self.seq

    @property
    def failed(self) -> bool:
        return self.error_type is not None or (
            self.result_status is not None and self.result_status != 200
        )


class JobQueue:
    """Waiting order, queue positions and runner slots."""

    def __init__(self, concurrency: int) -> None:
        self._concurrency = concurrency
        self._waiting: list[tuple[int, int]] = []  # keys of IN_QUEUE jobs, sorted
        self._by_key: dict[tuple[int, int], Job] = {}
        self._ready: dict[tuple[int, int], asyncio.Future[None]] = {}
        self.running = 0
        self._paused = False

    @property
    def paused(self) -> bool:
        """While paused no runner picks a request up; requests keep queueing."""
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        self._paused = value
        self._dispatch()

    @property
    def concurrency(self) -> int:
        return self._concurrency

    @concurrency.setter
    def concurrency(self, value: int) -> None:
        if value < 1:
            raise ValueError("concurrency must be at least 1")
        self._concurrency = value
        self._dispatch()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def enqueue(self, job: Job) -> None:
        bisect.insort(self._waiting, job.key)
        self._by_key[job.key] = job
        for key in self._waiting[bisect.bisect_right(self._waiting, job.key) :]:
            self._by_key[key].touch()  # a low-priority request may have been overtaken

    def leave(self, job: Job) -> None:
        index = bisect.bisect_left(self._waiting, job.key)
        if index < len(self._waiting) and self._waiting[index] == job.key:
            del self._waiting[index]
            del self._by_key[job.key]
            # Everyone behind moved up one place: only they need to hear about it.
            for key in self._waiting[index:]:
                self._by_key[key].touch()

    def position(self, job: Job) -> int:
        """How many queued requests are ahead (0-based)."""
        return bisect.bisect_left(self._waiting, job.key)

    async def acquire(self, job: Job) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ready[job.key] = future
        self._dispatch()
        try:
            await future
        except asyncio.CancelledError:
            self._ready.pop(job.key, None)
            if future.done() and not future.cancelled():
                self.release()  # the slot was granted just as we were cancelled
            raise

    def release(self) -> None:
        self.running -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        while not self._paused and self.running < self._concurrency and self._ready:
            key = min(self._ready)
            future = self._ready.pop(key)
            if future.done():
                continue
            future.set_result(None)
            self.running += 1
