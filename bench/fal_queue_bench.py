"""Benchmark: fal requests per job and completion-notice delay, FalClient against a fixed
0.1 s polling loop like the official Python client's.

    .venv/bin/python -m bench.fal_queue_bench            # 200 jobs, 2 s queue, 3 s run

Two arrival patterns: jobs submitted at a steady rate (50/s by default), and all 200 at the
same instant, so that all 200 complete within a few milliseconds of each other; the second
shows what one Python process pays per completion when they pile up.

The fal emulator runs in its own process (`python -m emulators.fal_emulator`), so server and
client do not share an event loop. Both processes read the same CLOCK_MONOTONIC, so the delay
from the emulator marking a job COMPLETED to our call returning its result is measured directly.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from client.fal import FalClient
from client.schema import EditInput

ROOT = Path(__file__).resolve().parent.parent
ENDPOINT = "fal-ai/flux-2/lora/edit"


@dataclass
class Emulator:
    process: asyncio.subprocess.Process
    queue_url: str
    rest_url: str
    cdn_url: str
    key: str


@dataclass
class Run:
    name: str
    returned_at: dict[str, float]  # request id → monotonic time the result call returned
    client_requests: int
    wall_seconds: float


async def start_emulator(queue_delay: float, run_time: float, concurrency: int) -> Emulator:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "emulators.fal_emulator",
        "--queue-delay",
        str(queue_delay),
        "--run-time",
        str(run_time),
        "--concurrency",
        str(concurrency),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    info = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
    return Emulator(process, info["queue_url"], info["rest_url"], info["cdn_url"], info["key"])


def input_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), (180, 60, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def edit_input(image_url: str, index: int) -> EditInput:
    return EditInput(
        prompt=f"bench job {index}",
        image_urls=[image_url],
        seed=index,
        image_size="square",
        output_format="jpeg",
    )


async def staggered(jobs: int, rate: float | None, job: Callable[[int], Awaitable[None]]) -> None:
    """Start job i at i / rate seconds (all at once when rate is None)."""

    async def start(index: int) -> None:
        if rate:
            await asyncio.sleep(index / rate)
        await job(index)

    await asyncio.gather(*(start(index) for index in range(jobs)))


async def run_fal_client(
    emulator: Emulator, jobs: int, rate: float | None, image_url: str, client: FalClient
) -> Run:
    returned_at: dict[str, float] = {}
    before = client.total_requests

    async def one(index: int) -> None:
        handle, _ = await client.submit(edit_input(image_url, index))
        async for status in client.watch(handle):
            if status.is_terminal:  # fetch at once; the stream closes after
                await client.result(handle)
                returned_at[handle.request_id] = time.monotonic()

    started = time.monotonic()
    await staggered(jobs, rate, one)
    return Run(
        "FalClient (SSE, adaptive polling fallback)",
        returned_at,
        client.total_requests - before,
        time.monotonic() - started,
    )


async def run_fixed_polling(
    emulator: Emulator, jobs: int, rate: float | None, image_url: str, interval: float
) -> Run:
    """What fal_client's `subscribe` does without callbacks: poll status every `interval`
    until COMPLETED, then GET the result."""
    returned_at: dict[str, float] = {}
    requests = 0
    headers = {"Authorization": f"Key {emulator.key}"}
    # fal_client's own settings: default httpx limits, 120 s timeout.
    async with httpx.AsyncClient(timeout=120, headers=headers) as http:

        async def one(index: int) -> None:
            nonlocal requests
            payload = edit_input(image_url, index).model_dump(exclude_none=True, mode="json")
            submitted = (await http.post(f"{emulator.queue_url}/{ENDPOINT}", json=payload)).json()
            requests += 1
            while True:
                status = await http.get(submitted["status_url"], params={"logs": "false"})
                requests += 1
                if status.json()["status"] == "COMPLETED":
                    break
                await asyncio.sleep(interval)
            result = await http.get(submitted["response_url"])
            requests += 1
            result.raise_for_status()
            returned_at[submitted["request_id"]] = time.monotonic()

        started = time.monotonic()
        await staggered(jobs, rate, one)
    return Run(
        f"fixed {interval:g} s polling (official client style)",
        returned_at,
        requests,
        time.monotonic() - started,
    )


async def emulator_view(emulator: Emulator) -> tuple[dict[str, float], list[dict[str, Any]]]:
    async with httpx.AsyncClient(timeout=30) as http:
        jobs = (await http.get(f"{emulator.queue_url}/_emulator/jobs")).json()
        requests = (await http.get(f"{emulator.queue_url}/_emulator/requests")).json()
    completed = {job["request_id"]: job["completed_at"] for job in jobs if job["completed_at"]}
    return completed, requests


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def report(run: Run, completed: dict[str, float], requests: list[dict[str, Any]]) -> None:
    ids = set(run.returned_at)
    delays_ms = [(run.returned_at[rid] - completed[rid]) * 1000 for rid in ids]
    per_route = Counter(r["route"] for r in requests if r["request_id"] in ids)
    seen = sum(per_route.values())
    jobs = len(ids)
    print(f"\n{run.name}")
    print(f"  jobs                          {jobs}")
    print(f"  wall time                     {run.wall_seconds:.2f} s")
    print(f"  fal requests per job (client) {run.client_requests / jobs:.2f}")
    print(f"  fal requests per job (server) {seen / jobs:.2f}  {dict(sorted(per_route.items()))}")
    print(
        "  completion-notice delay       "
        f"p50 {statistics.median(delays_ms):.1f} ms, p99 {percentile(delays_ms, 0.99):.1f} ms, "
        f"max {max(delays_ms):.1f} ms"
    )


async def main_async(args: argparse.Namespace) -> None:
    emulator = await start_emulator(args.queue_delay, args.run_time, args.concurrency)
    try:
        async with FalClient(
            emulator.queue_url, emulator.rest_url, emulator.cdn_url, emulator.key
        ) as client:
            image_url = await client.upload(input_png(), "image/png", "bench.png")
            upload_requests = client.total_requests
            print(
                f"{args.jobs} jobs, queue delay {args.queue_delay:g} s, run time "
                f"{args.run_time:g} s, emulator concurrency {args.concurrency}"
            )
            print(f"one input upload: {upload_requests} requests (token + upload; token cached)")
            schedules: list[tuple[str, float | None]] = [
                (f"submitted at {args.rate:g} jobs/s", args.rate)
            ]
            if not args.no_burst:
                schedules.append(("all submitted at once", None))
            for label, rate in schedules:
                print(f"\n=== {label} ===")
                ours = await run_fal_client(emulator, args.jobs, rate, image_url, client)
                completed, requests = await emulator_view(emulator)
                report(ours, completed, requests)
                if not args.skip_baseline:
                    baseline = await run_fixed_polling(
                        emulator, args.jobs, rate, image_url, args.interval
                    )
                    completed, requests = await emulator_view(emulator)
                    report(baseline, completed, requests)
    finally:
        emulator.process.terminate()
        await emulator.process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fal_queue_bench")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--queue-delay", type=float, default=2.0)
    parser.add_argument("--run-time", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.1, help="baseline poll interval")
    parser.add_argument(
        "--rate", type=float, default=50.0, help="jobs submitted per second (steady arrivals)"
    )
    parser.add_argument(
        "--no-burst", action="store_true", help="skip the run with every job submitted at once"
    )
    parser.add_argument("--skip-baseline", action="store_true")
    asyncio.run(main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
