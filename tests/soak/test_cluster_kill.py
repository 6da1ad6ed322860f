"""Two bot processes on one PostgreSQL database, one shard each, and ten SIGKILLs at seeded
moments of their jobs' lives: every job ends, none is posted twice or charged twice, and the
jobs of a killed process are finished by the other (docs/architecture.md, "Shard clusters")."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.postgres import ScratchDatabases
from tests.soak.soak_cluster import ClusterKillConfig, run_cluster_kill

pytestmark = pytest.mark.timeout(600)


async def test_ten_kills_across_two_processes_lose_nothing(
    postgres_databases: ScratchDatabases, tmp_path: Path
) -> None:
    url = await postgres_databases.create()
    try:
        outcome = await run_cluster_kill(tmp_path, url, ClusterKillConfig(seed=18, kills=10))
    finally:
        await postgres_databases.drop(url)
    summary = outcome.summary
    assert summary.problems == [], "\n".join(summary.problems)
    assert (summary.lost, summary.duplicates, summary.double_charges) == (0, 0, 0)
    assert summary.jobs == 30
    assert len(outcome.kills) >= 8
    assert {node for node, _moment, _nth in outcome.kills} == {0, 1}  # each process died
    assert outcome.adopted >= 1  # some jobs were finished by the process that did not admit them
