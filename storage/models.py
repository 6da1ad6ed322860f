"""Pydantic models that go in and out of storage/. Callers never see a raw row."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypedDict

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)
from typing_extensions import TypeVar


def _as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_as_utc)]
"""A timezone-aware datetime, normalised to UTC; naive datetimes are rejected."""

Snowflake = Annotated[int, Field(ge=0, lt=2**63)]
"""A Discord id: fits SQLite's and PostgreSQL's signed 64-bit integers."""

LoraName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- LoRA registry -------------------------------------------------------------------------


class Lora(_Model):
    id: int
    guild_id: int
    name: str
    path: str
    default_scale: float
    trigger_words: list[str]
    description: str
    nsfw: bool
    enabled: bool
    version: int
    uses: int
    created_by: int
    created_at: UtcDatetime
    updated_at: UtcDatetime


LoraAction = Literal["add", "edit", "disable", "enable", "remove"]


class LoraChange(_Model):
    lora_id: int
    guild_id: int
    lora_name: str
    actor_id: int
    action: LoraAction
    details: dict[str, Any]
    at: UtcDatetime


class LoraTraining(_Model):
    """Which training made (or retrained) a LoRA, and its recipe as the bot recorded it."""

    job_id: int
    lora_id: int
    guild_id: int
    recipe: dict[str, Any]
    at: UtcDatetime


class LoraFields(_Model):
    """What an admin may set on a LoRA; validated before anything is written."""

    name: LoraName
    path: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    default_scale: Annotated[float, Field(ge=0.0, le=4.0)] = 1.0
    trigger_words: list[
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    ] = Field(default_factory=list, max_length=20)
    description: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] = ""
    nsfw: bool = False


class LoraEdit(TypedDict, total=False):
    """The keyword changes `LoraRepository.update` accepts (all optional)."""

    name: str
    path: str
    default_scale: float
    trigger_words: list[str]
    description: str
    nsfw: bool


# --- Jobs -------------------------------------------------------------------------------------


class JobState(StrEnum):
    ADMITTED = "admitted"
    SUBMITTED = "submitted"
    COMPLETED = "completed"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


TERMINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.DELIVERED, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED}
)
UNFINISHED_STATES: frozenset[JobState] = frozenset(JobState) - TERMINAL_STATES

# completed → failed means the result could not be posted; the quota is refunded.
ALLOWED_TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    JobState.ADMITTED: frozenset(
        {JobState.SUBMITTED, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED}
    ),
    JobState.SUBMITTED: frozenset(
        {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED}
    ),
    JobState.COMPLETED: frozenset({JobState.DELIVERED, JobState.FAILED}),
    JobState.DELIVERED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.EXPIRED: frozenset(),
}
REFUND_STATES: frozenset[JobState] = frozenset(
    {JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED}
)


def can_transition(current: JobState, target: JobState) -> bool:
    return target in ALLOWED_TRANSITIONS[current]


# What a job stores as JSON. Storage keeps any JSON object; the bot opens it with its own models
# (`Storage.open(job_model=...)`), so jobs come back typed from the repository up.
RequestT = TypeVar("RequestT", default=dict[str, Any])
ResultT = TypeVar("ResultT", default=dict[str, Any])
# The models are frozen, so a job of one kind is also a job of a wider kind (covariant): a
# `Job[EditRequest, …]` goes wherever a `Job[EditRequest | OtherRequest, …]` is expected.
_RequestCo = TypeVar("_RequestCo", covariant=True, default=dict[str, Any])
_ResultCo = TypeVar("_ResultCo", covariant=True, default=dict[str, Any])


class NewJob(_Model, Generic[_RequestCo]):
    """A validated, priced request about to be admitted."""

    guild_id: Snowflake
    channel_id: Snowflake
    user_id: Snowflake
    request: _RequestCo
    fal_input: dict[str, Any]
    images: Annotated[int, Field(ge=1)]
    cost_usd: Annotated[float, Field(ge=0.0)]
    deadline_at: UtcDatetime
    parent_job_id: int | None = None
    request_message_id: Snowflake | None = None
    seed: int | None = None
    lora_ids: list[int] = Field(default_factory=list)


class Job(NewJob[_RequestCo], Generic[_RequestCo, _ResultCo]):
    id: int
    state: JobState
    fal_request_id: str | None = None
    fal_status_url: str | None = None
    fal_response_url: str | None = None
    fal_cancel_url: str | None = None
    result: _ResultCo | None = None
    error: str | None = None
    status_message_id: int | None = None
    result_message_id: int | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    submitted_at: UtcDatetime | None = None
    completed_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    announced_at: UtcDatetime | None = None  # the final state shown to the member

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES


class JobFields(TypedDict, total=False):
    """Columns `JobRepository.transition` may set together with the new state."""

    fal_request_id: str | None
    fal_status_url: str | None
    fal_response_url: str | None
    fal_cancel_url: str | None
    result: dict[str, Any] | BaseModel | None
    error: str | None
    status_message_id: int | None
    result_message_id: int | None
    seed: int | None


# --- Quotas -----------------------------------------------------------------------------------


class QuotaLimits(_Model):
    """The limits one admission is checked against, resolved by the caller from settings."""

    images_per_window: Annotated[int, Field(ge=0)] | None  # None: exempt
    window_seconds: Annotated[int, Field(gt=0)]
    max_in_flight: Annotated[int, Field(ge=0)] | None = None  # None: no limit
    monthly_budget_usd: Annotated[float, Field(ge=0.0)] | None = None  # None or 0: no cap


class Refusal(_Model):
    """Why an admission was refused, with the numbers a member-facing message needs."""

    kind: Literal["quota", "in_flight", "budget"]
    used: float
    limit: float
    requested: float
    # When enough frees up for this request; None when waiting alone never helps.
    next_free_at: UtcDatetime | None


class Usage(_Model):
    images_used: int
    in_flight: int
    limit: int | None = None
    next_free_at: UtcDatetime | None  # when the oldest counted image leaves the window

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.images_used)


class MemberUsage(_Model):
    guild_id: int
    user_id: int
    images_today: int
    usd_today: float
    images_month: int
    usd_month: float


class DaySpend(_Model):
    """One UTC day of a server's month: what it spent and how many images."""

    day: date
    usd: float
    images: int


