"""300 /edit jobs from 30 members in flight at once in one bot process: all delivered once,
each member charged for what they received. Prints the bot's peak RSS, event-loop lag p99
and CPU per job (figures, not asserts: bench/soak.py is where they are compared)."""

from __future__ import annotations

from pathlib import Path

from tests.soak.soak_load import LoadConfig, run_load


async def test_300_jobs_from_30_members_in_flight_at_once(tmp_path: Path) -> None:
    outcome = await run_load(tmp_path, LoadConfig(jobs=300, members=30))
    summary = outcome.summary
    assert summary.problems == [], "\n".join(summary.problems)
    assert (summary.jobs, summary.delivered) == (300, 300)
    assert (summary.lost, summary.duplicates, summary.double_charges) == (0, 0, 0)
    assert outcome.peak_in_flight == 300
    assert outcome.probe["lag_samples"] > 0  # the probe measured the bot, figures printed
