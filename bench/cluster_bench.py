"""Shard cluster benchmark: jobs per second with one bot process running both shards vs two
processes running one shard each, on PostgreSQL, side by side in one run; and the takeover time
after a SIGKILL (from the kill to the adopted job's next visible update: a status edit or its
result, made by the surviving process).

    python -m bench.cluster_bench [--jobs 60] [--trials 10] [--lease-seconds 2]

Real `python bot.py` processes against both emulators on 127.0.0.1 and an embedded PostgreSQL
server (tests/harness/postgres.py). fal's run time is short, so the figures are the bot's own
costs (admission, re-hosting, status edits, delivery) on this machine; they are printed, not
asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from emulators.discord_emulator import DiscordEmulator
from emulators.discord_emulator.world import Guild
from emulators.fal_emulator.server import FalEmulator
from storage import Storage
from storage.models import GuildSettings
from tests.harness.cluster import Cluster
from tests.harness.images import png
from tests.harness.postgres import ScratchDatabases, start_scratch_databases
from tests.harness.storage_fixtures import query

ENDED = {"delivered", "failed", "cancelled", "expired"}


async def _unlimited(url: str, guilds: list[Guild]) -> None:
    storage = await Storage.open(url)
    try:
        for guild in guilds:
            await storage.settings.save(
                guild.id, GuildSettings(default_quota=100_000, max_in_flight=1_000)
            )
    finally:
        await storage.close()


async def _edit(cluster: Cluster, guild: Guild, member: str, prompt: str) -> None:
    emu = cluster.emu
    await emu.slash(
        emu.member(member, guild),
        emu.channel("general", guild),
        "edit",
        {"prompt": prompt},
        attachments={"image": emu.attachment(png(64, 64), f"{prompt}.png")},
    )


async def throughput(
    databases: ScratchDatabases, folder: Path, layout: tuple[tuple[int, ...], ...], jobs: int
) -> float:
    """Jobs per second from the first command to the last result, over four servers."""
    url = await databases.create()
    try:
        async with DiscordEmulator() as emu, FalEmulator(seed=7) as fal:
            emu.recommended_shards = 2
            fal.run_time = 0.05
            fal.concurrency = 100
            cluster = Cluster(emu, fal, url, folder, layout=layout)
            guilds = cluster.add_guilds(per_shard=2)
            await _unlimited(url, guilds)
            try:
                await cluster.start_all()
                started = time.perf_counter()
                members = ("alice", "bob", "carol")
                for n in range(jobs):
                    guild = guilds[n % len(guilds)]
                    await _edit(cluster, guild, members[n // len(guilds) % 3], f"bench {n}")
                await cluster.until_jobs(
                    lambda rows: len(rows) == jobs and all(r["state"] in ENDED for r in rows),
                    600.0,
                    "every bench job ended",
                )
                elapsed = time.perf_counter() - started
            finally:
                await cluster.close()
        return jobs / elapsed
    finally:
        await databases.drop(url)


async def takeovers(
    databases: ScratchDatabases, folder: Path, trials: int, lease_seconds: float
) -> list[float]:
    """Seconds from SIGKILL to the surviving process's first visible update of an orphan."""
    url = await databases.create()
    seconds: list[float] = []
    try:
        async with DiscordEmulator() as emu, FalEmulator(seed=8) as fal:
            emu.recommended_shards = 2
            cluster = Cluster(emu, fal, url, folder, extra={"LEASE_SECONDS": str(lease_seconds)})
            guilds = cluster.add_guilds(per_shard=1)
            victim = cluster.nodes[0]
            mine = next(g for g in guilds if cluster.owner_of(g) is victim)
            try:
                await cluster.start_all()
                for trial in range(trials):
                    fal.paused = True  # the job waits at fal while its process dies
                    await _edit(cluster, mine, "alice", f"takeover {trial}")
                    job = (
                        await cluster.until_jobs(
                            lambda rows: bool(rows) and rows[-1]["state"] == "submitted",
                            60.0,
                            "the trial's job at fal",
                        )
                    )[-1]
                    [(status_id,)] = await query(
                        url, "SELECT status_message_id FROM jobs WHERE id = ?", job["id"]
                    )
                    mark = emu.mark()
                    killed_at = time.perf_counter()
                    await cluster.kill(0)
                    fal.paused = False

                    def updated(since: int = mark, message_id: int = status_id) -> bool:
                        return any(
                            event.kind in ("message_update", "message_create")
                            and (
                                event.data.id == message_id
                                or (event.data.reference or {}).get("message_id")
                                in (message_id, str(message_id))
                            )
                            for event in emu.state.events[since:]
                        )

                    await cluster.watch.until(updated, 120.0, "the orphan was not taken over")
                    seconds.append(time.perf_counter() - killed_at)
                    await cluster.until_jobs(
                        lambda rows: all(r["state"] in ENDED for r in rows),
                        120.0,
                        "the adopted job ended",
                    )
                    await cluster.start(0)
            finally:
                await cluster.close()
    finally:
        await databases.drop(url)
    return seconds


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> None:
    databases = start_scratch_databases()
    try:
        with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
            folder = Path(tmp)
            one = await throughput(databases, folder / "one", ((0, 1),), args.jobs)
            two = await throughput(databases, folder / "two", ((0,), (1,)), args.jobs)
            print(f"{'jobs per second (PostgreSQL, 2 shards, 4 servers)':<52}{'':>4}")
            print(f"  {'one process, shards 0-1':<48}{one:>8.1f}")
            print(f"  {'two processes, one shard each':<48}{two:>8.1f}")
            print(f"  {'ratio two / one':<48}{two / one:>8.2f}")
            taken = await takeovers(databases, folder / "takeover", args.trials, args.lease)
            print(
                f"takeover after SIGKILL (LEASE_SECONDS={args.lease:g}, {len(taken)} kills): "
                f"p50 {statistics.median(taken):.2f} s, p99 {_percentile(taken, 0.99):.2f} s, "
                f"max {max(taken):.2f} s"
            )
    finally:
        databases.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--lease", "--lease-seconds", type=float, default=2.0, dest="lease")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
