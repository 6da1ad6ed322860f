"""The money at a glance through Discord: `/admin usage`'s chart with its projection, and
budget alerts that go out once per threshold and month, across restarts."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from PIL import Image

from cogs.admin import NOT_MANAGER
from emulators.discord_emulator.messages import Message
from jobs.spend import ordinal
from storage.clock import month_key
from tests.harness.e2e import World


async def admin(world: World, command: str, options: dict[str, object] | None = None) -> str:
    emu = world.emu
    ix = await emu.slash(emu.member("carol"), emu.channel("general"), command, options or {})
    text = await world.reply_text(ix)
    assert ix.ephemeral
    return text


async def edit(world: World, member: str = "alice") -> str:
    """An /edit; returns what the member read. Admitted edits are waited for to the end."""
    ix = await world.edit(member)
    text = await world.reply_text(ix)
    if "is on its way" in text:
        await world.result()
    return text


async def spent(world: World) -> float:
    return await world.bot.storage.quotas.guild_spend(world.emu.guild.id)


# ---------------------------------------------------------------------------- the chart


async def test_usage_attaches_a_chart_and_states_the_projection(world: World) -> None:
    emu = world.emu
    await world.add_lora()
    ix = await world.edit("alice", lora="claymation")
    assert "is on its way" in await world.reply_text(ix)
    await world.result()
    await edit(world, "bob")
    # One micro-dollar of budget left: at any rate it runs out today.
    await world.set_settings(monthly_budget_usd=await spent(world) + 0.000001)

    ix = await emu.slash(emu.member("carol"), emu.channel("general"), "admin usage")
    table = await ix.wait_followup()
    [(csv_name, _, _)] = table.files  # the CSV stays, in the first answer
    assert csv_name.endswith(".csv")
    chart = await ix.wait_followup()
    assert chart.ephemeral and chart.mentions == []
    today = datetime.now(UTC)
    assert f"At this rate the budget runs out on the {ordinal(today.day)}." in chart.content
    assert chart.content.startswith(f"{today:%B %Y}: $")
    [(name, data, _)] = chart.files
    assert name == f"spend-{today:%Y-%m}.png"
    image = Image.open(io.BytesIO(data))
    image.load()  # decodes the whole PNG
    assert image.format == "PNG" and image.size == (1000, 640)
    # An opaque card: it reads the same on Discord's dark and light themes.
    alpha = image.convert("RGBA").getchannel("A")
    assert alpha.getextrema() == (255, 255)


async def test_usage_of_a_quiet_month_still_has_a_chart(world: World) -> None:
    emu = world.emu
    ix = await emu.slash(emu.member("carol"), emu.channel("general"), "admin usage")
    assert (await ix.wait_followup()).content == "No edits this month."
    chart = await ix.wait_followup()
    assert "Nothing spent this month yet." in chart.content
    Image.open(io.BytesIO(chart.files[0][1])).load()


# ---------------------------------------------------------------------------- alerts


async def alerts_channel(world: World) -> None:
    emu = world.emu
    channel = emu.add_channel(emu.guild, "bot-alerts")
    text = await admin(world, "admin settings alerts", {"channel": channel})
    assert text.startswith(f"Budget alerts go to {channel.mention}: one message when")


def alerts(world: World) -> list[Message]:
    return world.emu.messages_in(world.emu.channel("bot-alerts"))


async def test_each_budget_threshold_alerts_once_across_restarts(world: World) -> None:
    emu = world.emu
    assert "no budget" not in await edit(world)  # a first edit, uncapped, tells the price
    price = await spent(world)
    await alerts_channel(world)
    # After the next edit 60 % is spent, after the one after 90 %, and a third doesn't fit.
    await world.set_settings(monthly_budget_usd=2 * price / 0.6)

    await edit(world)
    first = await emu.wait_for_message(emu.channel("bot-alerts"))
    assert first.content.startswith("💸 **Budget: 50 % used.** This server has spent $")
    assert "At this rate" in first.content and "`/admin usage`" in first.content

    await world.restart()
    await edit(world, "bob")  # past 80 %; 50 % was already told, before the restart
    second = await emu.wait_for_message(emu.channel("bot-alerts"))
    assert second.content.startswith("💸 **Budget: 80 % used.**")

    refused = await edit(world)
    assert "would take the server past its" in refused
    third = await emu.wait_for_message(emu.channel("bot-alerts"))
    assert third.content.startswith("🛑 **Budget: 100 % used.**")
    assert "members' edits are refused until <t:" in third.content

    await world.restart()
    assert "would take the server past its" in await edit(world, "bob")
    await world.bot.jobs.wait_idle()
    assert [m.id for m in alerts(world)] == [first.id, second.id, third.id]
    assert all(m.mentions == [] and m.author_id == emu.bot_user.id for m in alerts(world))
    month = month_key(datetime.now(UTC))
    sent = await world.bot.storage.spend.sent_alerts(emu.guild.id, month)
    assert sent == ["spend_100", "spend_50", "spend_80"]


async def test_no_alerts_until_a_channel_is_named_and_none_after_off(world: World) -> None:
    emu = world.emu
    await world.set_settings(monthly_budget_usd=0.05)
    await edit(world)  # most of the budget, but nobody asked for alerts
    await world.bot.jobs.wait_idle()
    month = month_key(datetime.now(UTC))
    assert await world.bot.storage.spend.sent_alerts(emu.guild.id, month) == []
    await alerts_channel(world)
    assert await admin(world, "admin settings alerts", {"off": True}) == "Budget alerts are off."
    assert await admin(world, "admin settings alerts") == (
        "Budget alerts are off. Turn them on with `/admin settings alerts channel:#channel`."
    )
    assert "would take the server past its" in await edit(world)
    await world.bot.jobs.wait_idle()
    assert alerts(world) == []
    assert await world.bot.storage.spend.sent_alerts(emu.guild.id, month) == []


async def test_a_locked_fal_account_alerts_once(world: World) -> None:
    emu = world.emu
    await alerts_channel(world)
    world.fal.locked_reason = "Exhausted balance. Top up your balance at fal.ai/dashboard/billing."
    assert "can't run jobs right now" in await edit(world)
    alert = await emu.wait_for_message(emu.channel("bot-alerts"))
    assert alert.content.startswith("⚠️ **fal.ai locked the bot's account** (")
    assert "Exhausted balance" in alert.content and alert.mentions == []
    assert "can't run jobs right now" in await edit(world, "bob")
    await world.restart()
    assert "can't run jobs right now" in await edit(world)
    await world.bot.jobs.wait_idle()
    assert [m.id for m in alerts(world)] == [alert.id]


async def test_alert_settings_are_for_managers_only(world: World) -> None:
    emu = world.emu
    channel = emu.add_channel(emu.guild, "bot-alerts")
    emu.set_command_permission(emu.guild, "admin", emu.role("Manager"))  # shown, not named
    ix = await emu.slash(
        emu.member("dave"), emu.channel("general"), "admin settings alerts", {"channel": channel}
    )
    assert await world.reply_text(ix) == NOT_MANAGER
    settings = await world.bot.storage.settings.get(emu.guild.id)
    assert settings.alerts_channel_id is None


async def test_alerts_need_a_channel_the_bot_may_post_in(world: World) -> None:
    emu = world.emu
    read_only = emu.channel("read-only")
    text = await admin(world, "admin settings alerts", {"channel": read_only})
    assert text == (
        f"I can't post in {read_only.mention}: I need View Channel, Send Messages there. "
        "Give my role those, or pick another channel."
    )
