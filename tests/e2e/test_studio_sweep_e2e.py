"""Sweeps end to end through both emulators: one seed over a LoRA's strengths (or over a stack's
on/off combinations), admitted as one group, posted as one labelled contact sheet whose cells are
checked pixel by pixel against the fal emulator's outputs; the sheet's menus; failed cells;
restarts; the Sweep button on a result."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from client.pricing import estimate_cost_usd
from emulators.discord_emulator.messages import Message
from jobs.compose import FAILED
from storage.models import JobState
from tests.harness.e2e import World
from tests.harness.images import noisy_png, png
from tests.harness.studio import (
    INPUT_RGB,
    cell_colours,
    expected,
    is_sheet,
    labels_match,
    picture,
    sheet,
    sweep,
)

OUTPUT = (688, 512)  # a 640×480 input matched at about 1 MP
SCALES = [0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
CELL_COST = estimate_cost_usd(1, *OUTPUT, 1)
CELLS = "Cells (4–8; each is one image of your quota)"


def fields(message: Message) -> dict[str, str]:
    return {f["name"]: f["value"] for f in message.embeds[0]["fields"]}


def menu_options(message: Message, custom_id: str) -> list[tuple[str, str]]:
    for row in message.components:
        for item in row.get("components", []):
            if item.get("custom_id") == custom_id:
                return [(o["label"], o["value"]) for o in item["options"]]
    raise AssertionError(f"no menu {custom_id}: {message.custom_ids()}")


def sent_scales(world: World) -> list[list[tuple[str, float]]]:
    """The LoRAs of each request fal received, as (path, scale), ordered by the first scale."""
    sent = [[(x["path"], x["scale"]) for x in s["loras"]] for s in world.fal.submissions()]
    return sorted(sent, key=lambda loras: [scale for _, scale in loras])


async def started(world: World, **options: Any) -> str:
    ix = await sweep(world, **options)
    text = await world.reply_text(ix)
    assert ix.ephemeral
    return text


async def delivered_edit(world: World, **options: Any) -> Message:
    ix = await world.edit(images=[png(640, 480, INPUT_RGB)], **options)
    assert "is on its way" in await world.reply_text(ix)
    result = await world.result()
    await world.emu.wait_for("reaction_add", lambda e: e[0].id == result.id)
    return result


async def submit_modal(world: World, member: str, ix: Any, values: dict[str, str]) -> str:
    callback = await ix.response()
    assert ix.modal is not None, callback.data
    by_label: dict[str, str] = {}
    for top in ix.modal["components"]:
        items = top.get("components", []) if top["type"] == 1 else [top.get("component", {})]
        label = top.get("label")
        for item in items:
            by_label[item.get("label") or label] = item["custom_id"]
    answer = await world.emu.submit_modal(
        world.emu.member(member), ix, {by_label[k]: v for k, v in values.items()}
    )
    return await world.reply_text(answer)


# ------------------------------------------------------------------------------------ /sweep


async def test_sweep_posts_one_sheet_with_every_cell_in_order_and_labelled(world: World) -> None:
    lora = await world.add_lora("clay", path="owner/clay", triggers=("claystyle",))
    text = await started(world, lora="clay", seed=1234)
    assert text.startswith(
        "Sweep #1 is on its way: 6 images with one seed (`clay` 0.25 → 1.5 in 6 cells), about "
        f"${6 * CELL_COST:.3f}. Follow it [here]("
    )
    message = await sheet(world)
    await world.bot.jobs.wait_idle()

    # fal ran six requests: one seed, one input, the swept scale the only difference.
    submissions = world.fal.submissions()
    assert len(submissions) == 6
    assert {s["seed"] for s in submissions} == {1234}
    assert len({s["image_urls"][0] for s in submissions}) == 1
    assert {s["prompt"] for s in submissions} == {"claystyle, make it clay"}  # triggers added once
    assert sent_scales(world) == [[("owner/clay", s)] for s in SCALES]

    # The sheet: each cell is that scale's output, in order, under its own label.
    assert cell_colours(message, 6, OUTPUT) == [expected(1234, [("owner/clay", s)]) for s in SCALES]
    labels = [f"clay {s:g}" for s in SCALES]
    assert labels_match(message, labels, OUTPUT) == [True] * 6
    assert labels_match(message, list(reversed(labels)), OUTPUT) == [False] * 6

    got = fields(message)
    assert message.embeds[0]["title"] == "Sweep #1"
    assert message.embeds[0]["description"] == "make it clay"
    assert got["Swept"] == "`clay` 0.25 → 1.5 in 6 cells"
    assert got["Cells"] == "\n".join(f"{i + 1}. {label}" for i, label in enumerate(labels))
    assert (got["Seed"], got["Steps"], got["Cost"]) == ("1234", "28", f"${6 * CELL_COST:.3f}")
    assert message.custom_ids() == ["sweep:1:full", "sweep:1:next"]
    assert menu_options(message, "sweep:1:full") == [
        (f"{i + 1}. {label}", str(i)) for i, label in enumerate(labels)
    ]
    assert world.emu.member("alice").mention in message.content

    # One status message and one sheet: no cell is posted on its own.
    general = world.emu.messages_in(world.emu.channel("general"))
    assert [m.id for m in general if m.files] == [message.id]
    status = next(m for m in general if m.content.startswith("**Sweep #1**"))
    assert len(general) == 2 and message.reference["message_id"] == str(status.id)
    assert "✅ Done: [the sheet](" in status.content

    # Charged as six images, delivered as six jobs tagged with their cells.
    assert await world.usage() == (6, 0)
    spend = await world.bot.storage.quotas.guild_spend(world.emu.guild.id)
    assert spend == pytest.approx(6 * CELL_COST)
    stored = await world.bot.storage.sweeps.get(1)
    assert stored is not None and stored.sheet_message_id == message.id
    for cell in stored.cells:
        job = await world.bot.storage.jobs.get(cell.job_id)
        assert job is not None and job.state == JobState.DELIVERED
        assert job.request.sweep is not None and job.request.sweep.cell == cell.cell
        assert job.request.sweep.label == labels[cell.cell] == cell.label
    registered = await world.bot.storage.loras.get_by_id(lora.id)
    assert registered is not None and registered.uses == 6


async def test_a_chosen_range_with_another_lora_riding_along(world: World) -> None:
    await world.add_lora("clay", path="owner/clay")
    await world.add_lora("ink", path="owner/ink", scale=0.8)
    text = await started(world, lora="clay", lora2="ink", seed=5, cells=5, **{"from": 0, "to": 2})
    assert "(`clay` 0 → 2 in 5 cells)" in text
    message = await sheet(world)
    scales = [0.0, 0.5, 1.0, 1.5, 2.0]
    assert sent_scales(world) == [[("owner/clay", s), ("owner/ink", 0.8)] for s in scales]
    assert cell_colours(message, 5, OUTPUT) == [
        expected(5, [("owner/clay", s), ("owner/ink", 0.8)]) for s in scales
    ]
    assert labels_match(message, [f"clay {s:g}" for s in scales], OUTPUT) == [True] * 5
    assert fields(message)["With"] == "`ink` × 0.8"


async def test_combinations_over_a_stack(world: World) -> None:
    await world.add_lora("clay", path="owner/clay", scale=0.8)
    await world.add_lora("ink", path="owner/ink", scale=1.2)
    text = await started(world, lora="clay", lora2="ink", mode="combinations", seed=9)
    assert "on/off combinations of `clay`, `ink` (4 cells)" in text
    message = await sheet(world)
    stacks = [
        [],
        [("owner/clay", 0.8)],
        [("owner/ink", 1.2)],
        [("owner/clay", 0.8), ("owner/ink", 1.2)],
    ]
    assert cell_colours(message, 4, OUTPUT) == [expected(9, stack) for stack in stacks]
    labels = ["no LoRA", "clay", "ink", "clay + ink"]
    assert labels_match(message, labels, OUTPUT) == [True] * 4
    await world.bot.jobs.wait_idle()
    assert await world.usage() == (4, 0)


# ------------------------------------------------------------------------------------ the menus


async def test_the_menu_gives_a_cell_at_full_size(world: World) -> None:
    await world.add_lora("clay", path="owner/clay")
    await started(world, lora="clay", seed=1234)
    message = await sheet(world)

    ix = await world.emu.click(world.emu.member("bob"), message, "sweep:1:full", values=["2"])
    assert await world.reply_text(ix) == "Cell 3 of sweep #1, full size."
    assert ix.ephemeral
    reply = ix.original
    assert reply is not None
    [(name, data, _type)] = reply.files
    assert name == "sweep-1-cell-3.png"
    image = picture(data)
    assert image.size == OUTPUT
    assert image.getpixel((10, 10)) == expected(1234, [("owner/clay", 0.75)])


async def test_the_menu_uses_a_cell_as_the_next_input(world: World) -> None:
    await world.add_lora("clay", path="owner/clay")
    await started(world, lora="clay", seed=1234)
    message = await sheet(world)
    await world.bot.jobs.wait_idle()  # the cells are charged right after the sheet is posted

    ix = await world.emu.click(world.emu.member("alice"), message, "sweep:1:next", values=["4"])
    text = await submit_modal(world, "alice", ix, {"Prompt for the next edit (clay 1.25)": "snow"})
    assert text.startswith("Started edit #7 from cell 5 of sweep #1.")
    result = await world.result()
    assert result.embeds[0]["title"] == "Edit #7"
    last = world.fal.submissions()[-1]
    assert last["prompt"] == "snow" and last["loras"] == [{"path": "owner/clay", "scale": 1.25}]
    async with httpx.AsyncClient() as http:
        hosted = picture((await http.get(last["image_urls"][0])).content)
    assert hosted.size == OUTPUT
    assert hosted.getpixel((10, 10)) == expected(1234, [("owner/clay", 1.25)])
    assert await world.usage() == (7, 0)


async def test_the_menus_work_after_a_restart(world: World) -> None:
    await world.add_lora("clay", path="owner/clay")
    await started(world, lora="clay", seed=3)
    message = await sheet(world)
    await world.restart()
    ix = await world.emu.click(world.emu.member("alice"), message, "sweep:1:full", values=["0"])
    assert await world.reply_text(ix) == "Cell 1 of sweep #1, full size."


# ------------------------------------------------------------------------------------ failures


async def test_a_failed_cell_is_drawn_failed_and_refunded(world: World) -> None:
    await world.add_lora("clay", path="owner/clay")
    world.fal.runner_failure_when = lambda body: body["loras"][0]["scale"] == 0.75
    await started(world, lora="clay", seed=1234)
    message = await sheet(world)
    await world.bot.jobs.wait_idle()

    colours = cell_colours(message, 6, OUTPUT)
    assert colours[2] == FAILED
    assert [c for i, c in enumerate(colours) if i != 2] == [
        expected(1234, [("owner/clay", s)]) for s in SCALES if s != 0.75
    ]
    assert labels_match(message, [f"clay {s:g}" for s in SCALES], OUTPUT) == [True] * 6
    assert "3. clay 0.75 — failed (not charged)" in fields(message)["Cells"]
    assert fields(message)["Cost"] == f"${5 * CELL_COST:.3f}"
    assert [v for _, v in menu_options(message, "sweep:1:full")] == ["0", "1", "3", "4", "5"]
    assert await world.usage() == (5, 0)
    assert await world.bot.storage.quotas.guild_spend(world.emu.guild.id) == pytest.approx(
        5 * CELL_COST
    )


async def test_a_cell_cancelled_from_jobs_is_drawn_cancelled_and_refunded(world: World) -> None:
    await world.add_lora("clay", path="owner/clay")
    world.fal.paused = True
    await started(world, lora="clay", seed=1234, cells=4)
    for job_id in range(1, 5):
        await world.job_in(job_id, "submitted")
    emu = world.emu
    listing = await emu.slash(emu.member("alice"), emu.channel("general"), "jobs")
    await world.reply_text(listing)
    assert listing.original is not None
    assert listing.original.custom_ids() == [f"job:{n}:cancel" for n in (4, 3, 2, 1)]
    ix = await emu.click(emu.member("alice"), listing.original, "job:2:cancel")
    assert await world.reply_text(ix) == "Edit #2 is cancelled; you were not charged."
    world.fal.paused = False
    message = await sheet(world)
    await world.bot.jobs.wait_idle()
    assert cell_colours(message, 4, OUTPUT)[1] == FAILED
    assert "2. clay 0.667 — cancelled (not charged)" in fields(message)["Cells"]
    assert await world.usage() == (3, 0)


async def test_when_every_cell_fails_no_sheet_is_posted_and_nothing_is_charged(
    world: World,
) -> None:
    await world.add_lora("clay", path="owner/clay")
    world.fal.runner_failure_rate = 1.0
    await started(world, lora="clay", cells=4)
    status = await world.emu.wait_for_message(
        world.emu.channel("general"), lambda m: m.content.startswith("**Sweep #1**")
    )
    await world.emu.wait_for_edit(status, lambda m: "❌ Failed" in m.content)
    await world.bot.jobs.wait_idle()
    assert "Every cell failed, so there is no sheet. You were not charged." in status.content
    assert not any(m.files for m in world.emu.messages_in(world.emu.channel("general")))
    assert await world.usage() == (0, 0)


async def test_a_restart_while_cells_run_finishes_the_sheet_once(world: World) -> None:
    await world.add_lora("clay", path="owner/clay")
    world.fal.paused = True
    await started(world, lora="clay", seed=1234, cells=4)
    for job_id in range(1, 5):
        await world.job_in(job_id, "submitted")
    await world.restart()
    world.fal.paused = False
    message = await sheet(world)
    await world.bot.jobs.wait_idle()
    assert len(world.fal.submissions()) == 4
    assert cell_colours(message, 4, OUTPUT) == [
        expected(1234, [("owner/clay", s)]) for s in [0.25, 0.667, 1.083, 1.5]
    ]
    assert [m for m in world.emu.messages_in(world.emu.channel("general")) if m.files] == [message]
    assert await world.usage() == (4, 0)


async def test_a_restart_while_the_sheet_is_being_posted_posts_it_once(world: World) -> None:
    await world.add_lora("clay", path="owner/clay")
    await started(world, lora="clay", cells=4)
    await world.emu.wait_for_message(
        world.emu.channel("general"), lambda m: m.content.startswith("**Sweep #1**")
    )
    # Every cell completes; the sheet's post is held by a long rate limit, and the bot restarts.
    fault = world.emu.fail_next("POST", r"/channels/\d+/messages$", status=429, retry_after=30.0)
    for job_id in range(1, 5):
        await world.job_in(job_id, "completed", "delivered")
    await world.emu.wait_for("request", lambda r: fault.hits >= 1)
    await world.restart()
    message = await sheet(world)
    await world.bot.jobs.wait_idle()
    sheets = [m for m in world.emu.messages_in(world.emu.channel("general")) if is_sheet(m)]
    assert sheets == [message]
    assert len(world.fal.submissions()) == 4
    assert await world.usage() == (4, 0)
    stored = await world.bot.storage.sweeps.get(1)
    assert stored is not None and stored.sheet_message_id == message.id
    assert stored.finished_at is not None


async def test_a_sweep_whose_status_cant_be_posted_runs_nothing_and_charges_nothing(
    world: World,
) -> None:
    await world.add_lora("clay", path="owner/clay")
    world.emu.fail_next("POST", r"/channels/\d+/messages$", status=403, code=50013)
    text = await started(world, lora="clay", cells=4)
    assert text.startswith("I'm not allowed to post results in <#")
    assert text.endswith("You were not charged.")
    await world.bot.jobs.wait_idle()
    assert world.fal.submissions() == []
    assert await world.usage() == (0, 0)
    stored = await world.bot.storage.sweeps.get(1)
    assert stored is not None and stored.finished_at is not None and stored.error
    for cell in stored.cells:
        job = await world.bot.storage.jobs.get(cell.job_id)
        assert job is not None and job.state == JobState.FAILED


async def test_the_sheet_fits_the_channels_upload_limit(world: World) -> None:
    await world.add_lora("clay", path="owner/clay")
    world.emu.guild.upload_limit = 1024 * 1024
    await started(world, lora="clay", cells=4, image=noisy_png(1024, 1024))
    message = await sheet(world)
    [(name, data, _)] = message.files
    assert len(data) <= 1024 * 1024 and not name.endswith(".png")
    assert "re-encoded to fit the upload limit" in message.embeds[0]["footer"]["text"]


# ------------------------------------------------------------------------------------ from a result


async def test_the_sweep_button_reuses_the_results_inputs_seed_and_other_loras(
    world: World,
) -> None:
    await world.add_lora("clay", path="owner/clay", scale=0.8)
    await world.add_lora("ink", path="owner/ink", scale=1.2)
    result = await delivered_edit(world, lora="clay", lora2="ink", seed=77, steps=20)
    assert result.custom_ids() == [
        f"job:1:{a}" for a in ("rerun", "tweak", "reuse", "sweep", "compare", "delete")
    ]

    ix = await world.emu.click(world.emu.member("bob"), result, "job:1:sweep")
    await ix.response()
    assert ix.modal is not None and ix.modal["title"] == "Sweep edit #1"
    text = await submit_modal(
        world,
        "bob",
        ix,
        {"LoRA to sweep (scale mode)": "ink", "Cells (4–8; each is one image of your quota)": "4"},
    )
    assert text.startswith("Sweep #1 is on its way: 4 images with one seed (`ink` 0.25 → 1.5")
    message = await sheet(world)
    first, *cells = world.fal.submissions()
    assert {s["seed"] for s in cells} == {77}
    assert {s["num_inference_steps"] for s in cells} == {20}
    assert all(s["image_urls"] == first["image_urls"] for s in cells)
    scales = [0.25, 0.667, 1.083, 1.5]
    assert cell_colours(message, 4, OUTPUT) == [
        expected(77, [("owner/clay", 0.8), ("owner/ink", s)]) for s in scales
    ]
    assert fields(message)["With"] == "`clay` × 0.8"
    link = f"https://discord.com/channels/{world.emu.guild.id}/{result.channel_id}/{result.id}"
    assert link in fields(message)["Made from"]
    assert world.emu.member("bob").mention in message.content
    await world.bot.jobs.wait_idle()
    assert await world.usage("bob") == (4, 0) and await world.usage("alice") == (1, 0)


async def test_the_sweep_and_next_input_forms_survive_a_restart(world: World) -> None:
    await world.add_lora("clay", path="owner/clay")
    result = await delivered_edit(world, lora="clay", seed=5)
    opened = await world.emu.click(world.emu.member("alice"), result, "job:1:sweep")
    await opened.response()
    await world.restart()  # the member is still typing
    text = await submit_modal(world, "alice", opened, {CELLS: "4"})
    assert text.startswith("Sweep #1 is on its way: 4 images")
    message = await sheet(world)
    await world.bot.jobs.wait_idle()

    picked = await world.emu.click(world.emu.member("alice"), message, "sweep:1:next", values=["1"])
    await picked.response()
    await world.restart()
    text = await submit_modal(
        world, "alice", picked, {"Prompt for the next edit (clay 0.667)": "x"}
    )
    assert text.startswith("Started edit #6 from cell 2 of sweep #1.")


async def test_the_sweep_button_combines_the_results_loras(world: World) -> None:
    await world.add_lora("clay", path="owner/clay", scale=0.8)
    await world.add_lora("ink", path="owner/ink", scale=1.2)
    result = await delivered_edit(world, lora="clay", lora2="ink", seed=11)
    ix = await world.emu.click(world.emu.member("alice"), result, "job:1:sweep")
    text = await submit_modal(
        world, "alice", ix, {"Mode: scale, or combinations of its LoRAs": "combinations"}
    )
    assert "on/off combinations of `clay`, `ink` (4 cells)" in text
    message = await sheet(world)
    stacks = [
        [],
        [("owner/clay", 0.8)],
        [("owner/ink", 1.2)],
        [("owner/clay", 0.8), ("owner/ink", 1.2)],
    ]
    assert cell_colours(message, 4, OUTPUT) == [expected(11, stack) for stack in stacks]
    assert labels_match(message, ["no LoRA", "clay", "ink", "clay + ink"], OUTPUT) == [True] * 4
