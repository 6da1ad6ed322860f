"""Webhook mode vs stream mode with 1,000 edits in flight, side by side in one run.

    .venv/bin/python -m bench.webhook_bench [--jobs 1000] [--rate 100]

For each mode a fresh bot (its own process, SQLite) runs against fresh emulators. The members'
edits are held in fal's queue until every one is there, which is when the open connections from
the bot to fal are counted; then fal runs them all at once (zero run time). Prints, per mode:
- open connections from the bot to fal with every job queued (target in webhook mode: none
  held per job);
- fal requests per job, by kind (target in webhook mode: 1 submit and 0 status requests);
- fal completion → result posted, p50/p99: for the 1,000 released at once (a burst: every
  result is downloaded and posted together), and for `--paced` more edits sent one by one at
  `--paced-rate` a second with fal's queue open (the latency of a bot that is not saturated).

Webhook mode asks for URL results (docs/fal-webhooks.md, "URL results, not inline data"), so
its images are fetched from fal's CDN: the `file` column. Stream mode gets them inline.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bot_bench import fire, free_port, latencies, pct, start_bot, wait_results  # noqa: E402
from emulators.discord_emulator import DiscordEmulator  # noqa: E402
from emulators.fal_emulator.server import FalEmulator  # noqa: E402
from tests.harness.images import png  # noqa: E402

KINDS = ("submit", "status", "stream", "result", "file", "jwks")
UPLOADS = ("token", "cdn_upload", "initiate", "signed_put")


@dataclass
class Figures:
    mode: str
    connections: int
    requests: dict[str, int]
    jobs: int
    deliver_ms: list[float]
    paced_ms: list[float]
    webhook_attempts: int


def open_connections(pid: int, ports: set[int]) -> int:
    """Established TCP connections from process `pid` to any of `ports` on this machine."""
    return sum(
        1
        for conn in psutil.Process(pid).net_connections(kind="tcp")
        if conn.status == psutil.CONN_ESTABLISHED and conn.raddr and conn.raddr.port in ports
    )


async def run_mode(mode: str, jobs: int, rate: float, paced: int, paced_rate: float) -> Figures:
    image = png(512, 512)
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            DiscordEmulator() as emu,
            FalEmulator(seed=1, queue_delay=0.0, run_time=0.0, concurrency=100_000) as fal,
        ):
            emu.ack_deadline = 30.0
            members = [emu.add_member(emu.guild, f"m{i}") for i in range(30)]
            fal_ports = {
                urlsplit(url).port or 0 for url in (fal.queue_url, fal.rest_url, fal.cdn_url)
            }
            extra: dict[str, str] = {}
            if mode == "webhook":
                port = free_port()
                extra = {
                    "FAL_WEBHOOK_URL": f"http://127.0.0.1:{port}/fal/webhook",
                    "WEBHOOK_PORT": str(port),
                    "WEBHOOK_HOST": "127.0.0.1",
                    # No status poll within the bench: every job must complete by its webhook.
                    "FAL_WEBHOOK_GRACE_SECONDS": "3600",
                }
            log_path = Path(tmp) / "bot.log"
            with log_path.open("wb") as log:
                bot = await start_bot(
                    emu, fal, Path(tmp) / "bot.sqlite3", free_port(), log, extra_env=extra
                )
                try:
                    fal.queue.paused = True  # every edit waits in fal's queue
                    await fire(emu, members, [f"{mode} {i}" for i in range(jobs)], image, rate)
                    await fal.wait_until(lambda: len(fal.jobs) >= jobs, within=600)
                    if mode == "stream":  # every queued job has its stream open
                        await fal.wait_until(lambda: fal.count("stream") >= jobs, within=120)
                    await asyncio.sleep(2.0)  # let what opens settle; nothing else to await
                    connections = open_connections(bot.pid or 0, fal_ports)
                    fal.queue.paused = False
                    await wait_results(emu, jobs, within=600)
                    _submit_ms, deliver_ms = latencies(emu, fal, f"{mode} ")
                    counts = collections.Counter(record.route for record in fal.requests)
                    attempts = len(fal.webhook_attempts)
                    prompts = [f"paced {mode} {i}" for i in range(paced)]
                    await fire(emu, members, prompts, image, paced_rate)
                    await wait_results(emu, jobs + paced, within=600)
                    _submit_ms, paced_ms = latencies(emu, fal, f"paced {mode} ")
                finally:
                    bot.terminate()
                    await bot.wait()
            return Figures(
                mode,
                connections,
                {kind: counts.get(kind, 0) for kind in KINDS}
                | {"uploads": sum(counts.get(k, 0) for k in UPLOADS)},
                jobs,
                deliver_ms,
                paced_ms,
                attempts,
            )


async def main(args: argparse.Namespace) -> None:
    results = [
        await run_mode(mode, args.jobs, args.rate, args.paced, args.paced_rate)
        for mode in ("stream", "webhook")
    ]
    print(f"{args.jobs} edits in flight, one bot process on SQLite, fal emulated (zero run time)")
    print(f"{'':38}" + "".join(f"{f.mode + ' mode':>16}" for f in results))
    print(
        f"{'open connections to fal, all queued':38}"
        + "".join(f"{f.connections:>16}" for f in results)
    )
    for kind in (*KINDS, "uploads"):
        print(
            f"{'fal ' + kind + ' requests per job':38}"
            + "".join(f"{f.requests[kind] / f.jobs:>16.3f}" for f in results)
        )
    print(
        f"{'webhook deliveries per job':38}"
        + "".join(f"{f.webhook_attempts / f.jobs:>16.3f}" for f in results)
    )
    for label, q in (("p50", 50), ("p99", 99)):
        print(
            f"{'completion → posted, burst ' + label + ' (ms)':38}"
            + "".join(f"{pct(f.deliver_ms, q):>16.0f}" for f in results)
        )
    for label, q in (("p50", 50), ("p99", 99)):
        print(
            f"{'completion → posted, paced ' + label + ' (ms)':38}"
            + "".join(f"{pct(f.paced_ms, q):>16.0f}" for f in results)
        )
    print(
        f"{'results measured (burst + paced)':38}"
        + "".join(f"{f'{len(f.deliver_ms)} + {len(f.paced_ms)}':>16}" for f in results)
    )


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="edits per second sent")
    parser.add_argument("--paced", type=int, default=100, help="edits sent after the burst")
    parser.add_argument("--paced-rate", type=float, default=10.0, help="their rate per second")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
