"""Fault scenarios with the bot in this process: fal misbehaving at a seeded rate, and Discord
rate limiting, erroring, dropping the gateway, expiring tokens and taking permissions away.
Shared by tests/e2e/test_faults_*.py (small, seeded) and bench/soak.py (bigger)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bot import FluxBot, Settings, create_bot
from emulators.discord_emulator import DiscordEmulator
from emulators.discord_emulator.interactions import Interaction
from emulators.discord_emulator.permissions import Permission
from emulators.fal_emulator.fixtures import FAST_POLL, fast_retry
from emulators.fal_emulator.server import FalEmulator
from storage.models import GuildSettings
from tests.harness.emulator_watch import Watch, is_status_message
from tests.harness.images import png
from tests.soak.soak_audit import Summary, audit, settled
from tests.soak.soak_kill import MEMBERS

RESULT_POST = r"/channels/\d+/messages$"


@dataclass
class Stage:
    """Both emulators, our bot in this process on a temp SQLite file, and a change watcher."""

    emu: DiscordEmulator
    fal: FalEmulator
    bot: FluxBot
    watch: Watch
    db_path: Path
    sent: int = 0

    async def send(
        self, member: str, prompt: str, *, channel: str = "general", count: int = 1
    ) -> Interaction:
        self.sent += 1
        colour = ((self.sent * 37) % 256, (self.sent * 11) % 256, 90)
        return await self.emu.slash(
            self.emu.member(member),
            self.emu.channel(channel),
            "edit",
            {"prompt": prompt, "size": "square", "count": count},
            attachments={"image": self.emu.attachment(png(64, 64, colour), "in.png")},
        )

    async def settle(self, within: float = 60.0) -> None:
        """Every job admitted so far has ended and its member has seen how (re-checked at
        each emulator change)."""
        await self.watch.until(
            lambda: settled(self.emu, self.db_path), within, "jobs unfinished or untold"
        )

    async def replies(self, interactions: list[Interaction]) -> list[str]:
        """What each member read in answer to their /edit (the deferred follow-up)."""
        texts = []
        for ix in interactions:
            callback = await ix.response()
            if callback.type == 4:
                texts.append(str((callback.data or {}).get("content", "")))
            else:
                texts.append((await ix.wait_followup(timeout=30.0)).content)
        return texts


@asynccontextmanager
async def stage(
    workdir: Path, *, seed: int, quota: int = 10_000, in_flight: int = 100
) -> AsyncIterator[Stage]:
    async with DiscordEmulator() as emu, FalEmulator(seed=seed) as fal:
        db_path = workdir / "data" / "bot.sqlite3"
        settings = Settings(
            **emu.settings_overrides(),
            fal_key=fal.key,
            fal_queue_url=fal.queue_url,
            fal_rest_url=fal.rest_url,
            fal_cdn_url=fal.cdn_url,
            database_path=db_path,
        )
        bot = create_bot(
            settings,
            guild_ready_timeout=0.1,
            fal_options={"poll": FAST_POLL, "retry": fast_retry()},
        )
        await emu.start_bot(bot)
        try:
            await bot.storage.settings.save(
                emu.guild.id, GuildSettings(default_quota=quota, max_in_flight=in_flight)
            )
            yield Stage(emu, fal, bot, Watch(emu, fal), db_path)
        finally:
            await emu.stop_bot()


# ----------------------------------------------------------------------------- fal faults

# What each fal route may suffer, one seeded draw per request (`rate` of them fault).
FAL_FAULTS: dict[str, tuple[str, ...]] = {
    "submit": ("ingress_502", "ingress_503", "rate_limit", "slow"),
    "status": ("ingress_502", "ingress_503", "rate_limit", "slow"),
    "result": ("ingress_502", "ingress_503", "slow"),
    "stream": ("reset", "slow"),  # reset: the SSE connection drops as it opens
    "token": ("ingress_502", "ingress_503", "slow"),
    "cdn_upload": ("ingress_502", "ingress_503", "slow"),
    "file": ("ingress_502", "ingress_503", "slow"),
}


@dataclass(frozen=True)
class FalFaultConfig:
    seed: int = 20
    jobs: int = 40
    rate: float = 0.2
    members: tuple[str, ...] = MEMBERS
    run_time: float = 0.05
    slow_delay: float = 0.2


@dataclass
class FaultOutcome:
    summary: Summary
    faults: Counter[str] = field(default_factory=Counter)
    replies: list[str] = field(default_factory=list)


def script_fal_faults(fal: FalEmulator, rng: random.Random, rate: float, per_route: int) -> None:
    """Seeded faults per route. At most two in a row: the client retries five times, and a
    job lost to a long outage is a different scenario (it fails, refunded, and says so)."""
    for route, kinds in FAL_FAULTS.items():
        script: list[str] = []
        for _ in range(per_route):
            streak = script[-2:] == [s for s in script[-2:] if s != "ok"] and len(script) >= 2
            faulty = not streak and rng.random() < rate
            script.append(rng.choice(kinds) if faulty else "ok")
        fal.script_faults(route, *script)


async def run_fal_faults(
    workdir: Path, config: FalFaultConfig, *, say: Callable[[str], None] = print
) -> FaultOutcome:
    rng = random.Random(config.seed)
    async with stage(workdir, seed=config.seed) as st:
        fal = st.fal
        fal.run_time = config.run_time
        fal.slow_response_delay = config.slow_delay
        fal.runner_failure_rate = config.rate
        fal.runner_failure_type = "runner_disconnected"
        fal.sse_drop_rate = config.rate  # a stream that worked breaks after its first event
        script_fal_faults(fal, rng, config.rate, per_route=config.jobs * 20)
        sent = [
            await st.send(config.members[i % len(config.members)], f"fal faults {i}")
            for i in range(config.jobs)
        ]
        replies = await st.replies(sent)
        await st.settle()
        summary = await audit("fal-faults", st.emu, fal, st.db_path, guild_id=st.emu.guild.id)
        faults: Counter[str] = Counter(r.fault for r in fal.requests if r.fault)
        faults["runner_disconnected"] = sum(
            1 for job in fal.jobs.values() if job.error_type == "runner_disconnected"
        )
        # Polls happen only after a status stream broke or failed to open.
        faults["status_polls"] = sum(1 for r in fal.requests if r.route == "status")
        summary.figures["faults"] = ",".join(f"{k}:{v}" for k, v in sorted(faults.items()))
        say(summary.line())
        return FaultOutcome(summary, faults, replies)


# ------------------------------------------------------------------------- Discord faults


@dataclass(frozen=True)
class DiscordFaultConfig:
    seed: int = 30
    jobs: int = 24  # in three waves, a fault mix around each
    members: tuple[str, ...] = MEMBERS
    # Result posts answered 500, then 429 with retry_after: discord.py tries a request five
    # times, so at most four faults keep every post deliverable whichever posts they hit.
    server_errors: int = 1
    rate_limits: int = 3
    run_time: float = 0.05


@dataclass
class DiscordFaultOutcome:
    summary: Summary
    resumes: int = 0
    identifies: int = 0
    refused_posts: Counter[int] = field(default_factory=Counter)
    notes: dict[int, list[str]] = field(default_factory=dict)


def _status_count(st: Stage) -> int:
    return sum(1 for m in st.emu.state.messages.values() if is_status_message(m))


async def run_discord_faults(
    workdir: Path, config: DiscordFaultConfig, *, say: Callable[[str], None] = print
) -> DiscordFaultOutcome:
    """Three waves of /edit: (1) result posts rate limited and failing with 500s; (2) the
    gateway drops mid-jobs and commands arrive while it is down; (3) interaction tokens expire
    while fal works, then the bot loses Attach Files in one channel."""
    rng = random.Random(config.seed)
    wave = max(3, config.jobs // 3)
    async with stage(workdir, seed=config.seed) as st:
        emu, fal = st.emu, st.fal
        fal.run_time = config.run_time
        members = list(config.members)
        identifies = emu.hub.identifies

        # Wave 1: every job admitted (status posted) while fal holds them, then result posts
        # meet 429s and 500s.
        fal.queue_delay = 0.5
        sent = [await st.send(rng.choice(members), f"discord wave1 {i}") for i in range(wave)]
        await st.replies(sent)
        await st.watch.until(lambda: _status_count(st) >= wave, 30.0, "wave 1 not admitted")
        emu.fail_next("POST", RESULT_POST, status=500, count=config.server_errors)
        emu.fail_next("POST", RESULT_POST, status=429, retry_after=0.2, count=config.rate_limits)
        fal.queue_delay = 0.0
        await st.settle()

        # Wave 2: the gateway drops while jobs run; members keep sending /edit meanwhile.
        fal.run_time = 0.3
        first = [await st.send(rng.choice(members), f"discord wave2 {i}") for i in range(wave)]
        await st.replies(first)
        await emu.drop_gateway()
        during = [
            await st.send(rng.choice(members), f"discord wave2 late {i}") for i in range(wave // 2)
        ]
        await emu.wait_for("resume", timeout=30.0)
        await st.replies(during)
        await st.settle()

        # Wave 3: tokens expire while fal holds the jobs; results still go to the channel.
        # In #lab the bot then loses Attach Files: those members are told and refunded.
        lab = emu.add_channel(emu.guild, "lab")
        fal.queue_delay = 1.0
        fal.run_time = config.run_time
        third = [await st.send(rng.choice(members), f"discord wave3 {i}") for i in range(wave)]
        lab_jobs = [
            await st.send(rng.choice(members), f"discord lab {i}", channel="lab")
            for i in range(max(2, wave // 3))
        ]
        await st.replies(third + lab_jobs)
        emu.clock.advance(16 * 60)  # past the 15-minute interaction token
        bot_member = emu.world.bot_member(emu.guild)
        emu.set_overwrite(lab, bot_member, deny=Permission.ATTACH_FILES)
        await st.settle()

        summary = await audit("discord-faults", emu, fal, st.db_path, guild_id=emu.guild.id)
        outcome = DiscordFaultOutcome(summary)
        outcome.resumes = emu.hub.resumes
        outcome.identifies = emu.hub.identifies - identifies
        outcome.refused_posts = Counter(
            r.status for r in emu.requests if r.method == "POST" and r.status in (429, 500)
        )
        summary.figures["resumes"] = str(outcome.resumes)
        summary.figures["reidentifies"] = str(outcome.identifies)
        summary.figures["posts_429"] = str(outcome.refused_posts[429])
        summary.figures["posts_500"] = str(outcome.refused_posts[500])
        say(summary.line())
        return outcome
