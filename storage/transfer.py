"""Copy a SQLite database into an empty PostgreSQL one (`python bot.py migrate-to-postgres`).

Both are first brought to the current schema (the SQLite file exactly as the bot would on
start), so every table has the same columns on both sides. Then, in ONE PostgreSQL
transaction: refuse a target that holds any row, copy every table in foreign-key order (the
registry and its history, jobs with their reruns, the quota ledger and month spend, settings,
inputs, meta), move each id sequence past the highest id SQLite ever handed out (ids are never
reused), and compare the row counts table by table. Any difference, or any error, rolls the
whole copy back: the target is either a full copy or still empty.

The source is read in one SQLite read transaction: a consistent snapshot even if a bot is
still writing to it (stop the bot first all the same, or its later writes are not copied).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .database import Storage
from .errors import StorageError
from .postgres import PostgresConnection, is_postgres_url

log = logging.getLogger(__name__)

# Foreign-key order: a job's parent has a smaller id, the ledger and sweeps follow the jobs,
# a sweep's cells follow it, a training's record follows its job. Every table the migrations
# create, but schema_migrations.
TABLES = (
    "loras",
    "lora_changes",
    "jobs",
    "quota_ledger",
    "guild_spend",
    "guild_settings",
    "channel_settings",
    "inputs",
    "meta",
    "budget_alerts",
    "presets",
    "sweeps",
    "sweep_cells",
    "training_pairs",
    "lora_trainings",
)
IDENTITY_TABLES = ("loras", "lora_changes", "jobs", "presets", "sweeps", "training_pairs")
CHUNK = 2_000


class TransferError(StorageError):
    """The copy was refused or failed; the target database was left as it was."""


@dataclass(frozen=True)
class Copied:
    table: str
    rows: int


def _read_chunks(
    conn: sqlite3.Connection, table: str
) -> tuple[list[str], list[list[tuple[Any, ...]]]]:
    cursor = conn.execute(f"SELECT * FROM {table} ORDER BY rowid")
    columns = [column[0] for column in cursor.description]
    chunks: list[list[tuple[Any, ...]]] = []
    while rows := cursor.fetchmany(CHUNK):
        chunks.append([tuple(row) for row in rows])
    return columns, chunks


def _snapshot(path: Path) -> tuple[dict[str, tuple[list[str], list[Any]]], dict[str, int]]:
    """Every table's columns and rows, and sqlite_sequence, from one read transaction."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        conn.execute("BEGIN")
        tables = {table: _read_chunks(conn, table) for table in TABLES}
        sequences = {
            str(name): int(seq)
            for name, seq in conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall()
        }
        conn.execute("ROLLBACK")
    return tables, sequences


async def copy_sqlite_to_postgres(
    source: Path, target_url: str, *, say: Callable[[str], None] = lambda line: None
) -> list[Copied]:
    """Copy everything from the SQLite file `source` into the empty database `target_url`."""
    if not is_postgres_url(target_url):
        raise TransferError("the target must be a postgresql://user:password@host:port/db URL")
    if not await asyncio.to_thread(source.is_file):
        raise TransferError(f"there is no SQLite database at {source}")
    src: Storage[Any, Any] = await Storage.open(source)
    try:
        dst: Storage[Any, Any] = await Storage.open(target_url, pool_size=1)
        try:
            say(f"from: {src.describe()}")
            say(f"to:   {dst.describe()}")
            if src.schema_version != dst.schema_version:
                raise TransferError(
                    f"schema versions differ ({src.schema_version} and {dst.schema_version})"
                )
            conn = dst._conn
            assert isinstance(conn, PostgresConnection)
            await src.close()  # everything is committed; read the file directly now
            tables, sequences = await asyncio.to_thread(_snapshot, source)
            async with conn.acquire() as pg, pg.transaction():
                return await _copy(pg, tables, sequences, say)
        finally:
            await dst.close()
    finally:
        await src.close()


async def _copy(
    pg: Any,
    tables: dict[str, tuple[list[str], list[Any]]],
    sequences: dict[str, int],
    say: Callable[[str], None],
) -> list[Copied]:
    held = {table: int(await pg.fetchval(f"SELECT COUNT(*) FROM {table}")) for table in TABLES}
    if any(held.values()):
        busy = ", ".join(f"{count} in {table}" for table, count in held.items() if count)
        raise TransferError(
            f"the target database is not empty ({busy} rows); migrate into an empty database"
        )
    copied: list[Copied] = []
    for table in TABLES:
        columns, chunks = tables[table]
        for chunk in chunks:
            await pg.copy_records_to_table(table, records=chunk, columns=columns)
        source_rows = sum(len(chunk) for chunk in chunks)
        target_rows = int(await pg.fetchval(f"SELECT COUNT(*) FROM {table}"))
        if target_rows != source_rows:
            raise TransferError(
                f"{table}: {source_rows} rows in SQLite but {target_rows} copied; nothing kept"
            )
        say(f"{table}: {target_rows} rows copied")
        copied.append(Copied(table, target_rows))
    for table in IDENTITY_TABLES:
        highest = max(
            sequences.get(table, 0),
            int(await pg.fetchval(f"SELECT COALESCE(MAX(id), 0) FROM {table}")),
        )
        # The next id is past every id SQLite ever gave out, even to rows deleted since.
        await pg.execute(
            "SELECT setval(pg_get_serial_sequence($1, 'id'), $2, false)", table, highest + 1
        )
    log.info("copied %d rows", sum(item.rows for item in copied))
    return copied
