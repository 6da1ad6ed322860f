"""Issue 11: a table of named bad inputs across every surface a member or admin can type into.

Each row acts through the Discord emulator (real discord.py, real httpx, real SQLite) and then
checks the same four things:

1. the member reads the row's specific message, privately (ephemeral; a 🔁 refusal is a short
   public reply that mentions only the member, as Discord allows nothing private there);
2. no job row was written and fal received no submission;
3. nothing was charged (the member's usage and the server's spend are unchanged) and nothing
   else changed either (server settings, the LoRA registry, no public message);
4. the bot serves the next request normally: a valid /edit by the same member delivers.

Rows marked `raw` are what a modified client sends: Discord's own client refuses them (the
emulator's `slash` raises EmulatorError), but nothing stops a modified client, so the bot
answers them too. A few inputs are accepted by design; their row says so and checks what
acceptance must mean (a PNG named .jpg is sniffed as PNG; SQL metacharacters are stored
verbatim; mentions never ping; the context menu edits the first three of four images and says
so). The figures of the run are printed at the end of the session.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from emulators.discord_emulator.interactions import MODAL_SUBMIT, Interaction
from emulators.discord_emulator.messages import Attachment, Message
from emulators.discord_emulator.world import Member
from storage import GuildSettings
from tests.harness.e2e import World, is_status
from tests.harness.images import animated_gif, bomb_png, png
from tests.harness.security_fixtures import TALLY, modal_fields, raw_slash

CONTEXT_MENU = "Edit with FLUX.2 LoRA…"
INVISIBLE_NAME = "LoRA names can't contain invisible or direction-changing characters"
BAD_NAME = "isn't a valid LoRA name: use 1–32 characters"
SQL = "x'); DROP TABLE jobs; --"


@functools.cache
def bomb() -> bytes:
    return bomb_png(20_000)  # 400 MP that compress to a few dozen KB


@functools.cache
def over_cap() -> bytes:
    return bomb_png(7_000)  # 49 MP: under Pillow's bomb guard, over our 40 MP cap


@dataclass
class Answer:
    text: str
    private: bool
    ix: Interaction | None = None  # the interaction answered, to count what the member read


@dataclass
class Snapshot:
    jobs: int
    tables: list[str]
    submissions: int
    images_used: int
    in_flight: int
    spend: float
    settings: GuildSettings
    loras: list[tuple[Any, ...]]
    public: set[int]


class Desk:
    """Acts as members and reads what they see; the rows are written against it."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.emu = world.emu
        self.guild = world.emu.guild.id
        self.result: Message | None = None  # alice's delivered edit with `clay`
        self.orphan: Message | None = None  # alice's delivered edit whose LoRA was removed

    def who(self, name: str) -> Member:
        return self.emu.member(name)

    def file(self, data: bytes, name: str = "input.png", ctype: str | None = None) -> Attachment:
        return self.emu.attachment(data, name, content_type=ctype)

    async def answer(self, ix: Interaction) -> Answer:
        text = await self.world.reply_text(ix)
        return Answer(text, ix.ephemeral, ix)

    async def slash(
        self,
        who: str,
        command: str,
        options: dict[str, Any] | None = None,
        *,
        files: dict[str, Attachment] | None = None,
        channel: str = "general",
    ) -> Answer:
        """What Discord's own client sends."""
        ix = await self.emu.slash(
            self.who(who), self.emu.channel(channel), command, options, attachments=files
        )
        return await self.answer(ix)

    async def raw(
        self,
        who: str,
        command: str,
        options: dict[str, Any] | None = None,
        *,
        files: dict[str, Attachment] | None = None,
        dm: bool = False,
    ) -> Answer:
        """What a modified client sends: no type, range, choice or context checks."""
        member = self.who(who)
        channel = self.emu.dm_channel(member) if dm else self.emu.channel("general")
        ix = raw_slash(self.emu, member, channel, command, options, attachments=files)
        return await self.answer(ix)

    async def edit(self, who: str = "alice", **options: Any) -> Answer:
        files = options.pop("files", None) or {"image": self.file(png())}
        return await self.slash(who, "edit", {"prompt": "make it clay", **options}, files=files)

    async def raw_edit(self, who: str = "alice", **options: Any) -> Answer:
        files = options.pop("files", None) or {"image": self.file(png())}
        return await self.raw(who, "edit", {"prompt": "make it clay", **options}, files=files)

    async def click(self, who: str, message: Message, custom_id: str) -> Answer:
        return await self.answer(await self.emu.click(self.who(who), message, custom_id))

    async def modal(
        self, who: str, message: Message, custom_id: str, values: dict[str, str]
    ) -> Answer:
        """Open a modal with a button and submit it; `values` are keyed by field label."""
        opened = await self.emu.click(self.who(who), message, custom_id)
        return await self.submit(who, opened, values)

    async def submit(
        self, who: str, opened: Interaction, values: dict[str, str], *, raw: bool = False
    ) -> Answer:
        await opened.response()
        assert opened.modal is not None, f"{opened!r} opened no modal"
        fields = modal_fields(opened.modal)
        by_id = {fields[label][0]: value for label, value in values.items()}
        if not raw:
            return await self.answer(await self.emu.submit_modal(self.who(who), opened, by_id))
        # A modified client can exceed the modal's max_length; Discord's client cannot.
        rows = [
            {
                "type": 1,
                "components": [{"type": 4, "custom_id": cid, "value": by_id.get(cid, default)}],
            }
            for cid, default in fields.values()
        ]
        member = self.who(who)
        ix = self.emu.state.responses.new_interaction(
            type=MODAL_SUBMIT,
            name=opened.modal["custom_id"],
            user=member.user,
            member=member,
            channel=opened.channel,
            data={"custom_id": opened.modal["custom_id"], "components": rows},
            message=opened.message,
        )
        return await self.answer(ix)

    async def context(
        self, who: str, files: list[Attachment], prompt: str = "make it clay", loras: str = ""
    ) -> Answer:
        """Post a message with `files`, then 'Edit with FLUX.2 LoRA…' on it."""
        member = self.who(who)
        general = self.emu.channel("general")
        message = self.emu.post_user_message(member, general, "look", files)
        opened = await self.emu.context_menu(member, general, CONTEXT_MENU, message)
        callback = await opened.response()
        if opened.modal is None:  # refused before the modal: the answer is the callback
            return Answer(str(callback.data.get("content", "")), opened.ephemeral, opened)
        values = {"Prompt": prompt, "LoRAs (up to 3, comma-separated)": loras}
        return await self.submit(who, opened, values)

    async def react(self, who: str, message: Message, emoji: str = "🔁") -> Answer:
        member = self.who(who)
        if member.id in message.reactions.get(emoji, set()):
            await self.emu.unreact(member, message, emoji)  # a refusal leaves it in place
        await self.emu.react(member, message, emoji)
        channel = self.emu.world.channel(message.channel_id)
        assert channel is not None
        reply = await self.emu.wait_for_message(
            channel, lambda m: m.content.startswith(member.mention + " ") and not m.files
        )
        assert reply.mentions == [member.id], "a reaction refusal pings only the member"
        return Answer(reply.content, False)

    async def set(self, **changes: Any) -> None:
        current = await self.world.bot.storage.settings.get(self.guild)
        await self.world.bot.storage.settings.save(self.guild, current.model_copy(update=changes))

    async def deliver(self, who: str = "alice", **options: Any) -> tuple[int, Message]:
        """A valid /edit, followed until delivered; returns the job id and the result."""
        answer = await self.edit(who, **options)
        assert "is on its way" in answer.text, answer.text
        job_id = int(answer.text.split("#", 1)[1].split()[0])
        await self.world.job_in(job_id, "delivered")
        result = next(
            m
            for m in self.emu.messages_in(self.emu.channel("general"))
            if m.files and m.embeds and m.embeds[0].get("title") == f"Edit #{job_id}"
        )
        return job_id, result

    # ------------------------------------------------------------------ state

    def _db(self) -> tuple[int, list[str]]:
        path = self.world.settings.database_path
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            jobs = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
                )
            ]
        return int(jobs), tables

    async def snapshot(self, who: str) -> Snapshot:
        storage = self.world.bot.storage
        user = self.who(who).id
        usage = await storage.quotas.usage(self.guild, user, 86_400)
        loras = await storage.loras.list(
            self.guild, include_disabled=True, include_nsfw=True, offset=0, limit=100
        )
        jobs, tables = self._db()
        return Snapshot(
            jobs=jobs,
            tables=tables,
            submissions=len(self.world.fal.submissions()),
            images_used=usage.images_used,
            in_flight=usage.in_flight,
            spend=await storage.quotas.guild_spend(self.guild),
            settings=await storage.settings.get(self.guild),
            loras=[(x.name, x.path, x.enabled, x.version, x.default_scale) for x in loras],
            public={
                m.id
                for m in self.emu.messages_in(self.emu.channel("general"))
                if m.author_id == self.emu.bot_user.id
            },
        )


