"""Rerun, tweak and chain end to end: 🔁 reactions, result buttons, the context menu.

Members act through the Discord emulator; fal's side is the fal emulator; the bot is our real
bot on a temp SQLite file. Assertions are what members see and what the database holds.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
import pytest

import cogs.iterate
from emulators.discord_emulator.interactions import Interaction
from emulators.discord_emulator.messages import Attachment, Message
from emulators.discord_emulator.permissions import Permission
from storage.models import JobState
from tests.harness.e2e import World
from tests.harness.images import jpeg, png

RERUN = "🔁"
MENU = "Edit with FLUX.2 LoRA…"


# ------------------------------------------------------------------------------------ helpers


def member_id(world: World, name: str) -> int:
    return world.emu.member(name).id


async def delivered(
    world: World,
    member: str = "alice",
    *,
    images: list[bytes] | None = None,
    **options: Any,
) -> Message:
    """Run /edit and return its result once the bot has put its 🔁 reaction on it."""
    ix = await world.edit(member=member, images=images, **options)
    assert "is on its way" in await world.reply_text(ix)
    return await result_with_reaction(world)


async def result_with_reaction(world: World) -> Message:
    result = await world.result()
    bot_id = world.emu.bot_user.id
    await world.emu.wait_for(
        "reaction_add", lambda e: e[0].id == result.id and e[1] == bot_id and e[2] == RERUN
    )
    return result


async def job_count(world: World) -> int:
    await world.bot.jobs.wait_idle()
    count = 0
    while await world.bot.storage.jobs.get(count + 1) is not None:
        count += 1
    return count


async def images_used(world: World, member: str) -> int:
    usage = await world.bot.storage.quotas.usage(
        world.emu.guild.id, member_id(world, member), 86400
    )
    return usage.images_used


def fields(message: Message) -> dict[str, str]:
    return {f["name"]: f["value"] for f in message.embeds[0]["fields"]}


def link_to(world: World, message: Message) -> str:
    return f"https://discord.com/channels/{world.emu.guild.id}/{message.channel_id}/{message.id}"


async def follow(world: World, job_id: int) -> str:
    """The end of a button's answer: a link to the new job's status message."""
    job = await world.bot.storage.jobs.get(job_id)
    assert job is not None and job.status_message_id is not None
    status = world.emu.message(job.status_message_id)
    assert status.content.startswith(f"**Edit #{job_id}**")
    return f" Follow it [here]({link_to(world, status)})."


def click(world: World, member: str, message: Message, job_id: int, action: str) -> Any:
    return world.emu.click(world.emu.member(member), message, f"job:{job_id}:{action}")


def modal_fields(ix: Interaction) -> dict[str, dict[str, Any]]:
    """The modal's text inputs by label, whether in action rows (type 1) or labels (type 18)."""
    assert ix.modal is not None
    found: dict[str, dict[str, Any]] = {}
    for top in ix.modal["components"]:
        if top["type"] == 1:
            for field in top["components"]:
                found[field["label"]] = field
        elif top["type"] == 18:
            found[top["label"]] = top["component"]
    return found


async def submit(world: World, member: str, ix: Interaction, values: dict[str, str]) -> str:
    """Fill the modal by field label, submit it, and return the member's ephemeral answer."""
    await ix.response()
    by_label = modal_fields(ix)
    answer = await world.emu.submit_modal(
        world.emu.member(member),
        ix,
        {by_label[label]["custom_id"]: value for label, value in values.items()},
    )
    text = await world.reply_text(answer)
    assert answer.ephemeral
    return text


async def refusal_for(world: World, member: str) -> Message:
    """The short channel reply that mentions `member` (a refused reaction)."""
    uid = member_id(world, member)
    return await world.emu.wait_for_message(
        world.emu.channel("general"),
        lambda m: (
            m.author_id == world.emu.bot_user.id
            and not m.files
            and m.content.startswith(f"<@{uid}> ")
        ),
    )


