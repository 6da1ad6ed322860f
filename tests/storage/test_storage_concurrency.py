"""Atomic admission under concurrency (tasks, connections, processes) and crash safety, on
SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from storage import (
    TERMINAL_STATES,
    Job,
    JobState,
    QuotaLimits,
    Refusal,
    Storage,
    StorageBusyError,
)
from storage.clock import from_us, month_key
from storage.dialect import lock_key
from tests.harness.storage_fixtures import T0, limits, make_job, query

# An exception in a storage thread (say, reporting into a closed loop) fails the test.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

WORKER = Path(__file__).resolve().parents[1] / "harness" / "storage_worker.py"


async def ledger_summary(database: str) -> tuple[int, int]:
    [(jobs,)] = await query(database, "SELECT COUNT(*) FROM jobs")
    [(reserved,)] = await query(
        database,
        "SELECT CAST(COALESCE(SUM(images), 0) AS BIGINT) FROM quota_ledger"
        " WHERE state <> 'refunded'",
    )
    return jobs, reserved


@pytest.mark.parametrize(
    ("rules", "kind", "admitted"),
    [
        (limits(10), "quota", 10),
        (limits(None, in_flight=3), "in_flight", 3),
        (limits(None, budget=0.42), "budget", 10),
    ],
    ids=["quota", "in_flight", "budget"],
)
async def test_500_concurrent_admissions_on_one_storage_never_exceed_a_limit(
    storage: Storage, database: str, rules: QuotaLimits, kind: str, admitted: int
) -> None:
    outcomes = await asyncio.gather(
        *(storage.jobs.admit(make_job(cost_usd=0.042), rules, now=T0) for _ in range(500))
    )

    jobs = [o for o in outcomes if isinstance(o, Job)]
    refusals = [o for o in outcomes if isinstance(o, Refusal)]
    assert len(jobs) == admitted
    assert len(refusals) == 500 - admitted
    assert {r.kind for r in refusals} == {kind}
    assert len({job.id for job in jobs}) == admitted
    assert await ledger_summary(database) == (admitted, admitted)


async def test_two_connections_on_one_database_admit_exactly_the_limit(database: str) -> None:
    first = await Storage.open(database)
    second = await Storage.open(database)
    try:
        outcomes = await asyncio.gather(
            *(
                (first if n % 2 else second).jobs.admit(make_job(), limits(10), now=T0)
                for n in range(500)
            )
        )
    finally:
        await first.close()
        await second.close()

    assert sum(isinstance(o, Job) for o in outcomes) == 10
    assert await ledger_summary(database) == (10, 10)


async def test_four_processes_on_one_database_admit_exactly_the_limit(database: str) -> None:
    """500 concurrent reservations from 4 processes, for a quota of 10: exactly 10."""
    schema_only = await Storage.open(database)  # migrations are not what this test races
    await schema_only.close()

    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            "admit",
            database,
            "125",
            "10",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    for process in processes:
        assert process.stdout is not None
        assert (await process.stdout.readline()).strip() == b"ready"
    for process in processes:  # all are waiting now: release them together
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        await process.stdin.drain()
    results = [await process.communicate() for process in processes]

    for process, (_, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err.decode()
    admitted = [json.loads(out) for out, _ in results]
    assert sum(len(ids) for ids in admitted) == 10
    assert await ledger_summary(database) == (10, 10)


# --- crash safety ---------------------------------------------------------------------------

LEDGER_FOR = {
    JobState.ADMITTED: "reserved",
    JobState.SUBMITTED: "reserved",
    JobState.COMPLETED: "reserved",
    JobState.DELIVERED: "committed",
    JobState.FAILED: "refunded",
    JobState.CANCELLED: "refunded",
    JobState.EXPIRED: "refunded",
}
ORDER = [JobState.ADMITTED, JobState.SUBMITTED, JobState.COMPLETED]


async def run_writer_and_kill(database: str, commits: int) -> dict[int, JobState]:
    """Start the writer, let it report `commits` commits, SIGKILL it mid-stream."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        "write",
        database,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    seen: dict[int, JobState] = {}
    try:
        for _ in range(commits):
            line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
            assert line, "writer died on its own"
            job_id, state = line.decode().split()
            seen[int(job_id)] = JobState(state)  # lines of one job arrive in commit order
    finally:
        os.kill(process.pid, signal.SIGKILL)  # no chance to finish a transaction or close
        await process.wait()
    assert process.returncode == -signal.SIGKILL
    return seen


async def rows(database: str, table: str) -> list[Any]:
    if database.startswith("postgresql:"):
        conn = await asyncpg.connect(database)
        try:
            return list(await conn.fetch(f"SELECT * FROM {table}"))
        finally:
            await conn.close()
    with closing(sqlite3.connect(database)) as conn:
        conn.row_factory = sqlite3.Row
        if table == "jobs":  # once per check: the file itself is sound
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        return conn.execute(f"SELECT * FROM {table}").fetchall()


