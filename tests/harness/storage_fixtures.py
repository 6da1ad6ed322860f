"""Fixtures for storage tests: a real SQLite file per test, and a controllable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage import NewJob, QuotaLimits, Storage

T0 = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)


@pytest.fixture
def storage_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "bot.sqlite3"


@pytest.fixture
async def storage(storage_path: Path) -> AsyncIterator[Storage]:
    opened = await Storage.open(storage_path)
    try:
        yield opened
    finally:
        await opened.close()


def make_job(
    *,
    guild_id: int = 1,
    user_id: int = 100,
    channel_id: int = 10,
    images: int = 1,
    cost_usd: float = 0.042,
    parent_job_id: int | None = None,
    now: datetime = T0,
    **extra: object,
) -> NewJob:
    return NewJob.model_validate(
        {
            "guild_id": guild_id,
            "channel_id": channel_id,
            "user_id": user_id,
            "request": {"prompt": "make the sky purple", "loras": ["Anime"]},
            "fal_input": {"prompt": "make the sky purple", "image_urls": ["https://x/y.png"]},
            "images": images,
            "cost_usd": cost_usd,
            "parent_job_id": parent_job_id,
            "deadline_at": now + timedelta(minutes=15),
            **extra,
        }
    )


def limits(
    images: int | None = 10,
    *,
    window_seconds: int = 86_400,
    in_flight: int | None = None,
    budget: float | None = None,
) -> QuotaLimits:
    return QuotaLimits(
        images_per_window=images,
        window_seconds=window_seconds,
        max_in_flight=in_flight,
        monthly_budget_usd=budget,
    )
