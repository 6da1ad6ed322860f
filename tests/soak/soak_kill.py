"""The kill scenario: our bot as a child process, SIGKILLed at seeded moments of its jobs' lives
and restarted each time, while members keep sending /edit. Shared by
tests/soak/test_crash_kill.py (small and seeded) and bench/soak.py (bigger).

A kill is armed as (moment, n): the bot dies at the n-th time the emulators see that moment
(see `tests.harness.emulator_watch.MOMENTS`), from inside the emulator's handler, so "Discord
created the result message but the bot never heard back" is hit exactly, not by luck.
"""

from __future__ import annotations

import random
import sqlite3
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from emulators.discord_emulator import DiscordEmulator
from emulators.fal_emulator.server import FalEmulator
from storage import Storage
from storage.models import GuildSettings
from tests.harness.bot_process import BotProcess, bot_environment
from tests.harness.emulator_watch import KillSwitch, Watch, is_result_message, plan_kills
from tests.harness.images import png
from tests.soak.soak_audit import (
    Summary,
    audit,
    read_jobs,
    result_messages,
    settled,
    status_messages,
    stored_request_ids,
)

MEMBERS = ("alice", "bob", "carol", "dave", "erin")


@dataclass(frozen=True)
class KillConfig:
    seed: int = 10
    jobs: int = 50
    kills: int = 12
    members: tuple[str, ...] = MEMBERS
    run_time: float = 0.2  # fal's seconds per request: long enough to die while it runs
    two_image_every: int = 7  # every n-th command asks for 2 images (quota counts images)
    round_timeout: float = 60.0


@dataclass
class Command:
    index: int
    member: str
    prompt: str
    image: bytes
    count: int
    sent: int = 0  # how many times a member had to send it (a kill before admission loses it)


@dataclass
class KillOutcome:
    summary: Summary
    kills: list[tuple[str, int]] = field(default_factory=list)
    resent: int = 0  # commands lost before admission (nothing stored, nothing charged)
    status_duplicates: int = 0
    unreplied_results: int = 0
    nonce_replays: int = 0  # result posts Discord answered with the message it already had
    log_path: Path | None = None


def make_commands(config: KillConfig) -> list[Command]:
    commands = []
    for i in range(config.jobs):
        # A distinct image per command: inputs are deduplicated by hash, and every command
        # should re-host its own (the "uploading" moment).
        colour = ((i * 37 + config.seed) % 256, (i * 11) % 256, (i * 5 + 90) % 256)
        commands.append(
            Command(
                index=i,
                member=config.members[i % len(config.members)],
                prompt=f"soak {config.seed} edit {i}",
                image=png(64, 64, colour),
                count=2 if config.two_image_every and i % config.two_image_every == 3 else 1,
            )
        )
    return commands


