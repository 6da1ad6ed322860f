"""Composition root and entry point: settings → storage → fal client → jobs → bot with cogs.

`python bot.py` runs the bot; `python bot.py --help` lists every setting.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import discord
from discord.ext import commands
from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from client.errors import FalAccountLocked, FalAuthError, FalError
from client.fal import FalClient
from cogs.publisher import DiscordPublisher
from cogs.views import DYNAMIC_ITEMS
from jobs.metrics import Metrics
from jobs.service import JobConfig, JobService
from storage import Storage

log = logging.getLogger("bot")

# One extension per feature, loaded in setup_hook (RoboDanny's layout).
EXTENSIONS: tuple[str, ...] = (
    "cogs.errors",
    "cogs.options",
    "cogs.edit",
    "cogs.iterate",
    "cogs.loras",
    "cogs.admin",
    "cogs.members",
    "cogs.health",
)

SYNC_HASH_KEY = "command_tree_hash"
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


class FluxBot(commands.Bot):
    """The bot: owns the process-wide resources and loads one extension per feature."""

    def __init__(
        self, settings: Settings, *, fal_options: dict[str, Any] | None = None, **options: Any
    ) -> None:
        intents = discord.Intents.default()  # no privileged intent is needed
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            **options,
        )
        self.settings = settings
        self._fal_options = fal_options or {}  # tests: faster polling and retries
        self.metrics = Metrics()
        self.publisher = DiscordPublisher(self, self.metrics)
        # Opened in setup_hook (they need the running loop), closed in close().
        self.storage: Storage
        self.fal: FalClient
        self.jobs: JobService

    async def setup_hook(self) -> None:
        await self.prepare()
        await self.sync_commands()
        recovered = await self.jobs.recover()
        if recovered:
            log.info("continuing %d unfinished jobs", recovered)

    async def prepare(self) -> None:
        """Open resources and load extensions; no network, so tests can call it offline."""
        settings = self.settings
        self.storage = await Storage.open(settings.database_path)
        self.fal = FalClient(
            settings.fal_url("fal_queue_url"),
            settings.fal_url("fal_rest_url"),
            settings.fal_url("fal_cdn_url"),
            settings.fal_key.get_secret_value(),
            settings.fal_endpoint,
            **self._fal_options,
        )
        self.jobs = JobService(
            self.storage,
            self.fal,
            self.publisher,
            JobConfig(
                outputs_dir=settings.database_path.parent / "outputs",
                job_timeout=float(settings.job_timeout_seconds),
            ),
            metrics=self.metrics,
        )
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        log.info("loaded %d extensions", len(EXTENSIONS))

    def command_tree_hash(self) -> str:
        payload = [command.to_dict(self.tree) for command in self.tree.get_commands()]
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        # The application id is part of it: a new bot token means a new, empty command list.
        return f"{self.application_id}:{hashlib.sha256(blob).hexdigest()}"

    async def sync_commands(self) -> None:
        """Guild sync is instant and cheap; a global sync only when the commands changed."""
        if self.settings.dev_guild_id is not None:
            guild = discord.Object(self.settings.dev_guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
            log.info("synced commands to server %s", self.settings.dev_guild_id)
            return
        digest = self.command_tree_hash()
        if await self.storage.settings.get_meta(SYNC_HASH_KEY) == digest:
            log.info("commands unchanged; skipping the global sync")
            return
        await self.tree.sync()
        await self.storage.settings.set_meta(SYNC_HASH_KEY, digest)
        log.info("synced commands globally")

    async def close(self) -> None:
        if hasattr(self, "jobs"):
            await self.jobs.close()
        if hasattr(self, "fal"):
            await self.fal.aclose()
        if hasattr(self, "storage"):
            await self.storage.close()
        await super().close()


def apply_discord_overrides(settings: Settings) -> None:
    """Point discord.py at another Discord API (tests and proxies). Process-global by nature."""
    if settings.discord_api_url is not None:
        discord.http.Route.BASE = str(settings.discord_api_url).rstrip("/")
    if settings.discord_gateway_url is not None:
        import yarl

        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def create_bot(settings: Settings, **options: Any) -> FluxBot:
    """Build the bot without touching the network; resources open in setup_hook."""
    return FluxBot(settings, **options)


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bot.py",
        description="A Discord bot that edits images with FLUX.2 edit LoRAs on fal.ai.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=("run", "check"),
        default="run",
        help="run the bot (default), or check the settings, database and credentials",
    )
    parser.add_argument(
        "--offline", action="store_true", help="with check: skip the calls to Discord and fal"
    )
    return parser.parse_args(argv)


async def _check(settings: Settings, offline: bool) -> int:
    """Operator pre-flight: every line says what was checked and how it went."""
    failures = 0
    print("settings: OK")
    bot = create_bot(settings)
    async with bot:
        await bot.prepare()
        print(f"database: OK, {settings.database_path} at schema {bot.storage.schema_version}")
        names = sorted(c.qualified_name for c in bot.tree.walk_commands())
        where = f"server {settings.dev_guild_id}" if settings.dev_guild_id else "every server"
        print(f"commands to sync to {where}: " + ", ".join(names))
        if offline:
            print("discord token: skipped (--offline)")
            print("fal key: skipped (--offline)")
            return 0
        try:
            user = await bot.http.static_login(settings.discord_token.get_secret_value())
            print(f"discord token: OK, logged in as {user['username']} ({user['id']})")
        except discord.LoginFailure:
            print(f"discord token: REJECTED by Discord; reset it at {DISCORD_PORTAL}")
            failures += 1
        except (discord.HTTPException, OSError) as error:
            print(f"discord token: skipped, Discord unreachable ({type(error).__name__})")
        try:
            await bot.fal.check_key()
            print("fal key: OK")
        except FalAuthError:
            print(f"fal key: REJECTED by fal; create one at {FAL_KEYS_PAGE}")
            failures += 1
        except FalAccountLocked as error:
            print(f"fal key: account locked: {error}")
            failures += 1
        except FalError as error:
            print(f"fal key: skipped, fal unreachable ({error})")
    return 1 if failures else 0


async def _run(settings: Settings) -> None:
    bot = create_bot(settings)
    async with bot:  # closes the bot (and what setup_hook opened) on any exit
        await bot.start(settings.discord_token.get_secret_value())


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = load_settings()
    except ValidationError as error:
        for line in describe_settings_error(error):
            print(line, file=sys.stderr)
        print("See .env.example or `python bot.py --help`.", file=sys.stderr)
        return 2
    discord.utils.setup_logging(level=getattr(logging, settings.log_level))
    apply_discord_overrides(settings)
    if args.command == "check":
        return asyncio.run(_check(settings, args.offline))
    try:
        asyncio.run(_run(settings))
    except discord.LoginFailure:
        log.error("Discord rejected DISCORD_TOKEN; reset it at %s", DISCORD_PORTAL)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
