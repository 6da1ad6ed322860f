"""End-to-end benchmark: the bot as its own process, members and fal emulated with zero latency.

    .venv/bin/python -m bench.bot_bench [--members 30] [--jobs 200] [--in-flight 1000]

fal's queue and run times are zero, so every figure is our own overhead (plus the emulators',
which run in this process on the other core). Prints:
- interaction → fal submit, p50/p99 (the Discord emulator's INTERACTION_CREATE to fal's submit)
- fal completion → result message posted, p50/p99, for a 1 MP PNG
- jobs per second at saturation
- peak RSS of the bot process with N jobs in flight (held in fal's queue)
- fal requests per job, and uploads per new input
- the bot's event-loop lag p50/p99 (its own `flux_event_loop_lag_seconds`, read from /metrics)
  while 1,000 jobs are admitted and while they are all in flight, and the gateway warnings the
  bot logged ("Can't keep up", "heartbeat blocked", "event loop was blocked")
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emulators.discord_emulator import DiscordEmulator  # noqa: E402
from emulators.fal_emulator.server import FalEmulator  # noqa: E402
from storage import GuildSettings, Storage  # noqa: E402
from tests.harness.images import png  # noqa: E402

TARGETS = {
    "submit_p99_ms": 50.0,
    "delivery_p99_ms": 150.0,
    "rss_mb": 250.0,
    "requests_per_job": 3.0,
    "loop_lag_p99_ms": 20.0,
}
HOLD_SECONDS = 15.0  # how long the bench watches the bot with every held job in flight
LAG_BUCKET = re.compile(r'^flux_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)$', re.M)
WARNINGS = ("Can't keep up", "heartbeat blocked", "event loop was blocked")

Buckets = list[tuple[float, float]]  # (upper bound in seconds, cumulative count)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process, from /proc."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = float(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def loop_lag(port: int) -> Buckets:
    """The bot's own event-loop lag histogram, from its /metrics."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    return [(float(le), float(count)) for le, count in LAG_BUCKET.findall(text)]


def lag_quantile(before: Buckets, after: Buckets, q: float) -> float:
    """Quantile `q` (0..1) of the lag samples taken between two scrapes, in seconds, read
    from the buckets as Prometheus' histogram_quantile does (linear within a bucket)."""
    counts = [(bound, now - then) for (bound, now), (_, then) in zip(after, before, strict=True)]
    total = counts[-1][1] if counts else 0.0
    if total <= 0:
        return float("nan")
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in counts:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: at least that much
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


def samples_over(before: Buckets, after: Buckets, seconds: float) -> int:
    counts = {bound: now - then for (bound, now), (_, then) in zip(after, before, strict=True)}
    within = counts.get(seconds, 0.0)
    return round(counts.get(math.inf, 0.0) - within)


