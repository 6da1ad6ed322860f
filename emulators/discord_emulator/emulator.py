"""`DiscordEmulator`: an aiohttp server on 127.0.0.1 that speaks Discord's REST (under /api/v10)
and gateway (/gateway) to the real discord.py client, plus the test API that acts as members."""

# The test API takes `timeout=` arguments by design: each wait of a test names its own bound.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import yarl
from aiohttp import web

from .actions import MemberActions
from .clock import Clock
from .errors import EmulatorError
from .faults import FaultRule, Faults
from .gateway import GatewayHub, Session
from .messages import Attachment, Message, guess_content_type
from .ratelimits import RateLimits
from .rest import RecordedRequest, RestApi
from .snowflakes import Snowflakes, shard_of
from .state import EmulatorState
from .waiting import PENDING, Event
from .world import Channel, Guild, Member, Overwrite, Role, User, World

if TYPE_CHECKING:
    import discord

log = logging.getLogger(__name__)

Actor = Member | User | str
SELECTS = (3, 5, 6, 7, 8)


class DiscordEmulator(MemberActions):
    """Start with `async with DiscordEmulator() as emu:` (or the `discord_emulator` fixture)."""

    def __init__(self, *, bot_name: str = "TestBot") -> None:
        self.clock = Clock()
        self.ids = Snowflakes(self.clock)
        self.world = World(self.ids, bot_name=bot_name)
        self.guild: Guild = self.world.add_guild("Test Server")
        self.state = EmulatorState(self.clock, self.ids, self.world)
        app_part = base64.b64encode(str(self.world.application_id).encode()).decode().rstrip("=")
        self.token = f"{app_part}.emu.{secrets.token_urlsafe(27)}"
        self.faults = Faults()
        self.rate_limits = RateLimits(self.clock)
        self.hub = GatewayHub(self.state, self.token)
        self.rest = RestApi(self)
        # Discord only sends interactions for registered commands; set False to skip the check.
        self.strict_commands = True
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._bot: discord.Client | None = None
        self._bot_task: asyncio.Task[None] | None = None
        self._bot_sessions: list[Session] = []
        self._saved_discord: tuple[str, yarl.URL] | None = None
        self._consumed: set[int] = set()
        self._edit_cursors: dict[int, int] = {}

    # ---------------------------------------------------------------- server lifecycle

    async def __aenter__(self) -> DiscordEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application(middlewares=[self.rest.middleware], client_max_size=256 * 1024 * 1024)
        app.router.add_get("/gateway", self.hub.handle)
        app.router.add_get("/gateway-resume", self.hub.handle)
        app.add_routes(self.rest.routes())
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        self.state.base_url = self.base_url
        self.hub.resume_url = f"ws://{host}:{port}/gateway-resume"
        log.info("Discord emulator listening on %s", self.base_url)

    async def close(self) -> None:
        if self._bot is not None:
            await self.stop_bot()
        await self.hub.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.restore_discord()

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1) + "/gateway"

    @property
    def cdn_url(self) -> str:
        """Where attachment URLs point (Discord's cdn.discordapp.com stand-in)."""
        return self.base_url

    @property
    def application_id(self) -> int:
        return self.world.application_id

    @property
    def bot_user(self) -> User:
        return self.world.bot_user

    @property
    def bot_intents(self) -> int | None:
        """Intents of the newest gateway session (what REST answers strip content by)."""
        return self.hub.sessions[-1].intents if self.hub.sessions else None

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.rest.requests

    @property
    def unknown_routes(self) -> list[str]:
        return self.rest.unknown_routes

    @property
    def internal_errors(self) -> list[str]:
        return self.rest.internal_errors

    @property
    def events(self) -> list[Event[Any]]:
        return self.state.events

    # Knobs that live on the state, exposed here so tests read naturally.
    @property
    def ack_deadline(self) -> float:
        return self.state.ack_deadline

    @ack_deadline.setter
    def ack_deadline(self, seconds: float) -> None:
        self.state.ack_deadline = seconds

    @property
    def token_lifetime(self) -> float:
        return self.state.token_lifetime

    @token_lifetime.setter
    def token_lifetime(self, seconds: float) -> None:
        self.state.token_lifetime = seconds

    @property
    def attachment_ttl(self) -> float:
        return self.state.attachment_ttl

    @attachment_ttl.setter
    def attachment_ttl(self, seconds: float) -> None:
        self.state.attachment_ttl = seconds

    @property
    def nonce_window(self) -> float:
        return self.state.nonce_window

    @nonce_window.setter
    def nonce_window(self, seconds: float) -> None:
        self.state.nonce_window = seconds

    @property
    def recommended_shards(self) -> int:
        """GET /gateway/bot's `shards`; set it, or None to derive it from the guild count."""
        return self.hub.shards_needed()

    @recommended_shards.setter
    def recommended_shards(self, count: int | None) -> None:
        self.hub.recommended_shards = count

    @property
    def max_guilds_per_shard(self) -> int:
        """Discord's cap (2,500): a session that would hold more is closed with 4011."""
        return self.hub.max_guilds_per_shard

    @max_guilds_per_shard.setter
    def max_guilds_per_shard(self, count: int) -> None:
        self.hub.max_guilds_per_shard = count

    @property
    def max_concurrency(self) -> int:
        """`session_start_limit.max_concurrency`: IDENTIFY buckets per 5 s (shard id % this)."""
        return self.hub.max_concurrency

    @max_concurrency.setter
    def max_concurrency(self, count: int) -> None:
        self.hub.max_concurrency = count

    @property
    def latency(self) -> float:
        return self.rest.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.rest.latency = seconds

    def settings_overrides(self) -> dict[str, str]:
        """Keyword arguments for the bot's `Settings(...)` that point it here."""
        return {
            "discord_token": self.token,
            "discord_api_url": self.api_url,
            "discord_gateway_url": self.gateway_url,
        }

    def bot_env(self) -> dict[str, str]:
        """Environment for a bot in another process (same names as the bot's settings)."""
        return {
            "DISCORD_TOKEN": self.token,
            "DISCORD_API_URL": self.api_url,
            "DISCORD_GATEWAY_URL": self.gateway_url,
        }

    # ---------------------------------------------------------------- the bot

    def patch_discord(self) -> None:
        """Point discord.py (process-global class attributes) here; `restore_discord` undoes it."""
        import discord

        if self._saved_discord is None:
            self._saved_discord = (
                discord.http.Route.BASE,
                discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
            )
        discord.http.Route.BASE = self.api_url
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)

    def restore_discord(self) -> None:
        import discord

        if self._saved_discord is not None:
            route_base, gateway = self._saved_discord
            discord.http.Route.BASE = route_base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway
            self._saved_discord = None

    async def start_bot(self, bot: discord.Client, *, timeout: float = 10.0) -> discord.Client:
        """Run `bot.start(token)` as a task and return once the bot is ready.

        Build the bot with `guild_ready_timeout=0.1`: discord.py waits that long after the last
        GUILD_CREATE before it is ready (2 s by default).
        """
        if self._bot is not None:
            raise EmulatorError("a bot is already running here; await stop_bot() first")
        if getattr(bot._connection, "guild_ready_timeout", 0) > 0.5:
            log.warning("pass guild_ready_timeout=0.1 to the bot; readiness now waits seconds")
        self.patch_discord()
        known = len(self.hub.sessions)
        task = asyncio.create_task(bot.start(self.token), name="emulated-bot")
        task.add_done_callback(lambda _: self.state.notifier.notify())
        self._bot, self._bot_task = bot, task

        def identified() -> Any:
            if task.done():
                return task
            return self.hub.sessions[-1] if len(self.hub.sessions) > known else PENDING

        try:
            first = await self.state.notifier.wait_until(
                identified, timeout=timeout, describe=lambda: "the bot never sent IDENTIFY"
            )
            if first is not task:
                self._bot_sessions.append(first)
                ready = asyncio.create_task(bot.wait_until_ready())
                done, _ = await asyncio.wait(
                    {task, ready}, timeout=timeout, return_when="FIRST_COMPLETED"
                )
                if ready not in done:
                    ready.cancel()
                    if task not in done:
                        raise EmulatorError(f"the bot was not ready within {timeout} s")
                # A sharded bot identified once per shard before it was ready.
                self._bot_sessions = self.hub.sessions[known:]
            if task.done():
                error = task.exception()
                raise EmulatorError(f"the bot stopped while starting: {error!r}") from error
        except BaseException:
            self._bot = self._bot_task = None
            if not task.done():
                await bot.close()
                await asyncio.wait({task}, timeout=timeout)
            raise
        return bot

    async def stop_bot(self, *, timeout: float = 10.0) -> None:
        """Close the bot cleanly (Discord then ends its gateway session) and wait until it has."""
        bot, task = self._bot, self._bot_task
        self._bot = self._bot_task = None
        if bot is None or task is None:
            return
        await bot.close()
        await asyncio.wait({task}, timeout=timeout)
        if not task.done():
            task.cancel()
        sessions, self._bot_sessions = self._bot_sessions, []

        def closed() -> Any:
            return None if all(s.connection is None for s in sessions) else PENDING

        await self.state.notifier.wait_until(
            closed, timeout=timeout, describe=lambda: "the bot's gateway connection stayed open"
        )

    async def restart_bot(self, factory: Callable[[], discord.Client]) -> discord.Client:
        """Stop the bot, build a new one, start it: the emulator's state and messages survive."""
        await self.stop_bot()
        return await self.start_bot(factory())

    async def wait_connected(self, timeout: float = 10.0, *, shard: int | None = None) -> Session:
        """A bot (maybe in another process) has identified and holds an open gateway connection
        (for shard id `shard` when given)."""

        def check() -> Any:
            sessions = self.hub.connected_sessions()
            if shard is not None:
                sessions = [s for s in sessions if s.shard_id == shard]
            return sessions[-1] if sessions else PENDING

        return await self.state.notifier.wait_until(
            check, timeout=timeout, describe=lambda: "no bot has an identified gateway connection"
        )

    # ---------------------------------------------------------------- the world

    def member(self, username: str, guild: Guild | None = None) -> Member:
        return (guild or self.guild).member(username)

    def channel(self, name: str, guild: Guild | None = None) -> Channel:
        return (guild or self.guild).channel(name)

    def role(self, name: str, guild: Guild | None = None) -> Role:
        return (guild or self.guild).role(name)

    def add_guild(
        self,
        name: str = "Second Server",
        *,
        members: tuple[str, ...] | None = None,
        system_channel: str | None = None,
        join: bool = True,
        shard: tuple[int, int] | None = None,
    ) -> Guild:
        """A second server laid out like the first, for isolation tests. The bot joins it at once
        (a GUILD_CREATE without `unavailable`, which discord.py reports as `on_guild_join`);
        with `join=False` the test may change the guild first and then call `join_guild`.
        `shard=(shard_id, num_shards)` gives it an id Discord routes to that shard."""
        guild = self.world.add_guild(
            name, members=members, system_channel=system_channel, shard=shard
        )
        if join:
            self.join_guild(guild)
        return guild

    @staticmethod
    def shard_of(guild: Guild, num_shards: int) -> int:
        """The shard that hears `guild` when the bot runs `num_shards` shards."""
        return shard_of(guild.id, num_shards)

    def join_guild(self, guild: Guild) -> None:
        """The bot was just added to `guild`: live sessions get its GUILD_CREATE."""
        self.hub.guild_create(guild)

    def add_member(
        self, guild: Guild, username: str, roles: list[Role] | tuple[Role, ...] = ()
    ) -> Member:
        member = self.world.add_member(guild, self.world.user(username), [r.id for r in roles])
        self._member_event("GUILD_MEMBER_ADD", member)
        return member

    def set_roles(self, member: Member, roles: list[Role] | tuple[Role, ...]) -> None:
        member.role_ids = [r.id for r in roles]
        self._member_event("GUILD_MEMBER_UPDATE", member)

    def _member_event(self, event: str, member: Member) -> None:
        data = member.payload() | {"guild_id": str(member.guild_id)}
        # GUILD_MEMBERS intent
        self.hub.dispatch(event, lambda _intents: data, 1 << 1, member.guild_id)

    def add_role(self, guild: Guild, name: str, permissions: int = 0) -> Role:
        role = self.world.add_role(guild, name, permissions)
        data = {"guild_id": str(guild.id), "role": role.payload()}
        self.hub.dispatch("GUILD_ROLE_CREATE", lambda _intents: data, 1, guild.id)
        return role

    def set_role_permissions(self, role: Role, permissions: int) -> None:
        role.permissions = int(permissions)
        data = {"guild_id": str(role.guild_id), "role": role.payload()}
        self.hub.dispatch("GUILD_ROLE_UPDATE", lambda _intents: data, 1, role.guild_id)

    def add_channel(
        self,
        guild: Guild,
        name: str,
        *,
        nsfw: bool = False,
        overwrites: list[Overwrite] | None = None,
    ) -> Channel:
        channel = self.world.add_channel(guild, name, nsfw=nsfw, overwrites=overwrites)
        self.hub.dispatch("CHANNEL_CREATE", lambda _intents: channel.payload(), 1, guild.id)
        return channel

    def set_overwrite(
        self, channel: Channel, target: Role | Member | User, *, allow: int = 0, deny: int = 0
    ) -> None:
        kind = 0 if isinstance(target, Role) else 1
        channel.overwrites[target.id] = Overwrite(target.id, kind, int(allow), int(deny))
        self.hub.dispatch("CHANNEL_UPDATE", lambda _intents: channel.payload(), 1, channel.guild_id)

    def set_command_permission(
        self, guild: Guild, command: str, target: Role | Member, *, allowed: bool = True
    ) -> None:
        """An integration-settings override: show (or hide) `/command` for a role or member."""
        guild.command_overrides.setdefault(command, {})[target.id] = allowed

    def dm_channel(self, member: Member | User) -> Channel:
        user = member.user if isinstance(member, Member) else member
        return self.world.dm_channel(user)

    def close_dms(self, member: Member | User) -> None:
        (member.user if isinstance(member, Member) else member).dms_open = False

    def commands(self, guild: Guild | None = None) -> list[dict[str, Any]]:
        return self.state.commands.list(guild.id if guild else None)

    # ---------------------------------------------------------------- attachments and messages

    def attachment(
        self,
        data: bytes,
        filename: str,
        *,
        content_type: str | None = None,
        description: str | None = None,
    ) -> Attachment:
        """A file a member uploads (slash option or message); hosted once used."""
        return Attachment(
            filename=filename,
            data=bytes(data),
            content_type=content_type or guess_content_type(filename, data),
            description=description,
        )

    def expire_attachment(self, attachment: Attachment) -> None:
        """Every URL of this attachment stops resolving now (content gone, as after a delete).

        Each payload carries a freshly signed URL valid for `attachment_ttl`; advance the clock
        past it to make URLs handed out earlier stop resolving while fresh ones still work.
        """
        attachment.revoked = True

    def attachment_url(self, attachment: Attachment) -> str:
        """A freshly signed URL, as a payload sent now would carry it."""
        return self.state.attachment_url(attachment)

    def messages_in(self, channel: Channel) -> list[Message]:
        """What everyone sees in the channel, oldest first."""
        return [
            m for m in self.state.channel_messages[channel.id] if not m.deleted and not m.ephemeral
        ]

    def message(self, message_id: int) -> Message:
        found = self.state.messages.get(message_id)
        if found is None:
            raise EmulatorError(f"no message {message_id}")
        return found

    # ---------------------------------------------------------------- waiting

    def mark(self) -> int:
        """The current event position, for `wait_for(..., since=emu.mark())`."""
        return len(self.state.events)

    async def wait_for(
        self,
        kind: str,
        predicate: Callable[[Any], bool] | None = None,
        timeout: float = 10.0,
        *,
        since: int = 0,
    ) -> Any:
        """The data of the first `kind` event at or after `since` that matches `predicate`."""
        cursor = since

        def check() -> Any:
            nonlocal cursor
            events = self.state.events
            while cursor < len(events):
                event = events[cursor]
                cursor += 1
                if event.kind == kind and (predicate is None or predicate(event.data)):
                    return event.data
            return PENDING

        return await self.state.notifier.wait_until(
            check, timeout=timeout, describe=lambda: self._describe(f"no {kind!r} event matched")
        )

    async def wait_for_message(
        self,
        channel: Channel,
        predicate: Callable[[Message], bool] | None = None,
        timeout: float = 10.0,
    ) -> Message:
        """The oldest visible message in `channel` matching `predicate` not yet returned here."""

        def check() -> Any:
            for message in self.state.channel_messages[channel.id]:
                if message.id in self._consumed or message.deleted or message.ephemeral:
                    continue
                if predicate is None or predicate(message):
                    self._consumed.add(message.id)
                    return message
            return PENDING

        return await self.state.notifier.wait_until(
            check,
            timeout=timeout,
            describe=lambda: self._describe(f"no new message in #{channel.name} matched"),
        )

    async def wait_for_edit(
        self,
        message: Message,
        predicate: Callable[[Message], bool] | None = None,
        timeout: float = 10.0,
    ) -> Message:
        """The message after an edit newer than the last one returned here for it."""

        def check() -> Any:
            seen = self._edit_cursors.get(message.id, 0)
            if len(message.edits) > seen and (predicate is None or predicate(message)):
                self._edit_cursors[message.id] = len(message.edits)
                return message
            return PENDING

        return await self.state.notifier.wait_until(
            check,
            timeout=timeout,
            describe=lambda: self._describe(f"message {message.id} was not edited as expected"),
        )

    async def wait_for_delete(self, message: Message, timeout: float = 10.0) -> Message:
        return await self.state.notifier.wait_until(
            lambda: message if message.deleted else PENDING,
            timeout=timeout,
            describe=lambda: f"message {message.id} was not deleted",
        )

    def _describe(self, what: str) -> str:
        recent = ", ".join(repr(r) for r in self.rest.requests[-8:]) or "none"
        text = f"{what}; recent requests: {recent}"
        if self.rest.unknown_routes:
            text += f"; unknown routes: {self.rest.unknown_routes}"
        if self.rest.internal_errors:
            text += f"; emulator errors: {self.rest.internal_errors}"
        return text

    def sent_events(
        self, name: str | None = None, *, shard: int | None = None
    ) -> list[dict[str, Any]]:
        """The `d` of every dispatch sent to the newest gateway session (optionally one event;
        with `shard`, the newest session of that shard id)."""
        sessions = self.hub.sessions
        if shard is not None:
            sessions = [s for s in sessions if s.shard_id == shard]
        if not sessions:
            return []
        frames = [json.loads(text) for _, text in sessions[-1].frames]
        return [f["d"] for f in frames if name is None or f["t"] == name]

    # ---------------------------------------------------------------- faults

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 429,
        retry_after: float = 0.05,
        count: int = 1,
        global_: bool = False,
        *,
        via: bool = True,
        code: int = 0,
    ) -> FaultRule:
        """The next `count` REST calls matching method ("*" = any) and path regex fail."""
        return self.faults.add(
            method,
            path_regex,
            status=status,
            retry_after=retry_after,
            count=count,
            global_=global_,
            via=via,
            code=code,
        )

    async def drop_gateway(self, code: int = 4000) -> int:
        """Close the gateway connections; clients RESUME and get the events they missed."""
        return await self.hub.drop(code)

    async def invalidate_session(self) -> None:
        """Op 9 (not resumable): the client must IDENTIFY again."""
        await self.hub.invalidate()
