"""fal's webhook deliveries, from the listener to the task that drives the job
(docs/fal-webhooks.md, "How the bot receives them").

`receive` is the one entry point of the listener: the delivery (already verified) is stored
with the job's row in the database before the listener answers fal, so nothing is lost once
fal hears 200. Then, if this process is waiting on that job, the delivery is handed to the
waiting task in memory. A job driven by another process (a reverse proxy in front of a
cluster may send the webhook anywhere) finds it in the database: each process checks the
deliveries of all the jobs it waits on with one query every `CHECK_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from client.webhooks import WebhookDelivery
from jobs.context import JobContext
from storage.deliveries import Outcome, StoredDelivery

log = logging.getLogger(__name__)

# How often a process of a cluster looks for deliveries another process received for the jobs
# it waits on: one query for all of them, so the cost does not grow with the jobs in flight.
CHECK_SECONDS = 1.0


class Deliveries:
    def __init__(self, ctx: JobContext) -> None:
        self._ctx = ctx
        self._waiting: dict[int, asyncio.Future[StoredDelivery]] = {}
        self._checker: asyncio.Task[None] | None = None

    @property
    def url(self) -> str | None:
        """Where fal is asked to deliver; None when webhooks are off."""
        return self._ctx.config.fal_webhook_url

    async def receive(self, delivery: WebhookDelivery) -> Outcome:
        """Record a verified delivery; `unknown` when no job has its request id, `past` when
        its job no longer waits for fal (a copy, a retry or a replay: nothing changes)."""
        recorded = await self._ctx.storage.deliveries.record(
            delivery.request_id,
            delivery.ok,
            delivery.model_dump_json(),
            now=self._ctx.now(),
        )
        log.info(
            "fal webhook for %s (%s): %s job %s",
            delivery.request_id,
            delivery.status,
            recorded.outcome,
            recorded.job_id,
        )
        if recorded.outcome == "recorded" and recorded.job_id is not None:
            self._hand_over(
                StoredDelivery(
                    delivery.request_id,
                    recorded.job_id,
                    delivery.ok,
                    delivery.model_dump_json(),
                )
            )
        return recorded.outcome

    async def wait(self, job_id: int, within: float) -> StoredDelivery | None:
        """The job's delivery once there is one (received here or by another process, now or
        before a restart); None after `within` seconds without."""
        waiter: asyncio.Future[StoredDelivery] = asyncio.get_running_loop().create_future()
        self._waiting[job_id] = waiter
        try:
            # Registered first, so a delivery recorded meanwhile is either seen here or handed
            # to the waiter.
            stored = await self._ctx.storage.deliveries.for_job(job_id)
            if stored is not None:
                return stored
            if not self._ctx.config.sole_process:
                self._check_others()
            try:
                async with asyncio.timeout(within):
                    found: StoredDelivery = await waiter
                    return found
            except TimeoutError:
                return None
        finally:
            if self._waiting.get(job_id) is waiter:
                del self._waiting[job_id]

    async def forget(self, job_id: int) -> None:
        """The job has moved on: its delivery is no longer needed."""
        await self._ctx.storage.deliveries.forget(job_id)

    async def close(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
            self._checker = None

    def _hand_over(self, stored: StoredDelivery) -> None:
        waiter = self._waiting.get(stored.job_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(stored)

    def _check_others(self) -> None:
        if self._checker is None or self._checker.done():
            self._checker = asyncio.create_task(self._check_loop(), name="fal-webhook-check")

    async def _check_loop(self) -> None:
        """While jobs wait here, pick up what other processes recorded for them."""
        while self._waiting:
            await asyncio.sleep(CHECK_SECONDS)
            try:
                found = await self._ctx.storage.deliveries.for_jobs(list(self._waiting))
            except Exception:
                log.warning("could not look for recorded fal webhooks", exc_info=True)
                continue
            for stored in found.values():
                self._hand_over(stored)
