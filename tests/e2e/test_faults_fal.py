"""fal misbehaving at 20% while members /edit: ingress 502/503 without a request id, 429 on
submit, slow answers, status streams that drop, runners that disconnect. Every job ends
delivered, or failed and refunded with a message; fal never runs a job twice."""

from __future__ import annotations

from pathlib import Path

from client.fal import FalClient
from client.schema import EditInput
from emulators.fal_emulator import FalEmulator, data_uri, make_image
from tests.soak.soak_faults import FalFaultConfig, run_fal_faults


async def test_fal_fault_mix_every_job_delivered_or_refunded_with_a_message(
    tmp_path: Path,
) -> None:
    outcome = await run_fal_faults(tmp_path, FalFaultConfig(seed=20, jobs=40, rate=0.2))
    summary = outcome.summary
    assert summary.problems == [], "\n".join(summary.problems)
    assert summary.jobs == 40
    assert all("is on its way" in text for text in outcome.replies)
    assert summary.delivered + summary.refunded == summary.jobs
    assert summary.delivered > 0 and summary.refunded > 0  # runner_disconnected hit some
    assert (summary.lost, summary.duplicates, summary.double_charges) == (0, 0, 0)
    # Retried submits never reached fal twice: no unknown outcome, so no second run.
    assert summary.fal_duplicate_submits == 0
    faults = outcome.faults
    for kind in ("ingress_502", "ingress_503", "rate_limit", "slow", "reset"):
        assert faults[kind] > 0, f"no {kind} fault was injected: {dict(faults)}"
    assert 0 < faults["runner_disconnected"] <= summary.refunded
    assert faults["status_polls"] > 0  # streams broke and the bot polled instead


def _edit(prompt: str) -> EditInput:
    image = data_uri(make_image((200, 30, 30)), "image/png")
    return EditInput.model_validate({"prompt": prompt, "image_urls": [image], "seed": 1})


async def test_emulator_pause_holds_every_request_until_released(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    fal_emulator.paused = True
    handles = [(await fal_client.submit(_edit(f"held {n}")))[0] for n in range(3)]
    statuses = [await fal_client.status(handle) for handle in handles]
    assert [s.status for s in statuses] == ["IN_QUEUE"] * 3
    assert [s.queue_position for s in statuses] == [0, 1, 2]
    assert not any(job.ran for job in fal_emulator.jobs.values())
    fal_emulator.paused = False
    for handle in handles:
        await fal_emulator.wait_for_status(handle.request_id, "COMPLETED")


async def test_emulator_sse_drop_rate_breaks_streams_after_their_first_event(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    fal_emulator.sse_drop_rate = 1.0
    fal_emulator.run_time = 0.2
    handle, _ = await fal_client.submit(_edit("dropped stream"))
    statuses = [status async for status in fal_client.watch(handle)]
    assert statuses[-1].status == "COMPLETED"  # the watcher polled after the drop
    assert fal_emulator.count("stream") == 1 and fal_emulator.count("status") >= 1
