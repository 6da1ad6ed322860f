"""/edit end to end: a member's images in, results in the channel, quota charged once."""

from __future__ import annotations

import io

from PIL import Image

from emulators.fal_emulator.images import expected_pixel
from tests.harness.e2e import World, is_status
from tests.harness.images import png


async def test_one_image_edit_posts_result_and_charges_quota(world: World) -> None:
    await world.add_lora("claymation", path="owner/claymation", triggers=("CLAY",), scale=0.8)
    ix = await world.edit(prompt="a red cat", images=[png(800, 600)], lora="claymation")
    text = await world.reply_text(ix)
    assert ix.ephemeral
    assert "Edit #1 is on its way: 1 image, about $0.031." in text

    result = await world.result()
    [(_filename, data, content_type)] = result.files
    assert content_type.startswith("image/")
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (800, 608)  # image 1, never upscaled past it, sides ×16
    assert result.reference is not None  # replies to the status message
    assert world.emu.member("alice").mention in result.content
    embed = result.embeds[0]
    assert embed["title"] == "Edit #1"
    assert "a red cat" in embed["description"]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["LoRAs"] == "`claymation` × 0.8"
    assert fields["Steps"] == "28"

    [submitted] = world.fal.submissions()
    assert submitted["prompt"] == "CLAY, a red cat"
    assert submitted["loras"] == [{"path": "owner/claymation", "scale": 0.8}]
    assert len(submitted["image_urls"]) == 1
    assert submitted["image_urls"][0].startswith(world.fal.cdn_url)

    await world.emu.wait_for("reaction_add")
    assert world.bot.user is not None
    assert world.bot.user.id in result.reactions["🔁"]
    job = await world.bot.storage.jobs.get(1)
    assert job is not None and job.state == "delivered"
    assert job.result_message_id == result.id
    usage = await world.bot.storage.quotas.usage(
        world.emu.guild.id, world.emu.member("alice").id, 86400
    )
    assert usage.images_used == 1 and usage.in_flight == 0
    lora = await world.bot.storage.loras.get(world.emu.guild.id, "claymation")
    assert lora is not None and lora.uses == 1  # counted once the member got the result


async def test_three_images_and_every_parameter_reach_fal(world: World) -> None:
    await world.add_lora("clay", path="https://example.com/clay.safetensors", scale=1.0)
    await world.add_lora("ink", path="owner/ink", triggers=("INK",), scale=0.5)
    ix = await world.edit(
        prompt="combine them",
        images=[png(640, 480, (255, 0, 0)), png(500, 500, (0, 255, 0)), png(300, 600, (0, 0, 255))],
        lora="clay",
        lora2="ink",
        scale2=1.5,
        seed=1234,
        guidance=4.5,
        steps=20,
        size="landscape_16_9",
        count=2,
        acceleration="high",
        expand_prompt=True,
        format="webp",
    )
    assert "Edit #1 is on its way: 2 images, about $" in await world.reply_text(ix)
    result = await world.result()
    assert len(result.files) == 2
    assert all(ctype == "image/webp" for _, _, ctype in result.files)
    [sent] = world.fal.submissions()
    assert len(sent["image_urls"]) == 3
    assert len(set(sent["image_urls"])) == 3
    assert sent["loras"] == [
        {"path": "https://example.com/clay.safetensors", "scale": 1.0},
        {"path": "owner/ink", "scale": 1.5},
    ]
    assert sent["prompt"] == "INK, combine them"
    assert sent["seed"] == 1234
    assert sent["guidance_scale"] == 4.5
    assert sent["num_inference_steps"] == 20
    assert sent["image_size"] == "landscape_16_9"
    assert sent["num_images"] == 2
    assert sent["acceleration"] == "high"
    assert sent["enable_prompt_expansion"] is True
    assert sent["output_format"] == "webp"
    assert sent["enable_safety_checker"] is True
    usage = await world.bot.storage.quotas.usage(
        world.emu.guild.id, world.emu.member("alice").id, 86400
    )
    assert usage.images_used == 2


async def test_result_bytes_are_the_emulators_output_of_our_input(world: World) -> None:
    ix = await world.edit(prompt="tint", images=[png(1024, 1024, (10, 200, 30))], size="square")
    await world.reply_text(ix)
    result = await world.result()
    [job] = world.fal.jobs.values()
    _, data, _ = result.files[0]
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (512, 512)
        assert image.convert("RGB").getpixel((5, 5)) == expected_pixel(
            (10, 200, 30), job.body["seed"]
        )


async def test_prompt_mentions_never_ping(world: World) -> None:
    ix = await world.edit(prompt="@everyone look <@&123> and @here", images=[png()])
    await world.reply_text(ix)
    result = await world.result()
    assert result.mentions == [world.emu.member("alice").id]  # the requester, nobody else
    status = next(m for m in world.emu.messages_in(world.emu.channel("general")) if is_status(m))
    assert status.mentions == []
    assert "@everyone" not in status.content.replace("@\u200beveryone", "")
