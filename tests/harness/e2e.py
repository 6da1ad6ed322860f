"""End-to-end harness: our real bot against both emulators, real sockets, a real database.

A test acts as members through the Discord emulator and reads what they see; fal's side is
the fal emulator. Nothing in the bot is mocked.

The `world` runs on SQLite and, for the modules in POSTGRES_MODULES, also on PostgreSQL (a
fresh database on the session's server, tests/harness/postgres.py): test ids say `sqlite` or
`postgres`. `E2E_BACKENDS=all` runs every e2e module on both.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot import FluxBot, Settings, create_bot
from emulators.discord_emulator import DiscordEmulator
from emulators.discord_emulator.fixtures import running_emulator
from emulators.discord_emulator.interactions import Interaction
from emulators.discord_emulator.messages import Message
from emulators.fal_emulator.fixtures import FAST_POLL, SEED, fast_retry
from emulators.fal_emulator.server import FalEmulator
from storage import Job, JobState, Lora
from tests.harness.images import png
from tests.harness.postgres import ScratchDatabases
from tests.harness.storage_fixtures import BACKENDS, execute

RESULT_TIMEOUT = 15.0

# What a member sees should not depend on the backend; these modules prove it on PostgreSQL
# too (edits and their lifecycle with restarts and recovery, quotas and budget, the registry,
# reruns and iteration, trainings) without running every e2e table twice.
POSTGRES_MODULES = frozenset(
    {
        "test_edit_e2e",
        "test_fair_queue_e2e",
        "test_edit_lifecycle_e2e",
        "test_quotas_e2e",
        "test_registry_e2e",
        "test_iterate_e2e",
        "test_faults_discord",
        "test_training_e2e",
    }
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Give every test that uses `world` its database backend(s) as `e2e_backend`."""
    if "e2e_backend" not in metafunc.fixturenames:
        return
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    every = os.environ.get("E2E_BACKENDS", "").lower() == "all"
    backends = BACKENDS if every or module in POSTGRES_MODULES else ("sqlite",)
    # A module whose tests choose their database themselves pins it: E2E_BACKENDS = (...).
    backends = getattr(metafunc.module, "E2E_BACKENDS", backends)
    metafunc.parametrize("e2e_backend", backends)


@dataclass
class World:
    emu: DiscordEmulator
    fal: FalEmulator
    settings: Settings
    bot: FluxBot
    options: dict[str, Any] = field(default_factory=dict)

    def make_bot(self) -> FluxBot:
        return create_bot(
            self.settings,
            guild_ready_timeout=0.1,
            fal_options={"poll": FAST_POLL, "retry": fast_retry()},
        )

    async def restart(self) -> FluxBot:
        self.bot = await self.emu.restart_bot(self.make_bot)
        return self.bot

    async def set_settings(self, **changes: Any) -> None:
        """Change the test server's policy as an admin command would."""
        guild = self.emu.guild.id
        current = await self.bot.storage.settings.get(guild)
        await self.bot.storage.settings.save(guild, current.model_copy(update=changes))

    async def usage(self, member: str = "alice") -> tuple[int, int]:
        """(images used in the last 24 h, jobs in flight) for a member of the test server."""
        got = await self.bot.storage.quotas.usage(
            self.emu.guild.id, self.emu.member(member).id, 86400
        )
        return got.images_used, got.in_flight

    async def add_lora(
        self,
        name: str = "claymation",
        *,
        path: str = "owner/claymation",
        triggers: tuple[str, ...] = (),
        scale: float = 1.0,
        description: str = "Turns anything into clay",
        nsfw: bool = False,
        guild_id: int | None = None,
    ) -> Lora:
        return await self.bot.storage.loras.add(
            guild_id or self.emu.guild.id,
            name,
            path,
            default_scale=scale,
            trigger_words=list(triggers),
            description=description,
            nsfw=nsfw,
            actor_id=self.emu.member("carol").id,
        )

    async def edit(
        self,
        member: str = "alice",
        channel: str = "general",
        prompt: str = "make it clay",
        images: list[bytes] | None = None,
        **options: Any,
    ) -> Interaction:
        files = images if images is not None else [png()]
        names = ["image", "image2", "image3"]
        attachments = {
            names[i]: self.emu.attachment(data, f"input{i + 1}.png") for i, data in enumerate(files)
        }
        return await self.emu.slash(
            self.emu.member(member),
            self.emu.channel(channel),
            "edit",
            {"prompt": prompt, **options},
            attachments=attachments,
        )

    async def reply_text(self, ix: Interaction) -> str:
        """The ephemeral answer the member reads after a deferred command."""
        callback = await ix.response()
        if callback.type == 4:
            return str((callback.data or {}).get("content", ""))
        message = await ix.wait_followup()
        return message.content

    async def result(self, channel: str = "general", within: float = RESULT_TIMEOUT) -> Message:
        return await self.emu.wait_for_message(
            self.emu.channel(channel), lambda m: bool(m.files), timeout=within
        )

    async def job_in(self, job_id: int, *states: str, within: float = RESULT_TIMEOUT) -> Job:
        async with asyncio.timeout(within):
            return await self.bot.jobs.wait_for_state(job_id, *(JobState(s) for s in states))

    async def execute(self, sql: str, *params: Any) -> None:
        """Change the bot's database behind its back (`?` placeholders), on either backend:
        what a crash or an operator could leave there."""
        await execute(self.settings.database_location(), sql, *params)


