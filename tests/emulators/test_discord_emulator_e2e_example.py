"""The pattern for end-to-end tests of our bot: the real `create_bot(settings)` on the emulator."""

from pathlib import Path

import discord
from discord import app_commands

from bot import Settings, create_bot
from emulators.discord_emulator import DiscordEmulator


async def test_our_bot_starts_answers_and_restarts(
    discord_emulator: DiscordEmulator, tmp_path: Path
) -> None:
    emu = discord_emulator
    settings = Settings(
        **emu.settings_overrides(), fal_key="test:secret", database_path=tmp_path / "bot.sqlite3"
    )
    bot = await emu.start_bot(create_bot(settings, guild_ready_timeout=0.1))

    @app_commands.command(description="Needs Manage Server")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def guarded(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("ok")

    bot.tree.add_command(guarded)
    await bot.tree.sync()

    refused = await emu.slash(emu.member("alice"), emu.channel("general"), "guarded")
    await refused.response()
    assert refused.ephemeral and refused.original is not None  # cogs/errors answered privately
    allowed = await emu.slash(emu.member("carol"), emu.channel("general"), "guarded")
    assert (await allowed.response()).message is not None

    bot = await emu.restart_bot(lambda: create_bot(settings, guild_ready_timeout=0.1))
    assert bot.user is not None and bot.user.id == emu.bot_user.id