async def check_consistent(database: str, reported: dict[int, JobState]) -> int:
    jobs = {row["id"]: row for row in await rows(database, "jobs")}
    ledger = {row["job_id"]: row for row in await rows(database, "quota_ledger")}
    spend = {
        (row["guild_id"], row["month"]): row["micro_usd"]
        for row in await rows(database, "guild_spend")
    }

    # Every commit the writer reported survived, at that state or a later one.
    for job_id, state in reported.items():
        stored = JobState(jobs[job_id]["state"])
        if state in TERMINAL_STATES or stored not in TERMINAL_STATES:
            later_or_same = stored == state or (
                stored not in TERMINAL_STATES and ORDER.index(stored) > ORDER.index(state)
            )
        else:
            later_or_same = True  # it went on to finish after the report
        assert later_or_same, (job_id, state, stored)

    # No job is half-written: its columns and its ledger row agree with its state.
    assert set(ledger) == set(jobs)
    expected_spend: Counter[tuple[int, str]] = Counter()
    for job_id, row in jobs.items():
        state = JobState(row["state"])
        entry = ledger[job_id]
        assert entry["state"] == LEDGER_FOR[state], (job_id, state, entry["state"])
        assert (entry["images"], entry["cost_micro_usd"]) == (row["images"], row["cost_micro_usd"])
        request = json.loads(row["request"])
        assert request["prompt"] == f"job {request['n']} " + "x" * 6000
        if state in (JobState.SUBMITTED, JobState.COMPLETED, JobState.DELIVERED):
            assert row["fal_request_id"] == f"req-{job_id}" and row["submitted_at"]
        if state in (JobState.COMPLETED, JobState.DELIVERED):
            assert json.loads(row["result"]) == {"images": [f"{job_id}.png"]}
        if state is JobState.DELIVERED:
            assert row["result_message_id"] == 10_000 + job_id
        assert (row["finished_at"] is not None) == (state in TERMINAL_STATES)
        if entry["state"] != "refunded":
            expected_spend[(row["guild_id"], month_key(from_us(entry["created_at"])))] += entry[
                "cost_micro_usd"
            ]
    assert {key: value for key, value in spend.items() if value} == dict(expected_spend)
    return len(jobs)


async def test_sigkill_mid_stream_loses_no_commit_and_leaves_no_half_written_job(
    database: str,
) -> None:
    reported: dict[int, JobState] = {}
    total = 0
    for _ in range(3):  # kill, reopen, check, carry on writing to the same database
        reported.update(await run_writer_and_kill(database, commits=150))
        storage = await Storage.open(database)  # reopens cleanly after the crash
        await storage.close()
        now_total = await check_consistent(database, reported)
        assert now_total > total
        total = now_total


async def test_sigkill_inside_a_transaction_leaves_no_trace_of_it(database: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        "write",
        database,
        "100",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    reported: dict[int, JobState] = {}
    try:
        while True:
            line = (await asyncio.wait_for(process.stdout.readline(), timeout=60)).decode()
            assert line, "writer died on its own"
            first, second = line.split()
            if first == "stalled":
                stalled = int(second)
                break
            reported[int(first)] = JobState(second)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        await process.wait()

    await check_consistent(database, reported)
    for table, column in (("jobs", "id"), ("quota_ledger", "job_id")):
        found = await query(database, f"SELECT 1 FROM {table} WHERE {column} = ?", stalled)
        assert found == [], f"half-written job {stalled} in {table}"


async def test_a_lock_held_past_the_busy_timeout_is_a_typed_error(
    storage_path: Path, backend: str, database: str
) -> None:
    storage = await Storage.open(database, busy_timeout=0.2)
    try:
        if backend == "sqlite":
            with closing(sqlite3.connect(storage_path, isolation_level=None)) as other:
                other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
                with pytest.raises(StorageBusyError, match=r"stayed locked .* over 0\.2 s"):
                    await storage.jobs.admit(make_job(), limits(10), now=T0)
                other.execute("ROLLBACK")
        else:
            other_pg = await asyncpg.connect(database)
            try:  # another process in the middle of admitting the same member
                await other_pg.execute("SELECT pg_advisory_lock($1)", lock_key("quota", 1, 100))
                with pytest.raises(StorageBusyError, match=r"kept a lock for over 0\.2 s"):
                    await storage.jobs.admit(make_job(), limits(10), now=T0)
            finally:
                await other_pg.close()
        assert isinstance(await storage.jobs.admit(make_job(), limits(10), now=T0), Job)
    finally:
        await storage.close()
