"""The emulator shards as Discord does: GET /gateway/bot, IDENTIFY with `shard`, guilds and their
events only on the owning shard, close codes 4010 and 4011, and a real AutoShardedBot."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import discord
import httpx
import pytest

from emulators.discord_emulator import DiscordEmulator, Guild
from emulators.discord_emulator.tinybot import TinyBot, make_tiny_bot

# GUILDS | GUILD_MESSAGES | GUILD_MESSAGE_REACTIONS | DIRECT_MESSAGES
INTENTS = 1 | 1 << 9 | 1 << 10 | 1 << 12


def other_shard_guild(emu: DiscordEmulator) -> Guild:
    """A second server on the other shard of two from the default one."""
    return emu.add_guild("Second Server", shard=(1 - emu.shard_of(emu.guild, 2), 2))


def by_shard(emu: DiscordEmulator, *guilds: Guild) -> dict[int, Guild]:
    return {emu.shard_of(g, 2): g for g in guilds}


async def gateway_bot(emu: DiscordEmulator) -> dict[str, Any]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bot {emu.token}"}) as http:
        answer = await http.get(emu.api_url + "/gateway/bot")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    body: dict[str, Any] = answer.json()
    return body


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await ws.receive(timeout=5)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    frame: dict[str, Any] = json.loads(message.data)
    return frame


async def next_dispatch(ws: aiohttp.ClientWebSocketResponse, event: str) -> dict[str, Any]:
    while True:
        frame = await receive(ws)
        if frame["op"] == 0 and frame["t"] == event:
            data: dict[str, Any] = frame["d"]
            return data


async def close_code(emu: DiscordEmulator, shard: Any) -> int:
    """Identify with `shard` (left out when None); the close code, or 0 if READY came."""
    async with aiohttp.ClientSession() as session, session.ws_connect(emu.gateway_url) as ws:
        await receive(ws)  # HELLO
        identify: dict[str, Any] = {"token": emu.token, "properties": {}, "intents": 1}
        if shard is not None:
            identify["shard"] = shard
        await ws.send_json({"op": 2, "d": identify})
        message = await ws.receive(timeout=5)
        if message.type == aiohttp.WSMsgType.CLOSE:
            return int(message.data)
        assert json.loads(message.data)["t"] == "READY"
        return 0


@asynccontextmanager
async def shard_connection(
    emu: DiscordEmulator, shard: list[int]
) -> AsyncIterator[tuple[aiohttp.ClientWebSocketResponse, list[dict[str, Any]]]]:
    """An identified raw connection for `shard`: (socket, [READY, GUILD_CREATE...])."""
    async with aiohttp.ClientSession() as session, session.ws_connect(emu.gateway_url) as ws:
        await receive(ws)  # HELLO
        identify = {"token": emu.token, "properties": {}, "intents": INTENTS, "shard": shard}
        await ws.send_json({"op": 2, "d": identify})
        ready = await receive(ws)
        assert ready["t"] == "READY"
        opening = [ready["d"]]
        for _ in ready["d"]["guilds"]:
            created = await receive(ws)
            assert created["t"] == "GUILD_CREATE"
            opening.append(created["d"])
        yield ws, opening


# ---------------------------------------------------------------- GET /gateway/bot


async def test_gateway_bot_recommends_shards_and_counts_session_starts(
    discord_emulator: DiscordEmulator,
) -> None:
    emu = discord_emulator
    first = await gateway_bot(emu)
    assert first["url"] == emu.gateway_url
    assert first["shards"] == 1  # one server needs one shard
    assert first["session_start_limit"] == {
        "total": 1000,
        "remaining": 1000,
        "reset_after": 0,
        "max_concurrency": 1,
    }
    assert await close_code(emu, None) == 0  # an IDENTIFY starts a session
    limit = (await gateway_bot(emu))["session_start_limit"]
    assert limit["remaining"] == 999
    assert 0 < limit["reset_after"] <= 24 * 3600 * 1000  # the day's window, in milliseconds

    emu.recommended_shards = 3
    emu.max_concurrency = 16
    again = await gateway_bot(emu)
    assert again["shards"] == 3
    assert again["session_start_limit"]["max_concurrency"] == 16


async def test_the_session_start_limit_ends_every_session(
    discord_emulator: DiscordEmulator,
) -> None:
    """Discord resets the token of a bot that starts more sessions than `total`."""
    emu = discord_emulator
    emu.hub.session_start_total = 2
    assert await close_code(emu, [0, 2]) == 0
    assert await close_code(emu, [1, 2]) == 0
    assert (await gateway_bot(emu))["session_start_limit"]["remaining"] == 0
    assert await close_code(emu, [0, 2]) == 4004
    emu.clock.advance(24 * 3600)  # the window resets
    assert (await gateway_bot(emu))["session_start_limit"]["remaining"] == 2
    assert await close_code(emu, [0, 2]) == 0


# ---------------------------------------------------------------- IDENTIFY with a shard


@pytest.mark.parametrize("shard_id", [0, 1], ids=["shard-0", "shard-1"])
async def test_ready_and_guild_create_carry_only_the_shards_guilds(
    discord_emulator: DiscordEmulator, shard_id: int
) -> None:
    emu = discord_emulator
    mine = by_shard(emu, emu.guild, other_shard_guild(emu))[shard_id]
    async with shard_connection(emu, [shard_id, 2]) as (_ws, opening):
        ready, *created = opening
    assert ready["shard"] == [shard_id, 2]
    assert ready["guilds"] == [{"id": str(mine.id), "unavailable": True}]
    assert [g["id"] for g in created] == [str(mine.id)]
    assert created[0]["name"] == mine.name


@pytest.mark.parametrize(
    "shard",
    [[2, 2], [-1, 2], [0, 0], [0], [0, 1, 2], "0,1", [True, 2], ["0", "2"]],
    ids=["id-equals-count", "negative-id", "zero-shards", "one-number", "three-numbers",
         "a-string", "a-boolean", "strings"],
)  # fmt: skip
async def test_an_invalid_shard_closes_4010(discord_emulator: DiscordEmulator, shard: Any) -> None:
    assert await close_code(discord_emulator, shard) == 4010


async def test_too_many_guilds_on_one_shard_closes_4011(discord_emulator: DiscordEmulator) -> None:
    emu = discord_emulator
    emu.max_guilds_per_shard = 1
    other_shard_guild(emu)
    assert (await gateway_bot(emu))["shards"] == 2  # what the bot needs
    assert await close_code(emu, None) == 4011  # unsharded: both servers on one session
    assert await close_code(emu, [0, 1]) == 4011
    assert await close_code(emu, [0, 2]) == 0
    assert await close_code(emu, [1, 2]) == 0


# ---------------------------------------------------------------- events go to the owning shard


async def test_events_reach_only_the_shard_that_owns_the_guild(
    discord_emulator: DiscordEmulator,
) -> None:
    emu = discord_emulator
    emu.strict_commands = False  # raw clients register no commands
    guilds = by_shard(emu, emu.guild, other_shard_guild(emu))
    async with shard_connection(emu, [0, 2]) as (ws0, _), shard_connection(emu, [1, 2]) as (ws1, _):
        sockets = {0: ws0, 1: ws1}
        for shard_id, guild in guilds.items():
            other = 1 - shard_id
            alice, general = emu.member("alice", guild), emu.channel("general", guild)
            ix = await emu.slash(alice, general, "ping", {})
            got = await next_dispatch(sockets[shard_id], "INTERACTION_CREATE")
            assert got["id"] == str(ix.id) and got["guild_id"] == str(guild.id)
            message = emu.post_user_message(alice, general, "hello")
            posted = await next_dispatch(sockets[shard_id], "MESSAGE_CREATE")
            assert posted["id"] == str(message.id)
            await emu.react(alice, message, "🔁")
            reaction = await next_dispatch(sockets[shard_id], "MESSAGE_REACTION_ADD")
            assert reaction["message_id"] == str(message.id)
            # The other shard's session was sent none of it.
            elsewhere = emu.sent_events(shard=other)
            assert all(e.get("guild_id") != str(guild.id) for e in elsewhere)
            assert str(ix.id) not in {e.get("id") for e in elsewhere}

        # A direct message belongs to no guild: shard 0 hears it, shard 1 does not.
        alice = emu.member("alice")
        dm = emu.post_user_message(alice, emu.dm_channel(alice), "psst")
        assert (await next_dispatch(ws0, "MESSAGE_CREATE"))["id"] == str(dm.id)
        assert str(dm.id) not in {e.get("id") for e in emu.sent_events(shard=1)}


async def test_a_guild_joined_later_goes_to_its_shard(discord_emulator: DiscordEmulator) -> None:
    emu = discord_emulator
    async with shard_connection(emu, [0, 2]) as (ws0, _), shard_connection(emu, [1, 2]):
        joined = emu.add_guild("Third Server", shard=(0, 2))
        created = await next_dispatch(ws0, "GUILD_CREATE")
        assert created["id"] == str(joined.id)
        assert str(joined.id) not in {e["id"] for e in emu.sent_events("GUILD_CREATE", shard=1)}


# ---------------------------------------------------------------- discord.py's AutoShardedBot


def with_ping(bot: TinyBot) -> TinyBot:
    @bot.tree.command(description="Reply pong")
    async def ping(interaction: discord.Interaction) -> None:
        assert interaction.guild is not None
        await interaction.response.send_message(f"pong from shard {interaction.guild.shard_id}")

    return bot


async def test_an_auto_sharded_bot_runs_the_recommended_shards(
    discord_emulator: DiscordEmulator,
) -> None:
    emu = discord_emulator
    guilds = by_shard(emu, emu.guild, other_shard_guild(emu))
    emu.recommended_shards = 2
    bot = with_ping(make_tiny_bot(sharded=True))
    await emu.start_bot(bot)
    assert isinstance(bot, discord.AutoShardedClient)
    assert bot.shard_count == 2 and sorted(bot.shards) == [0, 1]
    assert sorted(str(s.shard) for s in emu.hub.sessions) == ["[0, 2]", "[1, 2]"]
    assert len(bot.latencies) == 2
    for shard_id, guild in guilds.items():
        seen = bot.get_guild(guild.id)
        assert seen is not None and seen.shard_id == shard_id
        ix = await emu.slash(emu.member("alice", guild), emu.channel("general", guild), "ping")
        answer = await ix.response()
        assert (answer.data or {}).get("content") == f"pong from shard {shard_id}"
        bob, general = emu.member("bob", guild), emu.channel("general", guild)
        message = emu.post_user_message(bob, general, "hi")
        await emu.react(bob, message, "🔁")
        raw = await bot.next("raw_reaction_add")
        assert (raw.guild_id, raw.message_id) == (guild.id, message.id)
    assert not bot.errors
    await emu.stop_bot()
    assert all(s.connection is None for s in emu.hub.sessions)  # every shard closed cleanly
