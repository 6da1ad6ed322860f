"""The LoRA registry from Discord, end to end: `/admin lora …`, `/loras`, every LoRA autocomplete,
who may manage it, and one server's LoRAs staying out of another's.

Members act through the Discord emulator (real discord.py, real sockets); the registry is the
real SQLite file of the bot under test. Setup that is not under test goes through storage.
"""

from __future__ import annotations

from typing import Any

import pytest

from cogs.admin import NOT_MANAGER, ONLY_OWNERS_NAME_MANAGERS
from cogs.utils.lora_ui import ConfirmRemove
from emulators.discord_emulator import DiscordEmulator
from emulators.discord_emulator.errors import EmulatorError
from emulators.discord_emulator.interactions import Interaction
from emulators.discord_emulator.messages import Message, walk_components
from emulators.discord_emulator.world import Guild
from tests.harness.e2e import World
from tests.harness.images import png

MANAGE_GUILD = 1 << 5


# ---------------------------------------------------------------------------- helpers


async def run(
    world: World,
    member: str,
    command: str,
    options: dict[str, Any] | None = None,
    *,
    channel: str = "general",
    guild: Guild | None = None,
) -> Interaction:
    emu = world.emu
    return await emu.slash(
        emu.member(member, guild), emu.channel(channel, guild), command, options or {}
    )


async def answer(ix: Interaction) -> dict[str, Any]:
    """The bot's immediate answer; every registry answer is for the member's eyes only."""
    callback = await ix.response()
    assert callback.type in (4, 7), callback
    assert callback.ephemeral or callback.type == 7
    return callback.data


async def text_of(ix: Interaction) -> str:
    return str((await answer(ix)).get("content") or "")


async def choices(
    world: World,
    member: str,
    command: str,
    focused: str,
    typed: str = "",
    *,
    channel: str = "general",
    guild: Guild | None = None,
) -> list[dict[str, Any]]:
    emu = world.emu
    return await emu.autocomplete(
        emu.member(member, guild),
        emu.channel(channel, guild),
        command,
        {focused: typed},
        focused=focused,
    )


def values(found: list[dict[str, Any]]) -> list[str]:
    return [c["value"] for c in found]


def button(message: Message, label: str) -> str:
    for component in walk_components(message.components):
        if component.get("label") == label:
            return str(component["custom_id"])
    raise AssertionError(f"no {label!r} button on {message.components}")


def fields(embed: dict[str, Any]) -> dict[str, str]:
    return {f["name"]: f["value"] for f in embed.get("fields", [])}


async def changes(world: World, name: str, guild: Guild | None = None) -> list[tuple[str, int]]:
    gid = (guild or world.emu.guild).id
    return [(c.action, c.actor_id) for c in await world.bot.storage.loras.history(gid, name)]


async def delivered(world: World) -> Message:
    """The next result, once its delivery is recorded (the bot reacts 🔁 right after)."""
    result = await world.result()
    await world.emu.wait_for("reaction_add", lambda data: data[0].id == result.id)
    return result


async def settle(world: World, member: str = "alice") -> None:
    """A round trip through the bot: what it did for earlier interactions has reached us."""
    await choices(world, member, "edit", "lora")


# ---------------------------------------------------------------------------- command layout


async def test_admin_is_one_manage_server_command_and_member_commands_are_separate(
    world: World,
) -> None:
    emu = world.emu
    synced = {c["name"]: c for c in emu.commands()}
    admin = synced["admin"]
    assert int(admin["default_member_permissions"]) == MANAGE_GUILD
    assert admin["contexts"] == [0]  # servers only
    groups = {o["name"]: o for o in admin["options"]}
    assert {o["name"] for o in groups["lora"]["options"]} == {
        "add",
        "edit",
        "disable",
        "enable",
        "remove",
        "train",
    }
    assert {o["name"] for o in groups["pairs"]["options"]} == {"add", "list", "remove", "clear"}
    for member_command in ("loras", "edit"):
        assert synced[member_command]["default_member_permissions"] is None
    # Discord's client does not even offer /admin to a plain member.
    with pytest.raises(EmulatorError, match="not offered /admin"):
        await run(world, "alice", "admin lora add", {"name": "x", "path": "owner/x"})
    assert await world.bot.storage.loras.count(emu.guild.id) == 0


