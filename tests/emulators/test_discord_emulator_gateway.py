"""The emulator's gateway: the raw protocol, READY/GUILD_CREATE, echoes, RESUME, restarts."""

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest

from emulators.discord_emulator import DiscordEmulator, EmulatorError, Permission
from emulators.discord_emulator.tinybot import TinyBot, make_tiny_bot

ROOT = Path(__file__).resolve().parents[2]


def with_ping(bot: TinyBot) -> TinyBot:
    @bot.tree.command(description="Reply pong")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pong")

    return bot


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await ws.receive(timeout=5)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return json.loads(message.data)


# ---------------------------------------------------------------- the raw protocol


async def test_hello_heartbeat_and_token_check(discord_emulator: DiscordEmulator) -> None:
    emu = discord_emulator
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(emu.gateway_url + "?v=10&encoding=json") as ws:
            hello = await receive(ws)
            assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] > 0
            await ws.send_json({"op": 1, "d": None})
            assert (await receive(ws))["op"] == 11
            identify = {"token": "wrong", "properties": {}, "intents": 513}
            await ws.send_json({"op": 2, "d": identify})
            closing = await ws.receive(timeout=5)
            assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 4004

        async with session.ws_connect(emu.gateway_url) as ws:
            await receive(ws)
            identify = {"token": emu.token, "properties": {}, "intents": 513}
            await ws.send_json({"op": 2, "d": identify})
            ready = await receive(ws)
            assert (ready["t"], ready["s"]) == ("READY", 1)
            assert ready["d"]["user"]["id"] == str(emu.bot_user.id)
            assert ready["d"]["resume_gateway_url"].endswith("/gateway-resume")
            created = await receive(ws)
            assert created["t"] == "GUILD_CREATE" and created["s"] == 2
            # Without the members intent only the bot's own member comes along.
            assert [m["user"]["id"] for m in created["d"]["members"]] == [str(emu.bot_user.id)]
            assert created["d"]["member_count"] == len(emu.guild.members)

        async with session.ws_connect(emu.gateway_url) as ws:
            await receive(ws)
            await ws.send_json({"op": 6, "d": {"token": emu.token, "session_id": "gone", "seq": 3}})
            assert await receive(ws) == {"op": 9, "d": False}


# ---------------------------------------------------------------- with a real client


async def test_ready_builds_the_default_world(discord_emulator: DiscordEmulator) -> None:
    emu = discord_emulator
    bot = await emu.start_bot(make_tiny_bot())
    assert bot.user is not None and bot.user.id == emu.bot_user.id
    guild = bot.get_guild(emu.guild.id)
    assert guild is not None and guild.name == "Test Server"
    assert sorted(c.name for c in guild.text_channels) == [
        "general",
        "no-attach",
        "nsfw",
        "read-only",
    ]
    nsfw = guild.get_channel(emu.channel("nsfw").id)
    assert isinstance(nsfw, discord.TextChannel) and nsfw.is_nsfw()
    roles = {r.name: r.permissions for r in guild.roles}
    assert roles["Admin"].manage_guild and not roles["Manager"].manage_guild
    assert roles["Mod"].manage_messages
    everyone = roles["@everyone"]
    assert everyone.send_messages and everyone.attach_files and everyone.use_application_commands
    assert emu.bot_intents == discord.Intents.default().value


async def test_members_intent_gets_every_member(discord_emulator: DiscordEmulator) -> None:
    emu = discord_emulator
    intents = discord.Intents.default()
    intents.members = True
    bot = await emu.start_bot(make_tiny_bot(intents=intents))
    guild = bot.get_guild(emu.guild.id)
    assert guild is not None and guild.chunked
    assert sorted(m.name for m in guild.members) == sorted(
        m.name for m in emu.guild.members.values()
    )
    carol = guild.get_member(emu.member("carol").id)
    assert carol is not None and carol.guild_permissions.manage_guild


async def test_privileged_intents_can_be_refused(discord_emulator: DiscordEmulator) -> None:
    emu = discord_emulator
    emu.hub.allowed_intents = 0
    intents = discord.Intents.default()
    intents.message_content = True
    with pytest.raises(EmulatorError, match="PrivilegedIntentsRequired"):
        await emu.start_bot(make_tiny_bot(intents=intents))