Act = Callable[[Desk], Awaitable[Answer]]
Hook = Callable[[Desk], Awaitable[None]]
Accepted = Callable[[Desk, Answer], Awaitable[None]]


@dataclass(frozen=True)
class Row:
    name: str
    actor: str
    act: Act
    expect: str
    accepted: Accepted | None = None  # None: refused; else what acceptance must mean
    setup: Hook | None = None
    teardown: Hook | None = None
    private: bool = True


def check_untouched(before: Snapshot, after: Snapshot, *, reply: bool) -> None:
    assert after.jobs == before.jobs, "a job row was written"
    assert after.tables == before.tables, "the schema changed"
    assert after.submissions == before.submissions, "fal received a submission"
    assert (after.images_used, after.in_flight) == (before.images_used, before.in_flight), (
        "the member was charged"
    )
    assert after.spend == before.spend, "the server's spend changed"
    assert after.settings == before.settings, "server settings changed"
    assert after.loras == before.loras, "the LoRA registry changed"
    new = after.public - before.public
    assert len(new) == (1 if reply else 0), f"{len(new)} public message(s) appeared"


async def run_table(world: World, rows: list[Row], prepare: Hook) -> None:
    desk = Desk(world)
    await desk.set(default_quota=1000, max_in_flight=5)
    await world.add_lora("clay", triggers=("CLAY",))
    await world.add_lora("hidden")
    await world.bot.storage.loras.set_enabled(desk.guild, "hidden", False, actor_id=1)
    await world.add_lora("spicy", nsfw=True)
    await prepare(desk)
    failures: list[str] = []
    for row in rows:
        TALLY.tried += 1
        try:
            try:
                if row.setup is not None:
                    await row.setup(desk)
                before = await desk.snapshot(row.actor)
                answer = await row.act(desk)
                if row.expect in answer.text and answer.private == row.private:
                    TALLY.answered += 1
                assert row.expect in answer.text, f"expected {row.expect!r}, read {answer.text!r}"
                assert answer.private == row.private, f"private={answer.private}: {answer.text!r}"
                after = await desk.snapshot(row.actor)
                if row.accepted is None:
                    check_untouched(before, after, reply=not row.private)
                else:
                    await row.accepted(desk, answer)
            finally:
                if row.teardown is not None:
                    await row.teardown(desk)
            await desk.deliver(row.actor)  # the next request is served normally
            if answer.ix is not None and row.accepted is None:
                read = {m.id for m in [answer.ix.original, *answer.ix.followups] if m}
                assert len(read) == 1, f"the member got {len(read)} messages"
            TALLY.passed += 1
        except Exception as error:  # collect every row's failure, then fail once
            failures.append(f"{row.name}: {type(error).__name__}: {error}")
            TALLY.failures.append(f"{row.name}: {error}")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------------------- /edit


