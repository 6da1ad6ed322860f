"""Every statement the hot paths and lookups run uses an index: no full table scans.

Partial indexes are easy to lose (SQLite matches their WHERE clause textually), and a lost
index only shows once the tables are big, so the query plans are checked here instead. On
PostgreSQL, whose planner rightly scans tiny tables whole, plans are read with sequential
scans switched off: a "Seq Scan" left then means no index could serve the statement.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import storage.postgres
from storage import Job, JobState, Storage
from storage.dialect import Params
from tests.harness.storage_fixtures import T0, limits, make_job

# An exception in a storage thread (say, reporting into a closed loop) fails the test.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


BIG_TABLES = ("jobs", "quota_ledger", "loras", "lora_changes", "guild_spend", "inputs")


async def statements_run_by(
    storage: Storage, call: Callable[[], Awaitable[Any]], monkeypatch: pytest.MonkeyPatch
) -> list[Any]:
    if storage.backend == "postgresql":
        return await pg_statements_run_by(call, monkeypatch)
    seen: list[str] = []
    conn = storage._conn
    await conn.run(lambda raw: raw.set_trace_callback(seen.append))  # type: ignore[attr-defined]
    try:
        await call()
    finally:
        await conn.run(lambda raw: raw.set_trace_callback(None))  # type: ignore[attr-defined]
    skip = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "PRAGMA")
    return [sql for sql in seen if not sql.lstrip().upper().startswith(skip)]


async def pg_statements_run_by(
    call: Callable[[], Awaitable[Any]], monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, list[Any]]]:
    seen: list[tuple[str, list[Any]]] = []
    numbered = storage.postgres.arguments

    def recording(sql: str, params: Params) -> tuple[str, list[Any]]:
        text, args = numbered(sql, params)
        seen.append((text, args))
        return text, args

    monkeypatch.setattr(storage.postgres, "arguments", recording)
    await call()
    monkeypatch.undo()
    return seen


async def pg_full_scans(store: Storage, statements: list[tuple[str, list[Any]]]) -> list[str]:
    found = []
    conn = store._conn
    assert isinstance(conn, storage.postgres.PostgresConnection)
    async with conn.acquire() as pg:
        await pg.execute("SET enable_seqscan = off")
        try:
            for text, args in statements:
                plan = "\n".join(row[0] for row in await pg.fetch(f"EXPLAIN {text}", *args))
                for table in BIG_TABLES:
                    if f"Seq Scan on {table} " in plan + " ":
                        found.append(f"Seq Scan on {table}  <=  {text.split()[0]} … {text[-80:]}")
        finally:
            await pg.execute("RESET enable_seqscan")
    return found


async def full_scans(storage: Storage, statements: list[Any]) -> list[str]:
    if storage.backend == "postgresql":
        return await pg_full_scans(storage, statements)

    def explain(conn: sqlite3.Connection) -> list[str]:
        found = []
        for sql in statements:
            for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"):
                detail = row[3]
                if any(detail.startswith(f"SCAN {table}") for table in BIG_TABLES):
                    found.append(f"{detail}  <=  {sql.split()[0]} … {sql[-80:]}")
        return found

    return await storage._conn.run(explain)  # type: ignore[attr-defined]


@pytest.fixture
async def busy_storage(storage: Storage) -> Storage:
    for n in range(3):
        job = await storage.jobs.admit(make_job(user_id=n), limits(10, in_flight=5, budget=100))
        assert isinstance(job, Job)
        await storage.jobs.transition(job.id, JobState.SUBMITTED, fal_request_id=f"r{n}")
    await storage.loras.add(1, "Anime", "https://x/a.safetensors", actor_id=1)
    return storage


CALLS: dict[str, Callable[[Storage], Awaitable[Any]]] = {
    "admit": lambda s: s.jobs.admit(make_job(), limits(10, in_flight=5, budget=100), now=T0),
    "refusal": lambda s: s.jobs.admit(make_job(images=3), limits(2), now=T0),
    "transition": lambda s: s.jobs.transition(1, JobState.COMPLETED, result={"images": []}),
    "refund": lambda s: s.jobs.transition(2, JobState.CANCELLED),
    "retry": lambda s: s.jobs.transition(3, JobState.SUBMITTED, fal_request_id="r2"),
    "unfinished": lambda s: s.jobs.unfinished(),
    "active": lambda s: s.jobs.active(1),
    "by_result_message": lambda s: s.jobs.by_result_message(5),
    "children": lambda s: s.jobs.children(1),
    "recent_for_user": lambda s: s.jobs.recent_for_user(1, 1, 10),
    "usage": lambda s: s.quotas.usage(1, 1, 86_400, now=T0),
    "guild_spend": lambda s: s.quotas.guild_spend(1, now=T0),
    "lora_get": lambda s: s.loras.get(1, "anime"),
    "lora_history": lambda s: s.loras.history(1, "anime"),
    "lora_update": lambda s: s.loras.update(1, "anime", 1, default_scale=2.0),
    "lora_list": lambda s: s.loras.list(1, include_disabled=True, include_nsfw=True),
    "lora_count": lambda s: s.loras.count(1),
    "lora_search": lambda s: s.loras.search(1, "ani"),
    "member_report": lambda s: s.quotas.member_report(1, now=T0),
    "reset": lambda s: s.quotas.reset(1, 1, now=T0),
    "effective": lambda s: s.settings.effective(1, 10),
    "input_get": lambda s: s.inputs.get("a" * 64),
}


@pytest.mark.parametrize("name", list(CALLS))
async def test_statements_use_indexes(
    busy_storage: Storage, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements = await statements_run_by(
        busy_storage, lambda: CALLS[name](busy_storage), monkeypatch
    )
    assert statements, "nothing was traced"
    assert await full_scans(busy_storage, statements) == []
