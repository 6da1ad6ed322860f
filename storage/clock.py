"""Time and money as stored: UTC epoch microseconds and integer micro-dollars.

Integers compare and sum exactly in SQLite and PostgreSQL alike, so rolling windows, month
boundaries and budgets never suffer from text formats or float rounding.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROS_PER_SECOND = 1_000_000
MICRO_USD_PER_USD = 1_000_000


def utc(moment: datetime | None) -> datetime:
    """`moment` in UTC, or the current time; a naive datetime is refused, never guessed."""
    if moment is None:
        return datetime.now(UTC)
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("datetimes given to storage must be timezone-aware")
    return moment.astimezone(UTC)


def to_us(moment: datetime) -> int:
    delta = utc(moment) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * MICROS_PER_SECOND + delta.microseconds


def from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def opt_from_us(value: int | None) -> datetime | None:
    return None if value is None else from_us(value)


def day_start(moment: datetime) -> datetime:
    return utc(moment).replace(hour=0, minute=0, second=0, microsecond=0)


def month_start(moment: datetime) -> datetime:
    return day_start(moment).replace(day=1)


def next_month_start(moment: datetime) -> datetime:
    start = month_start(moment)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def month_key(moment: datetime) -> str:
    """The calendar month (UTC) a reservation counts against, as 'YYYY-MM'."""
    moment = utc(moment)
    return f"{moment.year:04d}-{moment.month:02d}"


def to_micro_usd(usd: float) -> int:
    return round(usd * MICRO_USD_PER_USD)


def from_micro_usd(micro: int) -> float:
    return micro / MICRO_USD_PER_USD
