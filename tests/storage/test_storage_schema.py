"""Opening the database: migrations and version checks on both backends; SQLite's pragmas."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import pytest

from storage import DatabaseError, MigrationError, SchemaTooNewError, Storage, StorageClosedError
from storage.dialect import Dialect
from storage.schema import Migration, load_migrations, split_statements
from tests.harness.storage_fixtures import execute, query

# An exception in a storage thread (say, reporting into a closed loop) fails the test.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

REPO = Path(__file__).resolve().parents[2]


def raw(path: Path) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(path, isolation_level=None))


def tables(path: Path) -> set[str]:
    with raw(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {row[0] for row in rows}


def file_bytes(path: Path) -> bytes:
    return path.read_bytes()


def versions(path: Path) -> list[int]:
    with raw(path) as conn:
        return [row[0] for row in conn.execute("SELECT version FROM schema_migrations")]


def dialect_of(backend: str) -> Dialect:
    return "sqlite" if backend == "sqlite" else "postgres"


async def tables_in(database: str) -> set[str]:
    if database.startswith("postgresql:"):
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    return {row[0] for row in await query(database, sql)}


async def versions_in(database: str) -> list[int]:
    rows = await query(database, "SELECT version FROM schema_migrations ORDER BY version")
    return [row[0] for row in rows]


# Shipped migrations are never edited: a database that applied one must find the same schema
# when the next bot reads it. A new migration gets the next number (and a line here).
SHIPPED_SQLITE = {
    "0001_initial.sql": "43ca41005a51ac3e417342b8aa86208f719e2d9cdd189242d2a451c8fd93a803",
    "0002_job_announcements.sql": (
        "2fa71fb29f39928bfd8bad8fe289322d684303d836ec1b4c76a7863d50514284"
    ),
    "0003_budget_alerts.sql": ("22578d1ab71e36d33d3681b4966ae2eb18e9c095e5479aef4de81c4c8129682a"),
    "0004_studio.sql": "b14596429e00737c680b1902aae6d33e275f0be28162bf3408e57d70d808847e",
}


def test_shipped_sqlite_migrations_are_unchanged() -> None:
    folder = REPO / "storage" / "migrations" / "sqlite"
    for name, digest in SHIPPED_SQLITE.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name


def test_both_dialects_have_the_same_numbered_migrations() -> None:
    sqlite = [(m.version, m.name) for m in load_migrations(dialect="sqlite")]
    postgres = [(m.version, m.name) for m in load_migrations(dialect="postgres")]
    assert sqlite == postgres
    assert sqlite[0] == (1, "initial")


async def test_fresh_open_creates_the_schema_and_records_each_version(
    database: str, backend: str
) -> None:
    storage = await Storage.open(database)
    await storage.close()

    latest = load_migrations(dialect=dialect_of(backend))[-1].version
    assert storage.schema_version == latest
    assert await versions_in(database) == list(range(1, latest + 1))
    assert {
        "loras",
        "lora_changes",
        "jobs",
        "quota_ledger",
        "guild_spend",
        "guild_settings",
        "channel_settings",
        "inputs",
        "meta",
    } <= await tables_in(database)


async def test_fresh_open_creates_parent_dir_schema_and_records_version(storage_path: Path) -> None:
    assert not storage_path.parent.exists()
    storage = await Storage.open(storage_path)
    await storage.close()

    latest = load_migrations()[-1].version
    assert storage.schema_version == latest
    assert versions(storage_path) == list(range(1, latest + 1))
    assert {"loras", "lora_changes", "jobs", "quota_ledger", "guild_spend"} <= tables(storage_path)
    with raw(storage_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == latest
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_connection_pragmas(storage_path: Path) -> None:
    def pragmas(conn: sqlite3.Connection) -> tuple[int, int, int]:
        return (
            conn.execute("PRAGMA foreign_keys").fetchone()[0],
            conn.execute("PRAGMA busy_timeout").fetchone()[0],
            conn.execute("PRAGMA synchronous").fetchone()[0],
        )

    async with await Storage.open(storage_path) as storage:
        foreign_keys, busy_timeout, synchronous = await storage._conn.run(pragmas)  # type: ignore[attr-defined]
    assert foreign_keys == 1
    assert busy_timeout == 5000
    assert synchronous == 1  # NORMAL


async def test_reopen_is_idempotent_and_keeps_data(database: str) -> None:
    first = await Storage.open(database)
    await first.settings.set_meta("command_hash", "abc")
    await first.close()

    second = await Storage.open(database)
    try:
        assert second.schema_version == first.schema_version
        assert await second.settings.get_meta("command_hash") == "abc"
    finally:
        await second.close()
    assert await versions_in(database) == list(range(1, first.schema_version + 1))


async def snapshot(database: str, storage_path: Path) -> object:
    if database.startswith("postgresql:"):
        return (
            await tables_in(database),
            await query(database, "SELECT * FROM schema_migrations ORDER BY version"),
        )
    return file_bytes(storage_path)  # every connection is closed: no WAL left to checkpoint


async def test_newer_database_is_refused_before_anything_is_written(
    database: str, storage_path: Path
) -> None:
    storage = await Storage.open(database)
    code_version = storage.schema_version
    await storage.close()
    await execute(
        database,
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future', 0)",
        code_version + 2,
    )
    before = await snapshot(database, storage_path)

    with pytest.raises(SchemaTooNewError) as caught:
        await Storage.open(database)

    assert str(caught.value) == (
        f"database schema {code_version + 2} is newer than this bot ({code_version}); "
        "upgrade the bot or restore a backup"
    )
    assert caught.value.database_version == code_version + 2
    assert await snapshot(database, storage_path) == before


async def test_upgrade_applies_only_missing_migrations_in_order(
    database: str, backend: str
) -> None:
    base = load_migrations(dialect=dialect_of(backend))
    extra = [
        Migration(len(base) + 1, "add_a", ("CREATE TABLE a (x INTEGER PRIMARY KEY);",)),
        Migration(len(base) + 2, "add_b", ("CREATE TABLE b (y INTEGER REFERENCES a (x));",)),
    ]
    old = await Storage.open(database)
    await old.close()

    new = await Storage.open(database, migrations=[*base, *extra])
    await new.close()

    assert new.schema_version == len(base) + 2
    assert {"a", "b"} <= await tables_in(database)
    assert await versions_in(database) == list(range(1, len(base) + 3))


async def test_failing_migration_rolls_back_whole_and_keeps_old_version(
    database: str, backend: str
) -> None:
    base = load_migrations(dialect=dialect_of(backend))
    broken = Migration(
        len(base) + 1,
        "broken",
        ("CREATE TABLE half (x INTEGER);", "INSERT INTO no_such_table VALUES (1);"),
    )
    storage = await Storage.open(database)
    await storage.close()

    message = {
        "sqlite": "broken failed: no such table: no_such_table",
        "postgres": 'broken failed: relation "no_such_table" does not exist',
    }[backend]
    with pytest.raises(MigrationError, match=message):
        await Storage.open(database, migrations=[*base, broken])

    assert "half" not in await tables_in(database)
    assert await versions_in(database) == [m.version for m in base]
    reopened = await Storage.open(database)  # the old code still opens it
    await reopened.close()


def test_split_statements_respects_strings_comments_and_triggers() -> None:
    script = """
        -- a comment; with a semicolon
        CREATE TABLE t (x TEXT DEFAULT ';'); INSERT INTO t VALUES ('a;b');
        CREATE TRIGGER tr AFTER INSERT ON t BEGIN
            INSERT INTO t VALUES ('x'); INSERT INTO t VALUES ('y');
        END;
        -- trailing comment
    """
    statements = split_statements(script)
    assert len(statements) == 3
    assert statements[1] == "INSERT INTO t VALUES ('a;b');"
    assert statements[2].startswith("CREATE TRIGGER") and statements[2].endswith("END;")


def test_split_statements_rejects_unterminated_text() -> None:
    with pytest.raises(MigrationError, match="text after the last ';'"):
        split_statements("CREATE TABLE t (x INTEGER); CREATE TABLE u (y INTEGER)", source="x.sql")


def test_migration_files_must_be_numbered_without_gaps(tmp_path: Path) -> None:
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE a (x INTEGER);")
    (tmp_path / "0003_third.sql").write_text("CREATE TABLE c (x INTEGER);")
    with pytest.raises(MigrationError, match="without gaps"):
        load_migrations(tmp_path)
    (tmp_path / "0003_third.sql").unlink()
    (tmp_path / "2_bad.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"not named NNNN_name\.sql"):
        load_migrations(tmp_path)


async def test_use_after_close_raises_a_typed_error(database: str) -> None:
    storage = await Storage.open(database)
    await storage.close()
    await storage.close()  # closing twice is harmless
    with pytest.raises(StorageClosedError):
        await storage.settings.get_meta("x")


async def test_async_context_manager_closes(database: str) -> None:
    async with await Storage.open(database) as storage:
        await storage.settings.set_meta("k", "v")
    with pytest.raises(StorageClosedError):
        await storage.settings.get_meta("k")


WORKER = Path(__file__).resolve().parents[1] / "harness" / "storage_worker.py"


async def test_processes_opening_a_new_database_at_once_apply_each_migration_once(
    database: str, backend: str
) -> None:
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            "open",
            database,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    for process in processes:
        assert process.stdout is not None
        assert (await process.stdout.readline()).strip() == b"ready"
    for process in processes:  # all four wait on stdin: release them together
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        await process.stdin.drain()
    results = [await process.communicate() for process in processes]

    latest = load_migrations(dialect=dialect_of(backend))[-1].version
    for process, (out, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err.decode()
        assert out.decode().strip() == str(latest)
    assert await versions_in(database) == list(range(1, latest + 1))


def write_garbage(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database" * 200)


async def test_a_file_that_is_not_a_database_is_a_typed_error(storage_path: Path) -> None:
    write_garbage(storage_path)
    with pytest.raises(DatabaseError, match="not a database"):
        await Storage.open(storage_path)


async def test_connections_opening_a_new_file_at_once_all_switch_it_to_wal(
    tmp_path: Path,
) -> None:
    # Simultaneous WAL switches on a new file make SQLite answer "locked" to all but one
    # (about one round in five without the retry); every opener must still get in.
    for attempt in range(20):
        path = tmp_path / f"new-{attempt}.sqlite3"
        opened = await asyncio.gather(
            *(Storage.open(path, busy_timeout=2.0) for _ in range(3)), return_exceptions=True
        )
        for storage in opened:
            if isinstance(storage, Storage):
                await storage.close()
        assert all(isinstance(storage, Storage) for storage in opened), opened


async def test_an_unopenable_path_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="cannot open the database"):
        await Storage.open(tmp_path)  # a directory


async def test_full_synchronous_can_be_chosen(storage_path: Path) -> None:
    async with await Storage.open(storage_path, synchronous="FULL") as storage:
        level = await storage._conn.run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
    assert level == 2  # FULL
