"""Reporting periods: every instant falls in exactly one period, labels are the calendar's."""

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmkit.analytics import Granularity, Period, period_of, periods
from crmkit.errors import ValidationError

BERLIN = ZoneInfo("Europe/Berlin")
instants = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
)


@given(instants, st.sampled_from(Granularity))
def test_an_instant_lies_in_its_period_and_periods_tile_time(
    at: datetime, granularity: Granularity
) -> None:
    period = period_of(at, granularity)
    assert at in period
    assert period.start < period.end
    assert period.next().start == period.end
    assert period_of(period.end - timedelta(microseconds=1), granularity) == period


@pytest.mark.parametrize(
    ("granularity", "label", "start", "end"),
    [
        (Granularity.DAY, "2026-11-30", datetime(2026, 11, 30), datetime(2026, 12, 1)),
        (Granularity.WEEK, "2026-W49", datetime(2026, 11, 30), datetime(2026, 12, 7)),
        (Granularity.MONTH, "2026-11", datetime(2026, 11, 1), datetime(2026, 12, 1)),
        (Granularity.QUARTER, "2026-Q4", datetime(2026, 10, 1), datetime(2027, 1, 1)),
        (Granularity.YEAR, "2026", datetime(2026, 1, 1), datetime(2027, 1, 1)),
    ],
)
def test_labels_and_bounds(
    granularity: Granularity, label: str, start: datetime, end: datetime
) -> None:
    period = period_of(datetime(2026, 11, 30, 23, 30, tzinfo=UTC), granularity)
    assert period.label == label
    assert (period.start, period.end) == (start.replace(tzinfo=UTC), end.replace(tzinfo=UTC))


def test_a_host_time_zone_moves_the_boundaries() -> None:
    # 23:30 UTC on 31 March is already April in Berlin.
    at = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)
    assert period_of(at, Granularity.MONTH).label == "2026-03"
    april = period_of(at, Granularity.MONTH, BERLIN)
    assert april.label == "2026-04"
    assert april.start == datetime(2026, 4, 1, tzinfo=BERLIN)


def test_periods_cover_a_range() -> None:
    found = periods(
        datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC), Granularity.MONTH
    )
    assert [p.label for p in found] == ["2026-01", "2026-02", "2026-03"]
    assert periods(found[0].end, found[0].start, Granularity.MONTH) == ()
    assert isinstance(found[0], Period)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValidationError) as naive:
        period_of(datetime(2026, 1, 1), Granularity.DAY)
    assert naive.value.field == "at"
    with pytest.raises(ValidationError):
        periods(datetime(2026, 1, 1, tzinfo=UTC), "2026-02-01", Granularity.DAY)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tz": []}, "tz"),
        ({"granularity": "fortnight"}, "granularity"),
        ({"at": datetime.max.replace(tzinfo=UTC), "granularity": Granularity.YEAR}, "at"),
        ({"at": datetime(1, 1, 1, 5, tzinfo=UTC), "tz": timezone(timedelta(hours=-12))}, "at"),
    ],
)
def test_period_of_refuses_bad_arguments_naming_them(kwargs: dict[str, object], field: str) -> None:
    arguments: dict[str, object] = {
        "at": datetime(2026, 3, 2, tzinfo=UTC),
        "granularity": Granularity.DAY,
        **kwargs,
    }
    with pytest.raises(ValidationError) as caught:
        period_of(**arguments)  # type: ignore[arg-type]
    assert caught.value.field == field