@pytest.fixture
def short_refusals(world: World) -> float:
    """Refusal replies live 0.3 s instead of 15 s, so the test awaits their deletion."""
    cog = world.bot.get_cog("Iterate")
    assert cog is not None and cog.refusal_lifetime == cogs.iterate.REFUSAL_LIFETIME == 15.0
    cog.refusal_lifetime = 0.3  # type: ignore[attr-defined]
    return 0.3


async def taken_back(world: World, message: Message, member: str, since: int = 0) -> None:
    """The bot removes the member's 🔁 once it has handled it."""
    uid = member_id(world, member)
    await world.emu.wait_for(
        "reaction_remove",
        lambda e: e[0].id == message.id and e[1] == uid and e[2] == RERUN,
        since=since,
    )
    assert uid not in message.reactions.get(RERUN, set())


async def assert_deleted_after(world: World, message: Message, lifetime: float) -> None:
    await world.emu.wait_for_delete(message)
    at = {
        e.kind: e.at
        for e in world.emu.events
        if e.kind in ("message_create", "message_delete") and e.data.id == message.id
    }
    assert at["message_delete"] - at["message_create"] >= lifetime  # not before its time


# ------------------------------------------------------------------------------------ 🔁 reactions


async def test_reaction_by_requester_reruns_with_new_seed_and_links_parent(world: World) -> None:
    await world.add_lora("claymation", triggers=("CLAY",), scale=0.8)
    original = await delivered(world, lora="claymation", seed=1234, steps=20)
    alice = world.emu.member("alice")

    await world.emu.react(alice, original, RERUN)
    # The bot takes the member's reaction back once the rerun is admitted; its own stays.
    await taken_back(world, original, "alice")
    rerun = await result_with_reaction(world)

    assert rerun.embeds[0]["title"] == "Edit #2"
    got = fields(rerun)
    assert got["LoRAs"] == "`claymation` × 0.8"
    assert got["Steps"] == "20"
    assert got["Seed"] != "1234"
    assert link_to(world, original) in got["Made from"]
    assert alice.mention in rerun.content
    assert original.reactions[RERUN] == {world.emu.bot_user.id}

    first, second = world.fal.submissions()
    assert second["seed"] != first["seed"] == 1234
    for same in ("prompt", "image_urls", "loras", "num_inference_steps", "image_size"):
        assert second[same] == first[same]

    job = await world.bot.storage.jobs.get(2)
    assert job is not None
    assert job.parent_job_id == 1 and job.user_id == alice.id
    assert job.state == JobState.DELIVERED and job.result_message_id == rerun.id
    assert await images_used(world, "alice") == 2


async def test_reaction_by_another_member_charges_them(world: World) -> None:
    original = await delivered(world, "alice")
    bob = world.emu.member("bob")

    await world.emu.react(bob, original, RERUN)
    rerun = await result_with_reaction(world)

    assert bob.mention in rerun.content and bob.id in rerun.mentions
    job = await world.bot.storage.jobs.get(2)
    assert job is not None and job.user_id == bob.id and job.parent_job_id == 1
    assert await images_used(world, "bob") == 1
    assert await images_used(world, "alice") == 1


async def test_requester_only_refuses_others_with_a_reply_that_deletes_itself(
    world: World, short_refusals: float
) -> None:
    carol = world.emu.member("carol")
    ix = await world.emu.slash(
        carol, world.emu.channel("general"), "admin settings rerun", {"who": "requester"}
    )
    assert "requester" in await world.reply_text(ix)
    original = await delivered(world, "alice")

    await world.emu.react(world.emu.member("bob"), original, RERUN)
    refusal = await refusal_for(world, "bob")
    assert "only the member who made an edit can rerun it" in refusal.content
    await taken_back(world, original, "bob")
    assert refusal.mentions == [member_id(world, "bob")]
    await assert_deleted_after(world, refusal, short_refusals)
    assert await job_count(world) == 1
    assert await images_used(world, "bob") == 0

    # The requester still can, and so can a manager (Manage Server).
    await world.emu.react(world.emu.member("alice"), original, RERUN)
    mine = await result_with_reaction(world)
    assert mine.embeds[0]["title"] == "Edit #2"
    await world.emu.react(carol, original, RERUN)
    theirs = await result_with_reaction(world)
    assert theirs.embeds[0]["title"] == "Edit #3"
    assert carol.mention in theirs.content


