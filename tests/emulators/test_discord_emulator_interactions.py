"""The emulator's interaction rules, proven with a tiny discord.py bot (not our cogs)."""

import asyncio
import hashlib
import io

import aiohttp
import discord
import pytest
from discord import app_commands
from PIL import Image

from emulators.discord_emulator import DiscordEmulator, EmulatorError, InteractionFailed, Permission
from emulators.discord_emulator.tinybot import TinyBot, make_tiny_bot


def png(width: int = 8, height: int = 6, color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


class Counter(discord.ui.View):
    """Persistent (timeout=None, fixed custom ids): works on any message, even after a restart."""

    def __init__(self) -> None:
        super().__init__(timeout=None)
        self.count = 0

    @discord.ui.button(label="Add", custom_id="count:add")
    async def add(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.count += 1
        await interaction.response.edit_message(content=f"count {self.count}")

    @discord.ui.button(label="Later", custom_id="count:later")
    async def later(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.defer()
        await interaction.edit_original_response(content="edited later")

    @discord.ui.select(
        custom_id="count:pick",
        max_values=2,
        options=[discord.SelectOption(label=x, value=x) for x in ("a", "b", "c")],
    )
    async def pick(self, interaction: discord.Interaction, select: discord.ui.Select) -> None:
        await interaction.response.send_message("picked " + ",".join(select.values), ephemeral=True)


class Feedback(discord.ui.Modal, title="Feedback"):
    text = discord.ui.TextInput(label="Text", custom_id="fb:text")
    mood = discord.ui.TextInput(label="Mood", custom_id="fb:mood", required=False, default="ok")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(
            f"got {self.text.value} / {self.mood.value}", ephemeral=True
        )


def build_bot() -> TinyBot:
    bot = make_tiny_bot()
    bot.gate = asyncio.Event()  # type: ignore[attr-defined]
    tree = bot.tree

    @tree.command(description="Reply pong")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pong")

    @tree.command(description="Echo typed options")
    async def types(
        interaction: discord.Interaction,
        count: int,
        ratio: float,
        flag: bool,
        who: discord.Member,
        role: discord.Role,
        where: discord.TextChannel,
        image: discord.Attachment,
        note: str = "none",
    ) -> None:
        data = await image.read()
        bot.record(
            "types",
            {
                "values": (count, ratio, flag, who.name, role.name, where.name, note),
                "who_roles": sorted(r.name for r in who.roles),
                "image": (image.filename, image.size, image.content_type, image.width),
                "sha": hashlib.sha256(data).hexdigest(),
                "manage_guild": interaction.permissions.manage_guild,
                "attach": interaction.app_permissions.attach_files,
                "limit": interaction.filesize_limit,
            },
        )
        await interaction.response.send_message(f"{count} {ratio} {flag} {who.name}")

    admin = app_commands.Group(
        name="admin",
        description="Admin",
        default_permissions=discord.Permissions(manage_guild=True),
    )
    lora = app_commands.Group(name="lora", description="LoRAs", parent=admin)

    @lora.command(name="add", description="Add a LoRA")
    async def lora_add(interaction: discord.Interaction, name: str, scale: float = 1.0) -> None:
        await interaction.response.send_message(f"added {name} at {scale}")

    tree.add_command(admin)

    @tree.command(description="Age-restricted", nsfw=True)
    async def spicy(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("spicy")

    @tree.command(description="Pick a fruit")
    async def pick(interaction: discord.Interaction, fruit: str, many: bool = False) -> None:
        await interaction.response.send_message(fruit)

    @pick.autocomplete("fruit")
    async def fruit_choices(interaction: discord.Interaction, current: str) -> list:
        if interaction.namespace.many:
            return [app_commands.Choice(name=f"f{i}", value=f"f{i}") for i in range(26)]
        fruits = ["apple", "apricot", "banana", "cherry"]
        return [app_commands.Choice(name=f, value=f) for f in fruits if f.startswith(current)]

    @tree.command(description="Post a counter")
    async def counter(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("count 0", view=Counter())

    @tree.command(description="Open a modal")
    async def feedback(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(Feedback())

    @tree.context_menu(name="Count images")
    async def count_images(interaction: discord.Interaction, message: discord.Message) -> None:
        try:
            sizes = [len(await a.read()) for a in message.attachments]
        except discord.HTTPException as error:
            await interaction.response.send_message(f"expired {error.status}", ephemeral=True)
            return
        await interaction.response.send_message(f"{len(sizes)} images {sizes}", ephemeral=True)

    @tree.command(description="Answer after the gate opens")
    async def slow(interaction: discord.Interaction) -> None:
        await bot.gate.wait()  # type: ignore[attr-defined]
        try:
            await interaction.response.send_message("late")
        except discord.HTTPException as error:
            bot.record("slow_error", error)

    @tree.command(description="Answer twice")
    async def twice(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("first")
        # discord.py refuses a second response locally; clear its flag so Discord (here) judges.
        interaction.response._response_type = None
        try:
            await interaction.response.send_message("second")
        except discord.HTTPException as error:
            bot.record("twice_error", error)

    @tree.command(description="Defer, then follow up")
    async def think(
        interaction: discord.Interaction, hidden: bool = False, then_hidden: bool = False
    ) -> None:
        await interaction.response.defer(ephemeral=hidden, thinking=True)
        await interaction.followup.send("first", ephemeral=then_hidden)
        await interaction.followup.send("second", ephemeral=then_hidden)

    @tree.command(description="Defer, wait for the gate, follow up")
    async def wait(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await bot.gate.wait()  # type: ignore[attr-defined]
        try:
            await interaction.followup.send("after the gate")
        except discord.HTTPException as error:
            bot.record("wait_error", error)

    @tree.command(description="Original and follow-up lifecycle")
    async def lifecycle(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("v1")
        original = await interaction.original_response()
        bot.record("original", original.content)
        await interaction.edit_original_response(content="v2")
        extra = await interaction.followup.send("f1", wait=True)
        await extra.edit(content="f1 edited")
        fetched = await interaction.followup.fetch_message(extra.id)
        bot.record("followup", fetched.content)
        await interaction.delete_original_response()
        await extra.delete()

    @tree.command(description="Upload a blob")
    async def upload(interaction: discord.Interaction, size: int) -> None:
        await interaction.response.defer(thinking=True)
        bot.record("limit", interaction.filesize_limit)
        try:
            await interaction.followup.send(file=discord.File(io.BytesIO(b"x" * size), "blob.bin"))
        except discord.HTTPException as error:
            bot.record("upload_error", error)
            await interaction.followup.send(f"failed {error.status}/{error.code}")

    @tree.command(description="Say where it ran")
    @app_commands.allowed_contexts(guilds=True, dms=True)
    async def where(interaction: discord.Interaction) -> None:
        place = "dm" if interaction.guild is None else interaction.guild.name
        await interaction.response.send_message(f"{place} {interaction.user.name}")

    @tree.command(description="Guild only")
    @app_commands.guild_only()
    async def server(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("server")

    @tree.command(description="Reply ephemerally")
    async def secret(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("only you", ephemeral=True)

    @tree.command(description="Send too much")
    async def long(interaction: discord.Interaction) -> None:
        try:
            await interaction.response.send_message("x" * 2001)
        except discord.HTTPException as error:
            bot.record("long_error", error)

    return bot


@pytest.fixture
async def emu(discord_emulator: DiscordEmulator) -> DiscordEmulator:
    await discord_emulator.start_bot(build_bot())
    return discord_emulator


def bot_of(emu: DiscordEmulator) -> TinyBot:
    bot = emu._bot
    assert isinstance(bot, TinyBot)
    return bot


async def test_slash_command_reply_is_a_channel_message(emu: DiscordEmulator) -> None:
    general = emu.channel("general")
    ix = await emu.slash(emu.member("alice"), general, "ping")
    response = await ix.response()
    assert response.type == 4
    assert ix.original is not None and ix.original.content == "pong"
    assert not ix.ephemeral
    assert await emu.wait_for_message(general) is ix.original
    assert ix.original.author_id == emu.bot_user.id
    assert "ping" in [c["name"] for c in emu.commands()]  # what tree.sync() registered


async def test_options_are_typed_by_the_synced_schema_and_resolved(emu: DiscordEmulator) -> None:
    image = png()
    carol = emu.member("carol")
    ix = await emu.slash(
        carol,
        emu.channel("no-attach"),
        "types",
        options={
            "count": 3,
            "ratio": 0.5,
            "flag": True,
            "who": emu.member("dave"),
            "role": emu.role("Mod"),
            "where": emu.channel("nsfw"),
        },
        attachments={"image": emu.attachment(image, "in.png")},
    )
    await ix.response()
    seen = await bot_of(emu).next("types")
    assert seen["values"] == (3, 0.5, True, "dave", "Mod", "nsfw", "none")
    assert seen["who_roles"] == ["@everyone", "Manager", "Member"]
    assert seen["image"] == ("in.png", len(image), "image/png", 8)
    assert seen["sha"] == hashlib.sha256(image).hexdigest()
    assert seen["manage_guild"] is True  # carol holds Admin (Manage Server)
    assert seen["attach"] is False  # the bot is denied Attach Files in #no-attach
    assert seen["limit"] == 10 * 1024 * 1024


async def test_wrong_option_types_and_unknown_options_are_refused(emu: DiscordEmulator) -> None:
    alice, general = emu.member("alice"), emu.channel("general")
    with pytest.raises(EmulatorError, match="boolean option"):
        await emu.slash(alice, general, "pick", {"fruit": "apple", "many": 1})
    with pytest.raises(EmulatorError, match="unknown options"):
        await emu.slash(alice, general, "pick", {"fruit": "apple", "colour": "red"})
    with pytest.raises(EmulatorError, match="without"):
        await emu.slash(alice, general, "pick", {})
    with pytest.raises(EmulatorError, match=r"no command 'nope'"):
        await emu.slash(alice, general, "nope")


async def test_subcommand_groups_and_default_permissions(emu: DiscordEmulator) -> None:
    general = emu.channel("general")
    ix = await emu.slash(
        emu.member("carol"), general, "admin lora add", {"name": "ink", "scale": 0.7}
    )
    await ix.response()
    assert ix.original is not None and ix.original.content == "added ink at 0.7"
    # /admin needs Manage Server: Discord does not offer it to alice or to dave (Manager role)...
    for name in ("alice", "dave"):
        with pytest.raises(EmulatorError, match="not offered"):
            await emu.slash(emu.member(name), general, "admin lora add", {"name": "x"})
    # ...unless the server's integration settings show it to the Manager role.
    emu.set_command_permission(emu.guild, "admin", emu.role("Manager"))
    ix = await emu.slash(emu.member("dave"), general, "admin lora add", {"name": "y"})
    assert (await ix.response()).message is not None


async def test_age_restricted_command_only_in_age_restricted_channel(emu: DiscordEmulator) -> None:
    alice = emu.member("alice")
    with pytest.raises(EmulatorError, match="age-restricted"):
        await emu.slash(alice, emu.channel("general"), "spicy")
    ix = await emu.slash(alice, emu.channel("nsfw"), "spicy")
    assert (await ix.response()).message is not None


async def test_autocomplete_returns_choices_and_limits_them(emu: DiscordEmulator) -> None:
    alice, general = emu.member("alice"), emu.channel("general")
    choices = await emu.autocomplete(alice, general, "pick", {"fruit": "ap"}, focused="fruit")
    assert [c["value"] for c in choices] == ["apple", "apricot"]
    emu.ack_deadline = 0.2
    with pytest.raises(InteractionFailed, match="50035"):
        await emu.autocomplete(alice, general, "pick", {"many": True}, focused="fruit")


async def test_buttons_selects_and_deferred_updates(emu: DiscordEmulator) -> None:
    alice = emu.member("alice")
    ix = await emu.slash(alice, emu.channel("general"), "counter")
    await ix.response()
    message = ix.original
    assert message is not None and message.custom_ids() == [
        "count:add",
        "count:later",
        "count:pick",
    ]

    click = await emu.click(alice, message, "count:add")
    assert (await click.response()).type == 7
    assert message.content == "count 1" and len(message.edits) == 1

    later = await emu.click(emu.member("bob"), message, "count:later")
    assert (await later.response()).type == 6
    edited = await later.wait_original_edit(lambda m: m.content == "edited later")
    assert edited is message

    picked = await emu.click(alice, message, "count:pick", values=["a", "c"])
    await picked.response()
    assert picked.ephemeral and picked.original is not None
    assert picked.original.content == "picked a,c"
    with pytest.raises(EmulatorError, match="has no component"):
        await emu.click(alice, message, "count:nope")


async def test_modal_submit(emu: DiscordEmulator) -> None:
    alice = emu.member("alice")
    opened = await emu.slash(alice, emu.channel("general"), "feedback")
    assert (await opened.response()).type == 9
    assert opened.modal is not None and opened.modal["title"] == "Feedback"
    submitted = await emu.submit_modal(alice, opened, {"fb:text": "great"})
    await submitted.response()
    assert submitted.original is not None and submitted.original.content == "got great / ok"
    with pytest.raises(EmulatorError, match="only the member"):
        await emu.submit_modal(emu.member("bob"), opened, {"fb:text": "x"})


async def test_context_menu_reads_a_members_images_until_the_url_expires(
    emu: DiscordEmulator,
) -> None:
    alice, general = emu.member("alice"), emu.channel("general")
    first, second = png(), png(16, 16, "blue")
    posted = emu.post_user_message(
        alice, general, "look", [emu.attachment(first, "a.png"), emu.attachment(second, "b.png")]
    )
    ix = await emu.context_menu(emu.member("bob"), general, "Count images", posted)
    await ix.response()
    assert (
        ix.original is not None and ix.original.content == f"2 images {[len(first), len(second)]}"
    )

    emu.expire_attachment(posted.attachments[0])
    ix = await emu.context_menu(emu.member("bob"), general, "Count images", posted)
    await ix.response()
    assert ix.original is not None and ix.original.content == "expired 404"

    # Signed URLs expire; a URL handed out earlier dies, a fresh payload is signed anew.
    emu.attachment_ttl = 60
    fresh = emu.post_user_message(alice, general, "", [emu.attachment(first, "c.png")])
    stored_url = emu.attachment_url(fresh.attachments[0])
    async with aiohttp.ClientSession() as session:
        async with session.get(stored_url) as response:
            assert response.status == 200 and await response.read() == first
        forged = stored_url.replace("ex=", "ex=f")  # a later expiry without a matching signature
        async with session.get(forged) as response:
            assert response.status == 404
        emu.clock.advance(61)
        async with session.get(stored_url) as response:
            assert response.status == 404
    ix = await emu.context_menu(alice, general, "Count images", fresh)
    await ix.response()
    assert ix.original is not None and ix.original.content == f"1 images {[len(first)]}"


async def test_ephemeral_replies_are_seen_only_by_the_member(emu: DiscordEmulator) -> None:
    general = emu.channel("general")
    ix = await emu.slash(emu.member("alice"), general, "secret")
    await ix.response()
    original = ix.original
    assert original is not None and ix.ephemeral and original.flags & 64
    assert original not in emu.messages_in(general)
    created = [d["id"] for d in emu.sent_events("MESSAGE_CREATE")]
    assert str(original.id) not in created  # Discord does not tell the bot about it
    bot = bot_of(emu)
    with pytest.raises(discord.NotFound):
        await bot.get_channel(general.id).fetch_message(original.id)  # type: ignore[union-attr]
    with pytest.raises(EmulatorError, match="only the invoking member"):
        await emu.click(emu.member("bob"), original, "x")


async def test_first_followup_after_defer_fills_the_thinking_message(emu: DiscordEmulator) -> None:
    general = emu.channel("general")
    ix = await emu.slash(emu.member("alice"), general, "think", {"then_hidden": True})
    response = await ix.response()
    assert response.type == 5 and response.message is not None and response.message.loading
    first = await ix.wait_followup()
    # Discord keeps the flags the defer chose: this "ephemeral" follow-up is public.
    assert first is ix.original and first.content == "first" and not first.ephemeral
    assert not first.loading
    second = await ix.wait_followup()
    assert second is not first and second.content == "second" and second.ephemeral

    hidden = await emu.slash(emu.member("bob"), general, "think", {"hidden": True})
    assert (await hidden.wait_followup()).ephemeral


async def test_original_and_followup_get_edit_delete(emu: DiscordEmulator) -> None:
    ix = await emu.slash(emu.member("alice"), emu.channel("general"), "lifecycle")
    await ix.response()
    bot = bot_of(emu)
    assert await bot.next("original") == "v1"
    assert await bot.next("followup") == "f1 edited"
    original = ix.original
    assert original is not None
    await emu.wait_for_delete(original)
    assert [e.payload.get("content") for e in original.edits] == ["v2"]
    followup = ix.followups[0]
    await emu.wait_for_delete(followup)
    assert followup.content == "f1 edited"


async def test_unacknowledged_interaction_fails_with_10062(emu: DiscordEmulator) -> None:
    emu.ack_deadline = 0.1
    ix = await emu.slash(emu.member("alice"), emu.channel("general"), "slow")
    with pytest.raises(InteractionFailed, match="not acknowledged"):
        await ix.response()
    bot = bot_of(emu)
    bot.gate.set()  # type: ignore[attr-defined]
    error = await bot.next("slow_error")
    assert isinstance(error, discord.NotFound) and error.code == 10062
    assert ix.errors and ix.errors[0].code == 10062


async def test_ack_deadline_follows_the_emulator_clock(emu: DiscordEmulator) -> None:
    ix = await emu.slash(emu.member("alice"), emu.channel("general"), "slow")
    emu.clock.advance(3.5)
    with pytest.raises(InteractionFailed):
        await ix.response()
    bot_of(emu).gate.set()  # type: ignore[attr-defined]
    assert (await bot_of(emu).next("slow_error")).code == 10062


async def test_second_acknowledgement_fails_with_40060(emu: DiscordEmulator) -> None:
    ix = await emu.slash(emu.member("alice"), emu.channel("general"), "twice")
    await ix.response()
    error = await bot_of(emu).next("twice_error")
    assert isinstance(error, discord.HTTPException) and error.code == 40060
    assert len(ix.callbacks) == 1 and ix.original is not None and ix.original.content == "first"


async def test_interaction_token_expires_after_15_minutes(emu: DiscordEmulator) -> None:
    ix = await emu.slash(emu.member("alice"), emu.channel("general"), "wait")
    await ix.response()
    emu.clock.advance(15 * 60 + 1)
    bot_of(emu).gate.set()  # type: ignore[attr-defined]
    error = await bot_of(emu).next("wait_error")
    assert error.status == 401 and error.code == 50027
    assert ix.original is not None and ix.original.loading  # still "thinking" for the member


async def test_upload_over_the_limit_gets_413_and_the_limit_is_sent(emu: DiscordEmulator) -> None:
    emu.guild.upload_limit = 1000
    ix = await emu.slash(emu.member("alice"), emu.channel("general"), "upload", {"size": 1001})
    bot = bot_of(emu)
    assert await bot.next("limit") == 1000
    error = await bot.next("upload_error")
    assert error.status == 413 and error.code == 40005
    assert (await ix.wait_followup()).content == "failed 413/40005"

    ok = await emu.slash(emu.member("alice"), emu.channel("general"), "upload", {"size": 1000})
    sent = await ok.wait_followup()
    assert sent.files == [("blob.bin", b"x" * 1000, "application/octet-stream")]


async def test_payload_over_discord_limits_is_refused_with_50035(emu: DiscordEmulator) -> None:
    emu.ack_deadline = 0.2
    ix = await emu.slash(emu.member("alice"), emu.channel("general"), "long")
    error = await bot_of(emu).next("long_error")
    assert error.status == 400 and error.code == 50035 and "2000 or fewer" in str(error)
    with pytest.raises(InteractionFailed):
        await ix.response()


async def test_interaction_responses_ignore_channel_permissions(emu: DiscordEmulator) -> None:
    # The bot may not send in #read-only, but interaction responses are webhooks: they work.
    ix = await emu.slash(emu.member("alice"), emu.channel("read-only"), "ping")
    assert (await ix.response()).message is not None


async def test_direct_message_commands_and_guild_only(emu: DiscordEmulator) -> None:
    alice = emu.member("alice")
    dm = emu.dm_channel(alice)
    ix = await emu.slash(alice, dm, "where")
    await ix.response()
    assert ix.payload["context"] == 1 and "member" not in ix.payload
    assert ix.original is not None and ix.original.content == "dm alice"
    assert await emu.wait_for_message(dm) is ix.original
    with pytest.raises(EmulatorError, match="not offered in this context"):
        await emu.slash(alice, dm, "server")


async def test_members_act_with_the_roles_they_are_given(emu: DiscordEmulator) -> None:
    curator = emu.add_role(emu.guild, "Curator", Permission.MANAGE_GUILD)
    frank = emu.add_member(emu.guild, "frank", [curator])
    general = emu.channel("general")
    ix = await emu.slash(frank, general, "admin lora add", {"name": "z"})
    assert (await ix.response()).message is not None
    assert ix.payload["member"]["roles"] == [str(curator.id)]
    assert int(ix.payload["member"]["permissions"]) & Permission.MANAGE_GUILD
    emu.set_roles(frank, [])
    with pytest.raises(EmulatorError, match="not offered"):
        await emu.slash(frank, general, "admin lora add", {"name": "z"})
    emu.set_overwrite(general, emu.guild.everyone, deny=Permission.USE_APPLICATION_COMMANDS)
    with pytest.raises(EmulatorError, match="USE_APPLICATION_COMMANDS"):
        await emu.slash(emu.member("alice"), general, "ping")
