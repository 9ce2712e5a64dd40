"""Clocks: where crmkit reads the current time.

Every use case takes a :class:`Clock`, so that tests and replays control time. Times are
always timezone-aware and in UTC.
"""

from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from crmkit.errors import ValidationError

__all__ = ["SYSTEM_CLOCK", "Clock", "FixedClock", "SystemClock", "clock_now", "ensure_utc"]


@runtime_checkable
class Clock(Protocol):
    """Anything with a ``now()`` that returns an aware UTC datetime."""

    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


def ensure_utc(value: object, field: str = "") -> datetime:
    """Return ``value`` as an aware datetime in UTC, or raise ``ValidationError``.

    Aware datetimes in another zone are converted (the instant is kept); naive datetimes
    and other types are rejected, because their instant is unknown.
    """
    if not isinstance(value, datetime):
        raise ValidationError(field, value, "expected a timezone-aware datetime")
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(field, value, "naive datetime: a timezone (UTC) is required")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValidationError(field, value, "lies outside the years 1 to 9999 in UTC") from None


def clock_now(clock: object, field: str = "clock") -> datetime:
    """``clock.now()``, checked: a :class:`ValidationError` naming ``field`` when ``clock``
    is not a clock or its time is not an aware datetime (as UTC)."""
    now = getattr(clock, "now", None)
    if not callable(now):
        raise ValidationError(field, clock, "expected a Clock (an object with now())")
    return ensure_utc(now(), f"{field}.now()")


class SystemClock:
    """The real time, from the operating system."""

    __slots__ = ()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()
"""The default clock of every constructor that takes one."""


class FixedClock:
    """A clock that stands still until told otherwise; for tests, demos and replays.

    ``step`` (default zero) is added after every reading, so successive ``now()`` calls
    can be made strictly increasing.
    """

    __slots__ = ("_now", "_step")

    def __init__(self, at: datetime, *, step: timedelta = timedelta(0)) -> None:
        if step < timedelta(0):
            raise ValidationError("step", step, "a clock cannot run backwards")
        self._now = ensure_utc(at, "at")
        self._step = step

    def now(self) -> datetime:
        current = self._now
        self._now = current + self._step
        return current

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by ``delta`` and return the new time."""
        if delta < timedelta(0):
            raise ValidationError("delta", delta, "a clock cannot run backwards")
        self._now += delta
        return self._now

    def set(self, at: datetime) -> None:
        """Jump to ``at`` (which may lie in the past, for replays)."""
        self._now = ensure_utc(at, "at")

    def __repr__(self) -> str:
        return f"FixedClock({self._now.isoformat()!r})"
