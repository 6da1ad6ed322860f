"""Subprocess helper for the storage concurrency and crash tests (not a test module).

DB is a SQLite file path or a postgresql:// URL.

    python tests/harness/storage_worker.py open DB
        ready → wait for "go" → open → version
    python tests/harness/storage_worker.py admit DB COUNT LIMIT
        ready → wait for "go" → COUNT admits
    python tests/harness/storage_worker.py write DB
        write jobs forever, report each commit
    python tests/harness/storage_worker.py write DB STALL_AFTER
        … then hang inside a transaction

`admit` prints "ready", waits for a line on stdin, fires COUNT concurrent admissions for one
member against an image limit of LIMIT, and prints the admitted job ids as JSON.
`write` runs 8 tasks that push jobs through their lifecycle and print "<job id> <state>" after
each transaction has committed, until the process is killed. With STALL_AFTER, once that many
commits were reported the next admission stops inside its transaction, after inserting the job
and before its ledger row and COMMIT, prints "stalled <job id>" and waits to be killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from storage import Job, JobState, NewJob, QuotaLimits, Storage, quotas
from storage.dialect import Tx


def new_job(user_id: int, n: int) -> NewJob:
    now = datetime.now(UTC)
    return NewJob(
        guild_id=1,
        channel_id=10,
        user_id=user_id,
        # Large enough to span several pages, so a torn write would show.
        request={"prompt": f"job {n} " + "x" * 6000, "n": n},
        fal_input={"prompt": f"job {n}", "image_urls": ["https://v3.fal.media/in.png"]},
        images=1 + n % 3,
        cost_usd=0.021 * (1 + n % 3),
        deadline_at=now + timedelta(minutes=15),
        lora_ids=[n % 5],
    )


async def open_at_once(db: str) -> None:
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    storage = await Storage.open(db)
    print(storage.schema_version, flush=True)
    await storage.close()


async def admit(db: str, count: int, limit: int) -> None:
    storage = await Storage.open(db)
    try:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        rules = QuotaLimits(images_per_window=limit, window_seconds=86_400)
        outcomes = await asyncio.gather(
            *(storage.jobs.admit(new_job(100, 0), rules) for _ in range(count))
        )
        print(json.dumps([o.id for o in outcomes if isinstance(o, Job)]), flush=True)
    finally:
        await storage.close()


async def write(db: str, stall_after: int | None) -> None:
    storage = await Storage.open(db)
    rules = QuotaLimits(images_per_window=None, window_seconds=86_400, monthly_budget_usd=1e9)
    reported = 0

    def report(job: Job) -> None:
        nonlocal reported
        sys.stdout.write(f"{job.id} {job.state}\n")
        sys.stdout.flush()
        reported += 1

    reserve = quotas.reserve

    async def stalling_reserve(tx: Tx, **kwargs: object) -> None:
        # Runs inside admit's transaction: the job row is written, its ledger row is not.
        if stall_after is not None and reported >= stall_after:
            sys.stdout.write(f"stalled {kwargs['job_id']}\n")
            sys.stdout.flush()
            if tx.dialect == "sqlite":
                threading.Event().wait()  # on the connection's thread: the transaction stays open
            else:
                await asyncio.Event().wait()  # the server keeps the transaction open
        await reserve(tx, **kwargs)  # type: ignore[arg-type]

    quotas.reserve = stalling_reserve  # type: ignore[assignment]

    async def worker(index: int) -> None:
        n = index
        while True:
            job = await storage.jobs.admit(new_job(200 + index, n), rules)
            assert isinstance(job, Job)
            report(job)
            if n % 7 == 3:
                report(await storage.jobs.transition(job.id, JobState.CANCELLED))
            else:
                report(
                    await storage.jobs.transition(
                        job.id, JobState.SUBMITTED, fal_request_id=f"req-{job.id}"
                    )
                )
                report(
                    await storage.jobs.transition(
                        job.id, JobState.COMPLETED, result={"images": [f"{job.id}.png"]}
                    )
                )
                if n % 7 == 5:
                    report(await storage.jobs.transition(job.id, JobState.FAILED, error="post"))
                else:
                    report(
                        await storage.jobs.transition(
                            job.id, JobState.DELIVERED, result_message_id=10_000 + job.id
                        )
                    )
            n += 8

    await asyncio.gather(*(worker(index) for index in range(8)))


def main() -> None:
    mode, db, *rest = sys.argv[1:]
    if mode == "open":
        asyncio.run(open_at_once(db))
    elif mode == "admit":
        asyncio.run(admit(db, int(rest[0]), int(rest[1])))
    elif mode == "write":
        asyncio.run(write(db, int(rest[0]) if rest else None))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
