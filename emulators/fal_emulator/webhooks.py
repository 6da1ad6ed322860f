"""Webhook deliveries (docs/fal-webhooks.md): when a request submitted with `?fal_webhook=URL`
ends, the emulator POSTs the delivery body to URL, signed with its own ED25519 key, and publishes
the public half as a JWKS on its REST host (`/.well-known/jwks.json`).

A delivery is retried with back-off while the receiver answers anything but 2xx, times out or
cannot be reached. Each attempt is signed afresh (a new timestamp), as a retry hours later must
still pass the receiver's ±300 s check. Every attempt is recorded (`FalEmulator.webhook_attempts`)
with the status the receiver answered, so tests can assert what fal would have seen.

Faults (`FalEmulator.webhook_fault`, applied to every attempt while set):
- `wrong_key`: signed with a key the JWKS does not publish;
- `altered_body`: signed, then one byte of the body changed;
- `old_timestamp` / `future_timestamp`: properly signed, an hour in the past / future;
- `missing_signature`: the signature header is left out;
- `not_json` / `bad_schema`: a properly signed body that is not JSON / not the delivery schema.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import ClientError, ClientTimeout, web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from emulators.fal_emulator.common import RecordedRequest
from emulators.fal_emulator.jobs import Job

if TYPE_CHECKING:
    from emulators.fal_emulator.server import FalEmulator

WEBHOOK_FAULTS = (
    "wrong_key",
    "altered_body",
    "old_timestamp",
    "future_timestamp",
    "missing_signature",
    "not_json",
    "bad_schema",
)
JWKS_PATH = "/.well-known/jwks.json"
SKEW_FAULT_SECONDS = 3600

REQUEST_ID_HEADER = "X-Fal-Webhook-Request-Id"
USER_ID_HEADER = "X-Fal-Webhook-User-Id"
TIMESTAMP_HEADER = "X-Fal-Webhook-Timestamp"
SIGNATURE_HEADER = "X-Fal-Webhook-Signature"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class SigningKey:
    kid: str
    private: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(kid=uuid.uuid4().hex[:16], private=Ed25519PrivateKey.generate())

    @property
    def public_bytes(self) -> bytes:
        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def jwk(self) -> dict[str, str]:
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url(self.public_bytes),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        }


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """What fal signs: the three header values and the hex SHA-256 of the raw body, joined by
    newlines (docs/fal-webhooks.md, "The signature")."""
    digest = hashlib.sha256(body).hexdigest()
    return f"{request_id}\n{user_id}\n{timestamp}\n{digest}".encode()


class WebhookKeys:
    """The emulator's signing keys: every key in `published` is in the JWKS; `current` signs."""

    def __init__(self) -> None:
        self.published: list[SigningKey] = [SigningKey.generate()]
        self.current = self.published[0]
        self.outsider = SigningKey.generate()  # the `wrong_key` fault signs with this one

    def rotate(self) -> SigningKey:
        """A new key signs from now on; the JWKS publishes it beside the old ones."""
        key = SigningKey.generate()
        self.published.append(key)
        self.current = key
        return key

    def retire_old(self) -> None:
        """Stop publishing every key but the current one."""
        self.published = [self.current]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk for key in self.published]}

    def sign(self, message: bytes, key: SigningKey | None = None) -> str:
        return (key or self.current).private.sign(message).hex()


@dataclass
class WebhookAttempt:
    """One POST the emulator made (or tried to make) to a webhook URL."""

    request_id: str
    url: str
    attempt: int  # 1-based, per delivery; duplicates count on
    kind: str  # "delivery" or "duplicate"
    at: float  # monotonic
    timestamp: str  # the signed X-Fal-Webhook-Timestamp
    kid: str  # the key that signed it
    headers: dict[str, str]
    body: bytes
    fault: str | None
    status: int | None = None  # what the receiver answered; None: no answer
    error: str | None = None  # "timeout" or the connection error's name

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body)


def delivery_body(job: Job) -> dict[str, Any]:
    """The documented body: OK with the endpoint's output, or ERROR with its error detail."""
    status = job.result_status or 200
    ok = status == 200 and job.error_type is None
    return {
        "request_id": job.request_id,
        "gateway_request_id": job.request_id,
        "status": "OK" if ok else "ERROR",
        "payload": job.result_body,
        "error": None if ok else f"Invalid status code: {status}",
        "payload_error": None,
    }


