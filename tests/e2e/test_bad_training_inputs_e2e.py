"""Every way a training's pairs or options can be wrong is refused before anything is spent,
privately, naming the file it is about: nothing uploaded to train, no job, no charge, and the
bot serves the next request normally. The checks every row gets are in
tests/harness/bad_inputs.py."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from tests.harness.bad_inputs import (
    Act,
    Answer,
    Desk,
    Row,
    check_row,
    check_table,
    open_desk,
    row_id,
)
from tests.harness.e2e import World
from tests.harness.images import animated_gif, png
from tests.harness.pairs import lying_about_size, pair_files, with_symlink, zip_of


def train(zipped: bytes | None, *, raw: bool = False, **options: Any) -> Act:
    """carol runs /admin lora train with this zip (None: from the draft set)."""

    async def act(desk: Desk) -> Answer:
        files = {"pairs": desk.file(zipped, "pairs.zip")} if zipped is not None else None
        command_options = {"name": "water", **options}
        if raw:
            return await desk.raw("carol", "admin lora train", command_options, files=files)
        return await desk.slash("carol", "admin lora train", command_options, files=files)

    return act


def five(**changes: bytes | None) -> bytes:
    """Five good pairs (64 KB of PNGs), with some files replaced (bytes) or left out (None)."""
    files: dict[str, bytes] = pair_files(5)
    for name, data in changes.items():
        name = name.replace("__", ".")
        if data is None:
            files.pop(name, None)
        else:
            files[name] = data
    return zip_of(files)


def gif_frame() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (1024, 1024), (9, 9, 9)).save(out, "GIF")
    return out.getvalue()


def bomb() -> bytes:
    return zip_of({**pair_files(5), "p01_start.png": b"\0" * (8 * 1024 * 1024)})


def many_files() -> bytes:
    return zip_of({f"f{i:04d}_start.png": b"" for i in range(2_001)})


def too_many_pairs() -> bytes:
    files: dict[str, bytes] = {}
    for i in range(301):
        files[f"q{i:03d}_start.png"] = b""
        files[f"q{i:03d}_end.png"] = b""
    return zip_of(files)


def entries(*names: str) -> bytes:
    return zip_of([*pair_files(5).items(), *((name, png()) for name in names)])


async def budget_5(desk: Desk) -> None:
    await desk.set(monthly_budget_usd=5.0)


async def no_budget(desk: Desk) -> None:
    await desk.set(monthly_budget_usd=0.0)


ROWS: list[Row] = [
    Row("not a zip", "carol", train(b"hello, I am text"), "`pairs.zip` isn't a zip archive"),
    Row(
        "absolute path",
        "carol",
        train(entries("/etc/p06_start.png")),
        "`/etc/p06_start.png` has an absolute path.",
    ),
    Row(
        "path climbing out with ..",
        "carol",
        train(entries("../p06_start.png")),
        "`../p06_start.png` climbs out of the archive",
    ),
    Row(
        "symbolic link",
        "carol",
        train(with_symlink(pair_files(5), "p06_start.png", "/etc/passwd")),
        "`p06_start.png` is a link",
    ),
    Row(
        "archive inside the archive",
        "carol",
        train(zip_of({**pair_files(5), "more.zip": zip_of(pair_files(1))})),
        "`more.zip` is an archive inside the archive",
    ),
    Row(
        "archive disguised as an image",
        "carol",
        train(five(p03_start__png=zip_of(pair_files(1)))),
        "`p03_start.png` is an archive inside",
    ),
    Row("too many files", "carol", train(many_files()), "holds 2,001 files; the limit is 2,000."),
    Row(
        "declared size beyond the total",
        "carol",
        train(lying_about_size(zip_of(pair_files(5)), "p01_start.png", 2**31)),
        "unpacks to 2048.0 MB; the limit is 512.0 MB.",
    ),
    Row("ratio bomb", "carol", train(bomb()), "that ratio looks like a zip bomb"),
    Row(
        "start without its end",
        "carol",
        train(five(p03_end__png=None)),
        "`p03_start.png` has no end image (`p03_end.png`).",
    ),
    Row(
        "end without its start",
        "carol",
        train(five(p04_start__png=None)),
        "`p04_end.png` has no start image (`p04_start.png`).",
    ),
    Row(
        "two starts for one pair",
        "carol",
        train(five(p02_start__jpg=png())),
        "are both the start of pair `p02`",
    ),
    Row(
        "caption without a pair",
        "carol",
        train(five(lonely__txt=b"paint it")),
        "`lonely.txt` belongs to no pair.",
    ),
    Row(
        "a file outside fal's layout",
        "carol",
        train(five(notes__md=b"# my pairs")),
        "`notes.md` isn't part of fal's layout",
    ),
    Row(
        "an image that isn't one",
        "carol",
        train(five(p02_start__png=b"these are not pixels at all")),
        "`p02_start.png` is not an image I can read.",
    ),
    Row(
        "a format the trainer doesn't take (by name)",
        "carol",
        train(five(p01_start__png=None, p01_start__bmp=png())),
        "`p01_start.bmp`: .bmp isn't a format the trainer takes",
    ),
    Row(
        "a GIF under a .png name",
        "carol",
        train(five(p01_end__png=gif_frame())),
        "`p01_end.png` is a GIF; the trainer takes PNG, JPEG or WebP.",
    ),
    Row(
        "an animated image",
        "carol",
        train(five(p01_end__png=animated_gif())),
        "`p01_end.png` is an animated image",
    ),
    Row(
        "a side under 512 px",
        "carol",
        train(five(p05_end__png=png(1024, 400))),
        "`p05_end.png` is 1024×400; each side needs at least 512 px.",
    ),
    Row(
        "an instruction that isn't UTF-8",
        "carol",
        train(five(p01__txt=b"\xff\xfe\x00 broken")),
        "`p01.txt` isn't UTF-8 text.",
    ),
    Row(
        "too few pairs",
        "carol",
        train(zip_of(pair_files(3))),
        "There are 3 pairs; a training needs at least 5",
    ),
    Row(
        "too many pairs",
        "carol",
        train(too_many_pairs()),
        "There are 301 pairs; the most one training takes is 300.",
    ),
    Row(
        "pairs without instructions and no caption",
        "carol",
        train(zip_of(pair_files(5, captions=False))),
        "5 pairs have no instruction (ROOT.txt) and no caption option was given",
    ),
    Row(
        "a name already taken",
        "carol",
        train(zip_of(pair_files(5)), name="clay"),
        "A LoRA named `clay` already exists here.",
    ),
    Row(
        "an invalid name",
        "carol",
        train(zip_of(pair_files(5)), name="water colour!"),
        "isn't a valid LoRA name",
    ),
    Row(
        "a caption over 1,000 characters",
        "carol",
        train(zip_of(pair_files(5)), caption="x" * 1001),
        "The caption is 1,001 characters; the limit is 1,000.",
    ),
    Row(
        "a description over 200 characters",
        "carol",
        train(zip_of(pair_files(5)), description="y" * 201),
        "a trained LoRA's may have 200",
    ),
    Row(
        "steps out of range (raw)",
        "carol",
        train(zip_of(pair_files(5)), raw=True, steps=50),
        "`steps` must be between 100 and 10,000; you gave 50.",
    ),
    Row(
        "no zip and no draft set",
        "carol",
        train(None),
        "Attach a zip of pairs (`pairs:`), or build a draft set first",
    ),
    Row(
        "more than the budget has left",
        "carol",
        train(zip_of(pair_files(5))),
        "This training (about $11.86 with its sample) would take the server past its $5.00 "
        "monthly budget",
        setup=budget_5,
        teardown=no_budget,
    ),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def desk(module_world: World) -> Desk:
    """One bot for the whole table; see tests/harness/bad_inputs.py."""
    return await open_desk(module_world)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("row", ROWS, ids=row_id)
async def test_bad_training_input(desk: Desk, row: Row, request: pytest.FixtureRequest) -> None:
    await check_row(desk, row, request.node)
    assert not [
        job for job in desk.world.fal.jobs.values() if job.endpoint.startswith("fal-ai/flux-2-tr")
    ], "a training reached fal"
    assert not [
        path
        for path, stored in desk.world.fal.files.items()
        if stored.content_type == "application/zip"
    ], "pairs were uploaded"


def test_the_table_keeps_every_row() -> None:
    check_table(ROWS, at_least=30)


def test_rows_use_real_zip_layouts() -> None:
    """The zips the rows build open as zips (so each row tests what its name says)."""
    assert zipfile.is_zipfile(io.BytesIO(five()))
