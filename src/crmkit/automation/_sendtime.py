"""Best send hour: the hour of the week a contact (and a segment) opens and clicks most.

Engagements (``email_opened`` and ``email_clicked`` activities) are counted per hour of
the week, 0 being Monday 00:00-00:59, in each contact's own time zone. A segment's
profile adds up its members' local profiles, so "Tuesday 09:00" means nine in the
morning wherever each member lives. A contact with few engagements is smoothed toward
the segment: its score for hour ``h`` is ``own[h] + prior * segment[h] / segment
total``, so with no engagements of its own it gets the segment's hour and with many
its own. Ties go to the earliest hour of the week.
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from crmkit.automation._actions import typed
from crmkit.clock import ensure_utc
from crmkit.errors import ValidationError
from crmkit.models import Activity, ActivityKind, Contact

__all__ = [
    "ENGAGEMENT_KINDS",
    "HOURS_OF_WEEK",
    "SendHour",
    "SendHours",
    "best_send_hours",
    "contact_zone",
    "engagement_profile",
    "hour_of_week",
]

HOURS_OF_WEEK: Final = 168
ENGAGEMENT_KINDS: Final = frozenset({ActivityKind.EMAIL_OPENED, ActivityKind.EMAIL_CLICKED})
"""The activities that count as engagement: opens and clicks."""


def check_zone(value: object, field: str) -> ZoneInfo:
    """``value`` as a time zone (an IANA name or a ZoneInfo), else a ValidationError."""
    if isinstance(value, ZoneInfo):
        return value
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ValidationError(field, value, "expected an IANA time zone name")
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError(field, value, "unknown time zone (an IANA name)") from None


def hour_of_week(at: datetime, zone: ZoneInfo | str) -> int:
    """The local hour of the week of ``at`` in ``zone``: 0 is Monday 00:00-00:59, 167
    Sunday 23:00-23:59.

    >>> from datetime import UTC, datetime
    >>> hour_of_week(datetime(2026, 3, 3, 8, 30, tzinfo=UTC), "Europe/Berlin")  # Tue 09:30
    33
    """
    at = ensure_utc(at, "at")
    try:
        local = at.astimezone(check_zone(zone, "zone"))
    except OverflowError:
        raise ValidationError("at", at, "lies beyond the years 1 to 9999 in that zone") from None
    return local.weekday() * 24 + local.hour


def contact_zone(contact: Contact, field: str = "timezone", default: str = "UTC") -> ZoneInfo:
    """The contact's time zone: the IANA name in its custom field ``field`` when that
    holds a known one, else ``default``."""
    if not isinstance(contact, Contact):
        raise ValidationError("contact", contact, "expected a Contact")
    fallback = check_zone(default, "default")
    if not isinstance(field, str):
        raise ValidationError("field", field, "expected a custom field name")
    value = contact.custom.get(field)
    if isinstance(value, str):
        try:
            return check_zone(value, field)
        except ValidationError:
            return fallback
    return fallback


def engagement_profile(activities: Iterable[Activity], zone: ZoneInfo | str) -> tuple[int, ...]:
    """How many opens and clicks of ``activities`` fell in each local hour of the week."""
    where = check_zone(zone, "zone")
    counts = [0] * HOURS_OF_WEEK
    given: object = activities
    if isinstance(given, str | bytes) or not isinstance(given, Iterable):
        raise ValidationError("activities", activities, "expected a collection of activities")
    for index, activity in enumerate(activities):
        if not isinstance(activity, Activity):
            raise ValidationError(f"activities[{index}]", activity, "expected an Activity")
        if activity.kind in ENGAGEMENT_KINDS:
            counts[hour_of_week(activity.occurred_at, where)] += 1
    return tuple(counts)


def _whole(low: int, high: int) -> Any:
    def validate(_: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValidationError(
                attribute.name, value, f"expected a whole number from {low} to {high}"
            )

    return validate


def _weight(_: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValidationError(attribute.name, value, "expected a share from 0 to 1")


@attrs.frozen
class SendHour:
    """The best hour of the week to send: ``hour_of_week`` (0 is Monday 00:00) in
    ``timezone`` (``None`` for a segment: each member's own). ``engagements`` counts
    the opens and clicks it rests on (the contact's own, or the segment's);
    ``own_weight`` is the share of the contact's own engagements in its score (1 for a
    segment): near 0 it is mostly the segment's hour."""

    hour_of_week: int = attrs.field(validator=_whole(0, HOURS_OF_WEEK - 1))
    timezone: str | None = attrs.field(validator=typed((str, type(None)), "a time zone name"))
    engagements: int = attrs.field(validator=_whole(0, 2**63 - 1))
    own_weight: float = attrs.field(validator=_weight)

    @property
    def weekday(self) -> int:
        """0 (Monday) to 6 (Sunday)."""
        return self.hour_of_week // 24

    @property
    def hour(self) -> int:
        """0 to 23, local."""
        return self.hour_of_week % 24

    def next_after(self, at: datetime) -> datetime:
        """The first start of this hour of the week not before ``at`` (UTC); needs a
        contact's hour (one with a time zone)."""
        if self.timezone is None:
            raise ValidationError("timezone", None, "a segment's hour is in each member's zone")
        zone = check_zone(self.timezone, "timezone")
        at = ensure_utc(at, "at")
        try:
            local = at.astimezone(zone)
            monday = (local - timedelta(days=local.weekday())).date()
            for week in range(3):
                day = monday + timedelta(days=7 * week + self.weekday)
                naive = datetime(day.year, day.month, day.day, self.hour)
                start = naive.replace(tzinfo=zone).astimezone(UTC)
                if start >= at:
                    return start
        except OverflowError:
            pass
        raise ValidationError("at", at, "reaches beyond the year 9999")