# ---------------------------------------------------------------------------- add


async def test_admin_adds_a_lora_members_can_use_at_once(world: World) -> None:
    ix = await run(
        world,
        "carol",
        "admin lora add",
        {
            "name": "Clay",
            "path": "https://cdn.example.com/loras/clay.safetensors?download=true",
            "scale": 0.8,
            "triggers": "CLAY, clay style, CLAY",
            "description": "Turns anything into clay",
            "nsfw": False,
        },
    )
    data = await answer(ix)
    assert data["content"] == "Added `Clay`. Members can use it in `/edit` now."
    [card] = data["embeds"]
    assert card["title"] == "Clay"
    assert card["description"] == "Turns anything into clay"
    assert fields(card)["Default scale"] == "0.8"
    assert fields(card)["Trigger words"] == "`CLAY`, `clay style`"

    stored = await world.bot.storage.loras.get(world.emu.guild.id, "clay")
    assert stored is not None
    assert stored.path == "https://cdn.example.com/loras/clay.safetensors?download=true"
    assert (stored.default_scale, stored.trigger_words) == (0.8, ["CLAY", "clay style"])
    assert stored.created_by == world.emu.member("carol").id
    assert await changes(world, "clay") == [("add", world.emu.member("carol").id)]

    # Usable right away: a member's /edit sends it to fal with its trigger words.
    ix = await world.edit(prompt="a cat", lora="clay")
    assert "is on its way" in await world.reply_text(ix)
    await world.result()
    [submitted] = world.fal.submissions()
    assert submitted["loras"] == [{"path": stored.path, "scale": 0.8}]
    assert submitted["prompt"] == "CLAY, clay style, a cat"


async def test_add_accepts_repo_ids_and_https_files(world: World) -> None:
    accepted = {
        "repo": "owner/repo",
        "repofile": "owner/repo/sub/dir/style.safetensors",
        "url": "https://huggingface.co/o/r/resolve/main/x.safetensors",
        "query": "https://files.example.org/a/b.safetensors?sig=abc&exp=1",
    }
    for name, path in accepted.items():
        ix = await run(world, "carol", "admin lora add", {"name": name, "path": path})
        assert (await text_of(ix)).startswith(f"Added `{name}`"), path
        stored = await world.bot.storage.loras.get(world.emu.guild.id, name)
        assert stored is not None and stored.path == path


REFUSED_PATHS = [
    ("http://example.com/x.safetensors", "`http:` URLs aren't allowed"),
    ("file:///etc/passwd.safetensors", "`file:` URLs aren't allowed"),
    ("data:application/octet-stream;base64,AAAA", "`data:` paths aren't allowed"),
    ("/home/bot/loras/x.safetensors", "Local file paths aren't allowed"),
    ("C:\\loras\\x.safetensors", "Local file paths aren't allowed"),
    ("../secrets/x.safetensors", "Local file paths aren't allowed"),
    ("https://user:pw@example.com/x.safetensors", "contains credentials"),
    ("https://token@example.com/x.safetensors", "contains credentials"),
    ("https://localhost/x.safetensors", "private or local address (localhost)"),
    ("https://127.0.0.1/x.safetensors", "private or local address (127.0.0.1)"),
    ("https://10.1.2.3/x.safetensors", "private or local address (10.1.2.3)"),
    ("https://192.168.0.7:8443/x.safetensors", "private or local address (192.168.0.7)"),
    ("https://169.254.169.254/x.safetensors", "private or local address (169.254.169.254)"),
    ("https://[::1]/x.safetensors", "private or local address (::1)"),
    ("https://[fe80::1]/x.safetensors", "private or local address (fe80::1)"),
    ("https://2130706433/x.safetensors", "private or local address (2130706433)"),
    ("https://example.com/x.bin", "must point at a `.safetensors` file"),
    ("https://example.com/" + "a" * 500 + ".safetensors", "the limit is 500"),
    ("just-a-name", "isn't an https URL or a Hugging Face repo id"),
]


