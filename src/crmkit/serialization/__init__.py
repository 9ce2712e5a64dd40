"""Serialisation of crmkit models to JSON-compatible data and back, with cattrs.

:func:`make_converter` builds a converter in the style of cattrs' preconfigured
converters. It turns every model into plain ``dict``/``list``/``str``/``int``/``float``/
``bool``/``None`` data that :mod:`json` can write, and reads such data back strictly:

* unknown keys, missing keys and wrongly typed values are rejected, never coerced
  (``"12"`` is not an int, ``1.5`` is not money, a naive timestamp is not a time);
* every rejection is one :class:`crmkit.errors.ValidationError` that lists all
  problems, each with a JSON path from the root (``$.amount.currency``, ``$.tags[2]``).

Formats: UUIDs, dates and aware datetimes as ISO 8601 strings, durations
(``timedelta``) as ISO 8601 durations (``"PT4H"``, ``"P1DT2H30M"``), times of day as
``"HH:MM"``, ``Decimal`` as a string (exact), money as
``{"amount": "12.50", "currency": "EUR"}``, sets as sorted lists, enumerations by value,
custom fields as a JSON object.

Input from web APIs: :func:`structure_new` reads a "new" payload (the fields of an
entity, without ``id``, ``version`` and timestamps, which crmkit makes), and
:func:`structure_patch` / :func:`apply_patch` a partial "patch" payload (the fields to
change and the ``version`` the change is based on), with the same strict errors and JSON
paths.
"""

from collections import abc
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum, IntEnum, StrEnum
from types import NoneType, UnionType
from typing import Any, TypeVar, Union, get_args, get_origin
from uuid import UUID

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn

from crmkit.errors import MISSING, Problem, ValidationError
from crmkit.models import (
    CountryCode,
    CustomFields,
    EmailAddress,
    LanguageCode,
    Money,
    PhoneNumber,
)
from crmkit.models.rules import Condition
from crmkit.serialization._durations import register_durations
from crmkit.serialization._payloads import Patch, apply_patch, structure_new, structure_patch
from crmkit.serialization._rules import structure_condition, unstructure_condition
from crmkit.serialization._scalars import (
    fail,
    read_each,
    structure_bool,
    structure_date,
    structure_datetime,
    structure_decimal,
    structure_enum,
    structure_float,
    structure_int,
    structure_str,
    structure_uuid,
    unstructure_money,
)

__all__ = [
    "CrmkitConverter",
    "Patch",
    "apply_patch",
    "make_converter",
    "structure_new",
    "structure_patch",
]

_T = TypeVar("_T")
_VALUE_TYPES: tuple[type[str], ...] = (EmailAddress, PhoneNumber, CountryCode, LanguageCode)
_ROOT = "$"


class CrmkitConverter(cattrs.Converter):
    """A cattrs converter whose ``structure`` raises only crmkit validation errors."""

    def structure(self, obj: Any, cl: type[_T]) -> _T:
        """Read ``obj`` (JSON-compatible data) as ``cl``, strictly.

        Raises :class:`crmkit.errors.ValidationError` listing every problem, each with a
        JSON path from the root (``$.amount.currency``); never a bare cattrs error.
        """
        try:
            return super().structure(obj, cl)
        except ValidationError as error:
            raise error.within(_ROOT) from None
        except (ClassValidationError, IterableValidationError) as group:
            raise _error_of(group, obj, _ROOT) from None
        except cattrs.StructureHandlerNotFoundError as error:
            raise ValidationError(_ROOT, obj, f"cannot read values of type {cl!r}") from error
        except (TypeError, ValueError, AttributeError, KeyError) as error:
            # A target outside crmkit's hooks (a union cattrs cannot tell apart, a host
            # type) failed in its own way: still reported as a validation error.
            raise ValidationError(_ROOT, obj, f"cannot read as {cl!r}: {error}") from error


