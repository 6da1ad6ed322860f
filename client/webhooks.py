"""Verify fal's webhook deliveries before anything reads them (docs/fal-webhooks.md).

A route hands over the headers and the raw body exactly as received::

    verifier = WebhookVerifier(http, JWKS_URL)
    try:
        delivery = await verifier.verify(request.headers, await request.read())
    except WebhookRejected as rejected:
        return web.Response(status=rejected.status)
    ...  # answer 2xx at once, then act on `delivery` (idempotently: fal may send it again)

Checks, in order, each failing with its own `WebhookRejected.reason`: the four signature
headers are there, the signature is 64 bytes of hex, the timestamp is within `tolerance` of now,
the body is not over `max_body`, the ED25519 signature over `request_id \\n user_id \\n timestamp
\\n sha256hex(body)` matches one of the keys fal publishes, and only then the body is parsed as a
`WebhookDelivery` whose `request_id` is the signed one. The signature and the keys are never
logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, ValidationError

log = logging.getLogger(__name__)

# Where fal publishes its webhook keys (docs/fal-webhooks.md, "The keys").
FAL_JWKS_URL = "https://rest.fal.ai/.well-known/jwks.json"

REQUEST_ID_HEADER = "X-Fal-Webhook-Request-Id"
USER_ID_HEADER = "X-Fal-Webhook-User-Id"
TIMESTAMP_HEADER = "X-Fal-Webhook-Timestamp"
SIGNATURE_HEADER = "X-Fal-Webhook-Signature"
SIGNATURE_HEADERS = (REQUEST_ID_HEADER, USER_ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)

# fal says to cache its keys for at most a day and to allow 300 s of clock skew
# (docs/fal-webhooks.md, "The keys" and "The signature").
MAX_KEY_AGE = 24 * 3600.0
TOLERANCE = 300.0
# A signature that matches no cached key makes the verifier fetch the keys again (fal may have
# rotated them), but not more often than this: forged deliveries must not become a flood of
# key fetches. A genuine delivery that was turned away is sent again by fal's retries.
REFETCH_AFTER = 300.0

# The largest delivery a result can need (docs/fal-webhooks.md, "How large a delivery gets"):
# the bot asks for sync-mode results, so the images come inline as data URIs. At most 4 images
# of at most 2048 × 2048 pixels; a PNG that does not compress at all holds 4 bytes a pixel
# (RGBA) and a filter byte a row, and base64 adds a third: 4 × 2048 × (2048 × 4 + 1) × 4 / 3 ≈
# 89.5 MB, with the JSON around it well under the 96 MiB allowed here.
MAX_DELIVERY_BYTES = 96 * 1024 * 1024
# Without sync mode the images are CDN URLs (about a kilobyte each with their metadata), so a
# delivery of up to 4 images, the prompt and the timings fits well within 1 MiB. The bot asks
# for URL results when it follows an edit by webhook, and accepts no more than this.
URL_DELIVERY_BYTES = 1024 * 1024

_SIGNATURE = re.compile(r"[0-9a-fA-F]{128}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_ED25519_KEY_BYTES = 32

RejectReason = Literal[
    "missing_header",
    "bad_signature_format",
    "bad_timestamp",
    "stale_timestamp",
    "future_timestamp",
    "too_large",
    "bad_signature",
    "keys_unavailable",
    "bad_body",
    "request_id_mismatch",
]

# The HTTP status a route should answer for each reason: 401 for a delivery we cannot trust,
# 413 when it is too large, 400 for a signed body we cannot read, 503 when fal's keys could not
# be fetched (fal's retries come back later).
_STATUS: dict[str, int] = {
    "missing_header": 401,
    "bad_signature_format": 401,
    "bad_timestamp": 401,
    "stale_timestamp": 401,
    "future_timestamp": 401,
    "too_large": 413,
    "bad_signature": 401,
    "keys_unavailable": 503,
    "bad_body": 400,
    "request_id_mismatch": 400,
}


class WebhookRejected(Exception):
    """A delivery that must not be acted on. `reason` says why; `status` is the HTTP status to
    answer fal with."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RejectReason = reason
        self.status = _STATUS[reason]
        self.detail = detail


