"""The reference interpreter: a rule's three-valued truth for one entity.

Slow and plain on purpose: it walks the tree for every call and spells out SQL's
three-valued logic. :func:`crmkit.segmentation.compile_rule` is the fast path; tests
prove that both agree.
"""

from decimal import Decimal
from typing import Any
from uuid import UUID

from crmkit.errors import InvalidRule, ValidationError
from crmkit.models import Activity, Contact, Deal, Lead, Ticket
from crmkit.models._fields import expect
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
    check_bounds,
    contact_condition,
    field_spec,
)
from crmkit.segmentation._semantics import (
    OPS,
    Context,
    activity_window,
    compare,
    contact_of,
    field_value,
    in_window,
    reachable,
    text_matches,
    window_bounds,
)

__all__ = ["evaluate"]


def evaluate(rule: Rule, entity: object, context: Context) -> bool | None:
    """The truth of ``rule`` for ``entity``: ``True``, ``False`` or ``None`` (UNKNOWN).

    Only ``True`` selects the entity. Raises :class:`~crmkit.errors.InvalidRule` when an
    ``in segment`` condition names a segment missing from the context, or when segment
    rules refer to each other in a cycle.
    """
    expect(rule, Rule, "rule", "a Rule")
    expect(context, Context, "context", "a Context")
    check_bounds(rule, lambda segment_id: _rule_of(context, segment_id))
    fields = FIELDS[rule.entity]
    try:
        return _Interpreter(context, fields, "custom", rule.entity, ()).truth(rule.where, entity)
    except AttributeError:  # not an object with the rule's fields
        if isinstance(entity, Contact | Lead | Deal | Ticket | Activity):
            raise  # a bug, not the caller's input
        raise ValidationError(
            "entity", entity, f"a {rule.entity} rule reads the fields of a {rule.entity}"
        ) from None


def _rule_of(context: Context, segment_id: UUID) -> Rule | None:
    segment = context.segments.get(segment_id)
    return None if segment is None else segment.rule


def _and(values: list[bool | None]) -> bool | None:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def _or(values: list[bool | None]) -> bool | None:
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


class _Interpreter:
    def __init__(
        self,
        context: Context,
        fields: Any,
        prefix: str,
        entity: RuleEntity | None,
        segment_path: tuple[UUID, ...],
    ) -> None:
        self.context = context
        self.fields = fields
        self.prefix = prefix
        self.entity = entity
        self.segment_path = segment_path

    def spec(self, name: str) -> FieldSpec:
        return field_spec(name, self.fields, self.prefix)

    def truth(self, node: Condition, obj: Any) -> bool | None:  # noqa: PLR0912
        if self.entity in CONTACT_FIELDS_OF:
            inner = contact_condition(node)
            if inner is not None:  # the contact's fields: evaluated on the contact
                contact = _Interpreter(
                    self.context, FIELDS[RuleEntity.CONTACT], "custom", RuleEntity.CONTACT, ()
                )
                return contact.truth(inner, contact_of(self.context, obj))
        match node:
            case And(items=items):
                return _and([self.truth(i, obj) for i in items])
            case Or(items=items):
                return _or([self.truth(i, obj) for i in items])
            case Not(item=item):
                value = self.truth(item, obj)
                return None if value is None else not value
            case Compare(field=name, op=op, value=literal):
                spec = self.spec(name)
                return compare(spec.kind, op, field_value(spec, obj), literal)
            case In(field=name, values=values, negated=negated):
                spec = self.spec(name)
                value = field_value(spec, obj)
                if negated:
                    return _and([compare(spec.kind, Op.NE, value, v) for v in values])
                return _or([compare(spec.kind, Op.EQ, value, v) for v in values])
            case Between(field=name, low=low, high=high):
                spec = self.spec(name)
                value = field_value(spec, obj)
                return _and(
                    [compare(spec.kind, Op.GE, value, low), compare(spec.kind, Op.LE, value, high)]
                )
            case IsNull(field=name, negated=negated):
                missing = field_value(self.spec(name), obj) is None
                return not missing if negated else missing
            case TextMatch(field=name, op=op, value=literal):
                return text_matches(op, field_value(self.spec(name), obj), literal)
            case HasTag(tag=tag):
                wanted = tag.casefold()
                return any(t.casefold() == wanted for t in obj.tags)
            case RelativeDate(field=name, window=window, days=days):
                spec = self.spec(name)
                bounds = window_bounds(
                    window, days, self.context.now, dates=spec.kind is FieldType.DATE
                )
                return in_window(field_value(spec, obj), bounds)
            case InSegment(segment_id=segment_id):
                return self.member(segment_id, obj)
            case ActivityCondition():
                return self.activities(node, obj)
            case Reachable():
                return reachable(node, obj, self.context)
        raise InvalidRule("where", node, "not a condition of the rule language")

    def member(self, segment_id: UUID, obj: Any) -> bool:
        segment = self.context.segments.get(segment_id)
        if segment is None:
            raise InvalidRule("segment_id", segment_id, "no such segment in the context")
        if segment_id in self.segment_path:
            raise InvalidRule("segment_id", segment_id, "segment rules refer to each other")
        if segment.rule is None:
            return obj.id in segment.members
        inner = _Interpreter(
            self.context, self.fields, self.prefix, self.entity, (*self.segment_path, segment_id)
        )
        return inner.truth(segment.rule.where, obj) is True

    def activities(self, node: ActivityCondition, obj: Any) -> bool:
        contact_id = getattr(obj, "id" if self.entity is RuleEntity.CONTACT else "contact_id")
        found = self.context.activities.get(contact_id, ()) if contact_id else ()
        inner = _Interpreter(self.context, ACTIVITY_FIELDS, "properties", None, ())
        matching = [a for a in found if self.counts(node, a, inner)]
        if node.measure is Measure.COUNT:
            measured: Any = len(matching)
            literal: Any = node.value
        else:
            currency = node.value.currency  # type: ignore[union-attr]
            measured = sum(
                (a.amount.amount for a in matching if a.amount and a.amount.currency == currency),
                Decimal(0),
            )
            literal = node.value.amount  # type: ignore[union-attr]
        return OPS[node.op](measured, literal)

    def counts(self, node: ActivityCondition, activity: Activity, inner: "_Interpreter") -> bool:
        if activity.kind != node.kind:
            return False
        if not in_window(activity.occurred_at, activity_window(node.within_days, self.context.now)):
            return False
        return node.where is None or inner.truth(node.where, activity) is True
