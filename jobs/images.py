"""Checks a member's attachment before anything is spent on it: type, size, pixels, animation.

Decoding happens on Pillow's header first, so a decompression bomb is refused before its
pixels are ever allocated.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from jobs.errors import BadRequest

ALLOWED_FORMATS: dict[str, str] = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
MIN_SIDE = 64

# Formats members try that are not images we take, by their magic bytes: a name for the message.
_NOT_IMAGES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1a\x45\xdf\xa3", "a video (WebM/MKV)"),
    (b"OggS", "an audio file"),
    (b"ID3", "an MP3"),
    (b"GIF87a", ""),  # handled by Pillow
)


@dataclass(frozen=True, slots=True)
class ImageInfo:
    data: bytes
    sha256: str
    content_type: str
    extension: str
    width: int
    height: int

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1_000_000


def _describe_non_image(data: bytes) -> str | None:
    head = data[:512].lstrip()
    for magic, name in _NOT_IMAGES:
        if name and data.startswith(magic):
            return name
    lowered = head.lower()
    if lowered.startswith(b"<?xml") or b"<svg" in lowered:
        return "an SVG (vector) file"
    if lowered.startswith((b"<!doctype html", b"<html")):
        return "a web page"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc"):
        return "a HEIC photo"
    if data[4:8] == b"ftyp":
        return "a video (MP4/MOV)"
    if data[:4] in (b"RIFF",) and data[8:12] == b"AVI ":
        return "a video (AVI)"
    return None


def human_bytes(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def _mp(pixels: float) -> str:
    return f"{pixels / 1e6:.1f}".removesuffix(".0") + " MP"


def inspect_image(
    data: bytes,
    label: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageInfo:
    """Validate one attachment; `label` names it in messages ("image2")."""
    if not data:
        raise BadRequest(f"{label} is empty (0 bytes). Attach the image again.")
    if len(data) > max_bytes:
        raise BadRequest(
            f"{label} is {human_bytes(len(data))}; the limit is {human_bytes(max_bytes)}."
        )
    other = _describe_non_image(data)
    if other:
        raise BadRequest(f"{label} is {other}, not an image. Send a PNG, JPEG, WebP or GIF.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=tuple(ALLOWED_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadRequest(
            f"{label} has far more pixels than the limit of {_mp(max_pixels)}. Scale it down first."
        ) from None
    except UnidentifiedImageError:
        raise BadRequest(
            f"{label} is not an image I can read. Send a PNG, JPEG, WebP or GIF."
        ) from None
    except (OSError, ValueError, SyntaxError):
        raise BadRequest(f"{label} is damaged and can't be opened. Export it again.") from None
    with image:
        width, height = image.size
        fmt = image.format or ""
        if width * height > max_pixels:
            raise BadRequest(
                f"{label} is {width}×{height} pixels ({_mp(width * height)}); "
                f"the limit is {_mp(max_pixels)}. Scale it down first."
            )
        if min(width, height) < MIN_SIDE:
            raise BadRequest(
                f"{label} is only {width}×{height} pixels; each side needs at least {MIN_SIDE}."
            )
        if getattr(image, "is_animated", False) and getattr(image, "n_frames", 1) > 1:
            raise BadRequest(f"{label} is an animated image; send a still image.")
        try:
            image.load()  # a truncated file fails here, after the pixel cap was checked
        except (OSError, ValueError, SyntaxError):
            raise BadRequest(
                f"{label} is damaged or cut off and can't be decoded. Export it again."
            ) from None
    content_type = ALLOWED_FORMATS[fmt]
    extension = "jpg" if fmt == "JPEG" else fmt.lower()
    return ImageInfo(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        content_type=content_type,
        extension=extension,
        width=width,
        height=height,
    )
