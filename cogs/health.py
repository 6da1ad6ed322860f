"""`/healthz` and `/metrics` on METRICS_PORT, for the operator's probes and Prometheus; the
event-loop lag monitor runs while this extension is loaded, from start-up until close."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web
from discord.ext import commands
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cogs.utils.heartbeat import record_heartbeats_on_the_loop
from cogs.utils.loop_lag import LoopLagMonitor

if TYPE_CHECKING:
    from bot import FluxBot

log = logging.getLogger(__name__)


class Health(commands.Cog):
    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot
        self.gateway_connected = False
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.loop_lag = LoopLagMonitor(bot.metrics.loop_lag)

    async def cog_load(self) -> None:
        self.loop_lag.start()
        port = self.bot.settings.metrics_port
        if port is None:
            return
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bot.settings.metrics_host, port)
        await site.start()
        addresses = self._runner.addresses  # the real port when 0 was asked
        self.port = int(addresses[0][1]) if addresses else port
        log.info("health and metrics on port %s", self.port)

    async def cog_unload(self) -> None:
        await self.loop_lag.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    @commands.Cog.listener()
    async def on_connect(self) -> None:
        self.gateway_connected = True

    @commands.Cog.listener()
    async def on_resumed(self) -> None:
        self.gateway_connected = True

    @commands.Cog.listener()
    async def on_disconnect(self) -> None:
        self.gateway_connected = False

    async def healthz(self, _request: web.Request) -> web.Response:
        problems = []
        if not self.gateway_connected or self.bot.is_closed():
            problems.append("gateway disconnected")
        try:
            await self.bot.jobs.probe_storage()
        except Exception:
            log.warning("health check could not write to the database", exc_info=True)
            problems.append("database not writable")
        if problems:
            return web.Response(status=503, text="; ".join(problems) + "\n")
        return web.Response(text="ok\n")

    async def metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self.bot.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def setup(bot: FluxBot) -> None:
    record_heartbeats_on_the_loop()  # before the gateway connects: a true bot.latency
    await bot.add_cog(Health(bot))
