"""Settings: what an operator sees when the environment is right, missing or malformed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot import Settings, describe_settings_error

ROOT = Path(__file__).resolve().parents[2]
VALID = {"DISCORD_TOKEN": "abc.def.ghi", "FAL_KEY": "key-id:key-secret"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper() in {f.upper() for f in Settings.model_fields}:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's checkout


def errors_for(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    return describe_settings_error(info.value)


def test_valid_environment_gives_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in VALID.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.discord_token.get_secret_value() == "abc.def.ghi"
    assert settings.database_path == Path("data/bot.sqlite3")
    assert settings.fal_url("fal_queue_url") == "https://queue.fal.run"
    assert settings.fal_url("fal_rest_url") == "https://rest.fal.ai"
    assert settings.fal_url("fal_cdn_url") == "https://v3.fal.media"
    assert settings.fal_endpoint == "fal-ai/flux-2/lora/edit"
    assert settings.dev_guild_id is None
    assert settings.log_level == "INFO"
    assert "key-secret" not in repr(settings)


def test_dotenv_file_is_read_and_empty_values_mean_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "DISCORD_TOKEN=tok\nFAL_KEY=a:b\nDEV_GUILD_ID=\nLOG_LEVEL=debug\n"
        "FAL_QUEUE_URL=http://127.0.0.1:9999\n"
    )
    settings = Settings()
    assert settings.dev_guild_id is None
    assert settings.log_level == "DEBUG"
    assert settings.fal_url("fal_queue_url") == "http://127.0.0.1:9999"


def test_each_missing_secret_gets_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = errors_for({}, monkeypatch)
    assert len(lines) == 2
    assert lines[0].startswith("DISCORD_TOKEN is missing.")
    assert "discord.com/developers/applications" in lines[0]
    assert lines[1].startswith("FAL_KEY is missing.")
    assert "fal.ai/dashboard/keys" in lines[1]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("FAL_KEY", "no-colon-here", "FAL_KEY is malformed: must look like key_id:key_secret"),
        ("DISCORD_TOKEN", "Bot abc", "DISCORD_TOKEN is malformed"),
        ("DEV_GUILD_ID", "my-server", "DEV_GUILD_ID is malformed"),
        ("FAL_QUEUE_URL", "queue.fal.run", "FAL_QUEUE_URL is malformed"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL is malformed: must be DEBUG"),
        ("JOB_TIMEOUT_SECONDS", "5", "JOB_TIMEOUT_SECONDS is malformed"),
    ],
)
def test_each_malformed_setting_gets_its_own_line(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    lines = errors_for({**VALID, name: value}, monkeypatch)
    assert len(lines) == 1
    assert lines[0].startswith(expected)
    assert value not in lines[0]  # never echo a (possibly secret) value


def test_two_problems_give_two_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = errors_for({"FAL_KEY": "nocolon", "DEV_GUILD_ID": "x"}, monkeypatch)
    assert [line.split(" ")[0] for line in lines] == ["DISCORD_TOKEN", "FAL_KEY", "DEV_GUILD_ID"]


def run_bot(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in {"DISCORD_TOKEN", "FAL_KEY"}}
    return subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bot_in_empty_environment_prints_clear_lines_and_exits_2(tmp_path: Path) -> None:
    done = run_bot([], tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "DISCORD_TOKEN is missing." in done.stderr
    assert "FAL_KEY is missing." in done.stderr


def test_help_lists_every_setting(tmp_path: Path) -> None:
    done = run_bot(["--help"], tmp_path)
    assert done.returncode == 0
    for name in Settings.model_fields:
        assert name.upper() in done.stdout


def test_env_example_and_readme_document_every_setting() -> None:
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"\n{name.upper()}=" in example, name
        assert f"`{name.upper()}`" in readme, name


WEBHOOK = {**VALID, "FAL_WEBHOOK_URL": "https://bot.example.org/fal/webhook"}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param(
            {**WEBHOOK, "FAL_WEBHOOK_URL": "http://bot.example.org/fal/webhook"},
            "FAL_WEBHOOK_URL is malformed: must be an https:// address that fal can reach",
            id="plain http",
        ),
        pytest.param(
            {**WEBHOOK, "FAL_WEBHOOK_URL": "bot.example.org/fal/webhook"},
            "FAL_WEBHOOK_URL is malformed",
            id="no scheme",
        ),
        pytest.param(
            {**WEBHOOK, "FAL_WEBHOOK_URL": "https://bot.example.org/fal/webhook?x=1"},
            "FAL_WEBHOOK_URL is malformed: must not carry a query",
            id="a query",
        ),
        pytest.param(
            WEBHOOK,
            "FAL_WEBHOOK_URL is set but nothing listens for fal's webhooks: set WEBHOOK_PORT",
            id="no listener",
        ),
        pytest.param(
            {**WEBHOOK, "WEBHOOK_PORT": "9100", "METRICS_PORT": "9100"},
            "WEBHOOK_PORT and METRICS_PORT are both 9100",
            id="one port for both",
        ),
        pytest.param(
            {**WEBHOOK, "WEBHOOK_PORT": "9100", "FAL_WEBHOOK_GRACE_SECONDS": "0"},
            "FAL_WEBHOOK_GRACE_SECONDS is malformed",
            id="no grace",
        ),
    ],
)
def test_a_webhook_setting_that_cannot_work_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    lines = errors_for(env, monkeypatch)
    assert len(lines) == 1
    assert lines[0].startswith(expected)


@pytest.mark.parametrize(
    ("env", "where"),
    [
        pytest.param({**WEBHOOK, "WEBHOOK_PORT": "8443"}, (8443, None), id="its own port"),
        pytest.param({**WEBHOOK, "METRICS_PORT": "9100"}, (None, 9100), id="the metrics port"),
        pytest.param(
            {**VALID, "FAL_WEBHOOK_URL": "http://127.0.0.1:8443/fal/webhook", "WEBHOOK_PORT": "0"},
            (0, None),
            id="http on this machine (emulators)",
        ),
    ],
)
def test_webhook_settings_that_work(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], where: tuple[int | None, int | None]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert (settings.webhook_port, settings.metrics_port) == where
    assert settings.webhook_host == "0.0.0.0"
    assert settings.fal_webhook_grace_seconds == 60.0
