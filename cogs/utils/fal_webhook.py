"""The `/fal/webhook` route: an adapter from aiohttp to the job service (docs/fal-webhooks.md,
"How the bot receives them"). It verifies fal's signature before anything else, hands the
delivery to `JobService.fal_webhook` (which records it) and answers: 200 once recorded (or when
the job is already past that step: fal stops retrying), 404 for a request no job has, the
verifier's 4xx for anything not proven to come from fal. It decides nothing else."""

from __future__ import annotations

import logging

from aiohttp import web

from client.webhooks import WebhookRejected, WebhookVerifier
from jobs.service import JobService

log = logging.getLogger(__name__)

PATH = "/fal/webhook"


class FalWebhookRoute:
    def __init__(self, verifier: WebhookVerifier, jobs: JobService) -> None:
        self._verifier = verifier
        self._jobs = jobs

    @property
    def max_body(self) -> int:
        """What the server must let through (aiohttp's `client_max_size`)."""
        return self._verifier.max_body

    def add_to(self, app: web.Application) -> None:
        app.router.add_post(PATH, self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        length = request.content_length
        if length is not None and length > self._verifier.max_body:
            log.warning("fal webhook rejected: too_large (%d bytes announced)", length)
            return web.Response(status=413, text="too_large\n")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            log.warning("fal webhook rejected: too_large")
            return web.Response(status=413, text="too_large\n")
        try:
            delivery = await self._verifier.verify(request.headers, body)
        except WebhookRejected as rejected:
            return web.Response(status=rejected.status, text=f"{rejected.reason}\n")
        outcome = await self._jobs.fal_webhook(delivery)
        if outcome == "unknown":
            return web.Response(status=404, text="unknown request\n")
        return web.Response(status=200, text="ok\n")
