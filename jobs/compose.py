"""Pictures made from results: a sweep's labelled contact sheet, a before | after pair, and an
animated flip between the two. Pure Pillow and no I/O: callers run these in a thread.

The geometry (`sheet_boxes`, `pair_boxes`) is public, so whoever reads a picture back knows
where each cell and each label is.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import cache

from PIL import Image, ImageDraw, ImageFont, ImageOps

TILE = 512  # longest side of one cell on a sheet, or of one side of a pair
LABEL_HEIGHT = 44
GAP = 12
FONT_SIZE = 26
PAPER = (255, 255, 255)
INK = (24, 24, 24)
FAILED = (64, 64, 64)
FAILED_INK = (235, 235, 235)
FLIP_MS = 900
FLIP_SCALES = (1.0, 0.75, 0.5, 0.35, 0.25, 0.15)


@dataclass(frozen=True, slots=True)
class Box:
    left: int
    top: int
    right: int
    bottom: int

    @property
    def size(self) -> tuple[int, int]:
        return self.right - self.left, self.bottom - self.top

    @property
    def centre(self) -> tuple[int, int]:
        return (self.left + self.right) // 2, (self.top + self.bottom) // 2

    def tuple(self) -> tuple[int, int, int, int]:
        return self.left, self.top, self.right, self.bottom


@dataclass(frozen=True, slots=True)
class SheetCell:
    """One cell: its label and its image, or None with the reason it has none."""

    label: str
    image: bytes | None
    note: str = "failed"


@dataclass(frozen=True, slots=True)
class CellBoxes:
    label: Box
    image: Box


@cache
def _font(size: int = FONT_SIZE) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _fit_text(text: str, width: int) -> str:
    font = _font()
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text.rstrip() + "…"


def label_strip(text: str, width: int, *, fill: tuple[int, int, int] = PAPER) -> Image.Image:
    """A label as it is drawn on a sheet or a pair: centred, cut with … when too long."""
    strip = Image.new("RGB", (width, LABEL_HEIGHT), fill)
    ink = INK if fill == PAPER else FAILED_INK
    ImageDraw.Draw(strip).text(
        (width / 2, LABEL_HEIGHT / 2),
        _fit_text(text, width - 8),
        font=_font(),
        fill=ink,
        anchor="mm",
    )
    return strip


def tile_size(width: int, height: int, longest: int = TILE) -> tuple[int, int]:
    """An image's size on a sheet: its aspect, the longest side at most `longest`."""
    scale = min(1.0, longest / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def grid(count: int) -> tuple[int, int]:
    """(columns, rows): one row up to four cells, two rows for five to eight."""
    columns = count if count <= 4 else math.ceil(count / 2)
    return columns, math.ceil(count / columns)


def sheet_boxes(count: int, tile: tuple[int, int]) -> tuple[tuple[int, int], list[CellBoxes]]:
    """The sheet's size, and where each cell's label and image go, in reading order."""
    width, height = tile
    columns, rows = grid(count)
    boxes: list[CellBoxes] = []
    for index in range(count):
        left = GAP + (index % columns) * (width + GAP)
        top = GAP + (index // columns) * (LABEL_HEIGHT + height + GAP)
        boxes.append(
            CellBoxes(
                label=Box(left, top, left + width, top + LABEL_HEIGHT),
                image=Box(left, top + LABEL_HEIGHT, left + width, top + LABEL_HEIGHT + height),
            )
        )
    size = (GAP + columns * (width + GAP), GAP + rows * (LABEL_HEIGHT + height + GAP))
    return size, boxes


def _open(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as opened:
        return opened.convert("RGB")


def _fitted(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == size:
        return image
    if abs(image.width / image.height - size[0] / size[1]) < 0.01:
        return image.resize(size, Image.Resampling.LANCZOS)
    return ImageOps.pad(image, size, Image.Resampling.LANCZOS, color=PAPER)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", optimize=False, compress_level=6)
    return out.getvalue()


def contact_sheet(cells: list[SheetCell], output_size: tuple[int, int]) -> bytes:
    """The sheet as a PNG: each cell under its label, in order; a cell without an image is a
    dark tile that says why (failed, hidden by the safety checker)."""
    tile = tile_size(*output_size)
    size, boxes = sheet_boxes(len(cells), tile)
    sheet = Image.new("RGB", size, PAPER)
    for cell, box in zip(cells, boxes, strict=True):
        sheet.paste(label_strip(cell.label, tile[0]), box.label.tuple()[:2])
        if cell.image is not None:
            sheet.paste(_fitted(_open(cell.image), tile), box.image.tuple()[:2])
        else:
            blank = Image.new("RGB", tile, FAILED)
            note = label_strip(cell.note, tile[0], fill=FAILED)
            blank.paste(note, (0, (tile[1] - LABEL_HEIGHT) // 2))
            sheet.paste(blank, box.image.tuple()[:2])
    return _png(sheet)


def pair_boxes(
    before: tuple[int, int], after: tuple[int, int]
) -> tuple[tuple[int, int], CellBoxes, CellBoxes]:
    """A before | after pair: both at the height of the smaller (at most TILE), side by side."""
    height = min(tile_size(*before)[1], tile_size(*after)[1])
    widths = [max(1, round(w * height / h)) for w, h in (before, after)]
    left = CellBoxes(
        label=Box(GAP, GAP, GAP + widths[0], GAP + LABEL_HEIGHT),
        image=Box(GAP, GAP + LABEL_HEIGHT, GAP + widths[0], GAP + LABEL_HEIGHT + height),
    )
    x = GAP * 2 + widths[0]
    right = CellBoxes(
        label=Box(x, GAP, x + widths[1], GAP + LABEL_HEIGHT),
        image=Box(x, GAP + LABEL_HEIGHT, x + widths[1], GAP + LABEL_HEIGHT + height),
    )
    return (x + widths[1] + GAP, GAP * 2 + LABEL_HEIGHT + height), left, right


def side_by_side(before: bytes, after: bytes) -> bytes:
    """The first input and the result, labelled "before" and "after", as one PNG."""
    first, second = _open(before), _open(after)
    size, left, right = pair_boxes(first.size, second.size)
    pair = Image.new("RGB", size, PAPER)
    for picture, boxes, word in ((first, left, "before"), (second, right, "after")):
        pair.paste(label_strip(word, boxes.label.size[0]), boxes.label.tuple()[:2])
        pair.paste(_fitted(picture, boxes.image.size), boxes.image.tuple()[:2])
    return _png(pair)


def flip_frames(before: bytes, after: bytes, scale: float = 1.0) -> list[Image.Image]:
    """Two frames of the result's size (at most TILE, times `scale`): before, then after."""
    second = _open(after)
    width, height = tile_size(*second.size, longest=max(1, round(TILE * scale)))
    frames = []
    for data, word in ((before, "before"), (after, "after")):
        frame = Image.new("RGB", (width, height + LABEL_HEIGHT), PAPER)
        frame.paste(label_strip(word, width), (0, 0))
        frame.paste(_fitted(_open(data), (width, height)), (0, LABEL_HEIGHT))
        frames.append(frame)
    return frames


def flip(before: bytes, after: bytes, max_bytes: int) -> bytes:
    """An animated GIF that flips between before and after, looping; scaled down until it
    fits `max_bytes` (the smallest try is returned if none fits)."""
    data = b""
    for scale in FLIP_SCALES:
        frames = flip_frames(before, after, scale)
        out = io.BytesIO()
        frames[0].save(
            out,
            "GIF",
            save_all=True,
            append_images=frames[1:],
            duration=FLIP_MS,
            loop=0,
            disposal=1,
        )
        data = out.getvalue()
        if len(data) <= max_bytes:
            return data
    return data
