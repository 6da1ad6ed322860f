"""Discord's per-route rate limits: every REST answer says how much of its bucket is left, and a
request past the limit gets a 429 (docs/discord-limits.md, "Rate limits").

Discord answers every API route with `X-RateLimit-Limit`, `-Remaining`, `-Reset`,
`-Reset-After` and `-Bucket`. A bucket is one route (method and path template) per value of its
major parameters (the channel, the guild, or the webhook/interaction token), counted in a fixed
window that starts with its first request. Past the limit the answer is a 429 that came through
Discord's proxy: a `Via` header and a JSON body with `retry_after`.

The headers matter to the client even when nothing is ever refused. Without them discord.py
treats each bucket as "one request at a time, reset unknown": after every request it runs its
refresh step, and a task cancelled during that step leaves the bucket empty with nobody woken,
so the next request on the route waits discord.py's 30 s fallback. With the headers it knows
the bucket's size and reset time and never waits longer than the window.

Discord's own numbers are low (sending or editing in a channel: 5 per 5 s), and pacing every
test by them would only slow the suite, so the default here is 1,000 per second per bucket:
the same headers, the same 429s, a limit tests meet only on purpose. `set()` gives a route
Discord's numbers when a test wants the pacing itself.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

from .clock import Clock

# Path parameters that split a route into one bucket per value, as Discord's major parameters.
MAJOR_PARAMETERS = ("channel", "guild", "token")


@dataclass(frozen=True)
class Limit:
    requests: int
    per: float  # seconds

    def __post_init__(self) -> None:
        if self.requests < 1 or self.per <= 0:
            raise ValueError("a rate limit allows at least 1 request in a positive window")


@dataclass
class _Window:
    started: float
    per: float
    used: int = 0


_PRUNE_AT = 10_000  # windows kept before the ended ones are dropped (one per interaction token)


@dataclass(frozen=True)
class Verdict:
    """Headers for the answer, and `retry_after` (seconds) when the request is refused."""

    headers: dict[str, str]
    retry_after: float | None = None


class RateLimits:
    """The buckets of one emulator. `enabled = False` sends no headers and refuses nothing."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.enabled = True
        self.default = Limit(1000, 1.0)
        self._routes: dict[str, Limit] = {}
        self._windows: dict[tuple[str, tuple[str, ...]], _Window] = {}
        self.refused = 0

    def set(self, route: str, requests: int, per: float) -> None:
        """Limit `route` ("PATCH /channels/{channel}/messages/{message}", as in rest.py)."""
        self._routes[route] = Limit(requests, per)

    def reset(self) -> None:
        """Forget every window (the next request of each bucket starts a fresh one)."""
        self._windows.clear()

    def _prune(self, now: float) -> None:
        self._windows = {k: w for k, w in self._windows.items() if now < w.started + w.per}

    def take(self, method: str, template: str, params: Mapping[str, str]) -> Verdict | None:
        """Count one request on its bucket; None when rate limits are off."""
        if not self.enabled:
            return None
        route = f"{method} {template}"
        limit = self._routes.get(route, self.default)
        bucket = hashlib.md5(route.encode(), usedforsecurity=False).hexdigest()
        key = (bucket, tuple(params.get(name, "") for name in MAJOR_PARAMETERS))
        now = self._clock.monotonic()
        window = self._windows.get(key)
        if window is None or now >= window.started + limit.per:
            if len(self._windows) >= _PRUNE_AT:
                self._prune(now)
            window = self._windows[key] = _Window(started=now, per=limit.per)
        reset_after = window.started + limit.per - now
        headers = {
            "X-RateLimit-Limit": str(limit.requests),
            "X-RateLimit-Bucket": bucket,
            "X-RateLimit-Reset": f"{self._clock.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        }
        if window.used >= limit.requests:
            self.refused += 1
            headers |= {
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Scope": "user",
                "Retry-After": str(max(1, math.ceil(reset_after))),
                # discord.py retries a 429 only when it came through Discord's proxy.
                "Via": "1.1 google",
            }
            return Verdict(headers, retry_after=round(reset_after, 3))
        window.used += 1
        headers["X-RateLimit-Remaining"] = str(limit.requests - window.used)
        return Verdict(headers)