async def test_reaction_over_quota_is_refused_briefly(world: World, short_refusals: float) -> None:
    await world.bot.storage.settings.update(
        world.emu.guild.id, lambda s: s.model_copy(update={"default_quota": 1})
    )
    original = await delivered(world, "alice")

    await world.emu.react(world.emu.member("alice"), original, RERUN)
    refusal = await refusal_for(world, "alice")
    assert "used 1 of 1 images" in refusal.content
    await taken_back(world, original, "alice")
    await assert_deleted_after(world, refusal, short_refusals)
    assert await job_count(world) == 1
    assert len(world.fal.submissions()) == 1


async def test_reaction_rerun_of_a_removed_lora_is_refused(
    world: World, short_refusals: float
) -> None:
    lora = await world.add_lora("claymation")
    original = await delivered(world, "alice", lora="claymation")
    await world.bot.storage.loras.remove(
        world.emu.guild.id, lora.name, actor_id=member_id(world, "carol")
    )

    await world.emu.react(world.emu.member("bob"), original, RERUN)
    refusal = await refusal_for(world, "bob")
    assert "`claymation` was removed from this server" in refusal.content
    await assert_deleted_after(world, refusal, short_refusals)

    # Another LoRA registered under the old name is not the one this edit used.
    await world.add_lora("claymation", path="someone/else")
    await world.emu.react(world.emu.member("bob"), original, RERUN)
    refusal = await refusal_for(world, "bob")
    assert "`claymation` was removed from this server" in refusal.content
    assert await job_count(world) == 1


async def test_rerun_follows_a_renamed_lora(world: World) -> None:
    await world.add_lora("claymation", scale=0.8)
    original = await delivered(world, "alice", lora="claymation")
    await world.bot.storage.loras.update(
        world.emu.guild.id, "claymation", member_id(world, "carol"), name="clay"
    )

    ix = await click(world, "alice", original, 1, "tweak")
    text = await submit(world, "alice", ix, {"Scale of claymation": "1.1"})
    assert text.startswith("Tweaked rerun started as edit #2.")
    rerun = await result_with_reaction(world)
    assert fields(rerun)["LoRAs"] == "`clay` × 1.1"
    _first, second = world.fal.submissions()
    assert second["loras"] == [{"path": "owner/claymation", "scale": 1.1}]


async def test_reaction_rerun_works_on_a_result_from_before_a_restart(world: World) -> None:
    original = await delivered(world, "alice", prompt="a clay teapot")
    await world.restart()

    await world.emu.react(world.emu.member("bob"), original, RERUN)
    rerun = await result_with_reaction(world)
    assert "a clay teapot" in rerun.embeds[0]["description"]
    assert link_to(world, original) in fields(rerun)["Made from"]
    job = await world.bot.storage.jobs.get(2)
    assert job is not None and job.parent_job_id == 1


async def test_rerun_uses_rehosted_inputs_after_discord_url_expired(world: World) -> None:
    emu = world.emu
    upload = emu.attachment(png(700, 500, (10, 120, 200)), "photo.png")
    ix = await emu.slash(
        emu.member("alice"),
        emu.channel("general"),
        "edit",
        {"prompt": "p"},
        attachments={"image": upload},
    )
    assert "is on its way" in await world.reply_text(ix)
    original = await result_with_reaction(world)
    old_url = emu.attachment_url(upload)
    emu.expire_attachment(upload)
    async with httpx.AsyncClient() as http:
        assert (await http.get(old_url)).status_code != 200  # Discord's copy is gone

    await emu.react(emu.member("alice"), original, RERUN)
    await result_with_reaction(world)
    first, second = world.fal.submissions()
    assert second["image_urls"] == first["image_urls"]
    assert first["image_urls"][0].startswith(world.fal.cdn_url)


