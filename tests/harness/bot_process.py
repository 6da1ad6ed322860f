"""Our real bot as a child process (`python bot.py`), for crash tests and the soak script.

The test process runs both emulators; the bot reaches them over real sockets with the
environment an operator would give it. `kill()` is a synchronous SIGKILL, so an emulator hook
can end the bot at an exact moment (for example while Discord holds a result message the bot
has not heard back about yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]

# Settings a developer's shell or a .env might carry; the child gets only what we give it.
_SETTING_PREFIXES = ("DISCORD_", "FAL_", "DATABASE_", "DEV_GUILD", "LOG_LEVEL", "JOB_", "MAX_LORAS")


def bot_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """os.environ without any bot setting, plus `settings` (names as in bot.py's Settings)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith(_SETTING_PREFIXES)
    }
    env.update(settings)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _let_children_hear_sigint() -> None:
    """A test run started in the background of a non-interactive shell (`cmd &`, nohup) has
    SIGINT ignored, and an ignored signal stays ignored across exec: the bot would never hear
    `stop()`'s Ctrl-C and be killed after the grace period instead. Handling SIGINT here (as an
    interactive run does) gives every child the default disposition back."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class BotProcess:
    """One bot process at a time; `start()` again after a kill runs a fresh one on the same
    database (what an operator's supervisor does). Every run appends to one log file."""

    def __init__(self, env: Mapping[str, str], log_path: Path, *, argv: list[str] | None = None):
        self.env = dict(env)
        self.log_path = log_path
        self.argv = argv or [sys.executable, "bot.py"]
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.kills = 0
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        if self.running:
            raise RuntimeError("the bot is already running")
        if self._log is None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        self.starts += 1
        self._log.write(f"===== start {self.starts} =====\n".encode())
        self._log.flush()
        _let_children_hear_sigint()
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=ROOT,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
        )

    def kill(self) -> bool:
        """SIGKILL now, from any callback; True if a live process got it. `wait()` reaps it."""
        if not self.running or self.process is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)
            self.kills += 1
            return True
        return False

    async def wait(self, within: float = 10.0) -> int:
        if self.process is None:
            return 0
        async with asyncio.timeout(within):
            return await self.process.wait()

    async def stop(self, within: float = 10.0) -> None:
        """A graceful stop (SIGINT, as Ctrl-C): the bot closes its connections and exits."""
        if self.running and self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGINT)
            try:
                await self.wait(within)
            except TimeoutError:
                self.kill()
                await self.wait()

    async def close(self) -> None:
        if self.running:
            self.kill()
            await self.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def tracebacks(self) -> list[str]:
        """Log lines that start a traceback: a crash test fails on any of them."""
        return [line for line in self.log_text().splitlines() if line.startswith("Traceback")]
