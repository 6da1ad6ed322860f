"""Pillow helpers: decode inputs, render outputs that visibly derive from the first input.

An output is input 1 resized to the requested size and blended with a colour chosen by the
seed, the image's index and the LoRAs with their scales (as a model's output changes with a
LoRA's strength), so a test can check where an output came from and which seed and LoRAs made
it (`expected_pixel`). A LoRA at scale 0 does nothing, as on the model.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

TINT_ALPHA = 0.25

FORMATS: dict[str, tuple[str, str, str]] = {
    # output_format: (Pillow format, content type, extension)
    "png": ("PNG", "image/png", ".png"),
    "jpeg": ("JPEG", "image/jpeg", ".jpg"),
    "webp": ("WEBP", "image/webp", ".webp"),
}


class ImageLoadError(Exception):
    pass


@dataclass(frozen=True)
class RenderedImage:
    data: bytes
    content_type: str
    extension: str
    width: int
    height: int


LoraWeights = Sequence[tuple[str, float]]
"""(path, scale) of each LoRA of a request, in the request's order."""


def tint_for(seed: int, index: int, loras: LoraWeights = ()) -> tuple[int, int, int]:
    active = [(path, float(scale)) for path, scale in loras if scale]
    key = f"{seed}:{index}" if not active else f"{seed}:{index}:{json.dumps(active)}"
    digest = hashlib.sha256(key.encode()).digest()
    return digest[0], digest[1], digest[2]


def expected_pixel(
    source_rgb: tuple[int, int, int], seed: int, index: int = 0, loras: LoraWeights = ()
) -> tuple[int, int, int]:
    """The colour an output pixel has where the (uniform) input had `source_rgb`: the same
    Pillow blend on one pixel, so rounding matches exactly."""
    source = Image.new("RGB", (1, 1), source_rgb)
    tint = Image.new("RGB", (1, 1), tint_for(seed, index, loras))
    tinted = Image.blend(source, tint, TINT_ALPHA)
    pixel = tinted.getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return pixel[0], pixel[1], pixel[2]


def decode_image(data: bytes) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            return opened.convert("RGB")
    except Exception as error:  # Pillow raises many types for bad data
        raise ImageLoadError(str(error)) from error


def render_output(
    source: Image.Image,
    size: tuple[int, int],
    seed: int,
    index: int,
    output_format: str,
    loras: LoraWeights = (),
) -> RenderedImage:
    pil_format, content_type, extension = FORMATS[output_format]
    resized = source.resize(size, Image.Resampling.BILINEAR)
    tint = Image.new("RGB", size, tint_for(seed, index, loras))
    tinted = Image.blend(resized, tint, TINT_ALPHA)
    buffer = io.BytesIO()
    tinted.save(buffer, format=pil_format)
    return RenderedImage(buffer.getvalue(), content_type, extension, size[0], size[1])


def parse_data_uri(uri: str) -> tuple[str, bytes]:
    header, _, payload = uri.partition(",")
    mime = header.removeprefix("data:").split(";")[0] or "text/plain"
    if header.endswith(";base64"):
        return mime, base64.b64decode(payload)
    return mime, urllib.parse.unquote_to_bytes(payload)


def data_uri(data: bytes, content_type: str) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


def make_image(
    color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 48), fmt: str = "PNG"
) -> bytes:
    """A small uniform test image."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()
