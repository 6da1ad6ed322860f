"""Member-facing words for an admission refusal, with the numbers and when it frees."""

from __future__ import annotations

from datetime import datetime

from storage.models import QuotaLimits, Refusal


def discord_time(moment: datetime, style: str = "R") -> str:
    """Discord renders <t:…> in each reader's own time zone and language."""
    return f"<t:{int(moment.timestamp())}:{style}>"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _hours(seconds: int) -> str:
    hours = seconds / 3600
    return f"{hours:g} h"


def describe_refusal(refusal: Refusal, wanted: int, limits: QuotaLimits) -> str:
    if refusal.kind == "quota":
        used, limit = int(refusal.used), int(refusal.limit)
        window = _hours(limits.window_seconds)
        if limit == 0:
            return (
                f"Your quota on this server is 0 images per {window}, so you can't make edits "
                "here. An admin can change it with `/admin quota`."
            )
        text = f"You've used {used} of {limit} images in the last {window}"
        if wanted > 1 and used < limit:
            text += f"; this edit makes {wanted} and you have {limit - used} left"
        if refusal.next_free_at is not None:
            text += f"; the next one frees {discord_time(refusal.next_free_at)}"
        return text + "."
    if refusal.kind == "in_flight":
        return (
            f"You already have {plural(int(refusal.used), 'edit')} running (the limit is "
            f"{int(refusal.limit)}). Wait for one to finish, or cancel it with `/jobs`."
        )
    if refusal.used < refusal.limit:
        text = (
            f"This edit (about ${refusal.requested:.2f}) would take the server past its "
            f"${refusal.limit:.2f} monthly budget (${refusal.used:.2f} spent so far)"
        )
    else:
        text = (
            f"This server has spent ${refusal.used:.2f} of its ${refusal.limit:.2f} monthly "
            "budget for edits"
        )
    if refusal.next_free_at is not None:
        text += f"; it resets {discord_time(refusal.next_free_at, 'D')}"
    return text + ". An admin can raise it with `/admin budget set`."
