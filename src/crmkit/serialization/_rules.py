"""JSON for rules: a tagged union of condition nodes (``{"node": "compare", ...}``).

Literals that JSON has (text, numbers, true/false, null) are written as they are; the
others carry their type: ``{"decimal": "1.50"}``, ``{"datetime": "2026-01-05T09:30:00+00:00"}``,
``{"date": "2026-01-05"}``, ``{"uuid": "..."}``, ``{"money": {"amount": "500", "currency":
"EUR"}}``. So a rule reads back to an equal rule, with ``1``, ``1.0`` and ``true`` apart.
"""

from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Final
from uuid import UUID

from crmkit.errors import MISSING, Problem, ValidationError
from crmkit.models import ActivityKind, ConsentChannel, Money, parse_decimal
from crmkit.models.rules import (
    MAX_IN_VALUES,
    MAX_RULE_CONDITIONS,
    MAX_RULE_DEPTH,
    ActivityCondition,
    And,
    Between,
    Compare,
    Condition,
    DateWindow,
    HasTag,
    In,
    InSegment,
    IsNull,
    Measure,
    Not,
    Op,
    Or,
    Reachable,
    ReachCheck,
    RelativeDate,
    TextMatch,
    TextOp,
)
from crmkit.serialization._scalars import (
    fail,
    read_each,
    structure_bool,
    structure_date,
    structure_datetime,
    structure_enum,
    structure_str,
    structure_uuid,
    unstructure_money,
)

__all__ = ["structure_condition", "unstructure_condition"]

Decoder = Callable[[object], Any]


# ---------------------------------------------------------------------------- literals


