"""Compile a rule once into a Python function that tells whether it selects an entity.

The compiler writes the source of one function per rule and lets Python compile it, so
applying a rule costs about what a hand-written comprehension costs. Every literal is
bound as a constant of that function, never written into its source; the only names in
the source come from the field registry.

Three-valued logic without the cost: for every node the compiler can write two
predicates, "the node is TRUE" and "the node is FALSE" (UNKNOWN is neither). ``Not``
swaps them, ``And`` is TRUE when all items are TRUE and FALSE when any is FALSE, ``Or``
the reverse. Selecting needs only "the rule is TRUE".
"""

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, TypeVar
from uuid import UUID

import attrs

from crmkit.clock import ensure_utc
from crmkit.errors import InvalidRule, ValidationError
from crmkit.models import Activity
from crmkit.models._fields import expect, expect_items
from crmkit.models.rules import (
    ACTIVITY_FIELDS,
    CONTACT_FIELDS_OF,
    FIELDS,
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
    RelativeDate,
    Rule,
    RuleEntity,
    TextMatch,
    TextOp,
    check_bounds,
    contact_condition,
    field_spec,
)
from crmkit.segmentation._semantics import (
    MISSING_CONTACT,
    OPS,
    Context,
    activity_window,
    compare,
    in_window,
    reachable,
    window_bounds,
)

__all__ = [
    "compile_activity_filter",
    "compile_keyed",
    "compile_rule",
    "compile_selector",
    "compile_sum",
]

Predicate = Callable[[Any], bool]
Selector = Callable[[Iterable[Any]], list[Any]]
Summer = Callable[[Iterable[Any]], list[float]]
_T = TypeVar("_T")

# compile_keyed: how many entities it looks at to choose the fields it keys on by value,
# and how many distinct values such a field may show there (with one condition on it,
# or with several).
_SAMPLE: Final = 256
_FEW: Final = 8
_SOME: Final = 32
# Kinds whose equal values mean the same to every condition (JSON: ``1 == True``).
_BY_VALUE: Final = frozenset(FieldType) - {FieldType.JSON}

# Contact fields as seen from a lead, deal or ticket: the contact may be missing.
_OPTIONAL_CONTACT_FIELDS: Final = {
    name: attrs.evolve(spec, required=False) for name, spec in FIELDS[RuleEntity.CONTACT].items()
}

_SYMBOLS: Final = {Op.EQ: "==", Op.NE: "!=", Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">="}
# Fields whose values compare with Python's operators directly (no JSON or currency rules).
_DIRECT: Final = frozenset(FieldType) - {FieldType.JSON, FieldType.MONEY, FieldType.TAGS}
# Literal types whose TRUE comparisons with a custom field are written out directly.
_JSON_DIRECT: Final = (str, int, float)


def compile_rule(rule: Rule, context: Context) -> Predicate:
    """A function ``entity -> bool``: whether ``rule`` is TRUE for the entity.

    Relative dates and activity windows are fixed at ``context.now``; activities and
    segments are read from ``context``. Raises :class:`~crmkit.errors.InvalidRule` for
    an unknown segment or segments whose rules refer to each other in a cycle.
    """
    expect(rule, Rule, "rule", "a Rule")
    expect(context, Context, "context", "a Context")
    return _compiler(rule, context).function(rule.where)


def compile_selector(rule: Rule, context: Context) -> Selector:
    """A function ``entities -> list``: the entities for which ``rule`` is TRUE.

    The same test as :func:`compile_rule`, written into one list comprehension, which
    spares a function call per entity on large collections.
    """
    expect(rule, Rule, "rule", "a Rule")
    expect(context, Context, "context", "a Context")
    return _compiler(rule, context).selector(rule.where)


