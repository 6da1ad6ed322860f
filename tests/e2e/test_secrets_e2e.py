"""Neither the Discord token nor the fal key (nor its secret half) ever shows.

Every logger of the process (ours, discord.py, aiohttp, httpx, httpcore, aiosqlite) records at
DEBUG, from login to delivery and through the failure paths, and the test searches each
formatted line (tracebacks included), every message and embed any member could read (ephemeral
ones and DMs too), every body sent to Discord and to fal, the SQLite file and the outputs folder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from bot import Settings, describe_settings_error
from emulators.discord_emulator import DiscordEmulator
from emulators.fal_emulator.server import FalEmulator
from tests.harness.e2e import World
from tests.harness.images import png


class Everything(logging.Handler):
    """Every record of every logger, formatted with its traceback and stack."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record) + " " + repr(record.args))


@pytest.fixture
def debug_log() -> Iterator[Everything]:
    root = logging.getLogger()
    handler, level = Everything(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def secrets_of(emu: DiscordEmulator, fal: FalEmulator, *extra: str) -> dict[str, str]:
    _, _, key_secret = fal.key.partition(":")
    return {
        "Discord token": emu.token,
        "Discord token's signature": emu.token.rsplit(".", 1)[1],
        "fal key": fal.key,
        "fal key's secret half": key_secret,
        **{f"secret {i}": value for i, value in enumerate(extra)},
    }


def everything_visible(world: World) -> dict[str, str]:
    """Text by where it was seen: log lines are added by the caller."""
    emu, fal = world.emu, world.fal
    seen: dict[str, str] = {}
    for message in emu.state.messages.values():
        body = json.dumps([message.content, message.embeds, message.components], default=str)
        files = b"".join(data for _, data, _ in message.files).decode("latin-1")
        seen[f"message {message.id}"] = body + files
    for request in emu.requests:
        seen[f"Discord {request.method} {request.path}"] = json.dumps(
            [request.query, request.json], default=str
        )
    for record in fal.requests:
        seen[f"fal {record.method} {record.path}"] = json.dumps(
            [record.query, record.headers, record.body.decode("latin-1")]
        )
    data = world.settings.database_path.parent
    for path in data.rglob("*"):
        if path.is_file():
            seen[str(path)] = path.read_bytes().decode("latin-1")
    return seen


def leaks(texts: dict[str, str], secrets: dict[str, str]) -> list[str]:
    return [
        f"{what} in {where}: {text[max(0, text.find(value) - 60) : text.find(value)]!r}…"
        for where, text in texts.items()
        for what, value in secrets.items()
        if value in text
    ]


async def test_a_whole_job_at_debug_level_shows_no_secret(
    world: World, debug_log: Everything
) -> None:
    emu = world.emu
    await world.add_lora("clay", triggers=("CLAY",))
    await world.restart()  # login, IDENTIFY, command sync and recovery, all at DEBUG
    ix = await world.edit(prompt="a clay cat", images=[png(700, 500)], lora="clay")
    assert "is on its way" in await world.reply_text(ix)
    result = await world.result()
    rerun = await emu.click(emu.member("bob"), result, f"job:{1}:rerun")
    assert "Rerun started as edit #2" in await world.reply_text(rerun)
    await world.job_in(2, "delivered")
    usage = await emu.slash(emu.member("carol"), emu.channel("general"), "admin usage")
    await world.reply_text(usage)  # a CSV file as well
    jobs = await emu.slash(emu.member("alice"), emu.channel("general"), "jobs")
    await world.reply_text(jobs)

    # fal refuses the input (422), then fails a job at its infrastructure: both are logged.
    world.fal.script_faults("submit", "ingress_502")
    world.fal.runner_failure_rate = 1.0
    ix = await world.edit(prompt="this one fails", images=[png(640, 480, (9, 9, 9))])
    assert "is on its way" in await world.reply_text(ix)
    await world.job_in(3, "failed")
    world.fal.runner_failure_rate = 0.0

    assert len(debug_log.lines) > 100, "DEBUG logging was not on"
    assert any(line.startswith("discord.gateway") for line in debug_log.lines)
    assert any(line.startswith("httpx") or line.startswith("httpcore") for line in debug_log.lines)
    texts = everything_visible(world) | {f"log line {i}": t for i, t in enumerate(debug_log.lines)}
    assert leaks(texts, secrets_of(emu, world.fal)) == []


async def test_rejected_fal_key_and_discord_token_show_no_secret(
    world: World, debug_log: Everything, discord_emulator: DiscordEmulator, tmp_path: Path
) -> None:
    emu = world.emu
    wrong_key = "wrongkeyid:wrong-secret-0123456789abcdef"
    world.settings = world.settings.model_copy(update={"fal_key": SecretStr(wrong_key)})
    await world.restart()
    ix = await world.edit(prompt="fal says 401", images=[png(660, 500)])
    text = await world.reply_text(ix)
    assert "nothing was charged" in text or "not charged" in text, text
    assert world.fal.submissions() == []

    # A bot started with a token Discord rejects: the login fails, the token stays unshown.
    wrong_token = "MTIzNDU2Nzg5.bad.c2VjcmV0LXRva2VuLXNpZ25hdHVyZQ"
    await emu.stop_bot()
    bad = world.make_bot()
    with pytest.raises(Exception) as failure:
        await bad.login(wrong_token)
    await bad.close()
    texts = everything_visible(world) | {f"log line {i}": t for i, t in enumerate(debug_log.lines)}
    texts["login failure"] = f"{failure.value!r} {failure.value}"
    found = leaks(
        texts,
        secrets_of(emu, world.fal, wrong_key, wrong_key.split(":")[1], wrong_token, "c2VjcmV0"),
    )
    assert found == []


def test_malformed_settings_never_echo_the_secret() -> None:
    token, key = "Bot s3cr3t-t0ken value", "no-colon-s3cr3t-key"
    with pytest.raises(ValidationError) as failure:
        Settings(discord_token=token, fal_key=key, _env_file=None)  # type: ignore[call-arg]
    lines = describe_settings_error(failure.value)
    assert len(lines) == 2
    assert "DISCORD_TOKEN is malformed" in lines[0] and "FAL_KEY is malformed" in lines[1]
    shown = "\n".join(lines) + str(failure.value) + repr(failure.value)
    for secret in ("s3cr3t-t0ken", "no-colon-s3cr3t-key"):
        assert secret not in shown
    settings = Settings(discord_token="abc.def.ghi", fal_key="id:s3cr3t", _env_file=None)  # type: ignore[call-arg]
    assert "s3cr3t" not in repr(settings) and "abc.def.ghi" not in str(settings.model_dump())
