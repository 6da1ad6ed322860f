"""The cluster kill scenario: two bot processes (one shard each) on one PostgreSQL database,
one of them SIGKILLed at a seeded moment of its jobs' lives in each round, while members of
both shards keep sending /edit. Shared by tests/soak/test_cluster_kill.py and bench/soak.py.

A round sends a batch to the victim's servers and arms a kill (see tests/soak/soak_kill.py for
the moments). Odd rounds restart the victim at once (it takes its own jobs back at start); even
rounds leave it down until the other process has adopted and finished its jobs, then restart
it. Commands a dead process never admitted are sent again. At the end the audit counts, from
the emulators and the database, jobs lost, results posted twice and members charged twice.
"""

from __future__ import annotations

import json
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from emulators.discord_emulator import DiscordEmulator
from emulators.discord_emulator.world import Guild
from emulators.fal_emulator.server import FalEmulator
from storage import Storage
from storage.models import GuildSettings
from tests.harness.cluster import Cluster
from tests.harness.emulator_watch import KillSwitch, plan_kills
from tests.harness.images import png
from tests.harness.storage_fixtures import query
from tests.soak.soak_audit import Summary, audit

MEMBERS = ("alice", "bob", "carol")
ENDED = {"delivered", "failed", "cancelled", "expired"}


@dataclass(frozen=True)
class ClusterKillConfig:
    seed: int = 18
    kills: int = 10
    per_round: int = 3  # commands sent to the victim's servers in each round
    run_time: float = 0.2
    round_timeout: float = 90.0


@dataclass
class ClusterOutcome:
    summary: Summary
    kills: list[tuple[int, str, int]] = field(default_factory=list)  # (node, moment, nth)
    adopted: int = 0  # jobs finished by the process that did not admit them
    resent: int = 0


async def _prepare(url: str, guilds: list[Guild]) -> None:
    storage = await Storage.open(url)
    try:
        for guild in guilds:
            await storage.settings.save(guild.id, GuildSettings(default_quota=10_000))
    finally:
        await storage.close()


async def _admitted_prompts(url: str) -> set[str]:
    rows = await query(url, "SELECT request FROM jobs")
    return {str(json.loads(request)["prompt"]) for (request,) in rows}


async def run_cluster_kill(
    workdir: Path,
    database_url: str,
    config: ClusterKillConfig,
    *,
    say: Callable[[str], None] = print,
) -> ClusterOutcome:
    rng = random.Random(config.seed)
    plan = deque(plan_kills(rng, config.kills, config.per_round))
    outcome = ClusterOutcome(Summary("cluster-kill"))
    async with DiscordEmulator() as emu, FalEmulator(seed=config.seed) as fal:
        emu.recommended_shards = 2
        fal.run_time = config.run_time
        cluster = Cluster(emu, fal, database_url, workdir)
        guilds = cluster.add_guilds(per_shard=2)
        await _prepare(database_url, guilds)
        unknown_window: set[str] = set()
        try:
            await cluster.start_all()
            pending: deque[tuple[Guild, str]] = deque()
            sent = 0
            for round_no in range(config.kills):
                victim = cluster.nodes[round_no % 2]
                other = cluster.nodes[1 - round_no % 2]
                mine = [g for g in guilds if cluster.owner_of(g) is victim]
                for n in range(config.per_round):
                    guild = mine[n % len(mine)]
                    pending.append((guild, f"cluster {config.seed} round {round_no} edit {n}"))
                moment, nth = plan.popleft()
                switch = KillSwitch(cluster.watch, victim.process.kill)
                switch.arm(moment, nth)
                batch = [item for item in pending if cluster.owner_of(item[0]) is victim]
                for guild, prompt in batch:
                    member = emu.member(MEMBERS[sent % len(MEMBERS)], guild)
                    sent += 1
                    if victim.running:
                        await emu.slash(
                            member,
                            emu.channel("general", guild),
                            "edit",
                            {"prompt": prompt},
                            attachments={"image": emu.attachment(png(64, 64), f"{sent}.png")},
                        )
                prompts = {prompt for _guild, prompt in batch}

                def posted(wanted: set[str] = prompts) -> bool:
                    seen = {str(m.embeds[0].get("description", "")) for m in cluster.results()}
                    return all(any(p in text for text in seen) for p in wanted)

                await cluster.watch.until(
                    lambda s=switch: s.fired or posted(),
                    config.round_timeout,
                    f"round {round_no}: no kill and no results\n{cluster.logs()}",
                )
                switch.detach()
                if switch.fired:
                    kill = switch.fired[0]
                    outcome.kills.append((victim.index, kill.moment, kill.nth))
                    await victim.process.wait()
                    stored = {
                        str(rid)
                        for (rid,) in await query(
                            database_url,
                            "SELECT fal_request_id FROM jobs WHERE fal_request_id IS NOT NULL",
                        )
                    }
                    unknown_window |= set(fal.jobs) - stored
                    if round_no % 2 == 0:
                        # Down until the other process has adopted and finished its jobs.
                        await cluster.until_jobs(
                            lambda jobs: all(j["state"] in ENDED for j in jobs),
                            config.round_timeout,
                            f"round {round_no}: node {other.index} did not finish the jobs",
                        )
                    await cluster.start(victim.index)
                admitted = await _admitted_prompts(database_url)
                lost = [item for item in pending if item[1] not in admitted]
                outcome.resent += len(lost)
                pending = deque(lost)
            # The last resends, with nobody killed, then everything must end.
            for guild, prompt in pending:
                await emu.slash(
                    emu.member("alice", guild),
                    emu.channel("general", guild),
                    "edit",
                    {"prompt": prompt},
                    attachments={"image": emu.attachment(png(64, 64), "last.png")},
                )
            expected = config.kills * config.per_round
            await cluster.until_jobs(
                lambda jobs: len(jobs) >= expected and all(j["state"] in ENDED for j in jobs),
                config.round_timeout,
                "every job ended",
            )
            jobs = await cluster.jobs()
            outcome.adopted = sum(
                1
                for job in jobs
                if not str(job["lease_owner"]).startswith(
                    cluster.owner_of(emu.world.guilds[job["guild_id"]]).instance + "/"
                )
            )
            tracebacks = cluster.tracebacks()
        finally:
            await cluster.close()
        summary = await audit("cluster-kill", emu, fal, database_url, unknown_window=unknown_window)
        if summary.jobs != config.kills * config.per_round:
            summary.problems.append(f"{summary.jobs} jobs for {expected} commands")
        if tracebacks:
            summary.problems.append(f"{len(tracebacks)} tracebacks in the bot logs")
        moments = Counter(moment for _node, moment, _nth in outcome.kills)
        summary.figures["kills"] = str(len(outcome.kills))
        summary.figures["adopted"] = str(outcome.adopted)
        summary.figures["resent_commands"] = str(outcome.resent)
        summary.figures["unknown_window_submits"] = str(len(unknown_window))
        summary.figures["moments"] = ",".join(f"{k}:{v}" for k, v in sorted(moments.items()))
        outcome.summary = summary
        say(summary.line())
    return outcome
