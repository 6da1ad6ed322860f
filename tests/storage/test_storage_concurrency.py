"""Atomic admission under concurrency (tasks, connections, processes) and crash safety."""

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
from tests.harness.storage_fixtures import T0, limits, make_job

# An exception in a storage thread (say, reporting into a closed loop) fails the test.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

WORKER = Path(__file__).resolve().parents[1] / "harness" / "storage_worker.py"


def ledger_summary(path: Path) -> tuple[int, int]:
    with closing(sqlite3.connect(path)) as conn:
        jobs = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        reserved = conn.execute(
            "SELECT COALESCE(SUM(images), 0) FROM quota_ledger WHERE state <> 'refunded'"
        ).fetchone()[0]
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
    storage: Storage, storage_path: Path, rules: QuotaLimits, kind: str, admitted: int
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
    assert ledger_summary(storage_path) == (admitted, admitted)


async def test_two_connections_on_one_file_admit_exactly_the_limit(storage_path: Path) -> None:
    first = await Storage.open(storage_path)
    second = await Storage.open(storage_path)
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
    assert ledger_summary(storage_path) == (10, 10)


async def test_two_processes_on_one_file_admit_exactly_the_limit(storage_path: Path) -> None:
    schema_only = await Storage.open(storage_path)  # migrations are not what this test races
    await schema_only.close()

    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            "admit",
            str(storage_path),
            "250",
            "10",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for process in processes:
        assert process.stdout is not None
        assert (await process.stdout.readline()).strip() == b"ready"
    for process in processes:  # both are waiting now: release them together
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        await process.stdin.drain()
    results = [await process.communicate() for process in processes]

    for process, (_, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err.decode()
    admitted = [json.loads(out) for out, _ in results]
    assert sum(len(ids) for ids in admitted) == 10
    assert ledger_summary(storage_path) == (10, 10)


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


async def run_writer_and_kill(storage_path: Path, commits: int) -> dict[int, JobState]:
    """Start the writer, let it report `commits` commits, SIGKILL it mid-stream."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        "write",
        str(storage_path),
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


def check_consistent(storage_path: Path, reported: dict[int, JobState]) -> int:
    with closing(sqlite3.connect(storage_path)) as conn:
        conn.row_factory = sqlite3.Row
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        jobs = {row["id"]: row for row in conn.execute("SELECT * FROM jobs")}
        ledger = {row["job_id"]: row for row in conn.execute("SELECT * FROM quota_ledger")}
        spend = {
            (row["guild_id"], row["month"]): row["micro_usd"]
            for row in conn.execute("SELECT * FROM guild_spend")
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
    storage_path: Path,
) -> None:
    reported: dict[int, JobState] = {}
    total = 0
    for _ in range(3):  # kill, reopen, check, carry on writing to the same file
        reported.update(await run_writer_and_kill(storage_path, commits=150))
        storage = await Storage.open(storage_path)  # reopens cleanly after the crash
        await storage.close()
        now_total = check_consistent(storage_path, reported)
        assert now_total > total
        total = now_total


async def test_sigkill_inside_a_transaction_leaves_no_trace_of_it(storage_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        "write",
        str(storage_path),
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

    check_consistent(storage_path, reported)
    with closing(sqlite3.connect(storage_path)) as conn:
        for table, column in (("jobs", "id"), ("quota_ledger", "job_id")):
            found = conn.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", (stalled,))
            assert found.fetchone() is None, f"half-written job {stalled} in {table}"


async def test_a_lock_held_past_the_busy_timeout_is_a_typed_error(storage_path: Path) -> None:
    storage = await Storage.open(storage_path, busy_timeout=0.2)
    try:
        with closing(sqlite3.connect(storage_path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
            with pytest.raises(StorageBusyError, match=r"stayed locked .* over 0\.2 s"):
                await storage.jobs.admit(make_job(), limits(10), now=T0)
            other.execute("ROLLBACK")
        assert isinstance(await storage.jobs.admit(make_job(), limits(10), now=T0), Job)
    finally:
        await storage.close()
