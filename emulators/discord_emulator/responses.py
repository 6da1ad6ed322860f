"""Interaction responses as Discord rules them: the 3 s acknowledgement, one acknowledgement only,
callback types per interaction type, `@original`, follow-ups and the 15-minute token."""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING, Any

from . import errors as E
from .errors import DiscordHTTPError, field_error, invalid_form, not_found
from .interactions import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    AUTOCOMPLETE_RESULT,
    CHANNEL_MESSAGE,
    DEFERRED_CHANNEL_MESSAGE,
    DEFERRED_UPDATE_MESSAGE,
    MESSAGE_COMPONENT,
    MODAL,
    MODAL_SUBMIT,
    UPDATE_MESSAGE,
    Callback,
    Interaction,
)
from .messages import CHAT_INPUT_COMMAND, CONTEXT_MENU_COMMAND, DEFAULT, Message, StoredFile
from .payloads import (
    EPHEMERAL,
    LOADING,
    AutocompleteData,
    CallbackBody,
    DeferData,
    MessageBody,
    ModalData,
    parse,
)
from .world import Channel, Member, User

if TYPE_CHECKING:
    from .state import EmulatorState

# The only flag bits a sender may set on a message; Discord ignores the rest.
SETTABLE_FLAGS = (1 << 2) | (1 << 6) | (1 << 12) | (1 << 15)

# Which callback types each interaction type accepts.
_CALLBACKS_FOR: dict[int, set[int]] = {
    CHANNEL_MESSAGE: {APPLICATION_COMMAND, MESSAGE_COMPONENT, MODAL_SUBMIT},
    DEFERRED_CHANNEL_MESSAGE: {APPLICATION_COMMAND, MESSAGE_COMPONENT, MODAL_SUBMIT},
    DEFERRED_UPDATE_MESSAGE: {MESSAGE_COMPONENT, MODAL_SUBMIT},
    UPDATE_MESSAGE: {MESSAGE_COMPONENT, MODAL_SUBMIT},
    AUTOCOMPLETE_RESULT: {AUTOCOMPLETE},
    MODAL: {APPLICATION_COMMAND, MESSAGE_COMPONENT},
}


