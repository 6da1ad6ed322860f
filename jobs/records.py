"""The typed shapes of a stored edit job: its recipe (`EditRequest`) and its result."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from jobs.request import EditRequest
from storage import Storage
from storage.models import GuildSettings, Job, JobState, Lora, LoraChange


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


EditJob = Job[EditRequest, StoredResult]
EditStorage = Storage[EditRequest, StoredResult]

__all__ = [
    "EditJob",
    "EditStorage",
    "GuildSettings",
    "JobState",
    "Lora",
    "LoraChange",
    "StoredImage",
    "StoredResult",
]
