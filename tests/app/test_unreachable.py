"""Starting with the settings right but a service out of reach: one line that says which
service, where, why, and which setting points there; no traceback."""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot import network_problem

ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def plain_server() -> AsyncIterator[int]:
    """A server that speaks plain TCP where a client expects TLS."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


async def run_bot(tmp_path: Path, *args: str, **env: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bot.py"),
        *args,
        cwd=str(tmp_path),
        env={
            "PATH": "/usr/bin:/bin",
            "DISCORD_TOKEN": "a.test.token",
            "FAL_KEY": "key-id:key-secret",
            "DATABASE_PATH": str(tmp_path / "bot.sqlite3"),
            **env,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_discord_refusing_the_connection_gets_one_line_and_exit_1(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/api/v10"

    code, _, err = await run_bot(tmp_path, DISCORD_API_URL=url)

    assert code == 1
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"Discord could not be reached at {url}: the connection was refused. "
        "Check the machine's network, or DISCORD_API_URL if you set it."
    )


async def test_a_tls_failure_reaching_discord_says_so(tmp_path: Path, plain_server: int) -> None:
    url = f"https://127.0.0.1:{plain_server}/api/v10"

    code, _, err = await run_bot(tmp_path, DISCORD_API_URL=url)

    assert code == 1
    assert "Traceback" not in err
    assert f"Discord could not be reached at {url}: the TLS handshake failed." in err


async def test_check_names_each_unreachable_service_and_its_setting(tmp_path: Path) -> None:
    discord_url = f"http://127.0.0.1:{closed_port()}/api/v10"
    fal_url = f"http://127.0.0.1:{closed_port()}"

    code, out, err = await run_bot(
        tmp_path,
        "check",
        DISCORD_API_URL=discord_url,
        FAL_REST_URL=fal_url,
        FAL_QUEUE_URL=fal_url,
    )

    assert code == 1
    assert "Traceback" not in out + err
    assert (
        f"discord token: Discord could not be reached at {discord_url}: the connection was "
        "refused. Check the machine's network, or DISCORD_API_URL if you set it."
    ) in out
    assert (
        f"fal key: fal could not be reached at {fal_url}: the connection was refused. "
        "Check the machine's network, or FAL_REST_URL if you set it."
    ) in out


@pytest.mark.parametrize(
    ("cause", "words"),
    [
        (socket.gaierror(-2, "Name or service not known"), "could not be resolved (DNS)"),
        (ssl.SSLError(1, "wrong version number"), "TLS handshake failed"),
        (ConnectionRefusedError(111, "refused"), "connection was refused"),
        (TimeoutError(), "timed out"),
    ],
)
def test_the_cause_is_found_however_deep_the_library_wrapped_it(
    cause: BaseException, words: str
) -> None:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise RuntimeError("client wrapper") from inner
    except RuntimeError as wrapped:
        assert words in network_problem(wrapped)