async def test_bot_reactions_and_reactions_on_other_messages_are_ignored(world: World) -> None:
    emu = world.emu
    alice, general = emu.member("alice"), emu.channel("general")
    original = await delivered(world, "alice")
    status = next(m for m in emu.messages_in(general) if m.content.startswith("**Edit #1**"))
    photo = emu.post_user_message(alice, general, "look", [emu.attachment(png(), "a.png")])
    await emu.react(alice, photo, RERUN)
    await emu.react(alice, status, RERUN)
    await emu.react(alice, original, "👍")

    # Handled in order after the ignored ones: had any of them (or the bot's own 🔁 on the
    # result) started a job, this rerun would not be edit #2 and there would be more jobs.
    await emu.react(emu.member("bob"), original, RERUN)
    rerun = await result_with_reaction(world)
    assert rerun.embeds[0]["title"] == "Edit #2"
    assert await job_count(world) == 2
    assert alice.id in photo.reactions[RERUN] and alice.id in status.reactions[RERUN]
    replies = [m for m in emu.messages_in(general) if m.content.startswith(f"{alice.mention} ")]
    assert replies == []  # nothing was refused either


async def test_two_quick_reactions_by_one_member_start_one_job(world: World) -> None:
    original = await delivered(world, "alice")
    bob = world.emu.member("bob")

    await world.emu.react(bob, original, RERUN)
    await world.emu.unreact(bob, original, RERUN)
    await world.emu.react(bob, original, RERUN)
    await result_with_reaction(world)

    assert await job_count(world) == 2
    assert len(world.fal.submissions()) == 2
    assert await images_used(world, "bob") == 1
    assert bob.id not in original.reactions.get(RERUN, set())


async def test_a_reaction_right_after_an_admitted_rerun_is_a_repeat(world: World) -> None:
    original = await delivered(world, "alice")
    bob = world.emu.member("bob")
    await world.emu.react(bob, original, RERUN)
    await taken_back(world, original, "bob")

    mark = world.emu.mark()
    await world.emu.react(bob, original, RERUN)  # a double tap landing after the admission
    await taken_back(world, original, "bob", since=mark)
    await result_with_reaction(world)
    assert await job_count(world) == 2

    cog = world.bot.get_cog("Iterate")
    cog.reaction_cooldown = 0.0  # type: ignore[union-attr]  # later, a tap is a new request
    await world.emu.react(bob, original, RERUN)
    await result_with_reaction(world)
    assert await job_count(world) == 3
    assert await images_used(world, "bob") == 2


# ------------------------------------------------------------------------------------ buttons


async def test_rerun_button_starts_a_rerun_for_the_presser(world: World) -> None:
    original = await delivered(world, "alice")
    actions = ("rerun", "tweak", "reuse", "sweep", "compare", "delete")
    assert original.custom_ids() == [f"job:1:{a}" for a in actions]

    ix = await click(world, "bob", original, 1, "rerun")
    text = await world.reply_text(ix)
    job = await world.bot.storage.jobs.get(2)
    assert job is not None and job.user_id == member_id(world, "bob")
    assert ix.ephemeral
    assert text == f"Rerun started as edit #2 with seed {job.seed}.{await follow(world, 2)}"
    rerun = await result_with_reaction(world)
    assert fields(rerun)["Seed"] == str(job.seed)
    assert link_to(world, original) in fields(rerun)["Made from"]


