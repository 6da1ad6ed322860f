"""The emulator's state and Discord's rules: messages, attachments, reactions, interactions.

REST handlers and the test API both go through here, so a rule (permission, upload limit,
3 s acknowledgement, 15 min token, nonce de-duplication) holds whoever triggers it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from . import errors as E
from .clock import Clock
from .commands import CommandRegistry
from .errors import DiscordHTTPError, field_error, forbidden, invalid_form, not_found
from .interactions import Interaction
from .messages import (
    DEFAULT,
    REPLY,
    Attachment,
    Message,
    MessageEdit,
    StoredFile,
    emoji_payload,
    guess_content_type,
    resolve_mentions,
)
from .payloads import (
    EPHEMERAL,
    LOADING,
    MessageBody,
    parse,
)
from .permissions import Permission, channel_permissions
from .responses import SETTABLE_FLAGS, InteractionResponses
from .snowflakes import Snowflakes
from .waiting import Event, Notifier
from .world import DEFAULT_UPLOAD_LIMIT, Channel, Member, User, World

log = logging.getLogger(__name__)

# Gateway intents that gate the events the emulator sends.
GUILD_MESSAGES = 1 << 9
GUILD_MESSAGE_REACTIONS = 1 << 10
DIRECT_MESSAGES = 1 << 12
DIRECT_MESSAGE_REACTIONS = 1 << 13
MESSAGE_CONTENT = 1 << 15

# What a bot may do in its DMs (no overwrites exist there).
DM_PERMISSIONS = int(
    Permission.VIEW_CHANNEL
    | Permission.SEND_MESSAGES
    | Permission.READ_MESSAGE_HISTORY
    | Permission.ATTACH_FILES
    | Permission.EMBED_LINKS
    | Permission.ADD_REACTIONS
    | Permission.USE_EXTERNAL_EMOJIS
    | Permission.USE_APPLICATION_COMMANDS
)

_EDITABLE_FLAGS = (1 << 2) | (1 << 15)


# factory(intents) → payload, so each gateway session sees what its intents allow.
PayloadFactory = Callable[[int], dict[str, Any]]
# (event, factory, intent, guild id: the shard that owns it hears it; None for DMs → shard 0)
Dispatcher = Callable[[str, PayloadFactory, int | None, int | None], None]


class EmulatorState:
    def __init__(self, clock: Clock, ids: Snowflakes, world: World) -> None:
        self.clock = clock
        self.ids = ids
        self.world = world
        self.notifier = Notifier()
        clock.subscribe(self.notifier.notify)
        self.base_url = ""
        self.messages: dict[int, Message] = {}
        self.channel_messages: dict[int, list[Message]] = defaultdict(list)
        self.attachments: dict[int, Attachment] = {}
        self.interactions: dict[int, Interaction] = {}
        self.by_token: dict[str, Interaction] = {}
        self.commands = CommandRegistry(ids, world.application_id)
        self.events: list[Event[Any]] = []
        self._nonces: dict[tuple[int, str], tuple[int, float]] = {}
        self._cdn_key = secrets.token_bytes(16)
        self.dispatcher: Dispatcher = lambda event, factory, intent, guild_id: None
        self.responses = InteractionResponses(self)
        # Knobs (seconds). Tests lower ack_deadline to prove 10062 quickly.
        self.ack_deadline = 3.0
        self.token_lifetime = 15 * 60.0
        self.attachment_ttl = 24 * 3600.0
        self.nonce_window = 5 * 60.0

    # ---------------------------------------------------------------- events

    def record(self, kind: str, data: Any) -> Event[Any]:
        event: Event[Any] = Event(len(self.events), kind, self.clock.monotonic(), data)
        self.events.append(event)
        self.notifier.notify()
        return event

    @property
    def bot(self) -> User:
        return self.world.bot_user

    # ---------------------------------------------------------------- permissions and limits

    def bot_permissions(self, channel: Channel) -> int:
        guild = self.world.guild_of(channel)
        if guild is None:
            return DM_PERMISSIONS
        return channel_permissions(guild, channel, self.world.bot_member(guild))

    def member_permissions(self, channel: Channel, member: Member | None) -> int:
        guild = self.world.guild_of(channel)
        if guild is None or member is None:
            return DM_PERMISSIONS
        return channel_permissions(guild, channel, member)

    def upload_limit(self, channel: Channel) -> int:
        guild = self.world.guild_of(channel)
        return guild.upload_limit if guild is not None else DEFAULT_UPLOAD_LIMIT

    def check_upload(self, channel: Channel, files: list[StoredFile]) -> None:
        limit = self.upload_limit(channel)
        if any(len(f.data) > limit for f in files):
            raise DiscordHTTPError(413, E.REQUEST_TOO_LARGE, "Request entity too large")

    def require_bot(self, channel: Channel, *needed: Permission) -> None:
        perms = self.bot_permissions(channel)
        if not perms & Permission.VIEW_CHANNEL:
            raise forbidden(E.MISSING_ACCESS)
        for permission in needed:
            if not perms & permission:
                raise forbidden()

    # ---------------------------------------------------------------- attachments

    def host(
        self, attachment: Attachment, channel_id: int, *, ephemeral: bool = False
    ) -> Attachment:
        """Give an upload an id and a signed URL under this emulator, as Discord's CDN does."""
        if attachment.id:
            return attachment
        attachment.id = self.ids.next()
        attachment.channel_id = channel_id
        attachment.ephemeral = ephemeral
        self.attachments[attachment.id] = attachment
        return attachment

    def attachment_url(self, attachment: Attachment) -> str:
        """A freshly signed URL: `ex` (hex expiry) and `hm` (signature), like Discord's CDN."""
        now = self.clock.time()
        issued, expires = format(int(now), "x"), format(int(now + self.attachment_ttl), "x")
        signature = self._sign(attachment.id, expires)
        return f"{self.base_url}{attachment.path}?ex={expires}&is={issued}&hm={signature}"

    def _sign(self, attachment_id: int, expires: str) -> str:
        message = f"{attachment_id}:{expires}".encode()
        return hmac.new(self._cdn_key, message, hashlib.sha256).hexdigest()[:32]

    def servable(
        self, attachment_id: int, filename: str, query: Mapping[str, str]
    ) -> Attachment | None:
        """The attachment if this URL still resolves: known, not revoked, signed, not expired."""
        attachment = self.attachments.get(attachment_id)
        if attachment is None or attachment.filename != filename or attachment.revoked:
            return None
        expires = query.get("ex", "")
        if not hmac.compare_digest(query.get("hm", ""), self._sign(attachment_id, expires)):
            return None
        try:
            return attachment if int(expires, 16) >= self.clock.time() else None
        except ValueError:
            return None

    # ---------------------------------------------------------------- wire shapes

    def message_payload(self, message: Message, *, intents: int | None = None) -> dict[str, Any]:
        strip = intents is not None and not self._content_visible(message, intents)
        referenced = None
        if message.reference and message.reference.get("message_id"):
            target = self.messages.get(int(message.reference["message_id"]))
            if target is not None and not target.deleted:
                strip_target = intents is not None and not self._content_visible(target, intents)
                referenced = target.payload(
                    self.attachment_url,
                    self.world.users,
                    bot_id=self.bot.id,
                    strip_content=strip_target,
                )
        data = message.payload(
            self.attachment_url,
            self.world.users,
            bot_id=self.bot.id,
            strip_content=strip,
            referenced=referenced,
        )
        guild = self.world.guilds.get(message.guild_id) if message.guild_id else None
        if guild is not None and message.author_id in guild.members and intents is not None:
            data["member"] = guild.members[message.author_id].payload(with_user=False)
        return data

    def _content_visible(self, message: Message, intents: int) -> bool:
        """Without the Message Content intent a bot sees only own, DM and mentioning messages."""
        return (
            bool(intents & MESSAGE_CONTENT)
            or message.author_id == self.bot.id
            or message.guild_id is None
            or self.bot.id in message.mentions
        )

    def _bot_sees(self, message: Message) -> bool:
        channel = self.world.channel(message.channel_id)
        if channel is None or channel.guild_id is None:
            return True
        return bool(self.bot_permissions(channel) & Permission.VIEW_CHANNEL)

    def _publish(self, event: str, message: Message, kind: str) -> None:
        self.record(kind, message)
        if message.ephemeral or not self._bot_sees(message):
            return  # only the member sees it; Discord tells the bot nothing
        intent = DIRECT_MESSAGES if message.guild_id is None else GUILD_MESSAGES
        if event == "MESSAGE_DELETE":
            data = {"id": str(message.id), "channel_id": str(message.channel_id)}
            if message.guild_id is not None:
                data["guild_id"] = str(message.guild_id)
            self.dispatcher(event, lambda _intents: data, intent, message.guild_id)
        else:
            self.dispatcher(
                event,
                lambda intents: self.message_payload(message, intents=intents),
                intent,
                message.guild_id,
            )

    # ---------------------------------------------------------------- creating messages

    def _attachments(
        self,
        refs: list[Any] | None,
        files: list[StoredFile],
        channel: Channel,
        *,
        keep: list[Attachment],
        ephemeral: bool,
    ) -> list[Attachment]:
        """`attachments` keeps existing ids and names new `files[N]` by index; extra files join."""
        kept_by_id = {str(a.id): a for a in keep}
        result: list[Attachment] = []
        used: set[int] = set()
        if refs is None:
            result.extend(keep)
        else:
            for position, ref in enumerate(refs):
                key = str(ref.id)
                if key in kept_by_id:
                    result.append(kept_by_id[key])
                    continue
                index = int(key) if key.isdigit() else -1
                if not 0 <= index < len(files):
                    raise invalid_form(
                        field_error(
                            ["attachments", position, "id"],
                            "ATTACHMENT_NOT_FOUND",
                            "Unknown attachment",
                        )
                    )
                used.add(index)
                upload = files[index]
                name = ref.filename or upload.filename
                result.append(self._upload(upload, name, ref.description, channel, ephemeral))
        for index, upload in enumerate(files):
            if index not in used:
                result.append(self._upload(upload, upload.filename, None, channel, ephemeral))
        if len(result) > 10:
            raise invalid_form(
                field_error(
                    ["attachments"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length."
                )
            )
        return result

    def _upload(
        self,
        upload: StoredFile,
        filename: str,
        description: str | None,
        channel: Channel,
        ephemeral: bool,
    ) -> Attachment:
        attachment = Attachment(
            filename=filename,
            data=upload.data,
            content_type=guess_content_type(filename, upload.data),
            description=description,
        )
        return self.host(attachment, channel.id, ephemeral=ephemeral)

    def _reference(
        self, channel: Channel, body: MessageBody
    ) -> tuple[dict[str, Any] | None, int | None]:
        ref = body.message_reference
        if ref is None or ref.message_id is None:
            return None, None
        target = self.messages.get(int(ref.message_id))
        if target is None or target.deleted or target.ephemeral or target.channel_id != channel.id:
            if ref.fail_if_not_exists:
                raise invalid_form(
                    field_error(["message_reference"], "REPLIES_UNKNOWN_MESSAGE", "Unknown message")
                )
            return None, None
        reference = {"message_id": str(target.id), "channel_id": str(channel.id), "type": 0}
        if channel.guild_id is not None:
            reference["guild_id"] = str(channel.guild_id)
        return reference, target.author_id

    def _new_message(
        self,
        channel: Channel,
        author: User,
        body: MessageBody,
        files: list[StoredFile],
        *,
        flags: int,
        type: int = DEFAULT,
        allow_empty: bool = False,
        hosted: list[Attachment] | None = None,
        **extra: Any,
    ) -> Message:
        ephemeral = bool(flags & EPHEMERAL)
        reference, replied_user = self._reference(channel, body)
        attachments = self._attachments(
            body.attachments, files, channel, keep=[], ephemeral=ephemeral
        )
        attachments.extend(hosted or [])
        content = body.content or ""
        embeds = [e.model_dump(exclude_none=True) for e in body.embeds or []]
        components = [c.model_dump(exclude_none=True) for c in body.components or []]
        if not allow_empty and not (content or embeds or attachments or components or body.poll):
            raise DiscordHTTPError(400, E.EMPTY_MESSAGE, "Cannot send an empty message")
        mentions, roles, everyone = resolve_mentions(
            content, body.allowed_mentions, replied_user=replied_user
        )
        message = Message(
            id=self.ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author_id=author.id,
            created_at=self.clock.time(),
            content=content,
            embeds=embeds,
            components=components,
            attachments=attachments,
            flags=flags,
            type=REPLY if reference and type == DEFAULT else type,
            nonce=body.nonce,
            allowed_mentions=(
                body.allowed_mentions.model_dump() if body.allowed_mentions is not None else None
            ),
            reference=reference,
            tts=body.tts,
            poll=body.poll,
            mentions=mentions,
            mention_roles=roles,
            mention_everyone=everyone,
            **extra,
        )
        self.messages[message.id] = message
        self.channel_messages[channel.id].append(message)
        if not ephemeral:
            channel.last_message_id = message.id
        self._publish("MESSAGE_CREATE", message, "message_create")
        return message

    def bot_send(self, channel: Channel, raw: dict[str, Any], files: list[StoredFile]) -> Message:
        """POST /channels/{id}/messages: permissions, upload limit, nonce, then the message."""
        body = parse(MessageBody, raw)
        if channel.guild_id is not None:
            needed = [Permission.SEND_MESSAGES]
            if files:
                needed.append(Permission.ATTACH_FILES)
            self.require_bot(channel, *needed)
        else:
            recipient = self.world.users[channel.recipient_ids[0]]
            if not recipient.dms_open:
                raise DiscordHTTPError(403, E.CANNOT_DM_USER, "Cannot send messages to this user")
        self.check_upload(channel, files)
        nonce_key = None
        if body.enforce_nonce and body.nonce is not None:
            nonce_key = (self.bot.id, str(body.nonce))
            hit = self._nonces.get(nonce_key)
            if hit is not None and self.clock.time() - hit[1] <= self.nonce_window:
                # Discord answers with the earlier message and creates nothing.
                log.debug("nonce %s seen before; returning message %s", body.nonce, hit[0])
                return self.messages[hit[0]]
        message = self._new_message(
            channel, self.bot, body, files, flags=(body.flags or 0) & SETTABLE_FLAGS & ~EPHEMERAL
        )
        if nonce_key is not None:
            self._nonces[nonce_key] = (message.id, self.clock.time())
        return message

    def user_message(
        self,
        author: User,
        channel: Channel,
        content: str,
        attachments: list[Attachment],
        reference: Message | None = None,
    ) -> Message:
        raw: dict[str, Any] = {"content": content}
        if reference is not None:
            raw["message_reference"] = {"message_id": str(reference.id)}
        body = parse(MessageBody, raw)
        hosted = [self.host(a, channel.id) for a in attachments]
        return self._new_message(channel, author, body, [], flags=0, hosted=hosted)

    # ---------------------------------------------------------------- editing and deleting

    def edit_message(
        self, message: Message, raw: dict[str, Any], files: list[StoredFile]
    ) -> Message:
        body = parse(MessageBody, raw)
        channel = self.world.channel(message.channel_id)
        assert channel is not None
        self.check_upload(channel, files)
        new_attachments = self._attachments(
            body.attachments if "attachments" in raw else None,
            files,
            channel,
            keep=message.attachments,
            ephemeral=message.ephemeral,
        )
        content = (raw.get("content") or "") if "content" in raw else message.content
        embeds = (
            [e.model_dump(exclude_none=True) for e in body.embeds or []]
            if "embeds" in raw
            else message.embeds
        )
        components = (
            [c.model_dump(exclude_none=True) for c in body.components or []]
            if "components" in raw
            else message.components
        )
        if not (content or embeds or new_attachments or components or message.poll):
            raise DiscordHTTPError(400, E.EMPTY_MESSAGE, "Cannot send an empty message")
        message.content = content
        message.embeds = embeds
        message.components = components
        message.attachments = new_attachments
        if "flags" in raw and raw["flags"] is not None:
            message.flags = (message.flags & ~_EDITABLE_FLAGS) | (
                int(raw["flags"]) & _EDITABLE_FLAGS
            )
        message.flags &= ~LOADING  # an edit is the answer a deferred response was waiting for
        if "allowed_mentions" in raw:
            message.allowed_mentions = raw["allowed_mentions"]
        if "content" in raw:
            message.mentions, message.mention_roles, message.mention_everyone = resolve_mentions(
                content, body.allowed_mentions, replied_user=None
            )
        message.edited_at = self.clock.time()
        message.edits.append(MessageEdit(self.clock.monotonic(), raw, files))
        self._publish("MESSAGE_UPDATE", message, "message_update")
        return message

    def delete_message(self, message: Message) -> None:
        message.deleted = True
        self._publish("MESSAGE_DELETE", message, "message_delete")

    def visible_message(self, channel: Channel, message_id: int) -> Message:
        """A message as channel routes see it: ephemeral ones exist only behind their token."""
        message = self.messages.get(message_id)
        if (
            message is None
            or message.deleted
            or message.ephemeral
            or message.channel_id != channel.id
        ):
            raise not_found(E.UNKNOWN_MESSAGE, "Message")
        return message

    def history(
        self,
        channel: Channel,
        *,
        limit: int,
        before: int | None,
        after: int | None,
        around: int | None,
    ) -> list[Message]:
        visible = [
            m for m in self.channel_messages[channel.id] if not m.deleted and not m.ephemeral
        ]
        if around is not None:
            older = [m for m in visible if m.id <= around][-(limit // 2 + 1) :]
            newer = [m for m in visible if m.id > around][: limit - len(older)]
            picked = older + newer
        elif after is not None:
            picked = [m for m in visible if m.id > after][:limit]
        else:
            picked = [m for m in visible if before is None or m.id < before][-limit:]
        return list(reversed(picked))  # newest first, as Discord answers

    # ---------------------------------------------------------------- reactions

    def add_reaction(self, message: Message, user: User, key: str) -> bool:
        who = message.reactions.get(key)
        if who is not None and user.id in who:
            return False
        if who is None and len([k for k, v in message.reactions.items() if v]) >= 20:
            raise DiscordHTTPError(400, E.MAX_REACTIONS, "Maximum number of reactions reached (20)")
        message.reactions.setdefault(key, set()).add(user.id)
        data: dict[str, Any] = {
            "user_id": str(user.id),
            "channel_id": str(message.channel_id),
            "message_id": str(message.id),
            "emoji": emoji_payload(key),
            "message_author_id": str(message.author_id),
            "burst": False,
            "burst_colors": [],
            "type": 0,
        }
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
            member = self.world.guilds[message.guild_id].members.get(user.id)
            if member is not None:
                data["member"] = member.payload()
        self.record("reaction_add", (message, user.id, key))
        self._dispatch_reaction("MESSAGE_REACTION_ADD", message, data)
        return True

    def remove_reaction(self, message: Message, user_id: int, key: str) -> bool:
        who = message.reactions.get(key)
        if who is None or user_id not in who:
            return False
        who.discard(user_id)
        if not who:
            del message.reactions[key]
        data: dict[str, Any] = {
            "user_id": str(user_id),
            "channel_id": str(message.channel_id),
            "message_id": str(message.id),
            "emoji": emoji_payload(key),
            "burst": False,
            "type": 0,
        }
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
        self.record("reaction_remove", (message, user_id, key))
        self._dispatch_reaction("MESSAGE_REACTION_REMOVE", message, data)
        return True

    def _dispatch_reaction(self, event: str, message: Message, data: dict[str, Any]) -> None:
        if message.ephemeral or not self._bot_sees(message):
            return
        intent = DIRECT_MESSAGE_REACTIONS if message.guild_id is None else GUILD_MESSAGE_REACTIONS
        self.dispatcher(event, lambda _intents: data, intent, message.guild_id)
