"""Typed storage errors: one class per outcome a caller handles differently."""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error raised by storage/."""


class SchemaTooNewError(StorageError):
    """The database was written by a newer bot; running older code on it could corrupt it."""

    def __init__(self, database_version: int, code_version: int) -> None:
        self.database_version = database_version
        self.code_version = code_version
        super().__init__(
            f"database schema {database_version} is newer than this bot ({code_version}); "
            "upgrade the bot or restore a backup"
        )


class MigrationError(StorageError):
    """A migration file is malformed or failed; the database keeps its previous version."""


class StorageClosedError(StorageError):
    """The storage was used after close()."""


class StorageBusyError(StorageError):
    """Another connection held the write lock for longer than the busy timeout."""


class DatabaseError(StorageError):
    """The database failed (disk full, I/O error, corrupt file, server unreachable…); the
    transaction was rolled back."""


class ConstraintError(DatabaseError):
    """A statement broke a constraint: `kind` is "unique", "foreign_key", "check", "not_null"
    or "other". Raised inside a transaction, which the backend then rolls back."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


class NotFoundError(StorageError):
    """The thing asked for does not exist."""


class LoraNotFound(NotFoundError):
    def __init__(self, guild_id: int, name: str) -> None:
        self.guild_id = guild_id
        self.name = name
        super().__init__(f"no LoRA named {name!r} on this server")


class JobNotFound(NotFoundError):
    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} does not exist")


class DuplicateName(StorageError):
    """A LoRA with this name (ignoring case) is already registered on the server."""

    def __init__(self, guild_id: int, name: str, existing: str) -> None:
        self.guild_id = guild_id
        self.name = name
        self.existing = existing
        super().__init__(f"a LoRA named {existing!r} already exists on this server")


class LoraLimitReached(StorageError):
    """The server already has as many LoRAs as the operator allows."""

    def __init__(self, guild_id: int, limit: int) -> None:
        self.guild_id = guild_id
        self.limit = limit
        super().__init__(
            f"this server already has {limit} LoRAs, the most allowed; remove one first"
        )


class IllegalTransition(StorageError):
    """A job state change the lifecycle does not allow (or a conflicting retry of one)."""

    def __init__(self, job_id: int, current: str, target: str, reason: str = "") -> None:
        self.job_id = job_id
        self.current = current
        self.target = target
        detail = f": {reason}" if reason else ""
        super().__init__(f"job {job_id} cannot move from {current} to {target}{detail}")
