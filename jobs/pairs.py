"""Before/after pairs for a training, checked before anything is spent: a zip in fal's layout
(docs/fal-trainer.md, "The zip layout") read safely, every image decoded, the set's size and
captions checked; and the fresh zip the bot sends fal, from a member's zip or a draft set.

Every refusal names the file it is about. Reading is CPU work on untrusted bytes: run
`read_zip` and `inspect_pairs` off the event loop.
"""

from __future__ import annotations

import io
import re
import stat
import unicodedata
import zipfile
from dataclasses import dataclass, field

from jobs.errors import BadRequest
from jobs.images import ImageInfo, human_bytes, inspect_image

MIN_PAIRS = 5
MAX_PAIRS = 300
FEW_PAIRS = 15  # fal's page suggests 15–50 good pairs
MIN_SIDE = 512
SMALL_SIDE = 1024  # fal upscales smaller images
MAX_STARTS = 4  # ROOT_start plus ROOT_start2..4
CAPTION_MAX = 1000
EXTENSIONS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WebP"}
PROBLEMS_SHOWN = 8
_SIDE = re.compile(r"^(?P<root>.+?)_(?P<side>start[234]?|end)\.(?P<ext>[^./\\]+)$", re.IGNORECASE)
_ARCHIVES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst")
_ARCHIVE_MAGIC = (b"PK\x03\x04", b"\x1f\x8b", b"7z\xbc\xaf", b"Rar!", b"BZh", b"\xfd7zXZ")
_JUNK = ("__MACOSX/",)
_JUNK_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}
RATIO_FLOOR = 1024 * 1024  # entries smaller than this may compress as well as they like


@dataclass(frozen=True, slots=True)
class ZipLimits:
    """How much of a member's zip the bot agrees to look at."""

    max_zip_bytes: int = 200 * 1024 * 1024
    max_files: int = 2_000
    max_total_bytes: int = 512 * 1024 * 1024  # uncompressed, all entries together (in memory)
    max_ratio: int = 100  # uncompressed ÷ compressed, for entries past RATIO_FLOOR
    max_image_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000


@dataclass
class RawPair:
    """One pair's files, not yet decoded. `label` names the pair in messages."""

    label: str
    starts: list[tuple[str, bytes]] = field(default_factory=list)  # (file name, bytes)
    end: tuple[str, bytes] | None = None
    caption: str | None = None


@dataclass(frozen=True, slots=True)
class CheckedPair:
    label: str
    starts: list[ImageInfo]
    end: ImageInfo
    caption: str | None


def named(name: str) -> str:
    """A file name from an archive, safe to echo: no invisible characters or backticks, short."""
    text = "".join(
        ch for ch in name if unicodedata.category(ch) not in {"Cc", "Cf", "Zl", "Zp"} and ch != "`"
    )
    return f"`{text if len(text) <= 60 else text[:59] + '…'}`"


def _refuse(problems: list[str]) -> BadRequest:
    shown = problems[:PROBLEMS_SHOWN]
    more = len(problems) - len(shown)
    text = "\n".join(f"- {problem}" for problem in shown)
    if more:
        text += f"\n- …and {more} more"
    return BadRequest(f"I can't train from these pairs:\n{text}")


