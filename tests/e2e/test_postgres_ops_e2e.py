"""Running on PostgreSQL as an operator does: moving a SQLite database over with
`bot.py migrate-to-postgres` and serving members from the copy, `bot.py check` naming the
backend, and one clear line (never the password) when DATABASE_URL is wrong or unreachable."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from emulators.discord_emulator import DiscordEmulator
from emulators.discord_emulator.messages import Message
from storage.schema import load_migrations
from tests.harness.e2e import World
from tests.harness.postgres import ScratchDatabases

# The world starts on SQLite; the migration test moves it to PostgreSQL itself.
E2E_BACKENDS = ("sqlite",)

ROOT = Path(__file__).resolve().parents[2]
RERUN = "🔁"
PASSWORD = "s3cret-pa55word"
LATEST = load_migrations()[-1].version


@pytest.fixture
async def target(postgres_databases: ScratchDatabases) -> Any:
    """An empty PostgreSQL database (set up before the world, so dropped after its bot)."""
    url = await postgres_databases.create()
    yield url
    await postgres_databases.drop(url)


async def bot_py(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> tuple[int, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("DISCORD_", "FAL_", "DATABASE_"))
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bot.py"),
        *args,
        cwd=str(cwd),
        env={**base, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=90)
    return process.returncode or 0, out.decode()


async def slash(world: World, member: str, command: str, **options: Any) -> str:
    emu = world.emu
    ix = await emu.slash(emu.member(member), emu.channel("general"), command, options)
    return await world.reply_text(ix)


async def result_with_reaction(world: World, title: str) -> Message:
    result = await world.emu.wait_for_message(
        world.emu.channel("general"),
        lambda m: bool(m.files) and bool(m.embeds) and m.embeds[0].get("title") == title,
        timeout=15,
    )
    bot_id = world.emu.bot_user.id
    await world.emu.wait_for(
        "reaction_add", lambda e: e[0].id == result.id and e[1] == bot_id and e[2] == RERUN
    )
    return result


async def test_a_migrated_database_serves_members_as_before(target: str, world: World) -> None:
    # Months on SQLite: a LoRA, a quota, a delivered edit that used an image.
    await world.add_lora("claymation", triggers=("CLAY",), scale=0.8)
    answer = await slash(world, "carol", "admin quota default", images=3, window_hours=12)
    assert "3" in answer
    ix = await world.edit("alice", lora="claymation", seed=1234)
    assert "is on its way" in await world.reply_text(ix)
    original = await result_with_reaction(world, "Edit #1")
    await world.job_in(1, "delivered")
    await world.emu.stop_bot()

    code, out = await bot_py(
        "migrate-to-postgres", "--from", str(world.settings.database_path), "--to", target
    )
    assert code == 0, out
    assert "jobs: 1 rows copied" in out and "loras: 1 rows copied" in out
    assert "quota_ledger: 1 rows copied" in out and "guild_settings: 1 rows copied" in out
    assert out.strip().splitlines()[-1].startswith("done: ")

    again, refusal = await bot_py(
        "migrate-to-postgres", "--from", str(world.settings.database_path), "--to", target
    )
    assert again == 1
    assert "not empty" in refusal

    # The bot on the copy: the quota counts the migrated image, 🔁 reruns the old result.
    world.settings = world.settings.model_copy(update={"database_url": SecretStr(target)})
    world.bot = await world.emu.start_bot(world.make_bot())
    assert world.bot.storage.backend == "postgresql"
    quota = await slash(world, "alice", "quota")
    assert "You've used 1 of 3 images in the last 12 h; 2 left." in quota
    await world.emu.react(world.emu.member("alice"), original, RERUN)
    rerun = await result_with_reaction(world, "Edit #2")
    assert "claymation" in str(rerun.embeds[0])
    job = await world.bot.storage.jobs.get(2)
    assert job is not None and job.parent_job_id == 1
    first, second = world.fal.submissions()
    assert second["loras"] == first["loras"] and second["seed"] != 1234
    assert "You've used 2 of 3 images" in await slash(world, "alice", "quota")


async def test_check_names_the_backend_its_version_and_the_schema(
    target: str, tmp_path: Path
) -> None:
    env = {"DISCORD_TOKEN": "token.for.check", "FAL_KEY": "id:secret"}
    code, out = await bot_py(
        "check", "--offline", env={**env, "DATABASE_URL": target}, cwd=tmp_path
    )
    assert code == 0, out
    line = next(line for line in out.splitlines() if line.startswith("database: "))
    assert line.startswith("database: OK, PostgreSQL 18.")
    assert line.endswith(f", schema {LATEST}")

    code, out = await bot_py("check", "--offline", env=env, cwd=tmp_path)
    assert code == 0, out
    line = next(line for line in out.splitlines() if line.startswith("database: "))
    assert line.startswith("database: OK, SQLite 3.")
    assert f"bot.sqlite3, schema {LATEST}" in line


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"mysql://bot:{PASSWORD}@db:3306/bot", "must start with postgresql://"),
        (f"postgresql://bot:{PASSWORD}@db:port/bot", "has a port that is not a number"),
        (f"postgresql://bot:{PASSWORD}@db:5432/", "must name the database"),
    ],
    ids=["not-postgres", "bad-port", "no-database"],
)
async def test_a_malformed_database_url_is_one_line_and_exit_2(
    url: str, problem: str, tmp_path: Path
) -> None:
    env = {"DISCORD_TOKEN": "token.for.check", "FAL_KEY": "id:secret", "DATABASE_URL": url}
    code, out = await bot_py(env=env, cwd=tmp_path)
    assert code == 2
    assert out.splitlines()[0].startswith(f"DATABASE_URL is malformed: {problem}")
    assert len([line for line in out.splitlines() if "DATABASE_URL" in line]) == 1
    assert PASSWORD not in out


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens there once closed


async def test_an_unreachable_server_is_one_line_naming_host_and_port_and_exit_1(
    discord_emulator: DiscordEmulator, tmp_path: Path
) -> None:
    port = closed_port()
    env = {
        **discord_emulator.bot_env(),
        "FAL_KEY": "id:secret",
        "DATABASE_URL": f"postgresql://bot:{PASSWORD}@127.0.0.1:{port}/bot",
    }
    code, out = await bot_py(env=env, cwd=tmp_path)
    assert code == 1, out
    errors = [line for line in out.splitlines() if "database" in line.lower()]
    assert len(errors) == 1, out
    assert f"cannot reach PostgreSQL at 127.0.0.1:{port} (DATABASE_URL)" in errors[0]
    assert "Traceback" not in out
    assert PASSWORD not in out

    code, out = await bot_py("check", "--offline", env=env, cwd=tmp_path)
    assert code == 1
    assert f"database: FAILED, cannot reach PostgreSQL at 127.0.0.1:{port}" in out
    assert PASSWORD not in out
