"""`JobService`: the domain's one front door. It builds the rooms of the job lifecycle and
hands each caller the piece it needs; the rules live in the rooms, not here.

    admission → runner (at_fal → outputs) → delivery, with status and transitions beside them;
    trainer (pairs checked, priced, confirmed) → the same runner → trained (registry, sample);
    registry, server_policy and usage for what managers and members change and read;
    setup_check, spend and alerts for the first five minutes and the money at a glance;
    sweeps (a group of jobs) → sheets (their one contact sheet), presets and compare.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from client.fal import FalClient
from client.webhooks import WebhookDelivery
from jobs.admission import Admission, Started
from jobs.alerts import BudgetAlerts
from jobs.at_fal import AtFal
from jobs.compare import Compare
from jobs.context import JobConfig, JobContext
from jobs.delivery import Deliverer
from jobs.draft_pairs import DraftPairs
from jobs.fair_queue import FairQueue
from jobs.forms import FormDrafts
from jobs.inputs import InputFile, Inputs
from jobs.leases import Leases
from jobs.metrics import Metrics
from jobs.outputs import Outputs
from jobs.policy import Requester
from jobs.presets import Presets
from jobs.publisher import Publisher
from jobs.records import AnyJob, EditJob, JobStorage
from jobs.registry import Registry
from jobs.request import EditOptions, InputRef
from jobs.reruns import Reruns
from jobs.runner import Runner
from jobs.server_policy import ServerPolicy
from jobs.setup_check import SetupCheck
from jobs.sheets import Sheets
from jobs.spend import SpendViews
from jobs.status import StatusBoard
from jobs.sweeps import Sweeps
from jobs.trained import TrainedDelivery
from jobs.trainer import Trainer
from jobs.transitions import Transitions
from jobs.usage import UsageViews
from jobs.webhooks import Deliveries
from storage.deliveries import Outcome
from storage.models import JobState

__all__ = ["InputFile", "JobConfig", "JobService", "Started"]


class JobService:
    def __init__(
        self,
        storage: JobStorage,
        fal: FalClient,
        publisher: Publisher,
        config: JobConfig,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        ctx = JobContext(
            storage=storage,
            fal=fal,
            publisher=publisher,
            config=config,
            metrics=self.metrics,
            now=now,
            rng=rng or random.SystemRandom(),
            trainer=fal.for_endpoint(config.trainer_endpoint),
        )
        self._ctx = ctx
        self.storage, self.fal, self.publisher, self.config = storage, fal, publisher, config
        self.transitions = Transitions(ctx)
        self.status = StatusBoard(ctx, self.transitions)
        outputs = Outputs(ctx)
        deliverer = Deliverer(ctx, self.transitions, self.status, outputs)
        self.deliveries = Deliveries(ctx)
        at_fal = AtFal(ctx, self.transitions, self.status, outputs, self.deliveries)
        self.queue = FairQueue(ctx, self.transitions, self.status)
        self.runner = Runner(ctx, self.transitions, self.status, at_fal, deliverer, self.queue)
        self.inputs = Inputs(ctx)
        self.sheets = Sheets(ctx, self.transitions, outputs, self.inputs)
        self.registry = Registry(storage.loras, config.max_loras_per_server, storage.trainings)
        self.policy = ServerPolicy(storage.settings, storage.quotas)
        self.usage = UsageViews(storage, self.policy)
        self.presets = Presets(storage.presets, storage.loras)
        self.admission = Admission(
            ctx, self.inputs, self.registry, self.runner, self.status, self.presets
        )
        self.reruns = Reruns(ctx, self.admission, self.registry)
        self.compare = Compare(ctx, self.reruns)
        self.sweeps = Sweeps(
            ctx, self.admission, self.inputs, self.registry, self.reruns, self.runner, self.sheets
        )
        self.forms = FormDrafts(storage.settings)
        self.setup = SetupCheck(storage)
        self.spend = SpendViews(storage, now)
        self.pairs = DraftPairs(ctx, self.inputs, self.policy)
        self.training = Trainer(ctx, self.inputs, self.policy, self.pairs, self.runner, self.status)
        deliverer.on_trainings(
            TrainedDelivery(ctx, self.transitions, self.status, self.admission).deliver
        )
        self.alerts = BudgetAlerts(ctx, self.policy)
        ctx.notices.listen(self.alerts)
        self.leases = Leases(ctx, self._take_over, self.runner.stop, self.runner.driving)

    # ------------------------------------------------------------------ starting work

    async def start_edit(
        self,
        who: Requester,
        options: EditOptions,
        files: Sequence[InputFile],
        *,
        parent_job_id: int | None = None,
    ) -> Started:
        return await self.admission.start_edit(who, options, files, parent_job_id=parent_job_id)

    async def prepare_inputs(self, files: Sequence[InputFile]) -> list[InputRef]:
        return await self.inputs.prepare(files)

    # ------------------------------------------------------------------ results

    async def result_job(self, who: Requester, job_id: int) -> EditJob:
        return await self.reruns.result_job(who, job_id)

    async def rerun(
        self,
        job_id: int,
        who: Requester,
        *,
        seed: int | None = None,
        prompt: str | None = None,
        scales: dict[str, float] | None = None,
        first_input: InputRef | None = None,
    ) -> EditJob:
        return await self.reruns.rerun(
            job_id, who, seed=seed, prompt=prompt, scales=scales, first_input=first_input
        )

    async def cancel(self, job_id: int, who: Requester) -> AnyJob:
        return await self.runner.cancel(job_id, who)

    # ------------------------------------------------------------------ the process

    async def recover(self) -> int:
        """Take over what this process drives after a (re)start, then keep its leases."""
        ids = await self.leases.take_over_at_start()
        self.runner.drive(ids)
        if self.config.sole_process:
            swept = await self.sheets.recover()
        else:
            swept = await self.sheets.adopted(ids)
        self.leases.start()
        return len(ids) + swept

    async def _take_over(self, job_ids: list[int]) -> None:
        self.runner.drive(job_ids)
        await self.sheets.adopted(job_ids)

    async def fal_webhook(self, delivery: WebhookDelivery) -> Outcome:
        """A verified fal webhook, recorded before the listener answers (jobs/webhooks.py)."""
        return await self.deliveries.receive(delivery)

    async def probe_storage(self) -> None:
        """A small write, so a health check learns whether the database still takes writes."""
        await self.storage.settings.set_meta("healthz", self._ctx.now().isoformat())

    async def wait_for_state(self, job_id: int, *states: JobState) -> AnyJob:
        return await self.transitions.wait_for_state(job_id, *states)

    async def wait_idle(self) -> None:
        await self.runner.wait_idle()
        await self.sheets.wait_idle()
        await self._ctx.notices.wait_idle()

    async def close(self) -> None:
        try:
            await self.leases.close(release=False)  # adopts nothing more
            await self.runner.close()
            await self.queue.close()
            await self.sheets.close()
            # Every job stopped with its state stored: another process may go on at once.
            await self.leases.close(release=True)
            await self.deliveries.close()
        finally:
            await self._ctx.notices.close()