async def prompt_stored_verbatim(desk: Desk, answer: Answer) -> None:
    job_id = int(answer.text.split("#", 1)[1].split()[0])
    job = await desk.world.job_in(job_id, "delivered")
    assert job.request["prompt"] == SQL
    assert any(s["prompt"] == SQL for s in desk.world.fal.submissions())
    _, tables = desk._db()
    assert {"jobs", "loras"} <= set(tables)


async def sniffed_as_png(desk: Desk, answer: Answer) -> None:
    job_id = int(answer.text.split("#", 1)[1].split()[0])
    job = await desk.world.job_in(job_id, "delivered")
    [ref] = job.request["inputs"]
    assert ref["content_type"] == "image/png"  # Discord said image/jpeg (from the name)
    stored = [f for f in desk.world.fal.files.values() if f.data == PNG_AS_JPG]
    assert stored and all(f.content_type == "image/png" for f in stored)


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
    assert job.request["prompt"] == MENTIONS


PNG_AS_JPG = png(600, 400, (1, 2, 3))
MENTIONS = "@everyone @here <@&{role}> look"


EDIT_ROWS: list[Row] = [
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
        "edit: zero-byte image",
        "alice",
        lambda d: d.edit(files={"image": d.file(b"", "empty.png")}),
        "image (empty.png) is empty (0 bytes)",
    ),
    Row(
        "edit: truncated PNG",
        "alice",
        lambda d: d.edit(files={"image": d.file(png()[:300], "cut.png")}),
        "image (cut.png) is damaged or cut off",
    ),
    Row(
        "edit: 20,000 × 20,000 PNG (decompression bomb)",
        "alice",
        lambda d: d.edit(files={"image": d.file(bomb(), "bomb.png")}),
        "image (bomb.png) has far more pixels than the limit of 40 MP",
    ),
    Row(
        "edit: 49 MP PNG over the pixel cap",
        "alice",
        lambda d: d.edit(files={"image": d.file(over_cap(), "big.png")}),
        "image (big.png) is 7000×7000 pixels (49 MP); the limit is 40 MP",
    ),
    Row(
        "edit: 10×10 image",
        "alice",
        lambda d: d.edit(files={"image": d.file(png(10, 10), "tiny.png")}),
        "each side needs at least 64",
    ),
    Row(
        "edit: SVG",
        "alice",
        lambda d: d.edit(
            files={"image": d.file(b'<svg xmlns="http://www.w3.org/2000/svg"/>', "v.svg")}
        ),
        "image (v.svg) is an SVG (vector) file, not an image",
    ),
    Row(
        "edit: PDF",
        "alice",
        lambda d: d.edit(files={"image": d.file(b"%PDF-1.7\n1 0 obj\n", "doc.pdf")}),
        "image (doc.pdf) is a PDF, not an image",
    ),
    Row(
        "edit: animated GIF",
        "alice",
        lambda d: d.edit(files={"image": d.file(animated_gif(), "anim.gif")}),
        "is an animated image; send a still image",
    ),
    Row(
        "edit: text file as image2",
        "alice",
        lambda d: d.edit(files={"image": d.file(png()), "image2": d.file(b"hello", "notes.png")}),
        "image2 (notes.png) is not an image I can read",
    ),
    Row(
        "edit: PNG named .jpg (accepted: content is sniffed, not the name)",
        "alice",
        lambda d: d.edit(files={"image": d.file(PNG_AS_JPG, "photo.jpg", "image/jpeg")}),
        "is on its way",
        accepted=sniffed_as_png,
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
        lambda d: d.edit(prompt=MENTIONS),
        "is on its way",
        accepted=mentions_never_ping,
    ),
]