class InteractionResponses:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def new_interaction(
        self,
        *,
        type: int,
        name: str,
        user: User,
        member: Member | None,
        channel: Channel,
        data: dict[str, Any],
        message: Message | None = None,
    ) -> Interaction:
        guild = self.state.world.guild_of(channel)
        interaction_id = self.state.ids.next()
        token = "emu-" + secrets.token_urlsafe(32)
        member_perms = self.state.member_permissions(channel, member)
        channel_payload = channel.payload(self.state.world.users)
        channel_payload["permissions"] = str(member_perms)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.state.world.application_id),
            "type": type,
            "data": data,
            "token": token,
            "version": 1,
            "channel_id": str(channel.id),
            "channel": channel_payload,
            "app_permissions": str(self.state.bot_permissions(channel)),
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": self.state.upload_limit(channel),
        }
        if guild is not None and member is not None:
            payload["guild_id"] = str(guild.id)
            payload["guild"] = {"id": str(guild.id), "locale": guild.locale, "features": []}
            payload["guild_locale"] = guild.locale
            payload["member"] = member.payload(permissions=member_perms)
            payload["authorizing_integration_owners"] = {"0": str(guild.id)}
            payload["context"] = 0
        else:
            payload["user"] = user.payload()
            payload["authorizing_integration_owners"] = {"0": "0"}
            payload["context"] = 1
        if message is not None:
            payload["message"] = self.state.message_payload(message)
        interaction = Interaction(
            self.state,
            id=interaction_id,
            token=token,
            type=type,
            name=name,
            user=user,
            member=member,
            channel=channel,
            guild=guild,
            message=message,
            created_at=self.state.clock.monotonic(),
            payload=payload,
        )
        self.state.interactions[interaction_id] = interaction
        self.state.by_token[token] = interaction
        self.state.record("interaction_create", interaction)
        # Wake waiters when the 3 s window closes in real time (clock jumps wake them anyway).
        asyncio.get_running_loop().call_later(
            self.state.ack_deadline + 0.01, self.state.notifier.notify
        )
        # Only the shard that owns the guild hears it (shard 0 outside guilds).
        owner = int(payload["guild_id"]) if "guild_id" in payload else None
        self.state.dispatcher("INTERACTION_CREATE", lambda _intents: payload, None, owner)
        return interaction

    def interaction_callback(
        self, interaction_id: int, token: str, raw: Any, files: list[StoredFile]
    ) -> dict[str, Any]:
        interaction = self.state.interactions.get(interaction_id)
        if interaction is None or interaction.token != token:
            raise not_found(E.UNKNOWN_INTERACTION, "interaction")
        try:
            return self._callback(interaction, raw, files)
        except DiscordHTTPError as error:
            interaction.errors.append(error)
            self.state.notifier.notify()
            raise

    def _callback(self, ix: Interaction, raw: Any, files: list[StoredFile]) -> dict[str, Any]:
        if ix.acknowledged:
            raise DiscordHTTPError(
                400, E.ALREADY_ACKNOWLEDGED, "Interaction has already been acknowledged."
            )
        if not ix.ack_window_open():
            raise not_found(E.UNKNOWN_INTERACTION, "interaction")
        body = parse(CallbackBody, raw)
        kind, data = body.type, body.data or {}
        needs_message = kind in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE)
        if ix.type not in _CALLBACKS_FOR.get(kind, set()) or (needs_message and ix.message is None):
            raise invalid_form(
                field_error(
                    ["type"],
                    "INTERACTION_RESPONSE_TYPE_INVALID",
                    f"Response type {kind} is not valid for interaction type {ix.type}",
                )
            )
        message: Message | None = None
        if kind == CHANNEL_MESSAGE:
            message_body = parse(MessageBody, data, prefix=("data",))
            self.state.check_upload(ix.channel, files)
            flags = (message_body.flags or 0) & SETTABLE_FLAGS
            message = self._interaction_message(ix, message_body, files, flags=flags)
            ix.original_id = message.id
        elif kind == DEFERRED_CHANNEL_MESSAGE:
            defer = parse(DeferData, data, prefix=("data",))
            flags = LOADING | ((defer.flags or 0) & EPHEMERAL)
            message = self._interaction_message(
                ix, MessageBody(), [], flags=flags, allow_empty=True
            )
            ix.original_id = message.id
        elif kind == DEFERRED_UPDATE_MESSAGE:
            message = ix.message
            ix.original_id = message.id if message else None
        elif kind == UPDATE_MESSAGE:
            assert ix.message is not None
            message = self.state.edit_message(ix.message, data, files)
            ix.original_id = message.id
        elif kind == AUTOCOMPLETE_RESULT:
            parse(AutocompleteData, data, prefix=("data",))
            ix.choices = list(data["choices"])
        elif kind == MODAL:
            parse(ModalData, data, prefix=("data",))
            ix.modal = data
        ix.callbacks.append(Callback(kind, data, files, self.state.clock.monotonic(), message))
        self.state.record("interaction_callback", ix)
        interaction: dict[str, Any] = {"id": str(ix.id), "type": ix.type}
        resource: dict[str, Any] = {"type": kind}
        if message is not None and kind != DEFERRED_UPDATE_MESSAGE:
            interaction["response_message_id"] = str(message.id)
            interaction["response_message_loading"] = message.loading
            interaction["response_message_ephemeral"] = message.ephemeral
            resource["message"] = self.state.message_payload(message)
        return {"interaction": interaction, "resource": resource}

    def _interaction_message(
        self,
        ix: Interaction,
        body: MessageBody,
        files: list[StoredFile],
        *,
        flags: int,
        allow_empty: bool = False,
    ) -> Message:
        metadata: dict[str, Any] = {
            "id": str(ix.id),
            "type": ix.type,
            "user": ix.user.payload(),
            "authorizing_integration_owners": ix.payload["authorizing_integration_owners"],
        }
        kind = DEFAULT
        if ix.type == APPLICATION_COMMAND:
            metadata["name"] = ix.name
            command_type = ix.payload["data"].get("type", 1)
            kind = CHAT_INPUT_COMMAND if command_type == 1 else CONTEXT_MENU_COMMAND
        if ix.message is not None:
            metadata["interacted_message_id"] = str(ix.message.id)
        if ix.original_id is not None:
            metadata["original_response_message_id"] = str(ix.original_id)
        return self.state._new_message(
            ix.channel,
            self.state.bot,
            body,
            files,
            flags=flags,
            type=kind,
            allow_empty=allow_empty,
            webhook_id=self.state.world.application_id,
            application_id=self.state.world.application_id,
            interaction_metadata=metadata,
            visible_to=ix.user.id if flags & EPHEMERAL else None,
        )

    def webhook_interaction(self, application_id: int, token: str) -> Interaction:
        """The interaction behind `/webhooks/{app}/{token}`: the token is the credential."""
        interaction = self.state.by_token.get(token)
        if application_id != self.state.world.application_id or interaction is None:
            raise not_found(E.UNKNOWN_WEBHOOK, "Webhook")
        if not interaction.token_alive():
            raise DiscordHTTPError(401, E.INVALID_WEBHOOK_TOKEN, "Invalid Webhook Token")
        return interaction

    def webhook_message(self, interaction: Interaction, message_id: str) -> Message:
        if message_id == "@original":
            target = interaction.original_id
        else:
            target = int(message_id) if message_id.isdigit() else None
            if target not in (interaction.original_id, *interaction.followup_ids):
                target = None
        message = self.state.messages.get(target) if target is not None else None
        if message is None or message.deleted:
            raise not_found(E.UNKNOWN_MESSAGE, "Message")
        return message

    def followup(
        self, interaction: Interaction, raw: dict[str, Any], files: list[StoredFile]
    ) -> Message:
        if not interaction.acknowledged:
            raise not_found(E.UNKNOWN_WEBHOOK, "Webhook")
        body = parse(MessageBody, raw)
        self.state.check_upload(interaction.channel, files)
        original = interaction.original
        first = interaction.callbacks[0]
        if (
            first.type == DEFERRED_CHANNEL_MESSAGE
            and original is not None
            and original.loading
            and not original.deleted
        ):
            # Discord: the first follow-up after a deferred response fills the "thinking"
            # message, and that message keeps the ephemeral flag the defer chose.
            fill = {k: v for k, v in raw.items() if k != "flags"}
            message = self.state.edit_message(original, fill, files)
        else:
            flags = (body.flags or 0) & SETTABLE_FLAGS
            message = self._interaction_message(interaction, body, files, flags=flags)
        interaction.followup_ids.append(message.id)
        self.state.record("followup", message)
        return message
