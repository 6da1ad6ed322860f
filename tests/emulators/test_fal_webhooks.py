"""The emulator delivers fal's webhooks (docs/fal-webhooks.md): signed deliveries for submits
with `fal_webhook`, a JWKS on the REST host, retries, and the delivery faults tests need.
Checked with raw httpx calls and a direct ED25519 check, so these tests do not depend on our
client or verifier."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from emulators.fal_emulator import FalEmulator, data_uri, make_image
from tests.harness.webhook_receiver import WebhookReceiver

ENDPOINT = "fal-ai/flux-2/lora/edit"


def edit_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "prompt": "make it red",
        "image_urls": [data_uri(make_image((10, 200, 10)), "image/png")],
        "image_size": "square",
        "seed": 3,
    }
    body.update(overrides)
    return body


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


async def submit(
    http: httpx.AsyncClient, fal: FalEmulator, body: object, webhook: str | None
) -> str:
    params = {"fal_webhook": webhook} if webhook else {}
    response = await http.post(
        f"{fal.queue_url}/{ENDPOINT}",
        params=params,
        json=body,
        headers={"Authorization": f"Key {fal.key}"},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["request_id"])


async def published_keys(http: httpx.AsyncClient, fal: FalEmulator) -> dict[str, bytes]:
    """kid → raw public key, from the JWKS the REST host serves."""
    response = await http.get(f"{fal.rest_url}/.well-known/jwks.json")
    assert response.status_code == 200
    keys = {}
    for jwk in response.json()["keys"]:
        assert (jwk["kty"], jwk["crv"]) == ("OKP", "Ed25519")
        keys[jwk["kid"]] = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
    return keys


def signed_by(keys: dict[str, bytes], headers: Mapping[str, str], body: bytes) -> str | None:
    """The kid whose key signed this delivery, or None."""
    message = "\n".join(
        [
            headers["X-Fal-Webhook-Request-Id"],
            headers["X-Fal-Webhook-User-Id"],
            headers["X-Fal-Webhook-Timestamp"],
            hashlib.sha256(body).hexdigest(),
        ]
    ).encode()
    signature = bytes.fromhex(headers["X-Fal-Webhook-Signature"])
    for kid, raw in keys.items():
        try:
            Ed25519PublicKey.from_public_bytes(raw).verify(signature, message)
        except InvalidSignature:
            continue
        return kid
    return None


async def test_a_finished_request_is_delivered_once_signed_with_the_published_key(
    fal_emulator: FalEmulator, http: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    request_id = await submit(http, fal_emulator, edit_body(), webhook_receiver.url)
    [delivery] = await webhook_receiver.wait_for(1)
    await fal_emulator.wait_until(fal_emulator.webhook_idle)

    body = json.loads(delivery.body)
    result = await http.get(
        f"{fal_emulator.queue_url}/fal-ai/flux-2/requests/{request_id}",
        headers={"Authorization": f"Key {fal_emulator.key}"},
    )
    assert body == {
        "request_id": request_id,
        "gateway_request_id": request_id,
        "status": "OK",
        "payload": result.json(),
        "error": None,
        "payload_error": None,
    }
    assert body["payload"]["images"][0]["width"] == 512
    headers = delivery.headers
    assert headers["X-Fal-Webhook-Request-Id"] == request_id
    assert headers["X-Fal-Webhook-User-Id"] == fal_emulator.user_id
    assert abs(int(headers["X-Fal-Webhook-Timestamp"]) - time.time()) < 60
    keys = await published_keys(http, fal_emulator)
    assert signed_by(keys, headers, delivery.body) == fal_emulator.webhook_keys.current.kid
    [attempt] = fal_emulator.webhook_attempts
    assert (attempt.request_id, attempt.attempt, attempt.status, attempt.kind) == (
        request_id,
        1,
        200,
        "delivery",
    )
    assert attempt.url == webhook_receiver.url and attempt.body == delivery.body
    assert fal_emulator.count("jwks") == 1


async def test_a_failed_request_is_delivered_as_an_error_with_its_detail(
    fal_emulator: FalEmulator, http: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    request_id = await submit(
        http, fal_emulator, {"prompt": "no image"}, webhook=webhook_receiver.url
    )
    [delivery] = await webhook_receiver.wait_for(1)

    body = json.loads(delivery.body)
    assert body["status"] == "ERROR" and body["request_id"] == request_id
    assert body["error"] == "Invalid status code: 422"
    assert body["payload"]["detail"][0]["loc"] == ["body", "image_urls"]
    keys = await published_keys(http, fal_emulator)
    assert signed_by(keys, delivery.headers, delivery.body) is not None


async def test_a_runner_failure_is_delivered_with_fals_error_body(
    fal_emulator: FalEmulator, http: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    fal_emulator.runner_failure_rate = 1.0
    await submit(http, fal_emulator, edit_body(), webhook_receiver.url)
    [delivery] = await webhook_receiver.wait_for(1)

    body = json.loads(delivery.body)
    assert body["status"] == "ERROR" and body["error"] == "Invalid status code: 503"
    assert body["payload"]["error_type"] == "runner_disconnected"


async def test_a_request_cancelled_in_the_queue_is_delivered_as_cancelled(
    fal_emulator: FalEmulator, http: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    fal_emulator.paused = True
    request_id = await submit(http, fal_emulator, edit_body(), webhook_receiver.url)
    cancelled = await http.put(
        f"{fal_emulator.queue_url}/fal-ai/flux-2/requests/{request_id}/cancel",
        headers={"Authorization": f"Key {fal_emulator.key}"},
    )
    assert cancelled.status_code == 202
    [delivery] = await webhook_receiver.wait_for(1)

    body = json.loads(delivery.body)
    assert body["status"] == "ERROR" and body["error"] == "Invalid status code: 499"
    assert body["payload"]["error_type"] == "client_cancelled"
    assert not fal_emulator.jobs[request_id].ran


async def test_a_submit_without_fal_webhook_delivers_nothing(
    fal_emulator: FalEmulator, http: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    request_id = await submit(http, fal_emulator, edit_body(), webhook=None)
    job = await fal_emulator.wait_for_status(request_id, "COMPLETED")

    assert job.webhook_url is None
    assert fal_emulator.webhook_idle() and fal_emulator.webhook_attempts == []
    assert webhook_receiver.received == []


async def test_deliveries_answered_with_errors_are_retried_with_back_off_until_accepted(
    fal_emulator: FalEmulator, http: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    fal_emulator.webhook_backoff = 0.01
    webhook_receiver.script.extend([500, 503, 404])
    request_id = await submit(http, fal_emulator, edit_body(), webhook_receiver.url)
    attempts = await fal_emulator.wait_for_webhook_attempts(request_id, 4)
    await fal_emulator.wait_until(fal_emulator.webhook_idle)

    assert [(a.attempt, a.status) for a in fal_emulator.webhook_attempts] == [
        (1, 500),
        (2, 503),
        (3, 404),
        (4, 200),
    ]
    assert [a.ok for a in attempts] == [False, False, False, True]
    # Every attempt is signed anew, and each one verifies.
    keys = await published_keys(http, fal_emulator)
    for received in await webhook_receiver.wait_for(4):
        assert signed_by(keys, received.headers, received.body) is not None
    assert len({json.loads(r.body)["request_id"] for r in webhook_receiver.received}) == 1


async def test_a_receiver_that_does_not_answer_in_time_gets_the_delivery_again(
    fal_emulator: FalEmulator, http: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    fal_emulator.webhook_backoff = 0.01
    fal_emulator.webhook_timeout = 0.2
    webhook_receiver.script.append(None)  # the first attempt is never answered
    request_id = await submit(http, fal_emulator, edit_body(), webhook_receiver.url)
    attempts = await fal_emulator.wait_for_webhook_attempts(request_id, 2)

    assert [(a.status, a.error) for a in attempts] == [(None, "timeout"), (200, None)]


async def test_delivery_gives_up_after_the_last_attempt(
    fal_emulator: FalEmulator, http: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    fal_emulator.webhook_backoff = 0.01
    fal_emulator.webhook_max_attempts = 3
    webhook_receiver.default_status = 500
    request_id = await submit(http, fal_emulator, edit_body(), webhook_receiver.url)
    await fal_emulator.wait_for_webhook_attempts(request_id, 3)
    await fal_emulator.wait_until(fal_emulator.webhook_idle)

    assert [a.status for a in fal_emulator.webhook_attempts] == [500, 500, 500]
    assert len(webhook_receiver.received) == 3


async def test_an_unreachable_receiver_is_recorded_as_a_connection_error(
    fal_emulator: FalEmulator, http: httpx.AsyncClient
) -> None:
    fal_emulator.webhook_backoff = 0.01
    fal_emulator.webhook_max_attempts = 2
    async with WebhookReceiver() as gone:
        url = gone.url  # a port that is closed once the receiver stops
    request_id = await submit(http, fal_emulator, edit_body(), url)
    attempts = await fal_emulator.wait_for_webhook_attempts(request_id, 2)

    assert [a.status for a in attempts] == [None, None]
    assert all(a.error and a.error != "timeout" for a in attempts)


async def test_the_first_delivery_waits_for_the_configured_delay(
    fal_emulator: FalEmulator, http: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    fal_emulator.webhook_delay = 0.5
    request_id = await submit(http, fal_emulator, edit_body(), webhook_receiver.url)
    await fal_emulator.wait_for_status(request_id, "COMPLETED")
    assert fal_emulator.webhook_attempts == [] and not fal_emulator.webhook_idle()

    await webhook_receiver.wait_for(1)
    assert len(fal_emulator.webhook_attempts) == 1


async def test_duplicates_repeat_an_accepted_delivery(
    fal_emulator: FalEmulator, http: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    fal_emulator.webhook_duplicates = 2
    request_id = await submit(http, fal_emulator, edit_body(), webhook_receiver.url)
    received = await webhook_receiver.wait_for(3)
    await fal_emulator.wait_until(fal_emulator.webhook_idle)

    assert [a.kind for a in fal_emulator.webhook_attempts] == ["delivery", "duplicate", "duplicate"]
    assert len({r.body for r in received}) == 1
    assert json.loads(received[0].body)["request_id"] == request_id


async def test_a_dropped_delivery_is_never_sent(
    fal_emulator: FalEmulator, http: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    fal_emulator.webhook_drop = True
    request_id = await submit(http, fal_emulator, edit_body(), webhook_receiver.url)
    await fal_emulator.wait_until(lambda: fal_emulator.jobs[request_id].webhook_dropped)
    await fal_emulator.wait_until(fal_emulator.webhook_idle)

    assert fal_emulator.webhook_attempts == [] and webhook_receiver.received == []


def _check_wrong_key(keys: dict[str, bytes], headers: Any, body: bytes, fal: FalEmulator) -> None:
    assert signed_by(keys, headers, body) is None
    outsider = {"outsider": fal.webhook_keys.outsider.public_bytes}
    assert signed_by(outsider, headers, body) == "outsider"


def _check_altered(keys: dict[str, bytes], headers: Any, body: bytes, fal: FalEmulator) -> None:
    assert signed_by(keys, headers, body) is None
    assert json.loads(body)["status"] == "KO"


def _check_old(keys: dict[str, bytes], headers: Any, body: bytes, fal: FalEmulator) -> None:
    assert signed_by(keys, headers, body) is not None
    assert int(headers["X-Fal-Webhook-Timestamp"]) < time.time() - 3000


def _check_future(keys: dict[str, bytes], headers: Any, body: bytes, fal: FalEmulator) -> None:
    assert signed_by(keys, headers, body) is not None
    assert int(headers["X-Fal-Webhook-Timestamp"]) > time.time() + 3000


def _check_unsigned(keys: dict[str, bytes], headers: Any, body: bytes, fal: FalEmulator) -> None:
    assert "X-Fal-Webhook-Signature" not in headers
    assert "X-Fal-Webhook-Timestamp" in headers and json.loads(body)["status"] == "OK"


def _check_not_json(keys: dict[str, bytes], headers: Any, body: bytes, fal: FalEmulator) -> None:
    assert signed_by(keys, headers, body) is not None
    with pytest.raises(ValueError):
        json.loads(body)


def _check_bad_schema(keys: dict[str, bytes], headers: Any, body: bytes, fal: FalEmulator) -> None:
    assert signed_by(keys, headers, body) is not None
    assert json.loads(body)["status"] == "DONE" and "payload" not in json.loads(body)


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ("wrong_key", _check_wrong_key),
        ("altered_body", _check_altered),
        ("old_timestamp", _check_old),
        ("future_timestamp", _check_future),
        ("missing_signature", _check_unsigned),
        ("not_json", _check_not_json),
        ("bad_schema", _check_bad_schema),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
async def test_signature_faults_spoil_exactly_what_they_name(
    fault: str,
    check: Any,
    fal_emulator: FalEmulator,
    http: httpx.AsyncClient,
    webhook_receiver: WebhookReceiver,
) -> None:
    fal_emulator.webhook_fault = fault
    await submit(http, fal_emulator, edit_body(), webhook_receiver.url)
    [delivery] = await webhook_receiver.wait_for(1)

    keys = await published_keys(http, fal_emulator)
    check(keys, delivery.headers, delivery.body, fal_emulator)
    assert fal_emulator.webhook_attempts[0].fault == fault


async def test_key_rotation_publishes_both_keys_and_signs_with_the_new_one(
    fal_emulator: FalEmulator, http: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    old = fal_emulator.webhook_keys.current.kid
    new = fal_emulator.rotate_webhook_key()
    await submit(http, fal_emulator, edit_body(), webhook_receiver.url)
    [delivery] = await webhook_receiver.wait_for(1)

    keys = await published_keys(http, fal_emulator)
    assert set(keys) == {old, new}
    assert signed_by(keys, delivery.headers, delivery.body) == new
    assert signed_by({old: keys[old]}, delivery.headers, delivery.body) is None

    fal_emulator.webhook_keys.retire_old()
    assert set(await published_keys(http, fal_emulator)) == {new}


async def test_the_jwks_is_served_on_the_rest_host_only(
    fal_emulator: FalEmulator, http: httpx.AsyncClient
) -> None:
    on_rest = await http.get(f"{fal_emulator.rest_url}/.well-known/jwks.json")
    on_queue = await http.get(f"{fal_emulator.queue_url}/.well-known/jwks.json")

    assert on_rest.status_code == 200 and len(on_rest.json()["keys"]) == 1
    assert on_queue.status_code == 404
    assert fal_emulator.count("jwks") == 1


def test_an_unknown_webhook_fault_knob_is_refused() -> None:
    fal = FalEmulator()
    with pytest.raises(ValueError, match="webhook fault"):
        fal.set_knobs({"webhook_fault": "sideways"})
    fal.set_knobs({"webhook_fault": "wrong_key", "webhook_duplicates": "2"})
    assert (fal.webhook_fault, fal.webhook_duplicates) == ("wrong_key", 2)
