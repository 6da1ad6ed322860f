"""SQLite: one aiosqlite connection that runs each transaction whole on its own thread.

aiosqlite hands every call to a single worker thread that owns the sqlite3 connection, and
coroutines sharing that connection interleave between calls. A transaction spelled as several
awaited statements therefore needs an asyncio.Lock around it, pays one thread round trip per
statement (about 80 µs on the 2-core VM) and keeps SQLite's write lock while the event loop
runs other work, which stalls a second process on the same file.

Instead every transaction is one plain function `work(conn)` that aiosqlite's thread runs from
BEGIN to COMMIT in a single call. The thread runs calls one at a time in order, so two
transactions never interleave (no asyncio.Lock needed), a transaction holds the write lock
only while its SQL runs, and cancelling the awaiting coroutine cannot leave a transaction half
done: the thread finishes or rolls back on its own.

Writes are group-committed: while one batch is on the thread, new writes queue up and then go
together, as one BEGIN IMMEDIATE … COMMIT with a SAVEPOINT around each. Each write still
succeeds or fails alone (a failing one is rolled back to its savepoint, the others commit),
sees every earlier write of its batch, and learns its outcome only after the COMMIT. A lone
writer sends its batch of one itself, so it pays nothing extra; many concurrent writers share
one round trip and one WAL append.

A transaction is the same `async def work(tx)` the PostgreSQL backend awaits (storage/dialect.py);
here `drive()` runs it to its end on the thread, where every await completes at once.

aiosqlite has no public "run this callable on your thread" call; `Connection._execute` is
what its own `backup()` uses. aiosqlite is pinned, and the tests exercise this path.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import aiosqlite

from .dialect import Dialect, Params, Row, Work, drive
from .errors import (
    ConstraintError,
    DatabaseError,
    StorageBusyError,
    StorageClosedError,
    StorageError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Raw = Callable[[sqlite3.Connection], T]
Synchronous = Literal["NORMAL", "FULL"]
_Outcome = tuple[bool, Any]  # (succeeded, result or exception)


def _constraint_kind(error: sqlite3.IntegrityError) -> str:
    text = str(error)
    for marker, kind in (
        ("UNIQUE", "unique"),
        ("FOREIGN KEY", "foreign_key"),
        ("CHECK", "check"),
        ("NOT NULL", "not_null"),
    ):
        if marker in text:
            return kind
    return "other"


class SqliteTx:
    """A transaction on the connection's thread; its awaits complete at once (see `drive`)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @property
    def dialect(self) -> Dialect:
        return "sqlite"

    def _run(self, sql: str, params: Params) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.IntegrityError as error:
            raise ConstraintError(_constraint_kind(error), f"database error: {error}") from error

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        rows: list[Row] = self._run(sql, params).fetchall()
        return rows

    async def fetchrow(self, sql: str, params: Params = ()) -> Row | None:
        row: Row | None = self._run(sql, params).fetchone()
        return row

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        row = self._run(sql, params).fetchone()
        return None if row is None else row[0]

    async def execute(self, sql: str, params: Params = ()) -> int:
        return self._run(sql, params).rowcount

    async def lock(self, *key: int | str) -> None:
        """Nothing to do: a write transaction (BEGIN IMMEDIATE) already excludes every other."""


