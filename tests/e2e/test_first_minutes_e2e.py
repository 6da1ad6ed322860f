"""A new server's first five minutes through Discord: `/help` for members and managers, and
the one welcome the bot posts on joining, only where it may, never pinging anyone."""

from __future__ import annotations

import asyncio

import pytest

from emulators.discord_emulator import Permission
from emulators.discord_emulator.world import Guild
from tests.harness.e2e import World

MEMBER_COMMANDS = ("/edit", "/jobs", "/loras", "/presets", "/quota", "/sweep")


async def help_text(world: World, member: str) -> str:
    emu = world.emu
    ix = await emu.slash(emu.member(member), emu.channel("general"), "help")
    text = await world.reply_text(ix)
    assert ix.ephemeral
    assert ix.original is not None and ix.original.mentions == []
    return text


async def test_help_shows_a_member_their_commands_with_an_example_each(world: World) -> None:
    text = await help_text(world, "alice")
    assert text.startswith("**FLUX.2 LoRA edit bot**: edit your images")
    lines = text.splitlines()
    for command in MEMBER_COMMANDS:
        [at] = [i for i, line in enumerate(lines) if line.startswith(f"`{command}`: ")]
        assert lines[at + 1].startswith("  e.g. "), command  # a worked example under each
        assert command in lines[at + 1]
    assert "Message menu **Edit with FLUX.2 LoRA…**" in text
    assert "The LoRAs you can use are in `/loras`; what you have left of your quota is in" in text
    assert "/admin" not in text and "`/help`" not in text


@pytest.mark.parametrize("member", ["carol", "dave"], ids=["manage-server", "manager-role"])
async def test_help_shows_managers_admin_too(world: World, member: str) -> None:
    await world.set_settings(manager_roles=[world.emu.role("Manager").id])
    text = await help_text(world, member)
    assert "**Managing the bot** (you can use `/admin`)" in text
    assert "`/admin setup`: what is configured and what is missing" in text
    assert "`/admin settings alerts channel:#mods`" in text
    assert "`/admin usage`: spend per member" in text  # the last line still fits
    assert "`/edit`: " in text  # and the member commands, like everyone


# ---------------------------------------------------------------------------- the welcome


async def joined(world: World, guild: Guild) -> None:
    """Wait (no sleep) until the bot has handled its join: an interaction sent after the
    GUILD_CREATE is answered after it, then every event handler it started has ended."""
    emu = world.emu
    ix = await emu.slash(emu.member("carol", guild), emu.channel("general", guild), "help")
    await world.reply_text(ix)
    current = asyncio.current_task()
    busy = [
        task
        for task in asyncio.all_tasks()
        if task is not current and task.get_name().startswith("discord.py: ")
    ]
    await asyncio.gather(*busy, return_exceptions=True)


def posted(world: World, guild: Guild) -> dict[str, list[str]]:
    """Messages the bot posted in the guild, by channel name."""
    return {
        channel.name: [m.content for m in world.emu.messages_in(channel)]
        for channel in guild.channels.values()
        if world.emu.messages_in(channel)
    }


async def test_joining_a_server_posts_one_welcome_in_its_system_channel(world: World) -> None:
    emu = world.emu
    guild = emu.add_guild("New Server", system_channel="general")
    welcome = await emu.wait_for_message(emu.channel("general", guild))
    assert welcome.author_id == emu.bot_user.id
    assert "To set me up, a member with **Manage Server**" in welcome.content
    assert "runs `/admin setup`" in welcome.content and "`/help`" in welcome.content
    assert welcome.mentions == []
    assert welcome.allowed_mentions is not None and welcome.allowed_mentions["parse"] == []
    await joined(world, guild)
    assert posted(world, guild) == {"general": [welcome.content]}  # once, nowhere else


@pytest.mark.parametrize(
    ("system_channel", "deny"),
    [
        ("read-only", 0),  # the bot is denied Send Messages there
        ("general", int(Permission.VIEW_CHANNEL)),
        ("general", int(Permission.SEND_MESSAGES)),
        (None, 0),
    ],
    ids=["no-send-in-read-only", "no-view", "no-send", "no-system-channel"],
)
async def test_no_welcome_where_the_bot_may_not_post(
    world: World, system_channel: str | None, deny: int
) -> None:
    emu = world.emu
    guild = emu.add_guild("Quiet Server", system_channel=system_channel, join=False)
    if deny:
        emu.set_overwrite(emu.channel("general", guild), emu.world.bot_member(guild), deny=deny)
    emu.join_guild(guild)
    await joined(world, guild)
    assert posted(world, guild) == {}
    refused = [r for r in emu.requests if r.status >= 400 and "/channels/" in r.path]
    assert refused == []  # it did not even try
