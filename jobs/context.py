"""What every room of the job lifecycle shares: storage, fal, the publisher, settings, clock,
and the notices that budget alerts listen to."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from client.fal import FalClient
from jobs.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from jobs.metrics import Metrics
from jobs.notices import Notices
from jobs.publisher import Publisher
from jobs.records import EditStorage


@dataclass(frozen=True, slots=True)
class JobConfig:
    outputs_dir: Path
    job_timeout: float = 900.0
    max_input_bytes: int = DEFAULT_MAX_BYTES
    max_input_pixels: int = DEFAULT_MAX_PIXELS
    max_loras_per_server: int = 100


@dataclass(frozen=True, slots=True)
class JobContext:
    storage: EditStorage
    fal: FalClient
    publisher: Publisher
    config: JobConfig
    metrics: Metrics
    now: Callable[[], datetime]
    rng: random.Random
    notices: Notices = field(default_factory=Notices)  # budget alerts listen here

    def new_seed(self) -> int:
        return self.rng.randrange(0, 2**32)
