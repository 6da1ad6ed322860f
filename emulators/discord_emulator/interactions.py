"""One interaction as Discord tracks it (deadlines, acknowledgement, original and follow-ups),
and the handle a test awaits to see what the member saw."""

# The test API takes `timeout=` arguments by design: each wait of a test names its own bound.
# ruff: noqa: ASYNC109

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import DiscordHTTPError, InteractionFailed
from .messages import Message, StoredFile
from .waiting import PENDING

if TYPE_CHECKING:
    from .state import EmulatorState
    from .world import Channel, Guild, Member, User

PING = 1
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
AUTOCOMPLETE = 4
MODAL_SUBMIT = 5

PONG = 1
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
DEFERRED_UPDATE_MESSAGE = 6
UPDATE_MESSAGE = 7
AUTOCOMPLETE_RESULT = 8
MODAL = 9


@dataclass(eq=False)
class Callback:
    """An accepted interaction response: its type, its `data`, files, and the message it touched."""

    type: int
    data: dict[str, Any]
    files: list[StoredFile]
    at: float
    message: Message | None

    @property
    def ephemeral(self) -> bool:
        return self.message is not None and self.message.ephemeral


class Interaction:
    """Handle returned by `slash`, `click`, `submit_modal`, `context_menu` and `autocomplete`."""

    def __init__(
        self,
        state: EmulatorState,
        *,
        id: int,
        token: str,
        type: int,
        name: str,
        user: User,
        member: Member | None,
        channel: Channel,
        guild: Guild | None,
        message: Message | None,
        created_at: float,
        payload: dict[str, Any],
    ) -> None:
        self._state = state
        self.id = id
        self.token = token
        self.type = type
        self.name = name
        self.user = user
        self.member = member
        self.channel = channel
        self.guild = guild
        self.message = message  # the message whose component was used, if any
        self.created_at = created_at
        self.payload = payload
        self.callbacks: list[Callback] = []
        self.errors: list[DiscordHTTPError] = []  # what the emulator refused, in order
        self.original_id: int | None = None
        self.followup_ids: list[int] = []
        self.modal: dict[str, Any] | None = None
        self.choices: list[dict[str, Any]] | None = None
        self._followup_cursor = 0
        self._edit_cursor = 0

    def __repr__(self) -> str:
        return f"<Interaction {self.name!r} type={self.type} id={self.id}>"

    # ---------------------------------------------------------------- Discord's view

    @property
    def acknowledged(self) -> bool:
        return bool(self.callbacks)

    @property
    def ack_deadline(self) -> float:
        return self.created_at + self._state.ack_deadline

    @property
    def token_expires_at(self) -> float:
        return self.created_at + self._state.token_lifetime

    def ack_window_open(self) -> bool:
        return self._state.clock.monotonic() <= self.ack_deadline

    def token_alive(self) -> bool:
        return self._state.clock.monotonic() <= self.token_expires_at

    # ---------------------------------------------------------------- what the member sees

    @property
    def original(self) -> Message | None:
        if self.original_id is None:
            return None
        return self._state.messages.get(self.original_id)

    @property
    def ephemeral(self) -> bool:
        original = self.original
        return original is not None and original.ephemeral

    @property
    def followups(self) -> list[Message]:
        return [self._state.messages[m] for m in self.followup_ids]

    def _failure(self) -> InteractionFailed:
        refused = "; ".join(str(e) for e in self.errors) or "no callback arrived"
        return InteractionFailed(
            f"{self!r} was not acknowledged within {self._state.ack_deadline:g} s ({refused})"
        )

    async def response(self, timeout: float = 10.0) -> Callback:
        """The first accepted callback; InteractionFailed once the 3 s window closed without one."""

        def check() -> Any:
            if self.callbacks:
                return self.callbacks[0]
            if not self.ack_window_open():
                raise self._failure()
            return PENDING

        return await self._state.notifier.wait_until(
            check, timeout=timeout, describe=lambda: f"{self!r} got no callback"
        )

    async def wait_followup(
        self, predicate: Callable[[Message], bool] | None = None, timeout: float = 10.0
    ) -> Message:
        """The next follow-up not yet returned here (after a defer the first fills the original)."""

        def check() -> Any:
            ids = self.followup_ids
            for index in range(self._followup_cursor, len(ids)):
                message = self._state.messages[ids[index]]
                if predicate is None or predicate(message):
                    self._followup_cursor = index + 1
                    return message
            if not self.callbacks and not self.ack_window_open():
                raise self._failure()
            return PENDING

        return await self._state.notifier.wait_until(
            check,
            timeout=timeout,
            describe=lambda: f"{self!r} has {len(self.followup_ids)} follow-ups, none new matched",
        )

    async def wait_original_edit(
        self, predicate: Callable[[Message], bool] | None = None, timeout: float = 10.0
    ) -> Message:
        """The original response after an edit newer than the last one returned here."""

        def check() -> Any:
            original = self.original
            fresh = original is not None and len(original.edits) > self._edit_cursor
            if fresh and original is not None and (predicate is None or predicate(original)):
                self._edit_cursor = len(original.edits)
                return original
            if not self.callbacks and not self.ack_window_open():
                raise self._failure()
            return PENDING

        return await self._state.notifier.wait_until(
            check,
            timeout=timeout,
            describe=lambda: (
                f"the original response of {self!r} was not edited as expected: {self.original!r}"
            ),
        )