class LoraImages(_Model):
    lora_id: int
    name: str
    images: int


# --- Settings ---------------------------------------------------------------------------------

NsfwPolicy = Literal["block", "spoiler", "allow_in_nsfw_channels"]
RerunPolicy = Literal["anyone", "requester"]
ChannelRule = Literal["allow", "deny"]


class GuildSettings(_Model):
    """Per-server policy; a server that never saved any gets these defaults."""

    model_config = ConfigDict(frozen=True, extra="ignore")  # tolerate fields of newer bots

    default_quota: Annotated[int, Field(ge=0)] = 10
    window_hours: Annotated[int, Field(ge=1, le=24 * 31)] = 24
    role_quotas: dict[int, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    user_quotas: dict[int, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    exempt_roles: list[int] = Field(default_factory=list)
    max_in_flight: Annotated[int, Field(ge=1)] = 2
    monthly_budget_usd: Annotated[float, Field(ge=0.0)] = 0.0  # 0: no cap
    rerun_policy: RerunPolicy = "anyone"
    nsfw_policy: NsfwPolicy = "block"
    max_images_per_job: Annotated[int, Field(ge=1, le=4)] = 4
    max_steps: Annotated[int, Field(ge=4, le=50)] = 50
    manager_roles: list[int] = Field(default_factory=list)
    channel_rules: dict[int, ChannelRule] = Field(default_factory=dict)
    alerts_channel_id: int | None = None  # budget alerts go here; None: off

    def channel_allowed(self, channel_id: int) -> bool:
        """With any "allow" rule only allowed channels work; otherwise all but denied ones."""
        if "allow" in self.channel_rules.values():
            return self.channel_rules.get(channel_id) == "allow"
        return self.channel_rules.get(channel_id) != "deny"


class ChannelSettings(_Model):
    """Overrides for one channel; None means "as the server says"."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    nsfw_policy: NsfwPolicy | None = None
    rerun_policy: RerunPolicy | None = None
    max_images_per_job: Annotated[int, Field(ge=1, le=4)] | None = None
    max_steps: Annotated[int, Field(ge=4, le=50)] | None = None


class EffectiveSettings(_Model):
    """Server settings with one channel's overrides applied: what a request there obeys."""

    guild_id: int
    channel_id: int
    channel_allowed: bool
    nsfw_policy: NsfwPolicy
    rerun_policy: RerunPolicy
    max_images_per_job: int
    max_steps: int
    guild: GuildSettings
    channel: ChannelSettings


# --- Training pairs --------------------------------------------------------------------------


class TrainingPair(_Model):
    """One before/after pair of a server's draft set; images as the bot's JSON input refs."""

    id: int
    guild_id: int
    inputs: list[dict[str, Any]]
    expected: dict[str, Any]
    instruction: str | None
    added_by: int
    created_at: UtcDatetime


# --- Inputs -----------------------------------------------------------------------------------


class StoredInput(_Model):
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    url: Annotated[str, StringConstraints(min_length=1)]
    content_type: str
    byte_size: Annotated[int, Field(ge=0)]
    width: Annotated[int, Field(ge=1)]
    height: Annotated[int, Field(ge=1)]
    created_at: UtcDatetime

    @field_validator("sha256", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value
