"""Acting as a member: slash commands, autocomplete, context menus, buttons and selects, modals,
reactions and messages, each checked the way Discord's client would before it sends anything."""

# The test API takes `timeout=` arguments by design: each wait of a test names its own bound.
# ruff: noqa: ASYNC109

from __future__ import annotations

from typing import Any

from .commands import CHAT_INPUT, MESSAGE_COMMAND, USER_COMMAND, Resolved, encode_options
from .errors import EmulatorError
from .interactions import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    Interaction,
)
from .messages import Attachment, Message, emoji_key, walk_components
from .permissions import ALL_PERMISSIONS, Permission, base_permissions
from .snowflakes import Snowflakes
from .state import EmulatorState
from .world import Channel, Guild, Member, Role, User, World

Actor = Member | User | str
SELECTS = (3, 5, 6, 7, 8)


class MemberActions:
    """Mixed into DiscordEmulator; every action goes through the same state as the bot's REST."""

    state: EmulatorState
    world: World
    ids: Snowflakes
    base_url: str
    strict_commands: bool
    _consumed: set[int]

    def post_user_message(
        self,
        member: Actor,
        channel: Channel,
        content: str = "",
        attachments: list[Attachment] | None = None,
        *,
        reply_to: Message | None = None,
    ) -> Message:
        user, mem = self._actor(member, channel)
        needed = [Permission.VIEW_CHANNEL, Permission.SEND_MESSAGES]
        if attachments:
            needed.append(Permission.ATTACH_FILES)
        self._require_member(channel, mem, needed, "post here")
        message = self.state.user_message(user, channel, content, list(attachments or []), reply_to)
        self._consumed.add(message.id)  # the test wrote it; wait_for_message looks past it
        return message

    def _actor(self, who: Actor, channel: Channel) -> tuple[User, Member | None]:
        if isinstance(who, str):
            user = next((u for u in self.world.users.values() if u.username == who), None)
            if user is None:
                raise EmulatorError(f"no user {who!r}")
        else:
            user = who.user if isinstance(who, Member) else who
        guild = self.world.guild_of(channel)
        if guild is None:
            if user.id not in channel.recipient_ids:
                raise EmulatorError(f"{user.username} is not in that DM")
            return user, None
        member = guild.members.get(user.id)
        if member is None:
            raise EmulatorError(f"{user.username} is not a member of {guild.name}")
        return user, member

    def _require_member(
        self, channel: Channel, member: Member | None, needed: list[Permission], doing: str
    ) -> None:
        perms = self.state.member_permissions(channel, member)
        missing = [p.name for p in needed if not perms & p]
        if missing:
            who = member.name if member else "the user"
            raise EmulatorError(f"{who} cannot {doing} in #{channel.name}: missing {missing}")

    def _command(
        self, name: str, kind: int, member: Member | None, channel: Channel
    ) -> dict[str, Any] | None:
        guild = self.world.guild_of(channel)
        command = self.state.commands.find(guild.id if guild else None, name, kind)
        if command is None:
            if self.strict_commands:
                raise EmulatorError(
                    f"no command {name!r} (type {kind}) is registered here; registered: "
                    f"{self.state.commands.names()}. Sync the command tree in setup_hook."
                )
            return None
        self._check_visible(command, member, channel, guild)
        return command

    def _check_visible(
        self, command: dict[str, Any], member: Member | None, channel: Channel, guild: Guild | None
    ) -> None:
        """Discord's client offers a command only where its settings allow it."""
        name = command["name"]
        contexts = command.get("contexts")
        context = 0 if guild is not None else 1
        if contexts is not None and context not in contexts:
            raise EmulatorError(f"/{name} is not offered in this context ({context})")
        if guild is None or member is None:
            if command.get("dm_permission") is False:
                raise EmulatorError(f"/{name} is not offered in DMs")
            return
        self._require_member(channel, member, [Permission.USE_APPLICATION_COMMANDS], "use commands")
        if command.get("nsfw") and not channel.nsfw:
            raise EmulatorError(f"/{name} is age-restricted; #{channel.name} is not")
        overrides = guild.command_overrides.get(name, {})
        base = base_permissions(guild, member)
        if member.id in overrides:
            allowed = overrides[member.id]
        elif any(r in overrides for r in (*member.role_ids, guild.id)):
            allowed = any(overrides.get(r, False) for r in (*member.role_ids, guild.id))
        else:
            required = command.get("default_member_permissions")
            if required is None:
                allowed = True
            elif int(required) == 0:
                allowed = base == ALL_PERMISSIONS
            else:
                allowed = base & int(required) == int(required)
        if not allowed:
            raise EmulatorError(f"{member.name} is not offered /{name} (permissions)")

    async def slash(
        self,
        member: Actor,
        channel: Channel,
        command: str,
        options: dict[str, Any] | None = None,
        *,
        attachments: dict[str, Attachment] | None = None,
    ) -> Interaction:
        """Run `/command` (subcommands as "group sub") as `member`; returns the handle."""
        name, *path = command.split()
        user, mem = self._actor(member, channel)
        schema = self._command(name, CHAT_INPUT, mem, channel)
        values = dict(options or {}) | dict(attachments or {})
        encoded, resolved = encode_options(
            schema, path, values, ChannelResolver(self, channel, mem)
        )
        data = self._command_data(schema, name, CHAT_INPUT, encoded, resolved)
        return self.state.responses.new_interaction(
            type=APPLICATION_COMMAND,
            name=command,
            user=user,
            member=mem,
            channel=channel,
            data=data,
        )

    async def autocomplete(
        self,
        member: Actor,
        channel: Channel,
        command: str,
        options: dict[str, Any] | None = None,
        *,
        focused: str,
        timeout: float = 10.0,
    ) -> list[dict[str, Any]]:
        """Type into option `focused`; returns the choices the bot offered."""
        name, *path = command.split()
        user, mem = self._actor(member, channel)
        schema = self._command(name, CHAT_INPUT, mem, channel)
        values = {k: v for k, v in (options or {}).items() if not isinstance(v, Attachment)}
        encoded, resolved = encode_options(
            schema, path, values, ChannelResolver(self, channel, mem), focused=focused
        )
        data = self._command_data(schema, name, CHAT_INPUT, encoded, resolved)
        interaction = self.state.responses.new_interaction(
            type=AUTOCOMPLETE, name=command, user=user, member=mem, channel=channel, data=data
        )
        await interaction.response(timeout=timeout)
        return list(interaction.choices or [])

    async def context_menu(
        self, member: Actor, channel: Channel, name: str, target: Message | Member | User
    ) -> Interaction:
        """Use a message (or user) context-menu command on `target`."""
        user, mem = self._actor(member, channel)
        resolved = Resolved()
        if isinstance(target, Message):
            if target.deleted or target.ephemeral or target.channel_id != channel.id:
                raise EmulatorError("the member cannot see that message in this channel")
            kind = MESSAGE_COMMAND
            resolved.messages[str(target.id)] = self.state.message_payload(target)
            target_id = str(target.id)
        else:
            kind = USER_COMMAND
            target_id = ChannelResolver(self, channel, mem).resolve_user(target, resolved)
        schema = self._command(name, kind, mem, channel)
        data = self._command_data(schema, name, kind, [], resolved)
        data["target_id"] = target_id
        return self.state.responses.new_interaction(
            type=APPLICATION_COMMAND, name=name, user=user, member=mem, channel=channel, data=data
        )

    def _command_data(
        self,
        schema: dict[str, Any] | None,
        name: str,
        kind: int,
        options: list[dict[str, Any]],
        resolved: Resolved,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": schema["id"] if schema else str(self.ids.next()),
            "name": name,
            "type": kind,
        }
        if options:
            data["options"] = options
        if resolved.payload():
            data["resolved"] = resolved.payload()
        if schema is not None and "guild_id" in schema:
            data["guild_id"] = schema["guild_id"]
        return data

    async def click(
        self,
        member: Actor,
        message: Message,
        custom_id: str,
        *,
        values: list[Any] | None = None,
    ) -> Interaction:
        """Press a button (or pick `values` in a select) on any message, persistent views too."""
        channel = self.world.channel(message.channel_id)
        if channel is None or message.deleted:
            raise EmulatorError("that message is gone")
        user, mem = self._actor(member, channel)
        if message.ephemeral and message.visible_to != user.id:
            raise EmulatorError(f"only the invoking member sees ephemeral message {message.id}")
        self._require_member(channel, mem, [Permission.VIEW_CHANNEL], "see messages")
        component = next(
            (c for c in walk_components(message.components) if c.get("custom_id") == custom_id),
            None,
        )
        if component is None:
            raise EmulatorError(
                f"message {message.id} has no component {custom_id!r}: {message.custom_ids()}"
            )
        if component.get("disabled"):
            raise EmulatorError(f"component {custom_id!r} is disabled")
        kind = int(component["type"])
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": kind}
        if kind in SELECTS:
            picked = list(values or [])
            low, high = component.get("min_values", 1), component.get("max_values", 1)
            if not low <= len(picked) <= high:
                raise EmulatorError(f"select {custom_id!r} takes {low}-{high} values")
            if kind == 3:
                offered = [o["value"] for o in component.get("options", [])]
                if any(v not in offered for v in picked):
                    raise EmulatorError(f"select {custom_id!r} offers {offered}")
                data["values"] = picked
            else:
                resolved = Resolved()
                resolver = ChannelResolver(self, channel, mem)
                data["values"] = [_resolve_any(resolver, v, resolved) for v in picked]
                data["resolved"] = resolved.payload()
        elif values is not None:
            raise EmulatorError("a button takes no values")
        return self.state.responses.new_interaction(
            type=MESSAGE_COMPONENT,
            name=custom_id,
            user=user,
            member=mem,
            channel=channel,
            data=data,
            message=message,
        )

    async def submit_modal(
        self,
        member: Actor,
        modal_interaction: Interaction,
        values: dict[str, Any],
        *,
        timeout: float = 10.0,
    ) -> Interaction:
        """Fill and submit the modal the bot answered `modal_interaction` with (callback type 9)."""
        if modal_interaction.modal is None:
            await modal_interaction.response(timeout=timeout)
        modal = modal_interaction.modal
        if modal is None:
            raise EmulatorError(f"{modal_interaction!r} was not answered with a modal")
        channel = modal_interaction.channel
        user, mem = self._actor(member, channel)
        if user.id != modal_interaction.user.id:
            raise EmulatorError("only the member who opened the modal can submit it")
        used: set[str] = set()
        components: list[dict[str, Any]] = []
        for top in modal["components"]:
            if top["type"] == 1:
                row = [_modal_field(c, values, used) for c in top.get("components", [])]
                components.append({"type": 1, "components": row})
            elif top["type"] == 18 and isinstance(top.get("component"), dict):
                components.append(
                    {"type": 18, "component": _modal_field(top["component"], values, used)}
                )
        unknown = set(values) - used
        if unknown:
            raise EmulatorError(f"the modal has no fields {sorted(unknown)}")
        data = {"custom_id": modal["custom_id"], "components": components}
        return self.state.responses.new_interaction(
            type=MODAL_SUBMIT,
            name=modal["custom_id"],
            user=user,
            member=mem,
            channel=channel,
            data=data,
            message=modal_interaction.message,
        )

    async def react(self, member: Actor, message: Message, emoji: str) -> None:
        channel = self.world.channel(message.channel_id)
        if channel is None or message.deleted or message.ephemeral:
            raise EmulatorError("members cannot react to that message")
        user, mem = self._actor(member, channel)
        key = emoji_key(emoji)
        needed = [Permission.VIEW_CHANNEL, Permission.READ_MESSAGE_HISTORY]
        if key not in message.reactions:
            needed.append(Permission.ADD_REACTIONS)
        self._require_member(channel, mem, needed, "react")
        self.state.add_reaction(message, user, key)

    async def unreact(self, member: Actor, message: Message, emoji: str) -> None:
        channel = self.world.channel(message.channel_id)
        if channel is None:
            raise EmulatorError("that message is gone")
        user, _ = self._actor(member, channel)
        self.state.remove_reaction(message, user.id, emoji_key(emoji))


