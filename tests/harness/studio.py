"""What studio tests share: starting a sweep as a member, reading its sheet back (cells by their
place on the sheet, labels drawn as the bot draws them), and the colours the fal emulator gives
each cell."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageChops

from emulators.discord_emulator.interactions import Interaction
from emulators.discord_emulator.messages import Message
from emulators.fal_emulator.images import expected_pixel
from jobs.compose import label_strip, sheet_boxes, tile_size
from tests.harness.e2e import World
from tests.harness.images import png

INPUT_RGB = (200, 40, 40)
RESULT_TIMEOUT = 20.0


async def sweep(
    world: World,
    member: str = "alice",
    channel: str = "general",
    *,
    image: bytes | None = None,
    prompt: str = "make it clay",
    **options: Any,
) -> Interaction:
    """/sweep as Discord's client sends it (`from`/`to` spelled as on the wire)."""
    emu = world.emu
    attachment = emu.attachment(image if image is not None else png(640, 480, INPUT_RGB), "in.png")
    return await emu.slash(
        emu.member(member),
        emu.channel(channel),
        "sweep",
        {"prompt": prompt, **options},
        attachments={"image": attachment},
    )


def is_sheet(message: Message) -> bool:
    return (
        bool(message.files)
        and bool(message.embeds)
        and (str(message.embeds[0].get("title", "")).startswith("Sweep #"))
    )


async def sheet(world: World, channel: str = "general") -> Message:
    return await world.emu.wait_for_message(
        world.emu.channel(channel), is_sheet, timeout=RESULT_TIMEOUT
    )


def picture(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as opened:
        return opened.convert("RGB")


def cell_colours(message: Message, cells: int, output: tuple[int, int]) -> list[tuple[int, ...]]:
    """The colour of each cell's image on the sheet, in reading order, sampled a quarter in
    from its top left corner (away from the note a failed cell carries in its middle)."""
    _, data, _ = message.files[0]
    image = picture(data)
    size, boxes = sheet_boxes(cells, tile_size(*output))
    assert image.size == size, (image.size, size)
    points = [
        (box.image.left + box.image.size[0] // 4, box.image.top + box.image.size[1] // 4)
        for box in boxes
    ]
    return [tuple(image.getpixel(point)) for point in points]


def labels_match(message: Message, labels: list[str], output: tuple[int, int]) -> list[bool]:
    """For each cell, whether its label area shows exactly `labels[i]` as the bot draws it."""
    _, data, _ = message.files[0]
    image = picture(data)
    tile = tile_size(*output)
    _, boxes = sheet_boxes(len(labels), tile)
    found = []
    for box, label in zip(boxes, labels, strict=True):
        drawn = image.crop(box.label.tuple())
        found.append(ImageChops.difference(drawn, label_strip(label, tile[0])).getbbox() is None)
    return found


def expected(
    seed: int, loras: list[tuple[str, float]], rgb: tuple[int, int, int] = INPUT_RGB
) -> tuple[int, int, int]:
    """The colour of an output of (uniform) `rgb` made with `seed` and these (path, scale)."""
    return expected_pixel(rgb, seed, 0, loras)


def job_id_of(text: str) -> int:
    return int(text.split("#", 1)[1].split()[0].rstrip(":.,"))
