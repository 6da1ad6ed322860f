"""Quotas, budget and server policy end to end: what members and admins see through
Discord, and what the database holds. Admins change everything through `/admin`; members read
their limits with `/quota` and `/jobs`; every path that creates a job is limited the same way."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cogs.admin import NOT_MANAGER
from emulators.discord_emulator.errors import EmulatorError
from emulators.discord_emulator.interactions import Interaction
from emulators.discord_emulator.messages import Message
from storage import GuildSettings, JobState
from tests.harness.e2e import World, is_status
from tests.harness.images import png

# Tasks discord.py runs an interaction or a gateway event in: once they are done, every message
# the bot meant to send for it has been sent.
HANDLER_TASKS = ("CommandTree-invoker", "discord-ui-", "discord.py: ")
CONTEXT_MENU = "Edit with FLUX.2 LoRA…"


async def settled() -> None:
    """Wait (no sleep) until every interaction and event handler the bot started has ended."""
    current = asyncio.current_task()
    busy = [
        task
        for task in asyncio.all_tasks()
        if task is not current and task.get_name().startswith(HANDLER_TASKS)
    ]
    await asyncio.gather(*busy, return_exceptions=True)


async def run(
    world: World,
    member: str,
    command: str,
    options: dict[str, Any] | None = None,
    *,
    channel: str = "general",
) -> tuple[Interaction, str]:
    """A slash command as `member`; returns the handle and the (ephemeral) answer's text."""
    emu = world.emu
    ix = await emu.slash(emu.member(member), emu.channel(channel), command, options or {})
    return ix, await world.reply_text(ix)


async def admitted(world: World, member: str = "alice", **options: Any) -> int:
    """/edit that must be admitted; returns the job id."""
    ix = await world.edit(member, **options)
    text = await world.reply_text(ix)
    assert "is on its way" in text, text
    return int(text.split("#", 1)[1].split(" ", 1)[0])


async def refused(world: World, member: str = "alice", **options: Any) -> str:
    """/edit that must be refused; returns what the member read."""
    before = await job_ids(world, member)
    ix = await world.edit(member, **options)
    text = await world.reply_text(ix)
    assert "is on its way" not in text, text
    assert ix.ephemeral
    assert await job_ids(world, member) == before  # no job, so nothing reserved or sent
    return text


def stamp(moment: datetime) -> str:
    return f"<t:{int(moment.timestamp())}:R>"


async def usage(world: World, member: str, window_hours: int = 24) -> tuple[int, int]:
    """(images counted in the window, jobs in flight) as the ledger says."""
    figures = await world.bot.storage.quotas.usage(
        world.emu.guild.id, world.emu.member(member).id, window_hours * 3600
    )
    return figures.images_used, figures.in_flight


async def settings(world: World) -> GuildSettings:
    return await world.bot.storage.settings.get(world.emu.guild.id)


async def job_ids(world: World, member: str) -> list[int]:
    jobs = await world.bot.storage.jobs.recent_for_user(
        world.emu.guild.id, world.emu.member(member).id, 50
    )
    return sorted(job.id for job in jobs)


# ---------------------------------------------------------------------------- /quota


async def test_quota_shows_used_left_running_and_when_the_next_image_frees(world: World) -> None:
    _, text = await run(world, "carol", "admin quota default", {"images": 3, "window_hours": 12})
    assert text == "Members may now make 3 images per 12 h (role and member overrides still apply)."
    _, text = await run(world, "carol", "admin budget set", {"usd": 5})
    assert text == "Monthly budget set to $5.00."

    first = await admitted(world)
    await world.result()
    world.fal.queue_delay = 30.0  # the second edit stays in flight
    second = await admitted(world)
    await world.job_in(second, "submitted")

    ix, text = await run(world, "alice", "quota")
    assert ix.ephemeral
    job = await world.bot.storage.jobs.get(first)
    assert job is not None
    frees = stamp(job.created_at + timedelta(hours=12))
    assert text.splitlines() == [
        "You've used 2 of 3 images in the last 12 h; 1 left.",
        f"The next one frees {frees}.",
        "Edits running: 1 of 2.",
    ]
    assert await usage(world, "alice", 12) == (2, 1)

    # An admin also sees the server's spend against its budget; a member never does.
    spent = await world.bot.storage.quotas.guild_spend(world.emu.guild.id)
    assert spent > 0
    ix, text = await run(world, "carol", "quota")
    assert ix.ephemeral
    assert text.splitlines() == [
        "You've used 0 of 3 images in the last 12 h; 3 left.",
        "Edits running: 0 of 2.",
        f"Server spend this month: ${spent:,.2f} of $5.00.",
    ]
    manager = world.emu.role("Manager")
    await run(world, "carol", "admin settings managers", {"action": "add", "role": manager})
    _, text = await run(world, "dave", "quota")  # a bot manager without Manage Server
    assert text.splitlines()[-1] == f"Server spend this month: ${spent:,.2f} of $5.00."