def lag_line(label: str, before: Buckets, after: Buckets) -> str:
    samples = round(after[-1][1] - before[-1][1]) if after and before else 0
    p50, p99 = (lag_quantile(before, after, q) * 1000 for q in (0.5, 0.99))
    return (
        f"bot event-loop lag {label}: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
        f"(target p99 ≤ {TARGETS['loop_lag_p99_ms']:.0f} ms); {samples} samples, "
        f"{samples_over(before, after, 0.1)} over 100 ms"
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def start_bot(
    emu: DiscordEmulator,
    fal: FalEmulator,
    db: Path,
    metrics_port: int,
    log: IO[bytes],
    *,
    extra_env: dict[str, str] | None = None,
) -> asyncio.subprocess.Process:
    storage = await Storage.open(db)
    guild = emu.guild.id
    await storage.settings.save(
        guild, GuildSettings(default_quota=1_000_000, max_in_flight=100_000)
    )
    await storage.close()
    env = {
        **os.environ,
        **emu.bot_env(),
        "FAL_KEY": fal.key,
        "FAL_QUEUE_URL": fal.queue_url,
        "FAL_REST_URL": fal.rest_url,
        "FAL_CDN_URL": fal.cdn_url,
        "DATABASE_PATH": str(db),
        "LOG_LEVEL": "WARNING",
        "JOB_TIMEOUT_SECONDS": "3600",
        # Step 3 holds every job at fal at once: the bot's fair queue stays off, as before it
        # existed, so the figures compare (bench/fair_queue_bench.py measures the queue).
        "FAL_MAX_CONCURRENT": "0",
        "METRICS_PORT": str(metrics_port),
        "METRICS_HOST": "127.0.0.1",
        **(extra_env or {}),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bot.py"),
        cwd=str(db.parent),
        env=env,
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )
    await emu.wait_connected(timeout=30)
    await emu.wait_for("commands_synced", timeout=30)
    return process


async def fire(
    emu: DiscordEmulator, members: list[Any], prompts: Iterable[str], image: bytes, rate: float
) -> None:
    """Run /edit for each prompt, round-robin over members, `rate` interactions per second."""
    channel = emu.channel("general")
    gap = 1.0 / rate
    tasks = []
    for index, prompt in enumerate(prompts):
        member = members[index % len(members)]
        tasks.append(
            asyncio.create_task(
                emu.slash(
                    member,
                    channel,
                    "edit",
                    {"prompt": prompt, "size": "square_hd"},
                    attachments={"image": emu.attachment(image, "in.png")},
                )
            )
        )
        await asyncio.sleep(gap)  # pacing the load generator, not waiting for the bot
    await asyncio.gather(*tasks)


async def wait_results(emu: DiscordEmulator, count: int, within: float) -> None:
    channel = emu.channel("general")
    async with asyncio.timeout(within):
        while sum(1 for m in emu.messages_in(channel) if m.files) < count:
            mark = emu.mark()
            await emu.wait_for("message_create", since=mark, timeout=within)


def latencies(
    emu: DiscordEmulator, fal: FalEmulator, prefix: str
) -> tuple[list[float], list[float]]:
    interactions: dict[str, float] = {}
    posted: dict[str, float] = {}
    for event in emu.state.events:
        if event.kind == "interaction_create":
            options = {
                o["name"]: o.get("value") for o in event.data.payload["data"].get("options", [])
            }
            prompt = options.get("prompt")
            if isinstance(prompt, str) and prompt.startswith(prefix):
                interactions[prompt] = event.at
        elif event.kind == "message_create" and getattr(event.data, "files", None):
            embeds = event.data.embeds
            if embeds and str(embeds[0].get("description", "")).startswith(prefix):
                posted[embeds[0]["description"]] = event.at
    submit_ms: list[float] = []
    deliver_ms: list[float] = []
    for job in fal.jobs.values():
        prompt = job.body.get("prompt") if isinstance(job.body, dict) else None
        if not isinstance(prompt, str) or not prompt.startswith(prefix):
            continue
        if prompt in interactions:
            submit_ms.append((job.submitted_at - interactions[prompt]) * 1000)
        if prompt in posted and job.completed_at is not None:
            deliver_ms.append((posted[prompt] - job.completed_at) * 1000)
    return submit_ms, deliver_ms


def held_at_fal(fal: FalEmulator) -> int:
    return sum(1 for job in fal.jobs.values() if str(job.body.get("prompt", "")).startswith("rss "))


async def main(args: argparse.Namespace) -> None:
    image = png(1024, 1024)
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            DiscordEmulator() as emu,
            FalEmulator(seed=1, queue_delay=0.0, run_time=0.0, concurrency=100_000) as fal,
        ):
            emu.ack_deadline = 30.0  # the load generator shares a core; don't bench our ack
            members = [emu.add_member(emu.guild, f"m{i}") for i in range(args.members)]
            port = free_port()
            log_path = Path(tmp) / "bot.log"
            log = log_path.open("wb")
            bot = await start_bot(emu, fal, Path(tmp) / "bot.sqlite3", port, log)
            try:
                cpu_before = cpu_seconds(bot.pid or 0)
                # 1. latency at a moderate rate
                prompts = [f"lat {i}" for i in range(args.jobs)]
                await fire(emu, members, prompts, image, rate=args.rate)
                await wait_results(emu, args.jobs, within=300)
                submit_ms, deliver_ms = latencies(emu, fal, "lat ")
                uploads = sum(
                    fal.count(r) for r in ("token", "cdn_upload", "initiate", "signed_put")
                )
                per_job = (len(fal.requests) - uploads) / max(1, args.jobs)

                # 2. saturation: as fast as the interactions can be sent
                start = time.monotonic()
                burst = [f"sat {i}" for i in range(args.jobs)]
                await fire(emu, members, burst, image, rate=1000.0)
                await wait_results(emu, 2 * args.jobs, within=600)
                throughput = args.jobs / (time.monotonic() - start)
                sat_submit, sat_deliver = latencies(emu, fal, "sat ")
                cpu_per_job = (cpu_seconds(bot.pid or 0) - cpu_before) / (2 * args.jobs) * 1000

                # 3. memory and event-loop lag with N jobs in flight, held in fal's queue
                fal.queue_delay = 3600.0
                held = [f"rss {i}" for i in range(args.in_flight)]
                lag_start = await loop_lag(port)
                await fire(emu, members, held, image, rate=args.rate)
                await fal.wait_until(
                    lambda: (
                        sum(
                            1
                            for j in fal.jobs.values()
                            if str(j.body.get("prompt", "")).startswith("rss ")
                        )
                        >= args.in_flight
                    ),
                    within=600,
                )
                current, peak = rss_mb(bot.pid or 0)
                lag_held = await loop_lag(port)
                await asyncio.sleep(HOLD_SECONDS)  # the measurement window, nothing awaited
                lag_end = await loop_lag(port)
            finally:
                bot.terminate()
                await bot.wait()
                log.close()
            bot_log = log_path.read_text(errors="replace").splitlines()

    print(
        f"jobs: {args.jobs} at {args.rate:g}/s + {args.jobs} saturation + {args.in_flight} held, "
        f"{args.members} members"
    )
    print(
        f"interaction → fal submit: p50 {pct(submit_ms, 50):.1f} ms, "
        f"p99 {pct(submit_ms, 99):.1f} ms (target p99 ≤ {TARGETS['submit_p99_ms']:.0f} ms)"
    )
    print(
        f"fal completion → result posted: p50 {pct(deliver_ms, 50):.1f} ms, "
        f"p99 {pct(deliver_ms, 99):.1f} ms (target p99 ≤ {TARGETS['delivery_p99_ms']:.0f} ms)"
    )
    print(
        f"jobs per second at saturation: {throughput:.1f} (bounded by the emulators sharing "
        f"the 2 cores); bot CPU per job: {cpu_per_job:.1f} ms"
    )
    print(
        f"bot RSS with {args.in_flight} jobs in flight: {current:.0f} MB (peak {peak:.0f} MB; "
        f"target ≤ {TARGETS['rss_mb']:.0f} MB)"
    )
    print(
        f"fal queue requests per job: {per_job:.2f} (target ≤ {TARGETS['requests_per_job']:.0f}); "
        f"upload requests in total: {uploads} for 1 distinct input"
    )
    print(
        f"at saturation (queueing included): submit p99 {pct(sat_submit, 99):.0f} ms, "
        f"delivery p99 {pct(sat_deliver, 99):.0f} ms"
    )
    print(lag_line(f"while {args.in_flight} jobs were admitted", lag_start, lag_held))
    print(lag_line(f"with {args.in_flight} jobs in flight, {HOLD_SECONDS:g} s", lag_held, lag_end))
    for warning in WARNINGS:
        lines = [line for line in bot_log if warning in line]
        print(f"bot log lines with {warning!r}: {len(lines)}")
        for line in lines[:3]:
            print(f"  {line}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--in-flight", type=int, default=1000)
    parser.add_argument(
        "--rate", type=float, default=8.0, help="interactions per second in the latency phase"
    )
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
