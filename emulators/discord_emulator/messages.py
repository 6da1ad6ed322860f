"""Messages and attachments as the emulator stores them, and their wire shapes."""

from __future__ import annotations

import io
import mimetypes
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .payloads import AllowedMentions
from .snowflakes import iso

DEFAULT = 0
REPLY = 19
CHAT_INPUT_COMMAND = 20
CONTEXT_MENU_COMMAND = 23

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


class StoredFile(NamedTuple):
    filename: str
    data: bytes
    content_type: str


def guess_content_type(filename: str, data: bytes) -> str:
    """Discord names the type from the bytes it recognises, else from the extension."""
    signatures = (
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"%PDF", "application/pdf"),
    )
    for magic, kind in signatures:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or "application/octet-stream"


def image_size(data: bytes) -> tuple[int, int] | None:
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:  # not an image Discord would measure
        return None


@dataclass(eq=False)
class Attachment:
    """A file Discord hosts: a member's upload or a file the bot sent. Served over HTTP."""

    filename: str
    data: bytes
    content_type: str
    description: str | None = None
    id: int = 0
    channel_id: int = 0
    ephemeral: bool = False
    revoked: bool = False

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def path(self) -> str:
        folder = "ephemeral-attachments" if self.ephemeral else "attachments"
        return f"/{folder}/{self.channel_id}/{self.id}/{self.filename}"

    def as_file(self) -> StoredFile:
        return StoredFile(self.filename, self.data, self.content_type)

    def payload(self, url: str) -> dict[str, Any]:
        """`url` is signed per payload, as Discord signs each time it hands a message out."""
        proxy = url.replace("/attachments/", "/media/attachments/", 1).replace(
            "/ephemeral-attachments/", "/media/ephemeral-attachments/", 1
        )
        data: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": url,
            "proxy_url": proxy,
            "content_type": self.content_type,
        }
        if self.description is not None:
            data["description"] = self.description
        size = image_size(self.data) if self.content_type.startswith("image/") else None
        if size is not None:
            data["width"], data["height"] = size
        if self.ephemeral:
            data["ephemeral"] = True
        return data


@dataclass(eq=False)
class MessageEdit:
    """One change to a message: when (emulator clock), the fields sent, the files added."""

    at: float
    payload: dict[str, Any]
    files: list[StoredFile]


@dataclass(eq=False)
class Message:
    id: int
    channel_id: int
    guild_id: int | None
    author_id: int
    created_at: float
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    flags: int = 0
    type: int = DEFAULT
    nonce: str | int | None = None
    allowed_mentions: dict[str, Any] | None = None
    reference: dict[str, Any] | None = None
    tts: bool = False
    poll: dict[str, Any] | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    visible_to: int | None = None  # the only user who sees an ephemeral message
    edited_at: float | None = None
    deleted: bool = False
    reactions: dict[str, set[int]] = field(default_factory=dict)
    edits: list[MessageEdit] = field(default_factory=list)
    mentions: list[int] = field(default_factory=list)
    mention_roles: list[int] = field(default_factory=list)
    mention_everyone: bool = False

    @property
    def files(self) -> list[StoredFile]:
        return [a.as_file() for a in self.attachments]

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & (1 << 6))

    @property
    def loading(self) -> bool:
        return bool(self.flags & (1 << 7))

    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in walk_components(self.components) if "custom_id" in c]

    def payload(
        self,
        sign: Callable[[Attachment], str],
        users: dict[int, Any],
        *,
        bot_id: int,
        strip_content: bool = False,
        referenced: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        author = users[self.author_id].payload()
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "channel_id": str(self.channel_id),
            "author": author,
            "content": "" if strip_content else self.content,
            "timestamp": iso(self.created_at),
            "edited_timestamp": None if self.edited_at is None else iso(self.edited_at),
            "tts": self.tts,
            "mention_everyone": self.mention_everyone,
            "mentions": [users[u].payload() for u in self.mentions if u in users],
            "mention_roles": [str(r) for r in self.mention_roles],
            "attachments": [] if strip_content else [a.payload(sign(a)) for a in self.attachments],
            "embeds": [] if strip_content else self.embeds,
            "components": [] if strip_content else self.components,
            "pinned": False,
            "flags": self.flags,
            "reactions": [
                {
                    "emoji": emoji_payload(key),
                    "count": len(who),
                    "count_details": {"burst": 0, "normal": len(who)},
                    "me": bot_id in who,
                    "me_burst": False,
                    "burst_colors": [],
                }
                for key, who in self.reactions.items()
                if who
            ],
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.nonce is not None:
            data["nonce"] = self.nonce
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
        if self.application_id is not None:
            data["application_id"] = str(self.application_id)
        if self.interaction_metadata is not None:
            data["interaction_metadata"] = self.interaction_metadata
        if self.reference is not None:
            data["message_reference"] = self.reference
            if referenced is not None:
                data["referenced_message"] = referenced
        if self.poll is not None:
            data["poll"] = self.poll
        return data


def walk_components(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for component in components:
        found.append(component)
        found.extend(walk_components(component.get("components") or []))
        for key in ("component", "accessory"):
            if isinstance(component.get(key), dict):
                found.extend(walk_components([component[key]]))
    return found


def emoji_key(emoji: str) -> str:
    """Unicode emoji as is; custom emoji as `name:id` (the form REST paths use)."""
    emoji = emoji.strip()
    match = re.fullmatch(r"<a?:(\w+):(\d+)>", emoji)
    if match:
        return f"{match.group(1)}:{match.group(2)}"
    return emoji


def emoji_payload(key: str) -> dict[str, Any]:
    name, sep, emoji_id = key.rpartition(":")
    if sep and emoji_id.isdigit():
        return {"id": emoji_id, "name": name, "animated": False}
    return {"id": None, "name": key}


def resolve_mentions(
    content: str,
    allowed: AllowedMentions | None,
    *,
    replied_user: int | None,
) -> tuple[list[int], list[int], bool]:
    """Who a message actually pings, after `allowed_mentions` (no field = ping everything)."""
    users = [int(u) for u in dict.fromkeys(_USER_MENTION.findall(content))]
    roles = [int(r) for r in dict.fromkeys(_ROLE_MENTION.findall(content))]
    everyone = "@everyone" in content or "@here" in content
    if allowed is None:
        pinged_users = users + (
            [replied_user] if replied_user and replied_user not in users else []
        )
        return pinged_users, roles, everyone
    user_ok = "users" in allowed.parse
    role_ok = "roles" in allowed.parse
    allowed_users = {str(u) for u in allowed.users}  # Discord takes snowflakes as str or int
    allowed_roles = {str(r) for r in allowed.roles}
    pinged_users = [u for u in users if user_ok or str(u) in allowed_users]
    pinged_roles = [r for r in roles if role_ok or str(r) in allowed_roles]
    if replied_user and allowed.replied_user and replied_user not in pinged_users:
        pinged_users.append(replied_user)
    return pinged_users, pinged_roles, everyone and "everyone" in allowed.parse
