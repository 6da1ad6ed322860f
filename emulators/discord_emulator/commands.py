"""Synced application commands; a test's option values turned into Discord's option payloads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import EmulatorError
from .messages import Attachment
from .snowflakes import Snowflakes
from .world import Channel, Member, Role, User

SUB_COMMAND = 1
SUB_COMMAND_GROUP = 2
STRING = 3
INTEGER = 4
BOOLEAN = 5
USER = 6
CHANNEL = 7
ROLE = 8
MENTIONABLE = 9
NUMBER = 10
ATTACHMENT = 11

CHAT_INPUT = 1
USER_COMMAND = 2
MESSAGE_COMMAND = 3


class CommandRegistry:
    """What `PUT /applications/{app}/commands` (global or per guild) left registered."""

    def __init__(self, ids: Snowflakes, application_id: int) -> None:
        self._ids = ids
        self._app = application_id
        self.global_commands: dict[tuple[int, str], dict[str, Any]] = {}
        self.guild_commands: dict[int, dict[tuple[int, str], dict[str, Any]]] = {}

    def _table(self, guild_id: int | None) -> dict[tuple[int, str], dict[str, Any]]:
        if guild_id is None:
            return self.global_commands
        return self.guild_commands.setdefault(guild_id, {})

    def _stamp(
        self, raw: dict[str, Any], guild_id: int | None, old: dict[str, Any] | None
    ) -> dict[str, Any]:
        data = dict(raw)
        data.setdefault("type", CHAT_INPUT)
        data.setdefault("description", "")
        data.setdefault("options", [])
        data.setdefault("default_member_permissions", None)
        data.setdefault("nsfw", False)
        data.setdefault("contexts", None)
        data.setdefault("integration_types", [0])
        # Discord keeps a command's id when an overwrite keeps its name and type.
        data["id"] = old["id"] if old else str(self._ids.next())
        data["application_id"] = str(self._app)
        data["version"] = str(self._ids.next())
        if guild_id is not None:
            data["guild_id"] = str(guild_id)
        return data

    def overwrite(
        self, guild_id: int | None, commands: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        table = self._table(guild_id)
        fresh: dict[tuple[int, str], dict[str, Any]] = {}
        for raw in commands:
            key = (int(raw.get("type", CHAT_INPUT)), str(raw["name"]))
            fresh[key] = self._stamp(raw, guild_id, table.get(key))
        table.clear()
        table.update(fresh)
        return list(fresh.values())

    def upsert(self, guild_id: int | None, raw: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        table = self._table(guild_id)
        key = (int(raw.get("type", CHAT_INPUT)), str(raw["name"]))
        old = table.get(key)
        table[key] = self._stamp(raw, guild_id, old)
        return table[key], old is None

    def list(self, guild_id: int | None) -> list[dict[str, Any]]:
        return list(self._table(guild_id).values())

    def by_id(self, guild_id: int | None, command_id: int) -> dict[str, Any] | None:
        for command in self._table(guild_id).values():
            if int(command["id"]) == command_id:
                return command
        return None

    def delete(self, guild_id: int | None, command_id: int) -> bool:
        table = self._table(guild_id)
        for key, command in list(table.items()):
            if int(command["id"]) == command_id:
                del table[key]
                return True
        return False

    def find(self, guild_id: int | None, name: str, kind: int) -> dict[str, Any] | None:
        """The command a member would pick: the guild's own first, then the global one."""
        if guild_id is not None:
            found = self.guild_commands.get(guild_id, {}).get((kind, name))
            if found is not None:
                return found
        return self.global_commands.get((kind, name))

    def names(self) -> list[str]:
        names = [name for _, name in self.global_commands]
        for table in self.guild_commands.values():
            names.extend(name for _, name in table)
        return sorted(set(names))


class Resolver(Protocol):
    """Turns world objects into `resolved` entries, with permissions as seen in the channel."""

    def resolve_user(self, value: Any, resolved: Resolved) -> str: ...

    def resolve_role(self, value: Any, resolved: Resolved) -> str: ...

    def resolve_channel(self, value: Any, resolved: Resolved) -> tuple[str, int]: ...

    def resolve_attachment(self, value: Any, resolved: Resolved) -> str: ...


@dataclass
class Resolved:
    users: dict[str, Any] = field(default_factory=dict)
    members: dict[str, Any] = field(default_factory=dict)
    roles: dict[str, Any] = field(default_factory=dict)
    channels: dict[str, Any] = field(default_factory=dict)
    attachments: dict[str, Any] = field(default_factory=dict)
    messages: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        parts = {
            "users": self.users,
            "members": self.members,
            "roles": self.roles,
            "channels": self.channels,
            "attachments": self.attachments,
            "messages": self.messages,
        }
        return {key: value for key, value in parts.items() if value}


def infer_type(value: Any) -> int:
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return NUMBER
    if isinstance(value, str):
        return STRING
    if isinstance(value, Member | User):
        return USER
    if isinstance(value, Role):
        return ROLE
    if isinstance(value, Channel):
        return CHANNEL
    if isinstance(value, Attachment):
        return ATTACHMENT
    raise EmulatorError(f"cannot tell which option type {value!r} is")


