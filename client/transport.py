"""One place that sends HTTP to fal: authentication, retries, request counting, error mapping.

Retry rules (docs/fal-queue.md, "Retry rules"):
- idempotent calls (status, result, cancel, uploads, downloads) retry transport errors, 408, 429
  and 500/502/503/504 with jittered exponential backoff;
- submit retries only when fal almost surely never saw the request: the connection was never
  made, an ingress 502/503/504 without `x-fal-request-id` (the numbers behind retrying these:
  docs/fal-queue.md, "The unknown-outcome window"), or a 429 refusal. A server error that
  carries a request id is fal holding the request: `FalClient.submit` follows that id. Anything
  else that fails after the body may have reached fal raises `FalSubmitOutcomeUnknown`. Each
  ambiguous submit is reported to `on_ambiguous_submit`;
- a 504 carrying `X-Fal-Request-Timeout-Type: user` is our own start deadline and is final;
- a result answer that is the request's own recorded failure (`x-fal-request-id` plus an
  `error_type`) is final too: asking again returns the same stored answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from client.errors import (
    FalAccountLocked,
    FalAuthError,
    FalCancelled,
    FalError,
    FalNotFound,
    FalProtocolError,
    FalRateLimited,
    FalRequestFailed,
    FalSubmitOutcomeUnknown,
    FalUnavailable,
    FalValidationError,
)
from client.retry import RetryPolicy, parse_retry_after
from client.schema import RequestErrorBody, ValidationErrorBody, ValidationItem

log = logging.getLogger(__name__)

RetryMode = Literal["idempotent", "submit", "result"]
ModelT = TypeVar("ModelT", bound=BaseModel)

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)

# Failures that happen before a single byte of the request is on the wire.
_NEVER_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
_GATEWAY_CODES = frozenset({502, 503, 504})
_RETRYABLE_CODES = frozenset({408, 429, 500, 502, 503, 504})

# The key goes only to fal's own API hosts (and to the configured bases, e.g. an emulator);
# never to media hosts or third-party URLs that a response might point at.
_FAL_API_DOMAINS = ("fal.run", "fal.ai", "falrun.com")


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def parse_body(model: type[ModelT], response: httpx.Response, what: str) -> ModelT:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as error:
        raise FalProtocolError(f"fal answered {what} with an unexpected body") from error


def json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return None


class FalTransport:
    """Sends requests for `FalClient` and turns fal's answers into typed errors."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        stream_http: httpx.AsyncClient,
        key: str,
        *,
        key_origins: list[str],
        retry: RetryPolicy,
        timeout: httpx.Timeout,
    ) -> None:
        self.http = http
        self.stream_http = stream_http
        self._key = key
        self._key_origins = {_origin(httpx.URL(base)) for base in key_origins}
        self.retry = retry
        self.timeout = timeout
        self.requests: Counter[str] = Counter()
        # Called with a short reason for each submit whose outcome fal left unclear.
        self.on_ambiguous_submit: Callable[[str], None] | None = None

    def ambiguous_submit(self, reason: str) -> None:
        log.warning("fal submit: ambiguous outcome (%s)", reason)
        if self.on_ambiguous_submit is not None:
            self.on_ambiguous_submit(reason)

    # -- secrets -----------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """Remove the key (and either half of it) from text that came from elsewhere."""
        key_id, _, secret = self._key.partition(":")
        for secret_part in (self._key, secret, key_id):
            if len(secret_part) >= 6:
                text = text.replace(secret_part, "***")
        return text

    def may_send_key(self, url: httpx.URL) -> bool:
        if _origin(url) in self._key_origins:
            return True
        host = url.host
        return url.scheme == "https" and any(
            host == domain or host.endswith("." + domain) for domain in _FAL_API_DOMAINS
        )

    def key_headers(self, url: httpx.URL) -> dict[str, str]:
        if not self.may_send_key(url):
            raise FalProtocolError("refusing to send the fal key to a host that is not fal's")
        return {"Authorization": f"Key {self._key}"}

    # -- sending -----------------------------------------------------------------------------

    async def send(
        self,
        op: str,
        method: str,
        url: str | httpx.URL,
        *,
        mode: RetryMode = "idempotent",
        auth: bool = True,
        headers: dict[str, str] | None = None,
        http_timeout: httpx.Timeout | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with retries; returns the final response whatever its status code.

        Raises `FalUnavailable` when retries run out on transport errors,
        `FalSubmitOutcomeUnknown` in submit mode when fal may have seen the request.
        """
        target = httpx.URL(url)
        all_headers = dict(headers or {})
        if auth:
            all_headers.update(self.key_headers(target))
        attempt = 0
        while True:
            attempt += 1
            self.requests[op] += 1
            try:
                response = await self.http.request(
                    method,
                    target,
                    headers=all_headers,
                    timeout=http_timeout or self.timeout,
                    **kwargs,
                )
            except httpx.UnsupportedProtocol as error:
                raise FalProtocolError(f"fal {op}: unsupported URL scheme") from error
            except httpx.TransportError as error:
                reason = type(error).__name__
                if mode == "submit" and not isinstance(error, _NEVER_SENT):
                    self.ambiguous_submit(reason)
                    raise FalSubmitOutcomeUnknown(
                        "fal may or may not have queued this request (the connection failed "
                        "after it was sent)"
                    ) from error
                if attempt >= self.retry.max_attempts:
                    log.warning("fal %s: %s, giving up after %d attempts", op, reason, attempt)
                    raise FalUnavailable(
                        f"fal could not be reached ({reason} after {attempt} attempts)"
                    ) from error
                delay = self.retry.delay(attempt)
                log.info("fal %s: %s; retry %d in %.2fs", op, reason, attempt, delay)
                await asyncio.sleep(delay)
                continue

            if not self._should_retry(mode, response):
                return response
            if mode == "submit" and response.status_code in _GATEWAY_CODES:
                self.ambiguous_submit(f"ingress_{response.status_code}_retried")
            if attempt >= self.retry.max_attempts:
                log.warning(
                    "fal %s: HTTP %d, giving up after %d attempts",
                    op,
                    response.status_code,
                    attempt,
                )
                return response
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            delay = self.retry.delay(attempt, retry_after)
            log.info("fal %s: HTTP %d; retry %d in %.2fs", op, response.status_code, attempt, delay)
            await response.aclose()
            await asyncio.sleep(delay)

    @staticmethod
    def _should_retry(mode: RetryMode, response: httpx.Response) -> bool:
        code = response.status_code
        if code == 504 and response.headers.get("x-fal-request-timeout-type", "").lower() == "user":
            return False
        from_ingress = code in _GATEWAY_CODES and "x-fal-request-id" not in response.headers
        if mode == "submit":
            return code == 429 or from_ingress
        if code not in _RETRYABLE_CODES:
            return False
        return not (mode == "result" and not from_ingress and is_request_outcome(response))

    # -- error mapping -----------------------------------------------------------------------

    def error_for(self, op: str, response: httpx.Response) -> FalError:
        """The typed error for a non-success answer that the operation has no special use for."""
        code = response.status_code
        body = json_or_none(response)
        request_id = response.headers.get("x-fal-request-id")
        detail = self._detail_text(body, response)
        if code == 401:
            return FalAuthError(
                "fal rejected the API key (check FAL_KEY)", status_code=code, request_id=request_id
            )
        if code == 403:
            return FalAccountLocked(_lock_reason(detail), status_code=code)
        if code == 422 or (isinstance(body, dict) and isinstance(body.get("detail"), list)):
            return FalValidationError(
                _validation_items(body), status_code=code, request_id=request_id
            )
        if code == 429:
            return FalRateLimited(
                "fal is rate limiting requests; try again shortly",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
                status_code=code,
            )
        error_type = _error_type(body, response)
        timeout_type = response.headers.get("x-fal-request-timeout-type")
        if error_type == "client_cancelled" or code == 499:
            return FalCancelled(
                error_type or "client_cancelled",
                detail or "the request was cancelled",
                code,
                request_id=request_id,
            )
        if error_type is not None or timeout_type is not None:
            return FalRequestFailed(
                error_type,
                detail or f"HTTP {code}",
                code,
                timeout_type=timeout_type,
                request_id=request_id,
            )
        if code == 404:
            return FalNotFound(f"fal does not know this request ({op})", status_code=code)
        if code >= 500:
            return FalUnavailable(
                f"fal is unavailable right now ({op}: HTTP {code})", status_code=code
            )
        return FalRequestFailed(None, detail or f"HTTP {code}", code, request_id=request_id)

    def _detail_text(self, body: Any, response: httpx.Response) -> str:
        if isinstance(body, dict) and isinstance(body.get("detail"), str):
            return self.redact(str(body["detail"]))[:500]
        if isinstance(body, dict) and isinstance(body.get("status"), str):
            return str(body["status"])
        return ""  # HTML from an ingress or anything else: never shown to a member


def is_request_outcome(response: httpx.Response) -> bool:
    """A fal-generated failure that belongs to the request, not to the HTTP exchange."""
    if "x-fal-request-id" not in response.headers:
        return False
    if response.headers.get("x-fal-error-type"):
        return True
    body = json_or_none(response)
    return isinstance(body, dict) and isinstance(body.get("error_type"), str)


def _error_type(body: Any, response: httpx.Response) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error_type"), str):
        return str(body["error_type"])
    return response.headers.get("x-fal-error-type") or None


def _lock_reason(detail: str) -> str:
    # fal: "User is locked. Reason: Exhausted balance. Top up your balance at ..."
    _, marker, reason = detail.partition("Reason:")
    text = (reason if marker else detail).strip()
    return text or "fal refused access to this account (403)"


def _validation_items(body: Any) -> list[ValidationItem]:
    try:
        return ValidationErrorBody.model_validate(body).detail
    except ValidationError:
        pass
    try:
        text = RequestErrorBody.model_validate(body).detail
    except ValidationError:
        text = json.dumps(body)[:300] if body is not None else "the input is invalid"
    # A string detail becomes one item about the whole body (as fal-js does).
    return [ValidationItem(loc=["body"], msg=text, type="value_error")]
