"""Bad input to the studio features answered with its own message, privately, and nothing else
changes (no job, no sweep, no charge, presets as they were): /sweep's options (ranges, cells,
modes, LoRAs, the image), the Sweep modal on a result, the Compare button where edits are turned
off, the sheet's menus (a cell the sheet doesn't offer, a blank prompt), `/edit preset:` (unknown,
broken, a template that makes the prompt too long) and `/admin preset add|edit|remove`. The
checks every row gets are in tests/harness/bad_inputs.py."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio

from emulators.discord_emulator.interactions import MESSAGE_COMPONENT
from emulators.discord_emulator.messages import Message
from tests.harness.bad_inputs import (
    INVISIBLE_NAME,
    Act,
    Answer,
    Desk,
    Row,
    admin,
    check_row,
    check_table,
    open_desk,
    row_id,
)
from tests.harness.e2e import World
from tests.harness.images import png
from tests.harness.studio import sheet

COMBINATIONS = (
    "Combinations need two or three LoRAs (two make 4 cells, three make 8); this recipe has 1."
)
REMOVED = "The LoRA `gone` was removed from this server, so this edit can't be rerun."
CELLS_FIELD = "Cells (4–8; each is one image of your quota)"


def swept(**options: Any) -> Act:
    """/sweep by alice on a PNG, as Discord's client sends it."""

    async def act(desk: Desk) -> Answer:
        files = {"image": options.pop("image", None) or desk.file(png())}
        return await desk.slash(
            "alice", "sweep", {"prompt": "make it clay", "lora": "clay", **options}, files=files
        )

    return act


def raw_swept(**options: Any) -> Act:
    """/sweep as a modified client sends it."""

    async def act(desk: Desk) -> Answer:
        files = {"image": desk.file(png())}
        return await desk.raw(
            "alice", "sweep", {"prompt": "make it clay", "lora": "clay", **options}, files=files
        )

    return act


def result_of(desk: Desk, *, orphan: bool = False) -> tuple[Message, int]:
    message = desk.orphan if orphan else desk.result
    assert message is not None
    return message, int(message.embeds[0]["title"].removeprefix("Edit #"))


def sweep_modal(values: dict[str, str], *, who: str = "alice", orphan: bool = False) -> Act:
    async def act(desk: Desk) -> Answer:
        message, job_id = result_of(desk, orphan=orphan)
        return await desk.modal(who, message, f"job:{job_id}:sweep", values)

    return act


def button(who: str, action: str) -> Act:
    async def act(desk: Desk) -> Answer:
        message, job_id = result_of(desk)
        return await desk.click(who, message, f"job:{job_id}:{action}")

    return act


def sheet_of(desk: Desk) -> Message:
    found = getattr(desk, "sheet", None)
    assert isinstance(found, Message), "no sheet was posted"
    return found


def raw_pick(action: str, value: str) -> Act:
    """A menu pick of a value the sheet doesn't offer (a modified client)."""

    async def act(desk: Desk) -> Answer:
        message = sheet_of(desk)
        member = desk.who("alice")
        channel = desk.emu.world.channel(message.channel_id)
        assert channel is not None
        ix = desk.emu.state.responses.new_interaction(
            type=MESSAGE_COMPONENT,
            name=f"sweep:1:{action}",
            user=member.user,
            member=member,
            channel=channel,
            data={"custom_id": f"sweep:1:{action}", "component_type": 3, "values": [value]},
            message=message,
        )
        return await desk.answer(ix)

    return act


def next_input(prompt: str) -> Act:
    async def act(desk: Desk) -> Answer:
        message = sheet_of(desk)
        opened = await desk.emu.click(desk.who("alice"), message, "sweep:1:next", values=["0"])
        return await desk.submit("alice", opened, {"Prompt for the next edit (clay 0.25)": prompt})

    return act


def preset_edit(**options: Any) -> Act:
    return lambda desk: desk.edit("alice", **options)


async def requester_only(desk: Desk) -> None:
    await desk.set(rerun_policy="requester")


async def anyone_reruns(desk: Desk) -> None:
    await desk.set(rerun_policy="anyone")


