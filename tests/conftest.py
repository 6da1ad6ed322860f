"""Shared pytest configuration. Emulator fixtures live in their own plugin modules."""

pytest_plugins: list[str] = [
    "emulators.discord_emulator.fixtures",
    "emulators.fal_emulator.fixtures",
    "tests.harness.storage_fixtures",
    "tests.harness.e2e",
    "tests.harness.security_fixtures",
    "tests.harness.bad_inputs",
    "tests.harness.webhook_receiver",
]