def make_converter() -> CrmkitConverter:
    """A new converter for crmkit models (JSON-compatible, strict; see the module doc).

    Each call returns an independent converter; cattrs' global converter is never touched.
    Host applications may register further hooks on the converter they get.
    """
    converter = CrmkitConverter(detailed_validation=True, forbid_extra_keys=True)
    _register_scalars(converter)
    _register_values(converter)
    register_durations(converter)
    converter.register_structure_hook_factory(_is_sequence, _sequence_factory)
    converter.register_structure_hook_factory(_is_fixed_tuple, _fixed_tuple_factory)
    converter.register_structure_hook_factory(_is_set, _set_factory)
    converter.register_structure_hook_factory(_is_mapping, _mapping_factory)
    converter.register_structure_hook_factory(_is_optional, _optional_structure_factory)
    converter.register_structure_hook_factory(_is_condition, _condition_structure_factory)
    converter.register_unstructure_hook_func(_is_condition, unstructure_condition)
    converter.register_structure_hook_factory(attrs.has, _attrs_structure_factory)
    # After attrs.has: later registrations win, and a tagged base is an attrs class too.
    converter.register_structure_hook_factory(_is_tagged, _tagged_structure_factory)
    converter.register_unstructure_hook_factory(_is_tagged, _tagged_unstructure_factory)
    return converter


# ---------------------------------------------------------------------------- tagged unions


def _is_tagged(t: Any) -> bool:
    """A base class whose subclasses are told apart in JSON by a ``"type"`` key: it holds
    ``__crmkit_variants__`` (tag -> subclass) and may name the error class of an unknown
    tag in ``__crmkit_unknown__`` (the automation actions, for example)."""
    return isinstance(t, type) and "__crmkit_variants__" in vars(t)


def _tagged_structure_factory(cl: type[Any], converter: cattrs.Converter) -> Callable[..., Any]:
    variants: Mapping[str, type[Any]] = vars(cl)["__crmkit_variants__"]
    unknown: type[ValidationError] = getattr(cl, "__crmkit_unknown__", ValidationError)

    def structure(obj: object, _: type) -> Any:
        if not isinstance(obj, Mapping):
            raise fail(obj, f"expected an object with a 'type' key for {cl.__name__}")
        tag = obj.get("type", MISSING)
        if tag is MISSING:
            raise ValidationError("type", MISSING, "required field is missing")
        if not isinstance(tag, str) or tag not in variants:
            raise unknown("type", tag, f"expected one of: {', '.join(sorted(variants))}")
        variant = variants[tag]
        rest = {key: value for key, value in obj.items() if key != "type"}
        return converter.get_structure_hook(variant)(rest, variant)

    return structure


def _tagged_unstructure_factory(cl: type[Any], converter: cattrs.Converter) -> Callable[..., Any]:
    variants: Mapping[str, type[Any]] = vars(cl)["__crmkit_variants__"]
    tags = {variant: tag for tag, variant in variants.items()}

    def unstructure(value: Any) -> Any:
        variant = type(value)
        return {"type": tags[variant], **converter.unstructure(value, unstructure_as=variant)}

    return unstructure


def _is_condition(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, Condition)


def _condition_structure_factory(cl: type[Condition]) -> Callable[[object, type], Condition]:
    """Rule conditions, read by their ``node`` tag; ``cl`` may be a node type or any."""

    def structure(obj: object, _: type) -> Condition:
        node = structure_condition(obj)
        if not isinstance(node, cl):
            raise fail(obj, f"expected a {cl.__name__} node")
        return node

    return structure


def _is_optional(t: Any) -> bool:
    args = get_args(t)
    return get_origin(t) in (Union, UnionType) and len(args) == 2 and NoneType in args


def _optional_structure_factory(
    t: Any, converter: cattrs.Converter
) -> Callable[[object, type], Any]:
    """``X | None`` with the hook of ``X`` looked up once, not on every value."""
    inner_type = next(a for a in get_args(t) if a is not NoneType)
    inner = converter.get_structure_hook(inner_type)

    def structure(obj: object, _: type) -> Any:
        return None if obj is None else inner(obj, inner_type)

    return structure


