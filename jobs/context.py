"""What every room of the job lifecycle shares: storage, fal, the publisher, settings, clock,
and the notices that budget alerts listen to."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from client.fal import TRAINER_ENDPOINT, FalClient
from jobs.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from jobs.metrics import Metrics
from jobs.notices import Notices
from jobs.publisher import Publisher
from jobs.records import AnyJob, JobStorage, is_training
from jobs.training import DEFAULT_PRICE_PER_STEP_USD


@dataclass(frozen=True, slots=True)
class JobConfig:
    outputs_dir: Path
    job_timeout: float = 900.0
    training_timeout: float = 10_800.0
    trainer_endpoint: str = TRAINER_ENDPOINT
    training_price_per_step: float = DEFAULT_PRICE_PER_STEP_USD
    max_input_bytes: int = DEFAULT_MAX_BYTES
    max_input_pixels: int = DEFAULT_MAX_PIXELS
    max_loras_per_server: int = 100
    # Leases (jobs/leases.py): how often they are renewed and expired ones looked for, and
    # whether this is the only process there is (SQLite), which takes every job at start.
    lease_seconds: float = 30.0
    sole_process: bool = True
    # The fair queue (jobs/fair_queue.py): at most this many jobs at fal at once across every
    # process; 0 sends every job at once, as fal's own queue takes them.
    fal_max_concurrent: int = 10
    # fal webhooks (docs/fal-webhooks.md, "How the bot receives them"): where fal tells an
    # edit's end, and how long an edit waits for that before asking fal itself.
    fal_webhook_url: str | None = None
    webhook_grace: float = 60.0


@dataclass(frozen=True, slots=True)
class JobContext:
    storage: JobStorage
    fal: FalClient
    publisher: Publisher
    config: JobConfig
    metrics: Metrics
    now: Callable[[], datetime]
    rng: random.Random
    notices: Notices = field(default_factory=Notices)  # budget alerts listen here
    trainer: FalClient | None = None  # the edit trainer's endpoint (same account)

    def fal_for(self, job: AnyJob) -> FalClient:
        """The client of the endpoint this job runs on."""
        if is_training(job):
            if self.trainer is None:
                raise RuntimeError("no fal client for the edit trainer")
            return self.trainer
        return self.fal

    def new_seed(self) -> int:
        return self.rng.randrange(0, 2**32)
