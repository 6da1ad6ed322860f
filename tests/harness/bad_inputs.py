"""Named bad inputs, one pytest case per row, across every surface a member or admin can type
into. The tables live in tests/e2e/test_bad_*_e2e.py; this module is what they share.

Each row acts through the Discord emulator (real discord.py, real httpx, real SQLite) and then
`check_row` checks the same four things:

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
so).

The rows of one table share one bot (`module_world`, opened once per test module by
`open_desk`): every row leaves the world as it found it apart from its own delivered edit, and
a bot per row would cost more than the rows. Registered as a pytest plugin in conftest.py:
the figures of the run (rows tried, answered with their message, passed) are printed at the
end of the session.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from emulators.discord_emulator.interactions import MODAL_SUBMIT, Interaction
from emulators.discord_emulator.messages import Attachment, Message
from emulators.discord_emulator.world import Member
from storage import GuildSettings
from tests.harness.e2e import World
from tests.harness.images import png
from tests.harness.security_fixtures import modal_fields, raw_slash

CONTEXT_MENU = "Edit with FLUX.2 LoRA…"
INVISIBLE_NAME = "LoRA names can't contain invisible or direction-changing characters"
BAD_NAME = "isn't a valid LoRA name: use 1–32 characters"


@dataclass
class Held:
    """An edit of alice's that fal holds in its queue, and her /jobs list showing it."""

    job_id: int
    status: Message | None = None
    jobs_list: Message | None = None


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
    presets: list[tuple[Any, ...]] = field(default_factory=list)
    sweeps: int = 0


class Desk:
    """Acts as members and reads what they see; the rows are written against it."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.emu = world.emu
        self.guild = world.emu.guild.id
        self.result: Message | None = None  # alice's delivered edit with `clay`
        self.orphan: Message | None = None  # alice's delivered edit whose LoRA was removed
        self.held: Held | None = None  # alice's edit that fal holds in its queue

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

    def _studio(self) -> tuple[list[tuple[Any, ...]], int]:
        """The server presets and how many sweeps were admitted."""
        path = self.world.settings.database_path
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            presets = conn.execute(
                "SELECT guild_id, name, recipe FROM presets ORDER BY id"
            ).fetchall()
            sweeps = conn.execute("SELECT count(*) FROM sweeps").fetchone()[0]
        return [tuple(row) for row in presets], int(sweeps)

    async def snapshot(self, who: str) -> Snapshot:
        storage = self.world.bot.storage
        user = self.who(who).id
        usage = await storage.quotas.usage(self.guild, user, 86_400)
        loras = await storage.loras.list(
            self.guild, include_disabled=True, include_nsfw=True, offset=0, limit=100
        )
        jobs, tables = self._db()
        presets, sweeps = self._studio()
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
            presets=presets,
            sweeps=sweeps,
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
    assert after.presets == before.presets, "the presets changed"
    assert after.sweeps == before.sweeps, "a sweep was admitted"
    new = after.public - before.public
    assert len(new) == (1 if reply else 0), f"{len(new)} public message(s) appeared"


def admin(command: str, options: dict[str, Any] | None = None, *, raw: bool = False) -> Act:
    """carol (an admin) runs `/admin <command>`, as Discord's client or a modified one sends it."""

    async def act(desk: Desk) -> Answer:
        if raw:
            return await desk.raw("carol", f"admin {command}", options)
        return await desk.slash("carol", f"admin {command}", options)

    return act


async def open_desk(world: World) -> Desk:
    """The state every table starts from: generous caps, and the LoRAs `clay` (trigger
    `CLAY`), `hidden` (disabled) and `spicy` (NSFW)."""
    desk = Desk(world)
    await desk.set(default_quota=1000, max_in_flight=5)
    await world.add_lora("clay", triggers=("CLAY",))
    await world.add_lora("hidden")
    await world.bot.storage.loras.set_enabled(desk.guild, "hidden", False, actor_id=1)
    await world.add_lora("spicy", nsfw=True)
    return desk


def row_id(row: Row) -> str:
    """The case id pytest shows: the row's description."""
    return row.name


def check_table(rows: list[Row], at_least: int) -> None:
    """A table keeps every row it had, under names that tell its cases apart."""
    names = [row.name for row in rows]
    assert len(names) >= at_least, f"{len(names)} rows; this table had {at_least}"
    assert len(set(names)) == len(names), "two rows share a name"


async def check_row(desk: Desk, row: Row, item: pytest.Item) -> None:
    """Act out one row and check the four things in this module's docstring."""
    item.user_properties.append(("bad_input", row.name))
    try:
        if row.setup is not None:
            await row.setup(desk)
        before = await desk.snapshot(row.actor)
        answer = await row.act(desk)
        if row.expect in answer.text and answer.private == row.private:
            item.user_properties.append(("bad_input_answered", True))
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


# ---------------------------------------------------------------------------- the figures


def pytest_terminal_summary(terminalreporter: Any) -> None:
    tried = answered = passed = 0
    failures: list[str] = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            properties = dict(getattr(report, "user_properties", ()))
            if "bad_input" not in properties:
                continue
            tried += 1
            answered += "bad_input_answered" in properties
            if report.passed:
                passed += 1
            else:
                crash = getattr(report.longrepr, "reprcrash", None)
                reason = crash.message if crash is not None else str(report.longrepr)
                failures.append(f"{properties['bad_input']}: {reason.splitlines()[0]}")
    if tried:
        terminalreporter.write_sep("-", "bad inputs")
        terminalreporter.write_line(
            f"bad inputs tried: {tried}; answered with their specific message: {answered}; "
            f"also no job, no charge and the next edit delivered: {passed}"
        )
        for failure in failures:
            terminalreporter.write_line(f"  failed: {failure}")
