"""`/admin setup` through Discord: a configured server shows every item ready, and each item
that goes missing, in turn, is the one marked with its fix. One bot for the whole table."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness.e2e import World

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def configure(world: World, *, lora: bool = True, **changes: Any) -> None:
    """A fully set-up test server, with `changes` to its settings (and maybe no LoRA)."""
    emu, storage = world.emu, world.bot.storage
    guild = emu.guild.id
    if await storage.loras.get(guild, "claymation") is None:
        await world.add_lora()
    await storage.loras.set_enabled(guild, "claymation", lora, actor_id=emu.member("carol").id)
    settings = {
        "default_quota": 10,
        "monthly_budget_usd": 25.0,
        "manager_roles": [emu.role("Manager").id],
        "channel_rules": {emu.channel("general").id: "allow"},
    }
    await world.set_settings(**(settings | changes))


async def setup_check(world: World, channel: str = "general") -> list[str]:
    emu = world.emu
    ix = await emu.slash(emu.member("carol"), emu.channel(channel), "admin setup")
    text = await world.reply_text(ix)
    assert ix.ephemeral and ix.original is not None and ix.original.mentions == []
    return text.splitlines()


async def test_a_configured_server_is_ready(module_world: World) -> None:
    world = module_world
    emu = world.emu
    await configure(world)
    general, manager = emu.channel("general").mention, emu.role("Manager").mention
    assert await setup_check(world) == [
        "**Setup check**: all 6 ready. Members can `/edit` now.",
        "✅ LoRAs: 1 LoRA ready for `/edit`.",
        "✅ Quota: 10 images per member per 24 h.",
        "✅ Budget: $25.00 per month.",
        f"✅ Bot managers: {manager} (and Manage Server).",
        f"✅ Channels: edits only in {general}.",
        f"✅ Permissions in {general}: everything I need to post results.",
    ]


CASES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "no-loras",
        {"lora": False},
        "❌ LoRAs: none registered (or all disabled), so `/edit` has no LoRA to offer.",
        "`/admin lora add name:<name> path:<https URL or owner/repo>`",
    ),
    (
        "zero-quota",
        {"default_quota": 0},
        "❌ Quota: 0 images per 24 h, so members without an override can't edit.",
        "`/admin quota default images:<n>`",
    ),
    (
        "no-budget",
        {"monthly_budget_usd": 0.0},
        "❌ Budget: none, so spend on fal is not capped.",
        "`/admin budget set usd:<dollars>`",
    ),
    (
        "no-manager-roles",
        {"manager_roles": []},
        "❌ Bot managers: no role named, so only members with Manage Server can use `/admin`.",
        "`/admin settings managers action:add role:<role>`",
    ),
    (
        "no-allowed-channels",
        {"channel_rules": {}},
        "❌ Channels: none allowed by name, so members can edit in every channel.",
        "`/admin settings channel channel:<#channel> rule:allow`",
    ),
    (
        "bot-permissions",
        {"channel_rules": "no-attach"},  # the bot is denied Attach Files there
        "❌ Permissions in {no-attach}: I'm missing Attach Files.",
        "Channel settings → Permissions → my role → allow Attach Files",
    ),
]


@pytest.mark.parametrize(
    ("changes", "missing", "fix"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_each_missing_item_is_named_with_its_fix(
    module_world: World, changes: dict[str, Any], missing: str, fix: str
) -> None:
    world = module_world
    emu = world.emu
    if changes.get("channel_rules") == "no-attach":
        changes = {"channel_rules": {emu.channel("no-attach").id: "allow"}}
        missing = missing.replace("{no-attach}", emu.channel("no-attach").mention)
    await configure(world, **changes)
    lines = await setup_check(world)
    assert lines[0] == "**Setup check**: 5 of 6 ready, 1 to do."
    crossed = [line for line in lines if line.startswith("❌")]
    assert crossed == [missing]
    at = lines.index(missing)
    assert lines[at + 1].startswith("  ↳ fix: " + fix)
    assert sum(line.startswith("✅") for line in lines) == 5


async def test_without_allow_rules_the_current_channel_is_checked(module_world: World) -> None:
    world = module_world
    emu = world.emu
    await configure(world, channel_rules={})
    where = emu.channel("no-attach").mention
    lines = await setup_check(world, channel="no-attach")
    assert f"❌ Permissions in {where}: I'm missing Attach Files." in lines


async def test_every_allowed_channel_is_checked(module_world: World) -> None:
    world = module_world
    emu = world.emu
    rules = {emu.channel(name).id: "allow" for name in ("general", "read-only", "no-attach")}
    await configure(world, channel_rules=rules)
    lines = await setup_check(world)
    general, read_only = emu.channel("general").mention, emu.channel("read-only").mention
    assert f"✅ Permissions in {general}: everything I need to post results." in lines
    # Without Send Messages, Discord also takes Attach Files and Embed Links away there.
    assert (
        f"❌ Permissions in {read_only}: I'm missing Send Messages, Attach Files, Embed Links."
        in lines
    )
    assert lines[0] == "**Setup check**: 6 of 8 ready, 2 to do."
