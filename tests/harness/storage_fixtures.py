"""Fixtures for storage tests: a real database per test on each backend, and a clock.

`backend` is parametrized ("sqlite", "postgres"), so every test that uses `database` or
`storage` runs on both and its id says which. `database` is where the test's data lives: a new
SQLite file (`storage_path`) or a new PostgreSQL database on the session's server
(tests/harness/postgres.py). A module that tests only SQLite overrides `backend`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from storage import NewJob, QuotaLimits, Storage
from storage.dialect import arguments
from storage.postgres import is_postgres_url
from tests.harness.postgres import ScratchDatabases, start_scratch_databases

T0 = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
BACKENDS = ("sqlite", "postgres")


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[ScratchDatabases]:
    """The session's PostgreSQL server (started on first use, stopped at the end)."""
    databases = start_scratch_databases()
    try:
        yield databases
    finally:
        databases.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def storage_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "bot.sqlite3"


@pytest.fixture
async def database(
    backend: str, storage_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """A new, empty database on the test's backend: a file path or a postgresql:// URL."""
    if backend == "sqlite":
        yield str(storage_path)
        return
    databases: ScratchDatabases = request.getfixturevalue("postgres_databases")
    url = await databases.create()
    try:
        yield url
    finally:
        await databases.drop(url)


@pytest.fixture
async def fresh_database(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    """A factory of further new databases on the test's backend (all dropped afterwards)."""
    made: list[str] = []
    databases: ScratchDatabases | None = None

    async def make() -> str:
        nonlocal databases
        if backend == "sqlite":
            made.append(str(tmp_path / f"extra-{len(made)}" / "bot.sqlite3"))
            return made[-1]
        if databases is None:
            databases = request.getfixturevalue("postgres_databases")
        made.append(await databases.create())
        return made[-1]

    yield make
    if databases is not None:
        for url in made:
            await databases.drop(url)


@pytest.fixture
async def storage(database: str) -> AsyncIterator[Storage]:
    opened = await Storage.open(database)
    try:
        yield opened
    finally:
        await opened.close()


async def query(location: str | Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of one statement (`?` placeholders), read straight from the database at
    `location` with the plain driver, not through storage/."""
    if is_postgres_url(location):
        text, args = arguments(sql, params)
        conn = await asyncpg.connect(str(location))
        try:
            return [tuple(row) for row in await conn.fetch(text, *args)]
        finally:
            await conn.close()
    with closing(sqlite3.connect(location, isolation_level=None)) as conn:
        return [tuple(row) for row in conn.execute(sql, params).fetchall()]


async def execute(location: str | Path, sql: str, *params: Any) -> None:
    """Run one statement (`?` placeholders) straight on the database, committed at once."""
    if is_postgres_url(location):
        text, args = arguments(sql, params)
        conn = await asyncpg.connect(str(location))
        try:
            await conn.execute(text, *args)
        finally:
            await conn.close()
        return
    with closing(sqlite3.connect(location, isolation_level=None)) as conn:
        conn.execute(sql, params)


def make_job(
    *,
    guild_id: int = 1,
    user_id: int = 100,
    channel_id: int = 10,
    images: int = 1,
    cost_usd: float = 0.042,
    parent_job_id: int | None = None,
    now: datetime = T0,
    **extra: object,
) -> NewJob:
    return NewJob.model_validate(
        {
            "guild_id": guild_id,
            "channel_id": channel_id,
            "user_id": user_id,
            "request": {"prompt": "make the sky purple", "loras": ["Anime"]},
            "fal_input": {"prompt": "make the sky purple", "image_urls": ["https://x/y.png"]},
            "images": images,
            "cost_usd": cost_usd,
            "parent_job_id": parent_job_id,
            "deadline_at": now + timedelta(minutes=15),
            **extra,
        }
    )


def limits(
    images: int | None = 10,
    *,
    window_seconds: int = 86_400,
    in_flight: int | None = None,
    budget: float | None = None,
) -> QuotaLimits:
    return QuotaLimits(
        images_per_window=images,
        window_seconds=window_seconds,
        max_in_flight=in_flight,
        monthly_budget_usd=budget,
    )