async def test_own_messages_are_echoed_and_content_needs_the_intent(
    discord_emulator: DiscordEmulator,
) -> None:
    emu = discord_emulator
    bot = await emu.start_bot(make_tiny_bot())
    assert isinstance(bot, TinyBot)
    channel = bot.get_channel(emu.channel("general").id)
    assert isinstance(channel, discord.TextChannel)
    sent = await channel.send("mine")
    echoed = await bot.next("message")
    assert echoed.id == sent.id and echoed.content == "mine"
    emu.post_user_message("alice", emu.channel("general"), "theirs")
    theirs = await bot.next("message")
    assert theirs.author.id == emu.member("alice").id and theirs.content == ""

    intents = discord.Intents.default()
    intents.message_content = True
    bot = await emu.restart_bot(lambda: make_tiny_bot(intents=intents))
    assert isinstance(bot, TinyBot)
    emu.post_user_message("alice", emu.channel("general"), "visible now")
    assert (await bot.next("message")).content == "visible now"


async def test_dropped_connection_resumes_and_replays_missed_events(
    discord_emulator: DiscordEmulator,
) -> None:
    emu = discord_emulator
    bot = await emu.start_bot(with_ping(make_tiny_bot()))
    assert isinstance(bot, TinyBot)
    session = await emu.wait_connected()
    assert await emu.drop_gateway() == 1
    # Sent while no connection is open: Discord keeps it for the RESUME.
    ix = await emu.slash(emu.member("alice"), emu.channel("general"), "ping")
    resumed = await emu.wait_for("resume")
    assert resumed is session and session.resumes == 1
    assert (await ix.response()).message is not None
    assert await bot.next("resumed") is True
    assert session.connection is not None and session.connection.path == "/gateway-resume"
    assert emu.hub.identifies == 1


async def test_invalid_session_makes_the_client_identify_again(
    discord_emulator: DiscordEmulator,
) -> None:
    emu = discord_emulator
    await emu.start_bot(with_ping(make_tiny_bot()))
    first = await emu.wait_connected()
    mark = emu.mark()
    await emu.invalidate_session()
    second = await emu.wait_for("identify", since=mark)
    assert second is not first and not first.resumable
    ix = await emu.slash(emu.member("alice"), emu.channel("general"), "ping")
    assert (await ix.response()).message is not None


async def test_restart_keeps_emulator_state(discord_emulator: DiscordEmulator) -> None:
    emu = discord_emulator

    class Persistent(discord.ui.View):
        def __init__(self) -> None:
            super().__init__(timeout=None)

        @discord.ui.button(label="Go", custom_id="persist:go")
        async def go(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
            await interaction.response.send_message("went", ephemeral=True)

    class Rerun(discord.ui.DynamicItem[discord.ui.Button], template=r"rerun:(?P<job>[0-9]+)"):
        def __init__(self, job: int) -> None:
            super().__init__(discord.ui.Button(label="Rerun", custom_id=f"rerun:{job}"))
            self.job = job

        @classmethod
        async def from_custom_id(
            cls, interaction: discord.Interaction, item: discord.ui.Item, match: Any
        ) -> "Rerun":
            return cls(int(match["job"]))

        async def callback(self, interaction: discord.Interaction) -> None:
            await interaction.response.send_message(f"rerun job {self.job}", ephemeral=True)

    class WithView(TinyBot):
        async def setup_hook(self) -> None:
            self.add_view(Persistent())
            self.add_dynamic_items(Rerun)
            await super().setup_hook()

    bot = await emu.start_bot(WithView(guild_ready_timeout=0.1))
    channel = bot.get_channel(emu.channel("general").id)
    assert isinstance(channel, discord.TextChannel)
    sent = await channel.send("press", view=Persistent())
    result = await channel.send("result", view=discord.ui.View().add_item(Rerun(42)))
    first_session = await emu.wait_connected()

    bot = await emu.restart_bot(lambda: WithView(guild_ready_timeout=0.1))
    assert not first_session.resumable  # a clean close ends the session
    channel = bot.get_channel(emu.channel("general").id)
    assert isinstance(channel, discord.TextChannel)
    assert (await channel.fetch_message(sent.id)).content == "press"
    ix = await emu.click(emu.member("alice"), emu.message(sent.id), "persist:go")
    await ix.response()
    assert ix.original is not None and ix.original.content == "went"
    # DynamicItem buttons (the job id in custom_id) also work on messages from before.
    ix = await emu.click(emu.member("bob"), emu.message(result.id), "rerun:42")
    await ix.response()
    assert ix.original is not None and ix.original.content == "rerun job 42"


async def test_a_bot_in_another_process(discord_emulator: DiscordEmulator) -> None:
    emu = discord_emulator
    env = os.environ | emu.bot_env()

    async def spawn() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "emulators.discord_emulator.tinybot", cwd=ROOT, env=env
        )

    first = await spawn()
    try:
        session = await emu.wait_connected(timeout=30)
        ix = await emu.slash(emu.member("alice"), emu.channel("general"), "ping")
        await ix.response()
        assert ix.original is not None and ix.original.content == f"pong from {first.pid}"
        first.send_signal(signal.SIGKILL)  # a crash: no clean close
        await first.wait()
        await emu.wait_for("disconnect", lambda s: s is session)
        assert session.resumable

        second = await spawn()
        try:
            new_session = await emu.wait_connected(timeout=30)
            assert new_session is not session and not session.resumable
            ix = await emu.slash(emu.member("alice"), emu.channel("general"), "ping")
            await ix.response()
            assert ix.original is not None and ix.original.content == f"pong from {second.pid}"
        finally:
            second.terminate()
            await second.wait()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()


