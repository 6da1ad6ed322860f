"""/edit end to end: a member's images in, results in the channel, quota charged once."""

from __future__ import annotations

import io

from PIL import Image

from tests.e2e import World
from tests.images import png


async def test_one_image_edit_posts_result_and_charges_quota(world: World) -> None:
    await world.add_lora("claymation", path="owner/claymation", triggers=("CLAY",), scale=0.8)
    ix = await world.edit(prompt="a red cat", images=[png(800, 600)], lora="claymation")
    text = await world.reply_text(ix)
    assert ix.ephemeral
    assert "Edit #1 is on its way" in text

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