def compile_sum(terms: Sequence[tuple[Rule, float]], context: Context) -> Summer:
    """A function ``entities -> list[float]``: per entity, the sum of the weights of the
    rules of ``terms`` that are TRUE for it.

    All rules must select the same kind of entity. The weights are added in the order of
    ``terms``, starting from ``0.0``, so the result equals that sum written out by hand.
    The rules are written into one list comprehension, which makes scoring many
    entities with many rules about as fast as hand-written Python. Raises
    :class:`~crmkit.errors.InvalidRule` as :func:`compile_rule` does, and when the rules
    select different kinds of entity or a weight is not a finite number.
    """
    expect(context, Context, "context", "a Context")
    terms = expect_items(terms, tuple, "terms", "(rule, weight) pairs")
    for index, term in enumerate(terms):
        if len(term) != 2 or not isinstance(term[0], Rule):
            raise InvalidRule(f"terms[{index}]", term, "expected a (rule, weight) pair")
    if not terms:
        return lambda entities: [0.0 for _ in entities]
    entity = terms[0][0].entity
    compiler = _Compiler(context, FIELDS[entity], "custom", entity, segments={}, segment_path=())
    parts = ["0.0"]
    for index, (rule, weight) in enumerate(terms):
        if not isinstance(rule, Rule) or rule.entity is not entity:
            found = getattr(rule, "entity", rule)
            raise InvalidRule(f"terms[{index}]", found, f"expected a rule over {entity}")
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not math.isfinite(weight)
        ):
            raise InvalidRule(f"terms[{index}]", weight, "expected a finite number")
        _check_bounds(rule, context)
        test = compiler.expression(rule.where, positive=True)
        parts.append(f"({compiler.constant(float(weight))} if {test} else 0.0)")
    source = f"def sums(entities):\n    return [{' + '.join(parts)} for o in entities]\n"
    summer: Summer = compiler.define("sums", source)
    return summer


def compile_keyed(
    rules: Sequence[Rule], context: Context, function: Callable[[Any], _T]
) -> Callable[[Iterable[Any]], list[_T]]:
    """A function ``entities -> list``: ``[function(o) for o in entities]``, with
    ``function`` called once per distinct *key* instead of once per entity.

    The key of an entity is what the ``rules`` read of it: for each condition of the
    rules, whether it is TRUE (and, under a ``NOT``, whether it is FALSE), or, for a
    field that several conditions read and that holds few distinct values, the value
    itself (chosen per call from the first entities; never for custom fields, whose
    JSON values may be equal but of another type, ``1 == True``). Two entities with the
    same key make every rule of ``rules`` equally TRUE, FALSE or UNKNOWN. So
    ``function`` must depend on the entity only through the truth of those rules (a sum
    of points of TRUE rules, say): then the result is exactly that of calling it on
    every entity, at the cost of computing one key per entity. Entities with all
    different keys cost one call of ``function`` each, as without the keys.

    All rules must select the same kind of entity; raises
    :class:`~crmkit.errors.InvalidRule` as :func:`compile_rule` does.
    """
    expect(context, Context, "context", "a Context")
    rules = expect_items(rules, Rule, "rules", "Rule")
    if not callable(function):
        raise ValidationError("function", function, "expected a callable")
    if not rules:
        return lambda entities: _constant(entities, function)
    entity = rules[0].entity
    compiler = _Compiler(context, FIELDS[entity], "custom", entity, segments={}, segment_path=())
    needs: list[tuple[Condition, bool]] = []
    for index, rule in enumerate(rules):
        if not isinstance(rule, Rule) or rule.entity is not entity:
            found = getattr(rule, "entity", rule)
            raise InvalidRule(f"rules[{index}]", found, f"expected a rule over {entity}")
        _check_bounds(rule, context)
        compiler.expression(rule.where, positive=True)  # checks the rule (names, segments)
        _leaves(rule.where, True, needs)
    by_field: dict[str, list[tuple[Condition, bool]]] = {}
    for need in needs:
        name = _field_of(need[0])
        if name is not None and name in compiler.fields and compiler.spec(name).kind in _BY_VALUE:
            by_field.setdefault(name, []).append(need)
    variants: dict[frozenset[str], Callable[[Sequence[Any]], list[_T]]] = {}

    def build(raw: frozenset[str]) -> Callable[[Sequence[Any]], list[_T]]:
        parts = [compiler.access(compiler.spec(name)) for name in sorted(raw)]
        for leaf, positive in needs:
            name = _field_of(leaf)
            if name is None or name not in raw:
                parts.append(compiler.expression(leaf, positive=positive))
        key = "(" + "".join(f"{part}, " for part in parts) + ")"
        call = compiler.constant(_remember)
        apply = compiler.constant(function)
        source = (
            "def keyed(entities):\n"
            "    memo = {}\n"
            "    get = memo.get\n"
            f"    return [_r if (_r := get(_k := {key})) is not None"
            f" else {call}(memo, _k, {apply}(o)) for o in entities]\n"
        )
        keyed: Callable[[Sequence[Any]], list[_T]] = compiler.define("keyed", source)
        return keyed

    def keyed(entities: Iterable[Any]) -> list[_T]:
        items = entities if isinstance(entities, list | tuple) else list(entities)
        raw = frozenset(
            name
            for name, found in by_field.items()
            if _few_values(compiler.spec(name), items, few=_SOME if len(found) > 1 else _FEW)
        )
        chosen = variants.get(raw)
        if chosen is None:
            chosen = variants[raw] = build(raw)
        return chosen(items)

    return keyed


