"""Pytest fixtures: a running fal emulator, and a `FalClient` pointed at it with fast timings.

Registered in tests/conftest.py (`pytest_plugins`).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import httpx
import pytest

from client.fal import FalClient
from client.retry import RetryPolicy
from client.watch import PollPolicy
from emulators.fal_emulator.server import FalEmulator

# Polls and retries in milliseconds so fault tests finish in well under a second.
FAST_POLL = PollPolicy(
    queued_initial=0.01,
    queued_max=0.05,
    running_initial=0.01,
    running_max=0.05,
    sse_silence_timeout=2.0,
)


def fast_retry(max_attempts: int = 5) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=max_attempts, base_delay=0.005, max_delay=0.02, rng=random.Random(7)
    )


def make_fal_client(
    fal: FalEmulator,
    *,
    key: str | None = None,
    retry: RetryPolicy | None = None,
    poll: PollPolicy = FAST_POLL,
    timeout: httpx.Timeout | None = None,
    http: httpx.AsyncClient | None = None,
) -> FalClient:
    """A client for the emulator; the caller closes it (`async with`)."""
    return FalClient(
        fal.queue_url,
        fal.rest_url,
        fal.cdn_url,
        key or fal.key,
        http=http,
        retry=retry or fast_retry(),
        poll=poll,
        timeout=timeout or httpx.Timeout(5.0, connect=2.0),
    )


# The seed of the emulator in fixtures, so faults drawn at random repeat from run to run.
SEED = 1234


@pytest.fixture
async def fal_emulator() -> AsyncIterator[FalEmulator]:
    async with FalEmulator(seed=SEED) as fal:
        yield fal


@pytest.fixture
async def fal_client(fal_emulator: FalEmulator) -> AsyncIterator[FalClient]:
    async with make_fal_client(fal_emulator) as client:
        yield client
