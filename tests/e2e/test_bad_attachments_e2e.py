"""Bad attachments on /edit answered with their own message, privately, and nothing else
changes: empty, truncated, decompression bombs, over the pixel cap, too small, SVG, PDF,
animated, not an image at all. A PNG named .jpg is accepted: the content is sniffed, not the
name. The checks every row gets are in tests/harness/bad_inputs.py."""

from __future__ import annotations

import functools

import pytest
import pytest_asyncio

from tests.harness.bad_inputs import Answer, Desk, Row, check_row, check_table, open_desk, row_id
from tests.harness.e2e import World
from tests.harness.images import animated_gif, bomb_png, png


@functools.cache
def bomb() -> bytes:
    return bomb_png(20_000)  # 400 MP that compress to a few dozen KB


@functools.cache
def over_cap() -> bytes:
    return bomb_png(7_000)  # 49 MP: under Pillow's bomb guard, over our 40 MP cap


async def sniffed_as_png(desk: Desk, answer: Answer) -> None:
    job_id = int(answer.text.split("#", 1)[1].split()[0])
    job = await desk.world.job_in(job_id, "delivered")
    [ref] = job.request.inputs
    assert ref.content_type == "image/png"  # Discord said image/jpeg (from the name)
    stored = [f for f in desk.world.fal.files.values() if f.data == PNG_AS_JPG]
    assert stored and all(f.content_type == "image/png" for f in stored)


PNG_AS_JPG = png(600, 400, (1, 2, 3))

ROWS: list[Row] = [
    Row(
        "edit: zero-byte image",
        "alice",
        lambda d: d.edit(files={"image": d.file(b"", "empty.png")}),
        "image (empty.png) is empty (0 bytes)",
    ),
    Row(
        "edit: truncated PNG",
        "alice",
        lambda d: d.edit(files={"image": d.file(png()[:300], "cut.png")}),
        "image (cut.png) is damaged or cut off",
    ),
    Row(
        "edit: 20,000 × 20,000 PNG (decompression bomb)",
        "alice",
        lambda d: d.edit(files={"image": d.file(bomb(), "bomb.png")}),
        "image (bomb.png) has far more pixels than the limit of 40 MP",
    ),
    Row(
        "edit: 49 MP PNG over the pixel cap",
        "alice",
        lambda d: d.edit(files={"image": d.file(over_cap(), "big.png")}),
        "image (big.png) is 7000×7000 pixels (49 MP); the limit is 40 MP",
    ),
    Row(
        "edit: 10×10 image",
        "alice",
        lambda d: d.edit(files={"image": d.file(png(10, 10), "tiny.png")}),
        "each side needs at least 64",
    ),
    Row(
        "edit: SVG",
        "alice",
        lambda d: d.edit(
            files={"image": d.file(b'<svg xmlns="http://www.w3.org/2000/svg"/>', "v.svg")}
        ),
        "image (v.svg) is an SVG (vector) file, not an image",
    ),
    Row(
        "edit: PDF",
        "alice",
        lambda d: d.edit(files={"image": d.file(b"%PDF-1.7\n1 0 obj\n", "doc.pdf")}),
        "image (doc.pdf) is a PDF, not an image",
    ),
    Row(
        "edit: animated GIF",
        "alice",
        lambda d: d.edit(files={"image": d.file(animated_gif(), "anim.gif")}),
        "is an animated image; send a still image",
    ),
    Row(
        "edit: text file as image2",
        "alice",
        lambda d: d.edit(files={"image": d.file(png()), "image2": d.file(b"hello", "notes.png")}),
        "image2 (notes.png) is not an image I can read",
    ),
    Row(
        "edit: PNG named .jpg (accepted: content is sniffed, not the name)",
        "alice",
        lambda d: d.edit(files={"image": d.file(PNG_AS_JPG, "photo.jpg", "image/jpeg")}),
        "is on its way",
        accepted=sniffed_as_png,
    ),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def desk(module_world: World) -> Desk:
    """One bot for the whole table; see tests/harness/bad_inputs.py."""
    return await open_desk(module_world)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("row", ROWS, ids=row_id)
async def test_bad_attachment(desk: Desk, row: Row, request: pytest.FixtureRequest) -> None:
    await check_row(desk, row, request.node)


def test_the_table_keeps_every_row() -> None:
    check_table(ROWS, at_least=10)
