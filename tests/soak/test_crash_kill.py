"""SIGKILL the bot (a child process) at seeded moments of 50 /edit jobs and restart it each time:
every job is delivered exactly once, every member is charged for exactly what they received,
and nothing is left unfinished (docs/architecture.md, "The job lifecycle")."""

from __future__ import annotations

from pathlib import Path

from tests.soak.soak_kill import KillConfig, run_kill_scenario


async def test_sigkill_at_every_moment_delivers_each_job_once(tmp_path: Path) -> None:
    outcome = await run_kill_scenario(tmp_path, KillConfig(seed=10, jobs=50, kills=12))
    summary = outcome.summary
    assert summary.problems == [], "\n".join(summary.problems)
    assert (summary.jobs, summary.delivered) == (50, 50)
    assert (summary.lost, summary.duplicates, summary.double_charges) == (0, 0, 0)
    assert len(outcome.kills) >= 10
    # A restart that never learned its status message's id gets the same message back.
    assert outcome.status_duplicates == 0
    assert outcome.unreplied_results == 0  # every result replies to its status message
    # Each kill between Discord creating a result and the bot recording it was answered on
    # restart by Discord's nonce check with the same message, not a second one.
    posting_kills = sum(1 for moment, _ in outcome.kills if moment == "posting")
    assert posting_kills >= 1 and outcome.nonce_replays >= posting_kills
