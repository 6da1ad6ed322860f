"""The emulator's REST rules, driven through the real discord.py HTTP client of a tiny bot."""

import asyncio
import io
import time

import aiohttp
import discord
import pytest

from emulators.discord_emulator import DiscordEmulator, EmulatorError, Permission
from emulators.discord_emulator.tinybot import TinyBot, make_tiny_bot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
async def emu(discord_emulator: DiscordEmulator) -> DiscordEmulator:
    await discord_emulator.start_bot(make_tiny_bot())
    return discord_emulator


def bot_of(emu: DiscordEmulator) -> TinyBot:
    bot = emu._bot
    assert isinstance(bot, TinyBot)
    return bot


def text_channel(emu: DiscordEmulator, name: str) -> discord.TextChannel:
    channel = bot_of(emu).get_channel(emu.channel(name).id)
    assert isinstance(channel, discord.TextChannel)
    return channel


async def test_login_sequence_and_exact_json_content_type(emu: DiscordEmulator) -> None:
    first = [f"{r.method} {r.path}" for r in emu.requests[:2]]
    assert first == ["GET /users/@me", "GET /oauth2/applications/@me"]
    assert all(r.authorized for r in emu.requests)
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bot {emu.token}"}
        async with session.get(emu.api_url + "/users/@me", headers=headers) as response:
            assert response.headers["Content-Type"] == "application/json"
        async with session.get(emu.api_url + "/users/@me") as response:
            assert response.status == 401 and (await response.json())["code"] == 0


async def test_a_wrong_token_cannot_log_in(discord_emulator: DiscordEmulator) -> None:
    discord_emulator.patch_discord()
    bot = make_tiny_bot()
    try:
        with pytest.raises(discord.LoginFailure):
            await bot.login("not-the-token")
    finally:
        await bot.close()
    assert [r.status for r in discord_emulator.requests] == [401]


async def test_channel_messages_json_and_multipart_keep_the_files(emu: DiscordEmulator) -> None:
    channel = text_channel(emu, "general")
    general = emu.channel("general")
    sent = await channel.send("hello")
    seen = await emu.wait_for_message(general)
    assert seen.id == sent.id and seen.content == "hello" and seen.files == []

    image = PNG_MAGIC + b"rest-of-png"
    files = [discord.File(io.BytesIO(image), "a.png"), discord.File(io.BytesIO(b"%PDF-1"), "b.pdf")]
    sent = await channel.send("two files", files=files)
    seen = await emu.wait_for_message(general, lambda m: bool(m.files))
    assert seen.files == [("a.png", image, "image/png"), ("b.pdf", b"%PDF-1", "application/pdf")]
    assert [a.filename for a in sent.attachments] == ["a.png", "b.pdf"]
    # The bot can download what it posted (the emulator serves attachments over HTTP).
    assert await sent.attachments[0].read() == image
    upload = next(r for r in emu.requests if r.files)
    assert upload.json["content"] == "two files"


async def test_edit_fetch_history_delete(emu: DiscordEmulator) -> None:
    channel = text_channel(emu, "general")
    one = await channel.send("one")
    two = await channel.send("two")
    await one.edit(content="one, edited")
    stored = emu.message(one.id)
    assert stored.content == "one, edited" and stored.edits[0].payload["content"] == "one, edited"
    assert (await channel.fetch_message(one.id)).content == "one, edited"
    assert [m.content async for m in channel.history(limit=10)] == ["two", "one, edited"]
    await two.delete()
    assert emu.message(two.id).deleted
    with pytest.raises(discord.NotFound):
        await channel.fetch_message(two.id)


async def test_bot_without_send_or_attach_gets_403_50013(emu: DiscordEmulator) -> None:
    with pytest.raises(discord.Forbidden) as refused:
        await text_channel(emu, "read-only").send("hi")
    assert refused.value.code == 50013
    no_attach = text_channel(emu, "no-attach")
    await no_attach.send("text is fine")
    with pytest.raises(discord.Forbidden) as refused:
        await no_attach.send(file=discord.File(io.BytesIO(b"x"), "x.txt"))
    assert refused.value.code == 50013
    assert emu.messages_in(emu.channel("read-only")) == []
    assert [m.content for m in emu.messages_in(emu.channel("no-attach"))] == ["text is fine"]


async def test_permissions_follow_roles_and_overwrites(emu: DiscordEmulator) -> None:
    guild = bot_of(emu).get_guild(emu.guild.id)
    assert guild is not None
    read_only = text_channel(emu, "read-only")
    assert not read_only.permissions_for(guild.me).send_messages
    general = emu.channel("general")
    emu.set_overwrite(general, emu.role("Member"), deny=Permission.ATTACH_FILES)
    with pytest.raises(EmulatorError, match="ATTACH_FILES"):
        emu.post_user_message("alice", general, "", [emu.attachment(b"x", "x.txt")])
    emu.set_overwrite(general, emu.member("alice"), allow=Permission.ATTACH_FILES)
    emu.post_user_message("alice", general, "", [emu.attachment(b"x", "x.txt")])


