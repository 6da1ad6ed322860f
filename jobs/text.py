"""Words for members, with the parts only the chat can render: moments, channels and roles.

The domain says *what* to show (a time, a channel); the Discord adapter turns each part into
its markup (`cogs/utils/render.py`). `str()` of a part is a plain fallback for logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

TimeStyle = Literal["R", "D", "d", "f", "t"]


@dataclass(frozen=True, slots=True)
class When:
    """A moment, shown in each reader's own time zone: relative ("in 2 hours", style R) or as a
    date (D)."""

    moment: datetime
    style: TimeStyle = "R"

    def __str__(self) -> str:
        return self.moment.strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True, slots=True)
class ChannelRef:
    id: int

    def __str__(self) -> str:
        return f"channel {self.id}"


@dataclass(frozen=True, slots=True)
class RoleRef:
    id: int

    def __str__(self) -> str:
        return f"role {self.id}"


Part = str | When | ChannelRef | RoleRef
Words = tuple[Part, ...]


def plain(parts: Words) -> str:
    return "".join(str(part) for part in parts)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
