"""A member of server A cannot use, see, rerun or delete server B's LoRAs, jobs or
results, and A's admins cannot touch B's registry, settings or spend.

Server B is a second guild of the emulator. bob and carol belong to both servers; alice only to
A. Both servers register a LoRA named `clay` (with different files), and B has `secretb`.
"""

from __future__ import annotations

from typing import Any

import pytest

from emulators.discord_emulator.errors import EmulatorError, InteractionFailed
from emulators.discord_emulator.world import Guild
from jobs.errors import NotFound
from jobs.policy import Requester
from tests.harness.e2e import World
from tests.harness.images import png
from tests.harness.security_fixtures import raw_click


async def in_b(world: World, b: Guild, member: str, command: str, options: dict[str, Any]) -> str:
    emu = world.emu
    attachments = {"image": emu.attachment(png(), "b.png")} if command == "edit" else None
    ix = await emu.slash(
        emu.member(member, b), emu.channel("general", b), command, options, attachments=attachments
    )
    return await world.reply_text(ix)


async def in_a(
    world: World, member: str, command: str, options: dict[str, Any] | None = None
) -> str:
    emu = world.emu
    ix = await emu.slash(emu.member(member), emu.channel("general"), command, options)
    return await world.reply_text(ix)


@pytest.fixture
async def two_servers(world: World) -> tuple[World, Guild, int]:
    """B has `clay` and `secretb`, and one delivered edit of bob's; A has its own `clay`."""
    b = world.emu.add_guild("Second Server", members=("bob", "carol"))
    await world.add_lora("clay", path="owner/clay-a", description="A's clay")
    await world.add_lora("clay", path="owner/clay-b", description="B's clay", guild_id=b.id)
    await world.add_lora("secretb", path="owner/secret-b", description="B only", guild_id=b.id)
    text = await in_b(world, b, "bob", "edit", {"prompt": "b's edit", "lora": "secretb"})
    assert "Edit #1 is on its way" in text
    await world.job_in(1, "delivered")
    return world, b, 1


async def test_a_member_of_a_cannot_use_or_see_bs_loras(
    two_servers: tuple[World, Guild, int],
) -> None:
    world, _, _ = two_servers
    emu = world.emu
    alice, general = emu.member("alice"), emu.channel("general")

    text = await in_a(world, "alice", "loras", {"name": "secretb"})
    assert text == "This server has no LoRA named `secretb`."
    for typed, expected in (("", ["clay"]), ("clay", ["clay"]), ("secret", []), ("B only", [])):
        choices = await emu.autocomplete(
            alice, general, "edit", {"prompt": "x", "lora": typed}, focused="lora"
        )
        assert [c["value"] for c in choices] == expected, (typed, choices)
        assert all("A's clay" in c["name"] for c in choices)
    admin_choices = await emu.autocomplete(
        emu.member("carol"), general, "admin lora edit", {"name": "secret"}, focused="name"
    )
    assert admin_choices == []
    listing = await emu.slash(alice, general, "loras")
    embed = (await listing.response()).data["embeds"][0]
    assert [f["name"] for f in embed["fields"]] == ["clay"]
    assert "1 LoRAs" in embed["footer"]["text"]

    ix = await world.edit(prompt="use b's", lora="secretb")
    assert "This server has no LoRA named `secretb`" in await world.reply_text(ix)
    ix = await world.edit(prompt="use clay", lora="clay")
    assert "Edit #2 is on its way" in await world.reply_text(ix)
    await world.job_in(2, "delivered")
    submitted = {s["prompt"]: s["loras"] for s in world.fal.submissions()}
    assert submitted["use clay"] == [{"path": "owner/clay-a", "scale": 1.0}]
    assert "use b's" not in submitted