async def tight_quota(desk: Desk) -> None:
    """Three images left for alice, whatever the table's rows used before."""
    alice = desk.who("alice").id
    usage = await desk.world.bot.storage.quotas.usage(desk.guild, alice, 86_400)
    await desk.set(user_quotas={alice: usage.images_used + 3})


async def usual_quota(desk: Desk) -> None:
    await desk.set(user_quotas={})


async def deny_general(desk: Desk) -> None:
    await desk.set(channel_rules={desk.emu.channel("general").id: "deny"})


async def allow_general(desk: Desk) -> None:
    await desk.set(channel_rules={})


async def with_studio(desk: Desk) -> None:
    """alice's results (one with a LoRA since removed), a posted sheet, and presets."""
    world = desk.world
    await world.add_lora("gone")
    _, desk.orphan = await desk.deliver("alice", lora="gone")
    await world.bot.storage.loras.remove(desk.guild, "gone", actor_id=1)
    _, desk.result = await desk.deliver("alice", lora="clay")
    answer = await desk.slash(
        "alice",
        "sweep",
        {"prompt": "p", "lora": "clay", "cells": 4},
        files={"image": desk.file(png())},
    )
    assert "is on its way" in answer.text, answer.text
    desk.sheet = await sheet(world)  # type: ignore[attr-defined]
    await world.bot.jobs.wait_idle()
    answer = await desk.slash("carol", "admin preset add", {"name": "portrait", "lora": "clay"})
    assert "Added the preset" in answer.text, answer.text
    hidden = await world.bot.storage.loras.get(desk.guild, "hidden")
    assert hidden is not None
    broken = {"loras": [{"id": hidden.id, "name": "hidden", "scale": 1.0}]}
    await world.bot.storage.presets.add(desk.guild, "broken", broken, actor_id=1)
    await world.bot.storage.presets.add(
        desk.guild, "long", {"template": "{prompt} " + "w" * 990}, actor_id=1
    )