def _constant(entities: Iterable[Any], function: Callable[[Any], _T]) -> list[_T]:
    items = list(entities)
    if not items:
        return []
    return [function(items[0])] * len(items)


def _remember(memo: dict[Any, Any], key: Any, value: Any) -> Any:
    if value is None:
        return value  # None is the memo's "not yet": computed again for each entity
    memo[key] = value
    return value


def _leaves(node: Condition, positive: bool, into: list[tuple[Condition, bool]]) -> None:
    """The conditions under And, Or and Not, with whether their TRUE (or FALSE) counts,
    each once, in the order first met; linear in the size of the rule (each leaf is
    looked up by a structural key, not compared with every leaf found before)."""
    seen = {(_key(found), polarity) for found, polarity in into}
    pending = [(node, positive)]
    while pending:
        current, polarity = pending.pop()
        match current:
            case Not(item=item):
                pending.append((item, not polarity))
            case And(items=items) | Or(items=items):
                pending.extend((item, polarity) for item in reversed(items))
            case _:
                key = (_key(current), polarity)
                if key not in seen:
                    seen.add(key)
                    into.append((current, polarity))


def _key(value: object) -> Hashable:
    """A hashable key equal for equal conditions (nodes compare literals by type and
    value, so the key holds both: ``1``, ``1.0`` and ``True`` differ)."""
    if isinstance(value, Condition):
        names = attrs.fields(type(value))  # type: ignore[arg-type]
        return (type(value), tuple(_key(getattr(value, a.name)) for a in names))
    if isinstance(value, tuple):
        return tuple(_key(item) for item in value)
    return (type(value), value)


def _field_of(node: Condition) -> str | None:
    """The one field a condition reads, if it reads nothing else."""
    match node:
        case Compare(field=name) | In(field=name) | Between(field=name) | IsNull(field=name):
            return name
        case TextMatch(field=name) | RelativeDate(field=name):
            return name
        case HasTag():
            return "tags"
    return None


def _few_values(spec: FieldSpec, items: Sequence[Any], *, few: int) -> bool:
    """Whether the field shows at most ``few`` distinct (hashable) values in a sample."""
    seen: set[Any] = set()
    attribute, key = spec.attribute, spec.key
    for item in items[:_SAMPLE]:
        value = getattr(item, attribute, None)
        if key is not None:
            value = value.get(key) if isinstance(value, Mapping) else None
        try:
            seen.add(value)
        except TypeError:
            return False
        if len(seen) > few:
            return False
    return True


