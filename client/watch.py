"""Following a queued request: the SSE status stream first, adaptive polling when it fails.

The stream costs one request for the whole life of a job and tells us of completion the moment
fal knows. When it cannot be opened, breaks, ends before COMPLETED, or stays silent past fal's
15 s keep-alive, the watcher polls instead, with an interval that grows while nothing changes
(docs/fal-queue.md, "Status and the status stream"). Polling never goes back to the stream: a
stream that failed once for a request is likely to fail again (a proxy that buffers, a host that
drops long requests).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
from httpx_sse import SSEError, aconnect_sse
from pydantic import ValidationError

from client.schema import QueueStatus
from client.transport import FalTransport

log = logging.getLogger(__name__)

StatusFn = Callable[[bool], Awaitable[QueueStatus]]


@dataclass(frozen=True)
class PollPolicy:
    """Intervals for the polling fallback and the stream's silence limit, in seconds."""

    queued_initial: float = 0.5
    queued_max: float = 5.0
    running_initial: float = 0.25
    running_max: float = 2.0
    factor: float = 1.5
    # fal sends `: ping` every 15 s; 5 s of grace before calling the stream dead.
    sse_silence_timeout: float = 20.0
    use_stream: bool = True

    def next_interval(self, status: str, previous: float | None, changed: bool) -> float:
        running = status == "IN_PROGRESS"
        initial = self.running_initial if running else self.queued_initial
        ceiling = self.running_max if running else self.queued_max
        if changed or previous is None:
            return initial
        return min(ceiling, previous * self.factor)


class _StreamEnded(Exception):
    """The stream closed or answered oddly before the request completed."""


class _ChangeFilter:
    """Passes a status on only when something a watcher cares about changed.

    Log windows overlap between answers (docs/fal-queue.md, "Status and the status stream"),
    so entries already seen are dropped by (timestamp, message).
    """

    def __init__(self) -> None:
        self._last: tuple[str, int | None, str | None] | None = None
        self._seen_logs: set[tuple[str | None, str]] = set()

    def new(self, status: QueueStatus) -> QueueStatus | None:
        fresh_logs = None
        if status.logs is not None:
            fresh_logs = [
                entry
                for entry in status.logs
                if (entry.timestamp, entry.message) not in self._seen_logs
            ]
            self._seen_logs.update((entry.timestamp, entry.message) for entry in fresh_logs)
        key = (status.status, status.queue_position, status.error_type)
        if key == self._last and not fresh_logs:
            return None
        self._last = key
        if status.logs is None:
            return status
        return status.model_copy(update={"logs": fresh_logs})


def stream_url(status_url: str) -> httpx.URL:
    url = httpx.URL(status_url)
    return url.copy_with(path=url.path.rstrip("/") + "/stream")


async def _stream_statuses(
    transport: FalTransport, status_url: str, logs: bool, silence_timeout: float
) -> AsyncIterator[QueueStatus]:
    url = stream_url(status_url)
    transport.requests["stream"] += 1
    timeout = httpx.Timeout(30.0, connect=transport.timeout.connect, read=silence_timeout)
    async with aconnect_sse(
        transport.stream_http,
        "GET",
        str(url),
        params={"logs": "1" if logs else "0"},
        headers=transport.key_headers(url),
        timeout=timeout,
    ) as source:
        if source.response.status_code != 200:
            raise _StreamEnded(f"HTTP {source.response.status_code}")
        async for event in source.aiter_sse():
            if event.data:
                yield QueueStatus.model_validate_json(event.data)


async def watch_request(
    transport: FalTransport,
    request_id: str,
    status_url: str,
    poll_status: StatusFn,
    *,
    logs: bool,
    policy: PollPolicy,
) -> AsyncIterator[QueueStatus]:
    """Yield each change of a request's status; end after the terminal one."""
    changes = _ChangeFilter()
    if policy.use_stream:
        reason = "ended before COMPLETED"
        try:
            async for status in _stream_statuses(
                transport, status_url, logs, policy.sse_silence_timeout
            ):
                update = changes.new(status)
                if update is None:
                    continue
                yield update
                if update.is_terminal:
                    return
        except httpx.ReadTimeout:
            reason = f"silent for {policy.sse_silence_timeout:g}s"
        except (httpx.HTTPError, SSEError, ValidationError, ValueError, _StreamEnded) as error:
            reason = f"failed ({type(error).__name__}: {error})"
        log.info("fal %s: status stream %s; polling instead", request_id, reason)

    interval: float | None = None
    state: str | None = None
    while True:
        # The first poll happens at once: the stream may have broken just as the job finished.
        status = await poll_status(logs)
        update = changes.new(status)
        if update is not None:
            yield update
            if update.is_terminal:
                return
        interval = policy.next_interval(status.status, interval, status.status != state)
        state = status.status
        await asyncio.sleep(interval)
