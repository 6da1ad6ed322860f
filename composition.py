"""Where the bot's parts are built, in one place outside the Bot class: storage, the fal
client, metrics, the Discord publisher and the job service (docs/architecture.md, "Layers").

The Bot only asks for them in `setup_hook` (they need the running loop) and closes them once.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any

import httpx
from discord.ext import commands

from client.fal import FalClient
from client.webhooks import URL_DELIVERY_BYTES, WebhookVerifier
from cogs.utils.publisher import DiscordPublisher
from jobs.context import JobConfig
from jobs.metrics import Metrics
from jobs.records import AnyJob, JobStorage
from jobs.service import JobService
from settings import Settings
from storage import Storage
from storage.leases import LeaseTerms

log = logging.getLogger(__name__)

JWKS_PATH = "/.well-known/jwks.json"


@dataclass
class Parts:
    storage: JobStorage
    fal: FalClient
    publisher: DiscordPublisher
    jobs: JobService
    webhooks: WebhookVerifier | None = None  # with FAL_WEBHOOK_URL: checks fal's deliveries
    webhook_http: httpx.AsyncClient | None = None  # fetches fal's webhook keys
    closed: bool = False

    async def close(self) -> None:
        """Stop driving jobs first (their state is stored), then the clients they use. Once."""
        if self.closed:
            return
        self.closed = True
        try:
            await self.jobs.close()
        finally:
            try:
                await self.fal.aclose()
                if self.webhook_http is not None:
                    await self.webhook_http.aclose()
            finally:
                await self.storage.close()


async def build_parts(
    bot: commands.AutoShardedBot,
    settings: Settings,
    metrics: Metrics,
    *,
    fal_options: dict[str, Any] | None = None,
) -> Parts:
    """Open the database (migrating it), make the fal client and wire the job service to the
    Discord publisher. No network call happens here."""
    lease = LeaseTerms(
        instance=settings.lease_instance(),
        boot=f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}",
        seconds=settings.lease_seconds,
    )
    storage = await Storage.open(
        settings.database_location(),
        pool_size=settings.database_pool_size,
        job_model=AnyJob,
        lease=lease,
    )
    try:
        fal = FalClient(
            settings.fal_url("fal_queue_url"),
            settings.fal_url("fal_rest_url"),
            settings.fal_url("fal_cdn_url"),
            settings.fal_key.get_secret_value(),
            settings.fal_endpoint,
            **(fal_options or {}),  # tests: faster polling and retries
        )
    except BaseException:
        await storage.close()
        raise
    fal.on_ambiguous_submit = lambda reason: metrics.fal_ambiguous_submits.labels(
        reason=reason
    ).inc()
    publisher = DiscordPublisher(bot, metrics)
    jobs = JobService(
        storage,
        fal,
        publisher,
        JobConfig(
            outputs_dir=settings.database_path.parent / "outputs",
            job_timeout=float(settings.job_timeout_seconds),
            training_timeout=float(settings.training_timeout_seconds),
            trainer_endpoint=settings.fal_trainer_endpoint,
            training_price_per_step=settings.training_price_per_step_usd,
            max_loras_per_server=settings.max_loras_per_server,
            lease_seconds=settings.lease_seconds,
            fal_max_concurrent=settings.fal_max_concurrent,
            # One SQLite file is one process: it takes every job at start.
            sole_process=storage.backend == "sqlite",
            fal_webhook_url=str(settings.fal_webhook_url) if settings.fal_webhook_url else None,
            webhook_grace=settings.fal_webhook_grace_seconds,
        ),
        metrics=metrics,
    )
    parts = Parts(storage=storage, fal=fal, publisher=publisher, jobs=jobs)
    if settings.fal_webhook_url is not None:
        # fal publishes its keys on its REST host (docs/fal-webhooks.md, "The keys"); edits
        # followed by webhook ask for URL results, so a delivery is small.
        parts.webhook_http = httpx.AsyncClient(timeout=10.0)
        parts.webhooks = WebhookVerifier(
            parts.webhook_http,
            settings.fal_url("fal_rest_url") + JWKS_PATH,
            max_body=URL_DELIVERY_BYTES,
        )
    return parts
