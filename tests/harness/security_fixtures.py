"""Helpers for the tests of hostile input (modified clients, other servers, typed URLs), registered
as a pytest plugin in conftest.py.

- `raw_slash` / `raw_click` send what a *modified* Discord client could send: options outside
  the command's ranges or choices, wrong option types, commands the member is not offered,
  custom_ids that are not on the message. Discord's own client refuses these (the emulator's
  `slash` and `click` raise EmulatorError for them); the bot must still answer them safely.
- `NetworkLog` records every DNS lookup and outgoing connection of this process through
  Python's audit hooks (nothing is patched), so a test can prove which hosts the bot reached.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from emulators.discord_emulator import DiscordEmulator
from emulators.discord_emulator.actions import ChannelResolver
from emulators.discord_emulator.commands import (
    ATTACHMENT,
    CHANNEL,
    CHAT_INPUT,
    MENTIONABLE,
    ROLE,
    USER,
    Resolved,
    leaf_schema,
    nest,
)
from emulators.discord_emulator.interactions import (
    APPLICATION_COMMAND,
    MESSAGE_COMPONENT,
    Interaction,
)
from emulators.discord_emulator.messages import Attachment, Message
from emulators.discord_emulator.world import Channel, Member
from tests.harness.postgres import DATABASE_PORTS

# ---------------------------------------------------------------------------- raw interactions


def raw_slash(
    emu: DiscordEmulator,
    member: Member,
    channel: Channel,
    command: str,
    options: dict[str, Any] | None = None,
    *,
    attachments: dict[str, Attachment] | None = None,
) -> Interaction:
    """`/command` as a modified client sends it: no visibility, type, range or choice checks.

    Option types come from the synced schema where the option exists (so the bot parses the
    value as that type); the value goes out exactly as given, whatever its Python type.
    """
    name, *path = command.split()
    guild = emu.world.guild_of(channel)
    schema = emu.state.commands.find(guild.id if guild else None, name, CHAT_INPUT)
    assert schema is not None, f"/{name} is not registered"
    specs = {o["name"]: o for o in leaf_schema(schema, path) or []}
    resolver = ChannelResolver(emu, channel, member)
    resolved = Resolved()
    leaf: list[dict[str, Any]] = []
    for key, value in {**(options or {}), **(attachments or {})}.items():
        kind = specs[key]["type"] if key in specs else 3
        if kind == ATTACHMENT and isinstance(value, Attachment):
            wire: Any = resolver.resolve_attachment(value, resolved)
        elif kind in (USER, MENTIONABLE) and not isinstance(value, str | int | float):
            wire = resolver.resolve_user(value, resolved)
        elif kind == ROLE and not isinstance(value, str | int | float):
            wire = resolver.resolve_role(value, resolved)
        elif kind == CHANNEL and isinstance(value, Channel):
            wire = resolver.resolve_channel(value, resolved)[0]
        else:
            wire = value
        leaf.append({"name": key, "type": kind, "value": wire})
    data: dict[str, Any] = {"id": schema["id"], "name": name, "type": CHAT_INPUT}
    if leaf or path:
        data["options"] = nest(schema, path, leaf)
    if resolved.payload():
        data["resolved"] = resolved.payload()
    if "guild_id" in schema:
        data["guild_id"] = schema["guild_id"]
    return emu.state.responses.new_interaction(
        type=APPLICATION_COMMAND,
        name=command,
        user=member.user,
        member=member,
        channel=channel,
        data=data,
    )


def raw_click(
    emu: DiscordEmulator, member: Member, message: Message, custom_id: str
) -> Interaction:
    """A button press with a custom_id of the sender's choosing (a forged or stale button)."""
    channel = emu.world.channel(message.channel_id)
    assert channel is not None
    return emu.state.responses.new_interaction(
        type=MESSAGE_COMPONENT,
        name=custom_id,
        user=member.user,
        member=member,
        channel=channel,
        data={"custom_id": custom_id, "component_type": 2},
        message=message,
    )


def modal_fields(modal: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """label → (custom_id, prefilled value) of each text input (row or label layout)."""
    fields: dict[str, tuple[str, str]] = {}
    for top in modal["components"]:
        if top["type"] == 18:
            inner = top["component"]
            fields[top["label"]] = (inner["custom_id"], inner.get("value") or "")
        else:
            for component in top.get("components", []):
                fields[component["label"]] = (component["custom_id"], component.get("value") or "")
    return fields


# ---------------------------------------------------------------------------- network log


@dataclass
class NetworkLog:
    """DNS lookups and connections made by this process while recording."""

    lookups: list[str] = field(default_factory=list)
    connects: list[tuple[str, int]] = field(default_factory=list)

    def hosts(self) -> set[str]:
        return set(self.lookups) | {host for host, _ in self.connects}

    def ports(self) -> set[int]:
        """Ports connected to, except the test session's database server (the bot's own
        storage on PostgreSQL)."""
        return {port for _, port in self.connects} - DATABASE_PORTS


_recorders: list[NetworkLog] = []
_lock = threading.Lock()
_hook_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _recorders:
        return
    if event == "socket.getaddrinfo":
        host = args[0]
        entry = host.decode() if isinstance(host, bytes) else str(host)
        with _lock:
            for log in _recorders:
                log.lookups.append(entry)
    elif event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple) and len(address) >= 2:
            with _lock:
                for log in _recorders:
                    log.connects.append((str(address[0]), int(address[1])))


@pytest.fixture
def network_log() -> Iterator[NetworkLog]:
    """Every getaddrinfo and socket connect of this process during the test."""
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)  # audit hooks cannot be removed; it idles when nobody records
        _hook_installed = True
    log = NetworkLog()
    _recorders.append(log)
    try:
        yield log
    finally:
        _recorders.remove(log)