async def test_a_second_guild_is_isolated(discord_emulator: DiscordEmulator) -> None:
    emu = discord_emulator
    bot = make_tiny_bot(guild_ids=(emu.guild.id,))

    @bot.tree.command(description="Only in the first guild", guild=discord.Object(emu.guild.id))
    async def local(interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"local in {interaction.guild_id}")

    await emu.start_bot(bot)
    other = emu.add_guild("Other Server", members=("alice",))
    joined = await bot.next("guild_join")  # GUILD_CREATE reached the running bot
    assert joined.id == other.id and joined.name == "Other Server"
    synced = emu.commands(emu.guild)
    assert [c["name"] for c in synced] == ["local"] and synced[0]["guild_id"] == str(emu.guild.id)
    ix = await emu.slash(emu.member("alice"), emu.channel("general"), "local")
    await ix.response()
    assert ix.payload["data"]["guild_id"] == str(emu.guild.id)
    assert ix.original is not None and ix.original.content == f"local in {emu.guild.id}"
    alice_there = emu.member("alice", other)
    with pytest.raises(EmulatorError, match="no command 'local'"):
        await emu.slash(alice_there, emu.channel("general", other), "local")
    with pytest.raises(EmulatorError, match="bob is not a member of Other Server"):
        await emu.slash(emu.member("bob"), emu.channel("general", other), "local")


@pytest.mark.parametrize(
    "system_channel", ["general", None], ids=["with-system-channel", "system-channel-off"]
)
async def test_joining_a_guild_sends_its_system_channel(
    discord_emulator: DiscordEmulator, system_channel: str | None
) -> None:
    emu = discord_emulator
    bot = make_tiny_bot()
    await emu.start_bot(bot)
    other = emu.add_guild("Joined Server", system_channel=system_channel)
    joined = await bot.next("guild_join")
    created = emu.sent_events("GUILD_CREATE")[-1]
    assert "unavailable" not in created  # a join, not an outage ending
    if system_channel is None:
        assert created["system_channel_id"] is None and joined.system_channel is None
    else:
        expected = emu.channel(system_channel, other)
        assert created["system_channel_id"] == str(expected.id)
        assert joined.system_channel is not None and joined.system_channel.id == expected.id
        me = joined.me
        assert joined.system_channel.permissions_for(me).send_messages


async def test_a_guild_can_be_changed_before_the_bot_joins(
    discord_emulator: DiscordEmulator,
) -> None:
    emu = discord_emulator
    bot = make_tiny_bot()
    await emu.start_bot(bot)
    other = emu.add_guild("Locked Server", system_channel="general", join=False)
    general = emu.channel("general", other)
    emu.set_overwrite(general, emu.world.bot_member(other), deny=Permission.VIEW_CHANNEL)
    emu.join_guild(other)
    joined = await bot.next("guild_join")
    assert joined.system_channel is not None
    perms = joined.system_channel.permissions_for(joined.me)
    assert not perms.view_channel and not perms.send_messages
