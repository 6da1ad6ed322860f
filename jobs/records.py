"""The typed shapes of a stored job. A job is an edit (`EditRequest`, its result
`StoredResult`) or a training (`TrainingRequest`, `TrainingResult`): one table, one lifecycle,
the payload's `kind` telling them apart. Rows written before trainings existed carry no kind
and load as edits."""

from __future__ import annotations

from typing import Annotated, Any, TypeGuard

from pydantic import BaseModel, Discriminator, Field, Tag

from jobs.request import EditRequest
from jobs.training import TrainingRequest, TrainingResult
from storage import Storage
from storage.models import (
    GuildSettings,
    Job,
    JobState,
    Lora,
    LoraChange,
    LoraTraining,
    TrainingPair,
)


class StoredImage(BaseModel):
    """One output image: on disk until delivered; `url` (when fal gave one) to fetch it again."""

    url: str | None = None
    file: str
    content_type: str
    width: int
    height: int
    nsfw: bool = False

    @property
    def extension(self) -> str:
        return self.content_type.split("/")[-1].replace("jpeg", "jpg")


class StoredResult(BaseModel):
    """What fal returned for a job, kept until the result is posted (and after, for reruns)."""

    images: list[StoredImage] = Field(default_factory=list)
    seed: int | None = None
    prompt: str | None = None
    timings: dict[str, Any] | None = None


def _kind(value: Any) -> str:
    """A payload's kind; JSON without one is an edit (every row from before trainings)."""
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if kind == "training" else "edit"


JobRequest = Annotated[
    Annotated[EditRequest, Tag("edit")] | Annotated[TrainingRequest, Tag("training")],
    Discriminator(_kind),
]
JobResult = Annotated[
    Annotated[StoredResult, Tag("edit")] | Annotated[TrainingResult, Tag("training")],
    Discriminator(_kind),
]

AnyJob = Job[JobRequest, JobResult]  # what storage gives back: an edit or a training
EditJob = Job[EditRequest, StoredResult]
TrainingJob = Job[TrainingRequest, TrainingResult]
JobStorage = Storage[JobRequest, JobResult]
EditStorage = JobStorage  # the name callers used before trainings shared the table


def is_edit(job: AnyJob) -> TypeGuard[EditJob]:
    return isinstance(job.request, EditRequest)


def is_training(job: AnyJob) -> TypeGuard[TrainingJob]:
    return isinstance(job.request, TrainingRequest)


def as_edit(job: AnyJob) -> EditJob:
    """The job as the edit it must be (a caller that only ever makes edits)."""
    if not is_edit(job):
        raise TypeError(f"job {job.id} is a {job.request.kind}, not an edit")
    return job


__all__ = [
    "AnyJob",
    "EditJob",
    "EditStorage",
    "GuildSettings",
    "JobRequest",
    "JobResult",
    "JobState",
    "JobStorage",
    "Lora",
    "LoraChange",
    "LoraTraining",
    "StoredImage",
    "StoredResult",
    "TrainingJob",
    "TrainingPair",
    "as_edit",
    "is_edit",
    "is_training",
]