async def no_setup(desk: Desk) -> None:
    return None


async def test_bad_edit_inputs(world: World) -> None:
    global MENTIONS
    MENTIONS = MENTIONS.format(role=world.emu.role("Member").id)
    await run_table(world, EDIT_ROWS, no_setup)


# ------------------------------------------------------------------- /loras, /quota, /jobs

MEMBER_ROWS: list[Row] = [
    Row(
        "loras: zero-width character in the name",
        "alice",
        lambda d: d.slash("alice", "loras", {"name": "cl\u200bay"}),
        INVISIBLE_NAME,
    ),
    Row(
        "loras: right-to-left override in the name",
        "alice",
        lambda d: d.slash("alice", "loras", {"name": "\u202eyalc"}),
        INVISIBLE_NAME,
    ),
    Row(
        "loras: SQL metacharacters in the name",
        "alice",
        lambda d: d.slash("alice", "loras", {"name": "' OR 1=1 --"}),
        BAD_NAME,
    ),
    Row(
        "loras: 7,000-character name (raw)",
        "alice",
        lambda d: d.raw("alice", "loras", {"name": "q" * 7000}),
        "`name` is 7,000 characters; the limit is 6,000.",
    ),
    Row(
        "loras: an NSFW LoRA's card outside an age-restricted channel",
        "alice",
        lambda d: d.slash("alice", "loras", {"name": "spicy"}),
        "This server has no LoRA named `spicy`.",
    ),
    Row(
        "loras: name is a number (raw)",
        "alice",
        lambda d: d.raw("alice", "loras", {"name": 42}),
        "`name` must be text; you gave `42`.",
    ),
    Row(
        "quota: an option /quota doesn't have (raw)",
        "alice",
        lambda d: d.raw("alice", "quota", {"member": "1"}),
        "`/quota` has no option `member`.",
    ),
    Row(
        "quota: in a direct message (raw)",
        "alice",
        lambda d: d.raw("alice", "quota", dm=True),
        "works in a server, not in direct messages",
    ),
    Row(
        "jobs: an option /jobs doesn't have (raw)",
        "alice",
        lambda d: d.raw("alice", "jobs", {"all": True}),
        "`/jobs` has no option `all`.",
    ),
    Row(
        "jobs: in a direct message (raw)",
        "alice",
        lambda d: d.raw("alice", "jobs", dm=True),
        "works in a server, not in direct messages",
    ),
]


async def test_bad_member_command_inputs(world: World) -> None:
    await run_table(world, MEMBER_ROWS, no_setup)


# ----------------------------------------------------------------------------------- /admin


def admin(command: str, options: dict[str, Any] | None = None, *, raw: bool = False) -> Act:
    async def act(desk: Desk) -> Answer:
        if raw:
            return await desk.raw("carol", f"admin {command}", options)
        return await desk.slash("carol", f"admin {command}", options)

    return act


def add(name: str = "newlora", path: str = "owner/new", **more: Any) -> dict[str, Any]:
    return {"name": name, "path": path, **more}


def with_role(command: str, **options: Any) -> Act:
    async def act(desk: Desk) -> Answer:
        return await desk.raw(
            "carol", f"admin {command}", {"role": desk.emu.role("Member"), **options}
        )

    return act


def with_member(command: str, **options: Any) -> Act:
    async def act(desk: Desk) -> Answer:
        return await desk.raw("carol", f"admin {command}", {"member": desk.who("alice"), **options})

    return act


def with_channel(command: str, **options: Any) -> Act:
    async def act(desk: Desk) -> Answer:
        general = desk.emu.channel("general")
        return await desk.raw("carol", f"admin {command}", {"channel": general, **options})

    return act


PRIVATE = "points at a private or local address"