async def test_quota_with_no_cap_and_for_an_exempt_member(world: World) -> None:
    await run(world, "carol", "admin quota exempt", {"role": world.emu.role("Mod")})
    await admitted(world, "erin")
    await world.result()
    _, text = await run(world, "erin", "quota")
    assert text.splitlines() == [
        "You're exempt from the quota (1 images in the last 24 h).",
        "Edits running: 0.",
    ]
    _, text = await run(world, "carol", "quota")
    assert text.splitlines()[-1].endswith("(no cap).")


# ---------------------------------------------------------------------------- who may use /admin


ADMIN_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("admin quota default", {"images": 99}),
    ("admin quota role", {"role": "Member", "images": 99}),
    ("admin quota user", {"member": "alice", "images": 99}),
    ("admin quota exempt", {"role": "Member"}),
    ("admin quota reset", {"member": "alice"}),
    ("admin budget set", {"usd": 1}),
    ("admin budget show", {}),
    ("admin settings show", {}),
    ("admin settings rerun", {"who": "requester"}),
    ("admin settings nsfw", {"policy": "spoiler"}),
    ("admin settings channel", {"channel": "general", "rule": "deny"}),
    ("admin settings caps", {"max_images": 1, "max_steps": 10}),
    ("admin settings managers", {"action": "add", "role": "Member"}),
    ("admin jobs", {}),
    ("admin usage", {}),
]


def resolve_options(world: World, command: str, options: dict[str, Any]) -> dict[str, Any]:
    emu = world.emu
    out = dict(options)
    if "role" in out:
        out["role"] = emu.role(out["role"])
    if "member" in out:
        out["member"] = emu.member(out["member"])
    if "channel" in out:
        out["channel"] = emu.channel(out["channel"])
    return out


async def test_admin_refuses_members_who_are_not_managers_once_and_changes_nothing(
    world: World,
) -> None:
    emu = world.emu
    general = emu.channel("general")
    # Discord's client does not even offer /admin to a member without Manage Server ...
    with pytest.raises(EmulatorError, match="not offered /admin"):
        await emu.slash(emu.member("alice"), general, "admin settings show", {})

    # ... but a server can show it to a role in its integration settings: the bot checks again.
    emu.set_command_permission(emu.guild, "admin", emu.role("Member"))
    for command, options in ADMIN_CALLS:
        for member in ("alice", "dave"):  # a plain member; a Manager not named a bot manager
            ix = await emu.slash(
                emu.member(member), general, command, resolve_options(world, command, options)
            )
            callback = await ix.response()
            await settled()
            assert callback.type == 4, command
            assert (callback.data or {}).get("content") == NOT_MANAGER, command
            assert ix.ephemeral, command
            assert ix.followups == [], f"{command}: answered twice"
    assert await settings(world) == GuildSettings()
    assert emu.messages_in(general) == []

    # Naming the role a bot manager lets dave in, without Manage Server.
    _, text = await run(
        world, "carol", "admin settings managers", {"action": "add", "role": emu.role("Manager")}
    )
    assert text.startswith(f"{emu.role('Manager').mention} can now use `/admin`.")
    _, text = await run(world, "dave", "admin quota default", {"images": 7})
    assert text.startswith("Members may now make 7 images per 24 h")
    assert (await settings(world)).default_quota == 7
    _, text = await run(world, "alice", "admin quota default", {"images": 8})
    assert text == NOT_MANAGER
    assert (await settings(world)).default_quota == 7


async def test_admins_changing_settings_at_once_never_undo_each_other(world: World) -> None:
    emu = world.emu
    general = emu.channel("general")
    emu.set_command_permission(emu.guild, "admin", emu.role("Manager"))
    await run(
        world, "carol", "admin settings managers", {"action": "add", "role": emu.role("Manager")}
    )
    roles = [emu.add_role(emu.guild, f"Tier {i}") for i in range(4)]
    calls = [
        *[("admin quota role", {"role": role, "images": i + 1}) for i, role in enumerate(roles)],
        ("admin quota user", {"member": emu.member("bob"), "images": 9}),
        ("admin quota exempt", {"role": emu.role("Mod")}),
        ("admin budget set", {"usd": 3}),
        ("admin settings rerun", {"who": "requester"}),
        ("admin settings nsfw", {"policy": "spoiler"}),
        ("admin settings channel", {"channel": emu.channel("nsfw"), "rule": "deny"}),
        ("admin settings caps", {"max_steps": 30}),
    ]
    # Sent together, half by carol and half by dave: every handler reads and writes meanwhile.
    handles = [
        await emu.slash(emu.member(("carol", "dave")[i % 2]), general, command, options)
        for i, (command, options) in enumerate(calls)
    ]
    await asyncio.gather(*(world.reply_text(ix) for ix in handles))
    saved = await settings(world)
    assert saved.role_quotas == {role.id: i + 1 for i, role in enumerate(roles)}
    assert saved.user_quotas == {emu.member("bob").id: 9}
    assert saved.exempt_roles == [emu.role("Mod").id]
    assert saved.monthly_budget_usd == 3
    assert (saved.rerun_policy, saved.nsfw_policy, saved.max_steps) == ("requester", "spoiler", 30)
    assert saved.channel_rules == {emu.channel("nsfw").id: "deny"}
    assert saved.manager_roles == [emu.role("Manager").id]


