"""A shard cluster under test: several real bot processes (`python bot.py`), each running some
shards of one bot, on one PostgreSQL database, against both emulators in the test process.

Each process gets the environment an operator would give it (README, "Shard clusters"):
`SHARD_COUNT`, its `SHARD_IDS`, the shared `DATABASE_URL` and a short `LEASE_SECONDS`, so a
killed process's jobs are adopted within seconds. What a process did is read back from the
database (which process holds a job's lease) and from the emulators (what members saw).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulators.discord_emulator import DiscordEmulator
from emulators.discord_emulator.messages import Message
from emulators.discord_emulator.world import Guild
from emulators.fal_emulator.server import FalEmulator
from tests.harness.bot_process import BotProcess, bot_environment
from tests.harness.emulator_watch import Watch, is_result_message
from tests.harness.storage_fixtures import query

LEASE_SECONDS = 2.0
UP_WITHIN = 60.0


def instance_of(shard_ids: Iterable[int], shard_count: int) -> str:
    """The lease instance a process with these shards writes (settings.py `lease_instance`)."""
    ids = ",".join(str(shard) for shard in sorted(shard_ids))
    return f"shards-{ids}-of-{shard_count}"


def shard_of(guild_id: int, shard_count: int) -> int:
    return (guild_id >> 22) % shard_count


@dataclass
class Node:
    """One bot process of the cluster and the shards it runs."""

    index: int
    shard_ids: tuple[int, ...]
    process: BotProcess
    instance: str

    @property
    def running(self) -> bool:
        return self.process.running


@dataclass
class Cluster:
    emu: DiscordEmulator
    fal: FalEmulator
    database_url: str
    folder: Path
    shard_count: int = 2
    # The shards of each process; default: one process per shard.
    layout: tuple[tuple[int, ...], ...] | None = None
    nodes: list[Node] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
    # More settings for one process (by index), e.g. a port of its own.
    node_extra: dict[int, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.watch = Watch(self.emu, self.fal)
        layout = self.layout or tuple((shard,) for shard in range(self.shard_count))
        for index, shards in enumerate(layout):
            process = BotProcess({}, self.folder / f"node{index}.log")
            self.nodes.append(Node(index, shards, process, instance_of(shards, self.shard_count)))

    def _env(self, node: Node) -> dict[str, str]:
        return bot_environment(
            {
                **self.emu.bot_env(),
                "FAL_KEY": self.fal.key,
                "FAL_QUEUE_URL": self.fal.queue_url,
                "FAL_REST_URL": self.fal.rest_url,
                "FAL_CDN_URL": self.fal.cdn_url,
                "DATABASE_URL": self.database_url,
                "DATABASE_POOL_SIZE": "4",
                # Result files live beside this path: each process has its own disk.
                "DATABASE_PATH": str(self.folder / f"node{node.index}" / "bot.sqlite3"),
                "SHARD_COUNT": str(self.shard_count),
                "SHARD_IDS": ",".join(str(shard) for shard in node.shard_ids),
                "LEASE_SECONDS": str(LEASE_SECONDS),
                "JOB_TIMEOUT_SECONDS": "600",
                "LOG_LEVEL": "INFO",
                **self.extra,
                **self.node_extra.get(node.index, {}),
            }
        )

    # ------------------------------------------------------------------ processes

    async def start(self, index: int) -> None:
        """Start a process and wait until each of its shards has identified."""
        node = self.nodes[index]
        node.process.env = self._env(node)
        mark = self.emu.mark()
        await node.process.start()
        try:
            for shard in node.shard_ids:
                await self.emu.wait_for(
                    "identify",
                    lambda session, s=shard: list(session.shard or []) == [s, self.shard_count],
                    timeout=UP_WITHIN,
                    since=mark,
                )
        except Exception as error:
            raise RuntimeError(
                f"process {index} did not come up:\n{node.process.log_tail()}"
            ) from error

    async def start_all(self) -> None:
        for node in self.nodes:
            await self.start(node.index)

    async def kill(self, index: int) -> None:
        """SIGKILL: nothing is cleaned up, leases simply run out."""
        process = self.nodes[index].process
        process.kill()
        await process.wait()
        self.watch.poke()

    async def terminate(self, index: int, within: float = 30.0) -> int:
        """SIGTERM, as docker stop sends: the process closes cleanly; its exit status."""
        process = self.nodes[index].process
        assert process.process is not None
        with contextlib.suppress(ProcessLookupError):
            process.process.send_signal(signal.SIGTERM)
        status = await process.wait(within)
        self.watch.poke()
        return status

    async def close(self) -> None:
        for node in self.nodes:
            await node.process.stop()
            await node.process.close()

    def tracebacks(self) -> list[str]:
        return [line for node in self.nodes for line in node.process.tracebacks()]

    def logs(self) -> str:
        return "\n".join(
            f"----- node {node.index} -----\n{node.process.log_tail(80)}" for node in self.nodes
        )

    # ------------------------------------------------------------------ servers

    def add_guilds(self, per_shard: int = 2) -> list[Guild]:
        """Servers spread over the shards, `per_shard` on each, in shard order."""
        guilds = []
        for shard in range(self.shard_count):
            for n in range(per_shard):
                guilds.append(
                    self.emu.add_guild(
                        f"Server {shard}.{n}",
                        members=("alice", "bob", "carol"),
                        shard=(shard, self.shard_count),
                    )
                )
        return guilds

    def owner_of(self, guild: Guild) -> Node:
        shard = shard_of(guild.id, self.shard_count)
        return next(node for node in self.nodes if shard in node.shard_ids)

    # ------------------------------------------------------------------ what happened

    async def jobs(self) -> list[dict[str, Any]]:
        rows = await query(
            self.database_url,
            "SELECT id, guild_id, state, lease_owner, parent_job_id, result_message_id,"
            " fal_request_id FROM jobs ORDER BY id",
        )
        keys = (
            "id",
            "guild_id",
            "state",
            "lease_owner",
            "parent_job_id",
            "result_message_id",
            "fal_request_id",
        )
        return [dict(zip(keys, row, strict=True)) for row in rows]

    async def ledger(self) -> dict[int, tuple[str, int]]:
        """job id → (ledger state, cost in micro-USD)."""
        rows = await query(
            self.database_url, "SELECT job_id, state, cost_micro_usd FROM quota_ledger"
        )
        return {int(job_id): (str(state), int(cost)) for job_id, state, cost in rows}

    async def month_spend(self) -> int:
        rows = await query(
            self.database_url,
            "SELECT CAST(COALESCE(SUM(micro_usd), 0) AS BIGINT) FROM guild_spend",
        )
        return int(rows[0][0])

    def results(self, guild: Guild | None = None) -> list[Message]:
        """Every result message members can see (in one server, or in all)."""
        guilds = [guild] if guild is not None else list(self.emu.world.guilds.values())
        found = []
        for one in guilds:
            for channel in one.channels.values():
                found.extend(m for m in self.emu.messages_in(channel) if is_result_message(m))
        return found

    async def until_jobs(self, check: Any, within: float, what: str) -> list[dict[str, Any]]:
        """Re-read the jobs after each emulator change until `check(jobs)` holds. The bot
        writes a job's state before the Discord call that shows it (a result is recorded
        before the 🔁 is added and the status edited), so an emulator change follows every
        database change a test waits for."""
        latest: list[dict[str, Any]] = []

        async def poll() -> list[dict[str, Any]] | None:
            nonlocal latest
            latest = await self.jobs()
            return latest if check(latest) else None

        try:
            async with asyncio.timeout(within):
                while True:
                    changed = asyncio.Event()
                    self.watch.hooks.append(changed.set)
                    try:
                        found = await poll()
                        if found is not None:
                            return found
                        await changed.wait()
                    finally:
                        self.watch.hooks.remove(changed.set)
        except TimeoutError:
            raise TimeoutError(
                f"after {within:.0f} s: {what}\njobs: {latest}\n{self.logs()}"
            ) from None
