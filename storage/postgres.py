"""PostgreSQL: a pool of asyncpg connections, one transaction per call (docs/storage.md).

The repositories' transactions (`async def work(tx)`, storage/dialect.py) are awaited on a
pooled connection inside `BEGIN … COMMIT`; reads run in a READ ONLY REPEATABLE READ transaction
so all their statements see one snapshot. Writes run at READ COMMITTED, and whatever must be
exact across processes takes a lock first: `tx.lock(...)` is a transaction-scoped advisory
lock; the per-server month counter is a row every admission updates (a row lock held to the
commit). A write the caller stops waiting for (cancelled) still finishes or rolls back on its
own, as on SQLite; `close()` waits for it. A read first waits for the writes this process
started before it, so one process reads its own writes in order, as on SQLite. A deadlock or
serialization failure (neither should happen with the lock order the repositories keep) is
retried a bounded number of times.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any, TypeVar
from urllib.parse import SplitResult, urlsplit, urlunsplit

import asyncpg

from .dialect import Dialect, Params, Row, Work, arguments, lock_key
from .errors import (
    ConstraintError,
    DatabaseError,
    StorageBusyError,
    StorageClosedError,
    StorageError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMES = ("postgresql", "postgres")
RETRIES = 3  # deadlock or serialization failure: the whole transaction runs again

_CONSTRAINTS: dict[str, str] = {
    "23505": "unique",
    "23503": "foreign_key",
    "23514": "check",
    "23502": "not_null",
}


def is_postgres_url(location: object) -> bool:
    return isinstance(location, str) and location.split(":", 1)[0].lower() in SCHEMES


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def server_address(url: str) -> str:
    """host:port of a PostgreSQL URL (5432 when not given), never the password."""
    parts: SplitResult = urlsplit(url)
    host = parts.hostname or "localhost"
    try:
        port = parts.port or 5432
    except ValueError:
        port = 5432
    return f"{host}:{port}"


def _constraint_error(error: asyncpg.PostgresError) -> ConstraintError:
    kind = _CONSTRAINTS.get(getattr(error, "sqlstate", ""), "other")
    return ConstraintError(kind, f"database error: {error}")


_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
_WRITE = "BEGIN"


class PostgresTx:
    """A transaction on one pooled connection. BEGIN goes with the first statement: when that
    is a lock, both travel in one round trip."""

    __slots__ = ("_begin", "_conn", "open")

    def __init__(self, conn: Any, begin: str) -> None:
        self._conn = conn
        self._begin = begin
        self.open = False

    async def _start(self) -> None:
        if not self.open:
            await self._conn.execute(self._begin)
            self.open = True

    @property
    def dialect(self) -> Dialect:
        return "postgres"

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        text, args = arguments(sql, params)
        await self._start()
        try:
            rows: list[Row] = await self._conn.fetch(text, *args)
        except asyncpg.IntegrityConstraintViolationError as error:
            raise _constraint_error(error) from error
        return rows

    async def fetchrow(self, sql: str, params: Params = ()) -> Row | None:
        text, args = arguments(sql, params)
        await self._start()
        try:
            row: Row | None = await self._conn.fetchrow(text, *args)
        except asyncpg.IntegrityConstraintViolationError as error:
            raise _constraint_error(error) from error
        return row

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        text, args = arguments(sql, params)
        await self._start()
        try:
            return await self._conn.fetchval(text, *args)
        except asyncpg.IntegrityConstraintViolationError as error:
            raise _constraint_error(error) from error

    async def execute(self, sql: str, params: Params = ()) -> int:
        text, args = arguments(sql, params)
        await self._start()
        try:
            status: str = await self._conn.execute(text, *args)
        except asyncpg.IntegrityConstraintViolationError as error:
            raise _constraint_error(error) from error
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def lock(self, *key: int | str) -> None:
        """Wait for, then hold until the end of this transaction, the lock named by `key`."""
        number = lock_key(*key)  # an int: safe to write into the statement
        if self.open:
            await self._conn.execute(f"SELECT pg_advisory_xact_lock({number})")
        else:  # BEGIN and the lock in one round trip (the simple query protocol allows both)
            await self._conn.execute(f"{self._begin}; SELECT pg_advisory_xact_lock({number})")
            self.open = True


class PostgresConnection:
    """A pool of asyncpg connections to one database."""

    dialect: Dialect = "postgres"

    def __init__(self, pool: Any, url: str, busy_timeout: float, server_version: str) -> None:
        self._pool = pool
        self.url = redact(url)
        self.address = server_address(url)
        self._busy_timeout = busy_timeout
        self.server_version = server_version
        self._closed = False
        self._writes: set[asyncio.Task[Any]] = set()

    @classmethod
    async def open(
        cls, url: str, *, pool_size: int, busy_timeout: float, connect_timeout: float = 10.0
    ) -> PostgresConnection:
        address = server_address(url)
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=pool_size,
                timeout=connect_timeout,
                command_timeout=None,
                server_settings={
                    # A lock held longer than this ends the waiting transaction with
                    # StorageBusyError, as SQLite's busy timeout does.
                    "lock_timeout": str(int(busy_timeout * 1000)),
                    "application_name": "flux2-lora-bot",
                },
                # Transactions end with COMMIT or ROLLBACK and leave no session state (no SET,
                # LISTEN or session lock), so a returned connection needs no reset query:
                # one round trip less per transaction. asyncpg still rolls back one left open.
                reset=_no_reset,
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise DatabaseError(_unreachable(address, error)) from None
        try:
            async with pool.acquire() as conn:
                version = await conn.fetchval("SHOW server_version")
        except BaseException:
            await pool.close()
            raise
        log.info("PostgreSQL %s at %s, pool of up to %d", version, redact(url), pool_size)
        return cls(pool, url, busy_timeout, str(version).split()[0])

    async def read(self, work: Work[T]) -> T:
        if self._closed:
            raise StorageClosedError("storage is closed")
        if self._writes:
            # Reads see every write this process started before them, as on SQLite's single
            # connection: a task that saw a write's effect (a posted result) reads it back.
            await asyncio.wait(list(self._writes))
        return await self._attempts(work, readonly=True)

    async def write(self, work: Work[T]) -> T:
        if self._closed:
            raise StorageClosedError("storage is closed")
        # The transaction runs in its own task: a caller cancelled while it runs stops waiting,
        # the transaction still commits or rolls back whole, and close() waits for it.
        task = asyncio.ensure_future(self._attempts(work, readonly=False))
        self._writes.add(task)
        task.add_done_callback(_settled)
        task.add_done_callback(self._writes.discard)
        return await asyncio.shield(task)

    async def _attempts(self, work: Work[T], *, readonly: bool) -> T:
        for attempt in range(1, RETRIES + 1):
            try:
                return await self._once(work, readonly=readonly)
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as error:
                if attempt == RETRIES:
                    raise DatabaseError(f"database error: {error}") from error
                log.warning("transaction retried after %s", type(error).__name__)
        raise AssertionError("unreachable")

    async def _once(self, work: Work[T], *, readonly: bool) -> T:
        try:
            async with self._pool.acquire() as conn:
                tx = PostgresTx(conn, _READ if readonly else _WRITE)
                try:
                    result = await work(tx)
                except BaseException:
                    if tx.open and not conn.is_closed():
                        # Best effort; if this fails the pool rolls back or drops the connection.
                        with contextlib.suppress(Exception):
                            await conn.execute("ROLLBACK")
                    raise
                if tx.open:
                    await conn.execute("COMMIT")
                return result
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError, StorageError):
            raise
        except asyncpg.LockNotAvailableError as error:
            raise StorageBusyError(
                f"the database at {self.address} kept a lock for over {self._busy_timeout:g} s"
            ) from error
        except asyncpg.PostgresError as error:
            raise DatabaseError(f"database error: {error}") from error
        except (OSError, asyncpg.InterfaceError) as error:
            raise DatabaseError(_unreachable(self.address, error)) from error

    def acquire(self) -> Any:
        """A pooled asyncpg connection, as an async context manager (tools and tests)."""
        if self._closed:
            raise StorageClosedError("storage is closed")
        return self._pool.acquire()

    async def close(self) -> None:
        """Let running writes finish, then close every connection."""
        if self._closed:
            return
        self._closed = True
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self._pool.close()


def _settled(task: asyncio.Task[Any]) -> None:
    """Mark the outcome as seen: a caller that stopped waiting is not told, nor is asyncio."""
    if not task.cancelled():
        task.exception()


async def _no_reset(conn: Any) -> None:
    """See `create_pool(reset=…)` above."""


def _unreachable(address: str, error: BaseException) -> str:
    refused = asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
    if isinstance(error, refused):
        reason = "the server refused the user name or password"
    elif isinstance(error, asyncpg.InvalidCatalogNameError):
        reason = "that database does not exist on the server"
    elif isinstance(error, TimeoutError):
        reason = "no answer in time"
    elif isinstance(error, ConnectionRefusedError):
        reason = "connection refused (is the server running and listening there?)"
    elif isinstance(error, socket.gaierror):
        reason = "unknown host name"
    elif isinstance(error, OSError) and error.strerror:
        reason = error.strerror
    else:
        reason = type(error).__name__
    return f"cannot reach PostgreSQL at {address} (DATABASE_URL): {reason}"