def leaf_schema(command: dict[str, Any] | None, path: list[str]) -> list[dict[str, Any]] | None:
    """The options of the subcommand that `path` (after the command name) points at."""
    if command is None:
        return None
    options: list[dict[str, Any]] = command.get("options") or []
    for part in path:
        match = next(
            (
                o
                for o in options
                if o["name"] == part and o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)
            ),
            None,
        )
        if match is None:
            raise EmulatorError(f"/{command['name']} has no subcommand {part!r}")
        options = match.get("options") or []
    if any(o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in options):
        subs = [o["name"] for o in options]
        raise EmulatorError(f"/{' '.join([command['name'], *path])} needs a subcommand: {subs}")
    return options


def nest(
    command: dict[str, Any] | None, path: list[str], leaf: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Wrap leaf options in their subcommand (and group) as Discord sends them."""
    if not path:
        return leaf
    kinds: list[int] = []
    options: list[dict[str, Any]] = (command or {}).get("options") or []
    for depth, part in enumerate(path):
        match = next((o for o in options if o["name"] == part), None)
        if match is not None:
            kinds.append(match["type"])
            options = match.get("options") or []
        else:
            kinds.append(SUB_COMMAND if depth == len(path) - 1 else SUB_COMMAND_GROUP)
    result = leaf
    for part, kind in zip(reversed(path), reversed(kinds), strict=True):
        result = [{"name": part, "type": kind, "options": result}]
    return result


def encode_options(
    command: dict[str, Any] | None,
    path: list[str],
    values: dict[str, Any],
    resolver: Resolver,
    *,
    focused: str | None = None,
) -> tuple[list[dict[str, Any]], Resolved]:
    """Options typed per the synced schema (or inferred without one), plus `resolved`."""
    schema = leaf_schema(command, path)
    resolved = Resolved()
    leaf: list[dict[str, Any]] = []
    by_name = {o["name"]: o for o in schema} if schema is not None else {}
    if schema is not None:
        unknown = set(values) - set(by_name)
        if focused is not None and focused not in by_name:
            unknown.add(focused)
        if unknown:
            raise EmulatorError(
                f"unknown options {sorted(unknown)}; the command has {sorted(by_name)}"
            )
        if focused is None:
            missing = [o["name"] for o in schema if o.get("required") and o["name"] not in values]
            if missing:
                raise EmulatorError(f"Discord will not send the command without {missing}")
    names = list(values)
    if focused is not None and focused not in values:
        names.append(focused)
    for name in names:
        spec = by_name.get(name)
        if name == focused:
            if spec is not None and not spec.get("autocomplete"):
                raise EmulatorError(f"option {name!r} has no autocomplete")
            kind = spec["type"] if spec else STRING
            raw = values.get(name, "")
            leaf.append({"name": name, "type": kind, "value": str(raw), "focused": True})
            continue
        value = values[name]
        kind = spec["type"] if spec else infer_type(value)
        if spec is not None:
            _check_bounds(spec, value)
        leaf.append(
            {"name": name, "type": kind, "value": _encode(kind, value, spec, resolver, resolved)}
        )
    return nest(command, path, leaf), resolved


def _encode(
    kind: int, value: Any, spec: dict[str, Any] | None, resolver: Resolver, resolved: Resolved
) -> Any:
    if kind == STRING:
        if not isinstance(value, str):
            raise EmulatorError(f"string option got {value!r}")
        return value
    if kind == INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EmulatorError(f"integer option got {value!r}")
        return value
    if kind == NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise EmulatorError(f"number option got {value!r}")
        return value
    if kind == BOOLEAN:
        if not isinstance(value, bool):
            raise EmulatorError(f"boolean option got {value!r}")
        return value
    if kind == USER:
        return resolver.resolve_user(value, resolved)
    if kind == ROLE:
        return resolver.resolve_role(value, resolved)
    if kind == MENTIONABLE:
        if isinstance(value, Role):
            return resolver.resolve_role(value, resolved)
        return resolver.resolve_user(value, resolved)
    if kind == CHANNEL:
        channel_id, channel_type = resolver.resolve_channel(value, resolved)
        allowed = (spec or {}).get("channel_types")
        if allowed and channel_type not in allowed:
            raise EmulatorError(f"channel type {channel_type} is not in {allowed}")
        return channel_id
    if kind == ATTACHMENT:
        return resolver.resolve_attachment(value, resolved)
    raise EmulatorError(f"option type {kind} cannot carry a value")


def _check_bounds(spec: dict[str, Any], value: Any) -> None:
    """What Discord's client enforces before it sends anything."""
    name = spec["name"]
    choices = spec.get("choices")
    if choices and value not in [c["value"] for c in choices]:
        raise EmulatorError(f"{name}={value!r} is not one of the choices")
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = spec.get("min_value"), spec.get("max_value")
        if (low is not None and value < low) or (high is not None and value > high):
            raise EmulatorError(f"{name}={value!r} is outside [{low}, {high}]")
    if isinstance(value, str):
        low, high = spec.get("min_length"), spec.get("max_length", 6000)
        if (low is not None and len(value) < low) or (high is not None and len(value) > high):
            raise EmulatorError(f"{name} must be {low}-{high} characters")
