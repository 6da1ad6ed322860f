"""What a request to `fal-ai/flux-2/lora/edit` is expected to cost (docs/fal-queue.md, "Pricing").

fal bills $0.021 per megapixel of input and output, each input resized to (so billed as) 1 MP.
We assume the inputs are billed once per request and every output image is billed for its own
megapixels (how `num_images` > 1 counts is UNCONFIRMED). LoRA size surcharges (over 2 GB) are
not modelled: the bot does not know a LoRA's size.

Rounding: output megapixels are exact (`width * height / 1_000_000`, no rounding per started
MP), and the total is rounded *up* to the next millionth of a dollar. Rounding up keeps a budget
check on the safe side and removes float noise (0.1 + 0.2) from stored amounts. fal's own
example bills 1024×1024 as 1 MP; our exact figure (1.048576 MP) errs high by under 5 %, again
the safe side for a spending cap.
"""

from __future__ import annotations

import math

from client.schema import EditInput

PRICE_PER_MEGAPIXEL_USD = 0.021
INPUT_MEGAPIXELS = 1.0
_MICRO = 1_000_000


def estimate_cost_usd(num_inputs: int, width: int, height: int, num_images: int) -> float:
    """Expected USD for `num_inputs` input images and `num_images` outputs of width × height."""
    if num_inputs < 0 or num_images < 0 or width <= 0 or height <= 0:
        raise ValueError("counts must be non-negative and sizes positive")
    megapixels = num_inputs * INPUT_MEGAPIXELS + num_images * (width * height / 1_000_000)
    micro_usd = megapixels * PRICE_PER_MEGAPIXEL_USD * _MICRO
    # round() first so 42000.000000001 (float noise) does not become 42001.
    return math.ceil(round(micro_usd, 6)) / _MICRO


def estimate_input_cost_usd(
    input: EditInput, *, default_size: tuple[int, int] = (1024, 1024)
) -> float:
    """The estimate for a whole request. When `image_size` is left to fal, the output size
    is unknown before the job runs; `default_size` stands in (pass the first input's size)."""
    width, height = input.output_dimensions() or default_size
    return estimate_cost_usd(len(input.image_urls), width, height, input.num_images)