def compile_activity_filter(condition: ActivityCondition, now: datetime) -> Predicate:
    """A function ``activity -> bool``: whether the activity counts for ``condition``
    evaluated at ``now``: it is of the condition's kind, occurred up to ``now`` (and
    within its ``within_days``), and its ``where`` filter is TRUE."""
    expect(condition, ActivityCondition, "condition", "an ActivityCondition")
    now = ensure_utc(now, "now")
    kind = condition.kind
    window = activity_window(condition.within_days, now)
    where: Predicate | None = None
    if condition.where is not None:
        inner = _Compiler(
            Context(now=now), ACTIVITY_FIELDS, "properties", None, segments={}, segment_path=()
        )
        where = inner.function(condition.where)

    def selected(activity: Activity) -> bool:
        if activity.kind != kind:
            return False
        if not in_window(activity.occurred_at, window):
            return False
        return where is None or where(activity)

    return selected


def _check_bounds(rule: Rule, context: Context) -> None:
    """The bounds of ``rule`` with the segment rules of ``context`` in place."""

    def segment_rule(segment_id: UUID) -> Rule | None:
        segment = context.segments.get(segment_id)
        return None if segment is None else segment.rule

    check_bounds(rule, segment_rule)


def _compiler(rule: Rule, context: Context) -> "_Compiler":
    _check_bounds(rule, context)
    return _Compiler(
        context, FIELDS[rule.entity], "custom", rule.entity, segments={}, segment_path=()
    )


def _three_valued_in(kind: FieldType, value: object, values: tuple[Any, ...]) -> bool | None:
    results = [compare(kind, Op.EQ, value, v) for v in values]
    if any(r is True for r in results):
        return True
    return None if any(r is None for r in results) else False


