"""Business hours calendars: when the SLA clocks of a support team run.

A :class:`BusinessCalendar` names an IANA time zone, the working hours of each weekday in
local wall-clock time, and holidays (local dates). :func:`add_business_time` and
:func:`business_time_between` convert between instants (aware UTC datetimes) and business
time. They work day by day in local time and convert each working interval to UTC, so
daylight saving changes are handled: a working day of 09:00-17:00 lasts eight real hours
on either side of a change, and an interval crossing a change lasts as long as the clock
on the wall says it does. Wall-clock times that occur twice (the clock is set back) count
from their first occurrence; times skipped when the clock is set forward start at the
change.

``None`` in place of a calendar means calendar hours: every instant counts (24/7).
"""

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from crmkit._extras import import_extra
from crmkit.clock import ensure_utc
from crmkit.errors import Problem, ValidationError, short_repr
from crmkit.models._fields import expect

__all__ = [
    "BusinessCalendar",
    "WorkingHours",
    "add_business_time",
    "business_time_between",
]

_MIDNIGHT: Final = time(0)
_DAY: Final = timedelta(days=1)
_ZERO: Final = timedelta(0)
_WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@attrs.frozen
class WorkingHours:
    """One interval of working time within a day, in local wall-clock time.

    ``start`` is included, ``end`` excluded; ``end`` must lie after ``start``, except that
    an ``end`` of ``00:00`` means midnight at the end of the day (24:00), so
    ``WorkingHours(time(0), time(0))`` is the whole day. Times carry no time zone (the
    calendar's zone applies).
    """

    start: time
    end: time

    def __attrs_post_init__(self) -> None:
        problems = [
            Problem(name, value, "expected a time of day without a time zone")
            for name, value in (("start", self.start), ("end", self.end))
            if not isinstance(value, time) or value.tzinfo is not None
        ]
        if not problems and self.end != _MIDNIGHT and self.end <= self.start:
            problems.append(Problem("end", self.end, f"must lie after start ({self.start})"))
        if problems:
            raise ValidationError.of(problems)

    @property
    def length(self) -> timedelta:
        """The interval's length on a day without a daylight saving change."""
        return _offset(self.end, end=True) - _offset(self.start, end=False)


def _offset(value: time, *, end: bool) -> timedelta:
    if end and value == _MIDNIGHT:
        return _DAY
    return timedelta(
        hours=value.hour, minutes=value.minute, seconds=value.second, microseconds=value.microsecond
    )


def _to_week(value: Iterable[Iterable[WorkingHours]]) -> tuple[tuple[WorkingHours, ...], ...]:
    try:
        return tuple(tuple(day) for day in value)
    except TypeError:
        return value  # type: ignore[return-value]  # the check names it


def _day_hours(day: int, spans: object) -> tuple[WorkingHours, ...]:
    """The working hours of weekday ``day`` from ``[(start, end), ...]``."""
    where = f"hours[{day}]"
    if isinstance(spans, str | bytes | Mapping) or not isinstance(spans, Iterable):
        raise ValidationError(where, spans, "expected a list of (start, end) pairs")
    found = []
    for index, span in enumerate(spans):
        if isinstance(span, str | bytes) or not isinstance(span, Sequence) or len(span) != 2:
            raise ValidationError(f"{where}[{index}]", span, "expected a (start, end) pair")
        try:
            found.append(WorkingHours(*span))
        except ValidationError as error:
            raise error.within(f"{where}[{index}]") from None
    return tuple(found)


def _to_dates(value: Iterable[date]) -> frozenset[date]:
    try:
        return frozenset(value)
    except TypeError:
        return value  # type: ignore[return-value]  # the check names it


