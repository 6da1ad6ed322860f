"""Zips of before/after pairs in fal's layout (ROOT_start.EXT, ROOT_end.EXT, optional
ROOT_start2..4.EXT and ROOT.txt), and zips that break one rule at a time."""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Iterable

from tests.harness.images import png

START = (200, 40, 40)
END = (40, 40, 200)


def pair_files(
    count: int = 15,
    *,
    size: tuple[int, int] = (1024, 1024),
    captions: bool = True,
    extra_inputs: int = 0,
    start: tuple[int, int, int] = START,
    end: tuple[int, int, int] = END,
) -> dict[str, bytes]:
    """File name → bytes for `count` pairs; each start and end is one uniform colour, so a
    test can tell them apart in a picture."""
    before, after = png(*size, colour=start), png(*size, colour=end)
    files: dict[str, bytes] = {}
    for index in range(1, count + 1):
        root = f"p{index:02d}"
        files[f"{root}_start.png"] = before
        for extra in range(2, 2 + extra_inputs):
            files[f"{root}_start{extra}.png"] = png(*size, colour=(10 * extra, 120, 60))
        files[f"{root}_end.png"] = after
        if captions:
            files[f"{root}.txt"] = b"paint it blue"
    return files


def zip_of(
    files: dict[str, bytes] | Iterable[tuple[str, bytes]],
    *,
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    out = io.BytesIO()
    items = files.items() if isinstance(files, dict) else files
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in items:
            archive.writestr(name, data)
    return out.getvalue()


def pairs_zip(count: int = 15, **options: object) -> bytes:
    return zip_of(pair_files(count, **options))  # type: ignore[arg-type]


def with_symlink(files: dict[str, bytes], name: str, target: str) -> bytes:
    """A zip holding `files` and a symbolic link `name` → `target` (as `zip -y` stores it)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for file_name, data in files.items():
            archive.writestr(file_name, data)
        link = zipfile.ZipInfo(name)
        link.create_system = 3  # Unix
        link.external_attr = (0o120777 << 16) | 0x20
        archive.writestr(link, target)
    return out.getvalue()


def lying_about_size(data: bytes, name: str, claimed: int) -> bytes:
    """The zip with `name`'s uncompressed size in the central directory changed to `claimed`
    (a declared size far beyond the real one, as crafted archives do)."""
    raw = bytearray(data)
    encoded = name.encode()
    at = raw.find(b"PK\x01\x02")
    while at != -1:
        name_length = struct.unpack_from("<H", raw, at + 28)[0]
        if raw[at + 46 : at + 46 + name_length] == encoded:
            struct.pack_into("<I", raw, at + 24, claimed)
            return bytes(raw)
        at = raw.find(b"PK\x01\x02", at + 4)
    raise ValueError(f"{name} is not in the archive")
