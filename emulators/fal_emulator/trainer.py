"""The edit trainer, `fal-ai/flux-2-trainer/edit`, as docs/fal-trainer.md describes it:
a zip of before/after pairs in, LoRA weights and a config file out.

Written from those notes, not from what the bot sends. The input is checked "on the runner"
like the edit endpoint's: a malformed body, an archive that can't be read, a pair missing one
side or a caption, or an image that can't be decoded ends the request with a 422 at result
time. While it trains, the request logs its progress ("Training step k/N") over
`FalEmulator.training_time` seconds; a cancel stops it like any request.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import struct
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, ValidationError

from emulators.fal_emulator.common import StoredFile
from emulators.fal_emulator.images import ImageLoadError, decode_image

if TYPE_CHECKING:
    from emulators.fal_emulator.jobs import Job
    from emulators.fal_emulator.server import FalEmulator

TRAINER_ENDPOINTS = ("fal-ai/flux-2-trainer/edit",)
PROGRESS_LINES = 10  # progress log lines over a training
_NAME = re.compile(r"^(?P<root>.+?)_(?P<side>start[234]?|end)\.(?P<ext>[A-Za-z0-9]+)$")


class Flux2TrainerEditInput(BaseModel):
    image_data_url: str
    steps: int = Field(default=1000, ge=1, le=10_000)
    learning_rate: float = Field(default=0.00005, gt=0)
    default_caption: str | None = None
    output_lora_format: Literal["fal", "comfy"] = "fal"


@dataclass
class Pair:
    root: str
    starts: dict[str, bytes] = field(default_factory=dict)  # "start", "start2", …
    end: bytes | None = None
    caption: str | None = None


class TrainingError(Exception):
    def __init__(self, loc: list[str], msg: str, kind: str) -> None:
        super().__init__(msg)
        self.item = {"loc": ["body", *loc], "msg": msg, "type": kind}


def validate(body: Any) -> tuple[Flux2TrainerEditInput | None, list[dict[str, Any]]]:
    try:
        return Flux2TrainerEditInput.model_validate(body), []
    except ValidationError as error:
        items: list[dict[str, Any]] = json.loads(error.json(include_url=False))
        for item in items:
            item["loc"] = ["body", *item["loc"]]
        return None, items


def read_pairs(data: bytes, default_caption: str | None) -> list[Pair]:
    """The pairs of the archive, or TrainingError naming what is wrong."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as error:
        raise TrainingError(
            ["image_data_url"], f"Failed to read the zip archive: {error}", "invalid_archive"
        ) from None
    pairs: dict[str, Pair] = {}
    captions: dict[str, str] = {}
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            name = info.filename.rsplit("/", 1)[-1]
            if name.endswith(".txt"):
                captions[name[:-4]] = archive.read(info).decode("utf-8", "replace").strip()
                continue
            match = _NAME.match(name)
            if match is None:
                continue  # other files are ignored
            pair = pairs.setdefault(match["root"], Pair(match["root"]))
            if match["side"] == "end":
                pair.end = archive.read(info)
            else:
                pair.starts[match["side"]] = archive.read(info)
    if not pairs:
        raise TrainingError(
            ["image_data_url"],
            "No image pairs found: expected files named ROOT_start.EXT and ROOT_end.EXT",
            "invalid_archive",
        )
    for root, pair in sorted(pairs.items()):
        if pair.end is None or "start" not in pair.starts:
            missing = "ROOT_end" if pair.end is None else "ROOT_start"
            raise TrainingError(
                ["image_data_url"],
                f"Pair '{root}' has no {missing.replace('ROOT', root)} image",
                "invalid_archive",
            )
        pair.caption = captions.get(root) or None
        if pair.caption is None and not default_caption:
            raise TrainingError(
                ["default_caption"],
                f"Pair '{root}' has no caption file ({root}.txt) and no default_caption was given",
                "missing_caption",
            )
    return [pairs[root] for root in sorted(pairs)]


def _check_images(pairs: list[Pair]) -> None:
    for pair in pairs:
        for side, data in [*pair.starts.items(), ("end", pair.end or b"")]:
            try:
                decode_image(data)
            except ImageLoadError:
                raise TrainingError(
                    ["image_data_url"],
                    f"Failed to load the image of pair '{pair.root}' ({side})",
                    "image_load_error",
                ) from None


def _safetensors(metadata: dict[str, str]) -> bytes:
    """A tiny file in the safetensors layout: header length, JSON header, no tensors."""
    header = json.dumps({"__metadata__": metadata}).encode()
    return struct.pack("<Q", len(header)) + header


async def train(
    emu: FalEmulator, job: Job, log: Callable[[Job, str], None]
) -> tuple[int, Any, dict[str, str]]:
    """Run one training: (status, body, headers) of its result."""
    from emulators.fal_emulator.runner import DownloadError, fetch_input

    model, errors = validate(job.body)
    if model is None:
        return 422, {"detail": errors}, {"x-fal-billable-units": "0"}
    try:
        try:
            data = await fetch_input(emu, model.image_data_url)
        except DownloadError as error:
            raise TrainingError(
                ["image_data_url"], f"Failed to download the file: {error}", "file_download_error"
            ) from None
        pairs = await asyncio.to_thread(read_pairs, data, model.default_caption)
        await asyncio.to_thread(_check_images, pairs)
    except TrainingError as error:
        return 422, {"detail": [error.item]}, {"x-fal-billable-units": "0"}
    log(job, f"Preparing dataset: {len(pairs)} pairs")
    emu.job_changed(job)
    lines = max(1, min(PROGRESS_LINES, model.steps))
    for line in range(1, lines + 1):
        await asyncio.sleep(emu.training_time / lines)
        log(job, f"Training step {model.steps * line // lines}/{model.steps}")
        emu.job_changed(job)
    token = uuid.uuid4().hex
    weights = _safetensors(
        {"pairs": str(len(pairs)), "steps": str(model.steps), "request_id": job.request_id}
    )
    config = json.dumps(
        {
            "steps": model.steps,
            "learning_rate": model.learning_rate,
            "default_caption": model.default_caption,
            "pairs": len(pairs),
            "output_lora_format": model.output_lora_format,
        }
    ).encode()
    outputs: dict[str, Any] = {}
    for key, name, content_type, content in (
        (
            "diffusers_lora_file",
            "pytorch_lora_weights.safetensors",
            "application/octet-stream",
            weights,
        ),
        ("config_file", "config.json", "application/json", config),
    ):
        path = f"/files/emulator/{token}/{name}"
        emu.files[path] = StoredFile(content, content_type)
        outputs[key] = {
            "url": emu.cdn_url + path,
            "content_type": content_type,
            "file_name": name,
            "file_size": len(content),
        }
    return 200, outputs, {"x-fal-billable-units": str(model.steps)}