class Connection:
    """The single SQLite connection storage/ uses; see the module docstring for why."""

    dialect: Dialect = "sqlite"

    def __init__(self, aio: aiosqlite.Connection, path: Path, busy_timeout: float) -> None:
        self._aio = aio
        self._raw: sqlite3.Connection = aio._conn  # owned by aiosqlite's thread; used only there
        self.path = path
        self._busy_timeout = busy_timeout
        self._closed = False
        self._queued: list[tuple[Work[Any], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._busy = False  # a write batch is on the thread
        self._idle = asyncio.Event()
        self._idle.set()

    @classmethod
    async def open(cls, path: Path, *, busy_timeout: float, synchronous: Synchronous) -> Connection:
        # isolation_level=None: the sqlite3 module must not open transactions behind our back.
        aio = aiosqlite.connect(path, isolation_level=None, timeout=busy_timeout)
        try:
            await aio
        except sqlite3.Error as error:
            # After a failed connect aiosqlite stops its thread without waiting for it; wait
            # here, or the thread reports into an event loop that may be closed by then.
            await asyncio.to_thread(aio._thread.join, busy_timeout)
            raise DatabaseError(f"cannot open the database at {path}: {error}") from error
        try:
            conn = cls(aio, path, busy_timeout)
            await conn.run(partial(_configure, busy_timeout=busy_timeout, synchronous=synchronous))
        except BaseException:
            await aio.close()
            raise
        return conn

    @property
    def sqlite_version(self) -> str:
        return sqlite3.sqlite_version

    async def run(self, work: Raw[T]) -> T:
        """Run `work(conn)` with the raw sqlite3 connection on its thread, nothing in between
        and outside any transaction (opening, pragmas, tests)."""
        if self._closed:
            raise StorageClosedError("storage is closed")
        return await self._call(work)

    async def _call(self, work: Raw[T]) -> T:
        try:
            result = await self._aio._execute(work, self._raw)  # type: ignore[no-untyped-call]
        except sqlite3.Error as error:
            raise self._translate(error) from error
        return cast(T, result)

    async def write(self, work: Work[T]) -> T:
        """Run `work` as a write transaction (BEGIN IMMEDIATE); any exception it raises undoes
        everything it wrote, and is raised here."""
        if self._closed:
            raise StorageClosedError("storage is closed")
        if self._busy:  # a batch is on the thread: go with the next one
            future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
            self._queued.append((work, future))
            return await future
        # Nothing in flight: this write is a batch of one, sent from here without a task hop.
        self._set_busy(True)
        try:
            [(succeeded, value)] = await self._call(partial(_write_batch, [work]))
        finally:
            self._set_busy(False)
            self._next_batch()
        if not succeeded:
            raise _translated(value, self._translate)
        return cast(T, value)

    async def read(self, work: Work[T]) -> T:
        """Run `work` inside a read transaction, so every statement sees one snapshot."""
        return await self.run(partial(_read, work))

    async def close(self) -> None:
        """Finish every write already queued, then close."""
        if self._closed:
            return
        self._closed = True
        while self._busy:
            await self._idle.wait()
        await self._aio.close()

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        if busy:
            self._idle.clear()
        else:
            self._idle.set()

    def _next_batch(self) -> None:
        if self._queued and not self._busy:
            self._set_busy(True)
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        """Send queued writes to the thread, one batch at a time, until none are left."""
        try:
            while self._queued:
                # A writer cancelled before its batch left withdraws its work.
                batch = [(work, future) for work, future in self._queued if not future.done()]
                self._queued = []
                if not batch:
                    continue
                works = [work for work, _ in batch]
                try:
                    outcomes = await self._call(partial(_write_batch, works))
                except Exception as error:
                    # The batch as a whole failed (BEGIN or COMMIT): nothing of it was written.
                    outcomes = [(False, error)] * len(batch)
                except BaseException:
                    for _, future in batch:
                        future.cancel()  # the loop is going away; outcome unknown
                    raise
                _settle(batch, outcomes, self._translate)
        finally:
            self._flusher = None
            for _, future in self._queued:  # only after a cancellation: these never ran
                future.cancel()
            self._queued = []
            self._set_busy(False)

    def _translate(self, error: BaseException) -> BaseException:
        if isinstance(error, sqlite3.OperationalError) and _is_busy(error):
            return StorageBusyError(
                f"the database at {self.path} stayed locked by another connection for over "
                f"{self._busy_timeout:g} s"
            )
        if isinstance(error, sqlite3.Error):
            return DatabaseError(f"database error: {error}")
        return error


def _translated(
    error: BaseException, translate: Callable[[BaseException], BaseException]
) -> BaseException:
    """The typed error for what a work raised on the thread, chained to the original."""
    typed = translate(error)
    if typed is not error and typed.__cause__ is None and isinstance(typed, StorageError):
        typed.__cause__ = error
    return typed


def _settle(
    batch: Sequence[tuple[Work[Any], asyncio.Future[Any]]],
    outcomes: Sequence[_Outcome],
    translate: Callable[[BaseException], BaseException],
) -> None:
    for (_, future), (succeeded, value) in zip(batch, outcomes, strict=True):
        if future.done():  # cancelled while its batch ran: the outcome stands regardless
            continue
        if succeeded:
            future.set_result(value)
        else:
            future.set_exception(_translated(value, translate))


def _is_busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(error) or "busy" in str(error)


def _configure(conn: sqlite3.Connection, *, busy_timeout: float, synchronous: Synchronous) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    mode = _enable_wal(conn, busy_timeout)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    if mode.lower() != "wal":
        # WAL is what lets readers and one writer work at once; without it, say so loudly.
        log.warning("SQLite refused WAL mode (journal_mode=%s); concurrency will suffer", mode)
    # NORMAL in WAL mode survives any process crash; FULL also survives power loss.
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    # Checkpoint every ~16 MB of WAL instead of 4 MB: hot pages (ledger indexes, the month
    # counter) are copied back once per checkpoint, and checkpoints run on the writer's thread.
    # Measured: about 12% less time per admission on the 2-core VM.
    conn.execute("PRAGMA wal_autocheckpoint = 4000")


def _enable_wal(conn: sqlite3.Connection, timeout: float) -> str:
    """Switch the file to WAL, retrying while another process switches it at the same time.

    Converting needs an exclusive lock. A connection that read the header before another
    process converted the file can wait for that lock forever (WAL connections keep a shared
    lock), so wait briefly per attempt: the next attempt re-reads the header and finds WAL.
    """
    conn.execute("PRAGMA busy_timeout = 50")
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as error:
            if not _is_busy(error) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)  # on the connection's own thread, during open only
        pause = min(pause * 2, 0.05)


def _read(work: Work[T], conn: sqlite3.Connection) -> T:
    conn.execute("BEGIN")
    try:
        return drive(work(SqliteTx(conn)))
    finally:
        conn.rollback()  # nothing to keep; ends the snapshot


def _write_batch(works: Sequence[Work[Any]], conn: sqlite3.Connection) -> list[_Outcome]:
    """One write transaction for the whole batch, each work inside its own savepoint."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if len(works) == 1:  # the common, uncontended case needs no savepoint
            try:
                outcomes: list[_Outcome] = [(True, drive(works[0](SqliteTx(conn))))]
            except Exception as error:
                conn.rollback()
                return [(False, error)]
        else:
            outcomes = [_in_savepoint(work, conn) for work in works]
        conn.execute("COMMIT")
    except BaseException:
        conn.rollback()  # a no-op when SQLite already ended the transaction itself
        raise
    return outcomes


def _in_savepoint(work: Work[Any], conn: sqlite3.Connection) -> _Outcome:
    conn.execute("SAVEPOINT work")
    try:
        result = drive(work(SqliteTx(conn)))
    except Exception as error:
        if not conn.in_transaction:
            raise  # SQLite aborted the whole transaction (disk full, I/O error): batch fails
        conn.execute("ROLLBACK TO work")
        conn.execute("RELEASE work")
        return (False, error)
    conn.execute("RELEASE work")
    return (True, result)
