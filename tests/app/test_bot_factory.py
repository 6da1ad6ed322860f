"""create_bot builds the whole bot offline: extensions load and commands register."""

from __future__ import annotations

from pathlib import Path

from bot import EXTENSIONS, Settings, create_bot


def offline_settings(tmp_path: Path) -> Settings:
    return Settings(
        discord_token="offline-token",
        fal_key="id:secret",
        database_path=tmp_path / "bot.sqlite3",
        fal_queue_url="http://127.0.0.1:9",
        fal_rest_url="http://127.0.0.1:9",
        fal_cdn_url="http://127.0.0.1:9",
    )


async def test_create_bot_loads_every_extension_without_network(tmp_path: Path) -> None:
    bot = create_bot(offline_settings(tmp_path))
    async with bot:
        await bot.prepare()
        assert set(bot.extensions) == set(EXTENSIONS)
        assert "Errors" in bot.cogs
    assert bot.is_closed()