ADMIN_ROWS: list[Row] = [
    Row(
        "admin lora add: zero-width name",
        "carol",
        admin("lora add", add("cl\u200bay2")),
        INVISIBLE_NAME,
    ),
    Row(
        "admin lora add: right-to-left name",
        "carol",
        admin("lora add", add("\u202eyalc")),
        INVISIBLE_NAME,
    ),
    Row(
        "admin lora add: SQL in the name",
        "carol",
        admin("lora add", add("x');DROP TABLE loras;--")),
        BAD_NAME,
    ),
    Row("admin lora add: 33-character name", "carol", admin("lora add", add("n" * 33)), BAD_NAME),
    Row(
        "admin lora add: name taken (case-insensitive)",
        "carol",
        admin("lora add", add("CLAY")),
        "A LoRA named `clay` already exists here",
    ),
    Row(
        "admin lora add: URL with credentials",
        "carol",
        admin("lora add", add(path="https://user:hunter2@example.com/a.safetensors")),
        "The LoRA URL contains credentials",
    ),
    Row(
        "admin lora add: file: URL",
        "carol",
        admin("lora add", add(path="file:///etc/passwd")),
        "`file:` URLs aren't allowed",
    ),
    Row(
        "admin lora add: http URL",
        "carol",
        admin("lora add", add(path="http://example.com/a.safetensors")),
        "`http:` URLs aren't allowed",
    ),
    Row(
        "admin lora add: private IP",
        "carol",
        admin("lora add", add(path="https://10.0.0.7/a.safetensors")),
        PRIVATE,
    ),
    Row(
        "admin lora add: cloud metadata IP",
        "carol",
        admin("lora add", add(path="https://169.254.169.254/a.safetensors")),
        PRIVATE,
    ),
    Row(
        "admin lora add: loopback IPv6",
        "carol",
        admin("lora add", add(path="https://[::1]/a.safetensors")),
        PRIVATE,
    ),
    Row(
        "admin lora add: localhost",
        "carol",
        admin("lora add", add(path="https://localhost/a.safetensors")),
        PRIVATE,
    ),
    Row(
        "admin lora add: decimal IP spelling",
        "carol",
        admin("lora add", add(path="https://2130706433/a.safetensors")),
        PRIVATE,
    ),
    Row(
        "admin lora add: loopback in circled digits (①②⑦.0.0.1)",
        "carol",
        admin("lora add", add(path="https://①②⑦.0.0.1/a.safetensors")),
        PRIVATE + " (127.0.0.1)",
    ),
    Row(
        "admin lora add: carrier-grade NAT address",
        "carol",
        admin("lora add", add(path="https://100.64.0.1/a.safetensors")),
        PRIVATE,
    ),
    Row(
        "admin lora add: local path",
        "carol",
        admin("lora add", add(path="../../etc/passwd")),
        "Local file paths aren't allowed",
    ),
    Row(
        "admin lora add: not a .safetensors URL",
        "carol",
        admin("lora add", add(path="https://example.com/a.exe")),
        "must point at a `.safetensors` file",
    ),
    Row(
        "admin lora add: scale 9 (raw)",
        "carol",
        admin("lora add", add(scale=9.0), raw=True),
        "`scale` must be between 0 and 4; you gave 9.",
    ),
    Row(
        "admin lora add: scale is text (raw)",
        "carol",
        admin("lora add", add(scale="big"), raw=True),
        "`scale` must be a number; you gave `big`.",
    ),
    Row(
        "admin lora add: nsfw is text (raw)",
        "carol",
        admin("lora add", add(nsfw="maybe"), raw=True),
        "`nsfw` must be true or false; you gave `maybe`.",
    ),
    Row(
        "admin lora add: zero-width trigger word",
        "carol",
        admin("lora add", add(triggers="clay\u200b")),
        "Trigger words can't contain invisible characters.",
    ),
    Row(
        "admin lora add: 301-character description",
        "carol",
        admin("lora add", add(description="d" * 301)),
        "The description is 301 characters; the limit is 300.",
    ),
    Row(
        "admin lora add: right-to-left override in the description",
        "carol",
        admin("lora add", add(description="nice \u202eecin")),
        "Descriptions can't contain direction-changing characters",
    ),
    Row(
        "admin lora edit: nothing to change",
        "carol",
        admin("lora edit", {"name": "clay"}),
        "Nothing to change",
    ),
    Row(
        "admin lora edit: unknown LoRA",
        "carol",
        admin("lora edit", {"name": "nope", "scale": 1.0}),
        "This server has no LoRA named `nope`.",
    ),
    Row(
        "admin lora edit: right-to-left new name",
        "carol",
        admin("lora edit", {"name": "clay", "new_name": "\u202eyalc"}),
        INVISIBLE_NAME,
    ),
    Row(
        "admin lora edit: private IP path",
        "carol",
        admin("lora edit", {"name": "clay", "path": "https://192.168.1.1/a.safetensors"}),
        PRIVATE,
    ),
    Row(
        "admin lora disable: zero-width name",
        "carol",
        admin("lora disable", {"name": "cl\u200bay"}),
        INVISIBLE_NAME,
    ),
    Row(
        "admin lora enable: unknown LoRA",
        "carol",
        admin("lora enable", {"name": "nope"}),
        "This server has no LoRA named `nope`.",
    ),
    Row(
        "admin lora remove: right-to-left name",
        "carol",
        admin("lora remove", {"name": "\u202eyalc"}),
        INVISIBLE_NAME,
    ),
    Row(
        "admin quota default: negative (raw)",
        "carol",
        admin("quota default", {"images": -5}, raw=True),
        "`images` must be between 0 and 10,000; you gave -5.",
    ),
    Row(
        "admin quota default: text (raw)",
        "carol",
        admin("quota default", {"images": "ten"}, raw=True),
        "`images` must be a whole number; you gave `ten`.",
    ),
    Row(
        "admin quota default: zero-hour window (raw)",
        "carol",
        admin("quota default", {"images": 5, "window_hours": 0}, raw=True),
        "`window_hours` must be between 1 and 744; you gave 0.",
    ),
    Row(
        "admin quota role: role that isn't resolved (raw)",
        "carol",
        admin("quota role", {"role": "123", "images": 5}, raw=True),
        "`role` must be a role of this server.",
    ),
    Row(
        "admin quota role: -2 images (raw)",
        "carol",
        with_role("quota role", images=-2),
        "`images` must be between -1 and 10,000; you gave -2.",
    ),
    Row(
        "admin quota user: -7 images (raw)",
        "carol",
        with_member("quota user", images=-7),
        "`images` must be between -1 and 10,000; you gave -7.",
    ),
    Row(
        "admin quota exempt: remove is text (raw)",
        "carol",
        with_role("quota exempt", remove="yes"),
        "`remove` must be true or false; you gave `yes`.",
    ),
    Row(
        "admin quota reset: member that isn't resolved (raw)",
        "carol",
        admin("quota reset", {"member": "42"}, raw=True),
        "`member` must be a member of this server.",
    ),
    Row(
        "admin budget set: negative (raw)",
        "carol",
        admin("budget set", {"usd": -1.0}, raw=True),
        "`usd` must be between 0 and 1,000,000; you gave -1.",
    ),
    Row(
        "admin budget set: NaN (raw)",
        "carol",
        admin("budget set", {"usd": "NaN"}, raw=True),
        "`usd` must be a number; you gave `NaN`.",
    ),
    Row(
        "admin budget show: unknown option (raw)",
        "carol",
        admin("budget show", {"month": "1"}, raw=True),
        "`/admin budget show` has no option `month`.",
    ),
    Row(
        "admin settings show: unknown option (raw)",
        "carol",
        admin("settings show", {"all": True}, raw=True),
        "`/admin settings show` has no option `all`.",
    ),
    Row(
        "admin settings rerun: unknown choice (raw)",
        "carol",
        admin("settings rerun", {"who": "evil"}, raw=True),
        "`who` must be one of: anyone, requester. You gave `evil`.",
    ),
    Row(
        "admin settings nsfw: unknown choice (raw)",
        "carol",
        admin("settings nsfw", {"policy": "always"}, raw=True),
        "`policy` must be one of: block, spoiler, allow-in-nsfw-channels.",
    ),
    Row(
        "admin settings channel: unknown rule (raw)",
        "carol",
        with_channel("settings channel", rule="maybe"),
        "`rule` must be one of: allow, deny, clear. You gave `maybe`.",
    ),
    Row(
        "admin settings channel: channel that isn't resolved (raw)",
        "carol",
        admin("settings channel", {"channel": "999", "rule": "deny"}, raw=True),
        "`channel` must be a channel of this server.",
    ),
    Row(
        "admin settings caps: zero images (raw)",
        "carol",
        admin("settings caps", {"max_images": 0}, raw=True),
        "`max_images` must be between 1 and 4; you gave 0.",
    ),
    Row(
        "admin settings caps: 500 jobs in flight (raw)",
        "carol",
        admin("settings caps", {"max_in_flight": 500}, raw=True),
        "`max_in_flight` must be between 1 and 50; you gave 500.",
    ),
    Row(
        "admin settings managers: unknown action (raw)",
        "carol",
        with_role("settings managers", action="promote"),
        "`action` must be one of: add, remove. You gave `promote`.",
    ),
    Row(
        "admin usage: unknown option (raw)",
        "carol",
        admin("usage", {"csv": "x"}, raw=True),
        "`/admin usage` has no option `csv`.",
    ),
    Row(
        "admin jobs: unknown option (raw)",
        "carol",
        admin("jobs", {"all": True}, raw=True),
        "`/admin jobs` has no option `all`.",
    ),
]


