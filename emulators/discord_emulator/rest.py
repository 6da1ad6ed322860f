"""REST under /api/v10 and the attachment CDN, in Discord's shapes.

Every answer is `Content-Type: application/json` exactly (discord.py compares with ==), errors
are `{"code", "message"}` JSON, and unknown routes answer 404 (never 5xx, which discord.py retries
for seconds) and are recorded so a test names the missing route.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from . import errors as E
from .errors import DiscordHTTPError, field_error, forbidden, invalid_form, not_found
from .messages import StoredFile, emoji_key
from .payloads import ApplicationCommand, CreateDM, check_command_counts, parse
from .permissions import Permission
from .ratelimits import Verdict
from .world import Channel, Guild

if TYPE_CHECKING:
    from .emulator import DiscordEmulator

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(eq=False)
class RecordedRequest:
    """One REST call as the emulator saw it. The token is never kept, only whether it matched."""

    method: str
    path: str
    query: dict[str, str]
    authorized: bool
    json: Any = None
    files: list[StoredFile] = field(default_factory=list)
    status: int = 0
    code: int | None = None

    def __repr__(self) -> str:
        suffix = f" code={self.code}" if self.code is not None else ""
        return f"<{self.method} {redact(self.path)} → {self.status}{suffix}>"


RECORD = web.RequestKey("record", RecordedRequest)

_TOKEN_SEGMENT = re.compile(r"(/(?:interactions/\d+|webhooks/\d+)/)[^/]+")


def redact(path: str) -> str:
    """Interaction tokens are credentials: keep them out of reprs and logs."""
    return _TOKEN_SEGMENT.sub(r"\1{token}", path)


def json_response(data: Any, status: int = 200) -> web.Response:
    # Exactly `application/json`: discord.py treats `...; charset=utf-8` as text.
    return web.Response(
        status=status, body=json.dumps(data).encode(), headers={"Content-Type": "application/json"}
    )


def no_content() -> web.Response:
    return web.Response(status=204)


def snowflake(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not raw.isdigit():
        raise invalid_form(
            field_error([name], "NUMBER_TYPE_COERCE", f"Value {raw!r} is not snowflake.")
        )
    return int(raw)


async def read_payload(request: web.Request) -> tuple[Any, list[StoredFile]]:
    """JSON body, or multipart with `payload_json` and `files[N]` (as discord.py sends them)."""
    if request.content_type == "multipart/form-data":
        payload: Any = {}
        indexed: list[tuple[int, StoredFile]] = []
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                continue  # nested multipart: discord.py never sends one
            name = part.name or ""
            if name == "payload_json":
                payload = _loads(await part.text())
            elif name.startswith("files[") and name.endswith("]"):
                index = int(name[6:-1]) if name[6:-1].isdigit() else len(indexed)
                data = bytes(await part.read(decode=False))
                content_type = part.headers.get("Content-Type", "application/octet-stream")
                filename = part.filename or f"file{index}"
                indexed.append((index, StoredFile(filename, data, content_type)))
        return payload, [f for _, f in sorted(indexed, key=lambda item: item[0])]
    text = await request.text()
    return (_loads(text) if text else {}), []


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise DiscordHTTPError(400, 50109, "The request body contains invalid JSON.") from None


class RestApi:
    def __init__(self, emulator: DiscordEmulator) -> None:
        self.emu = emulator
        self.state = emulator.state
        self.world = emulator.world
        self.requests: list[RecordedRequest] = []
        self.unknown_routes: list[str] = []
        self.internal_errors: list[str] = []
        self.latency = 0.0  # seconds added to every REST answer

    # ---------------------------------------------------------------- plumbing

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        path = request.path[len(API_PREFIX) :]
        expected = f"Bot {self.emu.token}"
        authorized = secrets.compare_digest(request.headers.get("Authorization", ""), expected)
        record = RecordedRequest(request.method, path, dict(request.query), authorized)
        request[RECORD] = record
        self.requests.append(record)
        if self.latency:
            await asyncio.sleep(self.latency)  # the latency knob; the only sleep in REST
        fault = self.emu.faults.take(request.method, path)
        limited = self._rate_limit(request)
        response: web.StreamResponse
        if fault is not None:
            response = fault.response()
        elif limited is not None and limited.retry_after is not None:
            response = json_response(
                {
                    "message": "You are being rate limited.",
                    "retry_after": limited.retry_after,
                    "global": False,
                    "code": 0,
                },
                429,
            )
        else:
            try:
                token_route = path.startswith(("/interactions/", "/webhooks/"))
                if not token_route and not authorized:
                    raise DiscordHTTPError(401, 0, "401: Unauthorized")
                response = await handler(request)
            except DiscordHTTPError as error:
                record.code = error.code
                response = json_response(error.body(), error.status)
                response.headers.update(error.headers)
            except web.HTTPException:
                raise
            except Exception as error:  # an emulator bug must not look like a Discord 5xx
                log.exception("emulator failed on %s %s", request.method, redact(path))
                self.internal_errors.append(f"{request.method} {redact(path)}: {error!r}")
                record.code = 0
                response = json_response({"message": f"emulator error: {error!r}", "code": 0}, 400)
        if limited is not None and fault is None:
            response.headers.update(limited.headers)
        record.status = response.status
        self.state.record("request", record)
        return response

    def _rate_limit(self, request: web.Request) -> Verdict | None:
        """Count the request on its route's bucket (unknown routes have none)."""
        resource = request.match_info.route.resource
        if resource is None or request.match_info.route.handler == self.unknown:
            return None
        template = resource.canonical.removeprefix(API_PREFIX)
        return self.emu.rate_limits.take(request.method, template, request.match_info)

    async def unknown(self, request: web.Request) -> web.StreamResponse:
        route = f"{request.method} {redact(request.path.removeprefix(API_PREFIX))}"
        self.unknown_routes.append(route)
        self.state.record("unknown_route", route)
        log.warning("unknown route %s", route)
        raise DiscordHTTPError(404, 0, "404: Not Found")

    def routes(self) -> list[web.RouteDef]:
        p = API_PREFIX
        return [
            web.get(p + "/users/@me", self.get_me),
            web.post(p + "/users/@me/channels", self.create_dm),
            web.get(p + "/users/{user_id}", self.get_user),
            web.get(p + "/oauth2/applications/@me", self.application_info),
            web.get(p + "/applications/@me", self.application_info),
            web.get(p + "/gateway", self.gateway),
            web.get(p + "/gateway/bot", self.gateway_bot),
            web.get(p + "/applications/{app}/commands", self.list_commands),
            web.put(p + "/applications/{app}/commands", self.overwrite_commands),
            web.post(p + "/applications/{app}/commands", self.upsert_command),
            web.get(p + "/applications/{app}/commands/{command}", self.get_command),
            web.patch(p + "/applications/{app}/commands/{command}", self.edit_command),
            web.delete(p + "/applications/{app}/commands/{command}", self.delete_command),
            web.get(p + "/applications/{app}/guilds/{guild}/commands", self.list_commands),
            web.put(p + "/applications/{app}/guilds/{guild}/commands", self.overwrite_commands),
            web.post(p + "/applications/{app}/guilds/{guild}/commands", self.upsert_command),
            web.get(p + "/applications/{app}/guilds/{guild}/commands/{command}", self.get_command),
            web.patch(
                p + "/applications/{app}/guilds/{guild}/commands/{command}", self.edit_command
            ),
            web.delete(
                p + "/applications/{app}/guilds/{guild}/commands/{command}", self.delete_command
            ),
            web.post(p + "/interactions/{interaction}/{token}/callback", self.callback),
            web.post(p + "/webhooks/{app}/{token}", self.followup),
            web.get(p + "/webhooks/{app}/{token}/messages/{message}", self.get_webhook_message),
            web.patch(p + "/webhooks/{app}/{token}/messages/{message}", self.edit_webhook_message),
            web.delete(
                p + "/webhooks/{app}/{token}/messages/{message}", self.delete_webhook_message
            ),
            web.get(p + "/channels/{channel}", self.get_channel),
            web.get(p + "/channels/{channel}/messages", self.history),
            web.post(p + "/channels/{channel}/messages", self.send_message),
            web.get(p + "/channels/{channel}/messages/{message}", self.get_message),
            web.patch(p + "/channels/{channel}/messages/{message}", self.edit_message),
            web.delete(p + "/channels/{channel}/messages/{message}", self.delete_message),
            web.put(
                p + "/channels/{channel}/messages/{message}/reactions/{emoji}/@me",
                self.add_reaction,
            ),
            web.delete(
                p + "/channels/{channel}/messages/{message}/reactions/{emoji}/@me",
                self.remove_own_reaction,
            ),
            web.delete(
                p + "/channels/{channel}/messages/{message}/reactions/{emoji}/{user}",
                self.remove_reaction,
            ),
            web.get(
                p + "/channels/{channel}/messages/{message}/reactions/{emoji}", self.reaction_users
            ),
            web.delete(
                p + "/channels/{channel}/messages/{message}/reactions/{emoji}", self.clear_emoji
            ),
            web.delete(
                p + "/channels/{channel}/messages/{message}/reactions", self.clear_reactions
            ),
            web.post(p + "/channels/{channel}/typing", self.typing),
            web.get(p + "/guilds/{guild}", self.get_guild),
            web.get(p + "/guilds/{guild}/channels", self.guild_channels),
            web.get(p + "/guilds/{guild}/roles", self.guild_roles),
            web.get(p + "/guilds/{guild}/members/{user}", self.guild_member),
            web.get("/attachments/{channel}/{attachment}/{filename}", self.cdn),
            web.get("/ephemeral-attachments/{channel}/{attachment}/{filename}", self.cdn),
            web.get("/media/attachments/{channel}/{attachment}/{filename}", self.cdn),
            web.get("/media/ephemeral-attachments/{channel}/{attachment}/{filename}", self.cdn),
            web.route("*", p + "/{tail:.*}", self.unknown),
        ]

    async def _body(self, request: web.Request) -> tuple[Any, list[StoredFile]]:
        payload, files = await read_payload(request)
        record = request[RECORD]
        record.json, record.files = payload, files
        return payload, files

    def _channel(self, request: web.Request) -> Channel:
        channel = self.world.channel(snowflake(request, "channel"))
        if channel is None:
            raise not_found(E.UNKNOWN_CHANNEL, "Channel")
        return channel

    def _guild(self, request: web.Request) -> Guild:
        guild = self.world.guilds.get(snowflake(request, "guild"))
        if guild is None:
            raise not_found(E.UNKNOWN_GUILD, "Guild")
        return guild

    def _message_payload(self, message: Any) -> dict[str, Any]:
        return self.state.message_payload(message, intents=self.emu.bot_intents)

    # ---------------------------------------------------------------- users and application

    async def get_me(self, request: web.Request) -> web.StreamResponse:
        me = self.world.bot_user.payload() | {"verified": True, "mfa_enabled": False, "email": None}
        return json_response(me)

    async def get_user(self, request: web.Request) -> web.StreamResponse:
        user = self.world.users.get(snowflake(request, "user_id"))
        if user is None:
            raise not_found(E.UNKNOWN_USER, "User")
        return json_response(user.payload())

    async def create_dm(self, request: web.Request) -> web.StreamResponse:
        payload, _ = await self._body(request)
        body = parse(CreateDM, payload)
        user = self.world.users.get(int(body.recipient_id))
        if user is None:
            raise not_found(E.UNKNOWN_USER, "User")
        return json_response(self.world.dm_channel(user).payload(self.world.users))

    async def application_info(self, request: web.Request) -> web.StreamResponse:
        bot = self.world.bot_user
        return json_response(
            {
                "id": str(self.world.application_id),
                "name": bot.username,
                "icon": None,
                "description": "Discord emulator application",
                "summary": "",
                "type": None,
                "hook": True,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "owner": self.world.owner.payload(),
                "flags": 0,
                "team": None,
                "interactions_endpoint_url": None,
                "rpc_origins": [],
                "tags": [],
                "bot": bot.payload(),
            }
        )

    async def gateway(self, request: web.Request) -> web.StreamResponse:
        return json_response({"url": self.emu.gateway_url})

    async def gateway_bot(self, request: web.Request) -> web.StreamResponse:
        hub = self.emu.hub
        return json_response(
            {
                "url": self.emu.gateway_url,
                "shards": hub.shards_needed(),
                "session_start_limit": hub.session_start_limit(),
            }
        )

    # ---------------------------------------------------------------- application commands

    def _app_and_guild(self, request: web.Request) -> int | None:
        if snowflake(request, "app") != self.world.application_id:
            raise DiscordHTTPError(403, E.MISSING_ACCESS, "Missing Access")
        if "guild" in request.match_info:
            return self._guild(request).id
        return None

    async def list_commands(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.state.commands.list(self._app_and_guild(request)))

    async def overwrite_commands(self, request: web.Request) -> web.StreamResponse:
        guild_id = self._app_and_guild(request)
        payload, _ = await self._body(request)
        if not isinstance(payload, list):
            raise invalid_form(field_error([], "LIST_TYPE_CONVERT", "Must be a list."))
        parsed = [
            parse(ApplicationCommand, raw, prefix=(index,)) for index, raw in enumerate(payload)
        ]
        check_command_counts(parsed)
        stored = self.state.commands.overwrite(guild_id, payload)
        self.state.record("commands_synced", (guild_id, stored))
        return json_response(stored)

    async def upsert_command(self, request: web.Request) -> web.StreamResponse:
        guild_id = self._app_and_guild(request)
        payload, _ = await self._body(request)
        parse(ApplicationCommand, payload)
        stored, created = self.state.commands.upsert(guild_id, payload)
        self.state.record("commands_synced", (guild_id, [stored]))
        return json_response(stored, 201 if created else 200)

    def _command(self, request: web.Request) -> tuple[int | None, dict[str, Any]]:
        guild_id = self._app_and_guild(request)
        command = self.state.commands.by_id(guild_id, snowflake(request, "command"))
        if command is None:
            raise not_found(E.UNKNOWN_APPLICATION_COMMAND, "application command")
        return guild_id, command

    async def get_command(self, request: web.Request) -> web.StreamResponse:
        return json_response(self._command(request)[1])

    async def edit_command(self, request: web.Request) -> web.StreamResponse:
        guild_id, command = self._command(request)
        payload, _ = await self._body(request)
        merged = {k: v for k, v in command.items() if k not in ("id", "application_id", "version")}
        merged.update(payload)
        parse(ApplicationCommand, merged)
        stored, _ = self.state.commands.upsert(guild_id, merged)
        return json_response(stored)

    async def delete_command(self, request: web.Request) -> web.StreamResponse:
        guild_id, command = self._command(request)
        self.state.commands.delete(guild_id, int(command["id"]))
        return no_content()

    # ---------------------------------------------------------------- interactions

    async def callback(self, request: web.Request) -> web.StreamResponse:
        payload, files = await self._body(request)
        token = request.match_info["token"]
        result = self.state.responses.interaction_callback(
            snowflake(request, "interaction"), token, payload, files
        )
        if request.query.get("with_response", "").lower() in ("1", "true"):
            return json_response(result)
        return no_content()

    async def followup(self, request: web.Request) -> web.StreamResponse:
        interaction = self.state.responses.webhook_interaction(
            snowflake(request, "app"), request.match_info["token"]
        )
        payload, files = await self._body(request)
        message = self.state.responses.followup(interaction, payload, files)
        # Interaction follow-ups always wait (Discord's docs); discord.py asks for it anyway.
        return json_response(self._message_payload(message))

    async def get_webhook_message(self, request: web.Request) -> web.StreamResponse:
        interaction = self.state.responses.webhook_interaction(
            snowflake(request, "app"), request.match_info["token"]
        )
        message = self.state.responses.webhook_message(interaction, request.match_info["message"])
        return json_response(self._message_payload(message))

    async def edit_webhook_message(self, request: web.Request) -> web.StreamResponse:
        interaction = self.state.responses.webhook_interaction(
            snowflake(request, "app"), request.match_info["token"]
        )
        message = self.state.responses.webhook_message(interaction, request.match_info["message"])
        payload, files = await self._body(request)
        self.state.edit_message(message, payload, files)
        return json_response(self._message_payload(message))

    async def delete_webhook_message(self, request: web.Request) -> web.StreamResponse:
        interaction = self.state.responses.webhook_interaction(
            snowflake(request, "app"), request.match_info["token"]
        )
        message = self.state.responses.webhook_message(interaction, request.match_info["message"])
        self.state.delete_message(message)
        return no_content()

    # ---------------------------------------------------------------- channels and messages

    async def get_channel(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        if channel.guild_id is not None:
            self.state.require_bot(channel)
        return json_response(channel.payload(self.world.users))

    async def history(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        self.state.require_bot(channel, Permission.READ_MESSAGE_HISTORY)

        def opt(name: str) -> int | None:
            value = request.query.get(name)
            return int(value) if value and value.isdigit() else None

        limit = max(1, min(100, opt("limit") or 50))
        messages = self.state.history(
            channel, limit=limit, before=opt("before"), after=opt("after"), around=opt("around")
        )
        return json_response([self._message_payload(m) for m in messages])

    async def send_message(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        payload, files = await self._body(request)
        message = self.state.bot_send(channel, payload, files)
        return json_response(self._message_payload(message))

    async def get_message(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        self.state.require_bot(channel, Permission.READ_MESSAGE_HISTORY)
        message = self.state.visible_message(channel, snowflake(request, "message"))
        return json_response(self._message_payload(message))

    async def edit_message(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        self.state.require_bot(channel)
        message = self.state.visible_message(channel, snowflake(request, "message"))
        payload, files = await self._body(request)
        if message.author_id != self.world.bot_user.id:
            raise DiscordHTTPError(
                403, E.CANNOT_EDIT_OTHERS_MESSAGE, "Cannot edit a message authored by another user"
            )
        if files:
            self.state.require_bot(channel, Permission.ATTACH_FILES)
        self.state.edit_message(message, payload, files)
        return json_response(self._message_payload(message))

    async def delete_message(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        self.state.require_bot(channel)
        message = self.state.visible_message(channel, snowflake(request, "message"))
        if message.author_id != self.world.bot_user.id:
            self.state.require_bot(channel, Permission.MANAGE_MESSAGES)
        self.state.delete_message(message)
        return no_content()

    async def typing(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        if channel.guild_id is not None:
            self.state.require_bot(channel, Permission.SEND_MESSAGES)
        self.state.record("typing", channel)
        return no_content()

    # ---------------------------------------------------------------- reactions

    def _reaction_target(self, request: web.Request) -> tuple[Channel, Any, str]:
        channel = self._channel(request)
        self.state.require_bot(channel, Permission.READ_MESSAGE_HISTORY)
        message = self.state.visible_message(channel, snowflake(request, "message"))
        key = emoji_key(request.match_info["emoji"])
        if not key:
            raise not_found(E.UNKNOWN_EMOJI, "Emoji")
        return channel, message, key

    async def add_reaction(self, request: web.Request) -> web.StreamResponse:
        channel, message, key = self._reaction_target(request)
        if key not in message.reactions:
            # Adding a new emoji needs Add Reactions; joining an existing one does not.
            self.state.require_bot(channel, Permission.ADD_REACTIONS)
        self.state.add_reaction(message, self.world.bot_user, key)
        return no_content()

    async def remove_own_reaction(self, request: web.Request) -> web.StreamResponse:
        _, message, key = self._reaction_target(request)
        self.state.remove_reaction(message, self.world.bot_user.id, key)
        return no_content()

    async def remove_reaction(self, request: web.Request) -> web.StreamResponse:
        channel, message, key = self._reaction_target(request)
        user_id = snowflake(request, "user")
        if user_id != self.world.bot_user.id:
            self.state.require_bot(channel, Permission.MANAGE_MESSAGES)
        self.state.remove_reaction(message, user_id, key)
        return no_content()

    async def reaction_users(self, request: web.Request) -> web.StreamResponse:
        _, message, key = self._reaction_target(request)
        users = sorted(message.reactions.get(key, set()))
        return json_response([self.world.users[u].payload() for u in users])

    async def clear_emoji(self, request: web.Request) -> web.StreamResponse:
        channel, message, key = self._reaction_target(request)
        self.state.require_bot(channel, Permission.MANAGE_MESSAGES)
        for user_id in list(message.reactions.get(key, set())):
            self.state.remove_reaction(message, user_id, key)
        return no_content()

    async def clear_reactions(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        self.state.require_bot(channel, Permission.MANAGE_MESSAGES)
        message = self.state.visible_message(channel, snowflake(request, "message"))
        for key, users in list(message.reactions.items()):
            for user_id in list(users):
                self.state.remove_reaction(message, user_id, key)
        return no_content()

    # ---------------------------------------------------------------- guilds

    async def get_guild(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(request)
        data = guild.payload([], self.world.bot_member(guild).joined_at)
        for key in ("channels", "members", "threads", "voice_states", "presences"):
            data.pop(key, None)
        return json_response(data)

    async def guild_channels(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(request)
        return json_response([c.payload() for c in guild.channels.values()])

    async def guild_roles(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(request)
        return json_response([r.payload() for r in guild.roles.values()])

    async def guild_member(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(request)
        member = guild.members.get(snowflake(request, "user"))
        if member is None:
            raise not_found(E.UNKNOWN_MEMBER, "Member")
        return json_response(member.payload())

    # ---------------------------------------------------------------- CDN

    async def cdn(self, request: web.Request) -> web.StreamResponse:
        raw_id = request.match_info["attachment"]
        attachment = self.state.servable(
            int(raw_id) if raw_id.isdigit() else 0, request.match_info["filename"], request.query
        )
        if attachment is None:
            # What Discord's CDN answers for an expired or unknown signed URL.
            return web.Response(status=404, text="This content is no longer available.")
        self.state.record("cdn_get", attachment)  # which files the bot actually downloaded
        return web.Response(body=attachment.data, headers={"Content-Type": attachment.content_type})


__all__ = ["API_PREFIX", "RecordedRequest", "RestApi", "forbidden"]
