"""`Storage`: opens the SQLite file, brings its schema up to date, holds the repositories."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Generic, cast

from . import schema
from .connection import Connection, Synchronous
from .inputs import InputRepository
from .jobs import JobRepository
from .loras import LoraRepository
from .models import Job, RequestT, ResultT
from .pairs import PairRepository
from .presets import PresetRepository
from .quotas import QuotaRepository
from .settings import SettingsRepository
from .spend import SpendRepository
from .sweeps import SweepRepository
from .trainings import TrainingRepository

log = logging.getLogger(__name__)


class Storage(Generic[RequestT, ResultT]):
    """Everything the bot keeps: one SQLite file, one connection, its repositories."""

    def __init__(
        self, conn: Connection, schema_version: int, job_model: type[Job[RequestT, ResultT]]
    ) -> None:
        self._conn = conn
        self.path = conn.path
        self.schema_version = schema_version
        self.loras = LoraRepository(conn)
        self.jobs = JobRepository(conn, job_model)
        self.quotas = QuotaRepository(conn)
        self.settings = SettingsRepository(conn)
        self.inputs = InputRepository(conn)
        self.spend = SpendRepository(conn)
        self.presets = PresetRepository(conn)
        self.sweeps = SweepRepository(conn, job_model)
        self.pairs = PairRepository(conn)
        self.trainings = TrainingRepository(conn)

    @classmethod
    async def open(
        cls,
        path: Path | str,
        *,
        busy_timeout: float = 5.0,
        synchronous: Synchronous = "NORMAL",
        migrations: Sequence[schema.Migration] | None = None,
        job_model: type[Job[RequestT, ResultT]] | None = None,
    ) -> Storage[RequestT, ResultT]:
        """Open (creating if needed) the database and apply pending migrations.

        Raises SchemaTooNewError, before any migration or other write, when the file was
        written by a newer bot. `synchronous="FULL"` also survives power loss, at some write speed;
        `migrations` replaces the packaged ones (tests and tools); `job_model` is the typed
        `Job[Request, Result]` jobs are read as (default: JSON payloads as dicts).
        """
        file = Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        known = schema.load_migrations() if migrations is None else tuple(migrations)
        conn = await Connection.open(file, busy_timeout=busy_timeout, synchronous=synchronous)
        try:
            version = await _migrate(conn, known)
        except BaseException:
            await conn.close()
            raise
        log.info("storage open at %s, schema %d", file, version)
        model = job_model if job_model is not None else cast("type[Job[RequestT, ResultT]]", Job)
        return cls(conn, version, model)

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


async def _migrate(conn: Connection, migrations: Sequence[schema.Migration]) -> int:
    # Refuse a newer database before writing anything to it.
    version = await conn.read(schema.read_version)
    schema.check_not_too_new(version, migrations)
    for migration in schema.pending(migrations, version):
        if await conn.write(partial(schema.apply_step, migration, migrations)):
            log.info("applied migration %04d_%s", migration.version, migration.name)
    return await conn.read(schema.read_version)