def _register_scalars(converter: CrmkitConverter) -> None:
    # cattrs calls int(x), str(x) ... by default, which coerces ("12" -> 12). Subclasses
    # (bool, our StrEnums and str-based value types) have more specific hooks below.
    converter.register_structure_hook(str, structure_str)
    converter.register_structure_hook(int, structure_int)
    converter.register_structure_hook(float, structure_float)
    converter.register_structure_hook(bool, structure_bool)
    converter.register_structure_hook(UUID, structure_uuid)
    converter.register_structure_hook(datetime, structure_datetime)
    converter.register_structure_hook(date, structure_date)
    converter.register_structure_hook(Decimal, structure_decimal)
    converter.register_unstructure_hook(UUID, str)
    converter.register_unstructure_hook(datetime, datetime.isoformat)
    converter.register_unstructure_hook(date, date.isoformat)
    converter.register_unstructure_hook(Decimal, str)
    # Enumerations by value. Registered on the enum base classes, which come before str
    # and int in a StrEnum's or IntEnum's MRO, so those never reach the str or int hooks.
    for base in (Enum, StrEnum, IntEnum):
        converter.register_structure_hook(base, structure_enum)
        converter.register_unstructure_hook(base, _enum_value)


def _enum_value(member: Enum) -> Any:
    return member.value


# ---------------------------------------------------------------------------- value types


def _value_structure_factory(cl: type[str]) -> Callable[[object, type], str]:
    def structure(obj: object, _: type) -> str:
        if isinstance(obj, cl):
            return obj
        return cl(structure_str(obj, str))

    return structure


def _structure_custom(obj: object, _: type) -> CustomFields:
    if not isinstance(obj, Mapping):
        raise fail(obj, "expected an object of custom fields")
    return CustomFields(obj)


# ---------------------------------------------------------------------------- collections
# JSON arrays and objects only (a string is not a list of its letters, a dict is not a
# list of its keys), every item read with its own hook, every bad item reported with
# its index or key.


def _is_sequence(t: Any) -> bool:
    origin, args = get_origin(t), get_args(t)
    if origin is tuple:
        return len(args) == 2 and args[1] is Ellipsis
    return origin in (list, abc.Sequence, abc.MutableSequence)


def _is_fixed_tuple(t: Any) -> bool:
    args = get_args(t)
    return get_origin(t) is tuple and bool(args) and Ellipsis not in args


def _fixed_tuple_factory(t: Any, converter: cattrs.Converter) -> Callable[[object, type], Any]:
    """``tuple[A, B]``: a JSON array of exactly that many items (a string such as ``"ab"``
    is not the pair ``("a", "b")``)."""
    item_types = get_args(t)
    hooks = [converter.get_structure_hook(item) for item in item_types]

    def structure(obj: object, _: type) -> Any:
        if isinstance(obj, str | bytes | Mapping) or not isinstance(obj, list | tuple):
            raise fail(obj, f"expected a list of {len(item_types)} items")
        if len(obj) != len(item_types):
            raise fail(obj, f"expected a list of {len(item_types)} items")
        located = ((_child("", index), value) for index, value in enumerate(obj))
        reads = iter(zip(hooks, item_types, strict=True))

        def read(value: object) -> Any:
            hook, item_type = next(reads)
            return hook(value, item_type)

        return tuple(read_each(located, read))

    return structure


def _is_set(t: Any) -> bool:
    return get_origin(t) in (set, frozenset, abc.Set, abc.MutableSet)


def _is_mapping(t: Any) -> bool:
    return get_origin(t) in (dict, abc.Mapping, abc.MutableMapping)


def _items(
    pairs: Iterable[tuple[object, object]], hook: Callable[[object, Any], Any], item_type: Any
) -> list[Any]:
    located = ((_child("", where), value) for where, value in pairs)
    return read_each(located, lambda value: hook(value, item_type))


def _sequence_factory(t: Any, converter: cattrs.Converter) -> Callable[[object, type], Any]:
    item_type = get_args(t)[0]
    hook = converter.get_structure_hook(item_type)
    make: Callable[[list[Any]], Any] = tuple if get_origin(t) is tuple else list

    def structure(obj: object, _: type) -> Any:
        if isinstance(obj, str | bytes | Mapping) or not isinstance(obj, list | tuple):
            raise fail(obj, "expected a list")
        return make(_items(enumerate(obj), hook, item_type))

    return structure


def _set_factory(t: Any, converter: cattrs.Converter) -> Callable[[object, type], Any]:
    item_type = get_args(t)[0]
    hook = converter.get_structure_hook(item_type)
    make: Callable[[list[Any]], Any] = set if get_origin(t) in (set, abc.MutableSet) else frozenset

    def structure(obj: object, _: type) -> Any:
        if isinstance(obj, str | bytes | Mapping) or not isinstance(
            obj, list | tuple | set | frozenset
        ):
            raise fail(obj, "expected a list")
        return make(_items(enumerate(obj), hook, item_type))

    return structure


