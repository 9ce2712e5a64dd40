"""Calendar periods (day, week, month, quarter, year) that KPIs are grouped by.

A period is a half-open interval ``[start, end)`` of aware datetimes on the calendar of
one time zone (UTC unless the host names its own, so that "March" means March in Berlin
when the host reports in Berlin).
"""

import enum
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import attrs

from crmkit.errors import ValidationError

__all__ = ["Granularity", "Period", "period_of", "periods"]


class Granularity(enum.StrEnum):
    """How long a reporting period is."""

    DAY = "day"
    WEEK = "week"  # ISO weeks, Monday to Sunday
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


@attrs.frozen(order=True)
class Period:
    """One calendar period: ``start`` inclusive, ``end`` exclusive, both aware."""

    start: datetime
    end: datetime
    granularity: Granularity = attrs.field(order=False)

    @property
    def label(self) -> str:
        """``2026-03-05``, ``2026-W10``, ``2026-03``, ``2026-Q1`` or ``2026``."""
        day = self.start.date()
        match self.granularity:
            case Granularity.DAY:
                return day.isoformat()
            case Granularity.WEEK:
                year, week, _ = day.isocalendar()
                return f"{year}-W{week:02d}"
            case Granularity.MONTH:
                return f"{day.year}-{day.month:02d}"
            case Granularity.QUARTER:
                return f"{day.year}-Q{(day.month - 1) // 3 + 1}"
            case Granularity.YEAR:
                return str(day.year)

    def __contains__(self, at: object) -> bool:
        return isinstance(at, datetime) and self.start <= at < self.end

    def next(self) -> "Period":
        """The period right after this one."""
        return period_of(self.end, self.granularity, self.start.tzinfo or UTC)


def _first_day(day: date, granularity: Granularity) -> date:
    match granularity:
        case Granularity.DAY:
            return day
        case Granularity.WEEK:
            return day - timedelta(days=day.weekday())
        case Granularity.MONTH:
            return day.replace(day=1)
        case Granularity.QUARTER:
            return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
        case Granularity.YEAR:
            return day.replace(month=1, day=1)


def _after(first: date, granularity: Granularity) -> date:
    match granularity:
        case Granularity.DAY:
            return first + timedelta(days=1)
        case Granularity.WEEK:
            return first + timedelta(days=7)
        case Granularity.YEAR:
            return first.replace(year=first.year + 1)
        case _:
            months = first.month - 1 + (1 if granularity is Granularity.MONTH else 3)
            return first.replace(year=first.year + months // 12, month=months % 12 + 1)


def _aware(value: object, field: str) -> datetime:
    if not isinstance(value, datetime):
        raise ValidationError(field, value, "expected a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(field, value, "expected a timezone-aware datetime")
    return value


def period_of(at: datetime, granularity: Granularity, tz: tzinfo = UTC) -> Period:
    """The period of ``granularity`` that holds ``at``, on the calendar of ``tz``."""
    _aware(at, "at")
    if not isinstance(tz, tzinfo):
        raise ValidationError("tz", tz, "expected a tzinfo")
    known = {g.value: g for g in Granularity}
    if not isinstance(granularity, str) or granularity not in known:
        raise ValidationError("granularity", granularity, "expected a Granularity")
    granularity = known[granularity]
    try:  # the calendar ends at years 1 and 9999: a period past either has no bounds
        first = _first_day(at.astimezone(tz).date(), granularity)
        after = _after(first, granularity)
    except (OverflowError, ValueError):
        raise ValidationError("at", at, "its period falls outside years 1 to 9999") from None
    start = datetime.combine(first, time(), tz)
    end = datetime.combine(after, time(), tz)
    return Period(start, end, granularity)


def periods(
    start: datetime, end: datetime, granularity: Granularity, tz: tzinfo = UTC
) -> tuple[Period, ...]:
    """Every period of ``granularity`` that overlaps ``[start, end)``, in order: the first
    holds ``start``; none when ``end <= start``."""
    _aware(end, "end")
    if end <= _aware(start, "start"):
        return ()
    found = [period_of(start, granularity, tz)]
    while found[-1].end < end:
        found.append(found[-1].next())
    return tuple(found)
