"""The periods of a report: bounded in number, refused (not crashed) at the calendar's ends."""

from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from typing import Final, TypeVar

from crmkit.analytics._periods import Granularity, Period, period_of, periods
from crmkit.errors import ValidationError

__all__ = ["MAX_PERIODS", "period_at", "report_periods", "within_calendar"]

_T = TypeVar("_T")

MAX_PERIODS: Final = 10_000
"""The most periods one report covers."""

# the shortest each period can be (a day loses an hour on a daylight saving change)
_SHORTEST: Final = {
    Granularity.DAY: timedelta(hours=23),
    Granularity.WEEK: timedelta(days=7, hours=-1),
    Granularity.MONTH: timedelta(days=28, hours=-1),
    Granularity.QUARTER: timedelta(days=89, hours=-1),
    Granularity.YEAR: timedelta(days=365, hours=-1),
}


def report_periods(
    start: datetime, end: datetime, granularity: Granularity, tz: tzinfo
) -> tuple[Period, ...]:
    """The periods of ``granularity`` from ``start`` to ``end`` on the calendar of ``tz``,
    at most :data:`MAX_PERIODS` of them."""
    try:
        granularity = Granularity(granularity)
    except (TypeError, ValueError):
        raise ValidationError("granularity", granularity, "expected a Granularity") from None
    if not isinstance(tz, tzinfo):
        raise ValidationError("tz", tz, "expected a tzinfo")
    if isinstance(start, datetime) and isinstance(end, datetime):
        try:
            length = end - start
        except TypeError:
            length = timedelta(0)  # naive against aware: periods() names the naive one
        if length > MAX_PERIODS * _SHORTEST[granularity]:
            raise ValidationError(
                "end", end, f"more than {MAX_PERIODS} periods; choose a longer granularity"
            )
    return within_calendar(lambda: periods(start, end, granularity, tz), "end", end)


def within_calendar(compute: Callable[[], _T], field: str, value: object) -> _T:
    """``compute()``, with a period beyond the years 1 to 9999 refused as ``field``."""
    try:
        return compute()
    except (OverflowError, ValueError) as error:
        if isinstance(error, ValidationError):
            raise
        raise ValidationError(
            field, value, "a period around it lies outside the years 1 to 9999"
        ) from None


def period_at(at: datetime, granularity: Granularity, tz: tzinfo) -> Period:
    """:func:`period_of`, refusing instants whose period leaves the calendar."""
    return within_calendar(lambda: period_of(at, granularity, tz), "at", at)
