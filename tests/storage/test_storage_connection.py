"""The SQLite connection layer: whole transactions on aiosqlite's thread, group-committed
writes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from storage import Storage
from storage.dialect import SuspendedError, Tx

# An exception in a storage thread (say, reporting into a closed loop) fails the test.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

FRAME = 24 + 4096  # WAL frame header + one page


@pytest.fixture
def backend() -> str:
    """Group commit and the WAL are SQLite's."""
    return "sqlite"


def wal_size(storage_path: Path) -> int:
    return Path(f"{storage_path}-wal").stat().st_size


async def set_then_fail(tx: Tx) -> None:
    await tx.execute("INSERT INTO meta (key, value) VALUES ('doomed', 'x')")
    raise ValueError("changed my mind")


async def test_concurrent_writes_share_one_commit(storage: Storage, storage_path: Path) -> None:
    await storage.settings.set_meta("warm", "up")
    before = wal_size(storage_path)

    await asyncio.gather(*(storage.settings.set_meta(f"key-{n}", "v" * 20) for n in range(100)))

    frames = (wal_size(storage_path) - before) // FRAME
    assert frames < 10, f"100 concurrent writes appended {frames} WAL frames"
    assert await storage.settings.get_meta("key-99") == "v" * 20


async def test_a_failing_write_is_undone_alone_in_its_batch(storage: Storage) -> None:
    results = await asyncio.gather(
        storage.settings.set_meta("before", "1"),
        storage._conn.write(set_then_fail),
        storage.settings.set_meta("after", "2"),
        return_exceptions=True,
    )

    assert results[0] is None and results[2] is None
    assert isinstance(results[1], ValueError)
    assert await storage.settings.get_meta("doomed") is None
    assert await storage.settings.get_meta("before") == "1"
    assert await storage.settings.get_meta("after") == "2"


async def test_later_writes_in_a_batch_see_earlier_ones(storage: Storage) -> None:
    async def read_back(tx: Tx) -> str | None:
        value = await tx.fetchval("SELECT value FROM meta WHERE key = 'first'")
        return None if value is None else str(value)

    _, seen = await asyncio.gather(
        storage.settings.set_meta("first", "here"), storage._conn.write(read_back)
    )
    assert seen == "here"


async def test_a_write_cancelled_before_it_ran_is_withdrawn(storage: Storage) -> None:
    blocker = asyncio.create_task(storage.settings.set_meta("first", "1"))
    await asyncio.sleep(0)  # let it reach the thread; the next write must queue behind it
    withdrawn = asyncio.create_task(storage.settings.set_meta("withdrawn", "x"))
    await asyncio.sleep(0)
    withdrawn.cancel()
    await blocker
    with pytest.raises(asyncio.CancelledError):
        await withdrawn
    await storage.settings.set_meta("last", "3")
    assert await storage.settings.get_meta("withdrawn") is None
    assert await storage.settings.get_meta("last") == "3"


async def test_close_finishes_queued_writes_first(storage_path: Path) -> None:
    storage = await Storage.open(storage_path)
    writes = [asyncio.create_task(storage.settings.set_meta(f"k{n}", str(n))) for n in range(20)]
    await asyncio.sleep(0)  # every write is queued now
    await storage.close()
    await asyncio.gather(*writes)

    reopened = await Storage.open(storage_path)
    try:
        assert await reopened.settings.get_meta("k19") == "19"
    finally:
        await reopened.close()


async def test_reads_see_committed_data_only(storage: Storage) -> None:
    # A read queued while a batch is open must not see that batch's uncommitted rows.
    async def write_and_fail(tx: Tx) -> None:
        await tx.execute("INSERT INTO meta (key, value) VALUES ('ghost', 'boo')")
        raise RuntimeError("rolled back")

    results = await asyncio.gather(
        storage._conn.write(write_and_fail),
        storage.settings.get_meta("ghost"),
        return_exceptions=True,
    )
    assert isinstance(results[0], RuntimeError)
    assert results[1] is None


async def test_a_transaction_that_waits_for_something_else_is_refused(storage: Storage) -> None:
    # On SQLite a transaction runs whole on the connection's thread; awaiting anything but its
    # own statements would have to stop that thread, so it is an error, and nothing is kept.
    async def waits(tx: Tx) -> None:
        await tx.execute("INSERT INTO meta (key, value) VALUES ('waited', 'x')")
        await asyncio.sleep(0)  # gives the event loop a turn: a suspension

    with pytest.raises(SuspendedError, match="cannot wait for anything else"):
        await storage._conn.write(waits)
    assert await storage.settings.get_meta("waited") is None
