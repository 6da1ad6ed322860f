"""The input model of `fal-ai/flux-2/lora/edit`, as fal's app would declare it (docs/fal-queue.md,
"The edit endpoint's schema").

Written from the protocol document, independently of `client/schema.py`, so the emulator
catches a client whose model drifts from fal's. Pydantic's default lax mode matches fal's
runtime: "8" is accepted for an integer, "true" for a boolean, unknown keys are ignored.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

PRESETS: dict[str, tuple[int, int]] = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}


class LoRAInput(BaseModel):
    path: str
    scale: float = Field(default=1.0, ge=0, le=4)


class ImageSize(BaseModel):
    # The schema says ≤ 14142; the description says 512–2048. The emulator enforces the
    # description, the stricter of the two.
    width: int = Field(default=512, ge=512, le=2048)
    height: int = Field(default=512, ge=512, le=2048)


class Flux2EditImageLoRAInput(BaseModel):
    prompt: str
    image_urls: list[str] = Field(min_length=1)
    loras: list[LoRAInput] = Field(default_factory=list, max_length=3)
    guidance_scale: float = Field(default=2.5, ge=0, le=20)
    seed: int | None = None
    num_inference_steps: int = Field(default=28, ge=4, le=50)
    image_size: (
        ImageSize
        | Literal[
            "square_hd",
            "square",
            "portrait_4_3",
            "portrait_16_9",
            "landscape_4_3",
            "landscape_16_9",
        ]
        | None
    ) = None
    num_images: int = Field(default=1, ge=1, le=4)
    acceleration: Literal["none", "regular", "high"] = "regular"
    enable_prompt_expansion: bool = False
    sync_mode: bool = False
    enable_safety_checker: bool = True
    output_format: Literal["jpeg", "png", "webp"] = "png"


def validate_input(body: Any) -> tuple[Flux2EditImageLoRAInput | None, list[dict[str, Any]]]:
    """The parsed input, or the 422 `detail` items FastAPI would send (loc prefixed 'body')."""
    try:
        return Flux2EditImageLoRAInput.model_validate(body), []
    except ValidationError as error:
        items: list[dict[str, Any]] = json.loads(error.json(include_url=False))
        for item in items:
            item["loc"] = ["body", *item["loc"]]
        return None, items


def output_size(model: Flux2EditImageLoRAInput, first_input: tuple[int, int]) -> tuple[int, int]:
    size = model.image_size
    if isinstance(size, ImageSize):
        return size.width, size.height
    if isinstance(size, str):
        return PRESETS[size]
    # No size asked for: the input's own size, kept within the documented bounds.
    width, height = first_input
    return min(max(width, 512), 2048), min(max(height, 512), 2048)