def _modal_field(
    component: dict[str, Any], values: dict[str, Any], used: set[str]
) -> dict[str, Any]:
    custom_id = component.get("custom_id")
    kind = component["type"]
    if custom_id is None:
        return {"type": kind}
    if custom_id in values:
        used.add(custom_id)
    if kind == 4:
        value = str(values.get(custom_id, component.get("value") or ""))
        if component.get("required", True) and not value:
            raise EmulatorError(f"modal field {custom_id!r} is required")
        low, high = component.get("min_length") or 0, component.get("max_length") or 4000
        if value and not low <= len(value) <= high:
            raise EmulatorError(f"modal field {custom_id!r} takes {low}-{high} characters")
        return {"type": 4, "custom_id": custom_id, "value": value}
    picked = values.get(custom_id, [])
    return {"type": kind, "custom_id": custom_id, "values": list(picked)}


def _resolve_any(resolver: ChannelResolver, value: Any, resolved: Resolved) -> str:
    if isinstance(value, Role):
        return resolver.resolve_role(value, resolved)
    if isinstance(value, Channel):
        return resolver.resolve_channel(value, resolved)[0]
    return resolver.resolve_user(value, resolved)


class ChannelResolver:
    """`resolved` entries as the invoking member sees them (channel permissions per member)."""

    def __init__(self, emu: MemberActions, channel: Channel, member: Member | None) -> None:
        self._emu = emu
        self._channel = channel
        self._member = member

    def resolve_user(self, value: Any, resolved: Resolved) -> str:
        if isinstance(value, Member):
            user = value.user
        elif isinstance(value, User):
            user = value
        elif isinstance(value, int) and value in self._emu.world.users:
            user = self._emu.world.users[value]
        else:
            raise EmulatorError(f"a user option needs a Member or User, not {value!r}")
        key = str(user.id)
        resolved.users[key] = user.payload()
        guild = self._emu.world.guild_of(self._channel)
        if guild is not None and user.id in guild.members:
            member = guild.members[user.id]
            perms = self._emu.state.member_permissions(self._channel, member)
            resolved.members[key] = member.payload(with_user=False, permissions=perms)
        return key

    def resolve_role(self, value: Any, resolved: Resolved) -> str:
        if not isinstance(value, Role):
            raise EmulatorError(f"a role option needs a Role, not {value!r}")
        resolved.roles[str(value.id)] = value.payload()
        return str(value.id)

    def resolve_channel(self, value: Any, resolved: Resolved) -> tuple[str, int]:
        if not isinstance(value, Channel):
            raise EmulatorError(f"a channel option needs a Channel, not {value!r}")
        perms = self._emu.state.member_permissions(value, self._member)
        resolved.channels[str(value.id)] = {
            "id": str(value.id),
            "name": value.name,
            "type": value.type,
            "permissions": str(perms),
            "guild_id": None if value.guild_id is None else str(value.guild_id),
            "nsfw": value.nsfw,
            "parent_id": None,
            "flags": 0,
        }
        return str(value.id), value.type

    def resolve_attachment(self, value: Any, resolved: Resolved) -> str:
        if not isinstance(value, Attachment):
            raise EmulatorError(f"an attachment option needs emu.attachment(...), not {value!r}")
        # Slash-command uploads are ephemeral attachments until a message uses them.
        self._emu.state.host(value, self._channel.id, ephemeral=True)
        resolved.attachments[str(value.id)] = value.payload(self._emu.state.attachment_url(value))
        return str(value.id)
