"""Storage benchmark: quota reserve (admission) + commit (delivery) per second.

    python -m bench.storage_bench [--jobs 4000] [--tasks 64] [--processes 2] [--synchronous NORMAL]

A reserve is `jobs.admit` (window, in-flight and month-spend checks, then job row and ledger
row in one transaction); a commit is `jobs.transition(..., DELIVERED)` (job row and ledger row
in one transaction). Jobs are moved admitted → submitted → completed between the two timed
phases, untimed, because the lifecycle requires it. Figures are printed, never asserted.
Scenarios: one connection used sequentially, one connection shared by many tasks, and several
processes (one connection each) on one file. Also: full job lifecycles per second and
autocomplete search latency with 1,000 LoRAs.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from storage import Job, JobState, NewJob, QuotaLimits, Storage
from storage.connection import Synchronous

GUILD = 1
MEMBERS = 200
LIMITS = QuotaLimits(
    images_per_window=1_000_000,
    window_seconds=86_400,
    max_in_flight=1_000_000,
    monthly_budget_usd=1_000_000.0,
)


def new_job(index: int, now: datetime) -> NewJob:
    return NewJob(
        guild_id=GUILD,
        channel_id=10,
        user_id=1_000 + index % MEMBERS,
        request={"prompt": "turn the cat into a watercolour painting", "loras": [{"id": 1}]},
        fal_input={"prompt": "watercolour cat", "image_urls": ["https://v3.fal.media/x.png"]},
        images=1,
        cost_usd=0.042,
        deadline_at=now + timedelta(minutes=15),
        lora_ids=[1],
    )


@dataclass
class Phases:
    reserve_s: float
    commit_s: float


async def _run_tasks(count: int, tasks: int, step: Callable[[int], Awaitable[Any]]) -> float:
    """Run step(0..count-1) on `tasks` concurrent workers; the wall time it took."""
    next_index = iter(range(count))

    async def worker() -> None:
        for index in next_index:
            await step(index)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return time.perf_counter() - start


async def reserve_then_commit(
    storage: Storage, count: int, tasks: int, offset: int = 0, barrier: Barrier | None = None
) -> Phases:
    now = datetime.now(UTC)
    requests = [new_job(offset + index, now) for index in range(count)]  # the caller's work
    jobs: list[Job] = []

    async def reserve(index: int) -> None:
        outcome = await storage.jobs.admit(requests[index], LIMITS)
        if not isinstance(outcome, Job):
            raise RuntimeError(f"benchmark admission refused: {outcome}")
        jobs.append(outcome)

    async def advance(index: int) -> None:
        job_id = jobs[index].id
        await storage.jobs.transition(job_id, JobState.SUBMITTED, fal_request_id=f"req-{job_id}")
        await storage.jobs.transition(job_id, JobState.COMPLETED, result={"images": []})

    async def commit(index: int) -> None:
        job_id = jobs[index].id
        await storage.jobs.transition(job_id, JobState.DELIVERED, result_message_id=job_id)

    _wait(barrier)
    reserve_s = await _run_tasks(count, tasks, reserve)
    await _run_tasks(count, tasks, advance)
    _wait(barrier)
    commit_s = await _run_tasks(count, tasks, commit)
    return Phases(reserve_s, commit_s)


def _wait(barrier: Barrier | None) -> None:
    if barrier is not None:
        barrier.wait()  # blocks the loop on purpose: nothing else runs between phases


async def lifecycles(storage: Storage, count: int, tasks: int) -> float:
    now = datetime.now(UTC)

    async def one(index: int) -> None:
        job = await storage.jobs.admit(new_job(index, now), LIMITS)
        assert isinstance(job, Job)
        await storage.jobs.transition(job.id, JobState.SUBMITTED, fal_request_id=f"r{job.id}")
        await storage.jobs.transition(job.id, JobState.COMPLETED, result={"images": []})
        await storage.jobs.transition(job.id, JobState.DELIVERED, result_message_id=job.id)

    return count / await _run_tasks(count, tasks, one)


async def search_latency(storage: Storage, queries: int) -> list[float]:
    for index in range(1_000):
        await storage.loras.add(
            GUILD + 1,
            f"style-{index:04d}-{['anime', 'oil', 'pixel', 'sketch'][index % 4]}",
            f"https://example.com/lora-{index}.safetensors",
            description=f"A {['soft', 'bold', 'retro', 'clean'][index % 4]} look number {index}",
            actor_id=1,
        )
    words = ["a", "st", "anime", "pix", "retro", "style-05", "zzz", "look number 9"]
    timings = []
    for index in range(queries):
        start = time.perf_counter()
        await storage.loras.search(GUILD + 1, words[index % len(words)])
        timings.append(time.perf_counter() - start)
    return timings


def _process_main(
    path: str, count: int, tasks: int, offset: int, synchronous: str, barrier: Barrier, out: Any
) -> None:
    async def run() -> Phases:
        storage = await Storage.open(path, synchronous=_sync(synchronous))
        try:
            return await reserve_then_commit(storage, count, tasks, offset, barrier)
        finally:
            await storage.close()

    out.put(asyncio.run(run()))


def _sync(value: str) -> Synchronous:
    if value not in ("NORMAL", "FULL"):
        raise SystemExit("--synchronous must be NORMAL or FULL")
    return "FULL" if value == "FULL" else "NORMAL"


def across_processes(path: Path, count: int, tasks: int, processes: int, sync: str) -> Phases:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes, timeout=120)  # a dead process must not hang the rest
    out = context.Queue()
    workers = [
        context.Process(
            target=_process_main,
            args=(str(path), count, tasks, index * count, sync, barrier, out),
        )
        for index in range(processes)
    ]
    for worker in workers:
        worker.start()
    results: list[Phases] = [out.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise RuntimeError(f"benchmark process exited with {worker.exitcode}")
    # Phases start together (barrier), so each phase lasts as long as its slowest process.
    return Phases(max(r.reserve_s for r in results), max(r.commit_s for r in results))


def report(label: str, count: int, phases: Phases) -> None:
    pairs = count / (phases.reserve_s + phases.commit_s)
    print(
        f"{label:<44} reserve {count / phases.reserve_s:>7,.0f}/s   "
        f"commit {count / phases.commit_s:>7,.0f}/s   reserve+commit {pairs:>7,.0f}/s"
    )


async def single_connection(args: argparse.Namespace, folder: Path) -> None:
    sync = _sync(args.synchronous)
    storage = await Storage.open(folder / "single.sqlite3", synchronous=sync)
    try:
        report(
            "one connection, sequential",
            args.jobs,
            await reserve_then_commit(storage, args.jobs, 1, offset=0),
        )
        report(
            f"one connection, {args.tasks} concurrent tasks",
            args.jobs,
            await reserve_then_commit(storage, args.jobs, args.tasks, offset=args.jobs),
        )
        rate = await lifecycles(storage, args.jobs // 2, args.tasks)
        print(f"{'full lifecycles (4 transactions each)':<44} {rate:>7,.0f} jobs/s")
        timings = await search_latency(storage, 400)
        median = statistics.median(timings) * 1e6
        p99 = statistics.quantiles(timings, n=100)[98] * 1e6
        print(f"{'search among 1,000 LoRAs':<44} median {median:,.0f} µs   p99 {p99:,.0f} µs")
    finally:
        await storage.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=4_000, help="reservations per scenario")
    parser.add_argument("--tasks", type=int, default=64, help="concurrent tasks per connection")
    parser.add_argument("--processes", type=int, default=2, help="processes sharing one file")
    parser.add_argument("--synchronous", default="NORMAL", help="NORMAL or FULL")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"storage benchmark: {args.jobs:,} jobs per scenario, synchronous={args.synchronous}, "
        f"{os.cpu_count()} CPUs, load average {load} (figures move with it)"
    )
    with tempfile.TemporaryDirectory(prefix="storage-bench-") as tmp:
        folder = Path(tmp)
        asyncio.run(single_connection(args, folder))
        per_process = args.jobs // args.processes
        phases = across_processes(
            folder / "shared.sqlite3",
            per_process,
            max(1, args.tasks // args.processes),
            args.processes,
            args.synchronous,
        )
        report(
            f"{args.processes} processes × {max(1, args.tasks // args.processes)} tasks, one file",
            per_process * args.processes,
            phases,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
