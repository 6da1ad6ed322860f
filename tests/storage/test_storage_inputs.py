"""Re-hosted inputs, deduplicated by SHA-256."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from pydantic import ValidationError

from storage import Storage, StoredInput
from tests.harness.storage_fixtures import T0

# An exception in a storage thread (say, reporting into a closed loop) fails the test.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

SHA = "a" * 64


async def test_inputs_put_is_idempotent_and_first_record_wins(storage: Storage) -> None:
    first = StoredInput(
        sha256=SHA.upper(),
        url="https://v3.fal.media/files/first.png",
        content_type="image/png",
        byte_size=123_456,
        width=1024,
        height=768,
        created_at=T0,
    )
    second = first.model_copy(
        update={"url": "https://v3.fal.media/files/second.png", "created_at": T0 + timedelta(1)}
    )

    assert await storage.inputs.get(SHA) is None
    stored = await storage.inputs.put(first)
    again = await asyncio.gather(storage.inputs.put(second), storage.inputs.put(first))

    assert stored == first and stored.sha256 == SHA
    assert again == [first, first]
    assert await storage.inputs.get(SHA.upper()) == first


def test_stored_input_rejects_a_malformed_hash() -> None:
    with pytest.raises(ValidationError):
        StoredInput(
            sha256="not-a-hash",
            url="https://x",
            content_type="image/png",
            byte_size=1,
            width=1,
            height=1,
            created_at=T0,
        )
