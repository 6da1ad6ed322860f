"""An edit request: the member's options checked and turned into a complete, stored recipe.

Every range is checked here with a message a member understands, even where Discord's own
option limits already apply: buttons, modals and reruns reach this code without Discord's checks.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import BaseModel, Field

from client.schema import PRESET_DIMENSIONS, EditInput, ImageSize, LoraWeight
from jobs.errors import BadRequest

Acceleration = Literal["none", "regular", "high"]
OutputFormat = Literal["png", "jpeg", "webp"]

MATCH_INPUT = "match_input"
SIZE_CHOICES: dict[str, str] = {
    MATCH_INPUT: "Match image 1 (about 1 MP)",
    "square_hd": "Square HD 1024×1024",
    "square": "Square 512×512",
    "portrait_4_3": "Portrait 3:4 768×1024",
    "portrait_16_9": "Portrait 9:16 576×1024",
    "landscape_4_3": "Landscape 4:3 1024×768",
    "landscape_16_9": "Landscape 16:9 1024×576",
}

PROMPT_MAX = 2000
MAX_IMAGES_IN = 3
MAX_LORAS = 3
SCALE_RANGE = (0.0, 4.0)
GUIDANCE_RANGE = (0.0, 20.0)
STEPS_RANGE = (4, 50)
SIDE_RANGE = (512, 2048)
COUNT_RANGE = (1, 4)
SEED_MAX = 2**32 - 1
DEFAULT_GUIDANCE = 2.5
DEFAULT_STEPS = 28
MATCH_INPUT_PIXELS = 1024 * 1024

_INVISIBLE = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


class LoraPick(BaseModel):
    """A LoRA the member named, with the scale they gave (None: the LoRA's default)."""

    name: str
    scale: float | None = None


class EditOptions(BaseModel):
    """What the member asked for, before any check. Every field is optional but the prompt."""

    prompt: str
    loras: list[LoraPick] = Field(default_factory=list)
    seed: int | None = None
    guidance: float | None = None
    steps: int | None = None
    size: str | None = None
    width: int | None = None
    height: int | None = None
    count: int | None = None
    acceleration: Acceleration | None = None
    expand_prompt: bool | None = None
    output_format: OutputFormat | None = None
    preset: str | None = None  # a server preset fills what the member left unset


class RecipeLora(BaseModel):
    """A LoRA as it was when the job was made; reruns keep using this snapshot's name."""

    id: int
    name: str
    path: str
    scale: float
    version: int
    trigger_words: list[str] = Field(default_factory=list)


class InputRef(BaseModel):
    sha256: str
    url: str
    content_type: str
    width: int
    height: int


class SweepCell(BaseModel):
    """Marks a job as one cell of a sweep: it is posted on the sweep's sheet, not alone."""

    cell: int
    label: str


class EditRequest(BaseModel):
    """The full recipe of one job, stored as JSON with the job and enough to rerun it."""

    kind: Literal["edit"] = "edit"
    prompt: str
    final_prompt: str
    loras: list[RecipeLora]
    inputs: list[InputRef]
    seed: int
    guidance: float
    steps: int
    size: str
    width: int
    height: int
    count: int
    acceleration: Acceleration
    expand_prompt: bool
    output_format: OutputFormat
    safety_checker: bool
    upload_limit: int
    preset: str | None = None  # the server preset the recipe was made with
    sweep: SweepCell | None = None  # set on the jobs that are cells of a sweep
    # A training's sample edit: the pair's end image, posted beside the result.
    expected: InputRef | None = None

    def to_fal_input(self) -> EditInput:
        image_size: ImageSize | str
        if self.size in PRESET_DIMENSIONS:
            image_size = self.size
        else:
            image_size = ImageSize(width=self.width, height=self.height)
        return EditInput(
            prompt=self.final_prompt,
            image_urls=[ref.url for ref in self.inputs],
            loras=[LoraWeight(path=lora.path, scale=lora.scale) for lora in self.loras],
            guidance_scale=self.guidance,
            seed=self.seed,
            num_inference_steps=self.steps,
            image_size=image_size,
            num_images=self.count,
            acceleration=self.acceleration,
            enable_prompt_expansion=self.expand_prompt,
            enable_safety_checker=self.safety_checker,
            output_format=self.output_format,
            # Results come back inline (data URIs): one request fewer per job than fetching the
            # media from fal's CDN, and the outputs stay out of fal's request history.
            sync_mode=True,
        )

    @property
    def megapixels_out(self) -> float:
        return self.width * self.height / 1_000_000


def clean_prompt(prompt: str) -> str:
    """Strip invisible direction and zero-width characters that hide text from reviewers."""
    return _INVISIBLE.sub("", prompt).strip()


def check_prompt(prompt: str) -> str:
    text = clean_prompt(prompt)
    if not text:
        raise BadRequest("The prompt is empty. Describe the edit you want.")
    if len(text) > PROMPT_MAX:
        raise BadRequest(
            f"The prompt is {len(text):,} characters; the limit is {PROMPT_MAX:,}. Shorten it."
        )
    return text


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not (low <= value <= high) or (isinstance(value, float) and math.isnan(value)):
        raise BadRequest(f"{name} must be between {low:g} and {high:g}; you gave {value:g}.")


def with_trigger_words(prompt: str, loras: list[RecipeLora]) -> str:
    """Prepend each LoRA trigger word the prompt does not already contain (case-insensitive)."""
    lowered = prompt.lower()
    missing: list[str] = []
    for lora in loras:
        for word in lora.trigger_words:
            if word and word.lower() not in lowered and word not in missing:
                missing.append(word)
    return ", ".join([*missing, prompt]) if missing else prompt


def match_input_size(width: int, height: int) -> tuple[int, int]:
    """Image 1's aspect ratio at about 1 MP (never upscaled past it), sides 512–2048, ×16."""
    low, high = SIDE_RANGE
    scale = min(1.0, math.sqrt(MATCH_INPUT_PIXELS / (width * height)))
    w, h = width * scale, height * scale
    if min(w, h) < low:
        up = low / min(w, h)
        w, h = w * up, h * up
    if max(w, h) > high:
        down = high / max(w, h)
        w, h = w * down, h * down

    def snap(side: float) -> int:
        return int(min(high, max(low, round(side / 16) * 16)))

    return snap(w), snap(h)


def resolve_size(options: EditOptions, first_input: InputRef) -> tuple[str, int, int]:
    if (options.width is None) != (options.height is None):
        given = "width" if options.width is not None else "height"
        missing = "height" if given == "width" else "width"
        raise BadRequest(f"You gave a {given} without a {missing}: set both, or pick a size.")
    if options.width is not None and options.height is not None:
        if options.size not in (None, "custom"):
            raise BadRequest("Choose either a size preset or width and height, not both.")
        _check_range("width", options.width, *SIDE_RANGE)
        _check_range("height", options.height, *SIDE_RANGE)
        return "custom", options.width, options.height
    size = options.size or MATCH_INPUT
    if size == MATCH_INPUT:
        width, height = match_input_size(first_input.width, first_input.height)
        return MATCH_INPUT, width, height
    if size not in PRESET_DIMENSIONS:
        choices = ", ".join(SIZE_CHOICES)
        raise BadRequest(f"`{size}` is not a size I know. Choose one of: {choices}.")
    width, height = PRESET_DIMENSIONS[size]
    return size, width, height


def build_request(
    options: EditOptions,
    *,
    inputs: list[InputRef],
    loras: list[RecipeLora],
    seed: int,
    safety_checker: bool,
    upload_limit: int,
    max_images: int = COUNT_RANGE[1],
    max_steps: int = STEPS_RANGE[1],
) -> EditRequest:
    """Check every option and produce the recipe. LoRAs come resolved from the registry."""
    prompt = check_prompt(options.prompt)
    if not inputs:
        raise BadRequest("Attach at least one image to edit.")
    if len(inputs) > MAX_IMAGES_IN:
        raise BadRequest(f"At most {MAX_IMAGES_IN} images can be edited together.")
    if len(loras) > MAX_LORAS:
        raise BadRequest(f"At most {MAX_LORAS} LoRAs can be combined.")
    for lora in loras:
        _check_range(f"The scale of {lora.name}", lora.scale, *SCALE_RANGE)
    if not 0 <= seed <= SEED_MAX:
        raise BadRequest(f"seed must be between 0 and {SEED_MAX:,}; you gave {seed:,}.")
    guidance = DEFAULT_GUIDANCE if options.guidance is None else options.guidance
    _check_range("guidance", guidance, *GUIDANCE_RANGE)
    steps_high = min(STEPS_RANGE[1], max_steps)
    steps = min(DEFAULT_STEPS, steps_high) if options.steps is None else options.steps
    if not STEPS_RANGE[0] <= steps <= steps_high:
        note = " (this server's cap)" if steps_high < STEPS_RANGE[1] else ""
        raise BadRequest(
            f"steps must be between {STEPS_RANGE[0]} and {steps_high}{note}; you gave {steps}."
        )
    count_high = min(COUNT_RANGE[1], max_images)
    count = 1 if options.count is None else options.count
    if not COUNT_RANGE[0] <= count <= count_high:
        note = " (this server's cap)" if count_high < COUNT_RANGE[1] else ""
        raise BadRequest(
            f"count must be between {COUNT_RANGE[0]} and {count_high}{note}; you gave {count}."
        )
    size, width, height = resolve_size(options, inputs[0])
    return EditRequest(
        prompt=prompt,
        final_prompt=with_trigger_words(prompt, loras),
        loras=loras,
        inputs=inputs,
        seed=seed,
        guidance=guidance,
        steps=steps,
        size=size,
        width=width,
        height=height,
        count=count,
        acceleration=options.acceleration or "regular",
        expand_prompt=bool(options.expand_prompt),
        output_format=options.output_format or "png",
        safety_checker=safety_checker,
        upload_limit=upload_limit,
        preset=options.preset,
    )
