"""The emulator's edit trainer (`fal-ai/flux-2-trainer/edit`), through our client's trainer
sibling: fal's input rules at result time, outputs, progress logs, cancel."""

from __future__ import annotations

import base64
import json
import struct

import pytest

from client.errors import FalCancelled, FalValidationError
from client.fal import TRAINER_ENDPOINT, FalClient
from client.schema import TrainingInput, TrainingOutput
from emulators.fal_emulator import FalEmulator
from tests.harness.pairs import pair_files, pairs_zip, zip_of


def data_url(data: bytes) -> str:
    return "data:application/zip;base64," + base64.b64encode(data).decode()


@pytest.fixture
def trainer(fal_client: FalClient) -> FalClient:
    return fal_client.for_endpoint(TRAINER_ENDPOINT)


async def test_a_training_logs_its_progress_and_returns_the_lora(
    fal_emulator: FalEmulator, trainer: FalClient
) -> None:
    fal_emulator.training_time = 0.3
    url = await trainer.upload(pairs_zip(3, size=(64, 64)), "application/zip", "pairs.zip")
    handle, _ = await trainer.submit(TrainingInput(image_data_url=url, steps=500), keep_files=True)
    assert f"/fal-ai/flux-2-trainer/requests/{handle.request_id}" in handle.status_url
    steps = [
        entry.message
        async for status in trainer.watch(handle, logs=True)
        for entry in status.logs or []
        if entry.message.startswith("Training step")
    ]
    assert steps[0] == "Training step 50/500" and steps[-1] == "Training step 500/500"
    output = await trainer.result_as(handle, TrainingOutput)
    weights = await trainer.download(output.diffusers_lora_file.url, max_bytes=1 << 20)
    (length,) = struct.unpack("<Q", weights[:8])
    assert json.loads(weights[8 : 8 + length])["__metadata__"]["pairs"] == "3"
    assert output.config_file is not None
    config = json.loads(await trainer.download(output.config_file.url, max_bytes=1 << 20))
    assert config["steps"] == 500
    job = fal_emulator.jobs[handle.request_id]
    assert json.loads(job.headers["X-Fal-Object-Lifecycle-Preference"]) == {
        "expiration_duration_seconds": None
    }


async def done(fal: FalEmulator, request_id: str) -> None:
    await fal.wait_for_status(request_id, "COMPLETED")


async def test_a_pair_without_a_caption_fails_at_result_time(
    fal_emulator: FalEmulator, trainer: FalClient
) -> None:
    files = pair_files(2, size=(64, 64))
    del files["p02.txt"]
    handle, _ = await trainer.submit(TrainingInput(image_data_url=data_url(zip_of(files))))
    await done(fal_emulator, handle.request_id)
    with pytest.raises(FalValidationError) as caught:
        await trainer.result_as(handle, TrainingOutput)
    [item] = caught.value.items
    assert item.loc == ["body", "default_caption"]
    assert "Pair 'p02' has no caption file (p02.txt)" in item.msg


async def test_a_default_caption_stands_in_for_missing_text_files(
    fal_emulator: FalEmulator, trainer: FalClient
) -> None:
    zipped = pairs_zip(2, size=(64, 64), captions=False)
    handle, _ = await trainer.submit(
        TrainingInput(image_data_url=data_url(zipped), default_caption="paint it blue")
    )
    await done(fal_emulator, handle.request_id)
    output = await trainer.result_as(handle, TrainingOutput)
    assert output.diffusers_lora_file.url.endswith(".safetensors")


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        (b"not a zip at all", "Failed to read the zip archive"),
        (zip_of({"readme.md": b"hello"}), "No image pairs found"),
        (
            zip_of({"a_start.png": pair_files(1, size=(64, 64))["p01_start.png"], "a.txt": b"x"}),
            "Pair 'a' has no a_end image",
        ),
        (
            zip_of({"a_start.png": b"junk", "a_end.png": b"junk", "a.txt": b"x"}),
            "Failed to load the image of pair 'a'",
        ),
    ],
    ids=["not-a-zip", "no-pairs", "start-without-end", "undecodable"],
)
async def test_a_bad_archive_fails_with_a_clear_error(
    fal_emulator: FalEmulator, trainer: FalClient, archive: bytes, message: str
) -> None:
    handle, _ = await trainer.submit(TrainingInput(image_data_url=data_url(archive)))
    await done(fal_emulator, handle.request_id)
    with pytest.raises(FalValidationError) as caught:
        await trainer.result_as(handle, TrainingOutput)
    assert message in str(caught.value)


async def test_a_training_can_be_cancelled(fal_emulator: FalEmulator, trainer: FalClient) -> None:
    fal_emulator.training_time = 30.0
    handle, _ = await trainer.submit(TrainingInput(image_data_url=data_url(pairs_zip(1))))
    await fal_emulator.wait_for_status(handle.request_id, "IN_PROGRESS")
    assert await trainer.cancel(handle) == "requested"
    with pytest.raises(FalCancelled):
        await trainer.result_as(handle, TrainingOutput)