# ---------------------------------------------------------------------------- quota commands


async def test_default_quota_refuses_with_the_numbers_and_when_the_next_image_frees(
    world: World,
) -> None:
    await run(world, "carol", "admin quota default", {"images": 2, "window_hours": 6})
    first = await admitted(world)
    await world.result()
    await admitted(world)
    await world.result()
    uploads = world.fal.count("cdn_upload") + world.fal.count("signed_put")
    assert uploads == 1

    text = await refused(world, images=[png(640, 480)])  # a new image: it would be uploaded
    job = await world.bot.storage.jobs.get(first)
    assert job is not None
    frees = stamp(job.created_at + timedelta(hours=6))
    assert text == f"You've used 2 of 2 images in the last 6 h; the next one frees {frees}."
    # Refused before anything was downloaded or uploaded.
    assert world.fal.count("cdn_upload") + world.fal.count("signed_put") == uploads
    assert await job_ids(world, "alice") == [1, 2]
    assert await usage(world, "alice", 6) == (2, 0)

    # Zero blocks edits outright, and says so rather than "0 of 0".
    await run(world, "carol", "admin quota default", {"images": 0})
    text = await refused(world, "bob")
    assert text == (
        "Your quota on this server is 0 images per 6 h, so you can't make edits here. "
        "An admin can change it with `/admin quota`."
    )


async def test_edits_sent_at_once_never_exceed_the_quota(world: World) -> None:
    await run(world, "carol", "admin quota default", {"images": 3})
    await run(world, "carol", "admin settings caps", {"max_in_flight": 50})
    world.fal.queue_delay = 30.0
    handles = [await world.edit(images=[png(600 + i, 400)]) for i in range(8)]
    texts = await asyncio.gather(*(world.reply_text(ix) for ix in handles))
    assert sum("is on its way" in text for text in texts) == 3
    assert sum(text.startswith("You've used 3 of 3 images") for text in texts) == 5
    assert len(await job_ids(world, "alice")) == 3
    assert await usage(world, "alice") == (3, 3)


async def test_highest_matching_role_wins_and_a_member_override_beats_roles(world: World) -> None:
    emu = world.emu
    silver = emu.add_role(emu.guild, "Silver")
    gold = emu.add_role(emu.guild, "Gold")
    member = emu.role("Member")
    emu.set_roles(emu.member("alice"), [member, silver])
    emu.set_roles(emu.member("bob"), [member, gold, silver])

    await run(world, "carol", "admin quota default", {"images": 0})
    _, text = await run(world, "carol", "admin quota role", {"role": silver, "images": 1})
    assert text == f"Members with {silver.mention} may make 1 images per 24 h."
    await run(world, "carol", "admin quota role", {"role": gold, "images": 3})
    quotas = (await settings(world)).role_quotas
    assert quotas == {silver.id: 1, gold.id: 3}

    # bob holds Silver (1) and Gold (3): Gold wins, so three images in one job fit.
    await admitted(world, "bob", count=3)
    text = await refused(world, "alice", count=2)
    assert (
        text == "You've used 0 of 1 images in the last 24 h; this edit makes 2 and you have 1 left."
    )
    await admitted(world, "alice")
    text = await refused(world, "erin")  # no role with a quota: the default, 0
    assert text.startswith("Your quota on this server is 0 images per 24 h")

    # A member override beats every role, upwards and downwards.
    _, text = await run(
        world, "carol", "admin quota user", {"member": emu.member("bob"), "images": 4}
    )
    assert text == f"{emu.member('bob').mention} may make 4 images per 24 h."
    _, text = await run(world, "bob", "quota")
    assert text.startswith("You've used 3 of 4 images in the last 24 h; 1 left.")
    await run(world, "carol", "admin quota user", {"member": emu.member("alice"), "images": 0})
    assert (await settings(world)).user_quotas == {
        emu.member("bob").id: 4,
        emu.member("alice").id: 0,
    }
    assert (await refused(world, "alice")).startswith("Your quota on this server is 0 images")

    # -1 removes overrides: bob is back to Gold's 3, and has used them.
    _, text = await run(
        world, "carol", "admin quota user", {"member": emu.member("bob"), "images": -1}
    )
    assert text == f"Removed the quota override for {emu.member('bob').mention}."
    _, text = await run(world, "bob", "quota")
    assert text.startswith("You've used 3 of 3 images")
    await run(world, "carol", "admin quota role", {"role": gold, "images": -1})
    _, text = await run(world, "bob", "quota")
    assert text.startswith("You've used 3 of 1 images")
    assert (await settings(world)).role_quotas == {silver.id: 1}


