"""The gateway: HELLO, heartbeats, IDENTIFY with a token check, READY and GUILD_CREATE, events with
sequence numbers, RESUME that replays what a dropped connection missed, and sharding: a session
identified as `shard: [id, count]` hears only the guilds with `(guild_id >> 22) % count == id`
(direct messages go to shard 0), closes 4010 on an invalid shard and 4011 when one shard would
hold more guilds than `max_guilds_per_shard`."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web
from pydantic import ValidationError

from .payloads import GatewayFrame, Identify, RequestGuildMembers, Resume
from .snowflakes import shard_of
from .world import Guild

if TYPE_CHECKING:
    from .state import EmulatorState, PayloadFactory

log = logging.getLogger(__name__)

DISPATCH = 0
HEARTBEAT = 1
IDENTIFY = 2
PRESENCE_UPDATE = 3
VOICE_STATE_UPDATE = 4
RESUME = 6
RECONNECT = 7
REQUEST_GUILD_MEMBERS = 8
INVALID_SESSION = 9
HELLO = 10
HEARTBEAT_ACK = 11

GUILDS = 1 << 0
GUILD_MEMBERS = 1 << 1
GUILD_PRESENCES = 1 << 8
MESSAGE_CONTENT = 1 << 15
PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT
ALL_INTENTS = (1 << 26) - 1

# Discord's limits for sharding (docs/discord-limits.md, "Sharding").
MAX_GUILDS_PER_SHARD = 2_500  # more on one session: close 4011
RECOMMENDED_GUILDS_PER_SHARD = 1_000  # roughly what GET /gateway/bot's `shards` aims for
SESSION_START_TOTAL = 1_000  # IDENTIFYs per window (RESUMEs do not count)
SESSION_START_WINDOW = 24 * 3600.0


class Connection:
    """One WebSocket; frames go out in order through a queue so no sender ever blocks a handler."""

    def __init__(self, ws: web.WebSocketResponse, path: str) -> None:
        self.ws = ws
        self.path = path
        self.session: Session | None = None
        self.closed_by_server = False
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write(), name="emulator-gateway-writer")

    def send(self, frame: dict[str, Any] | str) -> None:
        self._queue.put_nowait(frame if isinstance(frame, str) else json.dumps(frame))

    async def _write(self) -> None:
        while True:
            text = await self._queue.get()
            if text is None or self.ws.closed:
                return
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return  # the session log keeps the frame; RESUME replays it

    async def close(self, code: int, message: str = "") -> None:
        self.closed_by_server = True
        self._queue.put_nowait(None)
        await self._writer
        if not self.ws.closed:
            await self.ws.close(code=code, message=message.encode())

    async def finish(self) -> None:
        self._queue.put_nowait(None)
        await self._writer


@dataclass(eq=False)
class Session:
    id: str
    intents: int
    shard: list[int] | None
    seq: int = 0
    frames: list[tuple[int, str]] = field(default_factory=list)
    connection: Connection | None = None
    resumable: bool = True
    resumes: int = 0

    @property
    def shard_id(self) -> int:
        return self.shard[0] if self.shard else 0

    @property
    def num_shards(self) -> int:
        """1 for an unsharded session: it hears every guild."""
        return self.shard[1] if self.shard else 1

    def hears(self, guild_id: int | None) -> bool:
        """Discord routes a guild's events to one shard; direct messages to shard 0."""
        if guild_id is None:
            return self.shard_id == 0
        return shard_of(guild_id, self.num_shards) == self.shard_id

    def emit(self, event: str, data: dict[str, Any]) -> None:
        self.seq += 1
        text = json.dumps({"op": DISPATCH, "t": event, "s": self.seq, "d": data})
        self.frames.append((self.seq, text))
        if self.connection is not None:
            self.connection.send(text)


