"""Re-hosted input images, deduplicated by the SHA-256 of their bytes."""

from __future__ import annotations

from .clock import from_us, to_us
from .dialect import Database, Row, Tx
from .models import StoredInput


def _input(row: Row) -> StoredInput:
    return StoredInput(
        sha256=row["sha256"],
        url=row["url"],
        content_type=row["content_type"],
        byte_size=row["byte_size"],
        width=row["width"],
        height=row["height"],
        created_at=from_us(row["created_at"]),
    )


class InputRepository:
    def __init__(self, conn: Database) -> None:
        self._conn = conn

    async def get(self, sha256: str) -> StoredInput | None:
        async def work(tx: Tx) -> Row | None:
            return await tx.fetchrow("SELECT * FROM inputs WHERE sha256 = ?", (sha256.lower(),))

        row = await self._conn.read(work)
        return None if row is None else _input(row)

    async def put(self, stored: StoredInput) -> StoredInput:
        """Remember where these bytes were re-hosted. Idempotent: the first record of a hash
        wins and is returned, so two tasks uploading the same image agree on one URL."""

        async def work(tx: Tx) -> Row:
            await tx.execute(
                """INSERT INTO inputs (sha256, url, content_type, byte_size, width, height,
                                       created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (sha256) DO NOTHING""",
                (
                    stored.sha256,
                    stored.url,
                    stored.content_type,
                    stored.byte_size,
                    stored.width,
                    stored.height,
                    to_us(stored.created_at),
                ),
            )
            row = await tx.fetchrow("SELECT * FROM inputs WHERE sha256 = ?", (stored.sha256,))
            assert row is not None  # inserted above, or by whoever was first
            return row

        return _input(await self._conn.write(work))
