"""Every `/admin` subcommand × four kinds of member; only the first two run it.

- Manage Server (carol, role Admin);
- a bot-manager role (dave, role Manager, named with `/admin settings managers` and exposed to
  `/admin` in the server's integration settings, which is how Discord lets a role see it);
- a plain member (alice): Discord's client doesn't offer `/admin` (default_permissions), so the
  emulator refuses to send it; a modified client sends it anyway, and the bot refuses too;
- a member whose role the server exposed `/admin` to without naming it a manager (erin, Mod).

"Runs it" means the member reads the subcommand's own answer and its effect is stored;
"refused" means the member reads the one refusal that says how to fix it, privately, and
nothing changed: not the settings, not the registry, not the quota ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from cogs.admin import NOT_MANAGER, ONLY_OWNERS_NAME_MANAGERS
from emulators.discord_emulator import DiscordEmulator
from emulators.discord_emulator.errors import EmulatorError
from emulators.discord_emulator.interactions import Interaction
from emulators.discord_emulator.world import Member
from tests.harness.e2e import World
from tests.harness.images import png
from tests.harness.security_fixtures import raw_slash

Options = Callable[[DiscordEmulator, str], dict[str, Any]]


Files = Callable[[DiscordEmulator], dict[str, Any]]


def no_files(emu: DiscordEmulator) -> dict[str, Any]:
    return {}


def a_pair(emu: DiscordEmulator) -> dict[str, Any]:
    return {
        "before": emu.attachment(png(512, 512), "before.png"),
        "after": emu.attachment(png(512, 512, (0, 0, 255)), "after.png"),
    }


@dataclass(frozen=True)
class Sub:
    command: str
    options: Options
    ran: str  # a phrase of the answer when the subcommand runs
    files: Files = no_files


SUBCOMMANDS: list[Sub] = [
    Sub("lora add", lambda e, k: {"name": f"added-{k}", "path": "owner/new"}, "Added `added-"),
    Sub("lora edit", lambda e, k: {"name": "clay", "scale": 0.5}, "Updated `clay`"),
    Sub("lora disable", lambda e, k: {"name": "clay"}, "`clay` is disabled."),
    Sub("lora enable", lambda e, k: {"name": "clay"}, "`clay` is enabled."),
    Sub("lora remove", lambda e, k: {"name": "clay"}, "Remove `clay` for good?"),
    Sub("lora train", lambda e, k: {"name": f"t-{k}"}, "Attach a zip of pairs"),
    Sub("pairs add", lambda e, k: {"instruction": "make it blue"}, "to the draft set.", a_pair),
    Sub("pairs list", lambda e, k: {}, "pair"),
    Sub("pairs remove", lambda e, k: {"number": 99}, "There is no pair 99"),
    Sub("pairs clear", lambda e, k: {}, "the draft set is empty."),
    Sub(
        "preset add",
        lambda e, k: {"name": f"p-{k}", "lora": "clay", "template": "{prompt}, clay"},
        "Added the preset `p-",
    ),
    Sub("preset edit", lambda e, k: {"name": f"p-{k}", "steps": 20}, "Updated the preset `p-"),
    Sub("preset remove", lambda e, k: {"name": f"p-{k}"}, "Removed the preset `p-"),
    Sub("quota default", lambda e, k: {"images": 7}, "Members may now make 7 images"),
    Sub("quota role", lambda e, k: {"role": e.role("Member"), "images": 3}, "may make 3 images"),
    Sub("quota user", lambda e, k: {"member": e.member("bob"), "images": 4}, "may make 4 images"),
    Sub("quota exempt", lambda e, k: {"role": e.role("Member")}, "is exempt from quotas"),
    Sub("quota reset", lambda e, k: {"member": e.member("bob")}, "quota window starts fresh"),
    Sub("budget set", lambda e, k: {"usd": 12.5}, "Monthly budget set to $12.50."),
    Sub("budget show", lambda e, k: {}, "Spent this month: $0.00"),
    Sub("settings show", lambda e, k: {}, "Quota: "),
    Sub("settings rerun", lambda e, k: {"who": "requester"}, "Reruns: requester."),
    Sub("settings nsfw", lambda e, k: {"policy": "spoiler"}, "NSFW policy: spoiler."),
    Sub(
        "settings channel",
        lambda e, k: {"channel": e.channel("nsfw"), "rule": "deny"},
        ": deny.",
    ),
    Sub("settings caps", lambda e, k: {"max_images": 3}, "Caps: 3 images per job"),
    Sub("settings alerts", lambda e, k: {"channel": e.channel("general")}, "Budget alerts go to"),
    Sub(
        "settings managers",
        lambda e, k: {"action": "remove", "role": e.role("Spare")},
        "can no longer use `/admin`",
    ),
    Sub("setup", lambda e, k: {}, "**Setup check**"),
    Sub("usage", lambda e, k: {}, "No edits this month."),
    Sub("jobs", lambda e, k: {}, "No edits are running."),
]

# kind → (member, may run /admin)
KINDS: dict[str, tuple[str, bool]] = {
    "Manage Server": ("carol", True),
    "bot-manager role": ("dave", True),
    "plain member": ("alice", False),
    "role exposed in integration settings": ("erin", False),
}


async def state(world: World) -> tuple[Any, ...]:
    storage = world.bot.storage
    guild = world.emu.guild.id
    loras = await storage.loras.list(
        guild, include_disabled=True, include_nsfw=True, offset=0, limit=100
    )
    usage = await storage.quotas.usage(guild, world.emu.member("bob").id, 86_400)
    return (
        await storage.settings.get(guild),
        [(x.name, x.path, x.enabled, x.version, x.default_scale) for x in loras],
        usage.images_used,
        [(p.name, p.recipe) for p in await storage.presets.list(guild)],
    )


def admin_subcommands(emu: DiscordEmulator) -> set[str]:
    """Every /admin subcommand as synced to Discord, as "group sub" or "sub"."""
    [schema] = [c for c in emu.commands() if c["name"] == "admin"]
    names: set[str] = set()
    for option in schema.get("options", []):
        if option["type"] == 2:  # a subcommand group
            names |= {f"{option['name']} {sub['name']}" for sub in option.get("options", [])}
        elif option["type"] == 1:
            names.add(option["name"])
    return names


async def run(world: World, member: Member, sub: Sub, kind: str, *, raw: bool) -> Interaction:
    emu = world.emu
    options = sub.options(emu, kind.split()[0].lower())
    files = sub.files(emu)
    if raw:
        return raw_slash(
            emu, member, emu.channel("general"), f"admin {sub.command}", options, attachments=files
        )
    return await emu.slash(
        member, emu.channel("general"), f"admin {sub.command}", options, attachments=files
    )


@pytest.mark.parametrize("kind", list(KINDS))
async def test_admin_matrix(world: World, kind: str) -> None:
    emu = world.emu
    guild = emu.guild
    await world.add_lora("clay")
    spare = emu.add_role(guild, "Spare")
    manager, mod = emu.role("Manager"), emu.role("Mod")
    # The server shows /admin to Manager and Mod (Server Settings → Integrations)…
    emu.set_command_permission(guild, "admin", manager)
    emu.set_command_permission(guild, "admin", mod)
    # …and names Manager (and a spare role) bot managers; Mod stays a plain exposed role.
    settings = await world.bot.storage.settings.get(guild.id)
    await world.bot.storage.settings.save(
        guild.id, settings.model_copy(update={"manager_roles": [manager.id, spare.id]})
    )
    username, allowed = KINDS[kind]
    member = emu.member(username)

    outcomes: dict[str, str] = {}
    refusals: list[tuple[str, Interaction]] = []
    for sub in SUBCOMMANDS:
        before = await state(world)
        raw = False
        try:
            ix = await run(world, member, sub, kind, raw=False)
        except EmulatorError:
            # Discord's client doesn't offer /admin here; a modified client sends it anyway.
            assert not allowed, f"{kind} should be offered /admin {sub.command}"
            raw = True
            ix = await run(world, member, sub, kind, raw=True)
        text, private = await world.reply_text(ix), ix.ephemeral
        after = await state(world)
        if text == NOT_MANAGER:
            outcomes[sub.command] = "refused (raw)" if raw else "refused"
            assert private, f"{sub.command}: the refusal is public"
            assert after == before, f"{sub.command} changed something while refusing"
            refusals.append((sub.command, ix))
        elif text == ONLY_OWNERS_NAME_MANAGERS and private:
            outcomes[sub.command] = "owners only"
            assert after == before, f"{sub.command} changed something while refusing"
        elif sub.ran in text and private:
            outcomes[sub.command] = "ran"
        else:
            outcomes[sub.command] = f"unexpected: {text[:120]!r} private={private}"
        if sub.command == "lora add" and outcomes[sub.command] == "ran":
            assert any(x[0].startswith("added-") for x in after[1])

    expected = {
        sub.command: "ran"
        if allowed
        else ("refused (raw)" if kind == "plain member" else "refused")
        for sub in SUBCOMMANDS
    }
    if kind == "bot-manager role":
        # A delegated manager runs everything but naming further managers (owners only).
        expected["settings managers"] = "owners only"
    assert outcomes == expected
    assert set(outcomes) == admin_subcommands(emu)  # every /admin subcommand
    assert len(outcomes) == 30
    # One more round trip, then count: a refusal is the only message its member read.
    await world.reply_text(await emu.slash(member, emu.channel("general"), "quota"))
    for command, ix in refusals:
        shown = {m.id for m in [ix.original, *ix.followups] if m is not None}
        assert len(shown) == 1, f"/admin {command}: {[m.content for m in ix.followups]}"


async def test_a_manager_role_that_discord_hides_is_still_checked_by_the_bot(world: World) -> None:
    """Named a manager but not exposed: Discord's client hides /admin; the bot's own check (what
    a modified client meets) lets the manager through, and nobody else."""
    emu = world.emu
    manager = emu.role("Manager")
    settings = await world.bot.storage.settings.get(emu.guild.id)
    await world.bot.storage.settings.save(
        emu.guild.id, settings.model_copy(update={"manager_roles": [manager.id]})
    )
    with pytest.raises(EmulatorError, match="not offered /admin"):
        await emu.slash(emu.member("dave"), emu.channel("general"), "admin settings show")
    ix = raw_slash(emu, emu.member("dave"), emu.channel("general"), "admin settings show")
    assert "Bot managers: <@&" in await world.reply_text(ix)
    ix = raw_slash(emu, emu.member("bob"), emu.channel("general"), "admin settings show")
    assert await world.reply_text(ix) == NOT_MANAGER


@pytest.mark.parametrize("kind", list(KINDS))
async def test_studio_member_commands_are_every_members(world: World, kind: str) -> None:
    """/sweep and /presets are member commands: every kind of member is offered them and runs
    them; only the preset subcommands of /admin are for managers (the matrix above)."""
    emu = world.emu
    await world.add_lora("clay")
    synced = {c["name"]: c for c in emu.commands()}
    for name in ("sweep", "presets"):
        assert synced[name].get("default_member_permissions") is None
    member = emu.member(KINDS[kind][0])
    ix = await emu.slash(member, emu.channel("general"), "presets")
    await world.reply_text(ix)
    assert ix.ephemeral and ix.original is not None
    assert "No presets to show here." in ix.original.embeds[0]["description"]
    ix = await emu.slash(
        member,
        emu.channel("general"),
        "sweep",
        {"prompt": "p", "lora": "clay", "cells": 4},
        attachments={"image": emu.attachment(png(), "in.png")},
    )
    assert "Sweep #1 is on its way" in await world.reply_text(ix)
