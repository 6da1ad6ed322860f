"""Errors whose text is meant for the member: specific, actionable, never a traceback."""

from __future__ import annotations

from jobs.text import Part, Words, plain


class MemberError(Exception):
    """A problem the member can act on. Its `parts` are shown to them as they are (times and
    channels rendered by the chat); `str(error)` is the plain text."""

    def __init__(self, *parts: Part) -> None:
        self.parts: Words = tuple(parts)
        super().__init__(plain(self.parts))


class BadRequest(MemberError):
    """The request itself is wrong: an input, an option, a LoRA."""


class Refused(MemberError):
    """The request is fine but may not run now: quota, jobs in flight, budget, policy."""


class NotAllowed(MemberError):
    """The member may not do this (cancel someone else's job, rerun when requester-only)."""


class NotFound(MemberError):
    """The job, result or LoRA does not exist (any more), or belongs to another server."""