async def test_upload_over_the_channel_limit_gets_413_40005(emu: DiscordEmulator) -> None:
    emu.guild.upload_limit = 100
    channel = text_channel(emu, "general")
    with pytest.raises(discord.HTTPException) as refused:
        await channel.send(file=discord.File(io.BytesIO(b"x" * 101), "big.bin"))
    assert (refused.value.status, refused.value.code) == (413, 40005)
    await channel.send(file=discord.File(io.BytesIO(b"x" * 100), "fits.bin"))


async def test_enforced_nonce_deduplicates_within_the_window(emu: DiscordEmulator) -> None:
    channel = text_channel(emu, "general")
    first = await channel.send("result", nonce="job-42")
    again = await channel.send("result", nonce="job-42")
    assert again.id == first.id
    assert len(emu.messages_in(emu.channel("general"))) == 1
    emu.clock.advance(emu.nonce_window + 1)
    later = await channel.send("result", nonce="job-42")
    assert later.id != first.id
    with pytest.raises(discord.HTTPException) as refused:
        await channel.send("x", nonce="n" * 26)
    assert refused.value.code == 50035


async def test_429_with_via_is_retried_without_via_is_not(emu: DiscordEmulator) -> None:
    channel = text_channel(emu, "general")
    rule = emu.fail_next("POST", r"^/channels/\d+/messages$", retry_after=0.05)
    sent = await channel.send("after a 429")
    assert rule.hits == 1 and emu.message(sent.id).content == "after a 429"
    statuses = [r.status for r in emu.requests if r.method == "POST" and "/messages" in r.path]
    assert statuses == [429, 200]

    emu.fail_next("POST", r"/messages$", via=False)
    with pytest.raises(discord.HTTPException) as refused:
        await channel.send("cloudflare says no")
    assert refused.value.status == 429

    emu.fail_next("*", r".", retry_after=0.05, global_=True)
    await channel.send("after a global 429")


async def test_500_is_retried(emu: DiscordEmulator) -> None:
    rule = emu.fail_next("POST", r"/messages$", status=500)
    started = time.monotonic()
    await text_channel(emu, "general").send("after a 500")
    assert rule.hits == 1
    assert time.monotonic() - started >= 1  # discord.py's own back-off, not ours


async def test_unknown_routes_answer_404_and_are_named(emu: DiscordEmulator) -> None:
    guild = bot_of(emu).get_guild(emu.guild.id)
    assert guild is not None
    with pytest.raises(discord.NotFound):
        await guild.fetch_emojis()
    assert emu.unknown_routes == [f"GET /guilds/{emu.guild.id}/emojis"]


async def test_reactions_by_bot_and_members(emu: DiscordEmulator) -> None:
    bot = bot_of(emu)
    sent = await text_channel(emu, "general").send("react to me")
    await bot.next("message")  # the gateway echo put it in the bot's cache
    await sent.add_reaction("🔁")
    stored = emu.message(sent.id)
    assert stored.reactions == {"🔁": {emu.bot_user.id}}

    alice = emu.member("alice")
    await emu.react(alice, stored, "🔁")
    raw = await bot.next("raw_reaction_add")
    while raw.user_id != alice.id:
        raw = await bot.next("raw_reaction_add")
    assert str(raw.emoji) == "🔁" and raw.member is not None and raw.member.id == alice.id
    reaction, user = await bot.next("reaction_add")
    while user.id != alice.id:
        reaction, user = await bot.next("reaction_add")
    assert reaction.count == 2 and reaction.me

    await sent.remove_reaction("🔁", discord.Object(alice.id))  # Manage Messages
    assert stored.reactions == {"🔁": {emu.bot_user.id}}
    assert (await bot.next("raw_reaction_remove")).user_id == alice.id

    await emu.react(alice, stored, "👍")
    await emu.unreact(alice, stored, "👍")
    assert "👍" not in stored.reactions

    emu.set_overwrite(emu.channel("general"), emu.bot_user, deny=Permission.ADD_REACTIONS)
    with pytest.raises(discord.Forbidden):
        await sent.add_reaction("🎉")
    await emu.react(alice, stored, "🎉")
    await sent.add_reaction("🎉")  # joining an existing reaction needs no Add Reactions


async def test_direct_messages(emu: DiscordEmulator) -> None:
    bot = bot_of(emu)
    alice = emu.member("alice")
    user = await bot.fetch_user(alice.id)
    await user.send("psst")
    message = await emu.wait_for_message(emu.dm_channel(alice))
    assert message.content == "psst" and message.guild_id is None
    emu.close_dms(emu.member("bob"))
    bob = await bot.fetch_user(emu.member("bob").id)
    with pytest.raises(discord.Forbidden) as refused:
        await bob.send("psst")
    assert refused.value.code == 50007