async def test_add_refuses_unsafe_paths_with_the_reason(world: World) -> None:
    for path, reason in REFUSED_PATHS:
        ix = await run(world, "carol", "admin lora add", {"name": "x", "path": path})
        text = await text_of(ix)
        assert reason in text, (path, text)
        assert ix.ephemeral
    assert await world.bot.storage.loras.count(world.emu.guild.id, include_disabled=True) == 0


async def test_add_refuses_bad_names_duplicates_and_a_full_registry(world: World) -> None:
    for bad in ("has space", "a" * 33, "émoji", "dots.here"):
        ix = await run(world, "carol", "admin lora add", {"name": bad, "path": "o/r"})
        assert "isn't a valid LoRA name: use 1–32 characters" in await text_of(ix), bad
    ok = "a" * 32
    ix = await run(world, "carol", "admin lora add", {"name": ok, "path": "o/r"})
    assert (await text_of(ix)).startswith(f"Added `{ok}`")

    await world.add_lora("Claymation")
    ix = await run(world, "carol", "admin lora add", {"name": "CLAYMATION", "path": "o/r"})
    assert await text_of(ix) == (
        "A LoRA named `Claymation` already exists here (names ignore case)."
    )

    limit = world.settings.max_loras_per_server
    assert limit == 100
    for i in range(limit - 2):
        await world.add_lora(f"filler-{i:03}")
    ix = await run(world, "carol", "admin lora add", {"name": "one-too-many", "path": "o/r"})
    assert await text_of(ix) == (
        "This server already has 100 LoRAs, the most allowed; remove one first."
    )
    assert await world.bot.storage.loras.get(world.emu.guild.id, "one-too-many") is None
    assert await world.bot.storage.loras.count(world.emu.guild.id) == limit


# ---------------------------------------------------------------------------- edit


async def test_edit_changes_only_what_is_given_and_records_each_change(world: World) -> None:
    await world.add_lora("clay", path="owner/clay", triggers=("CLAY",), scale=1.0)
    carol = world.emu.member("carol").id

    ix = await run(world, "carol", "admin lora edit", {"name": "CLAY", "scale": 0.6})
    data = await answer(ix)
    assert data["content"] == "Updated `clay` (version 2)."
    assert fields(data["embeds"][0])["Default scale"] == "0.6"

    ix = await run(
        world,
        "carol",
        "admin lora edit",
        {"name": "clay", "new_name": "clay-v2", "triggers": "-", "description": "Softer clay"},
    )
    assert await text_of(ix) == "Updated `clay-v2` (version 3)."
    lora = await world.bot.storage.loras.get(world.emu.guild.id, "clay-v2")
    assert lora is not None
    assert (lora.default_scale, lora.trigger_words, lora.description) == (
        0.6,
        [],
        "Softer clay",
    )
    assert lora.path == "owner/clay"  # untouched
    assert await world.bot.storage.loras.get(world.emu.guild.id, "clay") is None
    assert await changes(world, "clay-v2") == [("add", carol), ("edit", carol), ("edit", carol)]
    history = await world.bot.storage.loras.history(world.emu.guild.id, "clay-v2")
    assert history[1].details == {"default_scale": {"old": 1.0, "new": 0.6}}
    assert history[2].details["name"] == {"old": "clay", "new": "clay-v2"}

    # Refusals: nothing to change, nothing changed, a bad value, a clash, an unknown name.
    ix = await run(world, "carol", "admin lora edit", {"name": "clay-v2"})
    assert "Nothing to change" in await text_of(ix)
    ix = await run(world, "carol", "admin lora edit", {"name": "clay-v2", "scale": 0.6})
    assert await text_of(ix) == "Nothing changed: `clay-v2` already has those settings."
    ix = await run(world, "carol", "admin lora edit", {"name": "clay-v2", "path": "http://x/y"})
    assert "`http:` URLs aren't allowed" in await text_of(ix)
    await world.add_lora("anime")
    ix = await run(world, "carol", "admin lora edit", {"name": "clay-v2", "new_name": "ANIME"})
    assert await text_of(ix) == "A LoRA named `anime` already exists here (names ignore case)."
    ix = await run(world, "carol", "admin lora edit", {"name": "nope", "scale": 1.0})
    assert await text_of(ix) == "This server has no LoRA named `nope`."
    after = await world.bot.storage.loras.get(world.emu.guild.id, "clay-v2")
    assert after is not None and after.version == 3 and after.path == "owner/clay"
    assert len(await changes(world, "clay-v2")) == 3


