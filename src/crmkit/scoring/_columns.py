"""Rules evaluated over columns with numpy: one boolean mask per rule, for a whole batch.

The batch path of :meth:`crmkit.scoring.CompiledModel.totals_columns`. A column holds
one field of many entities (``columns["channel"][i]`` is the channel of entity ``i``);
the result of a rule is the mask of the rows for which it is TRUE.

Three-valued logic as two masks: for every node the evaluator computes "the node is
TRUE" or "the node is FALSE" (UNKNOWN is neither), the polarity the parent asks for, as
the compiler of :mod:`crmkit.segmentation` writes its two predicates: ``Not`` swaps the
polarity, ``And`` is TRUE where every item is TRUE and FALSE where any item is FALSE,
``Or`` the reverse.

Two kinds of columns:

* **numpy arrays of a native type**, evaluated with vectorised comparisons: ``str``
  (``U``) for text, e-mail, phone, country, language and enumeration fields; integers
  or floats for number fields; ``bool`` for yes/no fields; ``datetime64`` (UTC, units
  from days to microseconds) for date and time fields (``datetime64[D]`` for dates);
  any of ``str``, integers, floats and ``bool`` for a custom field, whose values then all
  have that JSON type. Missing values are masked entries of a ``numpy.ma`` masked array,
  ``nan`` or ``NaT``.
* **any other sequence** (a list, a tuple, an object array) of the values the entity
  holds (``None`` for a missing value): each leaf of a rule is evaluated once per
  distinct value of its column by the reference interpreter
  (:func:`crmkit.segmentation.evaluate`), whose truths are then spread over the rows.
  Values are told apart by type for custom fields (``1``, ``1.0`` and ``True`` are
  different JSON). Decimal, money, id and tag columns are always of this kind; text
  matches read ``str`` arrays this way too (``str.casefold`` has no numpy equivalent).

Either way the truths are those of the interpreter; numbers compare exactly, as Python
compares an int with a float (a float column against the literal ``2**53 + 1`` too).
"""

import functools
import math
import operator
from collections.abc import Mapping
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any, Final

from crmkit.errors import ValidationError, short_repr
from crmkit.models.rules import (
    FIELDS,
    And,
    Between,
    Compare,
    Condition,
    FieldSpec,
    FieldType,
    HasTag,
    In,
    IsNull,
    Not,
    Op,
    Or,
    RelativeDate,
    Rule,
    RuleEntity,
    TextMatch,
    field_spec,
)
from crmkit.segmentation import Context, evaluate
from crmkit.segmentation._semantics import window_bounds

__all__ = ["ColumnRules", "column_length"]

Mask = Any
"""A one-dimensional numpy array of ``bool`` (numpy is imported lazily, so ``Any``)."""

_TEXT: Final = "text"
_NUMBER: Final = "number"
_BOOL: Final = "bool"
_TIME: Final = "time"
# The numpy dtype kinds read natively per field type; other arrays are rejected, object
# arrays and other sequences are read value by value.
_NATIVE: Final[Mapping[FieldType, str]] = {
    FieldType.TEXT: "U",
    FieldType.EMAIL: "U",
    FieldType.PHONE: "U",
    FieldType.COUNTRY: "U",
    FieldType.LANGUAGE: "U",
    FieldType.ENUM: "U",
    FieldType.NUMBER: "iuf",
    FieldType.BOOL: "b",
    FieldType.DATETIME: "M",
    FieldType.DATE: "M",
    FieldType.JSON: "Uiufb",
}
_FAMILY: Final = {"U": _TEXT, "i": _NUMBER, "u": _NUMBER, "f": _NUMBER, "b": _BOOL, "M": _TIME}
_TIME_UNITS: Final = frozenset({"Y", "M", "W", "D", "h", "m", "s", "ms", "us"})
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_MANY: Final = 8  # IN lists longer than this use numpy.isin on text columns


def column_length(where: str, name: str, column: object) -> int:
    """The length of a column, or :class:`ValidationError` for a value that is none."""
    if isinstance(column, str | bytes) or not hasattr(column, "__len__"):
        raise ValidationError(
            f"{where}[{short_repr(name)}]", column, "expected a sequence or numpy array"
        )
    if getattr(column, "ndim", 1) != 1:
        raise ValidationError(
            f"{where}[{short_repr(name)}]", column, "expected a one-dimensional column"
        )
    return len(column)


