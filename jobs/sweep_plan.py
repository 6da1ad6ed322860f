"""What a sweep runs: one seed over a LoRA's scales (from → to in 4–8 even steps), or over every
on/off combination of a stack of two or three LoRAs. Pure: no I/O, checked before anything is
downloaded, uploaded or spent."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from jobs.errors import BadRequest
from jobs.request import MAX_LORAS, SCALE_RANGE, EditRequest, RecipeLora

Mode = Literal["scale", "combinations"]
MODES: tuple[Mode, ...] = ("scale", "combinations")
CELLS_RANGE = (4, 8)
DEFAULT_FROM = 0.25
DEFAULT_TO = 1.5
DEFAULT_CELLS = 6
NO_LORA = "no LoRA"


class SweepSpec(BaseModel):
    """What the member asked for; None: the default."""

    mode: Mode = "scale"
    lora: str | None = None  # the LoRA whose scale is swept
    start: float | None = None
    stop: float | None = None
    cells: int | None = None


class SweepRecipe(BaseModel):
    """Stored with the sweep: how its cells differ, and the recipe they share (cell 1's)."""

    mode: Mode
    lora: str | None = None
    start: float | None = None
    stop: float | None = None
    labels: list[str]
    request: EditRequest
    cost_usd: float = 0.0
    combined: list[str] = Field(default_factory=list)  # combinations: the stack, in order


@dataclass(frozen=True, slots=True)
class PlannedCell:
    label: str
    loras: list[RecipeLora]


def parse_mode(text: str | None) -> Mode:
    word = (text or "scale").strip().lower()
    for mode in MODES:
        if mode.startswith(word) and word:
            return mode
    raise BadRequest(f"The mode is `scale` or `combinations`; you gave `{word[:20]}`.")


def check_spec(spec: SweepSpec) -> SweepSpec:
    """Ranges and counts, in the member's words, before anything is resolved or downloaded."""
    if spec.mode == "combinations":
        return spec
    low, high = SCALE_RANGE
    start = DEFAULT_FROM if spec.start is None else spec.start
    stop = DEFAULT_TO if spec.stop is None else spec.stop
    for name, value in (("from", start), ("to", stop)):
        if math.isnan(value) or not low <= value <= high:
            raise BadRequest(f"`{name}` must be between {low:g} and {high:g}; you gave {value:g}.")
    if start == stop:
        raise BadRequest(f"`from` and `to` are both {start:g}: a sweep needs two different scales.")
    cells = DEFAULT_CELLS if spec.cells is None else spec.cells
    if not CELLS_RANGE[0] <= cells <= CELLS_RANGE[1]:
        raise BadRequest(
            f"A sweep has {CELLS_RANGE[0]} to {CELLS_RANGE[1]} cells; you asked for {cells}."
        )
    return spec.model_copy(update={"start": start, "stop": stop, "cells": cells})


def scales(start: float, stop: float, cells: int) -> list[float]:
    """`cells` evenly spaced scales from `start` to `stop`, both included, rounded to 0.001."""
    step = (stop - start) / (cells - 1)
    return [round(start + step * index, 3) for index in range(cells)]


def plan_scales(loras: list[RecipeLora], swept: int, spec: SweepSpec) -> list[PlannedCell]:
    """One cell per scale of `loras[swept]`; the other LoRAs keep theirs."""
    assert spec.start is not None and spec.stop is not None and spec.cells is not None
    name = loras[swept].name
    planned = []
    for scale in scales(spec.start, spec.stop, spec.cells):
        cell = [
            lora.model_copy(update={"scale": scale}) if index == swept else lora
            for index, lora in enumerate(loras)
        ]
        planned.append(PlannedCell(f"{name} {scale:g}", cell))
    return planned


def plan_combinations(loras: list[RecipeLora]) -> list[PlannedCell]:
    """Every on/off combination of the stack, at its scales: none, each alone, each pair, all."""
    if not 2 <= len(loras) <= MAX_LORAS:
        raise BadRequest(
            "Combinations need two or three LoRAs (two make 4 cells, three make 8); "
            f"this recipe has {len(loras)}."
        )
    planned = []
    for size in range(len(loras) + 1):
        for chosen in itertools.combinations(loras, size):
            label = " + ".join(lora.name for lora in chosen) or NO_LORA
            planned.append(PlannedCell(label, list(chosen)))
    return planned


def range_text(recipe: SweepRecipe) -> str:
    """`clay` 0.25 → 1.5 in 6 cells, or the combinations of `clay`, `ink`."""
    if recipe.mode == "combinations":
        stack = ", ".join(f"`{name}`" for name in recipe.combined)
        return f"on/off combinations of {stack} ({len(recipe.labels)} cells)"
    return f"`{recipe.lora}` {recipe.start:g} → {recipe.stop:g} in {len(recipe.labels)} cells"