async def test_tweak_button_prefills_the_recipe_and_reruns_with_changes(world: World) -> None:
    await world.add_lora("claymation", scale=0.8)
    await world.add_lora("watercolor", path="https://example.com/w.safetensors", scale=1.2)
    original = await delivered(
        world, "alice", prompt="a red cat", lora="claymation", lora2="watercolor", seed=1234
    )

    ix = await click(world, "alice", original, 1, "tweak")
    callback = await ix.response()
    assert callback.type == 9 and ix.modal is not None
    assert ix.modal["title"] == "Tweak edit #1"
    prefilled = {label: f.get("value") for label, f in modal_fields(ix).items()}
    assert prefilled == {
        "Prompt": "a red cat",
        "Seed (empty for a new random one)": "1234",
        "Scale of claymation": "0.8",
        "Scale of watercolor": "1.2",
    }

    text = await submit(
        world,
        "alice",
        ix,
        {
            "Prompt": "a blue cat",
            "Seed (empty for a new random one)": "77",
            "Scale of claymation": "1.5",
        },
    )
    assert text == f"Tweaked rerun started as edit #2.{await follow(world, 2)}"
    rerun = await result_with_reaction(world)
    assert rerun.embeds[0]["description"] == "a blue cat"
    assert fields(rerun)["Seed"] == "77"
    assert fields(rerun)["LoRAs"] == "`claymation` × 1.5\n`watercolor` × 1.2"
    second = world.fal.submissions()[1]
    assert second["prompt"] == "a blue cat" and second["seed"] == 77
    assert [lora["scale"] for lora in second["loras"]] == [1.5, 1.2]
    job = await world.bot.storage.jobs.get(2)
    assert job is not None and job.parent_job_id == 1


async def test_tweak_submits_unchanged_scales_of_any_precision(world: World) -> None:
    await world.add_lora("claymation", scale=0.8)
    original = await delivered(world, "alice", lora="claymation", scale=1.23456789)

    ix = await click(world, "alice", original, 1, "tweak")
    text = await submit(world, "alice", ix, {"Prompt": "only the prompt changes"})
    assert text.startswith("Tweaked rerun started as edit #2.")
    await result_with_reaction(world)
    assert world.fal.submissions()[1]["loras"][0]["scale"] == 1.23456789


async def test_tweak_and_reuse_refuse_at_the_click_not_after_the_modal(world: World) -> None:
    original = await delivered(world, "alice")
    await world.bot.storage.settings.update(
        world.emu.guild.id,
        lambda s: s.model_copy(update={"rerun_policy": "requester", "default_quota": 1}),
    )
    for action in ("tweak", "reuse", "rerun"):
        ix = await click(world, "bob", original, 1, action)
        text = await world.reply_text(ix)
        assert ix.modal is None and ix.ephemeral
        assert text == "On this server only the member who made an edit can rerun it."
    for action in ("tweak", "reuse", "rerun"):
        ix = await click(world, "alice", original, 1, action)  # hers, but her quota is used up
        assert "You've used 1 of 1 images" in await world.reply_text(ix)
        assert ix.modal is None and ix.ephemeral
    assert await job_count(world) == 1


async def test_tweak_with_bad_values_explains_and_starts_nothing(world: World) -> None:
    await world.add_lora("claymation", scale=0.8)
    original = await delivered(world, "alice", lora="claymation")

    ix = await click(world, "alice", original, 1, "tweak")
    text = await submit(world, "alice", ix, {"Scale of claymation": "lots"})
    assert "Scale of claymation must be a number" in text
    ix = await click(world, "alice", original, 1, "tweak")
    text = await submit(world, "alice", ix, {"Scale of claymation": "9"})
    assert "between 0 and 4" in text
    ix = await click(world, "alice", original, 1, "tweak")
    text = await submit(world, "alice", ix, {"Seed (empty for a new random one)": "-5"})
    assert "seed must be between 0 and" in text
    assert await job_count(world) == 1


async def test_use_as_input_makes_the_result_image_one_of_a_new_edit(world: World) -> None:
    await world.add_lora("claymation", scale=0.8)
    original = await delivered(world, "alice", images=[png(), jpeg()], lora="claymation")
    [(_name, result_bytes, _type)] = original.files

    ix = await click(world, "bob", original, 1, "reuse")
    assert (await ix.response()).type == 9
    assert list(modal_fields(ix)) == ["Prompt for the next edit"]
    text = await submit(world, "bob", ix, {"Prompt for the next edit": "now in the snow"})
    assert text == f"Started edit #2 from that result.{await follow(world, 2)}"
    chained = await result_with_reaction(world)

    first, second = world.fal.submissions()
    assert second["prompt"] == "now in the snow"
    assert second["loras"] == first["loras"]
    assert second["image_urls"][1:] == first["image_urls"][1:]
    async with httpx.AsyncClient() as http:
        hosted = await http.get(second["image_urls"][0])
    assert hosted.content == result_bytes  # the result, re-hosted on fal, is image 1
    job = await world.bot.storage.jobs.get(2)
    assert job is not None and job.user_id == member_id(world, "bob") and job.parent_job_id == 1
    assert link_to(world, original) in fields(chained)["Made from"]