@attrs.frozen(cache_hash=True)
class BusinessCalendar:
    """Working hours per weekday in an IANA time zone, and holidays.

    ``week`` has seven entries, Monday first, each a sorted tuple of non-overlapping
    :class:`WorkingHours` (empty: a day off). ``holidays`` are local dates without working
    time. At least one weekday must have working hours.

    >>> from datetime import time
    >>> berlin = BusinessCalendar.workdays("Europe/Berlin", time(9), time(17))
    >>> len(berlin.week), berlin.week[5]
    (7, ())

    Invalid definitions raise :class:`~crmkit.errors.ValidationError` naming the field
    (``timezone``, ``week[2][1]``, ``holidays``).
    """

    timezone: str
    week: tuple[tuple[WorkingHours, ...], ...] = attrs.field(converter=_to_week)
    holidays: frozenset[date] = attrs.field(default=frozenset(), converter=_to_dates)

    def __attrs_post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ValidationError.of(problems)

    def _problems(self) -> Iterator[Problem]:
        try:
            _zone(self.timezone)
        except ValidationError as error:
            yield from error.problems
        yield from _week_problems(self.week)
        holidays: object = self.holidays  # as given, when the converter could not read it
        if not isinstance(holidays, frozenset):
            yield Problem("holidays", holidays, "expected a set of dates")
        else:
            for day in sorted(holidays, key=short_repr):
                if not isinstance(day, date) or isinstance(day, datetime):
                    yield Problem("holidays", day, "expected a date (not a datetime)")

    @property
    def zone(self) -> ZoneInfo:
        """The calendar's time zone."""
        return ZoneInfo(self.timezone)

    @classmethod
    def workdays(
        cls,
        timezone: str,
        start: time,
        end: time,
        *,
        holidays: Iterable[date] = (),
    ) -> "BusinessCalendar":
        """Monday to Friday from ``start`` to ``end``; weekends off."""
        hours = (WorkingHours(start, end),)
        return cls(timezone, (hours,) * 5 + ((),) * 2, holidays)

    @classmethod
    def weekly(
        cls,
        timezone: str,
        hours: Mapping[int, Sequence[tuple[time, time]]],
        *,
        holidays: Iterable[date] = (),
    ) -> "BusinessCalendar":
        """A calendar from ``{weekday: [(start, end), ...]}``, weekday 0 being Monday.

        Weekdays missing from ``hours`` are days off.
        """
        if not isinstance(hours, Mapping):
            raise ValidationError("hours", hours, "expected {weekday: [(start, end), ...]}")
        unknown = sorted(set(hours) - set(range(7)), key=short_repr)
        if unknown:
            raise ValidationError("hours", unknown[0], "weekdays are 0 (Monday) to 6 (Sunday)")
        week = tuple(_day_hours(day, hours.get(day, ())) for day in range(7))
        return cls(timezone, week, holidays)  # the converter reads it

    def with_holidays(self, days: Iterable[date]) -> "BusinessCalendar":
        """The same calendar with ``days`` added to its holidays."""
        more: object = _to_dates(days)
        if not isinstance(more, frozenset):
            raise ValidationError("days", days, "expected a collection of dates")
        return attrs.evolve(self, holidays=self.holidays | more)

    def with_public_holidays(
        self, country: str, years: Iterable[int], *, subdivision: str | None = None
    ) -> "BusinessCalendar":
        """The same calendar with the public holidays of ``country`` in ``years`` added.

        ``country`` is an ISO 3166-1 alpha-2 code (``"DE"``), ``subdivision`` a region of
        it (``"BY"`` for Bavaria). The dates come from the ``holidays`` package (install
        ``crmkit[holidays]``; :class:`~crmkit.errors.MissingExtra` names the extra when it
        is absent). Unknown countries, subdivisions or years raise
        :class:`~crmkit.errors.ValidationError` naming the argument.
        """
        module = import_extra(
            "holidays", extra="holidays", feature="BusinessCalendar.with_public_holidays"
        )
        wanted = list(years) if not isinstance(years, str | bytes) else years
        if not isinstance(wanted, list):
            raise ValidationError("years", years, "expected an iterable of years")
        for year in wanted:
            if isinstance(year, bool) or not isinstance(year, int) or not 1 <= year <= 9999:
                raise ValidationError("years", year, "expected a year between 1 and 9999")
        supported: Mapping[str, Sequence[str]] = module.list_supported_countries()
        if not isinstance(country, str) or country not in supported:
            raise ValidationError(
                "country", country, "no public holidays known for this country code"
            )
        if subdivision is not None and subdivision not in supported[country]:
            raise ValidationError(
                "subdivision", subdivision, f"not a subdivision of {country} known for holidays"
            )
        found: Iterable[date] = module.country_holidays(
            country, subdiv=subdivision, years=wanted
        ).keys()
        return self.with_holidays(found)


def _zone(key: object) -> ZoneInfo:
    if not isinstance(key, str) or not key:
        raise ValidationError("timezone", key, "expected an IANA time zone name")
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError(
            "timezone", key, "unknown time zone (expected an IANA name such as Europe/Berlin)"
        ) from None


def _week_problems(week: object) -> Iterator[Problem]:
    if not isinstance(week, tuple) or len(week) != 7:
        yield Problem("week", week, "expected seven days of working hours, Monday first")
        return
    working = False
    for index, day in enumerate(week):
        where = f"week[{index}]"
        if not isinstance(day, tuple):
            yield Problem(where, day, f"expected the working hours of {_WEEKDAYS[index]}")
            continue
        previous: WorkingHours | None = None
        for position, hours in enumerate(day):
            if not isinstance(hours, WorkingHours):
                yield Problem(f"{where}[{position}]", hours, "expected WorkingHours")
                previous = None
                continue
            if previous is not None and _offset(hours.start, end=False) < _offset(
                previous.end, end=True
            ):
                yield Problem(
                    f"{where}[{position}]",
                    hours,
                    f"overlaps or precedes {previous} (intervals must be sorted and disjoint)",
                )
            previous = hours
            working = True
    if not working:
        yield Problem("week", week, "has no working hours on any day")


