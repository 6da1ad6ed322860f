"""Snowflake ids and ISO timestamps as Discord makes them (ints here, strings on the wire)."""

from __future__ import annotations

import datetime as dt

from .clock import Clock

DISCORD_EPOCH_MS = 1_420_070_400_000


class Snowflakes:
    """Strictly increasing ids whose timestamp part follows the emulator clock."""

    def __init__(self, clock: Clock, worker: int = 1) -> None:
        self._clock = clock
        self._worker = worker & 0x1F
        self._last = 0
        self._increment = 0

    def next(self) -> int:
        ms = int(self._clock.time() * 1000) - DISCORD_EPOCH_MS
        self._increment = (self._increment + 1) & 0xFFF
        candidate = (ms << 22) | (self._worker << 17) | self._increment
        self._last = max(candidate, self._last + 1)
        return self._last

    def next_on_shard(self, shard_id: int, num_shards: int) -> int:
        """The next id whose guild Discord would route to `shard_id` of `num_shards`: the
        timestamp part moves ahead by up to `num_shards - 1` ms to land there."""
        candidate = self.next()
        while shard_of(candidate, num_shards) != shard_id:
            candidate = (((candidate >> 22) + 1) << 22) | (self._worker << 17)
        self._last = candidate
        return candidate


def shard_of(guild_id: int, num_shards: int) -> int:
    """The shard that receives a guild's events: `(guild_id >> 22) % num_shards`."""
    return (guild_id >> 22) % num_shards


def snowflake_time(snowflake: int) -> float:
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000


def iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).isoformat()
