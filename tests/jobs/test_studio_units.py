"""The pure parts of the studio features: which cells a sweep runs and how they are labelled,
how a preset's LoRAs and the member's meet, and the pictures (sheet, pair, flip)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from jobs.compose import (
    FAILED,
    PAPER,
    SheetCell,
    contact_sheet,
    flip,
    grid,
    pair_boxes,
    sheet_boxes,
    side_by_side,
    tile_size,
)
from jobs.errors import BadRequest
from jobs.presets import _merge_slots, check_template, template_prompt
from jobs.request import LoraPick, RecipeLora
from jobs.sweep_plan import (
    SweepSpec,
    check_spec,
    parse_mode,
    plan_combinations,
    plan_scales,
    scales,
)
from tests.harness.images import noisy_png, png


def lora(name: str, scale: float = 1.0, id: int = 1) -> RecipeLora:
    return RecipeLora(id=id, name=name, path=f"owner/{name}", scale=scale, version=1)


@pytest.mark.parametrize(
    ("start", "stop", "cells", "expected"),
    [
        (0.25, 1.5, 6, [0.25, 0.5, 0.75, 1.0, 1.25, 1.5]),
        (0.0, 2.0, 5, [0.0, 0.5, 1.0, 1.5, 2.0]),
        (1.5, 0.25, 4, [1.5, 1.083, 0.667, 0.25]),
        (0.1, 0.8, 8, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]),
    ],
    ids=["default", "zero to two", "descending", "eight cells"],
)
def test_scales_are_even_and_include_both_ends(
    start: float, stop: float, cells: int, expected: list[float]
) -> None:
    assert scales(start, stop, cells) == expected


def test_defaults_and_checks_of_a_sweep() -> None:
    spec = check_spec(SweepSpec(lora="clay"))
    assert (spec.start, spec.stop, spec.cells) == (0.25, 1.5, 6)
    for bad, message in [
        (SweepSpec(cells=3), "A sweep has 4 to 8 cells; you asked for 3."),
        (SweepSpec(cells=9), "A sweep has 4 to 8 cells; you asked for 9."),
        (SweepSpec(start=-1), "`from` must be between 0 and 4; you gave -1."),
        (SweepSpec(stop=float("nan")), "`to` must be between 0 and 4; you gave nan."),
        (SweepSpec(start=2, stop=2), "`from` and `to` are both 2"),
    ]:
        with pytest.raises(BadRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
            check_spec(bad)
    assert parse_mode("COMB") == "combinations" and parse_mode(None) == "scale"
    with pytest.raises(BadRequest, match="`scale` or `combinations`"):
        parse_mode("zigzag")


def test_a_scale_sweep_changes_only_the_swept_lora() -> None:
    stack = [lora("clay", 0.8, 1), lora("ink", 1.2, 2)]
    spec = check_spec(SweepSpec(cells=4, start=0.0, stop=1.5))
    planned = plan_scales(stack, 1, spec)
    assert [cell.label for cell in planned] == ["ink 0", "ink 0.5", "ink 1", "ink 1.5"]
    assert [[(x.name, x.scale) for x in cell.loras] for cell in planned] == [
        [("clay", 0.8), ("ink", s)] for s in (0.0, 0.5, 1.0, 1.5)
    ]


def test_combinations_are_every_on_off_mix_in_order() -> None:
    stack = [lora("a", id=1), lora("b", id=2), lora("c", id=3)]
    labels = [cell.label for cell in plan_combinations(stack)]
    assert labels == ["no LoRA", "a", "b", "c", "a + b", "a + c", "b + c", "a + b + c"]
    assert len(plan_combinations(stack[:2])) == 4
    with pytest.raises(BadRequest, match="this recipe has 1"):
        plan_combinations(stack[:1])


@pytest.mark.parametrize(
    ("mine", "expected"),
    [
        ([], [("clay", 0.6), ("ink", 0.8)]),
        ([LoraPick(name="", scale=1.1)], [("clay", 1.1), ("ink", 0.8)]),
        ([LoraPick(name="", scale=None), LoraPick(name="oil")], [("clay", 0.6), ("oil", None)]),
        ([LoraPick(name="INK", scale=2.0)], [("clay", 0.6), ("ink", 2.0)]),
        ([LoraPick(name="oil", scale=1.0)], [("oil", 1.0), ("ink", 0.8)]),
        (
            [LoraPick(name=""), LoraPick(name=""), LoraPick(name="oil")],
            [("clay", 0.6), ("ink", 0.8), ("oil", None)],
        ),
    ],
    ids=[
        "nothing set",
        "a scale alone sets the preset's LoRA there",
        "a LoRA in position 2 replaces the preset's",
        "the preset's LoRA named elsewhere keeps its place",
        "a LoRA in position 1 replaces the preset's",
        "a third LoRA joins",
    ],
)
def test_the_member_sets_and_the_preset_fills(
    mine: list[LoraPick], expected: list[tuple[str, float | None]]
) -> None:
    merged = _merge_slots([("clay", 0.6), ("ink", 0.8)], mine)
    assert [(pick.name.lower(), pick.scale) for pick in merged] == expected


def test_templates() -> None:
    assert check_template("  {prompt}, oil painting ") == "{prompt}, oil painting"
    assert template_prompt("{prompt}, oil", "a cat") == "a cat, oil"
    assert template_prompt(None, "a cat") == "a cat"
    for bad in ("oil painting", "{prompt} {prompt}", "{prompt}" + "x" * 1000):
        with pytest.raises(BadRequest):
            check_template(bad)


def test_grid_and_tiles() -> None:
    assert [grid(n) for n in (4, 5, 6, 7, 8)] == [(4, 1), (3, 2), (3, 2), (4, 2), (4, 2)]
    assert tile_size(688, 512) == (512, 381)
    assert tile_size(300, 200) == (300, 200)  # never upscaled


def test_the_sheet_puts_each_cell_in_its_place_and_draws_failures() -> None:
    colours = [(10 * i, 100, 200) for i in range(5)]
    cells = [SheetCell(f"c{i}", png(688, 512, c)) for i, c in enumerate(colours)]
    cells.insert(2, SheetCell("broken", None, "failed"))
    data = contact_sheet(cells, (688, 512))
    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
    size, boxes = sheet_boxes(6, (512, 381))
    assert image.size == size
    found = [image.getpixel(box.image.centre) for box in boxes]
    assert found == [*colours[:2], FAILED, *colours[2:]]
    assert image.getpixel((1, 1)) == PAPER


def test_the_pair_and_the_flip() -> None:
    before, after = png(640, 480, (200, 0, 0)), png(512, 512, (0, 200, 0))
    with Image.open(io.BytesIO(side_by_side(before, after))) as opened:
        pair = opened.convert("RGB")
    size, left, right = pair_boxes((640, 480), (512, 512))
    assert pair.size == size
    assert pair.getpixel(left.image.centre) == (200, 0, 0)
    assert pair.getpixel(right.image.centre) == (0, 200, 0)
    # One height: the smaller of the two once each is at most 512 on its longest side.
    assert left.image.size[1] == right.image.size[1] == 384

    with Image.open(io.BytesIO(flip(before, after, 10_000_000))) as gif:
        assert gif.n_frames == 2 and gif.info["loop"] == 0
    noisy = noisy_png(1024, 1024)
    small = flip(noisy, noisy, 200_000)
    assert len(small) <= 200_000
    with Image.open(io.BytesIO(small)) as gif:
        assert gif.n_frames == 2
