"""Rules -> SQLAlchemy expressions, with the meaning the Python interpreter gives them.

Every literal is a bound parameter; only column names from the field registry and
fixed SQL reach the statement. The three-valued logic of SQL does most of the work;
where SQL and Python differ, the compiler spells Python's meaning out
(:mod:`crmkit.segmentation._semantics` is the reference):

* text matches and tags compare the stored ``casefold`` shadows, with ``instr`` /
  ``strpos`` and ``substr`` rather than ``LIKE`` (which has its own case rules);
* a custom field compares only when its JSON type is the literal's (else UNKNOWN);
* decimals and money compare as ``(units, nanos)`` integer pairs, exactly; a literal with
  more than 12 places or out of range is turned into the nearest bound that gives the
  same answer for every storable value;
* money in another currency is UNKNOWN; sums of money add integers exactly;
* ``reachable`` is a conjunction of tests: the consent decision in force is one look-up
  of the contact's row of ``<prefix>consent_states`` (derived from the ledger,
  :mod:`crmkit.storage.sql._states`); the do-not-contact block in force ("an entry
  with no later one") and the frequency cap are ``id NOT IN (subquery)`` tests, run
  once (SQLite counts each contact's messages by an index range instead).
"""

import json
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from decimal import Context as DecimalContext
from typing import Any, Final, cast
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement, Grouping

from crmkit.errors import InvalidRule, StorageError
from crmkit.models import (
    Activity,
    ActivityKind,
    ConsentChannel,
    ConsentStatus,
    Contact,
    DoNotContact,
    Money,
    Segment,
)
from crmkit.models.rules import (
    ACTIVITY_FIELDS,
    CONTACT_FIELDS_OF,
    FIELDS,
    MESSAGE_KINDS,
    ActivityCondition,
    And,
    Between,
    Compare,
    Condition,
    FieldSpec,
    FieldType,
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
    Rule,
    RuleEntity,
    TextMatch,
    TextOp,
    check_bounds,
    contact_condition,
    field_spec,
)
from crmkit.segmentation import Context, evaluate
from crmkit.segmentation._semantics import MISSING_CONTACT, OPS, activity_window, window_bounds
from crmkit.storage.sql._codec import NANOS, decimal_parts
from crmkit.storage.sql._schema import Schema
from crmkit.storage.sql.types import sqlite_timestamp

__all__ = ["RuleCompiler"]

_Bool = ColumnElement[bool]


def _apply(op: Op, left: Any, right: Any) -> _Bool:
    """``left <op> right`` as a SQL condition."""
    return cast(_Bool, OPS[op](left, right))


_NONE: Final = frozenset({(Op.EQ, 0), (Op.LE, 0), (Op.LT, 1)})
_SOME: Final = frozenset({(Op.NE, 0), (Op.GT, 0), (Op.GE, 1)})


def _presence(node: ActivityCondition) -> bool | None:
    """Whether a count condition asks for some (``True``) or no (``False``) activity
    (``None``: another count, or a sum)."""
    if node.measure is not Measure.COUNT or isinstance(node.value, bool):
        return None
    key = (node.op, node.value)
    return True if key in _SOME else False if key in _NONE else None


_LIMIT: Final = Decimal(10) ** 18
_PLACES: Final = Decimal(1).scaleb(-12)
_WIDE: Final = DecimalContext(prec=40)
"""Room for every literal under ``_LIMIT`` at 12 places (the default context's 28 digits
cannot quantize 10^16 or more to 12 places)."""
_SQLITE_JSON_TYPES: Final = {str: ("text",), float: ("integer", "real"), bool: ("true", "false")}
_POSTGRES_JSON_TYPES: Final = {str: "string", float: "number", bool: "boolean"}


def _null() -> _Bool:
    return sa.cast(sa.null(), sa.Boolean)  # UNKNOWN


def _false_unless_null(value: ColumnElement[Any]) -> _Bool:
    """FALSE, or UNKNOWN when ``value`` is NULL."""
    return value != value  # noqa: PLR0124


def _true_unless_null(value: ColumnElement[Any]) -> _Bool:
    """TRUE, or UNKNOWN when ``value`` is NULL."""
    return value == value  # noqa: PLR0124