class _Compiler:
    def __init__(
        self,
        context: Context,
        fields: Mapping[str, FieldSpec],
        prefix: str,
        entity: RuleEntity | None,
        *,
        segments: dict[UUID, Predicate | None],
        segment_path: tuple[UUID, ...],
    ) -> None:
        self.context = context
        self.fields = fields
        self.prefix = prefix
        self.entity = entity
        self.segments = segments  # compiled segment predicates, shared by nested compilers
        self.segment_path = segment_path
        self.constants: dict[str, object] = {}

    def function(self, where: Condition) -> Predicate:
        body = self.expression(where, positive=True)
        function: Predicate = self.define("rule", f"def rule(o):\n    return {body}\n")
        return function

    def selector(self, where: Condition) -> Selector:
        body = self.expression(where, positive=True)
        source = f"def select(entities):\n    return [o for o in entities if {body}]\n"
        selector: Selector = self.define("select", source)
        return selector

    def define(self, name: str, source: str) -> Any:
        # The source holds registry names and constant names only (see the module doc).
        namespace: dict[str, Any] = dict(self.constants)
        exec(compile(source, "<crmkit rule>", "exec"), namespace)
        return namespace[name]

    def constant(self, value: object) -> str:
        name = f"k{len(self.constants)}"
        self.constants[name] = value
        return name

    def access(self, spec: FieldSpec) -> str:
        # Attribute names come from the registry and custom keys match [a-z][a-z0-9_]*;
        # checked again here because they are written into the generated source.
        if not spec.attribute.isidentifier() or not (spec.key or "k").isidentifier():
            raise InvalidRule(spec.name, spec.name, "not a field name")
        if spec.key is None:
            return f"o.{spec.attribute}"
        return f"o.{spec.attribute}.get({spec.key!r})"

    def spec(self, name: str) -> FieldSpec:
        return field_spec(name, self.fields, self.prefix)

    def call(self, function: Callable[..., Any], *arguments: str, positive: bool) -> str:
        """``function(arguments) is True`` (or ``is False``), for three-valued helpers."""
        name = self.constant(function)
        return f"({name}({', '.join(arguments)}) is {positive})"

    def expression(self, node: Condition, *, positive: bool) -> str:  # noqa: PLR0912, PLR0915
        """Source of "``node`` is TRUE" (``positive``) or "``node`` is FALSE"."""
        if self.entity in CONTACT_FIELDS_OF:
            inner = contact_condition(node)
            if inner is not None:
                return self.on_contact(inner, positive=positive)
        match node:
            case Not(item=item):
                return self.expression(item, positive=not positive)
            case And(items=items) | Or(items=items):
                joiner = " and " if isinstance(node, And) == positive else " or "
                parts = [self.expression(i, positive=positive) for i in items]
                return "(" + joiner.join(parts) + ")"
            case Compare(field=name, op=op, value=literal):
                spec = self.spec(name)
                value = self.access(spec)
                if spec.kind is FieldType.JSON and positive and type(literal) in _JSON_DIRECT:
                    return self.json_true(value, op, literal)
                if spec.kind not in _DIRECT:
                    kind, op_name = self.constant(spec.kind), self.constant(op)
                    lit = self.constant(literal)
                    return self.call(compare, kind, op_name, value, lit, positive=positive)
                test = f"_v {_SYMBOLS[op]} {self.constant(literal)}"
                return self.present(spec, value, _polar(test, positive))
            case In(field=name, values=values, negated=negated):
                spec = self.spec(name)
                value = self.access(spec)
                truth = positive != negated  # "IN is TRUE" for IN+TRUE and NOT IN+FALSE
                if spec.kind not in _DIRECT:
                    kind, choices = self.constant(spec.kind), self.constant(values)
                    return self.call(_three_valued_in, kind, value, choices, positive=truth)
                members = self.constant(frozenset(v for v in values if v is not None))
                if truth:
                    return self.present(spec, value, f"_v in {members}")
                if None in values:
                    return "False"  # IN with a NULL in the list is never FALSE
                return self.present(spec, value, f"_v not in {members}")
            case Between(field=name, low=low, high=high):
                spec = self.spec(name)
                if spec.kind not in _DIRECT:
                    lowered = And((Compare(name, Op.GE, low), Compare(name, Op.LE, high)))
                    return self.expression(lowered, positive=positive)
                test = f"{self.constant(low)} <= _v <= {self.constant(high)}"
                return self.present(spec, self.access(spec), _polar(test, positive))
            case IsNull(field=name, negated=negated):
                missing = positive != negated
                return f"({self.access(self.spec(name))} is {'' if missing else 'not '}None)"
            case TextMatch(field=name, op=op, value=literal):
                part = self.constant(literal.casefold())
                test = {
                    TextOp.CONTAINS: f"{part} in _v.casefold()",
                    TextOp.STARTSWITH: f"_v.casefold().startswith({part})",
                    TextOp.ENDSWITH: f"_v.casefold().endswith({part})",
                }[op]
                value = self.access(self.spec(name))
                return f"(isinstance((_v := {value}), str) and {_polar(test, positive)})"
            case HasTag(tag=tag):
                wanted = self.constant(tag.casefold())
                matches = f"any(t.casefold() == {wanted} for t in o.tags)"
                test = f"({wanted} in o.tags or (bool(o.tags) and {matches}))"
                return _polar(test, positive)
            case RelativeDate(field=name, window=window, days=days):
                spec = self.spec(name)
                bounds = window_bounds(
                    window, days, self.context.now, dates=spec.kind is FieldType.DATE
                )
                test = self.window_test(bounds)
                return self.present(spec, self.access(spec), _polar(test, positive))
            case InSegment(segment_id=segment_id):
                member = self.constant(self.segment(segment_id))
                return _polar(f"{member}(o)", positive)
            case ActivityCondition():
                measured = self.constant(self.activities(node))
                return _polar(f"{measured}(o)", positive)
            case Reachable():
                context = self.context

                def reached(o: Any) -> bool:
                    return reachable(node, o, context)

                return _polar(f"{self.constant(reached)}(o)", positive)
        raise InvalidRule("where", node, "not a condition of the rule language")

    def on_contact(self, inner: Condition, *, positive: bool) -> str:
        """Source of "``inner`` is TRUE (or FALSE) for the entity's contact": ``inner``
        compiled as a contact condition into a function, applied to the contact found in
        the context (:data:`MISSING_CONTACT` when there is none). Every contact field
        may be missing then, so none is taken as always present."""
        compiler = _Compiler(
            self.context,
            _OPTIONAL_CONTACT_FIELDS,
            "custom",
            RuleEntity.CONTACT,
            segments={},
            segment_path=(),
        )
        body = compiler.expression(inner, positive=positive)
        test = compiler.define("test", f"def test(o):\n    return {body}\n")
        contacts, missing = self.context.contacts, MISSING_CONTACT

        def contact(o: Any) -> Any:
            contact_id = o.contact_id
            return missing if contact_id is None else contacts.get(contact_id, missing)

        return f"{self.constant(test)}({self.constant(contact)}(o))"

    def json_true(self, value: str, op: Op, literal: object) -> str:
        """ "``value <op> literal`` is TRUE" for a custom field and a text or number
        literal: the value must be of the literal's JSON type (else UNKNOWN)."""
        test = f"_v {_SYMBOLS[op]} {self.constant(literal)}"
        if type(literal) is str:
            return f"(type(_v := {value}) is str and {test})"
        return f"((type(_v := {value}) is int or type(_v) is float) and {test})"

    def present(self, spec: FieldSpec, value: str, test: str) -> str:
        """``test`` on ``_v``, the field's value, which must not be missing (NULL)."""
        if spec.required:
            return f"((_v := {value}) is _v and {test})"
        return f"((_v := {value}) is not None and {test})"

    def window_test(self, bounds: tuple[Any, Any, bool]) -> str:
        low, high, inclusive = bounds
        upper = f"_v {'<=' if inclusive else '<'} {self.constant(high)}"
        return upper if low is None else f"{self.constant(low)} <= {upper}"

    def segment(self, segment_id: UUID) -> Predicate:
        if segment_id in self.segment_path:
            raise InvalidRule("segment_id", segment_id, "segment rules refer to each other")
        compiled = self.segments.get(segment_id)
        if compiled is not None:
            return compiled
        segment = self.context.segments.get(segment_id)
        if segment is None:
            raise InvalidRule("segment_id", segment_id, "no such segment in the context")
        if segment.rule is None:
            members = segment.members

            def is_member(o: Any) -> bool:
                return o.id in members

            compiled = is_member
        else:
            inner = _Compiler(
                self.context,
                self.fields,
                self.prefix,
                self.entity,
                segments=self.segments,
                segment_path=(*self.segment_path, segment_id),
            )
            compiled = inner.function(segment.rule.where)
        self.segments[segment_id] = compiled
        return compiled

    def activities(self, node: ActivityCondition) -> Predicate:
        index = self.context.activities
        owner = "id" if self.entity is RuleEntity.CONTACT else "contact_id"
        selected = compile_activity_filter(node, self.context.now)
        compare_with = OPS[node.op]

        if node.measure is Measure.COUNT:
            limit = node.value

            def counted(o: Any) -> bool:
                contact_id = getattr(o, owner)
                found = index.get(contact_id, ()) if contact_id is not None else ()
                return compare_with(sum(1 for a in found if selected(a)), limit)

            return counted

        literal = node.value
        assert not isinstance(literal, int)
        currency, amount = literal.currency, literal.amount

        def summed(o: Any) -> bool:
            contact_id = getattr(o, owner)
            found = index.get(contact_id, ()) if contact_id is not None else ()
            total = sum(
                (
                    a.amount.amount
                    for a in found
                    if a.amount is not None and a.amount.currency == currency and selected(a)
                ),
                Decimal(0),
            )
            return compare_with(total, amount)

        return summed


def _polar(test: str, positive: bool) -> str:
    return f"({test})" if positive else f"(not ({test}))"
