"""Entry point: `python bot.py` runs the bot, `python bot.py check` is the operator's
pre-flight, `python bot.py migrate-to-postgres --from PATH --to URL` copies a SQLite database
into an empty PostgreSQL one, `python bot.py --help` lists every setting.

The Bot loads one extension per feature (`cogs/`); its parts are built by `composition.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import aiohttp
import discord
import httpx
from discord.ext import commands
from pydantic import ValidationError

from client.errors import FalAccountLocked, FalAuthError, FalError
from client.fal import FalClient
from composition import Parts, build_parts
from jobs.metrics import Metrics
from jobs.publisher import Publisher
from jobs.records import JobStorage
from jobs.service import JobService
from settings import (
    DISCORD_PORTAL,
    FAL_KEYS_PAGE,
    Settings,
    describe_settings_error,
    load_settings,
    settings_help,
)
from storage import StorageError
from storage.postgres import redact
from storage.transfer import copy_sqlite_to_postgres

__all__ = [
    "FluxBot",
    "Settings",
    "create_bot",
    "describe_settings_error",
    "load_settings",
    "main",
    "settings_help",
]

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
    "cogs.studio",
    "cogs.health",
    "cogs.help",
)

SYNC_HASH_KEY = "command_tree_hash"


class FluxBot(commands.Bot):
    """The bot: loads one extension per feature and holds the parts built for it."""

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
        self._fal_options = fal_options or {}
        self.metrics = Metrics()
        self._parts: Parts | None = None  # built in setup_hook: they need the running loop

    @property
    def parts(self) -> Parts:
        if self._parts is None:
            raise RuntimeError("the bot's parts are built in setup_hook (or prepare())")
        return self._parts

    @property
    def storage(self) -> JobStorage:
        return self.parts.storage

    @property
    def fal(self) -> FalClient:
        return self.parts.fal

    @property
    def jobs(self) -> JobService:
        return self.parts.jobs

    @property
    def publisher(self) -> Publisher:
        return self.parts.publisher

    async def setup_hook(self) -> None:
        await self.prepare()
        await self.sync_commands()
        recovered = await self.jobs.recover()
        if recovered:
            log.info("continuing %d unfinished jobs", recovered)

    async def prepare(self) -> None:
        """Build the parts and load extensions; no network, so tests can call it offline."""
        self._parts = await build_parts(
            self, self.settings, self.metrics, fal_options=self._fal_options
        )
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
        if self._parts is not None:
            await self._parts.close()
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
        choices=("run", "check", "migrate-to-postgres"),
        default="run",
        help="run the bot (default), check the settings, database and credentials, or copy "
        "a SQLite database into an empty PostgreSQL one",
    )
    parser.add_argument(
        "--offline", action="store_true", help="with check: skip the calls to Discord and fal"
    )
    parser.add_argument(
        "--from", dest="source", type=Path, help="with migrate-to-postgres: the SQLite file"
    )
    parser.add_argument(
        "--to",
        dest="target",
        help="with migrate-to-postgres: postgresql://user:password@host:port/db (empty)",
    )
    args = parser.parse_args(argv)
    if args.command == "migrate-to-postgres" and (args.source is None or not args.target):
        parser.error("migrate-to-postgres needs --from PATH and --to URL")
    return args


def _causes(error: BaseException) -> list[BaseException]:
    """The error and what caused it, outermost first (aiohttp and httpx wrap OS errors)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        os_error = getattr(current, "os_error", None)  # aiohttp keeps it here
        current = current.__cause__ or current.__context__ or os_error
    return chain


def network_problem(error: BaseException) -> str:
    """What went wrong reaching a service, in a few words an operator can act on."""
    chain = _causes(error)
    if any(isinstance(e, socket.gaierror) for e in chain):
        return "the host name could not be resolved (DNS)"
    if any(isinstance(e, ssl.SSLError | ssl.CertificateError) for e in chain):
        return "the TLS handshake failed"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "the connection was refused"
    if any(isinstance(e, TimeoutError | httpx.TimeoutException) for e in chain):
        return "the connection timed out"
    return f"the connection failed ({type(chain[-1]).__name__})"


def unreachable_line(service: str, url: str, setting: str, error: BaseException) -> str:
    """One line: which service, where, why, and which setting points there."""
    return (
        f"{service} could not be reached at {url}: {network_problem(error)}. "
        f"Check the machine's network, or {setting} if you set it."
    )


def _discord_url(settings: Settings) -> str:
    return str(settings.discord_api_url or discord.http.Route.BASE).rstrip("/")


_NETWORK_ERRORS = (aiohttp.ClientConnectionError, OSError, asyncio.TimeoutError)


async def _check(settings: Settings, offline: bool) -> int:
    """Operator pre-flight: every line says what was checked and how it went."""
    failures = 0
    print("settings: OK")
    bot = create_bot(settings)
    async with bot:
        try:
            await bot.prepare()
        except StorageError as error:
            print(f"database: FAILED, {error}")
            return 1
        print(f"database: OK, {bot.storage.describe()}")
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
        except _NETWORK_ERRORS as error:
            where = _discord_url(settings)
            print("discord token: " + unreachable_line("Discord", where, "DISCORD_API_URL", error))
            failures += 1
        except discord.HTTPException as error:
            print(f"discord token: not checked, Discord answered HTTP {error.status}")
            failures += 1
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
            if error.__cause__ is not None and isinstance(error.__cause__, httpx.TransportError):
                where = settings.fal_url("fal_rest_url")
                print("fal key: " + unreachable_line("fal", where, "FAL_REST_URL", error))
            else:
                print(f"fal key: not checked, {error}")
            failures += 1
    return 1 if failures else 0


async def _migrate(source: Path, target: str) -> int:
    """Copy the SQLite file into the empty PostgreSQL database; one line per step."""
    try:
        await copy_sqlite_to_postgres(source, target, say=print)
    except StorageError as error:
        print(f"migration failed: {error}", file=sys.stderr)
        return 1
    print(f"done: {redact(target)} now holds everything; set DATABASE_URL to use it")
    return 0


async def _run(settings: Settings) -> None:
    bot = create_bot(settings)
    async with bot:  # closes the bot (and what setup_hook opened) on any exit
        await bot.start(settings.discord_token.get_secret_value())


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "migrate-to-postgres":
        logging.basicConfig(level=logging.WARNING)
        return asyncio.run(_migrate(args.source, args.target))
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
    except StorageError as error:
        # One line: which database, what went wrong (never the password). Exit 1.
        log.error("database: %s", error)
        return 1
    except _NETWORK_ERRORS as error:
        where = _discord_url(settings)
        print(unreachable_line("Discord", where, "DISCORD_API_URL", error), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