def _unsafe_name(name: str) -> str | None:
    parts = re.split(r"[\\/]", name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in parts:
        return "climbs out of the archive (`..` in its path)"
    if any(unicodedata.category(ch) in {"Cc", "Zl", "Zp"} for ch in name):
        return "has control characters in its name"
    return None


def _is_link(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def _entries(archive: zipfile.ZipFile, limits: ZipLimits, zip_name: str) -> list[zipfile.ZipInfo]:
    """The archive's files, after the checks that need no decompression."""
    infos = [
        info
        for info in archive.infolist()
        if not info.is_dir()
        and not info.filename.startswith(_JUNK)
        and info.filename.rsplit("/", 1)[-1] not in _JUNK_NAMES
    ]
    if len(infos) > limits.max_files:
        raise BadRequest(
            f"{zip_name} holds {len(infos):,} files; the limit is {limits.max_files:,}."
        )
    problems: list[str] = []
    total = 0
    for info in infos:
        name = info.filename
        reason = _unsafe_name(name)
        if reason is not None:
            problems.append(f"{named(name)} {reason}.")
        elif _is_link(info):
            problems.append(f"{named(name)} is a link; put the image itself in the zip.")
        elif info.flag_bits & 0x1:
            problems.append(f"{named(name)} is encrypted; zip the pairs without a password.")
        elif name.lower().endswith(_ARCHIVES):
            problems.append(f"{named(name)} is an archive inside the archive; unpack it first.")
        total += info.file_size
        if info.file_size > RATIO_FLOOR and info.file_size > limits.max_ratio * max(
            1, info.compress_size
        ):
            problems.append(
                f"{named(name)} unpacks to {human_bytes(info.file_size)} from "
                f"{human_bytes(info.compress_size)}: that ratio looks like a zip bomb."
            )
    if total > limits.max_total_bytes:
        problems.append(
            f"{zip_name} unpacks to {human_bytes(total)}; the limit is "
            f"{human_bytes(limits.max_total_bytes)}."
        )
    if problems:
        raise _refuse(problems)
    return infos


def _group(infos: list[zipfile.ZipInfo]) -> tuple[dict[str, dict[str, zipfile.ZipInfo]], list[str]]:
    """Files by pair root and side ("start", "start2"…, "end", "txt"), and the problems."""
    groups: dict[str, dict[str, zipfile.ZipInfo]] = {}
    problems: list[str] = []
    for info in infos:
        path = info.filename
        folder, _, base = path.rpartition("/")
        prefix = f"{folder}/" if folder else ""
        if base.lower().endswith(".txt"):
            root, side = prefix + base[:-4], "txt"
        else:
            match = _SIDE.match(base)
            if match is None:
                problems.append(
                    f"{named(path)} isn't part of fal's layout (ROOT_start.EXT, ROOT_end.EXT, "
                    "ROOT_start2..4.EXT, ROOT.txt); rename or remove it."
                )
                continue
            ext = match["ext"].lower()
            if ext not in EXTENSIONS:
                problems.append(
                    f"{named(path)}: .{ext[:10]} isn't a format the trainer takes; use PNG, "
                    "JPEG or WebP."
                )
                continue
            root, side = prefix + match["root"], match["side"].lower()
        sides = groups.setdefault(root, {})
        if side in sides:
            problems.append(
                f"{named(path)} and {named(sides[side].filename)} are both the {side} of "
                f"pair {named(root)}; keep one."
            )
            continue
        sides[side] = info
    for root, sides in sorted(groups.items()):
        images = [side for side in sides if side != "txt"]
        if not images:
            problems.append(f"{named(sides['txt'].filename)} belongs to no pair.")
            continue
        if "start" not in sides:
            first = sides[images[0]].filename
            problems.append(f"{named(first)} has no start image ({named(root + '_start.png')}).")
        if "end" not in sides:
            first = sides[images[0]].filename
            problems.append(f"{named(first)} has no end image ({named(root + '_end.png')}).")
        for extra in ("start3", "start4"):
            before = f"start{int(extra[-1]) - 1}"
            if extra in sides and before not in sides:
                problems.append(
                    f"{named(sides[extra].filename)} comes without "
                    f"{named(root + '_' + before + '.png')}; number extra inputs 2, 3, 4."
                )
    return groups, problems


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, zip_name: str) -> bytes:
    """At most `cap` bytes of an entry, however large its header says it is."""
    with archive.open(info) as handle:
        data = handle.read(cap + 1)
    if len(data) > cap:
        raise _refuse([f"{named(info.filename)} is larger than {human_bytes(cap)} unpacked."])
    if data.startswith(_ARCHIVE_MAGIC) and not info.filename.lower().endswith(".txt"):
        raise _refuse([f"{named(info.filename)} is an archive inside {zip_name}; unpack it first."])
    return data


def count_message(count: int) -> str | None:
    if count < MIN_PAIRS:
        return (
            f"There {'is' if count == 1 else 'are'} {count} pair{'s' * (count != 1)}; "
            f"a training needs at least {MIN_PAIRS} (fal suggests 15–50)."
        )
    if count > MAX_PAIRS:
        return f"There are {count:,} pairs; the most one training takes is {MAX_PAIRS}."
    return None


def read_zip(data: bytes, zip_name: str, limits: ZipLimits) -> list[RawPair]:
    """The pairs of a member's zip, after every check that needs no image decoding."""
    zip_name = named(zip_name)
    if len(data) > limits.max_zip_bytes:
        raise BadRequest(
            f"{zip_name} is {human_bytes(len(data))}; the limit is "
            f"{human_bytes(limits.max_zip_bytes)}."
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError):
        raise BadRequest(
            f"{zip_name} isn't a zip archive I can read. Zip the pairs again."
        ) from None
    with archive:
        infos = _entries(archive, limits, zip_name)
        groups, problems = _group(infos)
        counted = count_message(len(groups))
        if counted is not None:
            problems.append(counted)
        if problems:
            raise _refuse(problems)
        pairs: list[RawPair] = []
        budget = limits.max_total_bytes
        try:
            for root, sides in sorted(groups.items()):
                pair = RawPair(label=root)
                for side in ("start", "start2", "start3", "start4", "end", "txt"):
                    info = sides.get(side)
                    if info is None:
                        continue
                    cap = min(budget, CAPTION_MAX * 4 if side == "txt" else limits.max_image_bytes)
                    content = _read(archive, info, cap, zip_name)
                    budget -= len(content)
                    if side == "txt":
                        pair.caption = _caption(info.filename, content)
                    elif side == "end":
                        pair.end = (info.filename, content)
                    else:
                        pair.starts.append((info.filename, content))
                pairs.append(pair)
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError):
            raise BadRequest(
                f"{zip_name} is damaged and can't be unpacked. Zip the pairs again."
            ) from None
    return pairs


