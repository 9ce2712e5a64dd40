"""A readable way to write rules in Python.

>>> from crmkit.segmentation import activity, contacts_where, field, has_tag, prop
>>> from crmkit.models import ActivityKind
>>> rule = contacts_where(
...     (field("country") == "DE")
...     & field("lifecycle_stage").is_in("customer", "evangelist")
...     & ~has_tag("churned")
...     & (activity(ActivityKind.PAGE_VIEW, within_days=30,
...                 where=prop("url").contains("/pricing")).count() >= 2)
... )
>>> rule.entity
<RuleEntity.CONTACT: 'contact'>
"""

from uuid import UUID

from crmkit.errors import InvalidRule
from crmkit.models import ActivityKind, ConsentChannel, Money, Segment
from crmkit.models.rules import (
    ActivityCondition,
    Between,
    Compare,
    Condition,
    DateWindow,
    HasTag,
    In,
    InSegment,
    IsNull,
    Measure,
    Op,
    Reachable,
    RelativeDate,
    Rule,
    RuleEntity,
    Scalar,
    TextMatch,
    TextOp,
)

__all__ = [
    "ActivityQuery",
    "FieldRef",
    "Measured",
    "activity",
    "contacts_where",
    "custom",
    "deals_where",
    "field",
    "has_tag",
    "in_segment",
    "leads_where",
    "prop",
    "reachable",
    "tickets_where",
]


class FieldRef:
    """A field named in a rule; comparing it builds a condition (``field("x") == 1``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"field({self.name!r})"

    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, value: Scalar) -> Compare:  # type: ignore[override]
        return Compare(self.name, Op.EQ, value)

    def __ne__(self, value: Scalar) -> Compare:  # type: ignore[override]
        return Compare(self.name, Op.NE, value)

    def __lt__(self, value: Scalar) -> Compare:
        return Compare(self.name, Op.LT, value)

    def __le__(self, value: Scalar) -> Compare:
        return Compare(self.name, Op.LE, value)

    def __gt__(self, value: Scalar) -> Compare:
        return Compare(self.name, Op.GT, value)

    def __ge__(self, value: Scalar) -> Compare:
        return Compare(self.name, Op.GE, value)

    def is_in(self, *values: Scalar | None) -> In:
        """``field IN (values)``; a ``None`` among them behaves as SQL's NULL."""
        return In(self.name, tuple(values))

    def not_in(self, *values: Scalar | None) -> In:
        """``field NOT IN (values)``; a ``None`` among them makes it never TRUE (SQL)."""
        return In(self.name, tuple(values), negated=True)

    def between(self, low: Scalar, high: Scalar) -> Between:
        """``low <= field <= high``."""
        return Between(self.name, low, high)

    def is_null(self) -> IsNull:
        return IsNull(self.name)

    def is_not_null(self) -> IsNull:
        return IsNull(self.name, negated=True)

    def contains(self, text: str) -> TextMatch:
        """Case-insensitive substring match."""
        return TextMatch(self.name, TextOp.CONTAINS, text)

    def startswith(self, text: str) -> TextMatch:
        return TextMatch(self.name, TextOp.STARTSWITH, text)

    def endswith(self, text: str) -> TextMatch:
        return TextMatch(self.name, TextOp.ENDSWITH, text)

    def within_last(self, days: int) -> RelativeDate:
        """From ``days`` days before now up to now."""
        return RelativeDate(self.name, DateWindow.WITHIN_LAST, days)

    def more_than_days_ago(self, days: int) -> RelativeDate:
        """Earlier than ``days`` days before now."""
        return RelativeDate(self.name, DateWindow.MORE_THAN_AGO, days)

    def this_month(self) -> RelativeDate:
        """In the current calendar month (UTC)."""
        return RelativeDate(self.name, DateWindow.THIS_MONTH)


def field(name: str) -> FieldRef:
    """A field of the rule's entity (``"country"``) or a custom field (``"custom.plan"``)."""
    return FieldRef(name)


