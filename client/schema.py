"""Pydantic models of everything fal sends or receives for `fal-ai/flux-2/lora/edit`.

The field list, defaults and ranges follow docs/fal-queue.md: "The edit endpoint's schema" (input
and output), "Status and the status stream" (queue statuses) and "Errors" (error bodies). Inputs
are validated strictly on our side so a member hears about a bad value before anything is paid
for; everything fal sends us is parsed leniently (unknown keys kept or ignored, optional fields
optional) so a new field on fal's side never breaks a running job.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ImageSizePreset = Literal[
    "square_hd",
    "square",
    "portrait_4_3",
    "portrait_16_9",
    "landscape_4_3",
    "landscape_16_9",
]

# width × height of each preset, as the fal toolkit defines them
# (docs/fal-queue.md, "The edit endpoint's schema").
PRESET_DIMENSIONS: dict[str, tuple[int, int]] = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}

Acceleration = Literal["none", "regular", "high"]
OutputFormat = Literal["jpeg", "png", "webp"]

MIN_SIDE = 512
MAX_SIDE = 2048
MAX_INPUT_IMAGES = 3
MAX_LORAS = 3


class LoraWeight(BaseModel):
    """One LoRA: a URL, a Hugging Face repo id or a path, and how strongly it applies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Annotated[str, Field(min_length=1)]
    scale: Annotated[float, Field(ge=0, le=4)] = 1.0


class ImageSize(BaseModel):
    """An explicit output size. The endpoint documents 512–2048 pixels per side."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: Annotated[int, Field(ge=MIN_SIDE, le=MAX_SIDE)]
    height: Annotated[int, Field(ge=MIN_SIDE, le=MAX_SIDE)]


class EditInput(BaseModel):
    """The request body of `fal-ai/flux-2/lora/edit`.

    `model_dump(exclude_none=True, mode="json")` is exactly what goes over the wire. Defaults are
    sent explicitly so a stored request replays identically even if fal changes a default.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: Annotated[str, Field(min_length=1)]
    image_urls: Annotated[list[str], Field(min_length=1, max_length=MAX_INPUT_IMAGES)]
    loras: Annotated[list[LoraWeight], Field(max_length=MAX_LORAS)] = Field(default_factory=list)
    guidance_scale: Annotated[float, Field(ge=0, le=20)] = 2.5
    seed: int | None = None
    num_inference_steps: Annotated[int, Field(ge=4, le=50)] = 28
    # None lets fal pick (probably the input's size; unconfirmed, see docs/fal-queue.md,
    # "The edit endpoint's schema").
    image_size: ImageSize | ImageSizePreset | None = None
    num_images: Annotated[int, Field(ge=1, le=4)] = 1
    acceleration: Acceleration = "regular"
    enable_prompt_expansion: bool = False
    sync_mode: bool = False
    enable_safety_checker: bool = True
    output_format: OutputFormat = "png"

    def output_dimensions(self) -> tuple[int, int] | None:
        """Requested output width × height, or None when fal chooses."""
        return dimensions_of(self.image_size)


def dimensions_of(size: ImageSize | str | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, ImageSize):
        return size.width, size.height
    return PRESET_DIMENSIONS[size]


class OutputImage(BaseModel):
    """One generated image: a CDN URL, or a data URI when `sync_mode` was set."""

    model_config = ConfigDict(extra="ignore")

    url: str
    content_type: str | None = None
    file_name: str | None = None
    file_size: int | None = None
    width: int | None = None
    height: int | None = None


class EditOutput(BaseModel):
    """The raw result JSON (docs/fal-queue.md, "The edit endpoint's schema"). fal marks every
    top-level field required; we only insist on `images` and `seed`, the two a delivery cannot
    do without."""

    model_config = ConfigDict(extra="ignore")

    images: list[OutputImage]
    seed: int
    has_nsfw_concepts: list[bool] = Field(default_factory=list)
    prompt: str = ""
    timings: dict[str, float] = Field(default_factory=dict)


