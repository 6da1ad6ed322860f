"""Training an edit LoRA from Discord, end to end through both emulators: a manager's zip (or
draft set) is checked, priced and confirmed, trains on fal's edit trainer with its progress
shown, lands in the registry, and a before | result | expected sample is posted; the server's
budget pays, never a member's quota."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from typing import Any

import pytest
from PIL import Image

from emulators.discord_emulator.interactions import Interaction
from emulators.discord_emulator.messages import Message, walk_components
from emulators.fal_emulator.images import expected_pixel
from tests.harness.e2e import World
from tests.harness.images import png
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
    loras = tuple((lora.path, lora.scale) for lora in sample.request.loras)
    assert_three_panels(data, sample.request.seed, loras)
    buttons = {c.get("custom_id") for c in walk_components(result.components)}
    assert {"job:2:rerun", "job:2:tweak", "job:2:reuse", "job:2:delete"} <= buttons

    assert await spent(world) == pytest.approx(TRAINING_USD + SAMPLE_USD)
    assert await world.usage("carol") == (0, 0)  # the trainer's quota is untouched
    final = world.emu.message(status.id)
    assert "Trained" in final.content and "Registered `water`" in final.content
    assert final.components == []


def assert_three_panels(data: bytes, seed: int, loras: tuple[tuple[str, float], ...] = ()) -> None:
    """before | result | expected, left to right, each with a light label above it. The fal
    emulator tints a result by its seed and the LoRAs it ran with."""
    with Image.open(io.BytesIO(data)) as opened:
        sheet = opened.convert("RGB")
    width, height = sheet.size
    assert width > 2.5 * height  # three panels side by side
    middle = height // 2
    centres = [width // 6, width // 2, 5 * width // 6]
    assert sheet.getpixel((centres[0], middle)) == START
    assert sheet.getpixel((centres[1], middle)) == expected_pixel(START, seed, 0, loras)
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


async def training_status(world: World) -> Message:
    return await world.emu.wait_for_message(
        world.emu.channel("general"), lambda m: m.content.startswith("**Training #1**")
    )


async def test_cancel_during_training_refunds_the_budget(world: World) -> None:
    world.fal.training_time = 30.0
    await confirmed(world, await proposal(await train(world, pairs_zip(5))))
    job = await world.job_in(1, "submitted")
    await world.fal.wait_for_status(job.fal_request_id, "IN_PROGRESS")
    assert await spent(world) == pytest.approx(TRAINING_USD)
    status = await training_status(world)
    ix = await world.emu.click(world.emu.member("carol"), status, "job:1:cancel")
    assert "Training #1 is cancelled; its cost went back" in await world.reply_text(ix)
    assert (await world.job_in(1, "cancelled")).state == "cancelled"
    assert world.fal.jobs[job.fal_request_id].cancel_requested
    assert await spent(world) == 0.0
    assert await world.bot.storage.loras.get(world.emu.guild.id, "water") is None
    final = await world.emu.wait_for_edit(status, lambda m: "Cancelled" in m.content)
    assert final.components == []


async def test_a_failed_training_refunds_and_registers_nothing(world: World) -> None:
    world.fal.runner_failure_rate = 1.0
    await confirmed(world, await proposal(await train(world, pairs_zip(5))))
    failed = await world.job_in(1, "failed")
    assert failed.error is not None and "infrastructure problem" in failed.error
    assert await spent(world) == 0.0
    assert await world.bot.storage.loras.get(world.emu.guild.id, "water") is None
    status = await world.emu.wait_for_edit(
        await training_status(world), lambda m: "Failed" in m.content
    )
    assert "not charged" in status.content


async def test_a_restart_mid_training_continues_it_and_charges_once(world: World) -> None:
    world.fal.training_time = 1.5
    await confirmed(world, await proposal(await train(world, pairs_zip(5))))
    job = await world.job_in(1, "submitted")
    await world.fal.wait_for_status(job.fal_request_id, "IN_PROGRESS")
    await world.restart()
    await world.job_in(1, "delivered")
    result = await world.result()
    await world.job_in(2, "delivered")
    assert len(trainer_jobs(world)) == 1  # followed by its request id, never submitted again
    history = await world.bot.storage.loras.history(world.emu.guild.id, "water")
    assert [change.action for change in history] == ["add"]
    samples = [m for m in world.emu.messages_in(world.emu.channel("general")) if m.files]
    assert [m.id for m in samples] == [result.id]
    assert await spent(world) == pytest.approx(TRAINING_USD + SAMPLE_USD)


async def test_a_proposal_survives_a_restart_and_starts_once(world: World) -> None:
    world.fal.training_time = 0.1
    asked = await proposal(await train(world, pairs_zip(5)))
    go = custom_id(asked, "Confirm")
    await world.restart()
    carol = world.emu.member("carol")
    # Two presses before the bot has answered either (a double click, a second device).
    first = await world.emu.click(carol, asked, go)
    second = await world.emu.click(carol, asked, go)
    await first.response()
    await second.response()
    await world.emu.wait_for_edit(asked, lambda m: "Training #1 started" in m.content)
    waits = [asyncio.create_task(ix.wait_followup()) for ix in (first, second)]
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    [refused] = [task.result() for task in done]
    assert "already confirmed or cancelled" in refused.content
    await world.job_in(1, "delivered")
    assert len(trainer_jobs(world)) == 1
    assert await world.bot.storage.jobs.get(3) is None  # the training and its sample only


async def test_cancelling_a_proposal_spends_nothing(world: World) -> None:
    asked = await proposal(await train(world, pairs_zip(5)))
    ix = await world.emu.click(world.emu.member("carol"), asked, custom_id(asked, "Cancel"))
    await ix.response()
    closed = world.emu.message(asked.id)
    assert "`water` was not trained and nothing was charged" in closed.content
    assert closed.components == []
    assert world.fal.jobs == {} and await spent(world) == 0.0


async def test_a_proposal_the_budget_no_longer_fits_is_refused_and_kept(world: World) -> None:
    await world.set_settings(monthly_budget_usd=20.0)
    world.fal.training_time = 0.1
    asked = await proposal(await train(world, pairs_zip(5)))
    await world.set_settings(monthly_budget_usd=5.0)
    refused = await confirm(world, asked)
    assert "would take the server past its $5.00 monthly budget" in await world.reply_text(refused)
    assert trainer_jobs(world) == [] and await spent(world) == 0.0
    await world.set_settings(monthly_budget_usd=20.0)
    await confirmed(world, asked)  # the same proposal, once the budget allows it
    await world.job_in(1, "delivered")


async def test_retraining_keeps_the_lora_and_managers_see_the_recipe(world: World) -> None:
    old = await world.add_lora("water", path="owner/water")
    world.fal.training_time = 0.1
    asked = await proposal(await train(world, pairs_zip(5), replace=True, steps=500))
    assert "Retrains the existing `water`" in asked.content
    await confirmed(world, asked)
    await world.job_in(1, "delivered")
    lora = await world.bot.storage.loras.get(world.emu.guild.id, "water")
    assert lora is not None and (lora.id, lora.version) == (old.id, 2)
    assert lora.path == trainer_jobs(world)[0].result_body["diffusers_lora_file"]["url"]
    emu = world.emu
    card = await emu.slash(emu.member("carol"), emu.channel("general"), "loras", {"name": "water"})
    embed = (await card.response()).data["embeds"][0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert "5 pairs · 500 steps · learning rate 5e-05 · $5.91" in fields["Training"]
    assert "retrained (training #1, 5 pairs, 500 steps)" in fields["History"]
    assert f"<@{emu.member('carol').id}>" in fields["History"]
    member = await emu.slash(
        emu.member("alice"), emu.channel("general"), "loras", {"name": "water"}
    )
    names = [f["name"] for f in (await member.response()).data["embeds"][0]["fields"]]
    assert "Training" not in names and "History" not in names


# ---------------------------------------------------------------------------- the draft set


async def pairs_command(
    world: World, sub: str, options: dict[str, Any] | None = None, **files: bytes
) -> Interaction:
    emu = world.emu
    attachments = {name: emu.attachment(data, f"{name}.png") for name, data in files.items()}
    return await emu.slash(
        emu.member("carol"),
        emu.channel("general"),
        f"admin pairs {sub}",
        options or {},
        attachments=attachments or None,
    )


async def test_a_draft_set_built_pair_by_pair_trains_like_a_zip(world: World) -> None:
    colours = [
        (200, 40, 40),
        (40, 200, 40),
        (40, 40, 200),
        (200, 200, 40),
        (40, 200, 200),
        (200, 40, 200),
    ]
    for index, colour in enumerate(colours):
        ix = await pairs_command(
            world,
            "add",
            {"instruction": f"paint {index}"},
            before=png(1024, 1024, colour),
            after=png(1024, 1024, END),
        )
        assert f"Added pair {index + 1} to the draft set" in await world.reply_text(ix)
    removed = await pairs_command(world, "remove", {"number": 2})
    assert "Removed pair 2; the draft set has 5 left" in await world.reply_text(removed)

    listing = await pairs_command(world, "list")
    await listing.response()
    page = await listing.wait_followup()
    assert "Draft set: 5 pairs · page 1 of 1" in page.content
    assert "**1.** paint 0" in page.content and "**2.** paint 2" in page.content
    [(_, sheet_png, _)] = page.files
    with Image.open(io.BytesIO(sheet_png)) as sheet:
        rgb = sheet.convert("RGB")
        # Each row: number, the before thumbnail, an arrow, the after thumbnail (160 px tiles).
        firsts = [rgb.getpixel((64 + 80, 8 + row * 168 + 80)) for row in range(5)]
    assert firsts == [colours[0], colours[2], colours[3], colours[4], colours[5]]

    world.fal.training_time = 0.1
    asked = await proposal(await train(world))
    assert "Train `water` from 5 pairs (the draft set)?" in asked.content
    await confirmed(world, asked)
    await world.job_in(1, "delivered")
    await world.result()
    [fal_training] = trainer_jobs(world)
    stored = world.fal.files[fal_training.body["image_data_url"][len(world.fal.cdn_url) :]]
    with zipfile.ZipFile(io.BytesIO(stored.data)) as sent:
        names = sorted(sent.namelist())
        assert sent.read("pair_002.txt") == b"paint 2"
    assert names[:3] == ["pair_001.txt", "pair_001_end.png", "pair_001_start.png"]
    assert len(names) == 15

    cleared = await pairs_command(world, "clear")
    assert "Removed all 5 pairs" in await world.reply_text(cleared)


async def test_only_managers_train(world: World) -> None:
    # The server shows /admin to every member, but names no bot-manager role.
    world.emu.set_command_permission(world.emu.guild, "admin", world.emu.role("Member"))
    ix = await train(world, pairs_zip(5), member="alice")
    assert "Only members with Manage Server" in await world.reply_text(ix)
    assert world.fal.jobs == {}


async def test_draft_pairs_are_checked_when_added_and_when_trained(world: World) -> None:
    small = await pairs_command(world, "add", before=png(400, 400), after=png(1024, 1024))
    assert "before (before.png) is 400×400; each side needs at least 512 px." in (
        await world.reply_text(small)
    )
    assert await world.bot.storage.pairs.count(world.emu.guild.id) == 0
    for _ in range(3):
        ok = await pairs_command(world, "add", before=png(800, 800), after=png(1024, 1024))
        assert "under 1,024 px on a side (before)" in await world.reply_text(ok)
    missing = await pairs_command(world, "remove", {"number": 7})
    assert "There is no pair 7; the draft set has 3" in await world.reply_text(missing)
    few = await train(world, caption="paint it")
    text = await world.reply_text(few)
    assert "There are 3 pairs; a training needs at least 5" in text
    assert "Add more with `/admin pairs add`" in text
    two = await pairs_command(world, "add", before=png(1024, 1024), after=png(1024, 1024))
    await world.reply_text(two)
    three = await pairs_command(world, "add", before=png(1024, 1024), after=png(1024, 1024))
    await world.reply_text(three)
    uncaptioned = await train(world)
    assert "5 pairs have no instruction (ROOT.txt) and no caption option was given" in (
        await world.reply_text(uncaptioned)
    )
    assert world.fal.jobs == {} and await spent(world) == 0.0


async def test_a_training_past_its_deadline_is_cancelled_and_refunded(world: World) -> None:
    world.fal.training_time = 30.0
    await confirmed(world, await proposal(await train(world, pairs_zip(5))))
    job = await world.job_in(1, "submitted")
    await world.fal.wait_for_status(job.fal_request_id, "IN_PROGRESS")
    # The bot was down past the training's deadline (setup through storage, not under test).
    await world.execute("UPDATE jobs SET deadline_at = created_at WHERE id = 1")
    await world.restart()
    expired = await world.job_in(1, "expired")
    assert expired.error is not None and "so I cancelled the training" in expired.error
    assert world.fal.jobs[job.fal_request_id].cancel_requested
    assert await spent(world) == 0.0
    assert await world.bot.storage.loras.get(world.emu.guild.id, "water") is None
