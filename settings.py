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
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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
    lease_seconds: Annotated[
        float,
        Field(
            ge=0.5,
            le=3_600,
            description="How long a job stays with a process that stopped renewing its lease "
            "(it died) before another process adopts it.",
        ),
    ] = 30.0
    fal_max_concurrent: Annotated[
        int,
        Field(
            ge=0,
            le=10_000,
            description="At most this many jobs at fal at once, across every process; the rest "
            "wait in the bot's own queue, members taking turns (0: no cap, all go to fal).",
        ),
    ] = 10
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
    fal_webhook_url: Annotated[
        AnyHttpUrl | None,
        Field(
            description="Optional public https address at which fal reaches this bot's "
            "/fal/webhook route (through a reverse proxy or tunnel): fal then tells the bot "
            "when an edit ends, instead of the bot holding a status stream per edit.",
        ),
    ] = None
    webhook_host: Annotated[
        str, Field(description="Address the fal webhook listener (WEBHOOK_PORT) listens on.")
    ] = "0.0.0.0"
    webhook_port: Annotated[
        int | None,
        Field(
            ge=0,
            le=65535,
            description="Port of the fal webhook listener (path /fal/webhook); empty: served on "
            "METRICS_PORT instead.",
        ),
    ] = None
    fal_webhook_grace_seconds: Annotated[
        float,
        Field(
            ge=0.1,
            le=3_600,
            description="With FAL_WEBHOOK_URL: how long an edit waits for fal's webhook before "
            "asking fal once for its status (a late or lost webhook), and again as often.",
        ),
    ] = 60.0
    discord_api_url: Annotated[
        AnyHttpUrl | None,
        Field(description="Override of Discord's REST base (tests and proxies only)."),
    ] = None
    discord_gateway_url: Annotated[
        str | None,
        Field(description="Override of Discord's gateway URL (tests and proxies only)."),
    ] = None
    shard_count: Annotated[
        int | None,
        Field(
            ge=1,
            description="Optional: how many shards the bot runs in all (empty: as many as "
            "Discord recommends, all in this process).",
        ),
    ] = None
    shard_ids: Annotated[
        tuple[int, ...] | None,
        NoDecode,
        Field(
            description="Optional: the shards this process runs, e.g. 0-3 or 0,2 (needs "
            "SHARD_COUNT; empty: all of them). Processes that split the shards share one "
            "PostgreSQL database (DATABASE_URL).",
        ),
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

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _shard_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_shard_ids(value) if value.strip() else None
        return value

    @model_validator(mode="after")
    def _shards_fit(self) -> Settings:
        problem = shard_problem(self.shard_count, self.shard_ids, self.database_url is not None)
        if problem:
            raise ValueError(problem)
        return self

    @field_validator("fal_webhook_url")
    @classmethod
    def _webhook_url_shape(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        if value is None:
            return None
        problem = webhook_url_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _webhook_listener(self) -> Settings:
        problem = webhook_listener_problem(
            self.fal_webhook_url is not None, self.webhook_port, self.metrics_port
        )
        if problem:
            raise ValueError(problem)
        return self

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

    def lease_instance(self) -> str:
        """What names this process across restarts (its shards), so that, restarted, it takes
        back at once the jobs it held; other processes wait for those leases to expire."""
        if self.shard_ids is None or self.shard_count is None:
            return "all"
        return f"shards-{','.join(str(shard) for shard in self.shard_ids)}-of-{self.shard_count}"

    def database_location(self) -> str | Path:
        """Where storage lives: the PostgreSQL URL when DATABASE_URL is set, else the file."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return self.database_path


def parse_shard_ids(text: str) -> tuple[int, ...]:
    """`0-3` or `0,2` or `0-1,4` → the shard ids, ascending; ValueError says what is wrong."""
    ids: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.strip().isdigit() or (dash and not last.strip().isdigit()):
            raise ValueError("must list shard numbers like 0-3 or 0,2")
        low, high = int(first), int(last) if dash else int(first)
        if high < low:
            raise ValueError(f"has the range {low}-{high} backwards")
        ids.extend(range(low, high + 1))
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"names shard {repeated[0]} twice")
    return tuple(sorted(ids))


def shard_problem(
    count: int | None, ids: tuple[int, ...] | None, shared_database: bool
) -> str | None:
    """Why this shard layout cannot start, in one line; None when it can."""
    if ids is None:
        return None
    if count is None:
        return "SHARD_IDS needs SHARD_COUNT: how many shards the bot runs in all."
    outside = [i for i in ids if i >= count]
    if outside:
        return (
            f"SHARD_IDS names shard {outside[0]}, outside SHARD_COUNT={count} "
            f"(shards are numbered 0 to {count - 1})."
        )
    if len(ids) < count and not shared_database:
        return (
            f"SHARD_IDS runs {len(ids)} of the {count} shards here, so other processes run the "
            "rest, and they must share one PostgreSQL database: set DATABASE_URL (a SQLite "
            "file belongs to one process), or leave SHARD_IDS empty to run every shard here."
        )
    return None


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def webhook_url_problem(url: AnyHttpUrl) -> str | None:
    """What is wrong with FAL_WEBHOOK_URL, in one line; None when usable. fal only calls https
    addresses; plain http is accepted for this machine alone (the fal emulator's tests)."""
    if url.scheme != "https" and (url.host or "") not in LOOPBACK_HOSTS:
        return (
            "must be an https:// address that fal can reach (put a reverse proxy with TLS or a "
            "tunnel in front of the webhook port; see the README)"
        )
    if url.query or url.fragment:
        return "must not carry a query or a fragment"
    return None


def webhook_listener_problem(
    wanted: bool, webhook_port: int | None, metrics_port: int | None
) -> str | None:
    """Why the webhook listener cannot start, in one line; None when it can (or is not
    wanted)."""
    if not wanted:
        return None
    if webhook_port is None and metrics_port is None:
        return (
            "FAL_WEBHOOK_URL is set but nothing listens for fal's webhooks: set WEBHOOK_PORT "
            "(a port of its own) or METRICS_PORT (then served there at /fal/webhook)."
        )
    if webhook_port is not None and webhook_port != 0 and webhook_port == metrics_port:
        return (
            f"WEBHOOK_PORT and METRICS_PORT are both {webhook_port}: leave WEBHOOK_PORT empty "
            "to serve the webhook on the metrics port, or give it a port of its own."
        )
    return None


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
        if not item["loc"]:  # a rule across settings: its message names them
            lines.append(str(item["msg"]).removeprefix("Value error, "))
            continue
        field = str(item["loc"][0])
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
