"""Training an edit LoRA from Discord, end to end through both emulators: a manager's zip (or
draft set) is checked, priced and confirmed, trains on fal's edit trainer with its progress
shown, lands in the registry, and a before | result | expected sample is posted; the server's
budget pays, never a member's quota."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from PIL import Image

from emulators.discord_emulator.interactions import Interaction
from emulators.discord_emulator.messages import Message, walk_components
from emulators.fal_emulator.images import expected_pixel
from tests.harness.e2e import World
from tests.harness.pairs import END, START, pairs_zip

TRAINER = "fal-ai/flux-2-trainer/edit"
# 1,000 steps × $0.0056 × 2.11 (one input per pair), and the sample edit of a 1024×1024 start
# image: (1 MP in + 1.048576 MP out) × $0.021, rounded up to the micro-dollar.
TRAINING_USD = 11.816
SAMPLE_USD = 0.043021


def custom_id(message: Message, label: str) -> str:
    for component in walk_components(message.components):
        if component.get("label") == label:
            return str(component["custom_id"])
    raise AssertionError(f"no {label!r} button on {message.components}")


async def train(
    world: World, zipped: bytes | None = None, member: str = "carol", **options: Any
) -> Interaction:
    emu = world.emu
    attachments = {"pairs": emu.attachment(zipped, "pairs.zip")} if zipped is not None else None
    return await emu.slash(
        emu.member(member),
        emu.channel("general"),
        "admin lora train",
        {"name": "water", **options},
        attachments=attachments,
    )


async def proposal(ix: Interaction) -> Message:
    await ix.response()
    return await ix.wait_followup()


async def confirm(world: World, asked: Message, member: str = "carol") -> Interaction:
    return await world.emu.click(world.emu.member(member), asked, custom_id(asked, "Confirm"))


async def confirmed(world: World, asked: Message) -> Message:
    """Confirm, and the proposal once it says the training started."""
    await (await confirm(world, asked)).response()
    return await world.emu.wait_for_edit(asked, lambda m: "started" in m.content)


async def spent(world: World) -> float:
    return await world.bot.storage.quotas.guild_spend(world.emu.guild.id)


def trainer_jobs(world: World) -> list[Any]:
    return [job for job in world.fal.jobs.values() if job.endpoint == TRAINER]


async def test_a_zip_becomes_a_registered_lora_and_a_labelled_sample(world: World) -> None:
    await world.set_settings(monthly_budget_usd=50.0)
    world.fal.training_time = 2.5  # long enough for a progress edit between the throttled ones
    asked = await proposal(await train(world, pairs_zip(15), caption="paint it blue"))
    assert asked.ephemeral
    assert "Train `water` from 15 pairs (the zip)?" in asked.content
    assert "1,000 steps" in asked.content
    assert f"**${TRAINING_USD + SAMPLE_USD:.2f}**" in asked.content
    assert "server's monthly budget" in asked.content
    assert await spent(world) == 0.0 and world.fal.jobs == {}  # nothing spent before Confirm

    started = await confirmed(world, asked)
    assert "Training #1 started" in started.content and started.components == []
    assert await spent(world) == pytest.approx(TRAINING_USD)

    status = await world.emu.wait_for_message(
        world.emu.channel("general"), lambda m: m.content.startswith("**Training #1**")
    )
    await world.emu.wait_for_edit(
        status, lambda m: "step " in m.content and " of 1,000" in m.content
    )
    trained = await world.job_in(1, "delivered")
    assert trained.request.kind == "training"

    [fal_training] = trainer_jobs(world)
    assert fal_training.body["steps"] == 1000
    assert fal_training.body["learning_rate"] == 0.00005
    assert fal_training.body["default_caption"] == "paint it blue"
    assert fal_training.body["image_data_url"].startswith(world.fal.cdn_url)
    keep = json.loads(fal_training.headers["X-Fal-Object-Lifecycle-Preference"])
    assert keep == {"expiration_duration_seconds": None}
    weights = fal_training.result_body["diffusers_lora_file"]["url"]

    lora = await world.bot.storage.loras.get(world.emu.guild.id, "water")
    assert lora is not None and lora.path == weights and lora.default_scale == 1.0
    assert lora.trigger_words == ["paint it blue"]
    assert "Trained on 15 pairs, 1,000 steps" in lora.description
    [added] = await world.bot.storage.loras.history(world.emu.guild.id, "water")
    assert (added.action, added.actor_id) == ("add", world.emu.member("carol").id)

    result = await world.result()
    sample = await world.job_in(2, "delivered")
    assert sample.parent_job_id == 1 and sample.request.loras[0].path == weights
    [(filename, data, content_type)] = result.files
    assert (filename, content_type) == ("sample-2.png", "image/png")
    assert_three_panels(data, sample.request.seed)
    buttons = {c.get("custom_id") for c in walk_components(result.components)}
    assert {"job:2:rerun", "job:2:tweak", "job:2:reuse", "job:2:delete"} <= buttons

    assert await spent(world) == pytest.approx(TRAINING_USD + SAMPLE_USD)
    assert await world.usage("carol") == (0, 0)  # the trainer's quota is untouched
    final = world.emu.message(status.id)
    assert "Trained" in final.content and "Registered `water`" in final.content
    assert final.components == []


def assert_three_panels(data: bytes, seed: int) -> None:
    """before | result | expected, left to right, each with a light label above it."""
    with Image.open(io.BytesIO(data)) as opened:
        sheet = opened.convert("RGB")
    width, height = sheet.size
    assert width > 2.5 * height  # three panels side by side
    middle = height // 2
    centres = [width // 6, width // 2, 5 * width // 6]
    assert sheet.getpixel((centres[0], middle)) == START
    assert sheet.getpixel((centres[1], middle)) == expected_pixel(START, seed)
    assert sheet.getpixel((centres[2], middle)) == END
    for centre in centres:  # a label: light text on the dark band above each panel
        band = [
            sheet.getpixel((x, y)) for x in range(centre - 60, centre + 60) for y in range(4, 44)
        ]
        assert any(min(pixel) > 200 for pixel in band)  # type: ignore[type-var]
        assert sum(band[0]) < 150  # type: ignore[arg-type]


async def test_the_new_lora_is_usable_in_edit_at_once(world: World) -> None:
    world.fal.training_time = 0.1
    asked = await proposal(await train(world, pairs_zip(5, size=(768, 768))))
    assert "⚠️ Only 5 pairs" in asked.content
    assert "under 1,024 px" in asked.content
    await confirmed(world, asked)
    await world.job_in(1, "delivered")
    weights = trainer_jobs(world)[0].result_body["diffusers_lora_file"]["url"]
    ix = await world.edit(lora="water", prompt="make the sky purple")
    assert "is on its way" in await world.reply_text(ix)
    edits = [
        job for job in world.fal.jobs.values() if job.body.get("prompt") == "make the sky purple"
    ]
    assert [job.body["loras"] for job in edits] == [[{"path": weights, "scale": 1.0}]]
