"""DATABASE_URL and DATABASE_POOL_SIZE: which database the bot opens, and the password kept out
of sight."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from settings import Settings, describe_settings_error
from storage.postgres import redact, server_address

SECRET = "pa55-w0rd-never-shown"
BASE = {"discord_token": "token.value", "fal_key": "id:secret"}


def test_without_a_url_the_bot_uses_the_sqlite_file(tmp_path: Path) -> None:
    settings = Settings(**BASE, database_path=tmp_path / "bot.sqlite3", database_url="")
    assert settings.database_url is None
    assert settings.database_location() == tmp_path / "bot.sqlite3"
    assert settings.database_pool_size == 10


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://bot:{SECRET}@db.internal:5432/flux",
        f"postgres://bot:{SECRET}@10.0.0.5/flux",
        "postgresql://bot@/flux?host=/var/run/postgresql",
    ],
    ids=["host-port", "postgres-scheme", "unix-socket"],
)
def test_a_postgres_url_is_used_and_its_password_never_shown(url: str) -> None:
    settings = Settings(**BASE, database_url=url, database_pool_size=4)
    assert settings.database_location() == url
    assert settings.database_pool_size == 4
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    assert SECRET not in redact(url)


def test_redacted_url_and_address_name_the_server_only() -> None:
    url = f"postgresql://bot:{SECRET}@db.internal:6543/flux?sslmode=require"
    assert redact(url) == "postgresql://bot@db.internal:6543/flux?sslmode=require"
    assert server_address(url) == "db.internal:6543"
    assert server_address("postgresql://bot@db/flux") == "db:5432"


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        ({"database_url": f"sqlite:///{SECRET}"}, "DATABASE_URL is malformed: must start with"),
        ({"database_url": f"postgresql://u:{SECRET}@h:70000/d"}, "DATABASE_URL is malformed"),
        ({"database_pool_size": 0}, "DATABASE_POOL_SIZE is malformed"),
    ],
    ids=["scheme", "port", "pool-size"],
)
def test_bad_database_settings_are_one_line_each_without_the_value(
    changes: dict[str, object], line: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**BASE, **changes)
    lines = describe_settings_error(caught.value)
    assert len(lines) == 1
    assert lines[0].startswith(line)
    assert SECRET not in lines[0]