async def prepare_database(path: Path, guild_id: int, *, quota: int, in_flight: int) -> None:
    """The server's limits, written before the first start (an admin would use /admin)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = await Storage.open(path)
    try:
        await storage.settings.save(
            guild_id, GuildSettings(default_quota=quota, max_in_flight=in_flight)
        )
    finally:
        await storage.close()


def admitted_prompts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT id, json_extract(request, '$.prompt') FROM jobs").fetchall()
    finally:
        conn.close()
    return {str(prompt): int(job_id) for job_id, prompt in rows}


def bot_settings(emu: DiscordEmulator, fal: FalEmulator, db_path: Path) -> dict[str, str]:
    return {
        **emu.bot_env(),
        "FAL_KEY": fal.key,
        "FAL_QUEUE_URL": fal.queue_url,
        "FAL_REST_URL": fal.rest_url,
        "FAL_CDN_URL": fal.cdn_url,
        "DATABASE_PATH": str(db_path),
        "JOB_TIMEOUT_SECONDS": "600",
        "LOG_LEVEL": "INFO",
    }


async def run_kill_scenario(
    workdir: Path, config: KillConfig, *, say: Callable[[str], None] = print
) -> KillOutcome:
    rng = random.Random(config.seed)
    commands = make_commands(config)
    batch_size = max(1, config.jobs // (config.kills + 1))
    plan = deque(plan_kills(rng, config.kills, batch_size))
    db_path = workdir / "data" / "bot.sqlite3"
    outcome = KillOutcome(Summary("kill"), log_path=workdir / "bot.log")

    async with DiscordEmulator() as emu, FalEmulator(seed=config.seed) as fal:
        fal.run_time = config.run_time
        channel = emu.channel("general")
        await prepare_database(db_path, emu.guild.id, quota=10_000, in_flight=config.jobs)
        bot = BotProcess(bot_environment(bot_settings(emu, fal, db_path)), workdir / "bot.log")
        watch = Watch(emu, fal)
        switch = KillSwitch(watch, bot.kill)
        # fal requests queued while the bot died before storing their id: the documented
        # unknown-outcome window, found after each kill as requests no job row knows.
        unknown_window: set[str] = set()

        async def start() -> None:
            mark = emu.mark()
            await bot.start()
            try:
                await emu.wait_for("identify", since=mark, timeout=30.0)
            except Exception as error:
                raise RuntimeError(f"the bot did not come up:\n{bot.log_tail()}") from error

        async def send(command: Command) -> None:
            command.sent += 1
            await emu.slash(
                emu.member(command.member),
                channel,
                "edit",
                {"prompt": command.prompt, "size": "square", "count": command.count},
                attachments={"image": emu.attachment(command.image, f"in{command.index}.png")},
            )

        def delivered(batch: list[Command]) -> bool:
            posted = {
                str(m.embeds[0].get("description", ""))
                for m in emu.messages_in(channel)
                if is_result_message(m)
            }
            return all(c.prompt in posted for c in batch)

        pending = deque(commands)
        sent: list[Command] = []
        try:
            while True:
                if not bot.running:
                    await start()
                admitted = admitted_prompts(db_path)
                lost = [c for c in sent if c.prompt not in admitted]
                sent = [c for c in sent if c.prompt in admitted]
                outcome.resent += len(lost)
                pending.extendleft(reversed(lost))
                if not pending and not plan:
                    break
                batch = [pending.popleft() for _ in range(min(batch_size, len(pending)))]
                step = plan.popleft() if plan and batch else None
                if step is not None:
                    switch.arm(*step)
                for command in batch:
                    if bot.running:
                        await send(command)
                    sent.append(command)  # a command sent to a dead bot is lost: resent later
                await watch.until(
                    lambda b=batch, s=step: (
                        (s is not None and switch.armed is None) or (bot.running and delivered(b))
                    ),
                    config.round_timeout,
                    f"round with kill {step} did not end; bot log:\n{bot.log_tail()}",
                )
                switch.disarm()
                for kill in switch.fired:
                    outcome.kills.append((kill.moment, kill.nth))
                if switch.fired:
                    switch.fired.clear()
                    await bot.wait()
                    unknown_window |= set(fal.jobs) - stored_request_ids(db_path)

            # Every command became a job; wait until each job has ended.
            await watch.until(
                lambda: settled(emu, db_path),
                config.round_timeout,
                f"jobs unfinished or untold; bot log:\n{bot.log_tail()}",
            )
            await bot.stop()
        finally:
            await bot.close()

        summary = await audit(
            "kill",
            emu,
            fal,
            db_path,
            guild_id=emu.guild.id,
            unknown_window=unknown_window,
        )
        if summary.jobs != config.jobs:
            summary.problems.append(f"{summary.jobs} jobs for {config.jobs} commands")
        results = result_messages(emu)
        statuses = status_messages(emu)
        outcome.status_duplicates = sum(max(0, len(v) - 1) for v in statuses.values())
        result_posts = [
            r
            for r in emu.requests
            if r.method == "POST" and r.path.endswith("/messages") and r.files and r.status == 200
        ]
        outcome.nonce_replays = len(result_posts) - sum(len(v) for v in results.values())
        # Each result replies to its job's status message, even when a restart had to find
        # that message again through its nonce.
        status_ids = {job.id: job.status_message_id for job in read_jobs(db_path)}
        outcome.unreplied_results = sum(
            1
            for job_id, posted in results.items()
            for message in posted
            if str((message.reference or {}).get("message_id")) != str(status_ids.get(job_id))
        )
        summary.figures["unreplied_results"] = str(outcome.unreplied_results)
        moments = Counter(moment for moment, _ in outcome.kills)
        summary.figures["kills"] = str(len(outcome.kills))
        summary.figures["unknown_window_submits"] = str(len(unknown_window))
        summary.figures["resent_commands"] = str(outcome.resent)
        summary.figures["status_duplicates"] = str(outcome.status_duplicates)
        summary.figures["nonce_replays"] = str(outcome.nonce_replays)
        summary.figures["moments"] = ",".join(f"{k}:{v}" for k, v in sorted(moments.items()))
        summary.figures["results"] = str(sum(len(v) for v in results.values()))
        outcome.summary = summary
        say(summary.line())
    return outcome
