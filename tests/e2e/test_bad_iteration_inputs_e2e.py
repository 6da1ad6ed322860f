"""Bad input on a delivered edit answered with its own message and nothing else changes: the
Rerun, Delete and Cancel buttons pressed by the wrong member, without quota, on a removed LoRA
or on a stale /jobs list; the Tweak and Use-as-input modals with bad seeds, scales and
prompts; the context menu with too many LoRAs, bad scales or no usable image (four images are
accepted: the first three are edited, and it says so); and 🔁 reactions, refused in a short
public reply that mentions only the member. The checks every row gets are in
tests/harness/bad_inputs.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import pytest_asyncio

from emulators.discord_emulator.messages import Attachment, Message
from tests.harness.bad_inputs import (
    INVISIBLE_NAME,
    Act,
    Answer,
    Desk,
    Held,
    Row,
    check_row,
    check_table,
    open_desk,
    row_id,
)
from tests.harness.e2e import World
from tests.harness.images import png


def result_of(desk: Desk) -> Message:
    assert desk.result is not None
    return desk.result


def job_of(message: Message) -> int:
    return int(message.embeds[0]["title"].removeprefix("Edit #"))


def button(who: str, action: str, *, orphan: bool = False) -> Act:
    async def act(desk: Desk) -> Answer:
        message = desk.orphan if orphan else desk.result
        assert message is not None
        return await desk.click(who, message, f"job:{job_of(message)}:{action}")

    return act


def tweak(values: dict[str, str], *, raw: bool = False, orphan: bool = False) -> Act:
    async def act(desk: Desk) -> Answer:
        message = desk.orphan if orphan else desk.result
        assert message is not None
        opened = await desk.emu.click(desk.who("alice"), message, f"job:{job_of(message)}:tweak")
        return await desk.submit("alice", opened, values, raw=raw)

    return act


def context(files: Callable[[Desk], list[Attachment]], loras: str = "") -> Act:
    async def act(desk: Desk) -> Answer:
        return await desk.context("alice", files(desk), loras=loras)

    return act


def react(who: str, *, orphan: bool = False) -> Act:
    async def act(desk: Desk) -> Answer:
        message = desk.orphan if orphan else desk.result
        assert message is not None
        return await desk.react(who, message)

    return act


async def requester_only(desk: Desk) -> None:
    await desk.set(rerun_policy="requester")


async def anyone_reruns(desk: Desk) -> None:
    await desk.set(rerun_policy="anyone")


async def bob_has_no_quota(desk: Desk) -> None:
    await desk.set(user_quotas={desk.who("bob").id: 0})


async def bob_has_quota(desk: Desk) -> None:
    await desk.set(user_quotas={})


async def hold_an_edit(desk: Desk) -> None:
    desk.world.fal.queue_delay = 60.0  # fal's queue latency knob: the job waits, undelivered
    answer = await desk.edit("alice", prompt="held in the queue")
    held = desk.held = Held(int(answer.text.split("#", 1)[1].split()[0]))
    general = desk.emu.channel("general")
    held.status = await desk.emu.wait_for_message(
        general,
        lambda m: (
            m.content.startswith(f"**Edit #{held.job_id}**")
            and f"job:{held.job_id}:cancel" in m.custom_ids()
        ),
    )
    listing = await desk.emu.slash(desk.who("alice"), general, "jobs")
    await listing.response()
    assert listing.original is not None
    held.jobs_list = listing.original


def held_edit(desk: Desk) -> Held:
    assert desk.held is not None and desk.held.status is not None, "no edit is held"
    return desk.held


async def release_the_edit(desk: Desk) -> None:
    try:
        held = desk.held
        if held is not None and held.status is not None:
            job = await desk.world.bot.storage.jobs.get(held.job_id)
            if job is not None and job.state not in ("cancelled", "delivered"):
                await desk.click("alice", held.status, f"job:{held.job_id}:cancel")
    finally:
        desk.world.fal.queue_delay = 0.0
        desk.held = None


async def hold_and_cancel(desk: Desk) -> None:
    await hold_an_edit(desk)
    held = held_edit(desk)
    answer = await desk.click("alice", held.status, f"job:{held.job_id}:cancel")
    assert "is cancelled; you were not charged" in answer.text


async def cancel_by_bob(desk: Desk) -> Answer:
    held = held_edit(desk)
    return await desk.click("bob", held.status, f"job:{held.job_id}:cancel")


async def stale_cancel(desk: Desk) -> Answer:
    held = held_edit(desk)
    assert held.jobs_list is not None
    return await desk.click("alice", held.jobs_list, f"job:{held.job_id}:cancel")


async def first_three_of_four(desk: Desk, answer: Answer) -> None:
    job_id = int(answer.text.split("#", 1)[1].split()[0])
    job = await desk.world.job_in(job_id, "delivered")
    assert len(job.request.inputs) == 3
    fetched = [e.data.filename for e in desk.emu.events if e.kind == "cdn_get"]
    assert {"first.png", "second.png", "third.png"} <= set(fetched)
    assert "fourth.png" not in fetched, "the fourth image was downloaded"


def images(*named: tuple[bytes, str, str | None]) -> Callable[[Desk], list[Attachment]]:
    return lambda desk: [desk.file(data, name, ctype) for data, name, ctype in named]


async def with_results(desk: Desk) -> None:
    await desk.world.add_lora("gone")
    _, desk.orphan = await desk.deliver("alice", lora="gone")
    await desk.world.bot.storage.loras.remove(desk.guild, "gone", actor_id=1)
    _, desk.result = await desk.deliver("alice", lora="clay")


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"/>'
REMOVED = "The LoRA `gone` was removed from this server, so this edit can't be rerun."

ROWS: list[Row] = [
    Row(
        "button Rerun: someone else's edit where only requesters may rerun",
        "bob",
        button("bob", "rerun"),
        "On this server only the member who made an edit can rerun it.",
        setup=requester_only,
        teardown=anyone_reruns,
    ),
    Row(
        "button Rerun: a member with no quota",
        "bob",
        button("bob", "rerun"),
        "Your quota on this server is 0 images per 24 h",
        setup=bob_has_no_quota,
        teardown=bob_has_quota,
    ),
    Row(
        "button Rerun: its LoRA was removed",
        "alice",
        button("alice", "rerun", orphan=True),
        REMOVED,
    ),
    Row(
        "button Delete: someone else's result",
        "bob",
        button("bob", "delete"),
        "Only the member who made this edit (or a moderator) can delete it.",
    ),
    Row(
        "button Cancel: someone else's running edit",
        "bob",
        cancel_by_bob,
        "Only the member who started this edit (or a moderator) can cancel it.",
        setup=hold_an_edit,
        teardown=release_the_edit,
    ),
    Row(
        "button Cancel: pressed again on a cancelled edit (stale /jobs list)",
        "alice",
        stale_cancel,
        "This edit is already cancelled; nothing to cancel.",
        setup=hold_and_cancel,
        teardown=release_the_edit,
    ),
    Row(
        "modal Tweak: seed is text",
        "alice",
        tweak({"Seed (empty for a new random one)": "abc"}),
        "Seed must be a whole number; you gave `abc`.",
    ),
    Row(
        "modal Tweak: seed with a right-to-left override",
        "alice",
        tweak({"Seed (empty for a new random one)": "\u202e12a"}),
        "Seed must be a whole number; you gave `12a`.",
    ),
    Row(
        "modal Tweak: negative seed",
        "alice",
        tweak({"Seed (empty for a new random one)": "-5"}),
        "seed must be between 0 and 4,294,967,295; you gave -5.",
    ),
    Row(
        "modal Tweak: seed past 2**32",
        "alice",
        tweak({"Seed (empty for a new random one)": "9999999999"}),
        "you gave 9,999,999,999.",
    ),
    Row(
        "modal Tweak: scale NaN",
        "alice",
        tweak({"Scale of clay": "nan"}),
        "The scale of clay must be between 0 and 4; you gave nan.",
    ),
    Row(
        "modal Tweak: scale is text",
        "alice",
        tweak({"Scale of clay": "lots"}),
        "Scale of clay must be a number; you gave `lots`.",
    ),
    Row("modal Tweak: blank prompt", "alice", tweak({"Prompt": "   "}), "The prompt is empty"),
    Row(
        "modal Tweak: 4,000-character prompt (raw)",
        "alice",
        tweak({"Prompt": "w" * 4000}, raw=True),
        "The prompt is 4,000 characters; the limit is 2,000.",
    ),
    Row(
        "modal Tweak: its LoRA was removed",
        "alice",
        tweak({"Prompt": "again"}, orphan=True),
        REMOVED,
    ),
    Row(
        "modal Use as input: blank prompt",
        "alice",
        lambda d: d.modal(
            "alice",
            result_of(d),
            f"job:{job_of(result_of(d))}:reuse",
            {"Prompt for the next edit": "   "},
        ),
        "The prompt is empty",
    ),
    Row(
        "context menu: four LoRAs",
        "alice",
        context(images((png(), "a.png", None)), "clay, a, b, c"),
        "At most 3 LoRAs can be combined.",
    ),
    Row(
        "context menu: zero-width LoRA name",
        "alice",
        context(images((png(), "a.png", None)), "cl\u200bay"),
        INVISIBLE_NAME,
    ),
    Row(
        "context menu: right-to-left LoRA name with a scale",
        "alice",
        context(images((png(), "a.png", None)), "\u202eyalc:abc"),
        INVISIBLE_NAME,
    ),
    Row(
        "context menu: scale is text",
        "alice",
        context(images((png(), "a.png", None)), "clay:abc"),
        "The scale of clay must be a number; you gave `abc`.",
    ),
    Row(
        "context menu: scale 9",
        "alice",
        context(images((png(), "a.png", None)), "clay:9"),
        "The scale of clay must be between 0 and 4; you gave 9.",
    ),
    Row(
        "context menu: a message with only a PDF",
        "alice",
        context(images((b"%PDF-1.4\n", "doc.pdf", None))),
        "That message has no image attachments to edit.",
    ),
    Row(
        "context menu: an SVG named .png",
        "alice",
        context(images((SVG, "vector.png", "image/png"))),
        "image (vector.png) is an SVG (vector) file, not an image",
    ),
    Row(
        "context menu: a zero-byte image",
        "alice",
        context(images((b"", "empty.png", "image/png"))),
        "image (empty.png) is empty (0 bytes)",
    ),
    Row(
        "context menu: four images (accepted: the first three, and it says so)",
        "alice",
        context(
            images(
                (png(320, 240, (1, 0, 0)), "first.png", None),
                (png(320, 240, (2, 0, 0)), "second.png", None),
                (png(320, 240, (3, 0, 0)), "third.png", None),
                (png(320, 240, (4, 0, 0)), "fourth.png", None),
            )
        ),
        "That message has 4 images; I'm using the first 3.",
        accepted=first_three_of_four,
    ),
    Row(
        "reaction 🔁: someone else's edit where only requesters may rerun",
        "bob",
        react("bob"),
        "On this server only the member who made an edit can rerun it.",
        setup=requester_only,
        teardown=anyone_reruns,
        private=False,
    ),
    Row(
        "reaction 🔁: a member with no quota",
        "bob",
        react("bob"),
        "Your quota on this server is 0 images per 24 h",
        setup=bob_has_no_quota,
        teardown=bob_has_quota,
        private=False,
    ),
    Row(
        "reaction 🔁: its LoRA was removed",
        "alice",
        react("alice", orphan=True),
        REMOVED,
        private=False,
    ),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def desk(module_world: World) -> Desk:
    """One bot for the whole table; see tests/harness/bad_inputs.py."""
    desk = await open_desk(module_world)
    await with_results(desk)
    return desk


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("row", ROWS, ids=row_id)
async def test_bad_iteration_input(desk: Desk, row: Row, request: pytest.FixtureRequest) -> None:
    await check_row(desk, row, request.node)


def test_the_table_keeps_every_row() -> None:
    check_table(ROWS, at_least=28)