def _pair_compare(
    units: ColumnElement[Any], nanos: ColumnElement[Any], op: Op, low: int, high: int
) -> _Bool:
    """``(units, nanos) <op> (low, high)``, compared lexicographically."""
    if op is Op.EQ:
        return sa.and_(units == low, nanos == high)
    if op is Op.NE:
        return sa.or_(units != low, nanos != high)
    strict = {Op.LT: operator.lt, Op.LE: operator.lt, Op.GT: operator.gt, Op.GE: operator.gt}[op]
    return sa.or_(strict(units, low), sa.and_(units == low, _apply(op, nanos, high)))


def _decimal_compare(
    units: ColumnElement[Any], nanos: ColumnElement[Any], op: Op, literal: Decimal
) -> _Bool:
    """A stored decimal (at most 12 places, under 10^18) ``<op> literal``, exactly."""
    if abs(literal) < _LIMIT:
        floor = literal.quantize(_PLACES, ROUND_FLOOR, _WIDE)
        if floor == literal:
            return _pair_compare(units, nanos, op, *decimal_parts(floor))
        ceiling = literal.quantize(_PLACES, ROUND_CEILING, _WIDE)
        if op is Op.EQ:
            return _false_unless_null(units)
        if op is Op.NE:
            return _true_unless_null(units)
        if op in (Op.LT, Op.LE):
            return _pair_compare(units, nanos, Op.LE, *decimal_parts(floor))
        return _pair_compare(units, nanos, Op.GE, *decimal_parts(ceiling))
    # Beyond every storable value: the answer is the same for all of them.
    above = literal > 0
    holds = {
        Op.EQ: False,
        Op.NE: True,
        Op.LT: above,
        Op.LE: above,
        Op.GT: not above,
        Op.GE: not above,
    }[op]
    return _true_unless_null(units) if holds else _false_unless_null(units)


def _float_compare(column: ColumnElement[Any], op: Op, literal: Any) -> _Bool:
    """A float column ``<op>`` an int or float literal, as Python compares them (exactly)."""
    if isinstance(literal, float) or float(literal) == literal:
        return _apply(op, column, float(literal))
    near = float(literal)
    below = near if near < literal else math.nextafter(near, -math.inf)
    above = near if near > literal else math.nextafter(near, math.inf)
    if op is Op.EQ:
        return _false_unless_null(column)
    if op is Op.NE:
        return _true_unless_null(column)
    if op in (Op.LT, Op.LE):
        return column <= below
    return column >= above


_GROUP: Final = 100
_INT64: Final = 2**63
_ELEMENTS: Final[Mapping[FieldType, sa.types.TypeEngine[Any]]] = {
    FieldType.UUID: postgresql.UUID(as_uuid=True),
    FieldType.BOOL: sa.Boolean(),
    FieldType.DATE: sa.Date(),
    FieldType.DATETIME: postgresql.TIMESTAMP(timezone=True),
}


def _stored(kind: FieldType, literal: Any, *, postgres: bool) -> Any:
    """A literal as the column stores it, for a JSON list (SQLite) or an array."""
    if postgres:
        return literal
    if kind is FieldType.UUID:
        return literal.hex
    if kind is FieldType.DATETIME:
        return sqlite_timestamp(literal)
    if kind is FieldType.DATE:
        return literal.isoformat()
    return int(literal) if kind is FieldType.BOOL else literal


def _number(literal: Any, *, floating: bool) -> int | float | None:
    """A number literal as a value of the column (float or integer) that is equal to it
    exactly, or ``None`` when no value of the column can be equal to it."""
    if floating:
        if isinstance(literal, float):
            return literal
        near = float(literal)
        return near if near == literal else None
    if isinstance(literal, int):
        return literal
    whole = int(literal) if float(literal).is_integer() else None
    if whole is None or whole != literal or not -_INT64 <= whole < _INT64:
        return None  # an integer column holds 64-bit integers only
    return whole


def _decimal_pair(literal: Decimal) -> tuple[int, int] | None:
    """``(units, nanos)`` of a decimal a column can hold, else ``None`` (never equal)."""
    if abs(literal) >= _LIMIT:
        return None
    try:
        return decimal_parts(literal)
    except StorageError:  # more than 12 places: no stored value equals it
        return None


def _joined(join: Callable[..., _Bool], parts: list[_Bool]) -> _Bool:
    """``join(*parts)`` as a balanced tree of groups of at most :data:`_GROUP` parts.

    SQL parsers build ``a OR b OR c ...`` as a chain one level deeper per term (SQLite
    refuses expressions deeper than 1,000); groups keep the depth logarithmic.
    """
    while len(parts) > _GROUP:
        # A plain group of ORs would be flattened into the OR around it.
        parts = [
            sa.type_coerce(join(*parts[start : start + _GROUP]), sa.Boolean).self_group()
            for start in range(0, len(parts), _GROUP)
        ]
    return join(*parts)


