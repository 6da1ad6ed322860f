"""Attachment checks: each bad file gets its own clear message."""

from __future__ import annotations

import pytest

from jobs.errors import BadRequest
from jobs.images import inspect_image
from tests.harness import images


def test_png_and_jpeg_are_accepted_with_their_facts() -> None:
    info = inspect_image(images.png(300, 200), "image")
    assert (info.width, info.height, info.content_type, info.extension) == (
        300,
        200,
        "image/png",
        "png",
    )
    assert len(info.sha256) == 64
    assert inspect_image(images.jpeg(), "image").content_type == "image/jpeg"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "image2 is empty (0 bytes)"),
        (b"%PDF-1.7\n1 0 obj", "image2 is a PDF, not an image"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
        (b"hello, I am text", "image2 is not an image I can read"),
        (images.png()[:80], "image2 is damaged"),
        (images.animated_gif(), "image2 is an animated image"),
        (images.bomb_png(), "far more pixels than the limit"),
        (images.png(40, 40), "image2 is only 40×40 pixels"),
    ],
)
def test_bad_files_are_refused_with_a_specific_message(data: bytes, expected: str) -> None:
    with pytest.raises(BadRequest) as info:
        inspect_image(data, "image2")
    assert expected in str(info.value)


def test_byte_and_pixel_caps() -> None:
    with pytest.raises(BadRequest, match="the limit is 1 KB"):
        inspect_image(images.png(), "image", max_bytes=1000)
    with pytest.raises(BadRequest, match=r"640×480 pixels \(0.3 MP\); the limit is 0.1 MP"):
        inspect_image(images.png(), "image", max_pixels=100_000)