ROWS: list[Row] = [
    # ---------------------------------------------------------------- /sweep
    Row(
        "sweep: from equals to",
        "alice",
        swept(**{"from": 1.0, "to": 1.0}),
        "`from` and `to` are both 1: a sweep needs two different scales.",
    ),
    Row("sweep: 3 cells (raw)", "alice", raw_swept(cells=3), "`cells` must be between 4 and 8"),
    Row("sweep: 9 cells (raw)", "alice", raw_swept(cells=9), "`cells` must be between 4 and 8"),
    Row(
        "sweep: from 5 (raw)",
        "alice",
        raw_swept(**{"from": 5.0}),
        "`from` must be between 0 and 4; you gave 5.",
    ),
    Row(
        "sweep: to is NaN (raw)",
        "alice",
        raw_swept(**{"to": float("nan")}),
        "`to` must be a number; you gave `nan`.",
    ),
    Row(
        "sweep: mode that isn't a choice (raw)",
        "alice",
        raw_swept(mode="zigzag"),
        "`mode` must be one of: scale, combinations. You gave `zigzag`.",
    ),
    Row(
        "sweep: a LoRA the server doesn't have",
        "alice",
        swept(lora="nope"),
        "This server has no LoRA named `nope`. See `/loras` for the list.",
    ),
    Row(
        "sweep: a disabled LoRA",
        "alice",
        swept(lora="hidden"),
        "The LoRA `hidden` is disabled on this server.",
    ),
    Row(
        "sweep: an NSFW LoRA outside an age-restricted channel",
        "alice",
        swept(lora="spicy"),
        "The LoRA `spicy` is marked NSFW; use it in an age-restricted channel.",
    ),
    Row(
        "sweep: the same LoRA twice",
        "alice",
        swept(lora2="CLAY"),
        "You picked the LoRA `CLAY` twice; pick it once.",
    ),
    Row("sweep: zero-width LoRA name", "alice", swept(lora="cl\u200bay"), INVISIBLE_NAME),
    Row("sweep: combinations of one LoRA", "alice", swept(mode="combinations"), COMBINATIONS),
    Row(
        "sweep: a PDF as the image",
        "alice",
        lambda d: swept(image=d.file(b"%PDF-1.4\n", "doc.pdf", "application/pdf"))(d),
        "image (doc.pdf) is a PDF, not an image.",
    ),
    Row("sweep: blank prompt", "alice", swept(prompt="   "), "The prompt is empty"),
    Row(
        "sweep: in a direct message (raw)",
        "alice",
        lambda d: d.raw(
            "alice",
            "sweep",
            {"prompt": "p", "lora": "clay"},
            files={"image": d.file(png())},
            dm=True,
        ),
        "works in a server, not in direct messages",
    ),
    Row(
        "sweep: more cells than the quota has left",
        "alice",
        swept(),
        "this sweep makes 6 and you have 3 left",
        setup=tight_quota,
        teardown=usual_quota,
    ),
    Row(
        "sweep: in a channel where edits are turned off",
        "alice",
        swept(),
        "Edits are turned off in this channel.",
        setup=deny_general,
        teardown=allow_general,
    ),
    # ---------------------------------------------------------------- the Sweep modal
    Row(
        "modal Sweep: from is text",
        "alice",
        sweep_modal({"From scale (0–4)": "abc"}),
        "From must be a number; you gave `abc`.",
    ),
    Row(
        "modal Sweep: to 9",
        "alice",
        sweep_modal({"To scale (0–4)": "9"}),
        "`to` must be between 0 and 4; you gave 9.",
    ),
    Row(
        "modal Sweep: 12 cells",
        "alice",
        sweep_modal({CELLS_FIELD: "12"}),
        "A sweep has 4 to 8 cells; you asked for 12.",
    ),
    Row(
        "modal Sweep: cells is text",
        "alice",
        sweep_modal({CELLS_FIELD: "six"}),
        "Cells must be a whole number; you gave `six`.",
    ),
    Row(
        "modal Sweep: a mode it doesn't know",
        "alice",
        sweep_modal({"Mode: scale, or combinations of its LoRAs": "zigzag"}),
        "The mode is `scale` or `combinations`; you gave `zigzag`.",
    ),
    Row(
        "modal Sweep: combinations of a one-LoRA result",
        "alice",
        sweep_modal({"Mode: scale, or combinations of its LoRAs": "combinations"}),
        COMBINATIONS,
    ),
    Row(
        "modal Sweep: a LoRA the server doesn't have",
        "alice",
        sweep_modal({"LoRA to sweep (scale mode)": "nope"}),
        "This server has no LoRA named `nope`.",
    ),
    Row(
        "modal Sweep: its LoRA was removed",
        "alice",
        sweep_modal({"From scale (0–4)": "0.5"}, orphan=True),
        REMOVED,
    ),
    Row(
        "button Sweep: someone else's edit where only requesters may rerun",
        "bob",
        button("bob", "sweep"),
        "On this server only the member who made an edit can rerun it.",
        setup=requester_only,
        teardown=anyone_reruns,
    ),
    # ---------------------------------------------------------------- Compare, the sheet's menus
    Row(
        "button Compare: in a channel where edits are turned off",
        "bob",
        button("bob", "compare"),
        "Edits are turned off in this channel.",
        setup=deny_general,
        teardown=allow_general,
    ),
    Row(
        "menu full size: a cell the sheet doesn't offer (raw)",
        "alice",
        raw_pick("full", "9"),
        "Sweep #1 has no cell 10.",
    ),
    Row(
        "menu full size: a value that isn't a cell (raw)",
        "alice",
        raw_pick("full", "x"),
        "Pick one cell of the sheet.",
    ),
    Row("menu next input: blank prompt", "alice", next_input("   "), "The prompt is empty"),
    # ---------------------------------------------------------------- /edit preset:
    Row(
        "edit preset: a preset the server doesn't have",
        "alice",
        preset_edit(preset="nope"),
        "This server has no preset named `nope`. See `/presets`.",
    ),
    Row(
        "edit preset: zero-width name",
        "alice",
        preset_edit(preset="por\u200btrait"),
        "Preset names can't contain invisible or direction-changing characters.",
    ),
    Row(
        "edit preset: its LoRA is disabled",
        "alice",
        preset_edit(preset="broken"),
        "The preset `broken` can't be used: its LoRA `hidden` is disabled on this server.",
    ),
    Row(
        "edit preset: the template makes the prompt too long",
        "alice",
        preset_edit(preset="long", prompt="x" * 1500),
        "With the preset `long`'s template the prompt is 2,491 characters; the limit is 2,000.",
    ),
    # ---------------------------------------------------------------- /admin preset
    Row(
        "admin preset add: a template without {prompt}",
        "carol",
        admin("preset add", {"name": "p2", "template": "oil painting"}),
        "The template must contain `{prompt}` once",
    ),
    Row(
        "admin preset add: {prompt} twice",
        "carol",
        admin("preset add", {"name": "p2", "template": "{prompt} and {prompt}"}),
        "The template must contain `{prompt}` once",
    ),
    Row(
        "admin preset add: a name with a space",
        "carol",
        admin("preset add", {"name": "my preset", "lora": "clay"}),
        "`my preset` isn't a valid preset name",
    ),
    Row(
        "admin preset add: a name taken (other case)",
        "carol",
        admin("preset add", {"name": "PORTRAIT", "lora": "clay"}),
        "A preset named `portrait` already exists here (names ignore case).",
    ),
    Row(
        "admin preset add: nothing in it",
        "carol",
        admin("preset add", {"name": "empty"}),
        "A preset needs at least a LoRA, a template or a parameter.",
    ),
    Row(
        "admin preset add: a LoRA the server doesn't have",
        "carol",
        admin("preset add", {"name": "p2", "lora": "nope"}),
        "This server has no LoRA named `nope`.",
    ),
    Row(
        "admin preset add: a disabled LoRA",
        "carol",
        admin("preset add", {"name": "p2", "lora": "hidden"}),
        "The LoRA `hidden` is disabled; enable it first.",
    ),
    Row(
        "admin preset add: the same LoRA twice",
        "carol",
        admin("preset add", {"name": "p2", "lora": "clay", "lora2": "Clay"}),
        "The LoRA `clay` is in the preset twice; name it once.",
    ),
    Row(
        "admin preset add: a scale without its LoRA",
        "carol",
        admin("preset add", {"name": "p2", "scale2": 0.5, "steps": 20}),
        "A scale needs its LoRA: give `lora` with `scale`.",
    ),
    Row(
        "admin preset add: 80 steps (raw)",
        "carol",
        admin("preset add", {"name": "p2", "steps": 80}, raw=True),
        "`steps` must be between 4 and 50; you gave 80.",
    ),
    Row(
        "admin preset add: a size that isn't a choice (raw)",
        "carol",
        admin("preset add", {"name": "p2", "size": "huge"}, raw=True),
        "`size` must be one of:",
    ),
    Row(
        "admin preset edit: a preset the server doesn't have",
        "carol",
        admin("preset edit", {"name": "nope", "steps": 20}),
        "This server has no preset named `nope`.",
    ),
    Row(
        "admin preset edit: nothing to change",
        "carol",
        admin("preset edit", {"name": "portrait"}),
        "Nothing to change: give at least one option besides the name.",
    ),
    Row(
        "admin preset edit: clearing something that can't be cleared",
        "carol",
        admin("preset edit", {"name": "portrait", "clear": "colour"}),
        "`colour` can't be cleared; choose from",
    ),
    Row(
        "admin preset edit: a scale for a position with no LoRA",
        "carol",
        admin("preset edit", {"name": "portrait", "scale3": 0.5}),
        "The preset has no LoRA in position 3.",
    ),
    Row(
        "admin preset remove: a preset the server doesn't have",
        "carol",
        admin("preset remove", {"name": "nope"}),
        "This server has no preset named `nope`.",
    ),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def desk(module_world: World) -> Desk:
    """One bot for the whole table; see tests/harness/bad_inputs.py."""
    desk = await open_desk(module_world)
    await with_studio(desk)
    return desk


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("row", ROWS, ids=row_id)
async def test_bad_studio_input(desk: Desk, row: Row, request: pytest.FixtureRequest) -> None:
    await check_row(desk, row, request.node)


def test_the_table_keeps_every_row() -> None:
    check_table(ROWS, at_least=50)
