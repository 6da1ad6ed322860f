"""Webhooks that are not proven to come from fal, or that name no job, are answered 4xx and
change nothing: the edit still waits at fal, nothing is recorded, nothing posted or charged."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from client.webhooks import URL_DELIVERY_BYTES
from emulators.discord_emulator import DiscordEmulator
from emulators.fal_emulator.jobs import Job
from emulators.fal_emulator.server import FalEmulator
from tests.harness.e2e import World
from tests.harness.hook_world import delivery_bytes, post, signed_headers, start_hook_world


@pytest.fixture
async def hook_world(
    discord_emulator: DiscordEmulator, fal_emulator: FalEmulator, tmp_path: Path
) -> AsyncIterator[World]:
    yield await start_hook_world(discord_emulator, fal_emulator, tmp_path)


def oversized(fal: FalEmulator, job: Job) -> tuple[bytes, dict[str, str]]:
    """Properly signed, but larger than any delivery of URL results can be."""
    body = delivery_bytes(job, padding="x" * URL_DELIVERY_BYTES)
    return body, signed_headers(fal, job.request_id, body)


def unknown_request(fal: FalEmulator, job: Job) -> tuple[bytes, dict[str, str]]:
    """Properly signed, for a request no job of ours has."""
    other = "0f0e0d0c-0b0a-4908-8706-050403020100"
    body = delivery_bytes(job, request_id=other, gateway_request_id=other)
    return body, signed_headers(fal, other, body)


Crafted = Callable[[FalEmulator, Job], tuple[bytes, dict[str, str]]]


@dataclass(frozen=True)
class Row:
    expected: int
    fault: str | None = None  # the emulator sends it (a fault on every attempt) …
    crafted: Crafted | None = None  # … or the test does
    replayed: bool = False  # a genuine delivery signed 6 minutes ago, sent now


ROWS = {
    "forged key": Row(401, fault="wrong_key"),
    "altered body": Row(401, fault="altered_body"),
    "stale timestamp": Row(401, fault="old_timestamp"),
    "future timestamp": Row(401, fault="future_timestamp"),
    "unsigned": Row(401, fault="missing_signature"),
    "replayed after 6 minutes": Row(401, replayed=True),
    "not json": Row(400, fault="not_json"),
    "not a delivery": Row(400, fault="bad_schema"),
    "oversized": Row(413, crafted=oversized),
    "unknown request id": Row(404, crafted=unknown_request),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
async def test_a_bad_webhook_is_refused_and_changes_nothing(hook_world: World, row: Row) -> None:
    world = hook_world
    fal = world.fal
    fal.webhook_backoff = 60.0  # one attempt is enough to look at
    if row.fault is not None:
        fal.webhook_fault = row.fault
    elif row.replayed:
        # What a captured delivery looks like when someone sends it again 6 minutes later.
        fal.clock = lambda: time.time() - 360
    else:
        fal.webhook_drop = True
    await world.reply_text(await world.edit(prompt="guarded"))
    job = await world.job_in(1, "submitted")
    request_id = job.fal_request_id or ""
    fal_job = await fal.wait_for_status(request_id, "COMPLETED")
    usage = await world.usage()

    if row.crafted is not None:
        body, headers = row.crafted(fal, fal_job)
        status = await post(world, body, headers)
    else:
        [attempt] = await fal.wait_for_webhook_attempts(request_id, 1)
        status = attempt.status or 0
    assert status == row.expected

    after = await world.bot.storage.jobs.get(1)
    assert after is not None and after.state == "submitted"
    assert await world.bot.storage.deliveries.for_job(1) is None
    assert await world.usage() == usage == (1, 1)  # reserved while in flight, as before
    assert not [m for m in world.emu.messages_in(world.emu.channel("general")) if m.files]
    assert fal.count("result") == 0 and fal.count("stream") == 0