async def test_role_quota_applies_to_reactions_and_buttons_too(world: World) -> None:
    """The reaction path builds the member from the gateway event, not from an interaction."""
    emu = world.emu
    alice = emu.member("alice")
    silver = emu.add_role(emu.guild, "Silver")
    emu.set_roles(alice, [emu.role("Member"), silver])
    await run(world, "carol", "admin quota default", {"images": 1})
    await run(world, "carol", "admin quota role", {"role": silver, "images": 3})

    await admitted(world)
    result = await world.result()
    await emu.wait_for("reaction_add")
    await emu.react(alice, result, "🔁")  # second image: only Silver's quota allows it
    await world.result()
    await world.job_in(2, "delivered")
    ix = await emu.click(alice, result, "job:1:rerun")  # third
    assert "Rerun started as edit #3" in await world.reply_text(ix)
    ix = await emu.click(alice, result, "job:1:rerun")  # fourth: over
    assert (await world.reply_text(ix)).startswith("You've used 3 of 3 images in the last 24 h")
    assert await job_ids(world, "alice") == [1, 2, 3]


async def test_exempt_role_has_no_quota_nor_in_flight_limit(world: World) -> None:
    emu = world.emu
    mod = emu.role("Mod")
    await run(world, "carol", "admin quota default", {"images": 0})
    await run(world, "carol", "admin settings caps", {"max_in_flight": 1})
    _, text = await run(world, "carol", "admin quota exempt", {"role": mod})
    assert text == f"{mod.mention} is exempt from quotas (the budget still applies)."
    assert (await settings(world)).exempt_roles == [mod.id]

    world.fal.queue_delay = 30.0  # both stay in flight
    await admitted(world, "erin", count=4)
    await admitted(world, "erin", count=4)
    assert await usage(world, "erin") == (8, 2)

    # Limiting one exempt member by name works: the member override is the most specific rule.
    erin = emu.member("erin")
    await run(world, "carol", "admin quota user", {"member": erin, "images": 8})
    assert (await refused(world, "erin")).startswith("You've used 8 of 8 images in the last 24 h")
    await run(world, "carol", "admin quota user", {"member": erin, "images": -1})
    await admitted(world, "erin")

    _, text = await run(world, "carol", "admin quota exempt", {"role": mod, "remove": True})
    assert text == f"{mod.mention} is no longer exempt."
    assert (await settings(world)).exempt_roles == []
    assert (await refused(world, "erin")).startswith("Your quota on this server is 0 images")


async def test_reset_forgives_the_window_but_not_the_spend(world: World) -> None:
    alice = world.emu.member("alice")
    await run(world, "carol", "admin quota default", {"images": 1})
    await admitted(world)
    await world.result()
    await refused(world)
    spent = await world.bot.storage.quotas.guild_spend(world.emu.guild.id)

    _, text = await run(world, "carol", "admin quota reset", {"member": alice})
    assert text == f"{alice.mention}'s quota window starts fresh."
    assert await usage(world, "alice") == (0, 0)
    _, text = await run(world, "alice", "quota")
    assert text.startswith("You've used 0 of 1 images in the last 24 h; 1 left.")
    await world.job_in(await admitted(world), "delivered")
    assert await usage(world, "alice") == (1, 0)
    assert await world.bot.storage.quotas.guild_spend(world.emu.guild.id) == pytest.approx(
        2 * spent
    )


# ---------------------------------------------------------------------------- refunds


async def test_a_failed_job_gives_its_images_and_money_back(world: World) -> None:
    await run(world, "carol", "admin quota default", {"images": 2})
    await run(world, "carol", "admin budget set", {"usd": 1})
    world.fal.runner_failure_rate = 1.0
    job_id = await admitted(world, count=2)
    job = await world.job_in(job_id, "failed")
    assert job.state == JobState.FAILED
    assert await usage(world, "alice") == (0, 0)
    assert await world.bot.storage.quotas.guild_spend(world.emu.guild.id) == 0
    _, text = await run(world, "alice", "quota")
    assert text.startswith("You've used 0 of 2 images in the last 24 h; 2 left.")
    _, text = await run(world, "carol", "admin budget show")
    assert text == "Spent this month: $0.00 of $1.00."

    world.fal.runner_failure_rate = 0.0
    again = await admitted(world, count=2)  # the whole quota is there again
    await world.job_in(again, "delivered")
    assert await usage(world, "alice") == (2, 0)