# ---------------------------------------------------------------------------- disable / enable


async def test_disabled_lora_is_hidden_from_members_until_enabled(world: World) -> None:
    await world.add_lora("clay", description="Turns anything into clay")
    carol = world.emu.member("carol").id

    ix = await run(world, "carol", "admin lora disable", {"name": "clay"})
    assert await text_of(ix) == "`clay` is disabled."

    assert await choices(world, "alice", "edit", "lora", "cl") == []
    assert await choices(world, "alice", "loras", "name", "cl") == []
    admin_view = await choices(world, "carol", "admin lora enable", "name", "cl")
    assert admin_view == [
        {"name": "clay (disabled) · 1 · Turns anything into clay", "value": "clay"}
    ]
    page = (await answer(await run(world, "alice", "loras")))["embeds"][0]
    assert "clay" not in fields(page)
    ix = await run(world, "alice", "loras", {"name": "clay"})
    assert await text_of(ix) == "This server has no LoRA named `clay`."
    ix = await world.edit(lora="clay")
    assert await world.reply_text(ix) == "The LoRA `clay` is disabled on this server."
    assert world.fal.submissions() == []
    card = (await answer(await run(world, "carol", "loras", {"name": "clay"})))["embeds"][0]
    assert fields(card)["State"] == "disabled"

    ix = await run(world, "carol", "admin lora enable", {"name": "clay"})
    assert await text_of(ix) == "`clay` is enabled."
    assert values(await choices(world, "alice", "edit", "lora", "cl")) == ["clay"]
    ix = await world.edit(lora="clay")
    assert "is on its way" in await world.reply_text(ix)
    assert await changes(world, "clay") == [("add", carol), ("disable", carol), ("enable", carol)]


# ---------------------------------------------------------------------------- remove


async def test_remove_asks_first_and_past_results_keep_their_recipe(world: World) -> None:
    await world.add_lora("clay", path="owner/clay", triggers=("CLAY",), scale=0.8)
    ix = await world.edit(prompt="a cat", lora="clay")
    await world.reply_text(ix)
    result = await delivered(world)
    job = await world.bot.storage.jobs.get(1)
    assert job is not None and job.state == "delivered"
    card = (await answer(await run(world, "alice", "loras", {"name": "clay"})))["embeds"][0]
    assert fields(card)["Uses"] == "1"

    carol = world.emu.member("carol")
    ask = await run(world, "carol", "admin lora remove", {"name": "CLAY"})
    question = await text_of(ask)
    assert question.startswith("Remove `clay` for good?")
    assert ask.original is not None
    keep = await world.emu.click(carol, ask.original, button(ask.original, "Keep it"))
    assert (await answer(keep))["content"] == "Kept `clay`."
    assert await world.bot.storage.loras.get(world.emu.guild.id, "clay") is not None

    ask = await run(world, "carol", "admin lora remove", {"name": "clay"})
    await text_of(ask)
    assert ask.original is not None
    confirm = await world.emu.click(carol, ask.original, button(ask.original, "Remove"))
    data = await answer(confirm)
    assert data["content"] == "Removed `clay`. Past results keep their recipe."
    assert data["components"] == []
    assert await world.bot.storage.loras.get(world.emu.guild.id, "clay") is None
    assert [a for a, _ in await changes(world, "clay")] == ["add", "remove"]

    # The job and its result message still describe what was made.
    kept = await world.bot.storage.jobs.get(1)
    assert kept is not None and kept.state == "delivered"
    assert kept.request.loras[0].name == "clay"
    assert kept.request.loras[0].path == "owner/clay"
    assert fields(result.embeds[0])["LoRAs"] == "`clay` × 0.8"
    assert not result.deleted
    # Rerunning it is refused with the reason; nothing reaches fal.
    rerun = await world.emu.click(world.emu.member("alice"), result, "job:1:rerun")
    assert await world.reply_text(rerun) == (
        "The LoRA `clay` was removed from this server, so this edit can't be rerun."
    )
    assert len(world.fal.submissions()) == 1
    assert await choices(world, "alice", "edit", "lora", "clay") == []
    ix = await run(world, "carol", "admin lora remove", {"name": "clay"})
    assert await text_of(ix) == "This server has no LoRA named `clay`."