async def test_bad_admin_inputs(world: World) -> None:
    await run_table(world, ADMIN_ROWS, no_setup)


# ------------------------------------------------------- buttons, modals, context menu, 🔁


def result_of(desk: Desk) -> Message:
    assert desk.result is not None
    return desk.result


def job_of(message: Message) -> int:
    return int(message.embeds[0]["title"].removeprefix("Edit #"))


def button(who: str, action: str, *, orphan: bool = False) -> Act:
    async def act(desk: Desk) -> Answer:
        message = desk.orphan if orphan else desk.result
        assert message is not None
        return await desk.click(who, message, f"job:{job_of(message)}:{action}")

    return act


def tweak(values: dict[str, str], *, raw: bool = False, orphan: bool = False) -> Act:
    async def act(desk: Desk) -> Answer:
        message = desk.orphan if orphan else desk.result
        assert message is not None
        opened = await desk.emu.click(desk.who("alice"), message, f"job:{job_of(message)}:tweak")
        return await desk.submit("alice", opened, values, raw=raw)

    return act


def context(files: Callable[[Desk], list[Attachment]], loras: str = "") -> Act:
    async def act(desk: Desk) -> Answer:
        return await desk.context("alice", files(desk), loras=loras)

    return act


def react(who: str, *, orphan: bool = False) -> Act:
    async def act(desk: Desk) -> Answer:
        message = desk.orphan if orphan else desk.result
        assert message is not None
        return await desk.react(who, message)

    return act


