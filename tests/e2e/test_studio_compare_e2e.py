"""Compare end to end: the button on a result posts the first input and the result side by side
as one labelled image, and an animated flip between them, within the upload limit; nothing runs
at fal and nothing is charged."""

from __future__ import annotations

import io

from PIL import Image, ImageChops

from emulators.discord_emulator.messages import Message
from jobs.compose import label_strip, pair_boxes
from tests.harness.e2e import World
from tests.harness.images import noisy_png, png
from tests.harness.studio import expected, picture

BEFORE = (30, 90, 220)


async def result_of(world: World, image: bytes, **options: object) -> Message:
    ix = await world.edit(images=[image], **options)
    assert "is on its way" in await world.reply_text(ix)
    result = await world.result()
    await world.emu.wait_for("reaction_add", lambda e: e[0].id == result.id)
    return result


async def compared(world: World, member: str, result: Message, job_id: int = 1) -> Message:
    ix = await world.emu.click(world.emu.member(member), result, f"job:{job_id}:compare")
    assert await world.reply_text(ix) == f"Posted the before and after of edit #{job_id}."
    assert ix.ephemeral
    return await world.emu.wait_for_message(
        world.emu.channel("general"), lambda m: m.content.startswith("Before and after")
    )


def frames(data: bytes) -> list[Image.Image]:
    found = []
    with Image.open(io.BytesIO(data)) as gif:
        for index in range(getattr(gif, "n_frames", 1)):
            gif.seek(index)
            found.append(gif.convert("RGB"))
    return found


def near(pixel: tuple[int, ...], wanted: tuple[int, ...], by: int = 8) -> bool:
    return all(abs(a - b) <= by for a, b in zip(pixel, wanted, strict=True))


async def test_compare_posts_the_input_and_the_result_side_by_side_and_a_flip(
    world: World,
) -> None:
    result = await result_of(world, png(640, 480, BEFORE), seed=4321)
    [(_, result_bytes, _)] = result.files
    after = expected(4321, [], BEFORE)

    posted = await compared(world, "bob", result)
    assert posted.content == f"Before and after of edit #1, for {world.emu.member('bob').mention}"
    assert posted.mentions == []
    assert posted.reference["message_id"] == str(result.id)
    (pair_name, pair_data, _), (flip_name, flip_data, flip_type) = posted.files
    assert (pair_name, flip_name, flip_type) == ("compare-1.png", "compare-1.gif", "image/gif")

    # The pair: the first input on the left under "before", the result on the right.
    pair = picture(pair_data)
    size, left, right = pair_boxes((640, 480), picture(result_bytes).size)
    assert pair.size == size
    assert pair.getpixel(left.image.centre) == BEFORE
    assert pair.getpixel(right.image.centre) == after
    for boxes, word in ((left, "before"), (right, "after")):
        drawn = pair.crop(boxes.label.tuple())
        assert (
            ImageChops.difference(drawn, label_strip(word, boxes.label.size[0])).getbbox() is None
        )

    # The flip: at least two frames, before then after.
    shown = frames(flip_data)
    assert len(shown) >= 2
    centre = (shown[0].width // 2, shown[0].height * 3 // 4)
    assert near(shown[0].getpixel(centre), BEFORE)
    assert near(shown[1].getpixel(centre), after)

    # Nothing ran at fal, nothing was charged.
    assert len(world.fal.submissions()) == 1
    assert await world.usage() == (1, 0) and await world.usage("bob") == (0, 0)


async def test_compare_works_on_a_result_from_before_a_restart(world: World) -> None:
    result = await result_of(world, png(512, 512, BEFORE))
    await world.restart()
    posted = await compared(world, "alice", result)
    assert len(posted.files) == 2


async def test_a_spoilered_result_is_compared_behind_spoilers(world: World) -> None:
    await world.set_settings(nsfw_policy="spoiler")
    result = await result_of(world, png(512, 512, BEFORE), prompt="[nsfw] please")
    assert result.files[0][0].startswith("SPOILER_")
    posted = await compared(world, "alice", result)
    assert [name.startswith("SPOILER_") for name, _, _ in posted.files] == [True, True]


async def test_the_comparison_fits_the_channels_upload_limit(world: World) -> None:
    world.emu.guild.upload_limit = 900 * 1024
    result = await result_of(world, noisy_png(1024, 1024), size="square_hd")
    posted = await compared(world, "alice", result)
    assert sum(len(data) for _, data, _ in posted.files) <= 900 * 1024
    assert len(frames(posted.files[1][1])) >= 2