class WebhookDelivery(BaseModel):
    """The body fal POSTs when a request ends (docs/fal-webhooks.md, "The delivery").

    `payload` is the endpoint's output when `status` is OK, the error body (for example a 422
    `detail` list) when it is ERROR, and None when fal could not serialise the output
    (`payload_error` then says why). Unknown fields are ignored.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    request_id: str
    gateway_request_id: str | None = None
    status: Literal["OK", "ERROR"]
    payload: dict[str, Any] | list[Any] | None = None
    error: str | None = None
    payload_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "OK"


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return f"{request_id}\n{user_id}\n{timestamp}\n{digest}".encode()


class WebhookVerifier:
    """Checks deliveries against the keys published at `jwks_url`, fetched with `http` and
    cached for at most `max_age` seconds (one fetch serves every delivery until then).

    `clock` gives the current Unix time (tests share a fake one with the emulator).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        jwks_url: str = FAL_JWKS_URL,
        *,
        max_age: float = MAX_KEY_AGE,
        tolerance: float = TOLERANCE,
        refetch_after: float = REFETCH_AFTER,
        max_body: int = MAX_DELIVERY_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < max_age <= MAX_KEY_AGE:
            raise ValueError("max_age must be more than 0 and at most 24 hours")
        if tolerance <= 0 or refetch_after < 0 or max_body <= 0:
            raise ValueError("tolerance and max_body must be positive, refetch_after not negative")
        self._http = http
        self.jwks_url = jwks_url
        self.max_age = max_age
        self.tolerance = tolerance
        self.refetch_after = refetch_after
        self.max_body = max_body
        self._clock = clock
        self._keys: list[Ed25519PublicKey] = []
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0  # JWKS fetches made so far

    def __repr__(self) -> str:  # never the keys
        return f"WebhookVerifier(jwks_url={self.jwks_url!r}, keys={len(self._keys)})"

    async def verify(self, headers: Mapping[str, str], raw_body: bytes) -> WebhookDelivery:
        """The delivery, once it is proven to come from fal; `WebhookRejected` otherwise."""
        found = {name.lower(): value for name, value in headers.items()}
        values = []
        for name in SIGNATURE_HEADERS:
            value = found.get(name.lower(), "").strip()
            if not value:
                raise self._reject("missing_header", f"no {name} header", None)
            values.append(value)
        request_id, user_id, timestamp, signature_hex = values
        if not _SIGNATURE.fullmatch(signature_hex):
            raise self._reject("bad_signature_format", "not 64 bytes of hex", request_id)
        if not _TIMESTAMP.fullmatch(timestamp):
            raise self._reject("bad_timestamp", "not a Unix time in seconds", request_id)
        skew = int(timestamp) - self._clock()
        if skew < -self.tolerance:
            raise self._reject("stale_timestamp", f"signed {-skew:.0f} s ago", request_id)
        if skew > self.tolerance:
            raise self._reject("future_timestamp", f"signed {skew:.0f} s ahead", request_id)
        if len(raw_body) > self.max_body:
            raise self._reject(
                "too_large", f"{len(raw_body)} bytes; the limit is {self.max_body}", request_id
            )

        message = signed_message(request_id, user_id, timestamp, raw_body)
        signature = bytes.fromhex(signature_hex)
        keys = await self._current_keys(request_id)
        if not _matches(keys, signature, message):
            keys = await self._refetch_if_old(request_id)
            if not _matches(keys, signature, message):
                raise self._reject("bad_signature", "matches none of fal's keys", request_id)

        try:
            delivery = WebhookDelivery.model_validate_json(raw_body)
        except ValidationError as error:
            problems = ", ".join(
                f"{'.'.join(str(part) for part in item['loc']) or 'body'}: {item['type']}"
                for item in error.errors(include_input=False)[:5]
            )
            raise self._reject(
                "bad_body", f"not a webhook delivery ({problems})", request_id
            ) from None
        if delivery.request_id != request_id:
            raise self._reject("request_id_mismatch", "the body names another request", request_id)
        return delivery

    # -- keys -----------------------------------------------------------------------------------

    async def _current_keys(self, request_id: str) -> list[Ed25519PublicKey]:
        async with self._lock:
            if self._fetched_at is None or self._clock() - self._fetched_at >= self.max_age:
                await self._fetch(request_id)
            return self._keys

    async def _refetch_if_old(self, request_id: str) -> list[Ed25519PublicKey]:
        """The keys again, fetched anew when the cached ones are older than `refetch_after`
        (fal may have rotated them; another delivery may just have fetched them)."""
        async with self._lock:
            if self._fetched_at is None or self._clock() - self._fetched_at >= self.refetch_after:
                await self._fetch(request_id)
            return self._keys

    async def _fetch(self, request_id: str) -> None:
        self.fetches += 1
        try:
            response = await self._http.get(self.jwks_url, headers={"Accept": "application/json"})
            response.raise_for_status()
            keys = parse_jwks(response.json())
        except (httpx.HTTPError, ValueError) as error:
            log.warning("fal webhook keys could not be fetched: %s", type(error).__name__)
            raise self._reject(
                "keys_unavailable", "fal's keys could not be fetched", request_id
            ) from None
        if not keys:
            raise self._reject("keys_unavailable", "fal publishes no ED25519 key", request_id)
        self._keys = keys
        self._fetched_at = self._clock()
        log.info("fetched %d fal webhook key(s)", len(keys))

    def _reject(self, reason: RejectReason, detail: str, request_id: str | None) -> WebhookRejected:
        log.warning("fal webhook for request %s rejected: %s (%s)", request_id, reason, detail)
        return WebhookRejected(reason, detail)


def parse_jwks(document: Any) -> list[Ed25519PublicKey]:
    """The ED25519 keys of a JWKS (`kty` OKP, `crv` Ed25519, `x` base64url); others are
    skipped. Raises ValueError when the document is not a key set at all."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys = []
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("kty") != "OKP":
            continue
        x = entry.get("x")
        if entry.get("crv") != "Ed25519" or not isinstance(x, str):
            continue
        try:
            raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(raw) == _ED25519_KEY_BYTES:
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
    return keys


def _matches(keys: list[Ed25519PublicKey], signature: bytes, message: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False


__all__ = [
    "FAL_JWKS_URL",
    "MAX_DELIVERY_BYTES",
    "URL_DELIVERY_BYTES",
    "WebhookDelivery",
    "WebhookRejected",
    "WebhookVerifier",
    "parse_jwks",
]