def schedule(emu: FalEmulator, job: Job) -> None:
    """Start delivering `job`'s outcome if it was submitted with a webhook URL."""
    if job.webhook_url is None:
        return
    task = asyncio.create_task(_deliver(emu, job), name=f"fal-emulator-webhook-{job.request_id}")
    emu.webhook_tasks.add(task)


def backoff(emu: FalEmulator, attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based)."""
    return float(min(emu.webhook_backoff * 2 ** (attempt - 1), emu.webhook_backoff_max))


async def _deliver(emu: FalEmulator, job: Job) -> None:
    try:
        await _deliver_all(emu, job)
    finally:
        task = asyncio.current_task()
        if task is not None:
            emu.webhook_tasks.discard(task)
        emu.notify()


async def _deliver_all(emu: FalEmulator, job: Job) -> None:
    assert job.webhook_url is not None
    await asyncio.sleep(emu.webhook_delay)
    if emu.webhook_drop:
        job.webhook_dropped = True
        return
    body = json.dumps(delivery_body(job)).encode()
    attempt = 0
    while True:
        attempt += 1
        sent = await _attempt(emu, job, job.webhook_url, body, attempt, "delivery")
        if sent.ok:
            break
        if attempt >= emu.webhook_max_attempts:
            return  # given up, as fal does after its last retry
        await asyncio.sleep(backoff(emu, attempt))
    for _ in range(emu.webhook_duplicates):
        attempt += 1
        await _attempt(emu, job, job.webhook_url, body, attempt, "duplicate")


def _faulty_body(fault: str | None, job: Job, body: bytes) -> bytes:
    if fault == "not_json":
        return b"<html>not json</html>"
    if fault == "bad_schema":
        return json.dumps({"request_id": job.request_id, "status": "DONE"}).encode()
    return body


async def _attempt(
    emu: FalEmulator, job: Job, url: str, body: bytes, attempt: int, kind: str
) -> WebhookAttempt:
    fault = emu.webhook_fault
    now = int(emu.clock())
    if fault == "old_timestamp":
        now -= SKEW_FAULT_SECONDS
    elif fault == "future_timestamp":
        now += SKEW_FAULT_SECONDS
    timestamp = str(now)
    signed_body = _faulty_body(fault, job, body)
    key = emu.webhook_keys.outsider if fault == "wrong_key" else emu.webhook_keys.current
    message = signed_message(job.request_id, emu.user_id, timestamp, signed_body)
    signature = emu.webhook_keys.sign(message, key)
    sent_body = signed_body
    if fault == "altered_body":
        # One byte changed after signing: the digest no longer matches.
        sent_body = signed_body.replace(b'"OK"', b'"KO"', 1)
        if sent_body == signed_body:
            sent_body = signed_body + b" "
    headers = {
        "Content-Type": "application/json",
        REQUEST_ID_HEADER: job.request_id,
        USER_ID_HEADER: emu.user_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature,
    }
    if fault == "missing_signature":
        del headers[SIGNATURE_HEADER]
    record = WebhookAttempt(
        request_id=job.request_id,
        url=url,
        attempt=attempt,
        kind=kind,
        at=time.monotonic(),
        timestamp=timestamp,
        kid=key.kid,
        headers=headers,
        body=sent_body,
        fault=fault,
    )
    emu.webhook_attempts.append(record)
    try:
        async with emu.session.post(
            url,
            data=sent_body,
            headers=headers,
            timeout=ClientTimeout(total=emu.webhook_timeout),
        ) as response:
            await response.read()
            record.status = response.status
    except TimeoutError:
        record.error = "timeout"
    except (ClientError, ValueError) as error:
        record.error = type(error).__name__
    emu.notify()
    return record


async def jwks(emu: FalEmulator, request: web.Request, record: RecordedRequest) -> web.Response:
    """The public keys, as fal serves them on its REST host (no key needed)."""
    if request.method not in ("GET", "HEAD"):
        return web.json_response({"detail": "Method Not Allowed"}, status=405)
    return web.json_response(emu.webhook_keys.jwks(), headers={"Cache-Control": "max-age=3600"})