async def test_a_result_the_nsfw_policy_blocks_gives_its_images_back(world: World) -> None:
    await run(world, "carol", "admin quota default", {"images": 1})
    await run(world, "carol", "admin settings nsfw", {"policy": "block"})
    job_id = await admitted(world, prompt="[nsfw] a cat")
    job = await world.job_in(job_id, "failed")
    assert "safety checker flagged" in (job.error or "")
    assert await usage(world, "alice") == (0, 0)
    assert await world.bot.storage.quotas.guild_spend(world.emu.guild.id) == 0
    await admitted(world, prompt="a cat")


async def test_an_expired_job_gives_its_images_back(world: World) -> None:
    # The operator's shortest allowed timeout is 30 s; a copy skips that check to keep this fast.
    world.settings = world.settings.model_copy(update={"job_timeout_seconds": 1})
    await world.restart()
    await run(world, "carol", "admin quota default", {"images": 1})
    world.fal.queue_delay = 30.0  # fal never gets to it
    job_id = await admitted(world)
    job = await world.job_in(job_id, "expired", within=10)
    assert "didn't finish within" in (job.error or "")
    assert await usage(world, "alice") == (0, 0)
    _, text = await run(world, "alice", "quota")
    assert text.startswith("You've used 0 of 1 images in the last 24 h; 1 left.")


async def test_jobs_lists_own_jobs_with_links_and_cancel_refunds(world: World) -> None:
    emu = world.emu
    guild, general = emu.guild.id, emu.channel("general").id
    await run(world, "carol", "admin quota default", {"images": 2})
    _, text = await run(world, "alice", "jobs")
    assert text == "You have no edits yet. Try `/edit`."

    await admitted(world)
    result = await world.result()
    world.fal.queue_delay = 30.0
    await admitted(world)
    await world.job_in(2, "submitted")
    await admitted(world, "bob")

    ix, text = await run(world, "alice", "jobs")
    assert ix.ephemeral
    lines = text.splitlines()
    assert len(lines) == 2  # bob's job is not hers
    assert lines[0].startswith("#2 · submitted · <t:")
    link = f"https://discord.com/channels/{guild}/{general}/{result.id}"
    assert lines[1].startswith(f"#1 · [result]({link}) · <t:")
    assert ix.original is not None
    assert ix.original.custom_ids() == ["job:2:cancel"]  # Cancel only on the running one
    assert await refused(world) == (
        "You've used 2 of 2 images in the last 24 h; the next one frees "
        f"{stamp((await world.job_in(1, 'delivered')).created_at + timedelta(hours=24))}."
    )

    click = await emu.click(emu.member("alice"), ix.original, "job:2:cancel")
    assert await world.reply_text(click) == "Edit #2 is cancelled; you were not charged."
    assert (await world.job_in(2, "cancelled")).state == JobState.CANCELLED
    assert await usage(world, "alice") == (1, 0)
    await admitted(world)  # the refunded image is usable again

    _, text = await run(world, "bob", "jobs")
    assert text.startswith("#3 · ")


async def test_admin_jobs_lists_every_running_job_and_a_manager_cancels_them(
    world: World,
) -> None:
    emu = world.emu
    world.fal.queue_delay = 30.0
    await admitted(world, "alice")
    await admitted(world, "bob")
    await world.job_in(2, "submitted")
    emu.set_command_permission(emu.guild, "admin", emu.role("Manager"))
    await run(
        world, "carol", "admin settings managers", {"action": "add", "role": emu.role("Manager")}
    )

    ix, text = await run(world, "dave", "admin jobs")
    assert ix.ephemeral
    lines = text.splitlines()
    general = emu.channel("general").mention
    assert lines[0].startswith(f"#1 · {emu.member('alice').mention} · ")
    assert lines[1].startswith(f"#2 · {emu.member('bob').mention} · submitted since <t:")
    assert all(line.endswith(f"in {general}") for line in lines)
    assert ix.original is not None
    assert ix.original.custom_ids() == ["job:1:cancel", "job:2:cancel"]
    assert ix.original.mentions == []  # listing members never pings them

    # dave has no Manage Server and no Manage Messages: being a bot manager is enough.
    click = await emu.click(emu.member("dave"), ix.original, "job:1:cancel")
    assert await world.reply_text(click) == "Edit #1 is cancelled; you were not charged."
    assert (await world.job_in(1, "cancelled")).state == JobState.CANCELLED
    assert await usage(world, "alice") == (0, 0)

    ix, text = await run(world, "carol", "admin jobs")
    assert text.splitlines()[0].startswith("#2 ")
    assert ix.original is not None
    click = await emu.click(emu.member("carol"), ix.original, "job:2:cancel")
    assert await world.reply_text(click) == "Edit #2 is cancelled; you were not charged."
    _, text = await run(world, "carol", "admin jobs")
    assert text == "No edits are running."


