"""SHARD_COUNT and SHARD_IDS: the layouts that start, the ones refused with one line and exit
status 2, the AutoShardedBot they configure, and IDENTIFY pacing by Discord's limit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot import create_bot
from settings import Settings, describe_settings_error
from sharding import IdentifyPacer, describe_shards, shard_of

ROOT = Path(__file__).resolve().parents[2]
BASE = {"discord_token": "token.value", "fal_key": "id:secret"}
POSTGRES = "postgresql://bot@db.internal/flux"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper() in {f.upper() for f in Settings.model_fields}:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


@pytest.mark.parametrize(
    ("env", "count", "ids"),
    [
        ({}, None, None),
        ({"SHARD_COUNT": "4"}, 4, None),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "0-3"}, 4, (0, 1, 2, 3)),
        ({"SHARD_COUNT": "2", "SHARD_IDS": " 1 , 0 "}, 2, (0, 1)),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "0,2", "DATABASE_URL": POSTGRES}, 4, (0, 2)),
        ({"SHARD_COUNT": "8", "SHARD_IDS": "0-1,6", "DATABASE_URL": POSTGRES}, 8, (0, 1, 6)),
        ({"SHARD_COUNT": "4", "SHARD_IDS": ""}, 4, None),
    ],
    ids=[
        "unset",
        "count-only",
        "range-covers-all",
        "list-covers-all",
        "split-on-postgres",
        "range-and-list",
        "empty-ids",
    ],
)
def test_shard_layouts_that_start(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], count: int | None, ids: tuple[int, ...]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(**BASE)
    assert (settings.shard_count, settings.shard_ids) == (count, ids)


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"SHARD_COUNT": "4", "SHARD_IDS": "0-1"},
            "SHARD_IDS runs 2 of the 4 shards here, so other processes run the rest, and they "
            "must share one PostgreSQL database: set DATABASE_URL",
        ),
        (
            {"SHARD_COUNT": "2", "SHARD_IDS": "1-2", "DATABASE_URL": POSTGRES},
            "SHARD_IDS names shard 2, outside SHARD_COUNT=2 (shards are numbered 0 to 1).",
        ),
        ({"SHARD_IDS": "0"}, "SHARD_IDS needs SHARD_COUNT"),
        ({"SHARD_COUNT": "0"}, "SHARD_COUNT is malformed"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "first"}, "SHARD_IDS is malformed: must list shard"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "3-1"}, "SHARD_IDS is malformed: has the range 3-1"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "0,1,1"}, "SHARD_IDS is malformed: names shard 1 twice"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "-1"}, "SHARD_IDS is malformed: must list shard"),
    ],
    ids=[
        "split-on-sqlite",
        "outside-count",
        "ids-without-count",
        "zero-count",
        "not-numbers",
        "backwards-range",
        "repeated",
        "negative",
    ],
)
def test_refused_layouts_get_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], line: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError) as info:
        Settings(**BASE)
    lines = describe_settings_error(info.value)
    assert len(lines) == 1
    assert lines[0].startswith(line)


def test_the_bot_refuses_sqlite_split_across_processes_with_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k.upper() not in {f.upper() for f in BASE}}
    env |= {"DISCORD_TOKEN": "token.value", "FAL_KEY": "id:secret"}
    env |= {"SHARD_COUNT": "2", "SHARD_IDS": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bot.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    first = done.stderr.splitlines()[0]
    assert first.startswith("SHARD_IDS runs 1 of the 2 shards here")
    assert "DATABASE_URL" in first


@pytest.mark.parametrize(
    ("changes", "count", "ids"),
    [({}, None, None), ({"shard_count": 4, "shard_ids": (0, 1, 2, 3)}, 4, [0, 1, 2, 3])],
    ids=["unset-asks-discord", "from-settings"],
)
def test_create_bot_makes_an_auto_sharded_bot(
    tmp_path: Path, changes: dict[str, object], count: int | None, ids: list[int] | None
) -> None:
    settings = Settings(**BASE, database_path=tmp_path / "bot.sqlite3", **changes)  # type: ignore[arg-type]
    bot = create_bot(settings)
    assert (bot.shard_count, bot.shard_ids) == (count, ids)


def test_guilds_and_shards() -> None:
    guild = (123_456 << 22) | 99
    assert shard_of(guild, 1) == 0
    assert shard_of(guild, 4) == 123_456 % 4
    assert describe_shards([6, 0, 1, 2, 3]) == "0-3,6"
    assert describe_shards([0, 2]) == "0,2"


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(round(seconds, 3))
        self.now += seconds


@pytest.mark.parametrize(
    ("max_concurrency", "shards", "waits"),
    [
        (1, [0, 1, 2], [5.0, 5.0]),  # one bucket: 5 s apart
        (16, [0, 1, 2], []),  # a bucket each: no wait
        (2, [0, 1, 2, 3], [5.0]),  # 2 shares 0's bucket; 3 then shares 1's, already 5 s old
        (1, [2, 3], [5.0]),  # the first shard need not be 0
    ],
    ids=["one-bucket", "bucket-each", "two-buckets", "starts-at-2"],
)
async def test_identify_waits_only_for_its_bucket(
    max_concurrency: int, shards: list[int], waits: list[float]
) -> None:
    time = FakeTime()
    asked: list[int] = []

    async def limits() -> int:
        asked.append(max_concurrency)
        return max_concurrency

    pacer = IdentifyPacer(limits, clock=time.clock, sleep=time.sleep)
    for shard in shards:
        await pacer.before_identify(shard)
    assert time.waits == waits
    assert len(asked) == 1  # asked once, when a second IDENTIFY came


async def test_identify_without_the_limit_is_5_s_apart() -> None:
    time = FakeTime()

    async def unreachable() -> int:
        raise OSError("gateway unreachable")

    pacer = IdentifyPacer(unreachable, clock=time.clock, sleep=time.sleep)
    await pacer.before_identify(0)
    time.now += 2.0
    await pacer.before_identify(1)
    assert time.waits == [3.0]
