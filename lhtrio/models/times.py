"""Timestamps as lhtrio writes them: RFC 3339, UTC, second precision, four-digit years.

``strftime("%Y")`` does not pad years before 1000 (glibc writes ``999``), which no RFC 3339
reader accepts, and converting a time near the ends of the calendar to UTC overflows. Every time
that is stored or sent goes through :func:`format_time`, and every time that is received through
:func:`parse_time`, which refuses (with :class:`~lhtrio.errors.InvalidArgumentError`) anything
:func:`format_time` could not write back.

**The wall clock** is read through :func:`wall_now` (and :func:`utc_now`), which asks
:data:`WALL_CLOCK` first: unset (production), it is the system's; the deterministic simulator
(:mod:`lhtrio.sim`) sets it to a clock that follows trio's (mock) clock, so that leases expire,
and timestamps read, in simulated time, the same on every replay.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextvars import ContextVar

from lhtrio.errors import InvalidArgumentError

__all__ = ["WALL_CLOCK", "format_time", "parse_time", "utc", "utc_now", "wall_now"]

#: The wall clock of the current task and those it starts; ``None``: the system's.
WALL_CLOCK: ContextVar[Callable[[], dt.datetime] | None] = ContextVar(
    "lhtrio_wall_clock", default=None
)


def wall_now() -> dt.datetime:
    """Now, in UTC: the system's clock, or the one :data:`WALL_CLOCK` holds."""
    clock = WALL_CLOCK.get()
    return dt.datetime.now(dt.UTC) if clock is None else clock()


def utc(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC, second precision; InvalidArgumentError if it has no zone or overflows."""
    if value.tzinfo is None:
        raise InvalidArgumentError(f"time {value!r} has no time zone")
    try:
        return value.astimezone(dt.UTC).replace(microsecond=0)
    except (OverflowError, ValueError):
        raise InvalidArgumentError(
            f"time {value.isoformat()} is outside the years 0001-9999 in UTC"
        ) from None


def format_time(value: dt.datetime) -> str:
    """``2026-11-22T10:00:00Z``: RFC 3339, UTC, second precision, the year always four digits."""
    v = utc(value)
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}Z"


def parse_time(text: object) -> dt.datetime:
    """An RFC 3339 timestamp with a time zone, in UTC; InvalidArgumentError otherwise."""
    if not isinstance(text, str):
        raise InvalidArgumentError(f"expected an RFC 3339 time, got {type(text).__name__}")
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgumentError(f"{text!r} is not an RFC 3339 time") from None
    if value.tzinfo is None or "T" not in text:
        raise InvalidArgumentError(f"{text!r} is not an RFC 3339 time with a time zone")
    return utc(value)


def utc_now() -> dt.datetime:
    return wall_now().replace(microsecond=0)
