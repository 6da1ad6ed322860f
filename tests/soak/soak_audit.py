"""Counting what happened to every job, from what members see and what was stored.

Three independent witnesses: the Discord emulator (result messages per job, what each member
was told), the fal emulator (requests queued per prompt) and the SQLite file (job states, the
quota ledger, and `quotas.usage` as /quota shows it). The soak script prints the figures; the
tests assert the zeros.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulators.discord_emulator import DiscordEmulator
from emulators.discord_emulator.messages import Message
from emulators.fal_emulator.server import FalEmulator
from storage import Storage
from storage.models import REFUND_STATES, TERMINAL_STATES, JobState
from tests.harness.storage_fixtures import query

_TITLE = re.compile(r"^Edit #(\d+)$")
FAILURE_MARKS = ("❌ Failed", "🚫 Cancelled", "⌛ Timed out")


@dataclass
class JobRow:
    id: int
    user_id: int
    state: JobState
    images: int
    prompt: str
    status_message_id: int | None
    result_message_id: int | None
    error: str | None
    ledger: str | None  # reserved, committed, refunded, or None when no row
    guild_id: int = 0


@dataclass
class Summary:
    """One scenario's outcome. The targets: lost, duplicates and double charges all zero."""

    scenario: str
    jobs: int = 0
    delivered: int = 0
    refunded: int = 0
    duplicates: int = 0
    lost: int = 0
    double_charges: int = 0
    fal_duplicate_submits: int = 0  # extra fal requests for one job (unknown-outcome window)
    allowed_fal_duplicates: int = 0  # of those, how many a kill in that window explains
    problems: list[str] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        text = (
            f"{self.scenario:<15} jobs={self.jobs:<4} delivered={self.delivered:<4} "
            f"refunded={self.refunded:<3} duplicates={self.duplicates} lost={self.lost} "
            f"double_charges={self.double_charges} "
            f"fal_duplicate_submits={self.fal_duplicate_submits}"
            f" (unknown-outcome window: {self.allowed_fal_duplicates})"
        )
        extra = " ".join(f"{k}={v}" for k, v in self.figures.items())
        return f"{text} {extra}".rstrip()

    @property
    def clean(self) -> bool:
        return not (self.duplicates or self.lost or self.double_charges or self.problems)


_JOBS_SQL = """SELECT j.id, j.user_id, j.state, j.images, j.request, j.status_message_id,
                      j.result_message_id, j.error, l.state AS ledger, j.guild_id
                 FROM jobs j LEFT JOIN quota_ledger l ON l.job_id = j.id ORDER BY j.id"""


def _job_row(row: tuple[Any, ...]) -> JobRow:
    (job_id, user_id, state, images, request, status_id, result_id, error, ledger, guild) = row
    return JobRow(
        id=job_id,
        user_id=user_id,
        state=JobState(state),
        images=images,
        prompt=json.loads(request)["prompt"],
        status_message_id=status_id,
        result_message_id=result_id,
        error=error,
        ledger=ledger,
        guild_id=guild,
    )


def read_jobs(db_path: Path) -> list[JobRow]:
    """The jobs of a SQLite file, read synchronously (for checks run inside emulator hooks)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return [_job_row(tuple(row)) for row in conn.execute(_JOBS_SQL).fetchall()]
    finally:
        conn.close()


async def fetch_jobs(location: Path | str) -> list[JobRow]:
    """The jobs of a SQLite file or a PostgreSQL database."""
    return [_job_row(row) for row in await query(location, _JOBS_SQL)]


def result_messages(emu: DiscordEmulator) -> dict[int, list[Message]]:
    """Job id → the visible result messages the bot posted for it, in any channel."""
    found: dict[int, list[Message]] = defaultdict(list)
    bot_id = emu.bot_user.id
    for message in emu.state.messages.values():
        if message.author_id != bot_id or message.deleted or not message.attachments:
            continue
        title = str((message.embeds or [{}])[0].get("title", ""))
        match = _TITLE.match(title)
        if match:
            found[int(match.group(1))].append(message)
    return found


def status_messages(emu: DiscordEmulator) -> dict[int, list[Message]]:
    """Job id → the public status messages the bot posted for it."""
    found: dict[int, list[Message]] = defaultdict(list)
    bot_id = emu.bot_user.id
    pattern = re.compile(r"^\*\*Edit #(\d+)\*\*")
    for message in emu.state.messages.values():
        if message.author_id != bot_id or message.deleted or message.attachments:
            continue
        match = pattern.match(message.content)
        if match and not message.ephemeral:
            found[int(match.group(1))].append(message)
    return found


def private_notes(emu: DiscordEmulator, user_id: int) -> list[str]:
    """What the bot told one member privately: ephemeral follow-ups and DMs."""
    bot_id = emu.bot_user.id
    notes = []
    for message in emu.state.messages.values():
        if message.author_id != bot_id or message.deleted:
            continue
        private = message.ephemeral and message.visible_to == user_id
        channel = emu.world.channel(message.channel_id)
        dm = channel is not None and channel.guild_id is None and user_id in channel.recipient_ids
        if private or dm:
            notes.append(message.content)
    return notes


def told(emu: DiscordEmulator, job: JobRow, statuses: dict[int, list[Message]]) -> bool:
    """A refunded job's member was told: its status message says so, or a private note did."""
    if any(any(mark in m.content for mark in FAILURE_MARKS) for m in statuses.get(job.id, [])):
        return True
    return any("not charged" in note for note in private_notes(emu, job.user_id))


