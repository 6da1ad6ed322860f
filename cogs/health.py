"""`/healthz` and `/metrics` on METRICS_PORT, for the operator's probes and Prometheus; the
event-loop lag monitor runs while this extension is loaded, from start-up until close.

Health is per process: it covers the shards this process runs (SHARD_IDS of SHARD_COUNT).
`/healthz` answers `ok` or 503 with the reasons; `/healthz?verbose` adds one line per check,
each shard with its gateway state and heartbeat latency.

With FAL_WEBHOOK_URL, the same server (or one of its own on WEBHOOK_PORT) also serves fal's
webhooks at /fal/webhook (cogs/utils/fal_webhook.py)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web
from discord.ext import commands
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cogs.utils.fal_webhook import FalWebhookRoute
from cogs.utils.heartbeat import record_heartbeats_on_the_loop
from cogs.utils.loop_lag import LoopLagMonitor

if TYPE_CHECKING:
    from bot import FluxBot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardState:
    id: int
    count: int | None
    connected: bool
    latency: float | None  # seconds; None before the first heartbeat was answered

    def describe(self) -> str:
        state = "connected" if self.connected else "disconnected"
        if self.latency is not None:
            state += f", latency {self.latency * 1000:.0f} ms"
        return f"shard {self.id} of {self.count or '?'}: {state}"


class Health(commands.Cog):
    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot
        self._ready_shards: set[int] = set()  # READY or RESUMED, not disconnected since
        self._runner: web.AppRunner | None = None
        self._webhook_runner: web.AppRunner | None = None
        self.port: int | None = None
        self.webhook_port: int | None = None  # where fal's webhooks are served, if they are
        self.loop_lag = LoopLagMonitor(bot.metrics.loop_lag)

    async def cog_load(self) -> None:
        self.loop_lag.start()
        settings = self.bot.settings
        verifier = self.bot.parts.webhooks
        webhook = FalWebhookRoute(verifier, self.bot.jobs) if verifier is not None else None
        shared = webhook if settings.webhook_port is None else None
        port = settings.metrics_port
        if port is not None:
            app = web.Application(client_max_size=shared.max_body if shared else 1024**2)
            app.router.add_get("/healthz", self.healthz)
            app.router.add_get("/metrics", self.metrics)
            if shared is not None:
                shared.add_to(app)
            self._runner, self.port = await _serve(app, settings.metrics_host, port)
            log.info("health and metrics on port %s", self.port)
            if shared is not None:
                self.webhook_port = self.port
        if webhook is not None and settings.webhook_port is not None:
            app = web.Application(client_max_size=webhook.max_body)
            webhook.add_to(app)
            self._webhook_runner, self.webhook_port = await _serve(
                app, settings.webhook_host, settings.webhook_port
            )
        if webhook is not None:
            log.info("fal webhooks on port %s at /fal/webhook", self.webhook_port)

    async def cog_unload(self) -> None:
        await self.loop_lag.stop()
        for runner in (self._webhook_runner, self._runner):
            if runner is not None:
                await runner.cleanup()

    @commands.Cog.listener()
    async def on_shard_connect(self, shard_id: int) -> None:
        self._ready_shards.add(shard_id)

    @commands.Cog.listener()
    async def on_shard_resumed(self, shard_id: int) -> None:
        self._ready_shards.add(shard_id)

    @commands.Cog.listener()
    async def on_shard_disconnect(self, shard_id: int) -> None:
        self._ready_shards.discard(shard_id)

    def shards(self) -> list[ShardState]:
        """Every shard this process runs, with its gateway state (also into the metrics)."""
        running = self.bot.shards
        states = []
        for shard_id in self.bot.own_shards() or sorted(running):
            info = running.get(shard_id)
            connected = (
                info is not None
                and not info.is_closed()
                and shard_id in self._ready_shards
                and not self.bot.is_closed()
            )
            latency = info.latency if info is not None else math.inf
            states.append(
                ShardState(
                    shard_id,
                    self.bot.shard_count,
                    connected,
                    latency if math.isfinite(latency) else None,
                )
            )
            label = str(shard_id)
            self.bot.metrics.gateway_connected.labels(label).set(1 if connected else 0)
            if math.isfinite(latency):
                self.bot.metrics.gateway_latency.labels(label).set(latency)
        return states

    async def healthz(self, request: web.Request) -> web.Response:
        problems = []
        shards = self.shards()
        down = [s.id for s in shards if not s.connected]
        if not shards or self.bot.is_closed() or len(down) == len(shards):
            problems.append("gateway disconnected")
        elif down:
            names = ", ".join(str(d) for d in down)
            problems.append(f"gateway disconnected on shard{'s' if len(down) > 1 else ''} {names}")
        database = "database: writable"
        try:
            await self.bot.jobs.probe_storage()
        except Exception:
            log.warning("health check could not write to the database", exc_info=True)
            problems.append("database not writable")
            database = "database: not writable"
        status, text = (503, "; ".join(problems)) if problems else (200, "ok")
        if "verbose" in request.query:
            text = "\n".join([text, *(s.describe() for s in shards), database])
        return web.Response(status=status, text=text + "\n")

    async def metrics(self, _request: web.Request) -> web.Response:
        self.shards()  # the gateway gauges as of now
        body = generate_latest(self.bot.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving `app`; the runner and the port it listens on (the real one when 0 was
    asked)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    addresses = runner.addresses
    return runner, int(addresses[0][1]) if addresses else port


async def setup(bot: FluxBot) -> None:
    record_heartbeats_on_the_loop()  # before the gateway connects: a true bot.latency
    await bot.add_cog(Health(bot))
