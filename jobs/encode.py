"""Makes result files fit the channel's upload limit by re-encoding them (WebP, then JPEG)."""

from __future__ import annotations

import io

from PIL import Image

from jobs.publisher import ResultImage

# Discord counts the multipart request; leave room for the JSON payload and part headers.
_OVERHEAD = 64 * 1024


def total_size(images: list[ResultImage]) -> int:
    return sum(len(image.data) for image in images)


def _reencode(image: ResultImage, fmt: str, quality: int, scale: float) -> ResultImage:
    with Image.open(io.BytesIO(image.data)) as source:
        picture = source.convert("RGB") if fmt == "JPEG" else source.copy()
    if scale < 1.0:
        size = (max(1, int(picture.width * scale)), max(1, int(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.save(out, fmt, quality=quality)
    ext = "jpg" if fmt == "JPEG" else "webp"
    stem = image.filename.rsplit(".", 1)[0]
    return ResultImage(
        data=out.getvalue(),
        filename=f"{stem}.{ext}",
        content_type=f"image/{'jpeg' if fmt == 'JPEG' else 'webp'}",
        width=picture.width,
        height=picture.height,
        spoiler=image.spoiler,
    )


def fit_to_limit(images: list[ResultImage], limit: int) -> tuple[list[ResultImage], bool]:
    """Return images whose total fits `limit` bytes and whether any was re-encoded."""
    budget = max(1, limit - _OVERHEAD)
    if total_size(images) <= budget:
        return images, False
    attempts = [
        ("WEBP", 90, 1.0),
        ("WEBP", 80, 1.0),
        ("JPEG", 85, 1.0),
        ("JPEG", 75, 1.0),
        ("JPEG", 75, 0.75),
        ("JPEG", 70, 0.5),
        ("JPEG", 60, 0.35),
    ]
    candidate = images
    for fmt, quality, scale in attempts:
        candidate = [_reencode(image, fmt, quality, scale) for image in images]
        if total_size(candidate) <= budget:
            return candidate, True
    return candidate, True
