"""`Storage`: opens the database (a SQLite file or a PostgreSQL server), brings its schema up
to date, holds the repositories."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Generic, Literal, cast

from . import schema
from .connection import Connection, Synchronous
from .deliveries import DeliveryRepository
from .dialect import Database, Dialect
from .fair_queue import FairQueueRepository
from .inputs import InputRepository
from .jobs import JobRepository
from .leases import LeaseRepository, LeaseTerms
from .loras import LoraRepository
from .models import Job, RequestT, ResultT
from .pairs import PairRepository
from .postgres import PostgresConnection, is_postgres_url
from .presets import PresetRepository
from .quotas import QuotaRepository
from .settings import SettingsRepository
from .spend import SpendRepository
from .sweeps import SweepRepository
from .trainings import TrainingRepository

log = logging.getLogger(__name__)

Backend = Literal["sqlite", "postgresql"]


class Storage(Generic[RequestT, ResultT]):
    """Everything the bot keeps: one database (SQLite or PostgreSQL), its repositories."""

    def __init__(
        self,
        conn: Database,
        schema_version: int,
        job_model: type[Job[RequestT, ResultT]],
        lease: LeaseTerms | None = None,
    ) -> None:
        self._conn = conn
        self.schema_version = schema_version
        self.path: Path | None = conn.path if isinstance(conn, Connection) else None
        self.loras = LoraRepository(conn)
        self.jobs = JobRepository(conn, job_model, lease)
        self.leases = LeaseRepository(conn, lease)
        self.queue = FairQueueRepository(conn)
        self.quotas = QuotaRepository(conn)
        self.settings = SettingsRepository(conn)
        self.inputs = InputRepository(conn)
        self.spend = SpendRepository(conn)
        self.presets = PresetRepository(conn)
        self.sweeps = SweepRepository(conn, job_model, lease)
        self.pairs = PairRepository(conn)
        self.trainings = TrainingRepository(conn)
        self.deliveries = DeliveryRepository(conn)

    @property
    def backend(self) -> Backend:
        return "sqlite" if isinstance(self._conn, Connection) else "postgresql"

    @property
    def server_version(self) -> str:
        """SQLite's library version, or the PostgreSQL server's."""
        if isinstance(self._conn, PostgresConnection):
            return self._conn.server_version
        return sqlite3.sqlite_version

    @property
    def location(self) -> str:
        """Where the data is: the file, or the server's URL without its password."""
        if isinstance(self._conn, PostgresConnection):
            return self._conn.url
        return str(self.path)

    def describe(self) -> str:
        """One line for operators: backend, its version, where, schema version."""
        if isinstance(self._conn, PostgresConnection):
            what = f"PostgreSQL {self.server_version} at {self.location}"
        else:
            what = f"SQLite {self.server_version} file {self.location}"
        return f"{what}, schema {self.schema_version}"

    @classmethod
    async def open(
        cls,
        location: Path | str,
        *,
        busy_timeout: float = 5.0,
        synchronous: Synchronous = "NORMAL",
        pool_size: int = 10,
        migrations: Sequence[schema.Migration] | None = None,
        job_model: type[Job[RequestT, ResultT]] | None = None,
        lease: LeaseTerms | None = None,
    ) -> Storage[RequestT, ResultT]:
        """Open (creating if needed) the database and apply pending migrations.

        `location` is a SQLite file path, or a `postgresql://user:password@host:port/db` URL
        (a pool of up to `pool_size` connections). Raises SchemaTooNewError, before any
        migration or other write, when the database was written by a newer bot;
        DatabaseError when it cannot be opened or reached. `busy_timeout` bounds the wait for
        another connection's lock (StorageBusyError after it); `synchronous="FULL"` (SQLite)
        also survives power loss, at some write speed; `migrations` replaces the packaged
        ones (tests and tools); `job_model` is the typed `Job[Request, Result]` jobs are read
        as (default: JSON payloads as dicts); `lease` names this process: the jobs it admits
        are leased to it (storage/leases.py).
        """
        conn: Database
        if is_postgres_url(location):
            dialect: Dialect = "postgres"
            conn = await PostgresConnection.open(
                str(location), pool_size=pool_size, busy_timeout=busy_timeout
            )
        else:
            dialect = "sqlite"
            file = Path(location)
            file.parent.mkdir(parents=True, exist_ok=True)
            conn = await Connection.open(file, busy_timeout=busy_timeout, synchronous=synchronous)
        known = schema.load_migrations(dialect=dialect) if migrations is None else tuple(migrations)
        try:
            version = await _migrate(conn, known)
        except BaseException:
            await conn.close()
            raise
        model = job_model if job_model is not None else cast("type[Job[RequestT, ResultT]]", Job)
        opened = cls(conn, version, model, lease)
        log.info("storage open: %s", opened.describe())
        return opened

    async def close(self) -> None:
        await self._conn.close()

    async def __aenter__(self) -> Storage[RequestT, ResultT]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


async def _migrate(conn: Database, migrations: Sequence[schema.Migration]) -> int:
    # Refuse a newer database before writing anything to it.
    version = await conn.read(schema.read_version)
    schema.check_not_too_new(version, migrations)
    for migration in schema.pending(migrations, version):
        if await conn.write(partial(schema.apply_step, migration, migrations)):
            log.info("applied migration %04d_%s", migration.version, migration.name)
    return await conn.read(schema.read_version)