def settled(emu: DiscordEmulator, db_path: Path) -> bool:
    """Every job has ended and what ends it has reached Discord: its result, or the message
    telling the member it failed. (The row changes first; the message follows it.)"""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        open_jobs = conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE state NOT IN "
            "('delivered', 'failed', 'cancelled', 'expired')"
        ).fetchone()[0]
    finally:
        conn.close()
    if open_jobs:
        return False
    results, statuses = result_messages(emu), status_messages(emu)
    for job in read_jobs(db_path):
        if job.state == JobState.DELIVERED and not results.get(job.id):
            return False
        if job.state in REFUND_STATES and not told(emu, job, statuses):
            return False
    return True


def fal_submits_by_prompt(fal: FalEmulator) -> Counter[str]:
    return Counter(
        str(job.body.get("prompt")) for job in fal.jobs.values() if isinstance(job.body, dict)
    )


async def audit(
    scenario: str,
    emu: DiscordEmulator,
    fal: FalEmulator,
    db_path: Path | str,
    *,
    guild_id: int | None = None,
    window_seconds: int = 86_400,
    unknown_window: set[str] | None = None,
) -> Summary:
    """Every job: final, told, delivered at most once, charged exactly for what was delivered.
    `db_path` is the SQLite file or the PostgreSQL URL; `guild_id` limits it to one server."""
    summary = Summary(scenario)
    jobs = [j for j in await fetch_jobs(db_path) if guild_id is None or j.guild_id == guild_id]
    results = result_messages(emu)
    statuses = status_messages(emu)
    summary.jobs = len(jobs)
    delivered_images: Counter[tuple[int, int]] = Counter()
    for job in jobs:
        posted = results.get(job.id, [])
        if len(posted) > 1:
            summary.duplicates += len(posted) - 1
            summary.problems.append(f"job {job.id}: {len(posted)} result messages")
        if job.state not in TERMINAL_STATES:
            summary.lost += 1
            summary.problems.append(f"job {job.id} left {job.state}")
            continue
        if job.state == JobState.DELIVERED:
            if not posted or job.result_message_id not in {m.id for m in posted}:
                summary.lost += 1
                summary.problems.append(f"job {job.id} delivered but no matching result message")
                continue
            summary.delivered += 1
            delivered_images[job.guild_id, job.user_id] += len(posted[0].attachments)
            if job.ledger != "committed":
                summary.problems.append(f"job {job.id} delivered with ledger {job.ledger}")
            continue
        # failed, cancelled or expired: refunded, no result, and the member was told
        if posted:
            summary.problems.append(f"job {job.id} {job.state} but its result was posted")
        if job.ledger == "committed":
            summary.double_charges += 1
            summary.problems.append(f"job {job.id} {job.state} yet charged")
        elif job.ledger != "refunded":
            summary.problems.append(f"job {job.id} {job.state} with ledger {job.ledger}")
        if job.state in REFUND_STATES:
            summary.refunded += 1
        if not told(emu, job, statuses):
            summary.lost += 1
            summary.problems.append(f"job {job.id} {job.state} and the member was never told")

    # /quota's view: what each member is charged must equal what they received.
    storage = await Storage.open(db_path)
    try:
        for guild, user_id in sorted({(job.guild_id, job.user_id) for job in jobs}):
            usage = await storage.quotas.usage(guild, user_id, window_seconds)
            received = delivered_images[guild, user_id]
            if usage.in_flight:
                summary.problems.append(f"member {user_id}: {usage.in_flight} still reserved")
            extra = usage.images_used - received
            if extra > 0:
                summary.double_charges += extra
                summary.problems.append(
                    f"member {user_id}: charged {usage.images_used}, received {received}"
                )
            elif extra < 0:
                summary.problems.append(
                    f"member {user_id}: received {received} images, "
                    f"charged only {usage.images_used}"
                )
    finally:
        await storage.close()

    # A second fal request for one job is allowed only when the first one was queued by fal
    # while the bot died before storing its id (docs/fal-queue.md, "The unknown-outcome
    # window"): `unknown_window` lists those.
    window = unknown_window or set()
    orphans: Counter[str] = Counter(
        str(job.body.get("prompt"))
        for rid, job in fal.jobs.items()
        if rid in window and isinstance(job.body, dict)
    )
    for prompt, count in fal_submits_by_prompt(fal).items():
        if count > 1:
            extra = count - 1
            summary.fal_duplicate_submits += extra
            explained = min(extra, orphans[prompt])
            summary.allowed_fal_duplicates += explained
            if extra > explained:
                summary.problems.append(
                    f"fal ran {prompt!r} {count} times; only {explained} repeat(s) follow a "
                    "kill in the unknown-outcome window"
                )
    return summary


def stored_request_ids(db_path: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT fal_request_id FROM jobs WHERE fal_request_id IS NOT NULL")
        return {str(row[0]) for row in rows}
    finally:
        conn.close()
