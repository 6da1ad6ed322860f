"""/edit's options answered with their own message, privately, and nothing else changes: the
prompt, seed, steps, guidance, scale, count, size, format and the other options, out of range
or of the wrong type (also as a modified client sends them), and LoRA names that are unknown,
disabled, NSFW, repeated or spelled with invisible characters. SQL metacharacters and
mentions in the prompt are accepted: stored verbatim, and nobody is pinged. The checks every
row gets are in tests/harness/bad_inputs.py."""

from __future__ import annotations

import pytest
import pytest_asyncio

from tests.harness.bad_inputs import (
    BAD_NAME,
    INVISIBLE_NAME,
    Answer,
    Desk,
    Row,
    check_row,
    check_table,
    open_desk,
    row_id,
)
from tests.harness.e2e import World, is_status
from tests.harness.images import png

SQL = "x'); DROP TABLE jobs; --"
MENTIONS = "@everyone @here <@&{role}> look"


def mentions(desk: Desk) -> str:
    """@everyone, @here and a mention of the server's Member role."""
    return MENTIONS.format(role=desk.emu.role("Member").id)


async def prompt_stored_verbatim(desk: Desk, answer: Answer) -> None:
    job_id = int(answer.text.split("#", 1)[1].split()[0])
    job = await desk.world.job_in(job_id, "delivered")
    assert job.request.prompt == SQL
    assert any(s["prompt"] == SQL for s in desk.world.fal.submissions())
    _, tables = desk._db()
    assert {"jobs", "loras"} <= set(tables)


async def mentions_never_ping(desk: Desk, answer: Answer) -> None:
    job_id = int(answer.text.split("#", 1)[1].split()[0])
    job = await desk.world.job_in(job_id, "delivered")
    general = desk.emu.channel("general")
    mine = [
        m for m in desk.emu.messages_in(general) if f"Edit #{job_id}" in m.content + str(m.embeds)
    ]
    assert mine, "no status or result message"
    for message in mine:
        assert set(message.mentions) <= {desk.who("alice").id}, message.mentions
    status = next(m for m in mine if is_status(m))
    assert "@everyone" not in status.content.replace("@\u200beveryone", "")
    assert job.request.prompt == mentions(desk)