async def start_world(
    discord_emulator: DiscordEmulator,
    fal_emulator: FalEmulator,
    folder: Path,
    database_url: str | None = None,
    **overrides: Any,
) -> World:
    """Our bot, started against both emulators, with its database under `folder` (SQLite) or
    at `database_url` (PostgreSQL; outputs still go under `folder`); `overrides` are more
    settings."""
    settings = Settings(
        **discord_emulator.settings_overrides(),
        fal_key=fal_emulator.key,
        fal_queue_url=fal_emulator.queue_url,
        fal_rest_url=fal_emulator.rest_url,
        fal_cdn_url=fal_emulator.cdn_url,
        database_path=folder / "data" / "bot.sqlite3",
        database_url=database_url,
        database_pool_size=4,
        **overrides,
    )
    (folder / "data").mkdir(parents=True, exist_ok=True)  # outputs and tools live there too
    shell = World(discord_emulator, fal_emulator, settings, bot=None)  # type: ignore[arg-type]
    shell.bot = await discord_emulator.start_bot(shell.make_bot())
    return shell


@pytest.fixture
async def e2e_database(
    e2e_backend: str, request: pytest.FixtureRequest
) -> AsyncIterator[str | None]:
    """None for SQLite (the file lives in the test's folder), else a new PostgreSQL database."""
    if e2e_backend == "sqlite":
        yield None
        return
    databases: ScratchDatabases = request.getfixturevalue("postgres_databases")
    url = await databases.create()
    try:
        yield url
    finally:
        await databases.drop(url)


@pytest.fixture
async def world(
    e2e_database: str | None,
    discord_emulator: DiscordEmulator,
    fal_emulator: FalEmulator,
    tmp_path: Path,
) -> AsyncIterator[World]:
    yield await start_world(discord_emulator, fal_emulator, tmp_path, e2e_database)
    # the emulator fixture stops the bot; its close() stops the job tasks


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """One World shared by every test of a module: for tables of independent rows, where a
    bot per row would cost more than the rows. The module's tests must run in the module's
    event loop: `pytestmark = pytest.mark.asyncio(loop_scope="module")`."""
    async with running_emulator() as discord_emulator, FalEmulator(seed=SEED) as fal_emulator:
        yield await start_world(discord_emulator, fal_emulator, tmp_path_factory.mktemp("world"))
        # leaving the emulators stops the bot (fal first, as the function fixtures do)


def is_status(message: Message) -> bool:
    return message.content.startswith("**Edit #") and not message.files
