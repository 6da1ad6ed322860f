"""A Discord API emulator for end-to-end tests: real discord.py over real HTTP and WebSocket.

async def test_ping(discord_emulator):
    emu = discord_emulator
    bot = make_tiny_bot()  # or create_bot(Settings(**emu.settings_overrides(), ...))
    await emu.start_bot(bot)
    ix = await emu.slash(emu.member("alice"), emu.channel("general"), "ping")
    assert (await ix.response()).message.content == "pong"
"""

from .clock import Clock
from .emulator import DiscordEmulator
from .errors import DiscordHTTPError, EmulatorError, EmulatorTimeout, InteractionFailed
from .faults import FaultRule
from .gateway import Session
from .interactions import Callback, Interaction
from .messages import Attachment, Message, MessageEdit, StoredFile
from .permissions import Permission
from .rest import RecordedRequest
from .waiting import Event
from .world import Channel, Guild, Member, Overwrite, Role, User

__all__ = [
    "Attachment",
    "Callback",
    "Channel",
    "Clock",
    "DiscordEmulator",
    "DiscordHTTPError",
    "EmulatorError",
    "EmulatorTimeout",
    "Event",
    "FaultRule",
    "Guild",
    "Interaction",
    "InteractionFailed",
    "Member",
    "Message",
    "MessageEdit",
    "Overwrite",
    "Permission",
    "RecordedRequest",
    "Role",
    "Session",
    "StoredFile",
    "User",
]
