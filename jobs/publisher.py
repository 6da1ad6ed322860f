"""The one interface through which the domain talks to Discord. `cogs/` implements it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from jobs.records import AnyJob, EditJob, JobRequest
from jobs.request import EditRequest
from jobs.sweep_plan import SweepRecipe
from jobs.text import Words
from storage.sweeps import Sweep

Phase = Literal[
    "admitted",
    "waiting",
    "queued",
    "running",
    "delivering",
    "delivered",
    "failed",
    "cancelled",
    "expired",
]


class DeliveryError(Exception):
    """Posting to Discord failed; `str()` is safe to show the member."""


class DeliveryForbidden(DeliveryError):
    """The bot may not post (or attach files) in the job's channel."""


class DeliveryTooLarge(DeliveryError):
    """Discord refused the files as over the upload limit, even after our re-encoding."""


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    phase: Phase
    request: JobRequest
    started_at: datetime
    queue_position: int | None = None  # waiting: 1 is next; queued at fal: jobs ahead
    queue_size: int | None = None  # waiting: how many jobs wait in the bot's fair queue
    eta_at: datetime | None = None
    note: str | None = None
    progress: tuple[int, int] | None = None  # (step, of): a training's progress at fal


@dataclass(frozen=True, slots=True)
class ResultImage:
    data: bytes
    filename: str
    content_type: str
    width: int
    height: int
    spoiler: bool = False


@dataclass(frozen=True, slots=True)
class Delivery:
    request: EditRequest
    images: list[ResultImage]
    seed: int
    seconds: float
    cost_usd: float
    blocked: int = 0
    reencoded: bool = False
    parent_result: tuple[int, int] | None = None  # (channel id, message id) of the parent result
    notes: list[str] = field(default_factory=list)


SweepPhase = Literal["running", "posting", "done", "failed"]


@dataclass(frozen=True, slots=True)
class SweepStatus:
    """The one status message of a sweep (its cells have none of their own)."""

    phase: SweepPhase
    recipe: SweepRecipe
    started_at: datetime
    done: int  # cells that ended, failed ones included
    failed: int
    note: str | None = None
    sheet_message_id: int | None = None


@dataclass(frozen=True, slots=True)
class SheetCellInfo:
    cell: int
    label: str
    ok: bool  # on the sheet with its image (and can be fetched from it)
    note: str | None = None  # why not: failed, cancelled, hidden by the safety checker


@dataclass(frozen=True, slots=True)
class SheetDelivery:
    recipe: SweepRecipe
    image: ResultImage
    cells: list[SheetCellInfo]
    cost_usd: float  # what the delivered cells cost; failed ones were refunded
    reencoded: bool = False
    parent_result: tuple[int, int] | None = None  # (channel id, message id) of the result swept


class Publisher(Protocol):
    async def show_status(self, job: AnyJob, update: StatusUpdate) -> int | None:
        """Create the job's status message or edit it; returns the id when it created one."""

    async def deliver(self, job: EditJob, delivery: Delivery) -> int:
        """Post the result (nonce derived from the job id); returns the message id."""

    async def decorate(self, job: AnyJob) -> None:
        """Finishing touches on a recorded result message (the rerun reaction)."""

    async def notify(self, job: AnyJob, text: str) -> None:
        """Tell the requester something privately where Discord allows it."""

    async def show_sweep(self, sweep: Sweep, update: SweepStatus) -> int | None:
        """Create the sweep's status message or edit it; returns the id when it created one."""

    async def post_sheet(self, sweep: Sweep, sheet: SheetDelivery) -> int:
        """Post the contact sheet (nonce derived from the sweep id); returns the message id."""

    async def post_alert(self, guild_id: int, channel_id: int, text: Words) -> None:
        """Post a message for a server's managers in the channel they chose (budget alerts);
        it mentions nobody. Raises DeliveryForbidden when the bot can't post there, another
        DeliveryError when Discord failed."""
