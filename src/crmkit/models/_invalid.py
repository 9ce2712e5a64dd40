"""The marker a converter returns for a value it cannot read.

attrs runs converters one field at a time and cannot collect errors. So a converter
that fails returns ``Invalid(raw, error)`` instead of raising, and the class's
``__attrs_post_init__`` reports the problems of every field together, each named by its
field. An ``Invalid`` never leaves a constructor: construction raises.
"""

from collections.abc import Callable
from typing import Any, TypeVar

from crmkit.errors import Problem, ValidationError

__all__ = ["Invalid", "or_invalid", "problems_of"]

_T = TypeVar("_T")


class Invalid:
    __slots__ = ("error", "raw")

    def __init__(self, raw: object, error: ValidationError) -> None:
        self.raw = raw
        self.error = error

    def __repr__(self) -> str:
        return f"Invalid({self.raw!r})"


def or_invalid(parse: Callable[[Any], _T], value: object) -> Any:
    """``parse(value)``, or an :class:`Invalid` holding the error it raised."""
    try:
        return parse(value)
    except ValidationError as error:
        return Invalid(value, error)


def problems_of(name: str, value: object) -> list[Problem]:
    """The problems of field ``name`` if its converter could not read the value."""
    if type(value) is Invalid:
        return [p.within(name) for p in value.error.problems]
    return []