async def test_delete_button_for_requester_or_moderator_only(world: World) -> None:
    first = await delivered(world, "alice")
    second = await delivered(world, "alice")

    ix = await click(world, "bob", first, 1, "delete")
    assert "Only the member who made this edit" in await world.reply_text(ix)
    assert ix.ephemeral and not first.deleted

    ix = await click(world, "alice", first, 1, "delete")
    assert await world.reply_text(ix) == "Deleted the result of edit #1."
    await world.emu.wait_for_delete(first)

    ix = await click(world, "erin", second, 2, "delete")  # erin has Manage Messages
    assert await world.reply_text(ix) == "Deleted the result of edit #2."
    await world.emu.wait_for_delete(second)

    for job_id, message in ((1, first), (2, second)):
        job = await world.bot.storage.jobs.get(job_id)
        assert job is not None and job.state == JobState.DELIVERED
        assert job.result_message_id == message.id  # the record stays


async def test_every_button_works_after_a_restart(world: World) -> None:
    await world.add_lora("claymation", scale=0.8)
    original = await delivered(world, "alice", lora="claymation")
    await world.restart()

    ix = await click(world, "alice", original, 1, "rerun")
    assert (await world.reply_text(ix)).startswith("Rerun started as edit #2")
    await result_with_reaction(world)

    ix = await click(world, "alice", original, 1, "tweak")
    text = await submit(
        world,
        "alice",
        ix,
        {"Scale of claymation": "2", "Seed (empty for a new random one)": ""},
    )
    assert text.startswith("Tweaked rerun started as edit #3.")
    tweaked = await result_with_reaction(world)
    assert fields(tweaked)["LoRAs"] == "`claymation` × 2"
    assert fields(tweaked)["Seed"] not in (fields(original)["Seed"], "")  # a new random one

    ix = await click(world, "alice", original, 1, "reuse")
    text = await submit(world, "alice", ix, {"Prompt for the next edit": "again"})
    assert text.startswith("Started edit #4 from that result.")
    await result_with_reaction(world)

    ix = await click(world, "alice", original, 1, "delete")
    assert await world.reply_text(ix) == "Deleted the result of edit #1."
    await world.emu.wait_for_delete(original)
    children = await world.bot.storage.jobs.children(1)
    assert [(j.id, j.state) for j in children] == [(n, JobState.DELIVERED) for n in (2, 3, 4)]


# ------------------------------------------------------------------------------------ context menu


def post_images(world: World, member: str, images: list[bytes]) -> Message:
    emu = world.emu
    files: list[Attachment] = [
        emu.attachment(data, f"photo{i + 1}.png") for i, data in enumerate(images)
    ]
    return emu.post_user_message(emu.member(member), emu.channel("general"), "look!", files)


async def test_context_menu_edits_the_image_of_a_message(world: World) -> None:
    await world.add_lora("claymation", scale=0.8)
    photo = post_images(world, "alice", [png(640, 480)])

    ix = await world.emu.context_menu(
        world.emu.member("bob"), world.emu.channel("general"), MENU, photo
    )
    assert (await ix.response()).type == 9
    text = await submit(
        world,
        "bob",
        ix,
        {"Prompt": "make it clay", "LoRAs (up to 3, comma-separated)": "Claymation:0.5"},
    )
    assert text.startswith("Edit #1 is on its way")
    assert "first 3" not in text
    result = await result_with_reaction(world)
    assert fields(result)["LoRAs"] == "`claymation` × 0.5"
    [submitted] = world.fal.submissions()
    assert submitted["prompt"] == "make it clay"
    assert submitted["loras"] == [{"path": "owner/claymation", "scale": 0.5}]
    assert len(submitted["image_urls"]) == 1
    job = await world.bot.storage.jobs.get(1)
    assert job is not None and job.user_id == member_id(world, "bob")