async def test_unanswered_remove_question_expires_cleanly(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ConfirmRemove, "TIMEOUT", 0.2)
    await world.add_lora("clay")
    ask = await run(world, "carol", "admin lora remove", {"name": "clay"})
    await text_of(ask)
    expired = await ask.wait_original_edit(lambda m: "expired" in m.content)
    assert expired.content.startswith("Nothing was removed: the question expired.")
    assert expired.components == []
    assert await world.bot.storage.loras.get(world.emu.guild.id, "clay") is not None


async def test_rerun_of_a_result_follows_its_lora_through_a_rename(world: World) -> None:
    await world.add_lora("clay", path="owner/clay", scale=0.8)
    await world.reply_text(await world.edit(prompt="a cat", lora="clay"))
    result = await world.result()
    ix = await run(world, "carol", "admin lora edit", {"name": "clay", "new_name": "clay-v2"})
    assert await text_of(ix) == "Updated `clay-v2` (version 2)."

    rerun = await world.emu.click(world.emu.member("alice"), result, "job:1:rerun")
    assert (await world.reply_text(rerun)).startswith("Rerun started as edit #2")
    again = await world.result()
    assert fields(again.embeds[0])["LoRAs"] == "`clay-v2` × 0.8"
    assert [s["loras"] for s in world.fal.submissions()] == [
        [{"path": "owner/clay", "scale": 0.8}],
        [{"path": "owner/clay", "scale": 0.8}],
    ]


# ---------------------------------------------------------------------------- /loras


async def test_loras_pages_through_buttons_that_survive_a_restart(world: World) -> None:
    for i in range(20):
        await world.add_lora(
            f"style-{i:02}", scale=0.5 + i / 10, triggers=(f"TRIG{i}",), description=f"Look {i}"
        )
    await world.add_lora("hidden", nsfw=True)
    alice = world.emu.member("alice")

    ix = await run(world, "alice", "loras")
    data = await answer(ix)
    page = data["embeds"][0]
    assert list(fields(page)) == [f"style-{i:02}" for i in range(8)]
    assert fields(page)["style-03"] == "scale 0.8 · triggers: TRIG3 · 0 uses\nLook 3"
    assert page["footer"]["text"] == "Page 1 of 3 · 20 LoRAs · /loras name for a card"
    message = ix.original
    assert message is not None and message.ephemeral
    assert [c.get("disabled", False) for c in walk_components(message.components)][1:] == [
        True,
        False,
    ]

    nxt = await world.emu.click(alice, message, button(message, "Next"))
    page = (await answer(nxt))["embeds"][0]
    assert list(fields(page)) == [f"style-{i:02}" for i in range(8, 16)]
    assert page["footer"]["text"].startswith("Page 2 of 3")

    await world.restart()
    nxt = await world.emu.click(alice, message, button(message, "Next"))
    page = (await answer(nxt))["embeds"][0]
    assert list(fields(page)) == [f"style-{i:02}" for i in range(16, 20)]
    assert page["footer"]["text"].startswith("Page 3 of 3")
    with pytest.raises(EmulatorError, match="disabled"):
        await world.emu.click(alice, message, button(message, "Next"))
    prev = await world.emu.click(alice, message, button(message, "Previous"))
    assert next(iter(fields((await answer(prev))["embeds"][0]))) == "style-08"

    # In an age-restricted channel the NSFW one is listed too.
    ix = await run(world, "alice", "loras", channel="nsfw")
    assert "21 LoRAs" in (await answer(ix))["embeds"][0]["footer"]["text"]