def _match_or_unknown(match: _Bool | None, unknown: bool, value: ColumnElement[Any]) -> _Bool:
    """``IN`` from the test ``match`` against the non-NULL values of the list: TRUE when
    it matches; else UNKNOWN when the list held a NULL (``unknown``), else FALSE; always
    UNKNOWN for a NULL ``value``. ``match`` is ``None`` when no listed value can match."""
    if match is None:
        return _null() if unknown else _false_unless_null(value)
    if unknown:
        return sa.case((match, sa.true()), else_=_null())
    return match


class RuleCompiler:
    """Compiles rules over one schema, dialect, tenant and ``now``.

    ``segment`` looks a segment up by id in the same tenant (``None`` when missing), for
    ``in segment`` conditions; each segment is looked up once per compiler.
    """

    def __init__(
        self,
        schema: Schema,
        dialect: str,
        tenant: str,
        now: datetime,
        segment: Callable[[UUID], Segment | None],
    ) -> None:
        self.schema = schema
        self.postgres = dialect == "postgresql"
        self.tenant = tenant
        self.now = now
        self._lookup = segment
        self._segments: dict[UUID, Segment | None] = {}

    def segment(self, segment_id: UUID) -> Segment | None:
        """The segment ``segment_id`` of the tenant, read once."""
        if segment_id not in self._segments:
            self._segments[segment_id] = self._lookup(segment_id)
        return self._segments[segment_id]

    def segment_rule(self, segment_id: UUID) -> Rule | None:
        found = self.segment(segment_id)
        return None if found is None else found.rule

    def where(self, rule: Rule, table: sa.Table) -> _Bool:
        """The condition selecting the rows of ``table`` for which ``rule`` is TRUE.

        Raises :class:`~crmkit.errors.InvalidRule` before compiling anything when the
        rule, with the rules of its segments in place, exceeds the bounds of
        :func:`~crmkit.models.rules.check_bounds`.
        """
        check_bounds(rule, self.segment_rule)
        return _Scope(self, table, FIELDS[rule.entity], "custom", rule.entity, ()).sql(rule.where)


