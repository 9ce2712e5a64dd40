"""Durations, times of day and sets of dates or enumeration members as JSON values.

* ``timedelta`` as an ISO 8601 duration in days, hours, minutes and seconds
  (``"PT4H"``, ``"P1DT2H30M"``, ``"-PT0.5S"``); years and months are refused (their
  length varies). Weeks (``"P2W"``) are read.
* ``time`` (without a time zone) as ``"HH:MM"`` or ``"HH:MM:SS[.ffffff]"``.
* a ``frozenset`` of dates or enumeration members as a sorted list, so equal sets give
  equal JSON.
"""

import re
from collections.abc import Callable
from datetime import date, time, timedelta
from enum import Enum
from typing import Any, Final, get_args, get_origin

import cattrs

from crmkit.serialization._scalars import fail

__all__ = ["register_durations"]

_DURATION: Final = re.compile(
    r"(?P<sign>-)?P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)(?:\.(?P<fraction>\d{1,6}))?S)?)?\Z",
    re.ASCII,  # digits 0-9 only: "PT\u0661H" (an Arabic-Indic one) is no duration
)


def unstructure_timedelta(value: timedelta) -> str:
    """``value`` as an ISO 8601 duration: ``PT4H``, ``P1DT2H30M``, ``PT0S``."""
    sign = "-" if value < timedelta(0) else ""
    value = abs(value)
    minutes, seconds = divmod(value.seconds, 60)
    hours, minutes = divmod(minutes, 60)
    clock = ""
    if hours:
        clock += f"{hours}H"
    if minutes:
        clock += f"{minutes}M"
    if seconds or value.microseconds:
        fraction = f".{value.microseconds:06d}".rstrip("0") if value.microseconds else ""
        clock += f"{seconds}{fraction}S"
    day = f"{value.days}D" if value.days else ""
    if not day and not clock:
        clock = "0S"
    return f"{sign}P{day}{'T' + clock if clock else ''}"


def structure_timedelta(obj: object, _: type) -> timedelta:
    if isinstance(obj, timedelta):
        return obj
    if not isinstance(obj, str):
        raise fail(obj, "expected an ISO 8601 duration string (such as PT4H)")
    found = _DURATION.match(obj)
    parts = found.groupdict() if found else {}
    numbers = {k: int(v) for k, v in parts.items() if v is not None and k not in ("sign",)}
    if not found or not numbers or obj.endswith("T"):
        raise fail(obj, "not an ISO 8601 duration in weeks, days, hours, minutes and seconds")
    fraction = parts["fraction"] or ""
    try:
        value = timedelta(
            weeks=numbers.get("weeks", 0),
            days=numbers.get("days", 0),
            hours=numbers.get("hours", 0),
            minutes=numbers.get("minutes", 0),
            seconds=numbers.get("seconds", 0),
            microseconds=int(fraction.ljust(6, "0")) if fraction else 0,
        )
    except OverflowError:
        raise fail(obj, "duration too long") from None
    return -value if parts["sign"] else value


def unstructure_time(value: time) -> str:
    plain = not value.second and not value.microsecond
    return value.isoformat(timespec="minutes" if plain else "auto")


def structure_time(obj: object, _: type) -> time:
    if isinstance(obj, time) and obj.tzinfo is None:
        return obj
    if not isinstance(obj, str):
        raise fail(obj, "expected a time of day string (HH:MM)")
    try:
        value = time.fromisoformat(obj)
    except ValueError:
        raise fail(obj, "not a time of day (HH:MM or HH:MM:SS)") from None
    if value.tzinfo is not None:
        raise fail(obj, "a time of day here carries no time zone")
    return value


def _is_sortable_set(t: Any) -> bool:
    if get_origin(t) is not frozenset:
        return False
    (item,) = get_args(t)
    return isinstance(item, type) and (issubclass(item, Enum) or item is date)


def _sorted_set_factory(t: Any, converter: cattrs.Converter) -> Callable[[Any], list[Any]]:
    (item,) = get_args(t)
    hook = converter.get_unstructure_hook(item)

    def unstructure(values: frozenset[Any]) -> list[Any]:
        return sorted(hook(v) for v in values)

    return unstructure


def register_durations(converter: cattrs.Converter) -> None:
    """Register the hooks of this module on ``converter``."""
    converter.register_structure_hook(timedelta, structure_timedelta)
    converter.register_unstructure_hook(timedelta, unstructure_timedelta)
    converter.register_structure_hook(time, structure_time)
    converter.register_unstructure_hook(time, unstructure_time)
    converter.register_unstructure_hook_factory(_is_sortable_set, _sorted_set_factory)