async def test_empty_registry_tells_members_who_can_fill_it(world: World) -> None:
    page = (await answer(await run(world, "alice", "loras")))["embeds"][0]
    assert page["description"] == "No LoRAs yet. An admin can add one with `/admin lora add`."


async def test_card_shows_change_history_to_managers_only(world: World) -> None:
    await world.add_lora("clay", triggers=("CLAY",), scale=1.0, description="Clay *everywhere*")
    carol = world.emu.member("carol")
    ix = await run(world, "carol", "admin lora edit", {"name": "clay", "scale": 0.75})
    await text_of(ix)

    member_card = (await answer(await run(world, "alice", "loras", {"name": "clay"})))["embeds"][0]
    assert member_card["title"] == "clay"
    assert member_card["description"] == "Clay \\*everywhere\\*"
    assert fields(member_card)["Trigger words"] == "`CLAY`"
    assert "History" not in fields(member_card)
    assert "Path" not in fields(member_card)

    admin_card = (await answer(await run(world, "carol", "loras", {"name": "CLAY"})))["embeds"][0]
    history = fields(admin_card)["History"].splitlines()
    assert len(history) == 2
    assert history[0].endswith(f"added by {carol.mention}")
    assert history[1].endswith(f"changed scale 1 → 0.75 by {carol.mention}")
    assert history[0].startswith("<t:")
    assert fields(admin_card)["Path"] == "`owner/claymation`"


# ---------------------------------------------------------------------------- who may manage


async def test_member_shown_admin_by_integration_settings_is_refused(world: World) -> None:
    emu = world.emu
    await world.add_lora("clay")
    await world.add_lora("secret", description="Unreleased")
    ix = await run(world, "carol", "admin lora disable", {"name": "secret"})
    await text_of(ix)
    emu.set_command_permission(emu.guild, "admin", emu.role("Member"))

    for command, options in [
        ("admin lora add", {"name": "x", "path": "owner/x"}),
        ("admin lora disable", {"name": "clay"}),
        ("admin lora remove", {"name": "clay"}),
        ("admin settings managers", {"action": "add", "role": emu.role("Member")}),
    ]:
        ix = await run(world, "alice", command, options)
        assert await text_of(ix) == NOT_MANAGER
        await settle(world)
        assert ix.followups == [], command  # one clear answer, not two
    assert "/admin settings managers add" in NOT_MANAGER
    assert "Integrations" in NOT_MANAGER
    # Typing into an /admin option shows only what members may see.
    assert values(await choices(world, "alice", "admin lora enable", "name")) == ["clay"]
    assert await world.bot.storage.loras.count(emu.guild.id) == 1
    assert (await world.bot.storage.settings.get(emu.guild.id)).manager_roles == []
    assert [a for a, _ in await changes(world, "clay")] == ["add"]


