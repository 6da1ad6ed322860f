"""The emulated Discord world: users, guilds, roles, channels, members, and their wire shapes.

Ids are ints on the Python side; every payload sends them as strings, as Discord does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import EmulatorError
from .permissions import EVERYONE_DEFAULT, Permission
from .snowflakes import Snowflakes, iso, snowflake_time

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024

TEXT = 0
DM = 1
CATEGORY = 4

ROLE_OVERWRITE = 0
MEMBER_OVERWRITE = 1


@dataclass(eq=False)
class User:
    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    dms_open: bool = True

    @property
    def name(self) -> str:
        return self.username

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "public_flags": 0,
            "flags": 0,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass(eq=False)
class Role:
    id: int
    guild_id: int
    name: str
    permissions: int
    position: int
    managed: bool = False
    bot_id: int | None = None

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(int(self.permissions)),
            "position": self.position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": self.managed,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass
class Overwrite:
    id: int
    type: int  # 0 role, 1 member
    allow: int = 0
    deny: int = 0

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": self.type,
            "allow": str(int(self.allow)),
            "deny": str(int(self.deny)),
        }


@dataclass(eq=False)
class Channel:
    id: int
    type: int
    name: str
    guild_id: int | None
    position: int = 0
    nsfw: bool = False
    topic: str | None = None
    overwrites: dict[int, Overwrite] = field(default_factory=dict)
    recipient_ids: list[int] = field(default_factory=list)
    last_message_id: int | None = None

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    def payload(self, users: dict[int, User] | None = None) -> dict[str, Any]:
        if self.type == DM:
            recipients = [users[r].payload() for r in self.recipient_ids if users and r in users]
            return {
                "id": str(self.id),
                "type": DM,
                "last_message_id": _opt_str(self.last_message_id),
                "recipients": recipients,
                "flags": 0,
            }
        return {
            "id": str(self.id),
            "type": self.type,
            "guild_id": _opt_str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "parent_id": None,
            "topic": self.topic,
            "nsfw": self.nsfw,
            "rate_limit_per_user": 0,
            "last_message_id": _opt_str(self.last_message_id),
            "permission_overwrites": [o.payload() for o in self.overwrites.values()],
            "flags": 0,
        }


@dataclass(eq=False)
class Member:
    user: User
    guild_id: int
    role_ids: list[int]
    joined_at: str
    nick: str | None = None

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def name(self) -> str:
        return self.user.username

    @property
    def mention(self) -> str:
        return self.user.mention

    def payload(self, *, with_user: bool = True, permissions: int | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "roles": [str(r) for r in self.role_ids],
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "joined_at": self.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.user.payload()
        if permissions is not None:
            data["permissions"] = str(int(permissions))
        return data


@dataclass(eq=False)
class Guild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, Role] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    upload_limit: int = DEFAULT_UPLOAD_LIMIT
    locale: str = "en-US"
    # Where Discord posts join notices and where bots usually say hello; None: turned off.
    system_channel_id: int | None = None
    # Integration settings → command permission overrides: command name → {role/user id: allowed}.
    command_overrides: dict[str, dict[int, bool]] = field(default_factory=dict)

    @property
    def everyone(self) -> Role:
        return self.roles[self.id]

    def channel(self, name: str) -> Channel:
        for channel in self.channels.values():
            if channel.name == name:
                return channel
        raise EmulatorError(f"guild {self.name!r} has no channel {name!r}")

    def member(self, username: str) -> Member:
        for member in self.members.values():
            if member.user.username == username:
                return member
        raise EmulatorError(f"guild {self.name!r} has no member {username!r}")

    def role(self, name: str) -> Role:
        for role in self.roles.values():
            if role.name == name:
                return role
        raise EmulatorError(f"guild {self.name!r} has no role {name!r}")

    def payload(self, members: list[Member], joined_at: str) -> dict[str, Any]:
        """The GUILD_CREATE shape; `members` is what the bot may see (intents decide)."""
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "system_channel_id": _opt_str(self.system_channel_id),
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "vanity_url_code": None,
            "preferred_locale": self.locale,
            "features": [],
            "emojis": [],
            "stickers": [],
            "roles": [r.payload() for r in self.roles.values()],
            "channels": [c.payload() for c in self.channels.values()],
            "members": [m.payload() for m in members],
            "member_count": len(self.members),
            "large": False,
            "unavailable": False,
            "joined_at": joined_at,
            "threads": [],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }


def _opt_str(value: int | None) -> str | None:
    return None if value is None else str(value)


BOT_ROLE_PERMISSIONS = (
    Permission.VIEW_CHANNEL
    | Permission.SEND_MESSAGES
    | Permission.READ_MESSAGE_HISTORY
    | Permission.ATTACH_FILES
    | Permission.EMBED_LINKS
    | Permission.ADD_REACTIONS
    | Permission.USE_EXTERNAL_EMOJIS
    | Permission.MANAGE_MESSAGES
    | Permission.SEND_MESSAGES_IN_THREADS
)

# (name, permissions) in position order after @everyone.
DEFAULT_ROLES: tuple[tuple[str, int], ...] = (
    ("Member", 0),
    ("Manager", 0),
    ("Mod", int(Permission.MANAGE_MESSAGES)),
    ("Admin", int(Permission.MANAGE_GUILD)),
)

# username → role names. The owner sits outside the role model (owners get every permission).
DEFAULT_MEMBERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("alice", ("Member",)),
    ("bob", ("Member",)),
    ("carol", ("Member", "Admin")),
    ("dave", ("Member", "Manager")),
    ("erin", ("Member", "Mod")),
)


class World:
    """Every user, guild and channel; builds the default world and extra guilds."""

    def __init__(self, ids: Snowflakes, *, bot_name: str = "TestBot") -> None:
        self.ids = ids
        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.dm_channels: dict[int, Channel] = {}  # by channel id
        self.bot_user = self._user(bot_name, bot=True)
        self.application_id = self.bot_user.id
        self.owner = self._user("olivia")  # owns the application and the default guilds

    def _user(self, username: str, *, bot: bool = False) -> User:
        user = User(id=self.ids.next(), username=username, global_name=username.title(), bot=bot)
        self.users[user.id] = user
        return user

    def user(self, username: str) -> User:
        for user in self.users.values():
            if user.username == username:
                return user
        return self._user(username)

    def _joined_at(self, snowflake: int) -> str:
        return iso(snowflake_time(snowflake))

    def add_guild(
        self,
        name: str,
        *,
        members: tuple[str, ...] | None = None,
        system_channel: str | None = None,
        shard: tuple[int, int] | None = None,
    ) -> Guild:
        """A guild laid out like the default one; `members` limits which default members join,
        `system_channel` names the channel set as its system channel (none by default), `shard`
        = (shard id, shard count) picks an id that Discord routes to that shard."""
        guild_id = self.ids.next() if shard is None else self.ids.next_on_shard(*shard)
        guild = Guild(id=guild_id, name=name, owner_id=self.owner.id)
        guild.roles[guild.id] = Role(guild.id, guild.id, "@everyone", int(EVERYONE_DEFAULT), 0)
        by_name: dict[str, Role] = {}
        for position, (role_name, perms) in enumerate(DEFAULT_ROLES, start=1):
            role = Role(self.ids.next(), guild.id, role_name, perms, position)
            guild.roles[role.id] = role
            by_name[role_name] = role
        bot_role = Role(
            self.ids.next(),
            guild.id,
            self.bot_user.username,
            int(BOT_ROLE_PERMISSIONS),
            len(DEFAULT_ROLES) + 1,
            managed=True,
            bot_id=self.bot_user.id,
        )
        guild.roles[bot_role.id] = bot_role

        self.add_member(guild, self.owner, [])
        self.add_member(guild, self.bot_user, [bot_role.id])
        for username, role_names in DEFAULT_MEMBERS:
            if members is not None and username not in members:
                continue
            self.add_member(guild, self.user(username), [by_name[r].id for r in role_names])

        bot = self.bot_user.id
        self.add_channel(guild, "general")
        self.add_channel(guild, "nsfw", nsfw=True, topic="Age-restricted")
        self.add_channel(
            guild,
            "no-attach",
            overwrites=[Overwrite(bot, MEMBER_OVERWRITE, deny=int(Permission.ATTACH_FILES))],
        )
        self.add_channel(
            guild,
            "read-only",
            overwrites=[Overwrite(bot, MEMBER_OVERWRITE, deny=int(Permission.SEND_MESSAGES))],
        )
        if system_channel is not None:
            guild.system_channel_id = guild.channel(system_channel).id
        self.guilds[guild.id] = guild
        return guild

    def add_member(self, guild: Guild, user: User, role_ids: list[int]) -> Member:
        member = Member(user, guild.id, list(role_ids), self._joined_at(self.ids.next()))
        guild.members[user.id] = member
        return member

    def add_channel(
        self,
        guild: Guild,
        name: str,
        *,
        nsfw: bool = False,
        topic: str | None = None,
        overwrites: list[Overwrite] | None = None,
    ) -> Channel:
        channel = Channel(
            id=self.ids.next(),
            type=TEXT,
            name=name,
            guild_id=guild.id,
            position=len(guild.channels),
            nsfw=nsfw,
            topic=topic,
            overwrites={o.id: o for o in overwrites or []},
        )
        guild.channels[channel.id] = channel
        return channel

    def add_role(self, guild: Guild, name: str, permissions: int = 0) -> Role:
        role = Role(self.ids.next(), guild.id, name, int(permissions), len(guild.roles))
        guild.roles[role.id] = role
        return role

    def dm_channel(self, user: User) -> Channel:
        for channel in self.dm_channels.values():
            if channel.recipient_ids == [user.id]:
                return channel
        channel = Channel(id=self.ids.next(), type=DM, name="", guild_id=None)
        channel.recipient_ids = [user.id]
        self.dm_channels[channel.id] = channel
        return channel

    def channel(self, channel_id: int) -> Channel | None:
        if channel_id in self.dm_channels:
            return self.dm_channels[channel_id]
        for guild in self.guilds.values():
            if channel_id in guild.channels:
                return guild.channels[channel_id]
        return None

    def guild_of(self, channel: Channel) -> Guild | None:
        return None if channel.guild_id is None else self.guilds.get(channel.guild_id)

    def bot_member(self, guild: Guild) -> Member:
        return guild.members[self.bot_user.id]