async def test_context_menu_with_four_images_uses_the_first_three(world: World) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    images = [png(512, 512, c) for c in colours]
    photo = post_images(world, "alice", images)

    ix = await world.emu.context_menu(
        world.emu.member("alice"), world.emu.channel("general"), MENU, photo
    )
    text = await submit(world, "alice", ix, {"Prompt": "a collage"})
    assert "That message has 4 images; I'm using the first 3." in text
    await result_with_reaction(world)
    job = await world.bot.storage.jobs.get(1)
    assert job is not None
    used = [ref.sha256 for ref in job.request.inputs]
    assert used == [hashlib.sha256(data).hexdigest() for data in images[:3]]
    assert len(world.fal.submissions()[0]["image_urls"]) == 3


async def test_context_menu_refuses_unknown_loras_and_messages_without_images(
    world: World,
) -> None:
    emu = world.emu
    photo = post_images(world, "alice", [png()])
    ix = await emu.context_menu(emu.member("bob"), emu.channel("general"), MENU, photo)
    text = await submit(
        world, "bob", ix, {"Prompt": "x", "LoRAs (up to 3, comma-separated)": "nope"}
    )
    assert "This server has no LoRA named `nope`" in text
    ix = await emu.context_menu(emu.member("bob"), emu.channel("general"), MENU, photo)
    text = await submit(
        world, "bob", ix, {"Prompt": "x", "LoRAs (up to 3, comma-separated)": "a, b, c, d"}
    )
    assert text == "At most 3 LoRAs can be combined."

    words = emu.post_user_message(emu.member("alice"), emu.channel("general"), "no pictures")
    ix = await emu.context_menu(emu.member("bob"), emu.channel("general"), MENU, words)
    assert await world.reply_text(ix) == "That message has no image attachments to edit."
    assert ix.ephemeral
    assert await job_count(world) == 0


# ------------------------------------------------------------------------------------ forms


async def test_a_tweak_form_opened_before_a_restart_is_submitted_after_it(world: World) -> None:
    """The member's typed changes are not lost: the submit is handled by the form's id."""
    await world.add_lora("claymation", scale=0.8)
    original = await delivered(world, "alice", prompt="a red cat", lora="claymation", seed=5)
    ix = await click(world, "alice", original, 1, "tweak")
    await ix.response()

    await world.restart()

    text = await submit(
        world,
        "alice",
        ix,
        {"Prompt": "a green cat", "Seed (empty for a new random one)": "9"},
    )
    assert text.startswith("Tweaked rerun started as edit #2.")
    rerun = await result_with_reaction(world)
    assert rerun.embeds[0]["description"] == "a green cat"
    assert fields(rerun)["Seed"] == "9"
    assert fields(rerun)["LoRAs"] == "`claymation` × 0.8"


async def test_a_use_as_input_form_survives_a_restart(world: World) -> None:
    original = await delivered(world, "alice")
    ix = await click(world, "alice", original, 1, "reuse")
    await ix.response()

    await world.restart()

    text = await submit(world, "alice", ix, {"Prompt for the next edit": "now at night"})
    assert text.startswith("Started edit #2 from that result.")
    chained = await result_with_reaction(world)
    assert chained.embeds[0]["description"] == "now at night"
    job = await world.bot.storage.jobs.get(2)
    assert job is not None and job.parent_job_id == 1


async def test_a_message_menu_form_survives_a_restart_with_its_images(world: World) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    images = [png(512, 512, c) for c in colours]
    photo = post_images(world, "alice", images)
    ix = await world.emu.context_menu(
        world.emu.member("bob"), world.emu.channel("general"), MENU, photo
    )
    await ix.response()

    await world.restart()

    text = await submit(world, "bob", ix, {"Prompt": "a collage after a restart"})
    assert text.startswith("Edit #1 is on its way")
    assert "That message has 4 images; I'm using the first 3." in text
    await result_with_reaction(world)
    job = await world.bot.storage.jobs.get(1)
    assert job is not None and job.user_id == member_id(world, "bob")
    used = [ref.sha256 for ref in job.request.inputs]
    assert used == [hashlib.sha256(data).hexdigest() for data in images[:3]]