async def test_admin_jobs_with_more_jobs_than_one_message_holds(world: World) -> None:
    await run(world, "carol", "admin quota exempt", {"role": world.emu.role("Mod")})
    world.fal.queue_delay = 30.0
    for _ in range(27):
        await admitted(world, "erin")
    ix, text = await run(world, "carol", "admin jobs")
    assert len(text) <= 2000
    *lines, note = text.splitlines()
    assert 0 < len(lines) <= 25
    erin = world.emu.member("erin").mention
    for number, line in enumerate(lines, start=1):  # whole lines, oldest first
        assert line.startswith(f"#{number} · {erin} · ")
        assert line.endswith(f"in {world.emu.channel('general').mention}")
    assert note == (
        f"…and {27 - len(lines)} more, oldest first. Cancel some, then run `/admin jobs` again."
    )
    assert ix.original is not None
    assert ix.original.custom_ids() == [f"job:{n}:cancel" for n in range(1, len(lines) + 1)]


# ---------------------------------------------------------------------------- budget


async def test_budget_set_and_show(world: World) -> None:
    _, text = await run(world, "carol", "admin budget show")
    assert text == "Spent this month: $0.00 (no cap)."
    _, text = await run(world, "carol", "admin budget set", {"usd": 12.5})
    assert text == "Monthly budget set to $12.50."
    assert (await settings(world)).monthly_budget_usd == 12.5
    job_id = await admitted(world)
    await world.result()
    job = await world.bot.storage.jobs.get(job_id)
    assert job is not None
    _, text = await run(world, "carol", "admin budget show")
    assert text == f"Spent this month: ${job.cost_usd:,.2f} of $12.50."
    _, text = await run(world, "carol", "admin budget set", {"usd": 0})
    assert text == "No monthly cap."
    assert (await settings(world)).monthly_budget_usd == 0


async def test_a_spent_budget_stops_every_member_even_exempt_ones(world: World) -> None:
    await run(world, "carol", "admin quota exempt", {"role": world.emu.role("Mod")})
    await run(world, "carol", "admin quota default", {"images": 1})
    job_id = await admitted(world)
    await world.result()
    job = await world.bot.storage.jobs.get(job_id)
    assert job is not None
    # Exactly what was spent: nothing more fits this month. alice is also out of quota, but
    # the budget is the longer wait, so that is what she is told.
    await run(world, "carol", "admin budget set", {"usd": job.cost_usd})
    resets: set[int] = set()
    for member in ("alice", "bob", "carol", "erin"):
        text = await refused(world, member)
        assert text.startswith(
            f"This server has spent ${job.cost_usd:.2f} of its ${job.cost_usd:.2f} monthly "
            "budget for edits; it resets <t:"
        ), (member, text)
        assert text.endswith(":D>. An admin can raise it with `/admin budget set`.")
        resets.add(int(text.split("<t:")[1].split(":")[0]))
    now = datetime.now(UTC)
    first_of_next = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    assert resets == {int(first_of_next.timestamp())}

    await run(world, "carol", "admin budget set", {"usd": 0})
    await admitted(world, "bob")


# ---------------------------------------------------------------------------- every path


async def _first_result(world: World) -> Message:
    await admitted(world)
    result = await world.result()
    await world.emu.wait_for("reaction_add")
    return result


async def _try_every_path(world: World, result: Message) -> list[str]:
    """Each way alice can start a job besides /edit; returns what she read each time."""
    emu = world.emu
    alice, general = emu.member("alice"), emu.channel("general")
    said = []

    ix = await emu.click(alice, result, f"job:{1}:rerun")
    said.append(await world.reply_text(ix))

    # Tweak and Use as input refuse at the click, before the member fills in a modal.
    for action in ("tweak", "reuse"):
        ix = await emu.click(alice, result, f"job:1:{action}")
        said.append(await world.reply_text(ix))
        assert ix.modal is None

    posted = emu.post_user_message(alice, general, "look", [emu.attachment(png(), "a.png")])
    ix = await emu.context_menu(alice, general, CONTEXT_MENU, posted)
    await ix.response()
    assert ix.modal is not None
    prompt = ix.modal["components"][0]["components"][0]["custom_id"]
    said.append(await world.reply_text(await emu.submit_modal(alice, ix, {prompt: "from menu"})))

    await emu.react(alice, result, "🔁")
    note = await emu.wait_for_message(
        general, lambda m: m.content.startswith(f"{alice.mention} ") and not is_status(m)
    )
    assert note.mentions == [alice.id]  # the short reply pings only her
    said.append(note.content.removeprefix(f"{alice.mention} "))
    await settled()
    return said