class GatewayHub:
    def __init__(self, state: EmulatorState, token: str) -> None:
        self._state = state
        self._token = token
        self.sessions: list[Session] = []
        self.connections: set[Connection] = set()
        self.heartbeat_interval_ms = 41_250
        self.allowed_intents = ALL_INTENTS  # lower it to make privileged intents fail with 4014
        self.resume_url = ""
        self.identifies = 0
        self.resumes = 0
        # Sharding knobs: GET /gateway/bot's `shards` (None: enough for the guilds, about one
        # shard per 1,000), the most guilds one session may hold (lower it to trip 4011), and
        # the session start limit it reports.
        self.recommended_shards: int | None = None
        self.max_guilds_per_shard = MAX_GUILDS_PER_SHARD
        self.max_concurrency = 1
        self.session_start_total = SESSION_START_TOTAL
        self._session_starts: list[float] = []  # emulator-clock times of counted IDENTIFYs
        state.dispatcher = self.dispatch

    # ---------------------------------------------------------------- events out

    def live_sessions(self) -> list[Session]:
        return [s for s in self.sessions if s.resumable]

    def connected_sessions(self) -> list[Session]:
        return [s for s in self.sessions if s.resumable and s.connection is not None]

    def dispatch(
        self,
        event: str,
        factory: PayloadFactory,
        intent: int | None,
        guild_id: int | None = None,
    ) -> None:
        """Send to every session that may receive it (the intent, and the shard that owns
        `guild_id`; shard 0 when None); a disconnected one keeps it for RESUME."""
        for session in self.live_sessions():
            if intent is not None and not session.intents & intent:
                continue
            if not session.hears(guild_id):
                continue
            session.emit(event, factory(session.intents))

    def guild_create(self, guild: Guild) -> None:
        """The bot joined `guild` (no `unavailable` key: that marks an outage ending instead)."""

        def payload(intents: int) -> dict[str, Any]:
            data = self._guild_payload(guild, intents)
            del data["unavailable"]
            return data

        self.dispatch("GUILD_CREATE", payload, GUILDS, guild.id)

    def _guild_payload(self, guild: Guild, intents: int) -> dict[str, Any]:
        world = self._state.world
        if intents & GUILD_MEMBERS:
            members = list(guild.members.values())
        else:
            # Without the members intent Discord sends only the bot's own member.
            members = [world.bot_member(guild)]
        joined = world.bot_member(guild).joined_at
        return guild.payload(members, joined)

    # ---------------------------------------------------------------- connections

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        connection = Connection(ws, request.path)
        self.connections.add(connection)
        connection.send({"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await self._on_frame(connection, message.data)
                elif message.type == WSMsgType.BINARY:
                    await connection.close(4002, "Decode error")
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            await self._closed(connection)
        return ws

    async def _closed(self, connection: Connection) -> None:
        self.connections.discard(connection)
        await connection.finish()
        session = connection.session
        if session is None or session.connection is not connection:
            return
        session.connection = None
        code = connection.ws.close_code
        if not connection.closed_by_server and code in (1000, 1001):
            session.resumable = False  # a clean close from the client ends the session
        log.debug("gateway session %s disconnected (code %s)", session.id, code)
        self._state.record("disconnect", session)

    async def _on_frame(self, connection: Connection, text: str) -> None:
        try:
            frame = GatewayFrame.model_validate(json.loads(text))
        except (ValueError, ValidationError):
            await connection.close(4002, "Decode error")
            return
        if frame.op == HEARTBEAT:
            connection.send({"op": HEARTBEAT_ACK, "d": None})
            self._state.record("heartbeat", connection.session)
        elif frame.op == IDENTIFY:
            await self._identify(connection, frame.d)
        elif frame.op == RESUME:
            await self._resume(connection, frame.d)
        elif frame.op == REQUEST_GUILD_MEMBERS:
            self._request_members(connection, frame.d)
        elif frame.op in (PRESENCE_UPDATE, VOICE_STATE_UPDATE):
            pass
        else:
            await connection.close(4001, "Unknown opcode")

    async def _identify(self, connection: Connection, data: Any) -> None:
        try:
            identify = Identify.model_validate(data)
        except ValidationError:
            await connection.close(4002, "Decode error")
            return
        if not secrets.compare_digest(identify.token.removeprefix("Bot "), self._token):
            await connection.close(4004, "Authentication failed.")
            return
        if connection.session is not None:
            await connection.close(4005, "Already authenticated.")
            return
        if identify.intents & ~ALL_INTENTS:
            await connection.close(4013, "Invalid intent(s).")
            return
        if identify.intents & PRIVILEGED & ~self.allowed_intents:
            await connection.close(4014, "Disallowed intent(s).")
            return
        shard = valid_shard(identify.shard)
        if identify.shard is not None and shard is None:
            await connection.close(4010, "Invalid shard.")
            return
        world = self._state.world
        probe = Session(id="", intents=identify.intents, shard=shard)
        guilds = [g for g in world.guilds.values() if probe.hears(g.id)]
        if len(guilds) > self.max_guilds_per_shard:
            await connection.close(4011, "Sharding required.")
            return
        if not self._start_session():
            # Discord resets the token of a bot that starts too many sessions and ends them all.
            await self._end_every_session(4004, "Authentication failed.")
            await connection.close(4004, "Authentication failed.")
            return
        # A fresh IDENTIFY for a shard means an earlier, disconnected process on that shard (or
        # on an older shard layout) is gone for good.
        for old in self.sessions:
            if old.connection is None and (
                old.num_shards != probe.num_shards or old.shard_id == probe.shard_id
            ):
                old.resumable = False
        session = Session(id=secrets.token_hex(16), intents=identify.intents, shard=shard)
        session.connection = connection
        connection.session = session
        self.sessions.append(session)
        self.identifies += 1
        user = world.bot_user.payload() | {"verified": True, "mfa_enabled": False, "email": None}
        ready: dict[str, Any] = {
            "v": 10,
            "user": user,
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_url,
            "application": {"id": str(world.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "auth": {},
        }
        if shard is not None:
            ready["shard"] = shard
        session.emit("READY", ready)
        for guild in guilds:
            session.emit("GUILD_CREATE", self._guild_payload(guild, session.intents))
        self._state.record("identify", session)

    # ---------------------------------------------------------------- sharding

    def shards_needed(self) -> int:
        """GET /gateway/bot's `shards`: the knob, else enough for the bot's guilds."""
        if self.recommended_shards is not None:
            return self.recommended_shards
        per_shard = min(RECOMMENDED_GUILDS_PER_SHARD, self.max_guilds_per_shard)
        return max(1, math.ceil(len(self._state.world.guilds) / per_shard))

    def _window_starts(self) -> list[float]:
        now = self._state.clock.monotonic()
        self._session_starts = [t for t in self._session_starts if now - t < SESSION_START_WINDOW]
        return self._session_starts

    def _start_session(self) -> bool:
        """Count an IDENTIFY against the session start limit; False once it is used up."""
        starts = self._window_starts()
        if len(starts) >= self.session_start_total:
            return False
        starts.append(self._state.clock.monotonic())
        return True

    def session_start_limit(self) -> dict[str, int]:
        """The `session_start_limit` object: IDENTIFYs left in the window and when it resets."""
        starts = self._window_starts()
        reset_after = 0.0
        if starts:
            reset_after = SESSION_START_WINDOW - (self._state.clock.monotonic() - starts[0])
        return {
            "total": self.session_start_total,
            "remaining": max(0, self.session_start_total - len(starts)),
            "reset_after": int(reset_after * 1000),
            "max_concurrency": self.max_concurrency,
        }

    async def _end_every_session(self, code: int, reason: str) -> None:
        for session in self.live_sessions():
            session.resumable = False
            if session.connection is not None:
                stale, session.connection = session.connection, None
                await stale.close(code, reason)

    async def _resume(self, connection: Connection, data: Any) -> None:
        try:
            resume = Resume.model_validate(data)
        except ValidationError:
            await connection.close(4002, "Decode error")
            return
        if not secrets.compare_digest(resume.token.removeprefix("Bot "), self._token):
            await connection.close(4004, "Authentication failed.")
            return
        session = next((s for s in self.sessions if s.id == resume.session_id), None)
        if session is None or not session.resumable:
            connection.send({"op": INVALID_SESSION, "d": False})
            return
        if session.connection is not None and session.connection is not connection:
            stale, session.connection = session.connection, None
            await stale.close(4000, "Session resumed elsewhere")
        # Replay what the client has not seen, then RESUMED, all before any newer event.
        session.connection = connection
        connection.session = session
        seen = resume.seq or 0
        for seq, text in session.frames:
            if seq > seen:
                connection.send(text)
        session.emit("RESUMED", {})
        session.resumes += 1
        self.resumes += 1
        self._state.record("resume", session)

    def _request_members(self, connection: Connection, data: Any) -> None:
        session = connection.session
        if session is None:
            return
        try:
            request = RequestGuildMembers.model_validate(data)
        except ValidationError:
            return
        guild_ids = request.guild_id if isinstance(request.guild_id, list) else [request.guild_id]
        for guild_id in guild_ids:
            guild = self._state.world.guilds.get(int(guild_id))
            if guild is None:
                continue
            members = list(guild.members.values())
            if request.query:
                members = [m for m in members if m.name.startswith(request.query)]
            if request.limit:
                members = members[: request.limit]
            chunk: dict[str, Any] = {
                "guild_id": str(guild.id),
                "members": [m.payload() for m in members],
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [],
            }
            if request.nonce is not None:
                chunk["nonce"] = request.nonce
            session.emit("GUILD_MEMBERS_CHUNK", chunk)

    # ---------------------------------------------------------------- faults and shutdown

    async def drop(self, code: int = 4000) -> int:
        """Close every live connection as a network fault would; sessions stay resumable."""
        dropped = 0
        for session in self.connected_sessions():
            connection = session.connection
            assert connection is not None
            session.connection = None
            await connection.close(code, "Connection dropped by the emulator")
            dropped += 1
        return dropped

    async def invalidate(self) -> None:
        """Tell connected clients their session is gone (op 9, not resumable)."""
        for session in self.connected_sessions():
            session.resumable = False
            assert session.connection is not None
            session.connection.send({"op": INVALID_SESSION, "d": False})

    async def shutdown(self) -> None:
        for connection in list(self.connections):
            await connection.close(1001, "Emulator shutting down")


def valid_shard(raw: Any) -> list[int] | None:
    """`[shard_id, num_shards]` with 0 <= shard_id < num_shards, else None (close 4010)."""
    if not isinstance(raw, list) or len(raw) != 2:
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in raw):
        return None
    shard_id, num_shards = raw
    if num_shards < 1 or not 0 <= shard_id < num_shards:
        return None
    return [shard_id, num_shards]
