"""Server presets end to end: managers bundle LoRAs, scales, a prompt template and settings with
`/admin preset add|edit|remove`; members list them with `/presets` and use them with
`/edit preset:`, which fills what they left unset (what they set wins); the recipe card names the
preset; a preset whose LoRA was removed or disabled refuses with that reason."""

from __future__ import annotations

from typing import Any

from emulators.discord_emulator.messages import Message
from tests.harness.e2e import World
from tests.harness.images import png

PORTRAIT = {
    "name": "portrait",
    "lora": "clay",
    "scale": 0.6,
    "lora2": "ink",
    "template": "{prompt}, oil painting",
    "guidance": 4.0,
    "steps": 20,
    "size": "square",
    "acceleration": "high",
    "format": "jpeg",
    "description": "Soft studio portraits",
}


async def admin(world: World, command: str, options: dict[str, Any]) -> tuple[str, Any]:
    emu = world.emu
    ix = await emu.slash(emu.member("carol"), emu.channel("general"), f"admin {command}", options)
    text = await world.reply_text(ix)
    assert ix.ephemeral
    return text, ix


async def setup_portrait(world: World) -> None:
    await world.add_lora("clay", path="owner/clay", triggers=("claystyle",))
    await world.add_lora("ink", path="owner/ink", scale=0.8)
    text, ix = await admin(world, "preset add", PORTRAIT)
    assert text == "Added the preset `portrait`. Members use it with `/edit preset:portrait`."
    card = ix.original.embeds[0]
    assert card["title"] == "Preset `portrait`"
    assert "clay × 0.6, ink × 0.8" in card["description"]
    assert (
        "guidance 4 · steps 20 · size square · acceleration high · format jpeg"
        in (card["description"])
    )


async def edit(world: World, channel: str = "general", **options: Any) -> str:
    ix = await world.edit(channel=channel, images=[png()], **options)
    return await world.reply_text(ix)


def recipe(message: Message) -> dict[str, str]:
    return {f["name"]: f["value"] for f in message.embeds[0]["fields"]}


async def test_a_preset_fills_what_the_member_left_unset(world: World) -> None:
    await setup_portrait(world)
    assert "Edit #1 is on its way" in await edit(world, prompt="a cat", preset="portrait")
    result = await world.result()
    [sent] = world.fal.submissions()
    assert sent["prompt"] == "claystyle, a cat, oil painting"
    assert sent["loras"] == [
        {"path": "owner/clay", "scale": 0.6},
        {"path": "owner/ink", "scale": 0.8},
    ]
    assert (sent["guidance_scale"], sent["num_inference_steps"]) == (4.0, 20)
    assert (sent["image_size"], sent["acceleration"], sent["output_format"]) == (
        "square",
        "high",
        "jpeg",
    )
    card = recipe(result)
    assert card["Preset"] == "`portrait`"
    assert result.embeds[0]["description"] == "a cat, oil painting"
    assert card["LoRAs"] == "`clay` × 0.6\n`ink` × 0.8"
    assert result.files[0][0].endswith(".jpg")


async def test_what_the_member_sets_wins(world: World) -> None:
    await setup_portrait(world)
    await world.add_lora("oil", path="owner/oil", scale=1.3)
    text = await edit(
        world, prompt="a dog", preset="portrait", scale=1.1, lora2="oil", steps=30, format="png"
    )
    assert "Edit #1 is on its way" in text
    await world.result()
    [sent] = world.fal.submissions()
    # Position 1 keeps the preset's LoRA with the member's scale; position 2 is the member's.
    assert sent["loras"] == [
        {"path": "owner/clay", "scale": 1.1},
        {"path": "owner/oil", "scale": 1.3},
    ]
    assert (sent["num_inference_steps"], sent["output_format"]) == (30, "png")
    assert sent["guidance_scale"] == 4.0  # still the preset's


async def test_trigger_words_are_added_once(world: World) -> None:
    await world.add_lora("clay", path="owner/clay", triggers=("claystyle",))
    await admin(
        world, "preset add", {"name": "vibe", "lora": "clay", "template": "claystyle {prompt}"}
    )
    await edit(world, prompt="a teapot", preset="vibe")
    await world.result()
    [sent] = world.fal.submissions()
    assert sent["prompt"] == "claystyle a teapot"


async def test_presets_lists_them_and_autocomplete_offers_the_usable_ones(world: World) -> None:
    await setup_portrait(world)
    await admin(world, "preset add", {"name": "quick", "acceleration": "high", "steps": 8})
    emu = world.emu
    ix = await emu.slash(emu.member("alice"), emu.channel("general"), "presets")
    await world.reply_text(ix)
    assert ix.ephemeral
    listed = ix.original.embeds[0]
    assert [f["name"] for f in listed["fields"]] == ["portrait", "quick"]
    assert "Template: {prompt}, oil painting" in listed["fields"][0]["value"]
    choices = await emu.autocomplete(
        emu.member("alice"), emu.channel("general"), "edit", {"prompt": "x"}, focused="preset"
    )
    assert [c["value"] for c in choices] == ["portrait", "quick"]
    assert choices[0]["name"].startswith("portrait · clay × 0.6, ink × 0.8 · Soft studio")

    await world.bot.storage.loras.set_enabled(emu.guild.id, "ink", False, actor_id=1)
    choices = await emu.autocomplete(
        emu.member("alice"), emu.channel("general"), "edit", {"prompt": "x"}, focused="preset"
    )
    assert [c["value"] for c in choices] == ["quick"]


