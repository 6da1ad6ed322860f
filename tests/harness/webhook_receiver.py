"""A webhook receiver on 127.0.0.1 for tests: it records every POST (headers and the raw body,
exactly as they arrived) and answers as told, so a test can play the bot's side of a fal
webhook over a real socket.

    async with WebhookReceiver() as receiver:
        ... submit with webhook_url=receiver.url ...
        delivery = await receiver.wait_for(1)
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from multidict import CIMultiDict


@dataclass
class Received:
    headers: CIMultiDict[str]
    body: bytes


class WebhookReceiver:
    def __init__(self, *, path: str = "/fal/webhook") -> None:
        self.path = path
        self.received: list[Received] = []
        # Answers for the next deliveries, in order; then `default_status`. An answer of None
        # never answers (the sender's timeout fires).
        self.script: collections.deque[int | None] = collections.deque()
        self.default_status = 200
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        self._hung = asyncio.Event()

    async def __aenter__(self) -> WebhookReceiver:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post(self.path, self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}{self.path}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._hung.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(CIMultiDict(request.headers), await request.read()))
        self._changed.set()
        self._changed = asyncio.Event()
        status = self.script.popleft() if self.script else self.default_status
        if status is None:
            await self._hung.wait()
            status = 200
        return web.Response(status=status, text="ok")

    async def wait_for(self, count: int, within: float = 10.0) -> list[Received]:
        """Wait until `count` deliveries have arrived; returns them all."""
        async with asyncio.timeout(within):
            while len(self.received) < count:
                await self._changed.wait()
        return self.received


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as receiver:
        yield receiver
