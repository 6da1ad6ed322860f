"""Pydantic models for everything the bot sends the emulator, with Discord's documented limits.

A payload Discord would refuse gets the same refusal here (400, code 50035 "Invalid Form Body"
with the failing fields), so a limit our bot breaks fails in tests, not in production.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import DiscordHTTPError, invalid_form

COMPONENTS_V2 = 1 << 15
EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_EMBEDS = 1 << 2
SUPPRESS_NOTIFICATIONS = 1 << 12

# Chat-input command and option names: lowercase letters, digits, - and _ in any script.
_NAME = re.compile(r"^[-_\w]{1,32}$", re.UNICODE)


class _Loose(BaseModel):
    """Discord ignores fields it does not know; so do we, but we check the ones it limits."""

    model_config = ConfigDict(extra="allow")


# ---------------------------------------------------------------- gateway


class GatewayFrame(_Loose):
    op: int
    d: Any = None


class Identify(_Loose):
    token: str
    properties: dict[str, str]
    intents: int
    compress: bool | None = None
    large_threshold: int | None = Field(default=None, ge=50, le=250)
    shard: Any = None  # [shard_id, num_shards]; checked by the gateway (close 4010)
    presence: dict[str, Any] | None = None


class Resume(_Loose):
    token: str
    session_id: str
    seq: int | None = None


class RequestGuildMembers(_Loose):
    guild_id: str | list[str]
    query: str | None = None
    limit: int = 0
    user_ids: str | list[str] | None = None
    nonce: str | None = None
    presences: bool = False


# ---------------------------------------------------------------- messages


class EmbedField(_Loose):
    name: str = Field(min_length=1, max_length=256)
    value: str = Field(min_length=1, max_length=1024)
    inline: bool = False


class EmbedFooter(_Loose):
    text: str = Field(max_length=2048)


class EmbedAuthor(_Loose):
    name: str = Field(max_length=256)


class Embed(_Loose):
    title: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=4096)
    fields: list[EmbedField] | None = Field(default=None, max_length=25)
    footer: EmbedFooter | None = None
    author: EmbedAuthor | None = None

    @model_validator(mode="after")
    def _total_text(self) -> Embed:
        total = len(self.title or "") + len(self.description or "")
        total += sum(len(f.name) + len(f.value) for f in self.fields or [])
        total += len(self.footer.text) if self.footer else 0
        total += len(self.author.name) if self.author else 0
        if total > 6000:
            raise ValueError("Embed size exceeds maximum size of 6000")
        return self


class SelectOption(_Loose):
    label: str = Field(min_length=1, max_length=100)
    value: str = Field(min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=100)


BUTTON = 2
TEXT_INPUT = 4
ACTION_ROW = 1
LINK_STYLE = 5
PREMIUM_STYLE = 6


class Component(_Loose):
    type: int
    custom_id: str | None = Field(default=None, min_length=1, max_length=100)
    label: str | None = None
    style: int | None = None
    components: list[Component] | None = None
    component: Component | None = None
    accessory: Component | None = None
    options: list[SelectOption] | None = Field(default=None, max_length=25)
    placeholder: str | None = Field(default=None, max_length=150)
    value: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _limits(self) -> Component:
        if self.type == ACTION_ROW and len(self.components or []) > 5:
            raise ValueError("An action row holds 5 or fewer components")
        if self.type == BUTTON:
            if self.label is not None and len(self.label) > 80:
                raise ValueError("Button label must be 80 or fewer in length")
            if self.style not in (LINK_STYLE, PREMIUM_STYLE) and not self.custom_id:
                raise ValueError("A non-link button needs a custom_id")
        if self.type == TEXT_INPUT and self.label is not None and len(self.label) > 45:
            raise ValueError("Text input label must be 45 or fewer in length")
        return self

    def walk(self) -> list[Component]:
        found = [self]
        for child in self.components or []:
            found.extend(child.walk())
        for single in (self.component, self.accessory):
            if single is not None:
                found.extend(single.walk())
        return found


class AllowedMentions(_Loose):
    parse: list[str] = Field(default_factory=list)
    users: list[str | int] = Field(default_factory=list, max_length=100)
    roles: list[str | int] = Field(default_factory=list, max_length=100)
    replied_user: bool = False

    @field_validator("parse")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = set(value) - {"users", "roles", "everyone"}
        if unknown:
            raise ValueError(f"Unknown mention types: {sorted(unknown)}")
        return value


class MessageReference(_Loose):
    message_id: str | int | None = None
    channel_id: str | int | None = None
    guild_id: str | int | None = None
    fail_if_not_exists: bool = True
    type: int = 0


class AttachmentRef(_Loose):
    id: int | str
    filename: str | None = None
    description: str | None = Field(default=None, max_length=1024)


class MessageBody(_Loose):
    """Create/edit message, webhook execute, callback types 4 and 7."""

    content: str | None = Field(default=None, max_length=2000)
    embeds: list[Embed] | None = Field(default=None, max_length=10)
    components: list[Component] | None = None
    nonce: int | str | None = None
    enforce_nonce: bool = False
    tts: bool = False
    flags: int | None = None
    allowed_mentions: AllowedMentions | None = None
    message_reference: MessageReference | None = None
    attachments: list[AttachmentRef] | None = Field(default=None, max_length=10)
    poll: dict[str, Any] | None = None
    sticker_ids: list[str] | None = None

    @field_validator("nonce")
    @classmethod
    def _nonce(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, str) and len(value) > 25:
            raise ValueError("Must be 25 or fewer in length.")
        return value

    @model_validator(mode="after")
    def _components(self) -> MessageBody:
        components = self.components or []
        if (self.flags or 0) & COMPONENTS_V2:
            if sum(len(c.walk()) for c in components) > 40:
                raise ValueError("A message holds 40 or fewer components")
        elif len(components) > 5:
            raise ValueError("A message holds 5 or fewer action rows")
        custom_ids = [x.custom_id for c in components for x in c.walk() if x.custom_id]
        if len(custom_ids) != len(set(custom_ids)):
            raise ValueError("Component custom id cannot be duplicated")
        return self


class DeferData(_Loose):
    flags: int | None = None


class AutocompleteChoice(_Loose):
    name: str = Field(min_length=1, max_length=100)
    value: str | int | float

    @field_validator("value")
    @classmethod
    def _short(cls, value: str | int | float) -> str | int | float:
        if isinstance(value, str) and len(value) > 100:
            raise ValueError("Must be 100 or fewer in length.")
        return value


class AutocompleteData(_Loose):
    choices: list[AutocompleteChoice] = Field(max_length=25)


class ModalData(_Loose):
    custom_id: str = Field(min_length=1, max_length=100)
    title: str = Field(min_length=1, max_length=45)
    components: list[Component] = Field(min_length=1, max_length=5)


class CallbackBody(_Loose):
    type: int
    data: dict[str, Any] | None = None


class CreateDM(_Loose):
    recipient_id: str | int


# ---------------------------------------------------------------- application commands


class OptionChoice(_Loose):
    name: str = Field(min_length=1, max_length=100)
    value: str | int | float


class CommandOption(_Loose):
    type: int = Field(ge=1, le=11)
    name: str
    description: str = Field(min_length=1, max_length=100)
    required: bool = False
    choices: list[OptionChoice] | None = Field(default=None, max_length=25)
    options: list[CommandOption] | None = Field(default=None, max_length=25)
    autocomplete: bool = False
    channel_types: list[int] | None = None
    min_value: int | float | None = None
    max_value: int | float | None = None
    min_length: int | None = Field(default=None, ge=0, le=6000)
    max_length: int | None = Field(default=None, ge=1, le=6000)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value) or value != value.lower():
            raise ValueError("Option name must be 1-32 lowercase characters")
        return value

    @model_validator(mode="after")
    def _shape(self) -> CommandOption:
        if self.autocomplete and self.choices:
            raise ValueError("Autocomplete cannot be used with choices")
        _required_first(self.options or [])
        return self


class ApplicationCommand(_Loose):
    name: str
    type: int = 1
    description: str = ""
    options: list[CommandOption] | None = Field(default=None, max_length=25)
    default_member_permissions: str | int | None = None
    dm_permission: bool | None = None
    nsfw: bool = False
    contexts: list[int] | None = None
    integration_types: list[int] | None = None

    @model_validator(mode="after")
    def _shape(self) -> ApplicationCommand:
        if self.type == 1:
            if not _NAME.match(self.name) or self.name != self.name.lower():
                raise ValueError("Command name must be 1-32 lowercase characters")
            if not 1 <= len(self.description) <= 100:
                raise ValueError("Description must be 1-100 characters")
        else:
            if not 1 <= len(self.name) <= 32:
                raise ValueError("Command name must be 1-32 characters")
            if self.description:
                raise ValueError("Context menu commands have no description")
            if self.options:
                raise ValueError("Context menu commands have no options")
        _required_first(self.options or [])
        return self


def _required_first(options: list[CommandOption]) -> None:
    seen_optional = False
    for option in options:
        if option.type in (1, 2):
            continue
        if option.required and seen_optional:
            raise ValueError("Required options must be placed before non-required options")
        seen_optional = seen_optional or not option.required


def check_command_counts(commands: list[ApplicationCommand]) -> None:
    limits = {1: 100, 2: 5, 3: 5}
    names: set[tuple[int, str]] = set()
    for kind, limit in limits.items():
        if sum(1 for c in commands if c.type == kind) > limit:
            raise invalid_form(
                {"_errors": [{"code": "MAX_COMMANDS", "message": f"Max {limit} of type {kind}"}]}
            )
    for command in commands:
        key = (command.type, command.name)
        if key in names:
            raise invalid_form(
                {"_errors": [{"code": "DUPLICATE", "message": f"Duplicate name {command.name}"}]}
            )
        names.add(key)


# ---------------------------------------------------------------- parsing helpers

M = TypeVar("M", bound=BaseModel)

_CODES = {
    "string_too_long": "BASE_TYPE_MAX_LENGTH",
    "too_long": "BASE_TYPE_MAX_LENGTH",
    "string_too_short": "BASE_TYPE_MIN_LENGTH",
    "too_short": "BASE_TYPE_MIN_LENGTH",
    "missing": "BASE_TYPE_REQUIRED",
}


def parse(model: type[M], data: Any, *, prefix: tuple[str | int, ...] = ()) -> M:
    """Validate like Discord: a refusal is a DiscordHTTPError 400/50035 naming each bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise form_error(error, prefix) from None


def form_error(error: ValidationError, prefix: tuple[str | int, ...] = ()) -> DiscordHTTPError:
    tree: dict[str, Any] = {}
    for item in error.errors():
        node = tree
        for part in (*prefix, *item["loc"]):
            node = node.setdefault(str(part), {})
        ctx = item.get("ctx") or {}
        if item["type"] in ("string_too_long", "too_long") and "max_length" in ctx:
            text = f"Must be {ctx['max_length']} or fewer in length."
        else:
            text = str(item["msg"]).removeprefix("Value error, ")
        code = _CODES.get(item["type"], "BASE_TYPE_BAD")
        node.setdefault("_errors", []).append({"code": code, "message": text})
    return invalid_form(tree)
