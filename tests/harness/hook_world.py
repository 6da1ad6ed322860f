"""A `World` whose bot follows edits by fal webhook (FAL_WEBHOOK_URL set, its listener on a
port of its own), and ways to send it deliveries of our own: signed with the fal emulator's
key as fal would, or not."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx

from emulators.discord_emulator import DiscordEmulator
from emulators.fal_emulator.jobs import Job
from emulators.fal_emulator.server import FalEmulator
from emulators.fal_emulator.webhooks import (
    REQUEST_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    USER_ID_HEADER,
    delivery_body,
    signed_message,
)
from tests.harness.e2e import World, start_world


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_hook_world(
    discord_emulator: DiscordEmulator,
    fal_emulator: FalEmulator,
    folder: Path,
    database_url: str | None = None,
    *,
    grace: float = 60.0,
    **overrides: Any,
) -> World:
    """The bot with webhooks on: fal is told to call http://127.0.0.1:<port>/fal/webhook."""
    port = free_port()
    return await start_world(
        discord_emulator,
        fal_emulator,
        folder,
        database_url,
        fal_webhook_url=f"http://127.0.0.1:{port}/fal/webhook",
        webhook_host="127.0.0.1",
        webhook_port=port,
        fal_webhook_grace_seconds=grace,
        **overrides,
    )


def webhook_url(world: World) -> str:
    return str(world.settings.fal_webhook_url)


def signed_headers(
    fal: FalEmulator, request_id: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    """The headers fal sends with `body`, signed with the emulator's current key."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    message = signed_message(request_id, fal.user_id, stamp, body)
    return {
        "Content-Type": "application/json",
        REQUEST_ID_HEADER: request_id,
        USER_ID_HEADER: fal.user_id,
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: fal.webhook_keys.sign(message),
    }


def delivery_bytes(job: Job, **changes: Any) -> bytes:
    """The body fal delivers when `job` ends, with `changes` to its fields."""
    return json.dumps({**delivery_body(job), **changes}).encode()


async def post(world: World, body: bytes, headers: dict[str, str]) -> int:
    """POST to the bot's webhook route; the status it answered."""
    async with httpx.AsyncClient() as http:
        response = await http.post(webhook_url(world), content=body, headers=headers)
        return response.status_code
