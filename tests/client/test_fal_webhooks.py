"""WebhookVerifier against the fal emulator's real deliveries and JWKS, over real sockets: a
genuine delivery verifies, every kind of forged, spoiled or oversized one is turned away with
its own reason, and fal's keys are fetched once, refreshed when old, and re-read after a key
rotation (docs/fal-webhooks.md)."""

from __future__ import annotations

import asyncio
import io
import logging
import math
import random
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image

from client.fal import FalClient, RequestHandle
from client.schema import MAX_SIDE, EditInput, EditOutput
from client.webhooks import (
    MAX_DELIVERY_BYTES,
    MAX_KEY_AGE,
    REFETCH_AFTER,
    WebhookRejected,
    WebhookVerifier,
)
from emulators.fal_emulator import FalEmulator, data_uri, make_image
from tests.harness.webhook_receiver import Received, WebhookReceiver


class FakeClock:
    """Unix time that only moves when told; the emulator signs with it, the verifier checks
    with it."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(fal_emulator: FalEmulator) -> FakeClock:
    fake = FakeClock()
    fal_emulator.clock = fake
    return fake


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def jwks_url(fal: FalEmulator) -> str:
    return f"{fal.rest_url}/.well-known/jwks.json"


@pytest.fixture
def verifier(
    fal_emulator: FalEmulator, http: httpx.AsyncClient, clock: FakeClock
) -> WebhookVerifier:
    return WebhookVerifier(http, jwks_url(fal_emulator), clock=clock)


def edit(**overrides: object) -> EditInput:
    fields: dict[str, object] = {
        "prompt": "make it pop",
        "image_urls": [data_uri(make_image((200, 30, 30)), "image/png")],
        "image_size": "square",
        "seed": 11,
    }
    fields.update(overrides)
    return EditInput.model_validate(fields)


async def delivered(
    client: FalClient, receiver: WebhookReceiver, request: EditInput | None = None
) -> tuple[RequestHandle, Received]:
    """Submit with a webhook and wait for its (next) delivery."""
    before = len(receiver.received)
    handle, _ = await client.submit(request or edit(), webhook_url=receiver.url)
    received = await receiver.wait_for(before + 1)
    return handle, received[before]


async def test_a_genuine_delivery_verifies_and_carries_the_edit_output(
    fal_emulator: FalEmulator,
    fal_client: FalClient,
    webhook_receiver: WebhookReceiver,
    verifier: WebhookVerifier,
) -> None:
    handle, received = await delivered(fal_client, webhook_receiver)

    delivery = await verifier.verify(received.headers, received.body)

    assert delivery.ok and delivery.request_id == handle.request_id
    assert delivery.error is None and delivery.payload_error is None
    output = EditOutput.model_validate(delivery.payload)
    assert output == await fal_client.result(handle)
    assert output.seed == 11 and output.images[0].width == 512
    [submit] = fal_emulator.requests_for("submit")
    assert submit.query == {"fal_webhook": webhook_receiver.url}


async def test_a_submit_without_webhook_url_asks_for_none(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    handle, _ = await fal_client.submit(edit())
    await fal_emulator.wait_for_status(handle.request_id, "COMPLETED")

    [submit] = fal_emulator.requests_for("submit")
    assert submit.query == {}
    assert fal_emulator.webhook_attempts == []


async def test_a_webhook_url_that_is_not_http_is_refused_before_sending(
    fal_emulator: FalEmulator, fal_client: FalClient
) -> None:
    with pytest.raises(ValueError, match="http"):
        await fal_client.submit(edit(), webhook_url="ftp://example.invalid/hook")
    assert fal_emulator.count("submit") == 0


async def test_a_failed_request_verifies_as_an_error_delivery(
    fal_client: FalClient, webhook_receiver: WebhookReceiver, verifier: WebhookVerifier
) -> None:
    request = edit(image_urls=["https://127.0.0.1:9/missing.png"])
    handle, received = await delivered(fal_client, webhook_receiver, request)

    delivery = await verifier.verify(received.headers, received.body)

    assert not delivery.ok and delivery.request_id == handle.request_id
    assert delivery.error == "Invalid status code: 422"
    assert isinstance(delivery.payload, dict)
    assert delivery.payload["detail"][0]["type"] == "file_download_error"


@pytest.mark.parametrize(
    ("fault", "reason", "status"),
    [
        ("wrong_key", "bad_signature", 401),
        ("altered_body", "bad_signature", 401),
        ("old_timestamp", "stale_timestamp", 401),
        ("future_timestamp", "future_timestamp", 401),
        ("missing_signature", "missing_header", 401),
        ("not_json", "bad_body", 400),
        ("bad_schema", "bad_body", 400),
    ],
    ids=["forged", "altered-body", "stale", "future", "unsigned", "not-json", "not-a-delivery"],
)
async def test_a_spoiled_delivery_is_rejected_with_its_reason(
    fault: str,
    reason: str,
    status: int,
    fal_emulator: FalEmulator,
    fal_client: FalClient,
    webhook_receiver: WebhookReceiver,
    verifier: WebhookVerifier,
) -> None:
    fal_emulator.webhook_fault = fault
    _, received = await delivered(fal_client, webhook_receiver)

    with pytest.raises(WebhookRejected) as rejected:
        await verifier.verify(received.headers, received.body)

    assert (rejected.value.reason, rejected.value.status) == (reason, status)


@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [
        ("X-Fal-Webhook-Signature", "zz" * 64, "bad_signature_format"),
        ("X-Fal-Webhook-Signature", "ab" * 10, "bad_signature_format"),
        ("X-Fal-Webhook-Timestamp", "yesterday", "bad_timestamp"),
        ("X-Fal-Webhook-User-Id", "", "missing_header"),
        ("X-Fal-Webhook-Request-Id", "another-request", "bad_signature"),
    ],
    ids=["not-hex", "short-signature", "timestamp-not-a-number", "empty-user", "other-request"],
)
async def test_a_genuine_delivery_with_a_spoiled_header_is_rejected(
    header: str,
    value: str,
    reason: str,
    fal_client: FalClient,
    webhook_receiver: WebhookReceiver,
    verifier: WebhookVerifier,
) -> None:
    _, received = await delivered(fal_client, webhook_receiver)
    headers = dict(received.headers)
    headers[header] = value

    with pytest.raises(WebhookRejected) as rejected:
        await verifier.verify(headers, received.body)

    assert rejected.value.reason == reason
    # The untouched delivery still verifies: only the spoiled header was at fault.
    assert (await verifier.verify(received.headers, received.body)).ok


def noise_png(size: int) -> bytes:
    """A picture that does not compress, like a photo's fine detail."""
    rng = random.Random(5)
    image = Image.frombytes("RGB", (size, size), rng.randbytes(size * size * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def test_a_delivery_over_the_size_limit_is_rejected_before_its_signature_is_checked(
    fal_emulator: FalEmulator,
    fal_client: FalClient,
    webhook_receiver: WebhookReceiver,
    http: httpx.AsyncClient,
    clock: FakeClock,
) -> None:
    # A sync-mode result carries its images inline, so a photo-like output is large.
    request = edit(
        image_urls=[data_uri(noise_png(512), "image/png")], sync_mode=True, output_format="png"
    )
    _, received = await delivered(fal_client, webhook_receiver, request)
    assert len(received.body) > 256 * 1024
    small = WebhookVerifier(http, jwks_url(fal_emulator), clock=clock, max_body=256 * 1024)

    with pytest.raises(WebhookRejected) as rejected:
        await small.verify(received.headers, received.body)

    assert (rejected.value.reason, rejected.value.status) == ("too_large", 413)
    assert small.fetches == 0 and fal_emulator.count("jwks") == 0
    default = WebhookVerifier(http, jwks_url(fal_emulator), clock=clock)
    delivery = await default.verify(received.headers, received.body)
    assert EditOutput.model_validate(delivery.payload).images[0].url.startswith("data:image/png")


def test_the_size_limit_holds_the_largest_sync_mode_result() -> None:
    images = EditInput.model_fields["num_images"].metadata[-1].le
    worst_png = MAX_SIDE * (MAX_SIDE * 4 + 1)  # RGBA, no compression, a filter byte a row
    largest = images * math.ceil(worst_png * 4 / 3) + 64 * 1024  # base64 in a JSON body
    assert largest < MAX_DELIVERY_BYTES


async def test_many_deliveries_are_verified_with_one_fetch_of_the_keys(
    fal_emulator: FalEmulator,
    fal_client: FalClient,
    webhook_receiver: WebhookReceiver,
    verifier: WebhookVerifier,
) -> None:
    handles = [
        (await fal_client.submit(edit(seed=n), webhook_url=webhook_receiver.url))[0]
        for n in range(5)
    ]
    received = await webhook_receiver.wait_for(5)

    deliveries = await asyncio.gather(*(verifier.verify(r.headers, r.body) for r in received))

    assert {d.request_id for d in deliveries} == {h.request_id for h in handles}
    assert verifier.fetches == 1 and fal_emulator.count("jwks") == 1


async def test_the_keys_are_fetched_again_once_they_are_older_than_max_age(
    fal_emulator: FalEmulator,
    fal_client: FalClient,
    webhook_receiver: WebhookReceiver,
    verifier: WebhookVerifier,
    clock: FakeClock,
) -> None:
    _, first = await delivered(fal_client, webhook_receiver)
    await verifier.verify(first.headers, first.body)
    clock.advance(MAX_KEY_AGE - 60)
    _, second = await delivered(fal_client, webhook_receiver)
    await verifier.verify(second.headers, second.body)
    assert fal_emulator.count("jwks") == 1

    clock.advance(61)
    _, third = await delivered(fal_client, webhook_receiver)
    assert (await verifier.verify(third.headers, third.body)).ok
    assert verifier.fetches == 2 and fal_emulator.count("jwks") == 2


async def test_a_rotated_key_is_picked_up_by_a_refetch_once_the_cache_is_a_few_minutes_old(
    fal_emulator: FalEmulator,
    fal_client: FalClient,
    webhook_receiver: WebhookReceiver,
    verifier: WebhookVerifier,
    clock: FakeClock,
) -> None:
    _, before = await delivered(fal_client, webhook_receiver)
    await verifier.verify(before.headers, before.body)  # caches the one key published then
    fal_emulator.rotate_webhook_key()

    # Signed with the new key while the cache is fresh: turned away without a fetch storm.
    _, early = await delivered(fal_client, webhook_receiver)
    with pytest.raises(WebhookRejected) as rejected:
        await verifier.verify(early.headers, early.body)
    assert rejected.value.reason == "bad_signature"
    assert fal_emulator.count("jwks") == 1

    # fal's retry comes later; by then the cache is old enough to be checked again.
    clock.advance(REFETCH_AFTER + 1)
    _, retried = await delivered(fal_client, webhook_receiver)
    assert (await verifier.verify(retried.headers, retried.body)).ok
    assert fal_emulator.count("jwks") == 2


async def test_a_delivery_signed_before_a_rotation_verifies_against_either_published_key(
    fal_emulator: FalEmulator,
    fal_client: FalClient,
    webhook_receiver: WebhookReceiver,
    verifier: WebhookVerifier,
) -> None:
    _, old_signed = await delivered(fal_client, webhook_receiver)
    fal_emulator.rotate_webhook_key()
    _, new_signed = await delivered(fal_client, webhook_receiver)

    assert (await verifier.verify(old_signed.headers, old_signed.body)).ok
    assert (await verifier.verify(new_signed.headers, new_signed.body)).ok
    assert verifier.fetches == 1


async def test_keys_that_cannot_be_fetched_ask_fal_to_come_back_later(
    fal_emulator: FalEmulator,
    fal_client: FalClient,
    webhook_receiver: WebhookReceiver,
    http: httpx.AsyncClient,
    clock: FakeClock,
) -> None:
    _, received = await delivered(fal_client, webhook_receiver)
    nowhere = WebhookVerifier(http, f"{fal_emulator.rest_url}/no-keys-here", clock=clock)

    with pytest.raises(WebhookRejected) as rejected:
        await nowhere.verify(received.headers, received.body)

    assert (rejected.value.reason, rejected.value.status) == ("keys_unavailable", 503)


async def test_neither_the_signature_nor_the_keys_reach_the_log(
    fal_emulator: FalEmulator,
    fal_client: FalClient,
    webhook_receiver: WebhookReceiver,
    verifier: WebhookVerifier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    _, good = await delivered(fal_client, webhook_receiver)
    fal_emulator.webhook_fault = "wrong_key"
    _, forged = await delivered(fal_client, webhook_receiver)

    await verifier.verify(good.headers, good.body)
    with pytest.raises(WebhookRejected):
        await verifier.verify(forged.headers, forged.body)

    assert "rejected: bad_signature" in caplog.text
    for secret in (
        good.headers["X-Fal-Webhook-Signature"],
        forged.headers["X-Fal-Webhook-Signature"],
        fal_emulator.webhook_keys.current.jwk["x"],
    ):
        assert secret not in caplog.text
    assert fal_emulator.webhook_keys.current.jwk["x"] not in repr(verifier)


async def test_keys_may_not_be_cached_longer_than_a_day(http: httpx.AsyncClient) -> None:
    with pytest.raises(ValueError, match="24 hours"):
        WebhookVerifier(http, "https://rest.example/.well-known/jwks.json", max_age=MAX_KEY_AGE + 1)
