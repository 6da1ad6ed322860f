"""Shared pytest configuration. Emulator fixtures live in their own plugin modules."""

pytest_plugins: list[str] = [
    "tests.discord_emulator.fixtures",
    "tests.fal_emulator.fixtures",
    "tests.storage_fixtures",
    "tests.e2e",
    "tests.security_fixtures",
]
