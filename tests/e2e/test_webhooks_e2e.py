"""Edits followed by fal's webhook: the result arrives without the bot holding a status stream
or polling, a late or lost webhook is caught by one status poll after the grace period, copies
change nothing, and a delivery recorded by another process or before a restart is used."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from client.webhooks import WebhookDelivery
from emulators.discord_emulator import DiscordEmulator
from emulators.fal_emulator.server import FalEmulator
from emulators.fal_emulator.webhooks import delivery_body
from jobs.records import AnyJob
from storage import Storage
from tests.harness.e2e import World, start_world
from tests.harness.hook_world import (
    delivery_bytes,
    free_port,
    post,
    signed_headers,
    start_hook_world,
)

# The webhook path must work on both backends: one process on SQLite, a cluster's PostgreSQL.
E2E_BACKENDS = ("sqlite", "postgres")


@pytest.fixture
async def hook_world(
    e2e_database: str | None,
    discord_emulator: DiscordEmulator,
    fal_emulator: FalEmulator,
    tmp_path: Path,
) -> AsyncIterator[World]:
    yield await start_hook_world(discord_emulator, fal_emulator, tmp_path, e2e_database)


async def quick_grace(world: World, grace: float) -> None:
    """Restart the bot with a shorter grace period."""
    world.settings = world.settings.model_copy(update={"fal_webhook_grace_seconds": grace})
    await world.restart()


def fal_calls(world: World) -> dict[str, int]:
    return {route: world.fal.count(route) for route in ("submit", "status", "stream", "result")}


async def results_in(world: World, channel: str = "general") -> int:
    messages = world.emu.messages_in(world.emu.channel(channel))
    return sum(1 for message in messages if message.files)


async def test_edit_completes_by_webhook_with_one_submit_and_no_status_requests(
    hook_world: World,
) -> None:
    world = hook_world
    await world.edit(prompt="a red cat")
    result = await world.result()
    assert result.files
    job = await world.job_in(1, "delivered")

    assert fal_calls(world) == {"submit": 1, "status": 0, "stream": 0, "result": 0}
    [attempt] = world.fal.webhook_attempts_for(job.fal_request_id or "")
    assert attempt.status == 200
    [submitted] = world.fal.submissions()
    assert submitted.get("sync_mode") is not True  # URL results: a small delivery
    [fal_job] = world.fal.jobs.values()
    assert fal_job.webhook_url == str(world.settings.fal_webhook_url)
    assert await world.usage() == (1, 0)
    assert await world.bot.storage.deliveries.for_job(1) is None  # used, then dropped


async def test_a_webhook_later_than_the_grace_period_is_caught_by_one_status_poll(
    hook_world: World,
) -> None:
    world = hook_world
    await quick_grace(world, 0.5)
    world.fal.webhook_delay = 3.0
    await world.edit(prompt="slow webhook")
    await world.result()
    job = await world.job_in(1, "delivered")
    calls = fal_calls(world)
    assert calls["submit"] == 1 and calls["stream"] == 0 and calls["result"] == 1
    assert calls["status"] >= 1
    # The webhook, when it comes, finds the job done: answered 200, nothing changes.
    [attempt] = await world.fal.wait_for_webhook_attempts(job.fal_request_id or "", 1)
    assert attempt.status == 200
    assert await results_in(world) == 1
    assert await world.usage() == (1, 0)


async def test_a_dropped_webhook_still_ends_in_a_posted_result(hook_world: World) -> None:
    world = hook_world
    await quick_grace(world, 0.5)
    world.fal.webhook_drop = True
    await world.edit(prompt="lost webhook")
    result = await world.result()
    assert result.files
    assert fal_calls(world)["stream"] == 0
    assert await world.usage() == (1, 0)


async def test_duplicate_deliveries_make_one_result_and_one_charge(hook_world: World) -> None:
    world = hook_world
    world.fal.webhook_duplicates = 3
    await world.edit(prompt="said four times")
    await world.result()
    job = await world.job_in(1, "delivered")
    attempts = await world.fal.wait_for_webhook_attempts(job.fal_request_id or "", 4)
    assert [attempt.status for attempt in attempts] == [200, 200, 200, 200]
    await world.bot.jobs.wait_idle()
    assert await results_in(world) == 1
    assert await world.usage() == (1, 0)
    assert fal_calls(world)["result"] == 0


async def test_a_delivery_replayed_after_the_result_was_posted_changes_nothing(
    hook_world: World,
) -> None:
    world = hook_world
    await world.edit(prompt="once only")
    await world.result()
    job = await world.job_in(1, "delivered")
    [attempt] = world.fal.webhook_attempts_for(job.fal_request_id or "")
    assert await post(world, attempt.body, attempt.headers) == 200
    await world.bot.jobs.wait_idle()
    assert await results_in(world) == 1
    assert await world.usage() == (1, 0)
    assert (await world.job_in(1, "delivered")).finished_at == job.finished_at


async def test_a_webhook_sent_while_the_bot_was_down_is_received_after_restart(
    hook_world: World,
) -> None:
    world = hook_world
    world.fal.queue_delay = 1.0
    world.fal.webhook_backoff = 0.2
    world.fal.webhook_backoff_max = 0.5
    await world.reply_text(await world.edit(prompt="across a restart"))
    job = await world.job_in(1, "submitted")
    await world.emu.stop_bot()
    request_id = job.fal_request_id or ""
    failed = await world.fal.wait_for_webhook_attempts(request_id, 1, within=10)
    assert failed[0].status is None  # nobody listened
    world.bot = await world.emu.start_bot(world.make_bot())
    await world.result()
    await world.job_in(1, "delivered")
    assert world.fal.webhook_attempts_for(request_id)[-1].status == 200
    assert fal_calls(world)["stream"] == 0
    assert await world.usage() == (1, 0)


async def test_a_delivery_recorded_before_a_restart_or_by_another_process_is_used(
    hook_world: World, e2e_backend: str
) -> None:
    """The 200 fal got means the delivery is stored: the job's driver uses it, whether it
    was recorded before this process restarted (SQLite) or by another process of the
    cluster while this one waits (PostgreSQL)."""
    world = hook_world
    world.fal.webhook_drop = True  # only the recorded delivery can end the edit
    await world.reply_text(await world.edit(prompt="recorded elsewhere"))
    job = await world.job_in(1, "submitted")
    request_id = job.fal_request_id or ""
    fal_job = await world.fal.wait_for_status(request_id, "COMPLETED")
    delivery = WebhookDelivery.model_validate(delivery_body(fal_job))
    if e2e_backend == "sqlite":
        await world.emu.stop_bot()
    other = await Storage.open(world.settings.database_location(), job_model=AnyJob)
    try:
        recorded = await other.deliveries.record(request_id, True, delivery.model_dump_json())
    finally:
        await other.close()
    assert recorded.outcome == "recorded"
    if e2e_backend == "sqlite":
        world.bot = await world.emu.start_bot(world.make_bot())
    await world.result()
    await world.job_in(1, "delivered")
    assert fal_calls(world) == {"submit": 1, "status": 0, "stream": 0, "result": 0}
    assert await world.usage() == (1, 0)


async def test_an_error_delivery_fails_the_edit_and_refunds_it(hook_world: World) -> None:
    world = hook_world
    world.fal.runner_failure_rate = 1.0
    world.fal.runner_failure_type = "runner_server_error"
    await world.reply_text(await world.edit(prompt="fal breaks"))
    job = await world.job_in(1, "failed")
    attempts = await world.fal.wait_for_webhook_attempts(job.fal_request_id or "", 1)
    assert attempts[0].json()["status"] == "ERROR"
    assert fal_calls(world)["stream"] == 0
    assert await world.usage() == (0, 0)
    assert await results_in(world) == 0


async def test_a_signed_delivery_for_a_job_still_at_fal_is_recorded_once(
    hook_world: World,
) -> None:
    world = hook_world
    world.fal.webhook_drop = True
    await world.reply_text(await world.edit(prompt="our own copies"))
    job = await world.job_in(1, "submitted")
    request_id = job.fal_request_id or ""
    fal_job = await world.fal.wait_for_status(request_id, "COMPLETED")
    body = delivery_bytes(fal_job)
    headers = signed_headers(world.fal, request_id, body)
    assert [await post(world, body, headers) for _ in range(3)] == [200, 200, 200]
    await world.result()
    await world.job_in(1, "delivered")
    await world.bot.jobs.wait_idle()
    assert await results_in(world) == 1
    assert await world.usage() == (1, 0)


async def test_without_a_webhook_port_the_metrics_server_takes_the_webhooks(
    e2e_database: str | None,
    discord_emulator: DiscordEmulator,
    fal_emulator: FalEmulator,
    tmp_path: Path,
) -> None:
    port = free_port()
    world = await start_world(
        discord_emulator,
        fal_emulator,
        tmp_path,
        e2e_database,
        fal_webhook_url=f"http://127.0.0.1:{port}/fal/webhook",
        metrics_port=port,
        metrics_host="127.0.0.1",
    )
    await world.edit(prompt="one port")
    await world.result()
    assert fal_calls(world) == {"submit": 1, "status": 0, "stream": 0, "result": 0}
    async with httpx.AsyncClient() as http:
        health = await http.get(f"http://127.0.0.1:{port}/healthz")
    assert health.status_code == 200