class _Native:
    """A numpy column of a native type: values, the mask of present ones and the family."""

    __slots__ = ("data", "family", "present")

    def __init__(self, data: Any, present: Mask | None, family: str) -> None:
        self.data = data
        self.present = present  # None: no value is missing
        self.family = family


class _Values:
    """A column read value by value: distinct values and, per row, its value's position."""

    __slots__ = ("codes", "distinct")

    def __init__(self, codes: Any, distinct: list[Any]) -> None:
        self.codes = codes
        self.distinct = distinct


class ColumnRules:
    """Truth masks of rules over ``columns`` of one kind of entity, at ``context.now``.

    ``where`` names the mapping in error messages (``"columns"``, ``"contact_columns"``).
    Columns are prepared once, on first use, and shared by every rule evaluated here.
    """

    def __init__(
        self,
        np: Any,
        columns: Mapping[str, Any],
        size: int,
        *,
        entity: RuleEntity,
        context: Context,
        where: str,
    ) -> None:
        self.np = np
        self.columns = columns
        self.size = size
        self.entity = entity
        self.context = context
        self.where = where
        self.fields = FIELDS[entity]
        self.prepared: dict[str, _Native | _Values] = {}
        self.distinct: dict[str, _Values] = {}

    # ------------------------------------------------------------------ nodes

    def true(self, rule: Rule) -> Mask:
        """The rows for which ``rule`` is TRUE."""
        return self.truth(rule.where, positive=True)

    def truth(self, node: Condition, *, positive: bool) -> Mask:
        """The rows for which ``node`` is TRUE (``positive``) or FALSE."""
        match node:
            case Not(item=item):
                return self.truth(item, positive=not positive)
            case And(items=items) | Or(items=items):
                every = isinstance(node, And) == positive
                masks = [self.truth(i, positive=positive) for i in items]
                return functools.reduce(operator.and_ if every else operator.or_, masks)
            case Compare() | In() | Between() | IsNull() | TextMatch() | RelativeDate():
                return self.leaf(node, positive=positive)
            case HasTag():
                return self.by_value("tags", self.spec("tags"), node, positive=positive)
        raise ValidationError(self.where, node, "not a condition columns can evaluate")

    def spec(self, name: str) -> FieldSpec:
        return field_spec(name, self.fields, "custom")

    def leaf(
        self, node: Compare | In | Between | IsNull | TextMatch | RelativeDate, *, positive: bool
    ) -> Mask:
        spec = self.spec(node.field)
        column = self.column(spec)
        if isinstance(column, _Values):
            return self.by_value(spec.name, spec, node, positive=positive)
        match node:
            case IsNull(negated=negated):
                missing = positive != negated
                if column.present is None:
                    return self.np.full(self.size, not missing)
                return ~column.present if missing else column.present
            case Compare(op=op, value=literal):
                return self.compare(spec, column, op, literal, positive=positive)
            case In(values=values, negated=negated):
                return self.is_in(spec, column, values, positive=positive != negated)
            case Between(low=low, high=high):
                lowered = And((Compare(spec.name, Op.GE, low), Compare(spec.name, Op.LE, high)))
                return self.truth(lowered, positive=positive)
            case TextMatch():
                if column.family is not _TEXT:
                    return self.np.zeros(self.size, dtype=bool)  # not text: UNKNOWN
                return self.by_value(spec.name, spec, node, positive=positive)
            case RelativeDate(window=window, days=days):
                dates = spec.kind is FieldType.DATE
                low, high, inclusive = window_bounds(window, days, self.context.now, dates=dates)
                data = column.data
                inside = (
                    data <= self.time(high, dates) if inclusive else data < self.time(high, dates)
                )
                if low is not None:
                    inside &= data >= self.time(low, dates)
                return self.present(column, inside if positive else ~inside)
        raise AssertionError(node)  # pragma: no cover - the match above is complete

    # ------------------------------------------------------------------ native columns

    def present(self, column: _Native, mask: Mask) -> Mask:
        return mask if column.present is None else mask & column.present

    def compare(
        self, spec: FieldSpec, column: _Native, op: Op, literal: object, *, positive: bool
    ) -> Mask:
        """Where ``value <op> literal`` is TRUE (or FALSE), as :func:`compare` says."""
        np = self.np
        if not _comparable(spec, column.family, literal):
            return np.zeros(self.size, dtype=bool)  # another JSON type: UNKNOWN
        data = column.data
        if column.family is _NUMBER:
            test = _numbers(np, data, op, literal)  # type: ignore[arg-type]
        elif column.family is _TIME:
            test = _OPS[op](data, self.time(literal, spec.kind is FieldType.DATE))
        else:
            test = _OPS[op](data, literal)
        return self.present(column, test if positive else ~test)

    def is_in(
        self, spec: FieldSpec, column: _Native, values: tuple[Any, ...], *, positive: bool
    ) -> Mask:
        """Where ``value IN values`` is TRUE (or FALSE): the OR of the equalities."""
        np = self.np
        listed = [v for v in values if v is not None]
        if positive:
            if column.family is _TEXT and len(listed) > _MANY and spec.kind is not FieldType.JSON:
                return self.present(column, np.isin(column.data, listed))
            masks = [self.compare(spec, column, Op.EQ, v, positive=True) for v in listed]
            return functools.reduce(operator.or_, masks)
        if len(listed) < len(values):
            return np.zeros(self.size, dtype=bool)  # a NULL in the list: never FALSE
        masks = [self.compare(spec, column, Op.EQ, v, positive=False) for v in listed]
        return functools.reduce(operator.and_, masks)

    def time(self, value: object, dates: bool) -> Any:
        if dates:
            assert isinstance(value, date)
            return self.np.datetime64(value, "D")
        assert isinstance(value, datetime)
        return self.np.datetime64(value.astimezone(UTC).replace(tzinfo=None), "us")

    # ------------------------------------------------------------------ by value

    def by_value(self, name: str, spec: FieldSpec, node: Condition, *, positive: bool) -> Mask:
        """The leaf's truth per distinct value of its column (by the interpreter)."""
        column = self.values(name, spec)
        rule = Rule(self.entity, node)
        truths = [self.interpret(rule, spec, value) is positive for value in column.distinct]
        table = self.np.array(truths, dtype=bool)
        return table[column.codes]

    def interpret(self, rule: Rule, spec: FieldSpec, value: object) -> bool | None:
        if isinstance(value, float) and math.isnan(value):
            value = None  # nan is a missing number, as in number arrays
        if spec.kind is FieldType.TAGS and (value is None or isinstance(value, str | bytes)):
            raise ValidationError(self.label(spec.name), value, "expected a set of tags")
        if spec.key is not None:
            holder = SimpleNamespace(custom={} if value is None else {spec.key: value})
        else:
            holder = SimpleNamespace(**{spec.attribute: value})
        try:
            return evaluate(rule, holder, self.context)
        except (TypeError, AttributeError, ArithmeticError):
            raise ValidationError(
                self.label(spec.name), value, f"not a value of a {spec.kind} field"
            ) from None

    def values(self, name: str, spec: FieldSpec) -> _Values:
        found = self.distinct.get(name)
        if found is not None:
            return found
        np = self.np
        native = self.prepared.get(name)
        if isinstance(native, _Native):  # a text array read value by value
            items: list[Any] = native.data.tolist()
            if native.present is not None:
                shown = native.present.tolist()
                items = [v if p else None for v, p in zip(items, shown, strict=True)]
        else:
            items = self.raw(name)
        try:
            keys: list[Any] = list(zip(map(type, items), items, strict=True)) if spec.key else items
            positions = {key: index for index, key in enumerate(dict.fromkeys(keys))}
            codes = np.fromiter(map(positions.__getitem__, keys), np.intp, len(keys))
            distinct = [key[1] for key in positions] if spec.key else list(positions)
        except TypeError:  # an unhashable value (a list of tags, say): each row by itself
            codes, distinct = np.arange(len(items)), items
        column = self.distinct[name] = _Values(codes, distinct)
        return column

    # ------------------------------------------------------------------ columns

    def label(self, name: str) -> str:
        return f"{self.where}[{short_repr(name)}]"

    def raw(self, name: str) -> list[Any]:
        """The column's values as Python objects (masked entries are ``None``)."""
        if name not in self.columns:
            raise ValidationError(self.label(name), None, "missing: a rule reads this column")
        column = self.columns[name]
        np = self.np
        if isinstance(column, np.ndarray):
            if np.ma.isMaskedArray(column):
                data, mask = np.ma.getdata(column).tolist(), np.ma.getmaskarray(column).tolist()
                return [None if m else v for v, m in zip(data, mask, strict=True)]
            return list(column.tolist() if column.dtype.kind == "O" else column)
        return list(column)

    def column(self, spec: FieldSpec) -> _Native | _Values:
        name = spec.name
        found = self.prepared.get(name)
        if found is not None:
            return found
        column = self.columns.get(name)
        np = self.np
        if column is None or not isinstance(column, np.ndarray) or column.dtype.kind == "O":
            prepared: _Native | _Values = self.values(name, spec)
        else:
            prepared = self.native(spec, column)
        self.prepared[name] = prepared
        return prepared

    def native(self, spec: FieldSpec, column: Any) -> _Native:
        np = self.np
        kind = column.dtype.kind
        allowed = _NATIVE.get(spec.kind, "")
        label = self.label(spec.name)
        if kind not in allowed:
            expected = "".join(allowed) or "none: pass a sequence of the values"
            raise ValidationError(
                label, str(column.dtype), f"a {spec.kind} field takes numpy kinds {expected}"
            )
        present = ~np.ma.getmaskarray(column) if np.ma.isMaskedArray(column) else None
        data = np.ma.getdata(column)
        missing = None
        if kind == "f":
            data = data.astype(np.float64, copy=False)
            missing = np.isnan(data)
        elif kind in "iu":
            if kind == "u" and data.size and int(data.max()) > _INT64_MAX:
                raise ValidationError(label, int(data.max()), "integers must fit in 64 bits")
            data = data.astype(np.int64, copy=False)
        elif kind == "M":
            unit = np.datetime_data(data.dtype)[0]
            dates = spec.kind is FieldType.DATE
            if (dates and unit != "D") or unit not in _TIME_UNITS:
                wanted = "datetime64[D]" if dates else "datetime64 in days to microseconds"
                raise ValidationError(label, str(column.dtype), f"expected {wanted}")
            data = data.astype("datetime64[D]" if dates else "datetime64[us]", copy=False)
            missing = np.isnat(data)
        if missing is not None and missing.any():
            present = ~missing if present is None else present & ~missing
        return _Native(data, present, _FAMILY[kind])


