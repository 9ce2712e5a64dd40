from datetime import UTC, datetime, timedelta, timezone

import pytest

from crmkit.clock import SYSTEM_CLOCK, Clock, FixedClock, SystemClock, ensure_utc
from crmkit.errors import ValidationError

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def test_system_clock_is_aware_utc() -> None:
    now = SYSTEM_CLOCK.now()
    assert now.tzinfo is UTC
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)
    assert isinstance(SystemClock(), Clock)


def test_fixed_clock_stands_still_until_moved() -> None:
    clock = FixedClock(T0)
    assert clock.now() == clock.now() == T0
    assert clock.advance(timedelta(hours=2)) == T0 + timedelta(hours=2)
    assert clock.now() == T0 + timedelta(hours=2)
    clock.set(T0 - timedelta(days=1))
    assert clock.now() == T0 - timedelta(days=1)
    assert isinstance(clock, Clock)


def test_fixed_clock_can_step_on_every_reading() -> None:
    clock = FixedClock(T0, step=timedelta(seconds=1))
    assert [clock.now() for _ in range(3)] == [T0 + timedelta(seconds=s) for s in range(3)]


def test_fixed_clock_converts_to_utc_and_refuses_naive_times() -> None:
    assert FixedClock(datetime(2026, 1, 5, 9, tzinfo=timezone(timedelta(hours=1)))).now() == T0
    with pytest.raises(ValidationError) as caught:
        FixedClock(datetime(2026, 1, 5))
    assert caught.value.field == "at"
    with pytest.raises(ValidationError):
        FixedClock(T0).advance(timedelta(seconds=-1))
    with pytest.raises(ValidationError):
        FixedClock(T0, step=timedelta(seconds=-1))


def test_ensure_utc() -> None:
    assert ensure_utc(T0) is T0
    with pytest.raises(ValidationError, match="naive"):
        ensure_utc(datetime(2026, 1, 5), "due_at")
    with pytest.raises(ValidationError, match="expected a timezone-aware datetime"):
        ensure_utc("2026-01-05", "due_at")