async def test_a_message_menu_form_is_submitted_once_and_only_by_its_opener(
    world: World,
) -> None:
    photo = post_images(world, "alice", [png(512, 512)])
    ix = await world.emu.context_menu(
        world.emu.member("bob"), world.emu.channel("general"), MENU, photo
    )
    text = await submit(world, "bob", ix, {"Prompt": "once"})
    assert text.startswith("Edit #1 is on its way")

    again = await submit(world, "bob", ix, {"Prompt": "twice"})

    assert again == "That form has expired. Open the message menu again."
    await result_with_reaction(world)
    assert len(world.fal.submissions()) == 1


# ------------------------------------------------------------------------------------ catch-up


async def restarted_after(world: World, act: Any) -> Any:
    """Stop the bot, let members act while it is down, start it and wait for its catch-up."""
    await world.emu.stop_bot()
    await act()
    world.bot = await world.emu.start_bot(world.make_bot())
    cog = world.bot.get_cog("Iterate")
    assert cog is not None
    await asyncio.wait_for(cog.catching_up, 15)  # type: ignore[attr-defined, arg-type]
    return cog


async def test_a_reaction_made_while_the_bot_was_down_reruns_once(world: World) -> None:
    original = await delivered(world, "alice")
    bob = world.emu.member("bob")

    await restarted_after(world, lambda: world.emu.react(bob, original, RERUN))

    rerun = await result_with_reaction(world)
    assert rerun.embeds[0]["title"] == "Edit #2"
    job = await world.bot.storage.jobs.get(2)
    assert job is not None and job.user_id == bob.id and job.parent_job_id == 1
    assert await images_used(world, "bob") == 1
    await taken_back(world, original, "bob")

    async def nothing() -> None:
        pass

    await restarted_after(world, nothing)
    assert await world.bot.storage.jobs.get(3) is None
    assert await images_used(world, "bob") == 1


async def test_a_reaction_the_bot_cannot_take_back_still_runs_only_once(world: World) -> None:
    original = await delivered(world, "alice")
    bob = world.emu.member("bob")
    bot_role = next(r for r in world.emu.guild.roles.values() if r.bot_id)
    world.emu.set_role_permissions(
        bot_role, bot_role.permissions & ~int(Permission.MANAGE_MESSAGES)
    )

    await restarted_after(world, lambda: world.emu.react(bob, original, RERUN))
    await result_with_reaction(world)
    assert bob.id in original.reactions[RERUN]  # still there: the bot may not remove it

    for _ in range(2):  # restarts do not run it again
        cog = await restarted_after(world, lambda: asyncio.sleep(0))
        assert cog.catching_up.result() == 0  # type: ignore[attr-defined]
    assert await world.bot.storage.jobs.get(3) is None
    assert await images_used(world, "bob") == 1


async def test_a_reaction_while_down_from_a_member_out_of_quota_gets_the_short_refusal(
    world: World, short_refusals: float
) -> None:
    original = await delivered(world, "alice")
    await world.set_settings(default_quota=1)

    await restarted_after(
        world, lambda: world.emu.react(world.emu.member("alice"), original, RERUN)
    )

    refusal = await refusal_for(world, "alice")
    assert "You've used 1 of 1 images" in refusal.content
    assert await world.bot.storage.jobs.get(2) is None


async def test_catch_up_is_off_with_zero_hours(world: World) -> None:
    original = await delivered(world, "alice")
    world.settings = world.settings.model_copy(update={"catch_up_hours": 0})

    await world.emu.stop_bot()
    await world.emu.react(world.emu.member("bob"), original, RERUN)
    world.bot = await world.emu.start_bot(world.make_bot())

    cog = world.bot.get_cog("Iterate")
    assert cog is not None and cog.catching_up is None  # type: ignore[attr-defined]
    assert world.emu.member("bob").id in original.reactions[RERUN]
    assert await world.bot.storage.jobs.get(2) is None
