"""Typed fal errors. Each is one failure a caller handles differently.

`str(error)` is always safe to show a member: it carries no key, no URL with credentials and no
raw HTML, only fal's own human text where fal gave one.
"""

from __future__ import annotations

from collections.abc import Sequence

from client.schema import ValidationItem

# Request-error types that fal documents as typically transient: resubmitting may work
# (docs/fal-queue.md, "Errors").
TRANSIENT_ERROR_TYPES = frozenset(
    {
        "request_timeout",
        "startup_timeout",
        "runner_scheduling_failure",
        "runner_connection_timeout",
        "runner_disconnected",
        "runner_connection_refused",
        "runner_connection_error",
        "runner_incomplete_response",
        "runner_server_error",
        "internal_error",
    }
)


class FalError(Exception):
    """Base of every fal failure."""

    def __init__(
        self, message: str, *, status_code: int | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.request_id = request_id

    def __str__(self) -> str:
        return self.message


class FalValidationError(FalError):
    """fal rejected the input (422). Permanent: the same input fails the same way."""

    def __init__(
        self,
        items: Sequence[ValidationItem],
        *,
        status_code: int | None = 422,
        request_id: str | None = None,
    ) -> None:
        self.items = list(items)
        super().__init__(
            "fal rejected the input: " + self.describe(),
            status_code=status_code,
            request_id=request_id,
        )

    def describe(self) -> str:
        """One clause per problem, naming the field in words: 'guidance_scale: Input should
        be ≤ 20; image_urls[1]: could not be downloaded'."""
        if not self.items:
            return "the input is invalid"
        return "; ".join(describe_item(item) for item in self.items)

    @property
    def fields(self) -> list[str]:
        return [field_path(item.loc) for item in self.items]


class FalAuthError(FalError):
    """fal does not accept the API key (401)."""


class FalAccountLocked(FalError):
    """The fal account is locked (403), usually for an exhausted balance."""

    def __init__(self, reason: str, *, status_code: int | None = 403) -> None:
        self.reason = reason
        super().__init__(f"The fal account is locked: {reason}", status_code=status_code)


class FalRateLimited(FalError):
    """fal kept answering 429 after every retry."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, status_code: int | None = 429
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after = retry_after


class FalUnavailable(FalError):
    """fal could not be reached or kept failing (transport errors, 5xx) after every retry."""


class FalNotFound(FalError):
    """fal does not know the request (wrong id, or the result is past its retention)."""


class FalResultNotReady(FalError):
    """The result was asked for before the request completed (400 'still in progress')."""


class FalProtocolError(FalError):
    """fal answered something this client cannot read (not JSON, or the wrong shape)."""


class FalDownloadTooLarge(FalError):
    """A result file is larger than the caller allowed."""


class FalSubmitOutcomeUnknown(FalError):
    """The submit body reached the wire but no usable answer came back.

    fal may or may not have queued the request. Resubmitting risks running (and paying for) it
    twice, so the caller decides; the client never retries this case.
    """


class FalRequestFailed(FalError):
    """The request ran (or tried to) and failed: fal's `{detail, error_type}`.

    (docs/fal-queue.md, "Errors")
    """

    def __init__(
        self,
        error_type: str | None,
        detail: str,
        status_code: int | None,
        *,
        timeout_type: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.error_type = error_type
        self.detail = detail
        self.timeout_type = timeout_type
        label = f" ({error_type})" if error_type else ""
        super().__init__(
            f"fal could not complete the request{label}: {detail}",
            status_code=status_code,
            request_id=request_id,
        )

    @property
    def transient(self) -> bool:
        """True when resubmitting the same input may succeed. A start deadline that *we* set
        (`X-Fal-Request-Timeout-Type: user`) is never transient: it would expire again."""
        if self.timeout_type == "user":
            return False
        if self.error_type is not None:
            return self.error_type in TRANSIENT_ERROR_TYPES
        return self.status_code is not None and self.status_code in (502, 503, 504)


class FalCancelled(FalRequestFailed):
    """The request was cancelled (`client_cancelled`, 499)."""


def field_path(loc: Sequence[str | int]) -> str:
    """['body', 'loras', 1, 'scale'] → 'loras[1].scale'."""
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[1:]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "input"


_COMPARISONS = {
    "less_than_equal": ("le", "≤"),
    "less_than": ("lt", "<"),
    "greater_than_equal": ("ge", "≥"),
    "greater_than": ("gt", ">"),
}


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def describe_item(item: ValidationItem) -> str:
    """'guidance_scale: Input should be ≤ 20'. Uses `type` and `ctx` where they say more
    clearly than pydantic's English; falls back to fal's own `msg`."""
    where = field_path(item.loc)
    ctx = item.ctx or {}
    comparison = _COMPARISONS.get(item.type)
    if comparison is not None and comparison[0] in ctx:
        return f"{where}: Input should be {comparison[1]} {_number(ctx[comparison[0]])}"
    if item.type == "missing":
        return f"{where}: is required"
    if item.type == "too_long" and "max_length" in ctx:
        return f"{where}: at most {ctx['max_length']} allowed"
    if item.type == "too_short" and "min_length" in ctx:
        return f"{where}: at least {ctx['min_length']} needed"
    return f"{where}: {item.msg or item.type}"