async def test_manager_role_named_by_an_admin_is_accepted(world: World) -> None:
    emu = world.emu
    manager = emu.role("Manager")
    # Without a name in integration settings, Discord never shows dave /admin.
    emu.set_command_permission(emu.guild, "admin", manager)
    ix = await run(world, "dave", "admin lora add", {"name": "clay", "path": "owner/clay"})
    assert await text_of(ix) == NOT_MANAGER

    ix = await run(world, "carol", "admin settings managers", {"action": "add", "role": manager})
    assert (await text_of(ix)).startswith(f"{manager.mention} can now use `/admin`.")
    assert (await world.bot.storage.settings.get(emu.guild.id)).manager_roles == [manager.id]

    ix = await run(world, "dave", "admin lora add", {"name": "clay", "path": "owner/clay"})
    assert (await text_of(ix)).startswith("Added `clay`")
    assert await changes(world, "clay") == [("add", emu.member("dave").id)]
    assert "History" in fields(
        (await answer(await run(world, "dave", "loras", {"name": "clay"})))["embeds"][0]
    )
    # A delegated manager cannot name more managers.
    mod = emu.role("Mod")
    ix = await run(world, "dave", "admin settings managers", {"action": "add", "role": mod})
    assert await text_of(ix) == ONLY_OWNERS_NAME_MANAGERS
    ix = await run(
        world, "carol", "admin settings managers", {"action": "add", "role": emu.guild.everyone}
    )
    assert "@everyone can't be a bot-manager role" in await text_of(ix)
    assert (await world.bot.storage.settings.get(emu.guild.id)).manager_roles == [manager.id]

    ix = await run(world, "carol", "admin settings managers", {"action": "remove", "role": manager})
    assert await text_of(ix) == f"{manager.mention} can no longer use `/admin`."
    ix = await run(world, "dave", "admin lora disable", {"name": "clay"})
    assert await text_of(ix) == NOT_MANAGER
    lora = await world.bot.storage.loras.get(emu.guild.id, "clay")
    assert lora is not None and lora.enabled


# ---------------------------------------------------------------------------- autocomplete


async def test_autocomplete_ranks_prefix_then_name_then_description(world: World) -> None:
    await world.add_lora("pottery", scale=0.7, description="Wet CLAY on a wheel")
    await world.add_lora("modern-clay", scale=1.2, description="Clean lines")
    await world.add_lora("claymation", scale=1.0, description="Stop motion\nfigures")
    await world.add_lora("Clay", scale=0.8, description="Turns anything into clay")
    await world.add_lora("anime", description="Cel shading")
    await world.add_lora("long", description="word " * 60)

    expected = [
        {"name": "Clay · 0.8 · Turns anything into clay", "value": "Clay"},
        {"name": "claymation · 1 · Stop motion figures", "value": "claymation"},
        {"name": "modern-clay · 1.2 · Clean lines", "value": "modern-clay"},
        {"name": "pottery · 0.7 · Wet CLAY on a wheel", "value": "pottery"},
    ]
    # The same ranking and labels in every LoRA option a member can type into.
    for command, option in [
        ("edit", "lora"),
        ("edit", "lora2"),
        ("edit", "lora3"),
        ("loras", "name"),
    ]:
        assert await choices(world, "alice", command, option, "cLaY") == expected, option
    for command in ("edit", "disable", "enable", "remove"):
        assert await choices(world, "carol", f"admin lora {command}", "name", "clay") == expected

    [long] = await choices(world, "alice", "edit", "lora", "long")
    assert len(long["name"]) == 100 and long["name"].endswith("…")
    assert long["name"].startswith("long · 1 · word word")
    assert values(await choices(world, "alice", "edit", "lora", "")) == [
        "anime",
        "Clay",
        "claymation",
        "long",
        "modern-clay",
        "pottery",
    ]
    assert await choices(world, "alice", "edit", "lora", "zzz") == []
    assert await choices(world, "alice", "edit", "lora", "%") == []  # LIKE wildcards are text


async def test_autocomplete_never_offers_more_than_25(world: World) -> None:
    for i in range(40):
        await world.add_lora(f"style-{i:02}")
    for typed in ("", "style", "e-"):
        found = await choices(world, "alice", "edit", "lora", typed)
        assert values(found) == [f"style-{i:02}" for i in range(25)], typed
    assert len(await choices(world, "carol", "admin lora edit", "name")) == 25