_OPS: Final = {
    Op.EQ: lambda a, b: a == b,
    Op.NE: lambda a, b: a != b,
    Op.LT: lambda a, b: a < b,
    Op.LE: lambda a, b: a <= b,
    Op.GT: lambda a, b: a > b,
    Op.GE: lambda a, b: a >= b,
}


def _json_family(literal: object) -> str | None:
    if isinstance(literal, bool):
        return _BOOL
    if isinstance(literal, int | float):
        return _NUMBER
    return _TEXT if isinstance(literal, str) else None


def _comparable(spec: FieldSpec, family: str, literal: object) -> bool:
    """Whether values of the column can be compared with ``literal`` (JSON: same type)."""
    return spec.kind is not FieldType.JSON or _json_family(literal) == family


def _numbers(np: Any, data: Any, op: Op, literal: int | float) -> Mask:
    """``data <op> literal`` exactly as Python compares numbers, for an int64 or float64
    column: never rounding an int literal to a float, nor a float literal to an int."""
    if data.dtype.kind == "f":
        if isinstance(literal, float):
            return _OPS[op](data, literal)
        near = float(literal)
        if int(near) == literal:
            return _OPS[op](data, near)
        # The int lies strictly between two neighbouring floats ``below`` and ``above``.
        below = near if near < literal else math.nextafter(near, -math.inf)
        above = near if near > literal else math.nextafter(near, math.inf)
        return _between_values(np, data, op, below, above)
    if isinstance(literal, int) or literal.is_integer():
        return _integers(np, data, op, int(literal))
    return _between_values(np, data, op, math.floor(literal), math.ceil(literal))


def _between_values(np: Any, data: Any, op: Op, below: Any, above: Any) -> Mask:
    """``data <op> x`` for an ``x`` strictly between ``below`` and ``above``, with no
    value of the column's type in between."""
    if op is Op.EQ:
        return np.zeros(data.shape, dtype=bool)
    if op is Op.NE:
        return np.ones(data.shape, dtype=bool)
    if op in (Op.LT, Op.LE):
        return _integers(np, data, Op.LE, below) if isinstance(below, int) else data <= below
    return _integers(np, data, Op.GE, above) if isinstance(above, int) else data >= above


def _integers(np: Any, data: Any, op: Op, literal: int) -> Mask:
    """``data <op> literal`` for an int64 column and any Python int."""
    if _INT64_MIN <= literal <= _INT64_MAX:
        return _OPS[op](data, np.int64(literal))
    above = literal > _INT64_MAX  # every value is below the literal
    holds = {
        Op.EQ: False,
        Op.NE: True,
        Op.LT: above,
        Op.LE: above,
        Op.GT: not above,
        Op.GE: not above,
    }[op]
    return np.full(data.shape, holds)
