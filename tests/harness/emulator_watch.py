"""Hooks on both emulators: every change they report runs our checks synchronously.

A check that runs inside the emulator's own handler sees the change before the answer goes
back to the bot, so a kill switch armed on "Discord created the result message" ends the bot
before it learns the message id: exactly the window a crash test wants to hit, with no sleep.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from emulators.discord_emulator import DiscordEmulator
from emulators.discord_emulator.messages import Message
from emulators.fal_emulator.jobs import IN_QUEUE
from emulators.fal_emulator.server import FalEmulator

T = TypeVar("T")


class Watch:
    """Wraps the notify of the Discord and fal emulators; `until()` re-checks on every change."""

    def __init__(self, emu: DiscordEmulator, fal: FalEmulator) -> None:
        self.emu = emu
        self.fal = fal
        self.hooks: list[Callable[[], None]] = []
        self._event = asyncio.Event()
        discord_notify = emu.state.notifier.notify
        fal_notify = fal.notify

        def on_discord() -> None:
            discord_notify()
            self._changed()

        def on_fal() -> None:
            fal_notify()
            self._changed()

        emu.state.notifier.notify = on_discord  # type: ignore[method-assign]
        fal.notify = on_fal  # type: ignore[method-assign]

    def _changed(self) -> None:
        for hook in list(self.hooks):
            hook()
        event, self._event = self._event, asyncio.Event()
        event.set()

    def poke(self) -> None:
        """Wake the waiters (something outside the emulators changed, e.g. a process ended)."""
        self._changed()

    async def until(self, check: Callable[[], T | None], within: float, what: str) -> T:
        """The first truthy `check()`, re-run after each emulator change."""
        try:
            async with asyncio.timeout(within):
                while True:
                    event = self._event
                    result = check()
                    if result:
                        return result
                    await event.wait()
        except TimeoutError:
            raise TimeoutError(f"after {within:.0f} s: {what}") from None


# ---------------------------------------------------------------------------------- moments


def is_status_message(message: Message) -> bool:
    return message.content.startswith("**Edit #") and not message.attachments


def is_result_message(message: Message) -> bool:
    return bool(message.attachments) and bool(message.embeds)


class Cursor:
    """New items of a growing list since the last call."""

    def __init__(self, items: list[Any]) -> None:
        self._items = items
        self._seen = len(items)

    def new(self) -> list[Any]:
        fresh = self._items[self._seen :]
        self._seen = len(self._items)
        return fresh


@dataclass
class Moment:
    """A point in a job's life the bot can die at, as the emulators observe it."""

    name: str
    describe: str
    # Given the emulators and cursors, how many new occurrences happened since the last look.
    count: Callable[[Watcher], int]


@dataclass
class Watcher:
    emu: DiscordEmulator
    fal: FalEmulator
    discord_events: Cursor
    fal_requests: Cursor
    fal_jobs_seen: set[str] = field(default_factory=set)
    fal_running_seen: set[str] = field(default_factory=set)
    _events: list[Any] = field(default_factory=list)
    _requests: list[Any] = field(default_factory=list)

    def refresh(self) -> None:
        self._events = self.discord_events.new()
        self._requests = self.fal_requests.new()

    def discord(self, kind: str, predicate: Callable[[Any], bool]) -> int:
        return sum(1 for e in self._events if e.kind == kind and predicate(e.data))

    def fal_route(self, *routes: str) -> int:
        return sum(1 for r in self._requests if r.route in routes)

    def new_fal_jobs(self) -> int:
        fresh = [rid for rid in self.fal.jobs if rid not in self.fal_jobs_seen]
        self.fal_jobs_seen.update(fresh)
        return len(fresh)

    def newly_running(self) -> int:
        fresh = [
            rid
            for rid, job in self.fal.jobs.items()
            if job.status != IN_QUEUE and job.ran and rid not in self.fal_running_seen
        ]
        self.fal_running_seen.update(fresh)
        return len(fresh)


def _bot_reaction(w: Watcher) -> int:
    bot_id = w.emu.bot_user.id
    return w.discord("reaction_add", lambda d: d[1] == bot_id)


MOMENTS: dict[str, Moment] = {
    moment.name: moment
    for moment in (
        Moment(
            "uploading",
            "re-hosting the input at fal, before the job row exists",
            lambda w: w.fal_route("cdn_upload", "signed_put"),
        ),
        Moment(
            "admitted",
            "job row written, Discord created the status message, the bot has not heard back",
            lambda w: w.discord("message_create", is_status_message),
        ),
        Moment(
            "submit_unanswered",
            "fal queued the request, the bot has not stored the request id (unknown outcome)",
            lambda w: w.new_fal_jobs(),
        ),
        Moment(
            "submitted",
            "request id stored, the bot opens the status stream",
            lambda w: w.fal_route("stream"),
        ),
        Moment(
            "running",
            "fal is running the request; the bot is watching",
            lambda w: w.newly_running(),
        ),
        Moment(
            "fetching",
            "fal completed; the bot asks for the result, nothing stored yet",
            lambda w: w.fal_route("result"),
        ),
        Moment(
            "completed",
            "result stored on disk and in the job row, status says 'Posting'",
            lambda w: w.discord(
                "message_update", lambda m: is_status_message(m) and "📤" in m.content
            ),
        ),
        Moment(
            "posting",
            "Discord created the result message, the bot has not recorded its id",
            lambda w: w.discord("message_create", is_result_message),
        ),
        Moment(
            "decorating",
            "delivery recorded; the bot adds the rerun reaction",
            _bot_reaction,
        ),
    )
}


@dataclass
class Kill:
    moment: str
    nth: int


class KillSwitch:
    """Armed with a moment and n: SIGKILLs the bot at the n-th occurrence, inside the hook."""

    def __init__(self, watch: Watch, kill: Callable[[], bool]) -> None:
        self._watch = watch
        self._kill = kill
        self._watcher: Watcher | None = None
        self._armed: Kill | None = None
        self._seen = 0
        self.fired: list[Kill] = []
        watch.hooks.append(self._check)

    def arm(self, moment: str, nth: int) -> Kill:
        emu, fal = self._watch.emu, self._watch.fal
        self._watcher = Watcher(
            emu,
            fal,
            Cursor(emu.state.events),
            Cursor(fal.requests),
            fal_jobs_seen=set(fal.jobs),
            fal_running_seen={rid for rid, j in fal.jobs.items() if j.ran},
        )
        self._armed = Kill(moment, nth)
        self._seen = 0
        return self._armed

    def disarm(self) -> None:
        self._armed = None

    def detach(self) -> None:
        """Stop watching (a switch per round: the old one must not keep counting)."""
        self._armed = None
        if self._check in self._watch.hooks:
            self._watch.hooks.remove(self._check)

    @property
    def armed(self) -> Kill | None:
        return self._armed

    def _check(self) -> None:
        armed, watcher = self._armed, self._watcher
        if armed is None or watcher is None:
            return
        watcher.refresh()
        self._seen += MOMENTS[armed.moment].count(watcher)
        if self._seen >= armed.nth and self._kill():
            self.fired.append(armed)
            self._armed = None


def plan_kills(rng: random.Random, count: int, batch: int) -> list[tuple[str, int]]:
    """`count` (moment, n) pairs: every moment at least once when count allows, then random."""
    names = list(MOMENTS)
    if count <= len(names):
        order = rng.sample(names, count)
    else:
        order = names + rng.choices(names, k=count - len(names))
        rng.shuffle(order)
    return [(name, rng.randint(1, batch)) for name in order]