async def requester_only(desk: Desk) -> None:
    await desk.set(rerun_policy="requester")


async def anyone_reruns(desk: Desk) -> None:
    await desk.set(rerun_policy="anyone")


async def bob_has_no_quota(desk: Desk) -> None:
    await desk.set(user_quotas={desk.who("bob").id: 0})


async def bob_has_quota(desk: Desk) -> None:
    await desk.set(user_quotas={})


class Held:
    """An edit of alice's that fal holds in its queue, and her /jobs list showing it."""

    status: Message
    jobs_list: Message
    job_id: int


HELD = Held()


async def hold_an_edit(desk: Desk) -> None:
    desk.world.fal.queue_delay = 60.0  # fal's queue latency knob: the job waits, undelivered
    answer = await desk.edit("alice", prompt="held in the queue")
    HELD.job_id = int(answer.text.split("#", 1)[1].split()[0])
    general = desk.emu.channel("general")
    HELD.status = await desk.emu.wait_for_message(
        general,
        lambda m: (
            m.content.startswith(f"**Edit #{HELD.job_id}**")
            and f"job:{HELD.job_id}:cancel" in m.custom_ids()
        ),
    )
    listing = await desk.emu.slash(desk.who("alice"), general, "jobs")
    await listing.response()
    assert listing.original is not None
    HELD.jobs_list = listing.original


async def release_the_edit(desk: Desk) -> None:
    job = await desk.world.bot.storage.jobs.get(HELD.job_id)
    if job is not None and job.state not in ("cancelled", "delivered"):
        await desk.click("alice", HELD.status, f"job:{HELD.job_id}:cancel")
    desk.world.fal.queue_delay = 0.0


async def hold_and_cancel(desk: Desk) -> None:
    await hold_an_edit(desk)
    answer = await desk.click("alice", HELD.status, f"job:{HELD.job_id}:cancel")
    assert "is cancelled; you were not charged" in answer.text


async def cancel_by_bob(desk: Desk) -> Answer:
    return await desk.click("bob", HELD.status, f"job:{HELD.job_id}:cancel")


async def stale_cancel(desk: Desk) -> Answer:
    return await desk.click("alice", HELD.jobs_list, f"job:{HELD.job_id}:cancel")


async def first_three_of_four(desk: Desk, answer: Answer) -> None:
    job_id = int(answer.text.split("#", 1)[1].split()[0])
    job = await desk.world.job_in(job_id, "delivered")
    assert len(job.request["inputs"]) == 3
    fetched = [e.data.filename for e in desk.emu.events if e.kind == "cdn_get"]
    assert {"first.png", "second.png", "third.png"} <= set(fetched)
    assert "fourth.png" not in fetched, "the fourth image was downloaded"


def images(*named: tuple[bytes, str, str | None]) -> Callable[[Desk], list[Attachment]]:
    return lambda desk: [desk.file(data, name, ctype) for data, name, ctype in named]


async def with_results(desk: Desk) -> None:
    await desk.world.add_lora("gone")
    _, desk.orphan = await desk.deliver("alice", lora="gone")
    await desk.world.bot.storage.loras.remove(desk.guild, "gone", actor_id=1)
    _, desk.result = await desk.deliver("alice", lora="clay")


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"/>'
REMOVED = "The LoRA `gone` was removed from this server, so this edit can't be rerun."

