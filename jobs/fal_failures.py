"""What a member reads when fal could not do the work; every such failure is refunded."""

from __future__ import annotations

import logging

from client.errors import (
    FalAccountLocked,
    FalAuthError,
    FalError,
    FalRequestFailed,
    FalValidationError,
)
from jobs.metrics import Metrics

log = logging.getLogger(__name__)


def fal_failure_text(error: FalError, metrics: Metrics) -> str:
    kind = getattr(error, "error_type", None) or type(error).__name__
    metrics.fal_errors.labels(type=str(kind)).inc()
    log.warning("fal failed: %s (%s)", type(error).__name__, kind)
    if isinstance(error, FalValidationError):
        return f"fal rejected the request: {error.describe()}. You were not charged."
    if isinstance(error, FalAuthError | FalAccountLocked):
        return (
            "The bot's fal.ai account can't run jobs right now; an admin has to check it. "
            "You were not charged."
        )
    if isinstance(error, FalRequestFailed):
        return (
            f"fal had an infrastructure problem ({error.error_type}). "
            "You were not charged; please try again."
        )
    return f"fal is unavailable right now ({error}). You were not charged; try again soon."