def _caption(name: str, data: bytes) -> str | None:
    try:
        text = data.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise _refuse([f"{named(name)} isn't UTF-8 text."]) from None
    if len(text) > CAPTION_MAX:
        raise _refuse(
            [f"{named(name)} is {len(text):,} characters; an instruction may have {CAPTION_MAX:,}."]
        )
    return text or None


def side_problem(info: ImageInfo, label: str) -> str | None:
    """Why this image can't be a training image, or None."""
    if info.content_type not in ("image/png", "image/jpeg", "image/webp"):
        return f"{label} is a {info.extension.upper()}; the trainer takes PNG, JPEG or WebP."
    if min(info.width, info.height) < MIN_SIDE:
        return f"{label} is {info.width}×{info.height}; each side needs at least {MIN_SIDE} px."
    return None


def small_warning(labels: list[str]) -> str | None:
    if not labels:
        return None
    listed = ", ".join(labels[:5]) + (f" and {len(labels) - 5} more" if len(labels) > 5 else "")
    return (
        f"{len(labels)} image{'s are' if len(labels) != 1 else ' is'} under {SMALL_SIDE:,} px "
        f"on a side ({listed}); fal upscales them, and larger pairs train better."
    )


def inspect_pairs(pairs: list[RawPair], limits: ZipLimits) -> tuple[list[CheckedPair], list[str]]:
    """Decode every image and check its sides: the checked pairs and the warnings."""
    problems: list[str] = []
    small: list[str] = []
    checked: list[CheckedPair] = []
    for pair in pairs:
        infos: list[ImageInfo] = []
        for name, data in [*pair.starts, *([pair.end] if pair.end else [])]:
            label = named(name)
            try:
                info = inspect_image(
                    data, label, max_bytes=limits.max_image_bytes, max_pixels=limits.max_pixels
                )
            except BadRequest as error:
                problems.append(str(error))
                continue
            problem = side_problem(info, label)
            if problem is not None:
                problems.append(problem)
                continue
            if min(info.width, info.height) < SMALL_SIDE:
                small.append(label)
            infos.append(info)
        if len(infos) == len(pair.starts) + 1:
            checked.append(CheckedPair(pair.label, infos[:-1], infos[-1], pair.caption))
    if problems:
        raise _refuse(problems)
    warnings = [w for w in [small_warning(small)] if w]
    if len(checked) < FEW_PAIRS:
        warnings.append(f"Only {len(checked)} pairs; fal suggests 15–50 good ones.")
    return checked, warnings


def check_captions(pairs: list[CheckedPair], caption: str | None) -> None:
    """Every pair needs an instruction: its own, or the `caption` option."""
    if caption:
        return
    missing = [pair.label for pair in pairs if not pair.caption]
    if missing:
        listed = ", ".join(named(label) for label in missing[:5])
        if len(missing) > 5:
            listed += f" and {len(missing) - 5} more"
        raise BadRequest(
            f"{len(missing)} pair{'s have' if len(missing) != 1 else ' has'} no instruction "
            f"(ROOT.txt) and no caption option was given: {listed}. Add the text files, or "
            "give `caption:` the instruction for them."
        )


def write_zip(pairs: list[CheckedPair]) -> bytes:
    """The zip fal gets: only checked files, named pair_NNN_start.EXT … pair_NNN.txt."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for number, pair in enumerate(pairs, start=1):
            root = f"pair_{number:03d}"
            for index, image in enumerate(pair.starts):
                side = "start" if index == 0 else f"start{index + 1}"
                archive.writestr(f"{root}_{side}.{image.extension}", image.data)
            archive.writestr(f"{root}_end.{pair.end.extension}", pair.end.data)
            if pair.caption:
                archive.writestr(
                    f"{root}.txt", pair.caption.encode(), compress_type=zipfile.ZIP_DEFLATED
                )
    return out.getvalue()
