"""Strict readers of JSON scalars: no coercion, a ValidationError naming the value."""

import functools
import re
from collections.abc import Callable, Iterable
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from crmkit.clock import ensure_utc
from crmkit.errors import Problem, ValidationError
from crmkit.models import Money, parse_decimal


def fail(obj: object, reason: str) -> ValidationError:
    return ValidationError("", obj, reason)


def structure_str(obj: object, _: type) -> str:
    if not isinstance(obj, str):
        raise fail(obj, "expected a string")
    return obj


def structure_int(obj: object, _: type) -> int:
    if isinstance(obj, bool) or not isinstance(obj, int):
        raise fail(obj, "expected an integer")
    return obj


def structure_float(obj: object, _: type) -> float:
    if isinstance(obj, bool) or not isinstance(obj, int | float):
        raise fail(obj, "expected a number")
    return float(obj)


def structure_bool(obj: object, _: type) -> bool:
    if not isinstance(obj, bool):
        raise fail(obj, "expected true or false")
    return obj


UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\Z")


def structure_uuid(obj: object, _: type) -> UUID:
    if isinstance(obj, UUID):
        return obj
    if not isinstance(obj, str):
        raise fail(obj, "expected a UUID string")
    if not UUID_TEXT.match(obj):
        raise fail(obj, "not a UUID in its 8-4-4-4-12 hex form")
    return UUID(obj)


def structure_datetime(obj: object, _: type) -> datetime:
    if isinstance(obj, str):
        try:
            value: object = datetime.fromisoformat(obj)
        except ValueError:
            raise fail(obj, "not an ISO 8601 timestamp") from None
    else:
        value = obj
    try:
        return ensure_utc(value)
    except ValidationError as error:
        raise fail(obj, error.reason) from None


def structure_date(obj: object, _: type) -> date:
    if isinstance(obj, date) and not isinstance(obj, datetime):
        return obj
    if not isinstance(obj, str):
        raise fail(obj, "expected an ISO 8601 date string (YYYY-MM-DD)")
    try:
        return date.fromisoformat(obj)
    except ValueError:
        raise fail(obj, "not an ISO 8601 date (YYYY-MM-DD)") from None


def unstructure_money(value: Money) -> dict[str, str]:
    """Money as ``{"amount": "1000000", "currency": "EUR"}``: the amount in plain notation
    (never ``1E+6``), with the places it was given."""
    return {"amount": f"{value.amount:f}", "currency": value.currency}


def structure_decimal(obj: object, _: type) -> Decimal:
    return parse_decimal(obj)


@functools.cache
def _members_by_value(cl: type[Enum]) -> dict[tuple[type, object], Enum]:
    # Keyed by (type, value): 1 must not find a member whose value is True, nor the reverse.
    return {(type(m.value), m.value): m for m in cl}


def structure_enum(obj: object, cl: type[Enum]) -> Enum:
    """The member of ``cl`` whose value is ``obj`` (of the same type)."""
    try:
        return _members_by_value(cl)[type(obj), obj]
    except (KeyError, TypeError):
        allowed = ", ".join(str(m.value) for m in cl)
        raise fail(obj, f"expected one of: {allowed}") from None


def read_each(pairs: Iterable[tuple[str, object]], read: Callable[[object], Any]) -> list[Any]:
    """``read`` every value of ``(path, value)`` pairs; all problems, each under its path."""
    items: list[Any] = []
    problems: list[Problem] = []
    kinds: set[type[ValidationError]] = set()
    for where, value in pairs:
        try:
            items.append(read(value))
        except ValidationError as error:
            kinds.add(type(error))
            problems.extend(p.within(where) for p in error.problems)
    if problems:  # errors of one kind keep it (an InvalidRule stays one)
        raise (kinds.pop() if len(kinds) == 1 else ValidationError).of(problems)
    return items
