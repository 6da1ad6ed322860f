"""A training's sample as one picture: before | result | expected, each panel labelled, so a
manager sees at a glance how close the new LoRA gets to the pair it learned from."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont

PANEL_HEIGHT_MAX = 768
LABEL_HEIGHT = 48
GAP = 8
BACKGROUND = (30, 31, 34)
TEXT = (242, 243, 245)
LABELS = ("before", "result", "expected")


def _panel(data: bytes, height: int) -> Image.Image:
    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
    width = max(1, round(image.width * height / image.height))
    return image.resize((width, height), Image.Resampling.BILINEAR)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def compose(before: bytes, result: bytes, expected: bytes) -> tuple[bytes, int, int]:
    """One PNG (and its width and height): the three images side by side at the result's
    height (at most 768 px), in that order, each under its label. CPU work: call it off the
    event loop."""
    with Image.open(io.BytesIO(result)) as probe:
        height = min(PANEL_HEIGHT_MAX, probe.height)
    panels = [_panel(data, height) for data in (before, result, expected)]
    width = sum(panel.width for panel in panels) + GAP * (len(panels) + 1)
    sheet = Image.new("RGB", (width, LABEL_HEIGHT + height + GAP), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font(28)
    x = GAP
    for label, panel in zip(LABELS, panels, strict=True):
        sheet.paste(panel, (x, LABEL_HEIGHT))
        box = draw.textbbox((0, 0), label, font=font)
        text_x = x + (panel.width - (box[2] - box[0])) // 2
        text_y = (LABEL_HEIGHT - (box[3] - box[1])) // 2 - box[1]
        draw.text((text_x, text_y), label, fill=TEXT, font=font)
        x += panel.width + GAP
    out = io.BytesIO()
    sheet.save(out, "PNG")
    return out.getvalue(), sheet.width, sheet.height


THUMB = 160
NUMBER_WIDTH = 64
ARROW_WIDTH = 40


def _thumb(data: bytes | None) -> Image.Image:
    tile = Image.new("RGB", (THUMB, THUMB), (54, 57, 63))
    if data is None:
        return tile
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("RGB")
    except (OSError, ValueError):
        return tile
    image.thumbnail((THUMB, THUMB), Image.Resampling.BILINEAR)
    tile.paste(image, ((THUMB - image.width) // 2, (THUMB - image.height) // 2))
    return tile


def pairs_sheet(rows: list[tuple[int, list[bytes | None]]]) -> bytes:
    """A draft set's page as one PNG: per row the pair's number, its start images, an arrow
    and its end image (the last of each row's images), as 160 px thumbnails. A missing image
    is a grey tile."""
    widest = max(len(images) for _, images in rows)
    width = NUMBER_WIDTH + widest * (THUMB + GAP) + ARROW_WIDTH + GAP
    height = len(rows) * (THUMB + GAP) + GAP
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font(24)
    for index, (position, images) in enumerate(rows):
        y = GAP + index * (THUMB + GAP)
        draw.text((GAP, y + THUMB // 2 - 12), f"#{position}", fill=TEXT, font=font)
        x = NUMBER_WIDTH
        for number, data in enumerate(images):
            if number == len(images) - 1:
                middle = y + THUMB // 2
                draw.line((x + 6, middle, x + ARROW_WIDTH - 10, middle), fill=TEXT, width=3)
                draw.polygon(
                    [
                        (x + ARROW_WIDTH - 6, middle),
                        (x + ARROW_WIDTH - 16, middle - 8),
                        (x + ARROW_WIDTH - 16, middle + 8),
                    ],
                    fill=TEXT,
                )
                x += ARROW_WIDTH
            sheet.paste(_thumb(data), (x, y))
            x += THUMB + GAP
    out = io.BytesIO()
    sheet.save(out, "PNG")
    return out.getvalue()
