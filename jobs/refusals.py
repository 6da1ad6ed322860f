"""Member-facing words for an admission refusal, with the numbers and when it frees."""

from __future__ import annotations

from datetime import UTC, datetime

from jobs.text import When, Words, plural
from storage.models import QuotaLimits, Refusal

__all__ = ["describe_refusal", "next_month", "plural"]


def _hours(seconds: int) -> str:
    hours = seconds / 3600
    return f"{hours:g} h"


def next_month(moment: datetime) -> datetime:
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def describe_refusal(
    refusal: Refusal, wanted: int, limits: QuotaLimits, *, what: str = "edit"
) -> Words:
    """`what` names the request: "edit", or "sweep" for a group of jobs."""
    if refusal.kind == "quota":
        used, limit = int(refusal.used), int(refusal.limit)
        window = _hours(limits.window_seconds)
        if limit == 0:
            return (
                f"Your quota on this server is 0 images per {window}, so you can't make edits "
                "here. An admin can change it with `/admin quota`.",
            )
        text = f"You've used {used} of {limit} images in the last {window}"
        if wanted > 1 and used < limit:
            text += f"; this {what} makes {wanted} and you have {limit - used} left"
        if refusal.next_free_at is not None:
            return (text + "; the next one frees ", When(refusal.next_free_at), ".")
        return (text + ".",)
    if refusal.kind == "in_flight":
        return (
            f"You already have {plural(int(refusal.used), 'edit')} running (the limit is "
            f"{int(refusal.limit)}). Wait for one to finish, or cancel it with `/jobs`.",
        )
    if refusal.used < refusal.limit:
        text = (
            f"This {what} (about ${refusal.requested:.2f}) would take the server past its "
            f"${refusal.limit:.2f} monthly budget (${refusal.used:.2f} spent so far)"
        )
    else:
        text = (
            f"This server has spent ${refusal.used:.2f} of its ${refusal.limit:.2f} monthly "
            "budget for edits"
        )
    fix = ". An admin can raise it with `/admin budget set`."
    if refusal.next_free_at is not None:
        return (text + "; it resets ", When(refusal.next_free_at, "D"), fix)
    return (text + fix,)