async def test_autocomplete_hides_nsfw_loras_outside_age_restricted_channels(
    world: World,
) -> None:
    await world.add_lora("spicy", nsfw=True, description="Only for the right rooms")
    await world.add_lora("sparkle")
    for member, command, option in [
        ("alice", "edit", "lora"),
        ("alice", "loras", "name"),
        ("carol", "admin lora edit", "name"),
    ]:
        assert values(await choices(world, member, command, option, "sp")) == ["sparkle"]
        found = await choices(world, member, command, option, "sp", channel="nsfw")
        assert values(found) == ["sparkle", "spicy"]
    labels = [
        c["name"] for c in await choices(world, "carol", "admin lora edit", "name", channel="nsfw")
    ]
    assert "spicy (NSFW) · 1 · Only for the right rooms" in labels
    ix = await run(world, "alice", "loras", {"name": "spicy"})
    assert await text_of(ix) == "This server has no LoRA named `spicy`."
    ix = await run(world, "alice", "loras", {"name": "spicy"}, channel="nsfw")
    assert fields((await answer(ix))["embeds"][0])["State"] == "enabled · NSFW"


# ---------------------------------------------------------------------------- isolation


async def _second_server(emu: DiscordEmulator, world: World) -> Guild:
    second = emu.add_guild("Second Server", members=("alice",))
    # The bot hears about the guild on the gateway; one answered command there proves it did.
    await text_of(await run(world, "olivia", "loras", guild=second))
    return second


async def test_one_servers_loras_are_invisible_and_unusable_in_another(world: World) -> None:
    emu = world.emu
    ix = await run(world, "carol", "admin lora add", {"name": "clay", "path": "first/clay"})
    await text_of(ix)
    second = await _second_server(emu, world)

    assert await choices(world, "alice", "edit", "lora", "cl", guild=second) == []
    assert await choices(world, "olivia", "admin lora edit", "name", "cl", guild=second) == []
    page = (await answer(await run(world, "alice", "loras", guild=second)))["embeds"][0]
    assert page["description"].startswith("No LoRAs yet.")
    ix = await run(world, "alice", "loras", {"name": "clay"}, guild=second)
    assert await text_of(ix) == "This server has no LoRA named `clay`."
    ix = await emu.slash(
        emu.member("alice", second),
        emu.channel("general", second),
        "edit",
        {"prompt": "a cat", "lora": "clay"},
        attachments={"image": emu.attachment(png(), "a.png")},
    )
    assert await world.reply_text(ix) == (
        "This server has no LoRA named `clay`. See `/loras` for the list."
    )
    for command in ("disable", "remove"):
        ix = await run(world, "olivia", f"admin lora {command}", {"name": "clay"}, guild=second)
        assert await text_of(ix) == "This server has no LoRA named `clay`."
    assert world.fal.submissions() == []

    # Names are unique per server only: the second server registers its own "clay".
    ix = await run(
        world, "olivia", "admin lora add", {"name": "CLAY", "path": "second/clay"}, guild=second
    )
    assert (await text_of(ix)).startswith("Added `CLAY`")
    first = await world.bot.storage.loras.get(emu.guild.id, "clay")
    other = await world.bot.storage.loras.get(second.id, "clay")
    assert first is not None and other is not None
    assert (first.path, other.path) == ("first/clay", "second/clay")
    assert values(await choices(world, "alice", "edit", "lora", "cl", guild=second)) == ["CLAY"]
    ix = await run(world, "carol", "admin lora disable", {"name": "clay"})
    await text_of(ix)
    assert values(await choices(world, "alice", "edit", "lora", "cl", guild=second)) == ["CLAY"]
    assert await changes(world, "clay", second) == [("add", emu.member("olivia", second).id)]

    # Manager roles are per server too.
    ix = await run(
        world, "carol", "admin settings managers", {"action": "add", "role": emu.role("Member")}
    )
    await text_of(ix)
    emu.set_command_permission(second, "admin", emu.role("Member", second))
    ix = await run(world, "alice", "admin lora disable", {"name": "clay"}, guild=second)
    assert await text_of(ix) == NOT_MANAGER
    assert (await world.bot.storage.settings.get(second.id)).manager_roles == []