# --- The edit trainer, `fal-ai/flux-2-trainer/edit` (docs/fal-trainer.md, "Input" and "Output")


class TrainingInput(BaseModel):
    """The request body of the edit trainer. Note the singular `image_data_url`: a zip of
    before/after pairs in fal's layout (docs/fal-trainer.md, "The zip layout")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_data_url: Annotated[str, Field(min_length=1)]
    steps: Annotated[int, Field(ge=1)] = 1000
    learning_rate: Annotated[float, Field(gt=0)] = 0.00005
    default_caption: str | None = None
    output_lora_format: Literal["fal", "comfy"] = "fal"


class OutputFile(BaseModel):
    """fal's `File`: where an output lives and what it is."""

    model_config = ConfigDict(extra="ignore")

    url: str
    content_type: str | None = None
    file_name: str | None = None
    file_size: int | None = None


class TrainingOutput(BaseModel):
    """What the trainer returns: the LoRA weights (their URL goes straight into the edit
    endpoint's `loras[].path`) and the training's config file."""

    model_config = ConfigDict(extra="ignore")

    diffusers_lora_file: OutputFile
    config_file: OutputFile | None = None


class LogEntry(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    message: str
    level: str | None = None
    source: str | None = None
    timestamp: str | None = None


KNOWN_STATUSES = frozenset({"IN_QUEUE", "IN_PROGRESS", "COMPLETED"})


class QueueStatus(BaseModel):
    """A status answer from polling, the SSE stream or submit.

    (docs/fal-queue.md, "Status and the status stream")
    """

    model_config = ConfigDict(extra="ignore")

    # A plain str, not a Literal: fal may add states and a watcher must not crash on them.
    status: str
    request_id: str | None = None
    queue_position: int | None = None
    logs: list[LogEntry] | None = None
    metrics: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    status_url: str | None = None
    response_url: str | None = None
    cancel_url: str | None = None

    @property
    def is_queued(self) -> bool:
        return self.status == "IN_QUEUE"

    @property
    def is_running(self) -> bool:
        return self.status == "IN_PROGRESS"

    @property
    def is_completed(self) -> bool:
        return self.status == "COMPLETED"

    @property
    def is_terminal(self) -> bool:
        """COMPLETED, or a status this client does not know (treated as final; docs/fal-queue.md,
        "Status and the status stream")."""
        return self.status not in ("IN_QUEUE", "IN_PROGRESS")

    @property
    def failed(self) -> bool:
        return self.error is not None or self.error_type is not None


class SubmitResponse(BaseModel):
    """Submit's 200 body: the id and the three URLs are what makes a request resumable."""

    model_config = ConfigDict(extra="ignore")

    request_id: Annotated[str, Field(min_length=1)]
    response_url: str
    status_url: str
    cancel_url: str
    status: str = "IN_QUEUE"
    queue_position: int | None = None


class ValidationItem(BaseModel):
    """One item of a 422 `detail` list (pydantic's error shape; docs/fal-queue.md, "Errors")."""

    model_config = ConfigDict(extra="ignore")

    loc: list[str | int] = Field(default_factory=list)
    msg: str = ""
    type: str = "value_error"
    ctx: dict[str, Any] | None = None
    input: Any = None
    url: str | None = None


class ValidationErrorBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    detail: list[ValidationItem]


class RequestErrorBody(BaseModel):
    """fal's infrastructure error shape `{detail, error_type}` (docs/fal-queue.md, "Errors")."""

    model_config = ConfigDict(extra="ignore")

    detail: str
    error_type: str | None = None


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: str | None = None


class CdnToken(BaseModel):
    """Answer of `POST /storage/auth/token?storage_type=fal-cdn-v3`.

    (docs/fal-queue.md, "Storage uploads")
    """

    model_config = ConfigDict(extra="ignore")

    token: str
    token_type: str
    base_url: str
    expires_at: str


class CdnUploadResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    access_url: str


class InitiateUploadResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    upload_url: str
    file_url: str
