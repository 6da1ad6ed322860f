"""Test tooling: emulators of the Discord API and of fal.ai that run on 127.0.0.1.

Tests (as pytest plugins), benchmarks and standalone runs start them; the bot never imports
them and they are not part of its image. See README.md here.
"""
