"""Best send hour: per contact and per segment, in each contact's time zone, smoothed
toward the segment; properties under shifting and at the limits of smoothing."""

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmkit.automation import (
    HOURS_OF_WEEK,
    SendHour,
    best_send_hours,
    contact_zone,
    engagement_profile,
    hour_of_week,
)
from crmkit.clock import FixedClock
from crmkit.errors import ValidationError
from crmkit.models import Activity, ActivityKind, Contact

MONDAY = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday, 00:00 UTC
CLOCK = FixedClock(MONDAY)


def opened(
    contact_id: UUID, at: datetime, kind: ActivityKind = ActivityKind.EMAIL_OPENED
) -> Activity:
    return Activity.new(contact_id=contact_id, kind=kind, occurred_at=at, clock=CLOCK)


def at_hour(hour: int, week: int = 0) -> datetime:
    return MONDAY + timedelta(weeks=week, hours=hour, minutes=17)


def test_hour_of_week_is_local() -> None:
    tuesday_0830_utc = datetime(2026, 3, 3, 8, 30, tzinfo=UTC)
    assert hour_of_week(tuesday_0830_utc, "UTC") == 24 + 8
    assert hour_of_week(tuesday_0830_utc, "Europe/Berlin") == 24 + 9
    assert hour_of_week(datetime(2026, 3, 1, 23, 59, tzinfo=UTC), "UTC") == 167  # Sunday
    assert hour_of_week(datetime(2026, 3, 1, 23, 59, tzinfo=UTC), "Asia/Tokyo") == 8  # Mon


def test_a_contact_without_opens_gets_the_segments_hour_in_its_own_zone() -> None:
    busy, quiet, tokyo = uuid4(), uuid4(), uuid4()
    activities = {busy: [opened(busy, at_hour(24 + 9, week)) for week in range(4)]}
    hours = best_send_hours(activities, {busy: "UTC", quiet: "UTC", tokyo: "Asia/Tokyo"})
    assert hours.segment == SendHour(33, None, 4, 1.0)
    assert hours.contacts[busy].hour_of_week == 33
    assert hours.contacts[busy].own_weight == pytest.approx(4 / 14)
    assert hours.contacts[quiet] == SendHour(33, "UTC", 0, 0.0)
    # Tuesday 09:00 in Tokyo: the segment's hour is local to each member
    assert hours.contacts[tokyo].hour_of_week == 33
    assert hours.contacts[tokyo].next_after(MONDAY) == datetime(2026, 3, 3, 0, tzinfo=UTC)


def test_clicks_count_and_other_activities_do_not() -> None:
    contact = uuid4()
    items = [
        opened(contact, at_hour(10), ActivityKind.EMAIL_CLICKED),
        opened(contact, at_hour(50), ActivityKind.EMAIL_SENT),
        opened(contact, at_hour(50), ActivityKind.PAGE_VIEW),
    ]
    profile = engagement_profile(items, "UTC")
    assert sum(profile) == 1
    assert profile[10] == 1


def test_smoothing_moves_a_contact_with_few_opens_to_the_segment() -> None:
    me, others = uuid4(), [uuid4() for _ in range(5)]
    activities = {me: [opened(me, at_hour(100))]}
    for other in others:
        activities[other] = [opened(other, at_hour(20, week)) for week in range(4)]
    zones = dict.fromkeys([me, *others], "UTC")
    assert best_send_hours(activities, zones, prior=10).contacts[me].hour_of_week == 20
    assert best_send_hours(activities, zones, prior=0).contacts[me].hour_of_week == 100
    # with many opens of its own, its own hour wins even against a strong prior
    activities[me] = [opened(me, at_hour(100, week)) for week in range(30)]
    assert best_send_hours(activities, zones, prior=10).contacts[me].hour_of_week == 100


def test_nobody_engaged_gives_no_hour() -> None:
    contact = uuid4()
    hours = best_send_hours({}, {contact: "UTC"})
    assert hours.segment is None
    assert dict(hours.contacts) == {}
    assert sum(hours.profile) == 0


def test_bad_input_raises_validation_errors() -> None:
    contact = uuid4()
    with pytest.raises(ValidationError) as zone:
        best_send_hours({}, {contact: "Mars/Olympus"})
    assert zone.value.field == f"zones[{contact}]"
    with pytest.raises(ValidationError) as stray:
        best_send_hours({uuid4(): []}, {contact: "UTC"})
    assert stray.value.field == "activities"
    with pytest.raises(ValidationError, match="prior"):
        best_send_hours({}, {contact: "UTC"}, prior=float("nan"))
    with pytest.raises(ValidationError):
        engagement_profile(["not an activity"], "UTC")  # type: ignore[list-item]


