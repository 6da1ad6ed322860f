"""Every setting the bot reads, from the environment or a `.env` file, with one clear line per
missing or malformed setting (never its value)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

DISCORD_PORTAL = "https://discord.com/developers/applications"
FAL_KEYS_PAGE = "https://fal.ai/dashboard/keys"


class Settings(BaseSettings):
    """Every setting the bot reads, from the environment or a `.env` file."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        hide_input_in_errors=True,
        env_ignore_empty=True,
    )

    discord_token: Annotated[
        SecretStr,
        Field(description=f"Bot token: {DISCORD_PORTAL} → your app → Bot → Reset Token."),
    ]
    fal_key: Annotated[
        SecretStr,
        Field(description=f"fal.ai API key in the form key_id:key_secret, from {FAL_KEYS_PAGE}."),
    ]
    database_path: Annotated[
        Path, Field(description="SQLite file for registry, quotas and jobs (back it up).")
    ] = Path("./data/bot.sqlite3")
    database_url: Annotated[
        SecretStr | None,
        Field(
            description=(
                "Optional PostgreSQL server instead of the SQLite file: "
                "postgresql://user:password@host:port/database (the password is never shown)."
            )
        ),
    ] = None
    database_pool_size: Annotated[
        int,
        Field(ge=1, le=100, description="Connections the bot may open to PostgreSQL at once."),
    ] = 10
    fal_queue_url: Annotated[
        AnyHttpUrl, Field(description="fal queue API base URL, scheme included.")
    ] = AnyHttpUrl("https://queue.fal.run")
    fal_rest_url: Annotated[
        AnyHttpUrl, Field(description="fal REST API base URL (storage tokens, uploads).")
    ] = AnyHttpUrl("https://rest.fal.ai")
    fal_cdn_url: Annotated[AnyHttpUrl, Field(description="fal CDN base URL for uploads (v3).")] = (
        AnyHttpUrl("https://v3.fal.media")
    )
    fal_endpoint: Annotated[str, Field(description="fal endpoint id that edits the images.")] = (
        "fal-ai/flux-2/lora/edit"
    )
    fal_trainer_endpoint: Annotated[
        str, Field(description="fal endpoint id that trains edit LoRAs from before/after pairs.")
    ] = "fal-ai/flux-2-trainer/edit"
    training_timeout_seconds: Annotated[
        int,
        Field(
            ge=60,
            le=7 * 86_400,
            description="Cancel, expire and refund a training not done by then.",
        ),
    ] = 10_800
    training_price_per_step_usd: Annotated[
        float,
        Field(
            gt=0,
            le=1.0,
            description="USD per training step, before fal's multiplier for the inputs per pair "
            "(2.11 for one, up to 6.95 for four); unconfirmed, see docs/fal-trainer.md, Pricing.",
        ),
    ] = 0.0056
    dev_guild_id: Annotated[
        int | None,
        Field(description="Optional server id: sync commands there instantly while developing."),
    ] = None
    log_level: Annotated[
        str, Field(description="Logging level: DEBUG, INFO, WARNING or ERROR.")
    ] = "INFO"
    job_timeout_seconds: Annotated[
        int,
        Field(ge=30, le=86_400, description="Cancel, expire and refund a job not done by then."),
    ] = 900
    catch_up_hours: Annotated[
        int,
        Field(
            ge=0,
            le=24 * 14,
            description="At start, rerun 🔁 reactions made while the bot was down on results of "
            "the last N hours (0: off).",
        ),
    ] = 6
    max_loras_per_server: Annotated[
        int, Field(ge=1, le=10_000, description="How many LoRAs one server may register.")
    ] = 100
    metrics_port: Annotated[
        int | None,
        Field(ge=0, le=65535, description="Optional port for /healthz and Prometheus /metrics."),
    ] = None
    metrics_host: Annotated[str, Field(description="Address the metrics port listens on.")] = (
        "0.0.0.0"
    )
    discord_api_url: Annotated[
        AnyHttpUrl | None,
        Field(description="Override of Discord's REST base (tests and proxies only)."),
    ] = None
    discord_gateway_url: Annotated[
        str | None,
        Field(description="Override of Discord's gateway URL (tests and proxies only)."),
    ] = None

    @field_validator("fal_key")
    @classmethod
    def _fal_key_shape(cls, value: SecretStr) -> SecretStr:
        key_id, sep, secret = value.get_secret_value().partition(":")
        if not sep or not key_id or not secret:
            raise ValueError("must look like key_id:key_secret")
        return value

    @field_validator("discord_token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if not raw.strip() or any(c.isspace() for c in raw):
            raise ValueError("must be the bot token, without spaces or a 'Bot ' prefix")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        problem = database_url_problem(value.get_secret_value().strip())
        if problem:
            raise ValueError(problem)
        return SecretStr(value.get_secret_value().strip())

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return upper

    def fal_url(self, name: str) -> str:
        """A fal base URL as a string without a trailing slash."""
        return str(getattr(self, name)).rstrip("/")

    def database_location(self) -> str | Path:
        """Where storage lives: the PostgreSQL URL when DATABASE_URL is set, else the file."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return self.database_path


def database_url_problem(url: str) -> str | None:
    """What is wrong with a DATABASE_URL, in words that never repeat it; None when usable."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        return "must start with postgresql:// (leave it empty to use the SQLite file)"
    try:
        port = parts.port
    except ValueError:
        return "has a port that is not a number from 1 to 65535"
    if port == 0:
        return "has a port that is not a number from 1 to 65535"
    if not parts.hostname and "host=" not in parts.query:
        return "must name the server: postgresql://user:password@host:port/database"
    if not parts.path.strip("/"):
        return "must name the database: postgresql://user:password@host:port/database"
    return None


def describe_settings_error(error: ValidationError) -> list[str]:
    """One line per problem: which setting, what is wrong, where to get it. Never the value."""
    lines: list[str] = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "settings"
        env_name = field.upper()
        info = Settings.model_fields.get(field)
        hint = info.description if info and info.description else ""
        if item["type"] == "missing":
            problem = "is missing"
        else:
            problem = "is malformed: " + str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{env_name} {problem}. {hint}".strip())
    return lines


def settings_help() -> str:
    rows = []
    for name, info in Settings.model_fields.items():
        required = info.is_required()
        default = "required" if required else f"default: {info.default!r}"
        if not required and info.default is None:
            default = "optional"
        rows.append(f"  {name.upper():<24} {info.description} ({default})")
    return "Settings (environment variables or a .env file in the working directory):\n" + (
        "\n".join(rows)
    )


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