def _frozen(value: Mapping[UUID, SendHour]) -> Mapping[UUID, SendHour]:
    if not isinstance(value, Mapping):
        raise ValidationError("contacts", value, "expected a mapping of contact id to SendHour")
    for key, item in value.items():
        if not isinstance(key, UUID) or not isinstance(item, SendHour):
            raise ValidationError("contacts", key, "expected contact ids mapped to SendHours")
    return MappingProxyType(dict(value))


def _profile(_: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if (
        not isinstance(value, tuple)
        or len(value) != HOURS_OF_WEEK
        or any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in value)
    ):
        raise ValidationError(attribute.name, value, "expected 168 counts (whole numbers >= 0)")


@attrs.frozen
class SendHours:
    """The best send hours of a group of contacts: the ``segment``'s (``None`` when
    nobody engaged) and each contact's (``contacts``; a contact is missing only when
    nobody of the group engaged)."""

    segment: SendHour | None = attrs.field(validator=typed((SendHour, type(None)), "a SendHour"))
    contacts: Mapping[UUID, SendHour] = attrs.field(converter=_frozen, eq=False)
    profile: tuple[int, ...] = attrs.field(eq=False, validator=_profile)


def _best(scores: Sequence[float]) -> int:
    top = max(scores)
    return next(h for h, score in enumerate(scores) if score == top)


def best_send_hours(
    activities: Mapping[UUID, Iterable[Activity]],
    zones: Mapping[UUID, ZoneInfo | str],
    *,
    prior: float = 10.0,
) -> SendHours:
    """The best send hour of each contact of ``zones`` (contact id -> its time zone)
    and of them all, from their ``activities`` (contact id -> its activities; opens
    and clicks count).

    ``prior`` is how many engagements the segment's profile is worth in a contact's
    score: 0 uses the contact's own data alone (the segment's hour when it has none).
    """
    if not isinstance(zones, Mapping):
        raise ValidationError("zones", zones, "expected a mapping of contact id to time zone")
    if not isinstance(activities, Mapping):
        raise ValidationError("activities", activities, "expected a mapping by contact id")
    if (
        isinstance(prior, bool)
        or not isinstance(prior, int | float)
        or not 0 <= prior <= 1e9
        or not math.isfinite(prior)
    ):
        raise ValidationError("prior", prior, "expected a number from 0 to 1e9")
    strays = [key for key in activities if key not in zones]
    if strays:
        raise ValidationError("activities", strays[0], "a contact without a time zone in zones")
    profiles: dict[UUID, tuple[int, ...]] = {}
    names: dict[UUID, str] = {}
    for contact_id, zone in zones.items():
        if not isinstance(contact_id, UUID):
            raise ValidationError("zones", contact_id, "expected contact ids (UUIDs) as keys")
        where = check_zone(zone, f"zones[{contact_id}]")
        names[contact_id] = where.key
        try:
            profiles[contact_id] = engagement_profile(activities.get(contact_id, ()), where)
        except ValidationError as error:
            raise error.within(f"activities[{contact_id}]") from None
    segment = tuple(sum(p[h] for p in profiles.values()) for h in range(HOURS_OF_WEEK))
    total = sum(segment)
    if total == 0:
        return SendHours(None, {}, segment)
    segment_hour = SendHour(_best(segment), None, total, 1.0)
    shares = [count / total for count in segment]
    contacts: dict[UUID, SendHour] = {}
    for contact_id, own in profiles.items():
        engaged = sum(own)
        scores = [own[h] + prior * shares[h] for h in range(HOURS_OF_WEEK)]
        if engaged == 0:
            scores = shares
        weight = engaged / (engaged + prior) if engaged else 0.0
        contacts[contact_id] = SendHour(_best(scores), names[contact_id], engaged, weight)
    return SendHours(segment_hour, contacts, segment)
