"""Helpers shared by several test subjects (not tests themselves).

- `e2e`: the `world` fixture, our real bot against both emulators and a real SQLite file.
- `security_fixtures`: raw (modified-client) interactions and the `network_log` fixture.
- `bad_inputs`: the desk, row type and checks of the bad-input tables in tests/e2e/.
- `storage_fixtures`: a real SQLite file per test, `T0`, `make_job`, `limits`.
- `images`: small PNG/JPEG/GIF inputs, damaged files and decompression bombs.
- `bot_process`, `bot_probe`: the bot as a child process (and with a load probe).
- `emulator_watch`: waits on what the emulators saw, and kill switches for crash tests.
- `storage_worker`: a subprocess that drives storage for the concurrency and crash tests.
"""