async def test_as_admins_cannot_change_bs_registry_or_settings(
    two_servers: tuple[World, Guild, int],
) -> None:
    world, b, _ = two_servers
    storage = world.bot.storage
    before = await storage.loras.list(
        b.id, include_disabled=True, include_nsfw=True, offset=0, limit=10
    )
    b_settings = await storage.settings.get(b.id)

    for command, options in (
        ("admin lora disable", {"name": "secretb"}),
        ("admin lora enable", {"name": "secretb"}),
        ("admin lora remove", {"name": "secretb"}),
        ("admin lora edit", {"name": "secretb", "scale": 3.0}),
    ):
        assert await in_a(world, "carol", command, options) == (
            "This server has no LoRA named `secretb`."
        )
    assert "Updated `clay`" in await in_a(
        world, "carol", "admin lora edit", {"name": "clay", "scale": 3.0}
    )
    assert "Members may now make 0 images" in await in_a(
        world, "carol", "admin quota default", {"images": 0}
    )
    assert "Monthly budget set to $1.00." in await in_a(
        world, "carol", "admin budget set", {"usd": 1.0}
    )

    after = await storage.loras.list(
        b.id, include_disabled=True, include_nsfw=True, offset=0, limit=10
    )
    assert after == before  # B's clay keeps scale 1 and version 1; secretb is untouched
    assert await storage.settings.get(b.id) == b_settings
    text = await in_b(world, b, "bob", "edit", {"prompt": "b again", "lora": "clay"})
    assert "is on its way" in text  # A's zero quota and budget don't reach B
    job = await world.job_in(2, "delivered")
    assert job.guild_id == b.id and job.request.loras[0].path == "owner/clay-b"


async def test_jobs_usage_and_quota_of_b_are_invisible_from_a(
    two_servers: tuple[World, Guild, int],
) -> None:
    world, b, _ = two_servers
    world.fal.queue_delay = 60.0  # keep a second B job running while A looks
    text = await in_b(world, b, "bob", "edit", {"prompt": "b running"})
    assert "Edit #2 is on its way" in text
    await world.job_in(2, "submitted")

    assert await in_a(world, "bob", "jobs") == "You have no edits yet. Try `/edit`."
    assert await in_a(world, "alice", "jobs") == "You have no edits yet. Try `/edit`."
    quota = await in_a(world, "bob", "quota")
    assert "You've used 0 of 10 images" in quota and "Edits running: 0" in quota
    assert await in_a(world, "carol", "admin jobs") == "No edits are running."
    usage = await world.emu.slash(
        world.emu.member("carol"), world.emu.channel("general"), "admin usage"
    )
    assert await world.reply_text(usage) == "No edits this month."
    [csv_file] = usage.followups[0].files
    assert csv_file[1].decode().strip().splitlines() == [
        "user_id,images_today,usd_today,images_month,usd_month"
    ]
    budget = await in_a(world, "carol", "admin budget show")
    assert budget == "Spent this month: $0.00 (no cap)."
    # B's own view has both jobs of bob.
    b_jobs = await in_b(world, b, "bob", "jobs", {})
    assert "#1 · [result]" in b_jobs and "#2 · submitted" in b_jobs


async def test_bs_results_cannot_be_rerun_deleted_or_cancelled_from_a(
    two_servers: tuple[World, Guild, int],
) -> None:
    world, b, b_job = two_servers
    emu = world.emu
    b_result = next(m for m in emu.messages_in(emu.channel("general", b)) if m.files)

    # alice isn't in B: Discord shows her neither the message nor its buttons or reactions.
    for action in ("rerun", "delete"):
        with pytest.raises(EmulatorError, match="not a member"):
            await emu.click(emu.member("alice"), b_result, f"job:{b_job}:{action}")
    with pytest.raises(EmulatorError, match="not a member"):
        await emu.react(emu.member("alice"), b_result, "🔁")

    # A forged button in A that names B's job: discord.py only dispatches custom_ids that are
    # on the message, so the press does nothing; nothing happens to B's job or result.
    ix = await world.edit(prompt="a's own")
    await world.reply_text(ix)
    a_result = await world.result()
    emu.ack_deadline = 0.3  # Discord's 3 s window, shortened: no answer is expected here
    for action in ("rerun", "delete", "cancel", "tweak", "reuse"):
        forged = raw_click(emu, emu.member("alice"), a_result, f"job:{b_job}:{action}")
        with pytest.raises(InteractionFailed):
            await forged.response()
    assert not b_result.deleted
    assert len(world.fal.submissions()) == 2  # B's edit and A's own, no rerun

    # Past Discord, the job service itself refuses another server's job ids.
    a = emu.guild
    someone_in_a = Requester(
        guild_id=a.id,
        channel_id=emu.channel("general").id,
        user_id=emu.member("carol").id,
        can_manage_guild=True,
        can_manage_messages=True,
    )
    for attempt in (
        world.bot.jobs.rerun(b_job, someone_in_a),
        world.bot.jobs.result_job(someone_in_a, b_job),
        world.bot.jobs.cancel(b_job, someone_in_a),
    ):
        with pytest.raises(NotFound):
            await attempt
    job = await world.bot.storage.jobs.get(b_job)
    assert job is not None and job.state == "delivered" and job.guild_id == b.id
