"""One aiosqlite connection that runs each transaction whole on its own thread.

aiosqlite hands every call to a single worker thread that owns the sqlite3 connection, and
coroutines sharing that connection interleave between calls. A transaction spelled as several
awaited statements therefore needs an asyncio.Lock around it, pays one thread round trip per
statement (about 80 µs here) and keeps SQLite's write lock while the event loop runs other
work, which stalls a second process on the same file.

Instead every transaction is one plain function `work(conn)` that aiosqlite's thread runs from
BEGIN to COMMIT in a single call. The thread runs calls one at a time in order, so two
transactions can never interleave (no asyncio.Lock needed), a transaction costs one round trip
and holds the write lock only while SQL runs, and cancelling the awaiting coroutine cannot
leave a transaction half done: the thread finishes or rolls back on its own.

aiosqlite has no public "run this callable on your thread" call; `Connection._execute` is
what its own `backup()` uses. aiosqlite is pinned, and the tests exercise this path.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Literal, TypeVar, cast

import aiosqlite

from .errors import DatabaseError, StorageBusyError, StorageClosedError

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], T]
Synchronous = Literal["NORMAL", "FULL"]


class Connection:
    """The single connection storage/ uses; see the module docstring for why it looks so."""

    def __init__(self, aio: aiosqlite.Connection, path: Path, busy_timeout: float) -> None:
        self._aio = aio
        self._raw: sqlite3.Connection = aio._conn  # owned by aiosqlite's thread; used only there
        self.path = path
        self._busy_timeout = busy_timeout
        self._closed = False

    @classmethod
    async def open(cls, path: Path, *, busy_timeout: float, synchronous: Synchronous) -> Connection:
        # isolation_level=None: the sqlite3 module must not open transactions behind our back.
        aio = await aiosqlite.connect(path, isolation_level=None, timeout=busy_timeout)
        try:
            conn = cls(aio, path, busy_timeout)
            await conn.run(partial(_configure, busy_timeout=busy_timeout, synchronous=synchronous))
        except BaseException:
            await aio.close()
            raise
        return conn

    async def run(self, work: Work[T]) -> T:
        """Run `work(conn)` on the connection's thread with nothing else in between."""
        if self._closed:
            raise StorageClosedError("storage is closed")
        try:
            result = await self._aio._execute(work, self._raw)  # type: ignore[no-untyped-call]
        except sqlite3.OperationalError as error:
            if _is_busy(error):
                raise StorageBusyError(
                    f"the database at {self.path} stayed locked by another connection for over "
                    f"{self._busy_timeout:g} s"
                ) from error
            raise DatabaseError(f"database error: {error}") from error
        except sqlite3.Error as error:
            raise DatabaseError(f"database error: {error}") from error
        return cast(T, result)

    async def write(self, work: Work[T]) -> T:
        """Run `work` inside BEGIN IMMEDIATE … COMMIT; any exception rolls it all back."""
        return await self.run(partial(_in_transaction, "BEGIN IMMEDIATE", work))

    async def read(self, work: Work[T]) -> T:
        """Run `work` inside a read transaction, so every statement sees one snapshot."""
        return await self.run(partial(_in_transaction, "BEGIN", work))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._aio.close()


def _is_busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(error) or "busy" in str(error)


def _configure(conn: sqlite3.Connection, *, busy_timeout: float, synchronous: Synchronous) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        # WAL is what lets readers and one writer work at once; without it, say so loudly.
        log.warning("SQLite refused WAL mode (journal_mode=%s); concurrency will suffer", mode)
    # NORMAL in WAL mode survives any process crash; FULL also survives power loss.
    conn.execute(f"PRAGMA synchronous = {synchronous}")


def _in_transaction(begin: str, work: Work[T], conn: sqlite3.Connection) -> T:
    conn.execute(begin)
    try:
        result = work(conn)
        conn.execute("COMMIT")
    except BaseException:
        # rollback() is a no-op when SQLite already ended the transaction itself.
        conn.rollback()
        raise
    return result