class _Scope:
    """Compiles the conditions over one table (an entity's, or the activities')."""

    def __init__(  # noqa: PLR0917 - internal, called from this module only
        self,
        compiler: RuleCompiler,
        table: sa.FromClause,
        fields: Mapping[str, FieldSpec],
        prefix: str,
        entity: RuleEntity | None,
        segment_path: tuple[UUID, ...],
    ) -> None:
        self.c = compiler
        self.table = table
        self.fields = fields
        self.prefix = prefix
        self.entity = entity
        self.segment_path = segment_path

    def spec(self, name: str) -> FieldSpec:
        return field_spec(name, self.fields, self.prefix)

    def column(self, name: str) -> ColumnElement[Any]:
        return self.table.c[name]

    # ------------------------------------------------------------------ conditions

    def sql(self, node: Condition) -> _Bool:  # noqa: PLR0912 - one case per node
        if self.entity in CONTACT_FIELDS_OF:
            inner = contact_condition(node)
            if inner is not None:
                return self.on_contact(inner)
        match node:
            case And(items=items):
                return _joined(sa.and_, self.conjuncts(items))
            case Or(items=items):
                return _joined(sa.or_, [self.sql(i) for i in items])
            case Not(item=Not(item=item)):
                return self.sql(item)  # NOT NOT x is x in three-valued logic too
            case Not(item=item):
                return sa.not_(self.sql(item))
            case Compare(field=name, op=op, value=literal):
                return self.compare(self.spec(name), op, literal)
            case In(field=name, values=values, negated=negated):
                # NOT IN is the AND of inequalities: NOT (IN), in three-valued logic.
                found = self.in_list(self.spec(name), values)
                return sa.not_(found) if negated else found
            case Between(field=name, low=low, high=high):
                spec = self.spec(name)
                return sa.and_(self.compare(spec, Op.GE, low), self.compare(spec, Op.LE, high))
            case IsNull(field=name, negated=negated):
                missing = self.is_missing(self.spec(name))
                return sa.not_(missing) if negated else missing
            case TextMatch(field=name, op=op, value=literal):
                return self.text_match(self.spec(name), op, literal)
            case HasTag(tag=tag):
                return self.has_tag(tag)
            case RelativeDate(field=name, window=window, days=days):
                spec = self.spec(name)
                low, high, inclusive = window_bounds(
                    window, days, self.c.now, dates=spec.kind is FieldType.DATE
                )
                return self.window(self.column(spec.name), low, high, inclusive)
            case InSegment(segment_id=segment_id):
                return self.member(segment_id)
            case ActivityCondition():
                return self.activities(node)
            case Reachable():
                return self.reachable(node)
        raise InvalidRule("where", node, "not a condition of the rule language")

    def window(self, value: ColumnElement[Any], low: Any, high: Any, inclusive: bool) -> _Bool:
        upper = value <= high if inclusive else value < high
        return upper if low is None else sa.and_(value >= low, upper)

    # ------------------------------------------------------------------ comparisons

    def compare(self, spec: FieldSpec, op: Op, literal: Any) -> _Bool:
        if literal is None:
            return _null()
        match spec.kind:
            case FieldType.JSON:
                return self.json_compare(spec, op, literal)
            case FieldType.MONEY:
                name = spec.name
                value = _decimal_compare(
                    self.column(f"{name}_units"), self.column(f"{name}_nanos"), op, literal.amount
                )
                same = self.column(f"{name}_currency") == literal.currency
                return sa.case((same, value), else_=_null())
            case FieldType.DECIMAL:
                name = spec.name
                return _decimal_compare(
                    self.column(f"{name}_units"), self.column(f"{name}_nanos"), op, literal
                )
            case FieldType.NUMBER:
                column = self.column(spec.name)
                if isinstance(column.type, sa.Double):
                    return _float_compare(column, op, literal)
                return _apply(op, column, literal)
        return _apply(op, self.column(spec.name), literal)

    # ------------------------------------------------------------------ IN lists

    def in_list(self, spec: FieldSpec, values: tuple[Any, ...]) -> _Bool:
        """``field IN (values)`` with the interpreter's meaning (the OR of equalities),
        the list bound as one parameter: an array on PostgreSQL (``= ANY``), a JSON
        array read by ``json_each`` on SQLite. Never one parameter per value."""
        literals = [v for v in values if v is not None]
        unknown = len(literals) < len(values)
        kind = spec.kind
        if kind is FieldType.JSON:
            return self.json_in(spec, literals, unknown)
        if kind is FieldType.DECIMAL:
            units, nanos = self.column(f"{spec.name}_units"), self.column(f"{spec.name}_nanos")
            pairs = [p for p in map(_decimal_pair, literals) if p is not None]
            text = sa.cast(units, sa.Text) + ":" + sa.cast(nanos, sa.Text)
            match = self.listed(text, [f"{u}:{n}" for u, n in pairs], sa.Text()) if pairs else None
            return _match_or_unknown(match, unknown, units)
        column = self.column(spec.name)
        element: sa.types.TypeEngine[Any]
        if kind is FieldType.NUMBER:
            floating = isinstance(column.type, sa.Double)
            literals = [
                n for n in (_number(v, floating=floating) for v in literals) if n is not None
            ]
            element = sa.Double() if floating else sa.BigInteger()
        else:
            literals = [_stored(kind, v, postgres=self.c.postgres) for v in literals]
            element = _ELEMENTS.get(kind, sa.Text())
        match = self.listed(column, literals, element) if literals else None
        return _match_or_unknown(match, unknown, column)

    def listed(
        self, value: ColumnElement[Any], literals: list[Any], element: sa.types.TypeEngine[Any]
    ) -> _Bool:
        """``value`` equals one of ``literals`` (no NULL among them), bound as one value."""
        if self.c.postgres:
            array = postgresql.ARRAY(element)
            bound = sa.cast(sa.bindparam(None, literals, type_=array), array)
            return value == sa.any_(bound)
        document = sa.bindparam(None, json.dumps(literals), type_=sa.Text())
        each = sa.func.json_each(document).table_valued("value")
        return value.in_(sa.select(each.c.value))

    def json_in(self, spec: FieldSpec, literals: list[Any], unknown: bool) -> _Bool:
        """IN for a custom field: only values of the stored JSON type can match it; a
        value of another type in the list makes a non-match UNKNOWN (as comparing)."""
        kind, value = self.json_parts(spec)
        groups: dict[type, list[Any]] = {}
        for literal in literals:
            python: type = float
            if isinstance(literal, bool | str):
                python = type(literal)
            groups.setdefault(python, []).append(literal)
        whens: list[tuple[_Bool, _Bool]] = []
        for python, group in groups.items():
            others = unknown or len(groups) > 1
            if self.c.postgres:
                same = kind == _POSTGRES_JSON_TYPES[python]
                if python is float:
                    numbers = [Decimal(repr(v) if isinstance(v, float) else v) for v in group]
                    match = self.listed(sa.cast(value, sa.Numeric), numbers, sa.Numeric())
                elif python is bool:
                    match = self.listed(sa.cast(value, sa.Boolean), group, sa.Boolean())
                else:
                    match = self.listed(value, group, sa.Text())
            else:
                same = kind.in_(_SQLITE_JSON_TYPES[python])
                bound = [int(v) for v in group] if python is bool else group
                match = self.listed(value, bound, sa.Text())
            whens.append((same, _match_or_unknown(match, others, value)))
        if not whens:
            return _null()
        return sa.case(*whens, else_=_null())

    def json_parts(
        self, spec: FieldSpec, folded: bool = False
    ) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
        """``(json type, value)`` of the custom field or property ``spec`` names."""
        assert spec.key is not None
        document = self.column(spec.attribute)
        source = self.column(f"{spec.attribute}_fold") if folded else document
        if self.c.postgres:
            key = sa.literal(spec.key, sa.Text)
            kind = sa.func.json_typeof(document.op("->")(key))
            return kind, source.op("->>")(key)
        path = sa.literal(f"$.{spec.key}", sa.Text)
        return sa.func.json_type(document, path), sa.func.json_extract(source, path)

    def json_compare(self, spec: FieldSpec, op: Op, literal: Any) -> _Bool:
        kind, value = self.json_parts(spec)
        python = bool if isinstance(literal, bool) else str if isinstance(literal, str) else float
        if self.c.postgres:
            same = kind == _POSTGRES_JSON_TYPES[python]
            if python is float:
                number = Decimal(repr(literal)) if isinstance(literal, float) else Decimal(literal)
                test = _apply(op, sa.cast(value, sa.Numeric), sa.literal(number, sa.Numeric))
            elif python is bool:
                test = _apply(op, sa.cast(value, sa.Boolean), sa.literal(literal, sa.Boolean))
            else:
                test = _apply(op, value, sa.literal(literal, sa.Text))
        else:
            same = kind.in_(_SQLITE_JSON_TYPES[python])
            bound = int(literal) if python is bool else literal
            test = _apply(op, value, sa.literal(bound))
        return sa.case((same, test), else_=_null())

    def is_missing(self, spec: FieldSpec) -> _Bool:
        if spec.kind is FieldType.JSON:
            kind, _ = self.json_parts(spec)
            return sa.func.coalesce(kind, "null") == "null"
        return self.column(spec.name).is_(None)

    # ------------------------------------------------------------------ text and tags

    def folded_text(self, spec: FieldSpec) -> ColumnElement[Any]:
        if spec.kind is FieldType.JSON:
            kind, value = self.json_parts(spec)
            _, shadow = self.json_parts(spec, folded=True)
            string = "string" if self.c.postgres else "text"
            return sa.case((kind == string, sa.func.coalesce(shadow, value)), else_=sa.null())
        if f"{spec.name}_fold" in self.table.c:
            return sa.func.coalesce(self.column(f"{spec.name}_fold"), self.column(spec.name))
        return self.column(spec.name)  # phone numbers: digits, nothing to fold

    def text_match(self, spec: FieldSpec, op: TextOp, literal: str) -> _Bool:
        text = self.folded_text(spec)
        part = literal.casefold()
        if not part:
            return _true_unless_null(text)
        bound = sa.literal(part, sa.Text)
        size = sa.literal(len(part), sa.Integer)
        if op is TextOp.CONTAINS:
            find = sa.func.strpos if self.c.postgres else sa.func.instr
            return find(text, bound) > 0
        if op is TextOp.STARTSWITH:
            return sa.func.substr(text, 1, size) == bound
        if self.c.postgres:
            return sa.func.right(text, size) == bound
        return sa.func.substr(text, -size) == bound

    def has_tag(self, tag: str) -> _Bool:
        tags = sa.func.coalesce(self.column("tags_fold"), self.column("tags"))
        wanted = sa.literal(tag.casefold(), sa.Text)
        if self.c.postgres:
            return tags.bool_op("?")(wanted)
        each = sa.func.json_each(tags).table_valued("value")
        return sa.exists(sa.select(sa.literal(1)).select_from(each).where(each.c.value == wanted))

    # ------------------------------------------------------------------ the contact

    def on_contact(self, inner: Condition) -> _Bool:
        """``inner`` (a condition over a contact) for the contact of this row: one
        correlated subquery on the contacts of the tenant by ``(tenant, id)``, the
        contacts' primary key. It yields 1, 0 or 2 for TRUE, FALSE, UNKNOWN and no row
        when the contact is missing; then the answer is that of the Python interpreter
        for a contact whose every field is missing (``is_null()`` TRUE, say)."""
        contacts = self.c.schema.table(Contact).alias()
        scope = _Scope(
            self.c, contacts, FIELDS[RuleEntity.CONTACT], "custom", RuleEntity.CONTACT, ()
        )
        test = scope.sql(inner)
        code = sa.case((test, 1), (sa.not_(test), 0), else_=2)
        found = (
            sa.select(code)
            .where(contacts.c.tenant == self.c.tenant, contacts.c.id == self.column("contact_id"))
            .scalar_subquery()
        )
        missing = evaluate(
            Rule(RuleEntity.CONTACT, inner), MISSING_CONTACT, Context(now=self.c.now)
        )
        default = 2 if missing is None else int(missing)
        return sa.func.nullif(sa.func.coalesce(found, default), 2) == 1

    # ------------------------------------------------------------------ segments

    def member(self, segment_id: UUID) -> _Bool:
        segment = self.c.segment(segment_id)
        if segment is None:
            raise InvalidRule("segment_id", segment_id, "no such segment in this store")
        if segment_id in self.segment_path:
            raise InvalidRule("segment_id", segment_id, "segment rules refer to each other")
        if segment.rule is None:
            members = self.c.schema.members
            return sa.exists(
                sa.select(sa.literal(1))
                .select_from(members)
                .where(
                    members.c.tenant == self.c.tenant,
                    members.c.segment_id == segment_id,
                    members.c.member_id == self.column("id"),
                )
            )
        inner = _Scope(
            self.c,
            self.table,
            self.fields,
            self.prefix,
            self.entity,
            (*self.segment_path, segment_id),
        )
        # TRUE, or FALSE for FALSE and UNKNOWN (a segment holds whom its rule selects);
        # one level of nesting per segment, where CASE took several of the parser's.
        # Grouped: SQLAlchemy writes NOT x IS true, which PostgreSQL reads NOT (x IS true).
        return Grouping(inner.sql(segment.rule.where)).is_(sa.true())

    # ------------------------------------------------------------------ activities

    def conjuncts(self, items: tuple[Condition, ...]) -> list[_Bool]:
        """The SQL of the items of an AND; a contact's "no activity of kind k within d
        days" conditions (count = 0, no filter) are asked once for all their kinds: a
        count of every kind is 0 exactly when no activity of any of them counts."""
        absent: dict[int | None, list[ActivityKind]] = {}
        parts: list[_Bool | int | None] = []  # a window's days hold its group's place
        for item in items:
            if (
                self.entity is RuleEntity.CONTACT
                and isinstance(item, ActivityCondition)
                and item.where is None
                and _presence(item) is False
            ):
                if item.within_days not in absent:
                    parts.append(item.within_days)
                absent.setdefault(item.within_days, []).append(item.kind)
            else:
                parts.append(self.sql(item))
        return [
            sa.not_(self.any_activity(absent[part], part, None))
            if part is None or isinstance(part, int)
            else part
            for part in parts
        ]

    def any_activity(
        self, kinds: Iterable[ActivityKind], within_days: int | None, where: Condition | None
    ) -> _Bool:
        """The contact has an activity of ``kinds`` within the window for which ``where``
        is TRUE: its id is among those one uncorrelated subquery lists, which SQLite
        runs once into a temporary index (not one count per contact); PostgreSQL gets
        EXISTS, which it runs as one (anti-)join whatever the number of ids."""
        owner = self.column("id")
        table = self.c.schema.table(Activity).alias("activity")
        low, high, _ = activity_window(within_days, self.c.now)
        scope = _Scope(self.c, table, ACTIVITY_FIELDS, "properties", None, ())
        filters: list[_Bool] = [
            table.c.tenant == self.c.tenant,
            table.c.kind.in_(sorted({k.value for k in kinds})),
            scope.window(table.c.occurred_at, low, high, inclusive=True),
        ]
        if where is not None:
            filters.append(scope.sql(where))
        if self.c.postgres:
            return sa.exists().where(table.c.contact_id == owner, *filters)
        return owner.in_(sa.select(table.c.contact_id).where(*filters))

    def activities(self, node: ActivityCondition) -> _Bool:
        if self.entity is None:
            raise InvalidRule("kind", node.kind, "activity conditions do not nest")
        presence = _presence(node)
        if presence is not None and self.entity is RuleEntity.CONTACT:
            found = self.any_activity((node.kind,), node.within_days, node.where)
            return found if presence else sa.not_(found)
        owner = self.column("id" if self.entity is RuleEntity.CONTACT else "contact_id")
        table = self.c.schema.table(Activity).alias("activity")
        low, high, _ = activity_window(node.within_days, self.c.now)
        scope = _Scope(self.c, table, ACTIVITY_FIELDS, "properties", None, ())
        filters: list[_Bool] = [
            table.c.tenant == self.c.tenant,
            table.c.contact_id == owner,
            table.c.kind == node.kind.value,
            scope.window(table.c.occurred_at, low, high, inclusive=True),
        ]
        if node.where is not None:
            filters.append(scope.sql(node.where))
        if node.measure is Measure.COUNT:
            counted = sa.select(sa.func.count()).select_from(table).where(*filters)
            return _apply(node.op, counted.scalar_subquery(), node.value)
        money = cast(Money, node.value)
        filters.append(table.c.amount_currency == money.currency)
        units = sa.func.coalesce(sa.func.sum(table.c.amount_units), 0)
        nanos = sa.func.coalesce(sa.func.sum(table.c.amount_nanos), 0)
        low_units, low_nanos = decimal_parts(money.amount)

        def total(expression: ColumnElement[Any]) -> ColumnElement[Any]:
            return sa.select(expression).select_from(table).where(*filters).scalar_subquery()

        if self.c.postgres:
            scaled = sa.cast(units, sa.Numeric) * NANOS + nanos
            literal = sa.literal(low_units * NANOS + low_nanos, sa.Numeric)
            return _apply(node.op, total(scaled), literal)
        # SQLite adds 64-bit integers (and fails loudly on overflow): carry the nanos.
        whole = total(units + nanos // NANOS)
        rest = total(nanos % NANOS)
        return _pair_compare(whole, rest, node.op, low_units, low_nanos)

    # ------------------------------------------------------------------ reachability

    def reachable(self, node: Reachable) -> _Bool:
        """The checks of ``node`` (see :func:`crmkit.segmentation._semantics.failed_checks`),
        ANDed; each is TRUE or FALSE, never NULL (the ids the subqueries list are never
        NULL)."""
        if self.entity is not RuleEntity.CONTACT:
            raise InvalidRule("channel", node.channel, "only contacts are reachable")
        checks, channel = node.checks, node.channel
        parts: list[_Bool] = []
        if ReachCheck.CONTACT_POINT in checks and channel is not ConsentChannel.POST:
            point = "email" if channel is ConsentChannel.EMAIL else "phone"
            parts.append(self.column(point).is_not(None))
        if ReachCheck.DO_NOT_CONTACT in checks:
            parts.append(self.column("do_not_contact") == sa.false())
        consent = {ReachCheck.CONSENT, ReachCheck.WITHDRAWN, ReachCheck.EXPIRED}
        granted = ConsentStatus.GRANTED
        if consent <= checks:  # the three in one: the decision in force is a live grant
            parts.append(self.decision(node, granted, live=True))
        else:
            if ReachCheck.CONSENT in checks:  # a withdrawal, or a grant for this address
                parts.append(self.decision(node, None))
            if ReachCheck.WITHDRAWN in checks:
                parts.append(sa.not_(self.decision(node, ConsentStatus.WITHDRAWN)))
            if ReachCheck.EXPIRED in checks:
                parts.append(sa.not_(self.decision(node, granted, expired=True)))
        if ReachCheck.DO_NOT_CONTACT in checks:
            parts.append(sa.not_(self.blocked(channel)))
        if ReachCheck.FREQUENCY_CAP in checks and node.max_messages is not None:
            parts.append(self.under_cap(node))
        return sa.and_(sa.true(), *parts)

    def decision(
        self,
        node: Reachable,
        status: ConsentStatus | None,
        *,
        live: bool = False,
        expired: bool = False,
    ) -> _Bool:
        """The contact's decision in force for the node's channel and purpose (its row
        of ``<prefix>consent_states``, derived from the ledger) has ``status`` (``None``:
        a withdrawal, or a grant) and, for a grant, has not expired at now with
        ``live``, has with ``expired``, and names no address or the contact's current
        one (:func:`~crmkit.models.covers_address`): a grant for another address is no
        decision. One look-up of the states' key per contact."""
        state = self.c.schema.consent_states.alias("consent_state")
        filters: list[_Bool] = [
            state.c.tenant == self.c.tenant,
            state.c.contact_id == self.column("id"),
            state.c.channel == node.channel.value,
            state.c.purpose == node.purpose,
        ]
        covers: _Bool = sa.true()
        if node.channel is not ConsentChannel.POST:
            point = self.column("email" if node.channel is ConsentChannel.EMAIL else "phone")
            covers = sa.or_(state.c.contact_point.is_(None), state.c.contact_point == point)
        if status is ConsentStatus.WITHDRAWN:
            filters.append(state.c.status == status.value)
        elif status is None:
            # Only grants and withdrawals are stored: not a withdrawal is a grant.
            filters.append(sa.or_(state.c.status == ConsentStatus.WITHDRAWN.value, covers))
        else:
            filters += [state.c.status == ConsentStatus.GRANTED.value, covers]
            if live:
                filters.append(
                    sa.or_(state.c.expires_at.is_(None), state.c.expires_at > self.c.now)
                )
            if expired:
                filters.append(state.c.expires_at <= self.c.now)
        return sa.exists(sa.select(sa.literal(1)).select_from(state).where(*filters))

    def blocked(self, channel: ConsentChannel) -> _Bool:
        """A do-not-contact block of ``channel`` is in force: a block with no later entry
        (a later ``decided_at``, or the same one, not a lift, and a greater id)."""
        ledger = self.c.schema.table(DoNotContact)
        entry, later = ledger.alias("block"), ledger.alias("block_later")

        def of(table: sa.FromClause, owner: ColumnElement[Any]) -> list[_Bool]:
            return [
                table.c.tenant == self.c.tenant,
                table.c.contact_id == owner,
                table.c.channel == channel.value,
            ]

        superseded = sa.exists(
            sa.select(sa.literal(1))
            .select_from(later)
            .where(
                *of(later, entry.c.contact_id),
                sa.or_(
                    later.c.decided_at > entry.c.decided_at,
                    sa.and_(
                        later.c.decided_at == entry.c.decided_at,
                        sa.not_(later.c.lifted),
                        later.c.id > entry.c.id,
                    ),
                ),
            )
        )
        chosen = sa.select(entry.c.contact_id).where(
            entry.c.tenant == self.c.tenant,
            entry.c.channel == channel.value,
            sa.not_(entry.c.lifted),
            sa.not_(superseded),
        )
        return self.column("id").in_(chosen)

    def under_cap(self, node: Reachable) -> _Bool:
        """Fewer than ``max_messages`` messages of the channel in the window. SQLite
        counts each contact's messages with one range of the index ``(tenant,
        contact_id, kind, occurred_at)``; PostgreSQL asks whether the contact is not
        among those with as many or more (a hashed subplan, run once)."""
        assert node.max_messages is not None
        table = self.c.schema.table(Activity).alias("message")
        low, high, _ = activity_window(node.within_days, self.c.now)
        scope = _Scope(self.c, table, ACTIVITY_FIELDS, "properties", None, ())
        filters = [
            table.c.tenant == self.c.tenant,
            table.c.kind == MESSAGE_KINDS[node.channel].value,
            scope.window(table.c.occurred_at, low, high, inclusive=True),
        ]
        if not self.c.postgres:
            sent = sa.select(sa.func.count()).select_from(table)
            sent = sent.where(table.c.contact_id == self.column("id"), *filters)
            return sent.scalar_subquery() < node.max_messages
        capped = (
            sa.select(table.c.contact_id)
            .where(*filters)
            .group_by(table.c.contact_id)
            .having(sa.func.count() >= node.max_messages)
        )
        return self.column("id").not_in(capped)
