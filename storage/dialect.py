"""What the repositories see of a database, the same on SQLite and PostgreSQL (docs/storage.md).

A transaction is one async function `work(tx)`. `tx` offers five calls: `fetch`, `fetchrow`,
`fetchval`, `execute` (returns the row count) and `lock` (serialise with other transactions on a
key: a no-op on SQLite, where writers already take turns, a transaction-scoped advisory lock on
PostgreSQL). The SQL is written once, portably: `?` or `:name` placeholders (PostgreSQL's `$n`
are made from them), `RETURNING`, `ON CONFLICT … DO UPDATE`, partial indexes, and `CAST(… AS
BIGINT)` around sums so both return integers.

On SQLite the same coroutine is driven to its end on the connection's thread without an event
loop (`drive`): its awaits never suspend there, so a transaction still costs one thread hop.
On PostgreSQL it is awaited on a pooled asyncpg connection.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, Protocol, TypeVar

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

Dialect = Literal["sqlite", "postgres"]
Params = Sequence[Any] | Mapping[str, Any]


class Row(Protocol):
    """A result row: by column name or by position (sqlite3.Row and asyncpg.Record both)."""

    def __getitem__(self, key: int | str, /) -> Any: ...


class Tx(Protocol):
    """One transaction in progress."""

    @property
    def dialect(self) -> Dialect: ...

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def fetchrow(self, sql: str, params: Params = ()) -> Row | None: ...

    async def fetchval(self, sql: str, params: Params = ()) -> Any: ...

    async def execute(self, sql: str, params: Params = ()) -> int: ...

    async def lock(self, *key: int | str) -> None: ...


Work = Callable[[Tx], Awaitable[T]]


class Database(Protocol):
    """A connection (SQLite) or a pool (PostgreSQL) that runs whole transactions."""

    @property
    def dialect(self) -> Dialect: ...

    async def read(self, work: Work[T]) -> T:
        """Run `work` in a read-only transaction: every statement sees one snapshot."""
        ...

    async def write(self, work: Work[T]) -> T:
        """Run `work` as a write transaction; if it raises, nothing it wrote stays."""
        ...

    async def close(self) -> None: ...


class SuspendedError(RuntimeError):
    """A SQLite transaction awaited something other than its own statements."""


def drive(awaitable: Awaitable[T]) -> T:
    """Run a coroutine whose awaits all complete at once (SQLite's transactions) to its end,
    synchronously, on the calling thread."""
    steps = awaitable.__await__()
    try:
        steps.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    close = getattr(steps, "close", None)
    if close is not None:
        close()
    raise SuspendedError(
        "a storage transaction awaited something other than its statements; on SQLite a "
        "transaction runs whole on the connection's thread and cannot wait for anything else"
    )


# --- placeholders for PostgreSQL --------------------------------------------------------------

_TOKEN = re.compile(
    r"""'(?:[^']|'')*'          # a string literal: left alone
      | "(?:[^"]|"")*"          # a quoted identifier
      | --[^\n]*                # a comment
      | ::                      # a cast, not a parameter
      | \?                      # a positional parameter
      | :([A-Za-z_][A-Za-z0-9_]*)  # a named parameter""",
    re.VERBOSE,
)


@functools.lru_cache(maxsize=2048)
def numbered(sql: str) -> tuple[str, tuple[str, ...] | None, int]:
    """`sql` with `?`/`:name` turned into `$1…`; the parameter names in order (None when the
    statement is positional) and how many parameters it takes."""
    names: list[str] = []
    positional = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal positional
        token = match.group(0)
        if token == "?":
            positional += 1
            return f"${positional}"
        name = match.group(1)
        if name is None:
            return token
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    text = _TOKEN.sub(replace, sql)
    if positional and names:
        raise ValueError("a statement uses either ? or :name placeholders, not both")
    if names:
        return text, tuple(names), len(names)
    return text, None, positional


def arguments(sql: str, params: Params) -> tuple[str, list[Any]]:
    """The PostgreSQL text of `sql` and its arguments in `$n` order."""
    text, names, count = numbered(sql)
    if names is not None:
        if not isinstance(params, Mapping):
            raise TypeError("named placeholders need a mapping of parameters")
        return text, [params[name] for name in names]
    if isinstance(params, Mapping):
        if count:
            raise TypeError("? placeholders need a sequence of parameters")
        return text, []
    values = list(params)
    if len(values) != count:
        raise TypeError(f"the statement takes {count} parameters, {len(values)} given")
    return text, values


def lock_key(*parts: int | str) -> int:
    """A stable signed 64-bit key for an advisory lock (the same in every process)."""
    text = "\x1f".join(str(part) for part in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big", signed=True)