async def test_every_path_that_creates_a_job_respects_the_quota(world: World) -> None:
    await run(world, "carol", "admin quota default", {"images": 1})
    result = await _first_result(world)
    said = [await refused(world), *await _try_every_path(world, result)]
    assert len(said) == 6
    for text in said:
        assert text.startswith("You've used 1 of 1 images in the last 24 h; the next one frees <t:")
    assert await job_ids(world, "alice") == [1]
    assert len(world.fal.submissions()) == 1
    assert await usage(world, "alice") == (1, 0)


async def test_every_path_that_creates_a_job_respects_the_budget(world: World) -> None:
    await run(world, "carol", "admin quota exempt", {"role": world.emu.role("Member")})
    result = await _first_result(world)
    job = await world.bot.storage.jobs.get(1)
    assert job is not None
    await run(world, "carol", "admin budget set", {"usd": job.cost_usd})
    said = [await refused(world), *await _try_every_path(world, result)]
    assert len(said) == 6
    for text in said:
        assert text.startswith(f"This server has spent ${job.cost_usd:.2f} of its"), text
    assert await job_ids(world, "alice") == [1]
    assert len(world.fal.submissions()) == 1


async def test_every_path_respects_the_in_flight_limit(world: World) -> None:
    await run(world, "carol", "admin settings caps", {"max_in_flight": 1})
    result = await _first_result(world)
    world.fal.queue_delay = 30.0
    await admitted(world)  # job 2 holds alice's only slot
    await world.job_in(2, "submitted")
    said = [await refused(world), *await _try_every_path(world, result)]
    for text in said:
        assert text.startswith("You already have 1 edit running (the limit is 1)"), text
    assert await job_ids(world, "alice") == [1, 2]


# ---------------------------------------------------------------------------- settings


async def test_settings_show_lists_every_policy(world: World) -> None:
    emu = world.emu
    gold = emu.add_role(emu.guild, "Gold")
    bob = emu.member("bob")
    await run(world, "carol", "admin quota default", {"images": 5, "window_hours": 48})
    await run(world, "carol", "admin quota role", {"role": gold, "images": 9})
    await run(world, "carol", "admin quota user", {"member": bob, "images": 2})
    await run(world, "carol", "admin quota exempt", {"role": emu.role("Mod")})
    await run(world, "carol", "admin budget set", {"usd": 20})
    await run(world, "carol", "admin settings rerun", {"who": "requester"})
    await run(world, "carol", "admin settings nsfw", {"policy": "spoiler"})
    await run(
        world, "carol", "admin settings channel", {"channel": emu.channel("nsfw"), "rule": "deny"}
    )
    await run(world, "carol", "admin settings caps", {"max_images": 2, "max_steps": 30})
    await run(
        world, "carol", "admin settings managers", {"action": "add", "role": emu.role("Manager")}
    )

    ix, text = await run(world, "carol", "admin settings show")
    assert ix.ephemeral
    assert text.splitlines() == [
        f"Quota: 5 images per 48 h · role overrides: {gold.mention} 9",
        f"Member overrides: {bob.mention} 2",
        f"Exempt roles: {emu.role('Mod').mention}",
        "Jobs in flight per member: 2",
        "Monthly budget: $20.00",
        "Reruns: requester · NSFW: spoiler",
        "Caps: 2 images per job, 30 steps",
        f"Channels: {emu.channel('nsfw').mention} deny",
        f"Bot managers: {emu.role('Manager').mention}",
    ]
    assert ix.original is not None and ix.original.mentions == []
    assert await settings(world) == GuildSettings(
        default_quota=5,
        window_hours=48,
        role_quotas={gold.id: 9},
        user_quotas={bob.id: 2},
        exempt_roles=[emu.role("Mod").id],
        monthly_budget_usd=20.0,
        rerun_policy="requester",
        nsfw_policy="spoiler",
        max_images_per_job=2,
        max_steps=30,
        manager_roles=[emu.role("Manager").id],
        channel_rules={emu.channel("nsfw").id: "deny"},
    )


