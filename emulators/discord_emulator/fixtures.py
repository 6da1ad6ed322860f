"""pytest plugin: the `discord_emulator` fixture (registered in tests/conftest.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import discord
import pytest

from .emulator import DiscordEmulator


@contextlib.asynccontextmanager
async def running_emulator() -> AsyncIterator[DiscordEmulator]:
    """A started emulator; discord.py's base URLs are restored afterwards, and the emulator's
    own bugs (seen while it ran) fail the test. For fixtures of any scope."""
    route_base = discord.http.Route.BASE
    gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    problems: list[str] = []
    try:
        async with DiscordEmulator() as emulator:
            yield emulator
            problems = list(emulator.internal_errors)
    finally:
        discord.http.Route.BASE = route_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway
    if problems:
        pytest.fail(f"the Discord emulator hit its own bugs: {problems}")


@pytest.fixture
async def discord_emulator() -> AsyncIterator[DiscordEmulator]:
    """A fresh emulator per test; discord.py's base URLs are restored afterwards."""
    async with running_emulator() as emulator:
        yield emulator