ROWS: list[Row] = [
    Row("edit: blank prompt", "alice", lambda d: d.edit(prompt="   "), "The prompt is empty"),
    Row(
        "edit: prompt of zero-width characters only",
        "alice",
        lambda d: d.edit(prompt="\u200b\u200d\u2066\u202e"),
        "The prompt is empty",
    ),
    Row(
        "edit: 6,001-character prompt (raw)",
        "alice",
        lambda d: d.raw_edit(prompt="x" * 6001),
        "`prompt` is 6,001 characters; the limit is 2,000.",
    ),
    Row(
        "edit: missing prompt (raw)",
        "alice",
        lambda d: d.raw("alice", "edit", {}, files={"image": d.file(png())}),
        "`/edit` needs `prompt`.",
    ),
    Row(
        "edit: seed is text (raw)",
        "alice",
        lambda d: d.raw_edit(seed="abc"),
        "`seed` must be a whole number; you gave `abc`.",
    ),
    Row(
        "edit: negative seed (raw)",
        "alice",
        lambda d: d.raw_edit(seed=-1),
        "`seed` must be between 0 and 4,294,967,295; you gave -1.",
    ),
    Row(
        "edit: seed past 2**32 (raw)",
        "alice",
        lambda d: d.raw_edit(seed=2**40),
        "`seed` must be between 0 and 4,294,967,295; you gave 1,099,511,627,776.",
    ),
    Row(
        "edit: fractional steps (raw)",
        "alice",
        lambda d: d.raw_edit(steps=3.5),
        "`steps` must be a whole number; you gave `3.5`.",
    ),
    Row(
        "edit: zero steps (raw)",
        "alice",
        lambda d: d.raw_edit(steps=0),
        "`steps` must be between 4 and 50; you gave 0.",
    ),
    Row(
        "edit: infinite guidance (raw)",
        "alice",
        lambda d: d.raw_edit(guidance=float("inf")),
        "`guidance` must be a number; you gave `inf`.",
    ),
    Row(
        "edit: guidance is text (raw)",
        "alice",
        lambda d: d.raw_edit(guidance="NaN"),
        "`guidance` must be a number; you gave `NaN`.",
    ),
    Row(
        "edit: negative LoRA scale (raw)",
        "alice",
        lambda d: d.raw_edit(lora="clay", scale=-1.0),
        "`scale` must be between 0 and 4; you gave -1.",
    ),
    Row(
        "edit: 99 images (raw)",
        "alice",
        lambda d: d.raw_edit(count=99),
        "`count` must be between 1 and 4; you gave 99.",
    ),
    Row(
        "edit: unknown size preset (raw)",
        "alice",
        lambda d: d.raw_edit(size="huge"),
        "`size` must be one of: Match image 1",
    ),
    Row(
        "edit: BMP output format (raw)",
        "alice",
        lambda d: d.raw_edit(format="bmp"),
        "`format` must be one of: PNG, JPEG, WebP. You gave `bmp`.",
    ),
    Row(
        "edit: unknown acceleration (raw)",
        "alice",
        lambda d: d.raw_edit(acceleration="turbo"),
        "`acceleration` must be one of:",
    ),
    Row(
        "edit: expand_prompt is text (raw)",
        "alice",
        lambda d: d.raw_edit(expand_prompt="yes"),
        "`expand_prompt` must be true or false; you gave `yes`.",
    ),
    Row(
        "edit: 10×10 output (raw)",
        "alice",
        lambda d: d.raw_edit(width=10, height=10),
        "`width` must be between 512 and 2,048; you gave 10.",
    ),
    Row(
        "edit: width without height",
        "alice",
        lambda d: d.edit(width=1024),
        "You gave a width without a height",
    ),
    Row(
        "edit: size preset and width together",
        "alice",
        lambda d: d.edit(size="square", width=800, height=800),
        "Choose either a size preset or width and height, not both.",
    ),
    Row(
        "edit: an option /edit doesn't have (raw)",
        "alice",
        lambda d: d.raw_edit(strength=0.5),
        "`/edit` has no option `strength`.",
    ),
    Row(
        "edit: image option is not an upload (raw)",
        "alice",
        lambda d: d.raw("alice", "edit", {"prompt": "p", "image": "1234"}),
        "`image` must be an uploaded file.",
    ),
    Row(
        "edit: in a direct message (raw)",
        "alice",
        lambda d: d.raw("alice", "edit", {"prompt": "p"}, files={"image": d.file(png())}, dm=True),
        "works in a server, not in direct messages",
    ),
    Row("edit: unknown LoRA", "alice", lambda d: d.edit(lora="nope"), "no LoRA named `nope`"),
    Row(
        "edit: zero-width character in a LoRA name",
        "alice",
        lambda d: d.edit(lora="cl\u200bay"),
        INVISIBLE_NAME,
    ),
    Row(
        "edit: right-to-left override in a LoRA name",
        "alice",
        lambda d: d.edit(lora="\u202eyalc"),
        INVISIBLE_NAME,
    ),
    Row(
        "edit: SQL metacharacters in a LoRA name",
        "alice",
        lambda d: d.edit(lora="clay'; DROP TABLE loras;--"),
        BAD_NAME,
    ),
    Row("edit: 5,000-character LoRA name", "alice", lambda d: d.edit(lora="z" * 5000), BAD_NAME),
    Row("edit: disabled LoRA", "alice", lambda d: d.edit(lora="hidden"), "is disabled"),
    Row(
        "edit: NSFW LoRA outside an age-restricted channel",
        "alice",
        lambda d: d.edit(lora="spicy"),
        "The LoRA `spicy` is marked NSFW",
    ),
    Row(
        "edit: same LoRA twice",
        "alice",
        lambda d: d.edit(lora="clay", lora2="CLAY"),
        "You picked the LoRA `CLAY` twice",
    ),
    Row(
        "edit: SQL metacharacters in the prompt (accepted, stored verbatim)",
        "alice",
        lambda d: d.edit(prompt=SQL),
        "is on its way",
        accepted=prompt_stored_verbatim,
    ),
    Row(
        "edit: @everyone, @here and a role mention in the prompt (accepted, nobody pinged)",
        "alice",
        lambda d: d.edit(prompt=mentions(d)),
        "is on its way",
        accepted=mentions_never_ping,
    ),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def desk(module_world: World) -> Desk:
    """One bot for the whole table; see tests/harness/bad_inputs.py."""
    return await open_desk(module_world)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("row", ROWS, ids=row_id)
async def test_bad_edit_option(desk: Desk, row: Row, request: pytest.FixtureRequest) -> None:
    await check_row(desk, row, request.node)


def test_the_table_keeps_every_row() -> None:
    check_table(ROWS, at_least=33)
