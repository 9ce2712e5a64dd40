"""Type checks of fitted models built by hand (or read from JSON): every field of an
attrs class against its annotation, recursively, so that a wrong value is reported by its
path instead of failing later as an AttributeError or TypeError."""

import typing
from types import NoneType, UnionType
from typing import Any

import attrs

from crmkit.errors import Problem

__all__ = ["shape_problems", "to_tuple"]


def to_tuple(value: Any) -> Any:
    """A list or tuple as a tuple; anything else unchanged, for the check to name it."""
    return tuple(value) if isinstance(value, list | tuple) else value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    found = _HINTS.get(cls)
    if found is None:
        found = _HINTS[cls] = typing.get_type_hints(cls)
    return found


def shape_problems(obj: Any, where: str = "") -> list[Problem]:
    """The fields of the attrs instance ``obj`` whose values do not have their annotated
    type (``str``, ``int``, ``float``, ``bool``, ``X | None``, ``tuple[X, ...]`` and
    nested attrs classes), each named by its path below ``where``."""
    problems: list[Problem] = []
    hints = _hints(type(obj))
    for field in attrs.fields(type(obj)):
        if not field.init:
            continue
        path = f"{where}.{field.name}" if where else field.name
        _check(getattr(obj, field.name), hints[field.name], path, problems)
    return problems


def _check(value: object, tp: Any, path: str, problems: list[Problem]) -> None:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, UnionType):
        if value is None and NoneType in args:
            return
        (inner,) = [a for a in args if a is not NoneType]
        _check(value, inner, path, problems)
        return
    if origin is tuple:
        if not isinstance(value, tuple):
            problems.append(Problem(path, value, "expected a tuple"))
            return
        for index, item in enumerate(value):
            _check(item, args[0], f"{path}[{index}]", problems)
        return
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(Problem(path, value, "expected a number"))
        return
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(Problem(path, value, "expected an int"))
        return
    if isinstance(tp, type) and attrs.has(tp):
        if not isinstance(value, tp):
            problems.append(Problem(path, value, f"expected a {tp.__name__}"))
            return
        problems.extend(shape_problems(value, path))
        return
    if isinstance(tp, type) and not isinstance(value, tp):
        problems.append(Problem(path, value, f"expected a {tp.__name__}"))
