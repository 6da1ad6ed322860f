"""The training's pure parts: the price estimate, progress read from fal's log lines, the
zip the bot sends fal, and the before | result | expected picture."""

from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image

from client.schema import LogEntry
from jobs.pairs import ZipLimits, inspect_pairs, read_zip, write_zip
from jobs.sample_image import compose
from jobs.training import read_progress, training_cost_usd
from tests.harness.images import png
from tests.harness.pairs import pair_files, zip_of


@pytest.mark.parametrize(
    ("steps", "inputs", "expected"),
    [(1000, 1, 11.816), (1000, 2, 19.264), (500, 4, 19.46), (100, 3, 2.8504)],
    ids=["1000 steps, 1 input", "1000 steps, 2 inputs", "500 steps, 4 inputs", "100 steps, 3"],
)
def test_training_cost_follows_the_documented_formula(
    steps: int, inputs: int, expected: float
) -> None:
    assert training_cost_usd(steps, inputs, 0.0056) == pytest.approx(expected, abs=1e-6)


def logs(*messages: str) -> list[LogEntry]:
    return [LogEntry(message=message) for message in messages]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["Training step 300/1000"], (300, 1000)),
        (["step 20 of 100, loss 0.12"], (20, 100)),
        (["Step: 7/50"], (7, 50)),
        (["train:  40%|████      | 400/1000 [01:10<01:45, 5.71it/s]"], (400, 1000)),
        (["Loading weights", "Preparing dataset: 20 pairs"], None),
        (["Training step 300/1000", "Training step 200/1000"], (300, 1000)),
        (["step 1200/1000"], None),
    ],
    ids=["x/y", "x of y", "colon", "tqdm bar", "no progress", "never backwards", "nonsense"],
)
def test_progress_is_read_from_log_lines(
    lines: list[str], expected: tuple[int, int] | None
) -> None:
    assert read_progress(logs(*lines)) == expected


def test_progress_keeps_what_was_seen_before() -> None:
    assert read_progress(logs("Saving checkpoint"), (500, 1000)) == (500, 1000)


def test_the_zip_sent_to_fal_holds_only_checked_files_renamed() -> None:
    files = {
        **pair_files(5, extra_inputs=1),
        "nested/x_start.png": png(1024, 1024),
        "nested/x_end.png": png(1024, 1024),
        "nested/x.txt": b"make it x",
        "__MACOSX/._x_start.png": b"junk",
        ".DS_Store": b"junk",
    }
    limits = ZipLimits()
    pairs, warnings = inspect_pairs(read_zip(zip_of(files), "pairs.zip", limits), limits)
    assert [pair.label for pair in pairs][-1] == "p05"
    assert warnings == ["Only 6 pairs; fal suggests 15–50 good ones."]
    with zipfile.ZipFile(io.BytesIO(write_zip(pairs))) as sent:
        names = sorted(sent.namelist())
        assert sent.read("pair_001.txt") == b"make it x"  # "nested/x" sorts first
    assert len(names) == 5 * 4 + 3  # five pairs with a second input, and nested/x
    assert names[:4] == ["pair_001.txt", "pair_001_end.png", "pair_001_start.png", "pair_002.txt"]
    assert "pair_002_start2.png" in names


def test_the_sample_picture_puts_the_three_images_in_order() -> None:
    before, result, expected = (png(600, 400, c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255)))
    data, width, height = compose(before, result, expected)
    with Image.open(io.BytesIO(data)) as sheet:
        assert sheet.size == (width, height)
        rgb = sheet.convert("RGB")
        middle = height // 2 + 20
        assert [rgb.getpixel((x, middle)) for x in (width // 6, width // 2, 5 * width // 6)] == [
            (255, 0, 0),
            (0, 255, 0),
            (0, 0, 255),
        ]