def _key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidRule("key", key, "expected the name of a custom field or property")
    return key


def custom(key: str) -> FieldRef:
    """The custom field ``key`` of the rule's entity: ``custom("plan") == "pro"``."""
    return FieldRef(f"custom.{_key(key)}")


def prop(key: str) -> FieldRef:
    """The property ``key`` of an activity, in an activity filter: ``prop("url")``."""
    return FieldRef(f"properties.{_key(key)}")


def has_tag(tag: str) -> HasTag:
    """The entity carries ``tag`` (case-insensitive)."""
    return HasTag(tag)


def in_segment(segment: Segment | UUID) -> InSegment:
    """The contact is a member of ``segment``."""
    return InSegment(segment.id if isinstance(segment, Segment) else segment)


class Measured:
    """A count or sum of activities; comparing it builds the condition."""

    __slots__ = ("_measure", "_query")

    def __init__(self, query: "ActivityQuery", measure: Measure) -> None:
        self._query = query
        self._measure = measure

    __hash__ = None  # type: ignore[assignment]

    def _build(self, op: Op, value: int | Money) -> ActivityCondition:
        query = self._query
        return ActivityCondition(
            query.kind, self._measure, op, value, where=query.where, within_days=query.within_days
        )

    def __eq__(self, value: int | Money) -> ActivityCondition:  # type: ignore[override]
        return self._build(Op.EQ, value)

    def __ne__(self, value: int | Money) -> ActivityCondition:  # type: ignore[override]
        return self._build(Op.NE, value)

    def __lt__(self, value: int | Money) -> ActivityCondition:
        return self._build(Op.LT, value)

    def __le__(self, value: int | Money) -> ActivityCondition:
        return self._build(Op.LE, value)

    def __gt__(self, value: int | Money) -> ActivityCondition:
        return self._build(Op.GT, value)

    def __ge__(self, value: int | Money) -> ActivityCondition:
        return self._build(Op.GE, value)


class ActivityQuery:
    """Activities of one kind, optionally filtered and within a number of days."""

    __slots__ = ("kind", "where", "within_days")

    def __init__(
        self, kind: ActivityKind, where: Condition | None, within_days: int | None
    ) -> None:
        self.kind = kind
        self.where = where
        self.within_days = within_days

    def exists(self) -> ActivityCondition:
        """At least one such activity."""
        return self.count() >= 1

    def count(self) -> Measured:
        """The number of such activities: ``activity(...).count() >= 2``."""
        return Measured(self, Measure.COUNT)

    def total(self) -> Measured:
        """The sum of their amounts in the compared currency: ``.total() > Money(...)``."""
        return Measured(self, Measure.SUM)


def activity(
    kind: ActivityKind, *, where: Condition | None = None, within_days: int | None = None
) -> ActivityQuery:
    """The contact's activities of ``kind`` for which ``where`` holds, in the last days."""
    return ActivityQuery(kind, where, within_days)


def reachable(
    channel: ConsentChannel,
    purpose: str,
    *,
    max_messages: int | None = None,
    within_days: int | None = None,
) -> Reachable:
    """The contact may be sent a message on ``channel`` for ``purpose`` (see
    :class:`~crmkit.models.rules.Reachable`); with ``max_messages`` and ``within_days``,
    also fewer than ``max_messages`` messages in the last ``within_days`` days."""
    return Reachable(channel, purpose, max_messages, within_days)


def contacts_where(condition: Condition) -> Rule:
    """A rule selecting contacts."""
    return Rule(RuleEntity.CONTACT, condition)


def leads_where(condition: Condition) -> Rule:
    """A rule selecting leads."""
    return Rule(RuleEntity.LEAD, condition)


def deals_where(condition: Condition) -> Rule:
    """A rule selecting deals."""
    return Rule(RuleEntity.DEAL, condition)


def tickets_where(condition: Condition) -> Rule:
    """A rule selecting tickets."""
    return Rule(RuleEntity.TICKET, condition)