def _encode_literal(value: object) -> object:
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    if isinstance(value, datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    if isinstance(value, UUID):
        return {"uuid": str(value)}
    if isinstance(value, Money):
        return {"money": unstructure_money(value)}
    raise TypeError(f"not a rule literal: {value!r}")  # pragma: no cover - nodes check this


def _money(obj: object) -> Money:
    if not isinstance(obj, Mapping) or set(obj) != {"amount", "currency"}:
        raise fail(obj, 'expected {"amount": "...", "currency": "..."}')
    return Money(parse_decimal(obj["amount"]), obj["currency"])


_LITERALS: Final[Mapping[str, Decoder]] = {
    "decimal": parse_decimal,
    "datetime": lambda obj: structure_datetime(obj, datetime),
    "date": lambda obj: structure_date(obj, date),
    "uuid": lambda obj: structure_uuid(obj, UUID),
    "money": _money,
}


def _decode_literal(obj: object) -> object:
    if obj is None or type(obj) in (str, int, float, bool):
        return obj
    if isinstance(obj, Mapping) and len(obj) == 1:
        ((tag, inner),) = obj.items()
        decoder = _LITERALS.get(tag)
        if decoder is not None:
            try:
                return decoder(inner)
            except ValidationError as error:
                raise error.within(tag) from None
    raise fail(obj, 'expected text, a number, true/false or a typed literal ({"decimal": "1.5"})')


# ---------------------------------------------------------------------------- nodes


def _text(obj: object) -> str:
    return structure_str(obj, str)


def _boolean(obj: object) -> bool:
    return structure_bool(obj, bool)


def _days(obj: object) -> int | None:
    if obj is None or (isinstance(obj, int) and not isinstance(obj, bool)):
        return obj
    raise fail(obj, "expected a whole number of days or null")


def _count(obj: object) -> int:
    if isinstance(obj, int) and not isinstance(obj, bool):
        return obj
    raise fail(obj, "expected a whole number")


def _enum(enum: type[Enum]) -> Decoder:
    return lambda obj: structure_enum(obj, enum)


def _uuid(obj: object) -> UUID:
    return structure_uuid(obj, UUID)


def _list_of(item: Decoder) -> Decoder:
    def decode(obj: object) -> tuple[Any, ...]:
        if not isinstance(obj, list | tuple):
            raise fail(obj, "expected a list")
        return tuple(read_each(((f"[{i}]", v) for i, v in enumerate(obj)), item))

    return decode


def _optional(decoder: Decoder) -> Decoder:
    return lambda obj: None if obj is None else decoder(obj)


def unstructure_condition(node: Condition) -> dict[str, object]:
    """The JSON-compatible form of a condition tree."""
    tag = _TAGS[type(node)]
    data: dict[str, object] = {"node": tag}
    for key in _NODES[tag][1]:
        value = getattr(node, key)
        if tag == "has_tag" and key == "field" and value == "tags":
            continue  # the entity's own tags: written as before contact tags existed
        if isinstance(value, Condition):
            data[key] = unstructure_condition(value)
        elif key in ("items",):
            data[key] = [unstructure_condition(item) for item in value]
        elif key == "checks":
            data[key] = sorted(check.value for check in value)
        elif key == "values":
            data[key] = [_encode_literal(item) for item in value]
        elif isinstance(value, Enum):
            data[key] = value.value
        elif key in ("value", "low", "high"):
            data[key] = _encode_literal(value)
        elif isinstance(value, UUID):
            data[key] = str(value)
        else:
            data[key] = value
    return data


def _beyond_bounds(obj: object) -> tuple[object, str] | None:
    """``(value, reason)`` if the JSON nests deeper, or holds more conditions or listed
    values, than any valid rule may (see :data:`~crmkit.models.rules.MAX_RULE_DEPTH`);
    else ``None``.

    Checked without recursion and before any node is built, so that no input can
    exhaust the stack or build a million-value list only to reject it.
    """
    limit = 2 * MAX_RULE_DEPTH + 8  # a node and its item list per level, plus literals
    conditions = values = 0
    pending = [(obj, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return depth, f"conditions nest deeper than {MAX_RULE_DEPTH} levels (MAX_RULE_DEPTH)"
        if isinstance(item, Mapping):
            if "node" in item:
                conditions += 1
                listed = item.get("values")
                values += len(listed) if isinstance(listed, list | tuple) else 0
                if conditions > MAX_RULE_CONDITIONS:
                    return conditions, (
                        f"a rule holds at most {MAX_RULE_CONDITIONS} conditions "
                        "(MAX_RULE_CONDITIONS)"
                    )
                if values > MAX_IN_VALUES:
                    return values, (
                        f"the IN lists of a rule hold at most {MAX_IN_VALUES} values "
                        "(MAX_IN_VALUES)"
                    )
            pending.extend((value, depth + 1) for value in item.values())
        elif isinstance(item, list | tuple):
            if len(item) > MAX_IN_VALUES + MAX_RULE_CONDITIONS:
                return len(item), f"a list of a rule holds at most {MAX_IN_VALUES} values"
            pending.extend((value, depth + 1) for value in item)
    return None


def structure_condition(obj: object, _: object = None) -> Condition:
    """Read a condition tree; every problem is reported with its path."""
    beyond = _beyond_bounds(obj)
    if beyond is not None:
        raise fail(*beyond)
    return _structure_node(obj)


def _structure_node(obj: object) -> Condition:
    if not isinstance(obj, Mapping):
        raise fail(obj, "expected an object with a 'node' key")
    tag = obj.get("node", MISSING)
    if tag not in _NODES:
        raise ValidationError("node", tag, f"expected one of: {', '.join(_NODES)}")
    cls, fields = _NODES[tag]
    problems = [
        Problem(key, obj[key], "unknown field")
        for key in obj
        if key != "node" and key not in fields
    ]
    arguments: dict[str, Any] = {}
    for key, (decode, required) in fields.items():
        if key not in obj:
            if required:
                problems.append(Problem(key, MISSING, "required field is missing"))
            continue
        try:
            arguments[key] = decode(obj[key])
        except ValidationError as error:
            problems.extend(p.within(key) for p in error.problems)
    if problems:
        raise ValidationError.of(problems)
    return cls(**arguments)


# key -> (decoder, required); the keys are the node's attribute names.
_Fields = dict[str, tuple[Decoder, bool]]
_FIELD: Final = (_text, True)
_LITERAL: Final = (_decode_literal, True)
_CONDITION: Final = (_structure_node, True)

_NODES: Final[dict[str, tuple[type[Condition], _Fields]]] = {
    "compare": (Compare, {"field": _FIELD, "op": (_enum(Op), True), "value": _LITERAL}),
    "in": (
        In,
        {
            "field": _FIELD,
            "values": (_list_of(_decode_literal), True),
            "negated": (_boolean, False),
        },
    ),
    "between": (Between, {"field": _FIELD, "low": _LITERAL, "high": _LITERAL}),
    "is_null": (IsNull, {"field": _FIELD, "negated": (_boolean, False)}),
    "text": (TextMatch, {"field": _FIELD, "op": (_enum(TextOp), True), "value": (_text, True)}),
    "has_tag": (HasTag, {"tag": (_text, True), "field": (_text, False)}),
    "relative_date": (
        RelativeDate,
        {"field": _FIELD, "window": (_enum(DateWindow), True), "days": (_days, False)},
    ),
    "in_segment": (InSegment, {"segment_id": (_uuid, True)}),
    "activity": (
        ActivityCondition,
        {
            "kind": (_enum(ActivityKind), True),
            "measure": (_enum(Measure), True),
            "op": (_enum(Op), True),
            "value": _LITERAL,
            "where": (_optional(_structure_node), False),
            "within_days": (_days, False),
        },
    ),
    "reachable": (
        Reachable,
        {
            "channel": (_enum(ConsentChannel), True),
            "purpose": (_text, True),
            "max_messages": (_optional(_count), False),
            "within_days": (_days, False),
            "checks": (_list_of(_enum(ReachCheck)), False),
        },
    ),
    "and": (And, {"items": (_list_of(_structure_node), True)}),
    "or": (Or, {"items": (_list_of(_structure_node), True)}),
    "not": (Not, {"item": _CONDITION}),
}
_TAGS: Final[dict[type[Condition], str]] = {cls: tag for tag, (cls, _) in _NODES.items()}
