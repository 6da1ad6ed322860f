"""fal misbehaving at 20% while members /edit: ingress 502/503 without a request id, 429 on
submit, slow answers, status streams that drop, runners that disconnect. Every job ends
delivered, or failed and refunded with a message; fal never runs a job twice."""

from __future__ import annotations

from pathlib import Path

from tests.soak_faults import FalFaultConfig, run_fal_faults


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
