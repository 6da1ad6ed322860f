"""A training as the lifecycle stores it: the recipe (`TrainingRequest`), what fal made
(`TrainingResult`), what it costs, and its progress read from fal's log lines
(docs/fal-trainer.md)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, Field

from client.pricing import estimate_cost_usd
from client.schema import LogEntry, TrainingInput
from jobs.request import InputRef, match_input_size

DEFAULT_STEPS = 1000
STEPS_RANGE = (100, 10_000)
DEFAULT_LEARNING_RATE = 0.00005
LEARNING_RATE_RANGE = (0.000001, 0.01)
# fal's price multiplier per number of inputs in a pair (docs/fal-trainer.md, "Pricing").
REFERENCE_MULTIPLIERS = {1: 2.11, 2: 3.44, 3: 5.09, 4: 6.95}
DEFAULT_PRICE_PER_STEP_USD = 0.0056
_MICRO = 1_000_000


class SamplePlan(BaseModel):
    """The one edit run with a freshly trained LoRA: a pair's start images, its instruction,
    and its end image, shown beside the result."""

    inputs: list[InputRef]
    expected: InputRef
    prompt: str


class TrainingRequest(BaseModel):
    """The full recipe of one training, stored with its job."""

    kind: Literal["training"] = "training"
    name: str
    source: Literal["zip", "draft"]
    zip_url: str
    pairs: int
    inputs_per_pair: int
    steps: int
    learning_rate: float
    caption: str | None = None  # the default instruction of pairs without their own
    description: str | None = None  # the manager's words for the LoRA
    nsfw: bool = False
    replace: bool = False
    training_cost_usd: float
    sample_cost_usd: float
    sample: SamplePlan
    # Where the sample edit will run: the safety checker and upload limit of the channel the
    # training was started in.
    safety_checker: bool = True
    upload_limit: int = 10 * 1024 * 1024
    warnings: list[str] = Field(default_factory=list)

    @property
    def estimate_usd(self) -> float:
        return round(self.training_cost_usd + self.sample_cost_usd, 6)

    def to_fal_input(self) -> TrainingInput:
        return TrainingInput(
            image_data_url=self.zip_url,
            steps=self.steps,
            learning_rate=self.learning_rate,
            default_caption=self.caption,
        )


class TrainingResult(BaseModel):
    """What the trainer returned: the weights (the LoRA's path) and the config file."""

    kind: Literal["training"] = "training"
    lora_url: str
    config_url: str | None = None
    lora_bytes: int | None = None


def training_cost_usd(steps: int, inputs_per_pair: int, price_per_step: float) -> float:
    """price per step × steps × the multiplier of the largest pair, rounded up to the next
    millionth of a dollar (docs/fal-trainer.md, "Pricing")."""
    multiplier = REFERENCE_MULTIPLIERS[max(1, min(4, inputs_per_pair))]
    micro_usd = steps * price_per_step * multiplier * _MICRO
    return math.ceil(round(micro_usd, 6)) / _MICRO


def sample_cost_usd(inputs: list[InputRef]) -> float:
    """The sample edit's price: one output at the first input's size, as /edit would make it."""
    width, height = match_input_size(inputs[0].width, inputs[0].height)
    return estimate_cost_usd(len(inputs), width, height, 1)


_STEP = re.compile(r"\bsteps?\b\D{0,3}?(\d+)\s*(?:/|of)\s*(\d+)", re.IGNORECASE)
_TQDM = re.compile(r"\|\s*(\d+)/(\d+)\s*\[")


def read_progress(
    entries: Iterable[LogEntry], last: tuple[int, int] | None = None
) -> tuple[int, int] | None:
    """The furthest (step, of) any log line reports, starting from `last` (docs/fal-trainer.md,
    "Progress in the logs")."""
    best = last
    for entry in entries:
        match = _STEP.search(entry.message) or _TQDM.search(entry.message)
        if match is None:
            continue
        done, total = int(match[1]), int(match[2])
        if total <= 0 or done > total:
            continue
        if best is None or done > best[0] or total != best[1]:
            best = (done, total)
    return best
