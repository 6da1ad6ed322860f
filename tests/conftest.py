"""Shared pytest configuration. Emulator fixtures live in their own plugin modules."""

pytest_plugins: list[str] = ["tests.storage_fixtures"]
