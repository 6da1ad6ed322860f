"""Real image bytes for tests, made with Pillow."""

from __future__ import annotations

import io

from PIL import Image


def png(width: int = 640, height: int = 480, colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def jpeg(
    width: int = 640, height: int = 480, colour: tuple[int, int, int] = (40, 200, 40)
) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "JPEG")
    return out.getvalue()


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (128, 128), c) for c in ("red", "blue", "green")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100)
    return out.getvalue()


def bomb_png(side: int = 20_000) -> bytes:
    """A tiny file that decodes to side×side pixels."""
    out = io.BytesIO()
    Image.new("1", (side, side)).save(out, "PNG")
    return out.getvalue()


def noisy_png(width: int, height: int, seed: int = 1) -> bytes:
    """Incompressible pixels: a PNG whose byte size grows with its area."""
    import random

    rng = random.Random(seed)
    image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()
