"""Sharding helpers for the bot process: which shard owns a guild, how to name a set of shards,
and IDENTIFY pacing by Discord's session start limit (docs/discord-limits.md, "Sharding")."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

log = logging.getLogger(__name__)

# Discord allows `max_concurrency` IDENTIFYs per this many seconds, one per rate-limit bucket
# (`shard_id % max_concurrency`).
IDENTIFY_WINDOW = 5.0


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard Discord sends a guild's events (interactions, reactions) to."""
    return (guild_id >> 22) % shard_count


def describe_shards(ids: Iterable[int]) -> str:
    """`0-3,6` for 0, 1, 2, 3, 6: how SHARD_IDS writes them."""
    parts: list[str] = []
    run: list[int] = []
    for shard in sorted(ids):
        if run and shard != run[-1] + 1:
            parts.append(_run(run))
            run = []
        run.append(shard)
    if run:
        parts.append(_run(run))
    return ",".join(parts)


def _run(run: list[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"


class IdentifyPacer:
    """Waits before an IDENTIFY only as long as Discord's rate limit needs: one IDENTIFY per
    bucket per 5 s, buckets `shard_id % max_concurrency`. discord.py's default instead sleeps
    5 s before every IDENTIFY but the first, so shard 1 of a bot with `max_concurrency` 16
    would wait for nothing. `max_concurrency` is asked (GET /gateway/bot) only once a wait
    could be needed; if that fails, 1 (every IDENTIFY 5 s apart) is the safe answer."""

    def __init__(
        self,
        max_concurrency: Callable[[], Awaitable[int]],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._ask = max_concurrency
        self._clock = clock
        self._sleep = sleep
        self._concurrency: int | None = None
        self._last: dict[int, float] = {}  # shard id → when its last IDENTIFY went out
        self._lock = asyncio.Lock()

    async def before_identify(self, shard_id: int) -> None:
        async with self._lock:
            if self._last:  # the process's first IDENTIFY never waits
                concurrency = await self._max_concurrency()
                bucket = shard_id % concurrency
                same_bucket = [t for s, t in self._last.items() if s % concurrency == bucket]
                if same_bucket:
                    delay = max(same_bucket) + IDENTIFY_WINDOW - self._clock()
                    if delay > 0:
                        log.info("shard %s waits %.1f s to identify", shard_id, delay)
                        await self._sleep(delay)
            self._last[shard_id] = self._clock()

    async def _max_concurrency(self) -> int:
        if self._concurrency is None:
            try:
                self._concurrency = max(1, await self._ask())
            except Exception:
                log.warning("could not read max_concurrency; identifying 5 s apart", exc_info=True)
                self._concurrency = 1
        return self._concurrency