# ---------------------------------------------------------------------------- instants


def _instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant at which the wall clock of ``zone`` shows ``at`` on ``day``.

    The first occurrence of a repeated wall time; for a skipped wall time, the instant of
    the change (the first instant whose wall time is later).
    """
    local = datetime.combine(day, at, tzinfo=zone)
    first = local.astimezone(UTC)
    wall = local.replace(tzinfo=None)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # Skipped by a change: search the change between the two readings of the offset.
    other = local.replace(fold=1).astimezone(UTC)
    low, high = min(first, other), max(first, other)
    step = timedelta(microseconds=1)
    while high - low > step:
        middle = low + (high - low) // 2
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high


@functools.lru_cache(maxsize=8192)
def _spans(calendar: BusinessCalendar, day: date) -> tuple[tuple[datetime, datetime], ...]:
    """The working intervals of the local date ``day`` as UTC instants, in order."""
    if day in calendar.holidays:
        return ()
    zone = calendar.zone
    found = []
    for hours in calendar.week[day.weekday()]:
        start = _instant(day, hours.start, zone)
        if hours.end == _MIDNIGHT:
            end = _instant(day + _DAY, _MIDNIGHT, zone)
        else:
            end = _instant(day, hours.end, zone)
        if end > start:
            found.append((start, end))
    return tuple(found)


def _local_date(calendar: BusinessCalendar, at: datetime) -> date:
    return at.astimezone(calendar.zone).date()


def _next_day(day: date, field: str, value: object) -> date:
    try:
        return day + _DAY
    except OverflowError:
        raise ValidationError(field, value, "reaches beyond the year 9999") from None


def _duration(value: object, field: str) -> timedelta:
    if not isinstance(value, timedelta):
        raise ValidationError(field, value, "expected a timedelta")
    if value < _ZERO:
        raise ValidationError(field, value, "must not be negative")
    return value


def add_business_time(
    calendar: BusinessCalendar | None, start: datetime, duration: timedelta
) -> datetime:
    """The instant at which ``duration`` of business time has passed since ``start``.

    With ``calendar=None`` (calendar hours) that is ``start + duration``. A zero duration
    returns ``start`` itself; otherwise the result lies within working hours (or at the
    end of a working interval). ``start`` must be aware (the result is in UTC).

    >>> from datetime import UTC, datetime, time, timedelta
    >>> office = BusinessCalendar.workdays("UTC", time(9), time(17))
    >>> friday_4pm = datetime(2026, 3, 6, 16, 0, tzinfo=UTC)
    >>> add_business_time(office, friday_4pm, timedelta(hours=2)).isoformat()
    '2026-03-09T10:00:00+00:00'
    """
    expect(calendar, (BusinessCalendar, type(None)), "calendar", "a BusinessCalendar or None")
    start = ensure_utc(start, "start")
    remaining = _duration(duration, "duration")
    if calendar is None:
        try:
            return start + remaining
        except OverflowError:
            raise ValidationError("duration", duration, "reaches beyond the year 9999") from None
    if remaining == _ZERO:
        return start
    day = _local_date(calendar, start)
    while True:
        for span_start, span_end in _spans(calendar, day):
            if span_end <= start:
                continue
            begin = max(span_start, start)
            available = span_end - begin
            if remaining <= available:
                return begin + remaining
            remaining -= available
        day = _next_day(day, "duration", duration)


def business_time_between(
    calendar: BusinessCalendar | None, start: datetime, end: datetime
) -> timedelta:
    """The business time from ``start`` to ``end`` (``end`` not before ``start``).

    With ``calendar=None`` (calendar hours) that is ``end - start``. Never more than
    ``end - start``; the inverse of :func:`add_business_time`:
    ``business_time_between(c, s, add_business_time(c, s, d)) == d``.

    >>> from datetime import UTC, datetime, time
    >>> office = BusinessCalendar.workdays("UTC", time(9), time(17))
    >>> str(business_time_between(
    ...     office, datetime(2026, 3, 6, 16, tzinfo=UTC), datetime(2026, 3, 9, 10, tzinfo=UTC)
    ... ))
    '2:00:00'
    """
    expect(calendar, (BusinessCalendar, type(None)), "calendar", "a BusinessCalendar or None")
    start = ensure_utc(start, "start")
    end = ensure_utc(end, "end")
    if end < start:
        raise ValidationError("end", end, f"is earlier than start ({start.isoformat()})")
    if calendar is None:
        return end - start
    total = _ZERO
    day = _local_date(calendar, start)
    last = _local_date(calendar, end)
    while day <= last:
        for span_start, span_end in _spans(calendar, day):
            low = max(span_start, start)
            high = min(span_end, end)
            if high > low:
                total += high - low
        if day == last:
            break
        day = _next_day(day, "end", end)
    return total