def test_contact_zone_reads_the_custom_field() -> None:
    contact = Contact.new(email="a@example.com", custom={"timezone": "Asia/Tokyo"}, clock=CLOCK)
    assert contact_zone(contact).key == "Asia/Tokyo"
    unknown = Contact.new(email="b@example.com", custom={"timezone": "Nowhere/Else"}, clock=CLOCK)
    assert contact_zone(unknown, default="Europe/Berlin").key == "Europe/Berlin"
    assert contact_zone(contact, "tz", "UTC").key == "UTC"


# ------------------------------------------------------------------ properties

hour_lists = st.lists(st.integers(0, HOURS_OF_WEEK - 1), max_size=40)


def scores(hours: list[int], segment: list[int], prior: float) -> list[float]:
    own = [hours.count(h) for h in range(HOURS_OF_WEEK)]
    shares = [segment.count(h) / len(segment) for h in range(HOURS_OF_WEEK)] if segment else []
    if not hours:
        return shares
    return [own[h] + prior * shares[h] for h in range(HOURS_OF_WEEK)]


@given(
    st.lists(hour_lists, min_size=1, max_size=5),
    st.integers(-3, 3),
    st.integers(0, 400),
    st.floats(0, 50),
)
@settings(max_examples=150, deadline=None)
def test_shifting_every_open_shifts_every_best_hour(
    groups: list[list[int]], weeks: int, shift: int, prior: float
) -> None:
    """Moving all opens by whole weeks changes nothing; by ``shift`` hours, each best
    hour moves by as much, modulo ties (the shifted hour is a best one of the original)."""
    ids = [uuid4() for _ in groups]
    zones = dict.fromkeys(ids, "UTC")

    def activities(offset: timedelta) -> dict[UUID, list[Activity]]:
        return {
            i: [opened(i, at_hour(h, 5) + offset) for h in hours]
            for i, hours in zip(ids, groups, strict=True)
        }

    base = best_send_hours(activities(timedelta(0)), zones, prior=prior)
    by_weeks = best_send_hours(activities(timedelta(weeks=weeks)), zones, prior=prior)
    assert by_weeks == base
    assert dict(by_weeks.contacts) == dict(base.contacts)
    shifted = best_send_hours(activities(timedelta(hours=shift)), zones, prior=prior)
    assert shifted.profile == base.profile[-shift % 168 :] + base.profile[: -shift % 168]
    everyone = [h for hours in groups for h in hours]
    if not everyone:
        assert shifted.segment is None
        assert base.segment is None
        return
    assert base.segment is not None
    assert shifted.segment is not None
    for i, hours in zip(ids, groups, strict=True):
        original = scores(hours, everyone, prior)
        back = (shifted.contacts[i].hour_of_week - shift) % HOURS_OF_WEEK
        assert original[back] == pytest.approx(max(original))
        assert original[base.contacts[i].hour_of_week] == max(original)
        assert base.contacts[i].hour_of_week == original.index(max(original))  # earliest


@given(hour_lists, st.sampled_from(["Asia/Tokyo", "Asia/Kathmandu", "America/Bogota"]))
@settings(max_examples=60, deadline=None)
def test_a_time_zone_without_daylight_saving_shifts_the_profile(
    hours: list[int], name: str
) -> None:
    contact = uuid4()
    items = [opened(contact, at_hour(h, 3)) for h in hours]
    utc = engagement_profile(items, "UTC")
    local = engagement_profile(items, name)
    offset = datetime(2026, 3, 2, tzinfo=UTC).astimezone(ZoneInfo(name))
    minutes = int(offset.utcoffset().total_seconds() // 60)  # type: ignore[union-attr]
    if minutes % 60 == 0:
        shift = minutes // 60
        assert local == utc[-shift % 168 :] + utc[: -shift % 168]
    assert sum(local) == sum(utc) == len(hours)


@given(hour_lists.filter(bool), hour_lists.filter(bool), st.floats(0, 1e6))
@settings(max_examples=100, deadline=None)
def test_smoothing_limits(mine: list[int], theirs: list[int], prior: float) -> None:
    me, them = uuid4(), uuid4()
    activities = {
        me: [opened(me, at_hour(h)) for h in mine],
        them: [opened(them, at_hour(h)) for h in theirs],
    }
    zones = {me: "UTC", them: "UTC"}
    own = [mine.count(h) for h in range(HOURS_OF_WEEK)]
    alone = best_send_hours(activities, zones, prior=0).contacts[me]
    assert alone.hour_of_week == own.index(max(own))
    assert alone.own_weight == 1
    segment = best_send_hours(activities, zones, prior=1e9)
    assert segment.segment is not None
    mixed = best_send_hours(activities, zones, prior=prior).contacts[me]
    assert 0 < mixed.own_weight <= 1
    assert mixed.own_weight == pytest.approx(len(mine) / (len(mine) + prior))
    together = [segment.profile[h] for h in range(HOURS_OF_WEEK)]
    if together.count(max(together)) == 1:  # 1e9 times a share outweighs any own count
        assert segment.contacts[me].hour_of_week == segment.segment.hour_of_week