async def test_mentions_follow_allowed_mentions(emu: DiscordEmulator) -> None:
    channel = text_channel(emu, "general")
    alice = emu.member("alice")
    loud = await channel.send(f"hi {alice.mention} @everyone")
    assert emu.message(loud.id).mentions == [alice.id] and emu.message(loud.id).mention_everyone
    quiet = await channel.send(
        f"hi {alice.mention}", allowed_mentions=discord.AllowedMentions.none()
    )
    assert emu.message(quiet.id).mentions == []
    assert emu.message(quiet.id).allowed_mentions == {
        "parse": [],
        "users": [],
        "roles": [],
        "replied_user": False,
    }


async def test_replies_reference_existing_messages(emu: DiscordEmulator) -> None:
    channel = text_channel(emu, "general")
    posted = emu.post_user_message("alice", emu.channel("general"), "make it blue")
    target = await channel.fetch_message(posted.id)
    reply = await target.reply("done", mention_author=False)
    stored = emu.message(reply.id)
    assert stored.reference is not None and stored.reference["message_id"] == str(posted.id)
    assert stored.type == 19 and stored.mentions == []
    emu.state.delete_message(posted)
    with pytest.raises(discord.HTTPException) as refused:
        await target.reply("too late")
    assert refused.value.code == 50035


async def test_editing_or_deleting_others_messages(emu: DiscordEmulator) -> None:
    channel = text_channel(emu, "general")
    posted = emu.post_user_message("alice", emu.channel("general"), "mine")
    message = await channel.fetch_message(posted.id)
    with pytest.raises(discord.Forbidden) as refused:
        await message.edit(content="hacked")
    assert refused.value.code == 50005
    bot_role = emu.guild.role(emu.bot_user.username)
    emu.set_role_permissions(bot_role, bot_role.permissions & ~Permission.MANAGE_MESSAGES)
    with pytest.raises(discord.Forbidden):
        await message.delete()
    emu.set_role_permissions(bot_role, bot_role.permissions | Permission.MANAGE_MESSAGES)
    await message.delete()
    assert posted.deleted


async def test_embeds_components_edits_and_typing(emu: DiscordEmulator) -> None:
    channel = text_channel(emu, "general")
    view = discord.ui.View()
    view.add_item(discord.ui.Button(label="Rerun", custom_id="rerun:1"))
    sent = await channel.send(embed=discord.Embed(title="Recipe", description="seed 7"), view=view)
    stored = await emu.wait_for_message(emu.channel("general"))
    assert stored.embeds[0]["title"] == "Recipe" and stored.custom_ids() == ["rerun:1"]

    async def edit_later() -> None:
        await sent.edit(embed=discord.Embed(title="Recipe", description="seed 8"))

    task = asyncio.create_task(edit_later())
    edited = await emu.wait_for_edit(stored, lambda m: m.embeds[0]["description"] == "seed 8")
    await task
    assert edited is stored and edited.edits[0].payload["embeds"][0]["description"] == "seed 8"

    with pytest.raises(discord.HTTPException) as refused:
        await channel.send(embed=discord.Embed(title="t" * 257))
    assert refused.value.code == 50035 and "256 or fewer" in str(refused.value)

    async with channel.typing():
        pass
    assert await emu.wait_for("typing") is emu.channel("general")


async def test_command_sync_is_validated(emu: DiscordEmulator) -> None:
    bot = bot_of(emu)
    too_many = [{"name": f"c{i}", "value": str(i)} for i in range(26)]
    command = {
        "name": "pick",
        "description": "Pick",
        "options": [{"type": 3, "name": "x", "description": "x", "choices": too_many}],
    }
    with pytest.raises(discord.HTTPException) as refused:
        await bot.http.bulk_upsert_global_commands(emu.application_id, [command])
    assert refused.value.code == 50035
    command["options"][0]["choices"] = too_many[:25]
    stored = await bot.http.bulk_upsert_global_commands(emu.application_id, [command])
    assert [c["name"] for c in stored] == ["pick"] and stored[0]["id"]
    again = await bot.http.bulk_upsert_global_commands(emu.application_id, [command])
    assert again[0]["id"] == stored[0]["id"]  # an overwrite keeps the id of a same-named command


async def test_messages_in_channels_the_bot_cannot_see_are_not_dispatched(
    emu: DiscordEmulator,
) -> None:
    hidden = emu.add_channel(emu.guild, "staff")
    emu.set_overwrite(hidden, emu.bot_user, deny=Permission.VIEW_CHANNEL)
    posted = emu.post_user_message("alice", hidden, "secret plans")
    visible = emu.post_user_message("alice", emu.channel("general"), "hello")
    seen = await bot_of(emu).next("message")
    assert seen.id == visible.id
    assert str(posted.id) not in [d["id"] for d in emu.sent_events("MESSAGE_CREATE")]
    with pytest.raises(discord.Forbidden) as refused:
        await bot_of(emu).http.get_message(hidden.id, posted.id)
    assert refused.value.code == 50001
