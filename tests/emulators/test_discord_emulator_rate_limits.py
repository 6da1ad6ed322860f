"""The emulator's rate limits as Discord's: bucket headers on every answer, a 429 through the
proxy past the limit, and what that means for the real discord.py client of a tiny bot."""

import asyncio

import aiohttp
import discord
import pytest

from emulators.discord_emulator import DiscordEmulator
from emulators.discord_emulator.tinybot import TinyBot, make_tiny_bot

EDIT_ROUTE = "PATCH /channels/{channel}/messages/{message}"


@pytest.fixture
async def emu(discord_emulator: DiscordEmulator) -> DiscordEmulator:
    await discord_emulator.start_bot(make_tiny_bot())
    return discord_emulator


def general(emu: DiscordEmulator, name: str = "general") -> discord.TextChannel:
    bot = emu._bot
    assert isinstance(bot, TinyBot)
    channel = bot.get_channel(emu.channel(name).id)
    assert isinstance(channel, discord.TextChannel)
    return channel


async def get(session: aiohttp.ClientSession, emu: DiscordEmulator, path: str) -> dict[str, str]:
    headers = {"Authorization": f"Bot {emu.token}"}
    async with session.get(emu.api_url + path, headers=headers) as response:
        assert response.status == 200, await response.text()
        return dict(response.headers)


async def test_every_answer_says_what_is_left_of_its_bucket(emu: DiscordEmulator) -> None:
    first, second = emu.channel("general").id, emu.channel("nsfw").id
    async with aiohttp.ClientSession() as session:
        a1 = await get(session, emu, f"/channels/{first}")
        a2 = await get(session, emu, f"/channels/{first}")
        b1 = await get(session, emu, f"/channels/{second}")
        me = await get(session, emu, "/users/@me")
    limit = emu.rate_limits.default.requests
    assert a1["X-RateLimit-Limit"] == str(limit)
    assert (a1["X-RateLimit-Remaining"], a2["X-RateLimit-Remaining"]) == (
        str(limit - 1),
        str(limit - 2),
    )
    assert b1["X-RateLimit-Remaining"] == str(limit - 1), "each channel has its own bucket"
    assert a1["X-RateLimit-Bucket"] == b1["X-RateLimit-Bucket"] != me["X-RateLimit-Bucket"]
    assert 0 < float(a2["X-RateLimit-Reset-After"]) <= emu.rate_limits.default.per
    assert float(a2["X-RateLimit-Reset"]) > emu.clock.time()


async def test_past_the_limit_a_429_through_the_proxy_until_the_window_resets(
    emu: DiscordEmulator,
) -> None:
    emu.rate_limits.set("GET /channels/{channel}", 2, 60.0)
    path = f"/channels/{emu.channel('general').id}"
    headers = {"Authorization": f"Bot {emu.token}"}
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            await get(session, emu, path)
        async with session.get(emu.api_url + path, headers=headers) as refused:
            body = await refused.json()
            assert refused.status == 429
            assert refused.headers["Via"] and refused.headers["X-RateLimit-Remaining"] == "0"
            assert 0 < body["retry_after"] <= 60 and body["global"] is False
        emu.clock.advance(60)
        again = await get(session, emu, path)
    assert again["X-RateLimit-Remaining"] == "1"
    assert emu.rate_limits.refused == 1


async def test_discord_py_paces_itself_by_the_headers(emu: DiscordEmulator) -> None:
    """With Discord's own numbers for sending in a channel, every message of a burst is posted
    and the client never runs into a 429: it waits for the window it was told about."""
    emu.rate_limits.set("POST /channels/{channel}/messages", 2, 0.3)
    channel = general(emu)
    await asyncio.gather(*(channel.send(f"burst {i}") for i in range(6)))
    assert sorted(m.content for m in emu.messages_in(emu.channel("general"))) == [
        f"burst {i}" for i in range(6)
    ]
    assert emu.rate_limits.refused == 0


@pytest.mark.parametrize("limit", [None, (3, 0.05)], ids=["default limit", "a tight limit"])
async def test_a_request_cancelled_at_any_moment_never_holds_up_the_next(
    emu: DiscordEmulator, limit: tuple[int, float] | None
) -> None:
    """A bot cancels tasks that are editing a message (a member's Cancel, a throttled status
    update overtaken by a newer one). Cancelled at any moment of the edit, the next edit in
    the channel still goes out: the client knows its bucket from the headers. Without them
    discord.py's bucket could be left empty with nobody woken, holding every later edit of the
    channel for 30 s."""
    if limit is not None:
        emu.rate_limits.set(EDIT_ROUTE, *limit)
    channel = general(emu)
    message = await channel.send("status")
    for turns in range(40):
        edit = asyncio.create_task(message.edit(content=f"cancelled edit {turns}"))
        for _ in range(turns):
            await asyncio.sleep(0)  # step through the edit one event-loop turn at a time
        edit.cancel()
        await asyncio.gather(edit, return_exceptions=True)
        async with asyncio.timeout(10):  # a hang detector: the edit takes milliseconds
            await message.edit(content=f"after {turns}")
    assert emu.message(message.id).content == "after 39"