async def test_channel_rules_allow_and_deny(world: World) -> None:
    emu = world.emu
    general, nsfw = emu.channel("general"), emu.channel("nsfw")
    _, text = await run(world, "carol", "admin settings channel", {"channel": nsfw, "rule": "deny"})
    assert text == f"{nsfw.mention}: deny."
    assert await refused(world, channel="nsfw") == "Edits are turned off in this channel."
    await admitted(world, channel="general")

    # One "allow" rule turns every other channel off, and the refusal points to it.
    await run(world, "carol", "admin settings channel", {"channel": nsfw, "rule": "clear"})
    await run(world, "carol", "admin settings channel", {"channel": general, "rule": "allow"})
    text = await refused(world, "bob", channel="nsfw")
    assert text == f"Edits are turned off in this channel. Try {general.mention}."
    await admitted(world, "bob", channel="general")
    assert (await settings(world)).channel_rules == {general.id: "allow"}


async def test_caps_limit_images_and_steps_per_job(world: World) -> None:
    _, text = await run(world, "carol", "admin settings caps", {"max_images": 2, "max_steps": 20})
    assert text == "Caps: 2 images per job, 20 steps, 2 jobs in flight per member."
    text = await refused(world, count=3)
    assert text == "count must be between 1 and 2 (this server's cap); you gave 3."
    text = await refused(world, steps=21)
    assert text == "steps must be between 4 and 20 (this server's cap); you gave 21."
    await admitted(world, count=2, steps=20)
    [submitted] = [job.body for job in await world.fal.wait_for_jobs(1)]
    assert submitted["num_images"] == 2 and submitted["num_inference_steps"] == 20


async def test_rerun_policy_requester_keeps_others_from_rerunning(world: World) -> None:
    emu = world.emu
    _, text = await run(world, "carol", "admin settings rerun", {"who": "requester"})
    assert text == "Reruns: requester."
    await admitted(world)
    result = await world.result()
    ix = await emu.click(emu.member("bob"), result, "job:1:rerun")
    assert await world.reply_text(ix) == (
        "On this server only the member who made an edit can rerun it."
    )
    ix = await emu.click(emu.member("alice"), result, "job:1:rerun")
    assert "Rerun started as edit #2" in await world.reply_text(ix)
    await run(world, "carol", "admin settings rerun", {"who": "anyone"})
    ix = await emu.click(emu.member("bob"), result, "job:1:rerun")
    assert "Rerun started as edit #3" in await world.reply_text(ix)


@pytest.mark.parametrize(
    ("policy", "checker_in_nsfw"),
    [("block", True), ("spoiler", True), ("allow_in_nsfw_channels", False)],
)
async def test_nsfw_policy_decides_the_safety_checker(
    world: World, policy: str, checker_in_nsfw: bool
) -> None:
    _, text = await run(world, "carol", "admin settings nsfw", {"policy": policy})
    assert text == f"NSFW policy: {policy.replace('_', '-')}."
    assert (await settings(world)).nsfw_policy == policy
    await world.job_in(await admitted(world, channel="nsfw"), "submitted")
    await admitted(world, channel="general")
    in_nsfw, in_general = [job.body for job in await world.fal.wait_for_jobs(2)]
    assert in_nsfw["enable_safety_checker"] is checker_in_nsfw
    assert in_general["enable_safety_checker"] is True  # always on outside NSFW channels


async def test_admin_usage_reports_images_and_usd_per_member_with_csv(world: World) -> None:
    emu = world.emu
    alice, bob = emu.member("alice"), emu.member("bob")
    first = await admitted(world, "alice")
    await world.result()
    second = await admitted(world, "bob", count=2)
    await world.result()
    world.fal.runner_failure_rate = 1.0
    failed = await admitted(world, "alice")
    await world.job_in(failed, "failed")  # refunded: not in the report
    costs = {}
    for job_id in (first, second):
        job = await world.bot.storage.jobs.get(job_id)
        assert job is not None
        costs[job.user_id] = job.cost_usd

    ix, text = await run(world, "carol", "admin usage")
    assert ix.ephemeral
    assert sorted(text.splitlines()) == sorted(
        [
            f"{alice.mention}: 1 today (${costs[alice.id]:.2f}), "
            f"1 this month (${costs[alice.id]:.2f})",
            f"{bob.mention}: 2 today (${costs[bob.id]:.2f}), 2 this month (${costs[bob.id]:.2f})",
        ]
    )
    message = ix.original
    assert message is not None and message.mentions == []
    [(filename, data, content_type)] = message.files
    assert filename == f"usage-{datetime.now(UTC):%Y-%m}.csv"
    assert content_type.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    by_user = {int(row["user_id"]): row for row in rows}
    assert set(by_user) == {alice.id, bob.id}
    assert by_user[bob.id]["images_today"] == "2" and by_user[bob.id]["images_month"] == "2"
    assert by_user[alice.id]["images_month"] == "1"
    for user_id, cost in costs.items():
        assert float(by_user[user_id]["usd_month"]) == pytest.approx(cost, abs=1e-4)
        assert float(by_user[user_id]["usd_today"]) == pytest.approx(cost, abs=1e-4)
