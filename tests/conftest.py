"""Shared pytest configuration. Emulator fixtures live in their own plugin modules."""

pytest_plugins: list[str] = [
    "emulators.discord_emulator.fixtures",
    "emulators.fal_emulator.fixtures",
    "tests.storage_fixtures",
    "tests.e2e",
    "tests.security_fixtures",
]