async def test_a_preset_whose_lora_was_disabled_or_removed_refuses_with_that_reason(
    world: World,
) -> None:
    await setup_portrait(world)
    guild = world.emu.guild.id
    await world.bot.storage.loras.set_enabled(guild, "ink", False, actor_id=1)
    assert await edit(world, prompt="a cat", preset="portrait") == (
        "The preset `portrait` can't be used: its LoRA `ink` is disabled on this server. An "
        "admin can fix it with `/admin preset edit`."
    )
    await world.bot.storage.loras.remove(guild, "ink", actor_id=1)
    assert await edit(world, prompt="a cat", preset="portrait") == (
        "The preset `portrait` can't be used: its LoRA `ink` was removed from this server. An "
        "admin can fix it with `/admin preset edit`."
    )
    emu = world.emu
    ix = await emu.slash(emu.member("alice"), emu.channel("general"), "presets")
    await world.reply_text(ix)
    assert (
        "⚠️ Can't be used now: its LoRA `ink` was removed from this server."
        in (ix.original.embeds[0]["fields"][0]["value"])
    )
    assert world.fal.submissions() == []
    assert await world.usage() == (0, 0)

    # A manager takes the LoRA out of the preset; it works again.
    text, _ = await admin(world, "preset edit", {"name": "portrait", "lora2": "-"})
    assert text == "Updated the preset `portrait`."
    assert "Edit #1 is on its way" in await edit(world, prompt="a cat", preset="portrait")
    await world.result()
    assert world.fal.submissions()[0]["loras"] == [{"path": "owner/clay", "scale": 0.6}]


async def test_a_renamed_lora_stays_the_presets(world: World) -> None:
    await setup_portrait(world)
    await world.bot.storage.loras.update(world.emu.guild.id, "clay", 1, name="clay2")
    await edit(world, prompt="a cat", preset="portrait")
    result = await world.result()
    assert recipe(result)["LoRAs"] == "`clay2` × 0.6\n`ink` × 0.8"


async def test_edit_rename_clear_and_remove(world: World) -> None:
    await setup_portrait(world)
    text, ix = await admin(
        world,
        "preset edit",
        {"name": "Portrait", "new_name": "headshot", "scale2": 1.5, "clear": "guidance, size"},
    )
    assert text == "Updated the preset `headshot`."
    description = ix.original.embeds[0]["description"]
    assert "clay × 0.6, ink × 1.5" in description
    assert "steps 20 · acceleration high · format jpeg" in description
    assert "guidance" not in description and "size" not in description
    assert await edit(world, prompt="x", preset="portrait") == (
        "This server has no preset named `portrait`. See `/presets`."
    )
    await edit(world, prompt="x", preset="headshot")
    await world.result()
    [sent] = world.fal.submissions()
    assert sent["guidance_scale"] == 2.5 and sent["loras"][1]["scale"] == 1.5

    text, _ = await admin(world, "preset remove", {"name": "HEADSHOT"})
    assert text == "Removed the preset `headshot`."
    assert await world.bot.storage.presets.list(world.emu.guild.id) == []


async def test_a_presets_steps_over_the_channels_cap_refuse_with_the_reason(world: World) -> None:
    await setup_portrait(world)
    await world.set_settings(max_steps=10)
    assert await edit(world, prompt="x", preset="portrait") == (
        "The preset `portrait` uses 20 steps, more than this channel's cap of 10: set `steps` "
        "yourself, or ask an admin to change the preset."
    )
    assert "Edit #1 is on its way" in await edit(world, prompt="x", preset="portrait", steps=8)


async def test_a_preset_with_an_nsfw_lora_only_in_age_restricted_channels(world: World) -> None:
    await world.add_lora("spicy", path="owner/spicy", nsfw=True)
    await admin(world, "preset add", {"name": "hot", "lora": "spicy"})
    assert await edit(world, prompt="x", preset="hot") == (
        "The preset `hot` uses an NSFW LoRA; use it in an age-restricted channel."
    )
    emu = world.emu
    ix = await emu.slash(emu.member("alice"), emu.channel("general"), "presets")
    await world.reply_text(ix)
    assert ix.original.embeds[0].get("fields", []) == []
    assert "Edit #1 is on its way" in await edit(world, channel="nsfw", prompt="x", preset="hot")