ITERATE_ROWS: list[Row] = [
    Row(
        "button Rerun: someone else's edit where only requesters may rerun",
        "bob",
        button("bob", "rerun"),
        "On this server only the member who made an edit can rerun it.",
        setup=requester_only,
        teardown=anyone_reruns,
    ),
    Row(
        "button Rerun: a member with no quota",
        "bob",
        button("bob", "rerun"),
        "Your quota on this server is 0 images per 24 h",
        setup=bob_has_no_quota,
        teardown=bob_has_quota,
    ),
    Row(
        "button Rerun: its LoRA was removed",
        "alice",
        button("alice", "rerun", orphan=True),
        REMOVED,
    ),
    Row(
        "button Delete: someone else's result",
        "bob",
        button("bob", "delete"),
        "Only the member who made this edit (or a moderator) can delete it.",
    ),
    Row(
        "button Cancel: someone else's running edit",
        "bob",
        cancel_by_bob,
        "Only the member who started this edit (or a moderator) can cancel it.",
        setup=hold_an_edit,
        teardown=release_the_edit,
    ),
    Row(
        "button Cancel: pressed again on a cancelled edit (stale /jobs list)",
        "alice",
        stale_cancel,
        "This edit is already cancelled; nothing to cancel.",
        setup=hold_and_cancel,
        teardown=release_the_edit,
    ),
    Row(
        "modal Tweak: seed is text",
        "alice",
        tweak({"Seed (empty for a new random one)": "abc"}),
        "Seed must be a whole number; you gave `abc`.",
    ),
    Row(
        "modal Tweak: seed with a right-to-left override",
        "alice",
        tweak({"Seed (empty for a new random one)": "\u202e12a"}),
        "Seed must be a whole number; you gave `12a`.",
    ),
    Row(
        "modal Tweak: negative seed",
        "alice",
        tweak({"Seed (empty for a new random one)": "-5"}),
        "seed must be between 0 and 4,294,967,295; you gave -5.",
    ),
    Row(
        "modal Tweak: seed past 2**32",
        "alice",
        tweak({"Seed (empty for a new random one)": "9999999999"}),
        "you gave 9,999,999,999.",
    ),
    Row(
        "modal Tweak: scale NaN",
        "alice",
        tweak({"Scale of clay": "nan"}),
        "The scale of clay must be between 0 and 4; you gave nan.",
    ),
    Row(
        "modal Tweak: scale is text",
        "alice",
        tweak({"Scale of clay": "lots"}),
        "Scale of clay must be a number; you gave `lots`.",
    ),
    Row("modal Tweak: blank prompt", "alice", tweak({"Prompt": "   "}), "The prompt is empty"),
    Row(
        "modal Tweak: 4,000-character prompt (raw)",
        "alice",
        tweak({"Prompt": "w" * 4000}, raw=True),
        "The prompt is 4,000 characters; the limit is 2,000.",
    ),
    Row(
        "modal Tweak: its LoRA was removed",
        "alice",
        tweak({"Prompt": "again"}, orphan=True),
        REMOVED,
    ),
    Row(
        "modal Use as input: blank prompt",
        "alice",
        lambda d: d.modal(
            "alice",
            result_of(d),
            f"job:{job_of(result_of(d))}:reuse",
            {"Prompt for the next edit": "   "},
        ),
        "The prompt is empty",
    ),
    Row(
        "context menu: four LoRAs",
        "alice",
        context(images((png(), "a.png", None)), "clay, a, b, c"),
        "At most 3 LoRAs can be combined.",
    ),
    Row(
        "context menu: zero-width LoRA name",
        "alice",
        context(images((png(), "a.png", None)), "cl\u200bay"),
        INVISIBLE_NAME,
    ),
    Row(
        "context menu: right-to-left LoRA name with a scale",
        "alice",
        context(images((png(), "a.png", None)), "\u202eyalc:abc"),
        INVISIBLE_NAME,
    ),
    Row(
        "context menu: scale is text",
        "alice",
        context(images((png(), "a.png", None)), "clay:abc"),
        "The scale of clay must be a number; you gave `abc`.",
    ),
    Row(
        "context menu: scale 9",
        "alice",
        context(images((png(), "a.png", None)), "clay:9"),
        "The scale of clay must be between 0 and 4; you gave 9.",
    ),
    Row(
        "context menu: a message with only a PDF",
        "alice",
        context(images((b"%PDF-1.4\n", "doc.pdf", None))),
        "That message has no image attachments to edit.",
    ),
    Row(
        "context menu: an SVG named .png",
        "alice",
        context(images((SVG, "vector.png", "image/png"))),
        "image (vector.png) is an SVG (vector) file, not an image",
    ),
    Row(
        "context menu: a zero-byte image",
        "alice",
        context(images((b"", "empty.png", "image/png"))),
        "image (empty.png) is empty (0 bytes)",
    ),
    Row(
        "context menu: four images (accepted: the first three, and it says so)",
        "alice",
        context(
            images(
                (png(320, 240, (1, 0, 0)), "first.png", None),
                (png(320, 240, (2, 0, 0)), "second.png", None),
                (png(320, 240, (3, 0, 0)), "third.png", None),
                (png(320, 240, (4, 0, 0)), "fourth.png", None),
            )
        ),
        "That message has 4 images; I'm using the first 3.",
        accepted=first_three_of_four,
    ),
    Row(
        "reaction 🔁: someone else's edit where only requesters may rerun",
        "bob",
        react("bob"),
        "On this server only the member who made an edit can rerun it.",
        setup=requester_only,
        teardown=anyone_reruns,
        private=False,
    ),
    Row(
        "reaction 🔁: a member with no quota",
        "bob",
        react("bob"),
        "Your quota on this server is 0 images per 24 h",
        setup=bob_has_no_quota,
        teardown=bob_has_quota,
        private=False,
    ),
    Row(
        "reaction 🔁: its LoRA was removed",
        "alice",
        react("alice", orphan=True),
        REMOVED,
        private=False,
    ),
]


async def test_bad_iteration_inputs(world: World) -> None:
    await run_table(world, ITERATE_ROWS, with_results)
