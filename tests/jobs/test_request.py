"""Edit request validation: ranges, sizes, trigger words, and what reaches fal."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.errors import BadRequest
from jobs.request import (
    EditOptions,
    InputRef,
    LoraPick,
    RecipeLora,
    build_request,
    match_input_size,
    with_trigger_words,
)

INPUT = InputRef(
    sha256="a" * 64, url="https://cdn/x.png", content_type="image/png", width=1600, height=900
)
LORA = RecipeLora(
    id=1, name="claymation", path="owner/clay", scale=1.0, version=1, trigger_words=["CLAY"]
)


def build(**options: Any) -> Any:
    loras = options.pop("_loras", [LORA])
    inputs = options.pop("_inputs", [INPUT])
    caps = {k: options.pop(k) for k in ("max_images", "max_steps") if k in options}
    return build_request(
        EditOptions(prompt=options.pop("prompt", "turn it into a figure"), **options),
        inputs=inputs,
        loras=loras,
        seed=options.pop("seed", 42) if "seed" in options else 42,
        safety_checker=True,
        upload_limit=10_000_000,
        **caps,
    )


def test_defaults_reach_fal_exactly() -> None:
    request = build()
    sent = request.to_fal_input().model_dump(mode="json", exclude_none=True)
    assert sent == {
        "prompt": "CLAY, turn it into a figure",
        "image_urls": ["https://cdn/x.png"],
        "loras": [{"path": "owner/clay", "scale": 1.0}],
        "guidance_scale": 2.5,
        "seed": 42,
        "num_inference_steps": 28,
        "image_size": {"width": 1360, "height": 768},
        "num_images": 1,
        "acceleration": "regular",
        "enable_prompt_expansion": False,
        "sync_mode": True,
        "enable_safety_checker": True,
        "output_format": "png",
    }


def test_every_option_reaches_fal() -> None:
    request = build(
        guidance=7.5,
        steps=12,
        size="landscape_16_9",
        count=3,
        acceleration="high",
        expand_prompt=True,
        output_format="webp",
    )
    sent = request.to_fal_input().model_dump(mode="json", exclude_none=True)
    assert sent["guidance_scale"] == 7.5
    assert sent["num_inference_steps"] == 12
    assert sent["image_size"] == "landscape_16_9"
    assert sent["num_images"] == 3
    assert sent["acceleration"] == "high"
    assert sent["enable_prompt_expansion"] is True
    assert sent["output_format"] == "webp"
    assert (request.width, request.height) == (1024, 576)


def test_custom_size_needs_both_sides() -> None:
    assert build(width=512, height=2048).to_fal_input().image_size is not None
    with pytest.raises(BadRequest, match="You gave a width without a height"):
        build(width=800)
    with pytest.raises(BadRequest, match="width must be between 512 and 2048; you gave 300"):
        build(width=300, height=800)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prompt": "   "}, "The prompt is empty"),
        ({"prompt": "x" * 2001}, "The prompt is 2,001 characters; the limit is 2,000"),
        ({"prompt": "\u200b\u200f"}, "The prompt is empty"),
        ({"guidance": 25.0}, "guidance must be between 0 and 20; you gave 25"),
        ({"steps": 3}, "steps must be between 4 and 50; you gave 3"),
        ({"count": 5}, "count must be between 1 and 4; you gave 5"),
        ({"count": 3, "max_images": 2}, "count must be between 1 and 2 (this server's cap)"),
        ({"steps": 40, "max_steps": 30}, "steps must be between 4 and 30 (this server's cap)"),
        ({"size": "huge"}, "`huge` is not a size I know"),
        ({"size": "square", "width": 600, "height": 600}, "either a size preset or width"),
        ({"_inputs": []}, "Attach at least one image"),
        ({"_inputs": [INPUT] * 4}, "At most 3 images"),
        ({"_loras": [LORA.model_copy(update={"scale": 4.5})]}, "scale of claymation must be"),
    ],
)
def test_out_of_range_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as info:
        build(**options)
    assert message in str(info.value)


def test_trigger_words_added_once_and_not_when_present() -> None:
    assert with_trigger_words("a clay cat", [LORA]) == "a clay cat"
    two = LORA.model_copy(update={"trigger_words": ["CLAY", "stopmotion"]})
    assert with_trigger_words("a cat", [two, LORA]) == "CLAY, stopmotion, a cat"


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1600, 900), (1360, 768)),
        ((512, 512), (512, 512)),
        ((4000, 3000), (1184, 880)),
        ((300, 200), (768, 512)),
        ((8000, 500), (2048, 512)),
    ],
)
def test_match_input_keeps_aspect_near_one_megapixel(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert match_input_size(*size) == expected


def test_lora_pick_keeps_member_scale() -> None:
    assert EditOptions(prompt="x", loras=[LoraPick(name="a", scale=0.5)]).loras[0].scale == 0.5
