"""Numbered SQL migrations: load them, refuse a newer database, apply what is missing.

Files are `storage/migrations/<dialect>/NNNN_name.sql` (dialect `sqlite` or `postgres`),
numbered 1, 2, 3… without gaps, the same numbers and names in both folders: one schema version
means the same tables on either backend. Each applies in its own write transaction together
with its row in `schema_migrations`, so a failing migration leaves the database at the previous
version, and two processes starting at once apply each migration exactly once (the second
waits for the first's lock, re-reads the version, skips).
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from .clock import to_us, utc
from .dialect import Dialect, Tx
from .errors import MigrationError, SchemaTooNewError, StorageError

log = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

# The table existing SQLite files have; PostgreSQL's INTEGER is 32 bits, hence BIGINT there.
_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at {time} NOT NULL
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(script: str, *, source: str = "<sql>") -> tuple[str, ...]:
    """Split a script into single statements; SQLite's own tokenizer decides where one ends."""
    statements: list[str] = []
    start = 0
    for index, char in enumerate(script):
        if char != ";":
            continue
        candidate = script[start : index + 1]
        # sqlite3_complete knows about strings, comments and trigger bodies.
        if sqlite3.complete_statement(candidate):
            statements.append(candidate.strip())
            start = index + 1
    rest = _strip_comments(script[start:]).strip()
    if rest:
        raise MigrationError(f"{source}: text after the last ';' is not a statement: {rest[:60]!r}")
    return tuple(statements)


def _strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))


def load_migrations(
    directory: Traversable | Path | None = None, *, dialect: Dialect = "sqlite"
) -> tuple[Migration, ...]:
    """Read every migration file, in version order, and check the numbering has no gap."""
    folder = (
        directory
        if directory is not None
        else resources.files(__package__ or "storage") / "migrations" / dialect
    )
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            if entry.name.endswith(".sql"):
                raise MigrationError(f"migration file {entry.name!r} is not named NNNN_name.sql")
            continue
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migration files are numbered {version}")
        statements = split_statements(entry.read_text(encoding="utf-8"), source=entry.name)
        found[version] = Migration(version, match.group(2), statements)
    expected = list(range(1, len(found) + 1))
    if sorted(found) != expected:
        raise MigrationError(
            f"migrations must be numbered 1..N without gaps, found {sorted(found)}"
        )
    return tuple(found[version] for version in expected)


def latest_version(migrations: Sequence[Migration]) -> int:
    return migrations[-1].version if migrations else 0


async def read_version(tx: Tx) -> int:
    """The schema version recorded in the database; 0 for a new, empty one."""
    if tx.dialect == "sqlite":
        exists = await tx.fetchval(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        )
    else:
        exists = await tx.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    return int(await tx.fetchval("SELECT MAX(version) FROM schema_migrations") or 0)


def check_not_too_new(database_version: int, migrations: Sequence[Migration]) -> None:
    code_version = latest_version(migrations)
    if database_version > code_version:
        raise SchemaTooNewError(database_version, code_version)


async def apply_step(migration: Migration, migrations: Sequence[Migration], tx: Tx) -> bool:
    """Apply `migration` unless already there; runs inside a write transaction that holds the
    migration lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so the version read
    here cannot change before the commit. False when another process got there first."""
    await tx.lock("schema_migrations")
    await tx.execute(_BOOTSTRAP.format(time="INTEGER" if tx.dialect == "sqlite" else "BIGINT"))
    version = await read_version(tx)
    check_not_too_new(version, migrations)  # a newer bot may have upgraded it meanwhile
    if version >= migration.version:
        return False
    if version != migration.version - 1:
        raise MigrationError(
            f"database is at schema {version}, cannot apply migration {migration.version}"
        )
    for statement in migration.statements:
        try:
            await tx.execute(statement)
        except (sqlite3.Error, StorageError) as error:
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} failed: {error}"
            ) from error
        except Exception as error:  # the PostgreSQL driver's errors
            if type(error).__module__.split(".")[0] != "asyncpg":
                raise
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} failed: {error}"
            ) from error
    await tx.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
        (migration.version, migration.name, to_us(utc(None))),
    )
    if tx.dialect == "sqlite":
        # Mirrored into the file header so `sqlite3 bot.sqlite3 'PRAGMA user_version'` tells.
        await tx.execute(f"PRAGMA user_version = {int(migration.version)}")
    return True


def pending(migrations: Iterable[Migration], version: int) -> list[Migration]:
    return [migration for migration in migrations if migration.version > version]