def _mapping_factory(t: Any, converter: cattrs.Converter) -> Callable[[object, type], Any]:
    key_type, value_type = get_args(t)
    key_hook = converter.get_structure_hook(key_type)
    value_hook = converter.get_structure_hook(value_type)

    def structure(obj: object, _: type) -> dict[Any, Any]:
        if not isinstance(obj, Mapping):
            raise fail(obj, "expected an object")
        keys = _items(((k, k) for k in obj), key_hook, key_type)
        values = _items(obj.items(), value_hook, value_type)
        return dict(zip(keys, values, strict=True))

    return structure


def _unstructure_sorted(values: frozenset[Any]) -> list[str]:
    return sorted(str(v) for v in values)


def _is_frozenset_of(item: type) -> Callable[[Any], bool]:
    def predicate(t: Any) -> bool:
        return get_origin(t) is frozenset and get_args(t) == (item,)

    return predicate


def _register_values(converter: CrmkitConverter) -> None:
    for value_type in _VALUE_TYPES:
        converter.register_structure_hook(value_type, _value_structure_factory(value_type))
        converter.register_unstructure_hook(value_type, str)
    converter.register_unstructure_hook(Money, unstructure_money)
    converter.register_structure_hook(CustomFields, _structure_custom)
    converter.register_unstructure_hook(CustomFields, dict)
    # Tags and member lists are written sorted, so equal sets give equal JSON.
    for item in (str, UUID):
        converter.register_unstructure_hook_func(_is_frozenset_of(item), _unstructure_sorted)


# ---------------------------------------------------------------------------- attrs classes


def _attrs_structure_factory(cl: type[Any], converter: cattrs.Converter) -> Callable[..., Any]:
    generated = make_dict_structure_fn(cl, converter)

    def structure(obj: object, _: type) -> Any:
        if not isinstance(obj, Mapping):
            raise fail(obj, f"expected an object for {cl.__name__}")
        try:
            return generated(obj, cl)
        except ClassValidationError as group:
            raise _error_of(group, obj, "") from None

    return structure


def _error_of(group: BaseException, obj: object, path: str) -> ValidationError:
    """One error for a cattrs exception group, of the leaves' own type if they share one
    (an :class:`~crmkit.errors.InvalidRule` stays one)."""
    kinds = {type(leaf) for leaf in _leaves(group) if isinstance(leaf, ValidationError)}
    kind = kinds.pop() if len(kinds) == 1 else ValidationError
    return kind.of(_problems(group, obj, path))


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for sub in error.exceptions for leaf in _leaves(sub)]
    return [error]


def _problems(error: BaseException, obj: object, path: str) -> list[Problem]:
    """Flatten a cattrs exception group into problems with paths below ``path``."""
    if isinstance(error, ValidationError):
        return [p.within(path) for p in error.problems]
    if isinstance(error, ForbiddenExtraKeysError):
        values = obj if isinstance(obj, Mapping) else {}
        return [
            Problem(_child(path, key), values.get(key), "unknown field")
            for key in sorted(error.extra_fields)
        ]
    if isinstance(error, BaseExceptionGroup):
        found: list[Problem] = []
        for sub in error.exceptions:
            sub_path, sub_obj = path, obj
            for note in getattr(sub, "__notes__", ()):
                if isinstance(note, AttributeValidationNote):
                    sub_path = _child(path, note.name)
                    sub_obj = obj.get(note.name, MISSING) if isinstance(obj, Mapping) else MISSING
                    break
                if isinstance(note, IterableValidationNote):
                    sub_path = _child(path, note.index)
                    sub_obj = _item(obj, note.index)
                    break
            if isinstance(sub, KeyError) and sub_obj is MISSING:
                found.append(Problem(sub_path, MISSING, "required field is missing"))
            else:
                found.extend(_problems(sub, sub_obj, sub_path))
        return found
    return [Problem(path, obj, str(error) or type(error).__name__)]


def _child(path: str, name: object) -> str:
    if isinstance(name, str) and name.isidentifier():
        return f"{path}.{name}" if path else name
    return f"{path}[{name!r}]"


def _item(obj: object, index: object) -> object:
    try:
        return obj[index]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        return MISSING
