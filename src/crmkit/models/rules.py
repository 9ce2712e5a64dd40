"""The rule language: boolean conditions over an entity, as frozen AST nodes.

A :class:`Rule` names the entity it applies to (contact, lead, deal or ticket) and a
:class:`Condition` tree. Conditions compare fields, custom fields (``custom.plan``), tags,
relative dates, segment membership and the contact's activity history, combined with
:class:`And`, :class:`Or` and :class:`Not` (``&``, ``|``, ``~``).

Rules are data: stored with segments, serialised by :mod:`crmkit.serialization`,
evaluated in Python by :mod:`crmkit.segmentation` and compiled to SQL by the storage
adapter. Both follow SQL's three-valued logic: a comparison with a missing value is
UNKNOWN, ``NOT UNKNOWN`` is UNKNOWN, and only TRUE selects.

Building a :class:`Rule` checks every field name against the :data:`FIELDS` registry of
its entity and every value against the field's type, and raises
:class:`~crmkit.errors.InvalidRule` naming the field and the value. Builder functions
that read better live in :mod:`crmkit.segmentation`.
"""

import math
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import Any, Final, TypeAlias, TypeVar
from uuid import UUID

import attrs

from crmkit.clock import ensure_utc
from crmkit.errors import InvalidRule, ValidationError
from crmkit.models._enums import (
    ActivityKind,
    ConsentChannel,
    DealStatus,
    ForecastCategory,
    LeadChannel,
    LeadStatus,
    LifecycleStage,
    TicketChannel,
    TicketPriority,
    TicketStatus,
)
from crmkit.models._values import (
    CountryCode,
    EmailAddress,
    LanguageCode,
    Money,
    PhoneNumber,
    has_surrogate,
    normalise_tags,
)

__all__ = [
    "ACTIVITY_FIELDS",
    "CONTACT_FIELDS_OF",
    "FIELDS",
    "MAX_IN_VALUES",
    "MAX_RULE_CONDITIONS",
    "MAX_RULE_DEPTH",
    "MAX_SEGMENT_DEPTH",
    "MESSAGE_KINDS",
    "ActivityCondition",
    "And",
    "Between",
    "Compare",
    "Condition",
    "DateWindow",
    "FieldSpec",
    "FieldType",
    "HasTag",
    "In",
    "InSegment",
    "IsNull",
    "Measure",
    "Not",
    "Op",
    "Or",
    "ReachCheck",
    "Reachable",
    "RelativeDate",
    "Rule",
    "RuleEntity",
    "Scalar",
    "TextMatch",
    "TextOp",
    "check_bounds",
    "contact_condition",
    "field_spec",
    "on_contact",
]

Scalar: TypeAlias = str | int | float | Decimal | bool | date | datetime | UUID | Money
"""A literal a rule compares with."""

MAX_RULE_DEPTH: Final = 64
"""How deep conditions may nest: ``And``, ``Or``, ``Not`` and activity filters each add a
level. An ``in segment`` condition counts as one level more plus the levels of the
segment's own rule (its segment rules counted in the same way), because every store
evaluates a segment rule in place of the condition."""

MAX_RULE_CONDITIONS: Final = 5_000
"""How many conditions (nodes) a rule may hold, counting the segment rules it names
(each time it names them) and activity filters."""

MAX_IN_VALUES: Final = 10_000
"""How many values the ``IN`` lists of a rule may hold together (the segment rules it
names included). Every store binds one ``IN`` list as one parameter (an array or a JSON
document), so a list of this size is as cheap to send as a short one."""

MAX_SEGMENT_DEPTH: Final = 16
"""How many segments may be nested: a rule naming segment ``A`` whose rule names
segment ``B``, ... names at most this many segments in a chain."""

_CONTACT: Final = "contact."
_PURPOSE: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}\Z")


class Op(StrEnum):
    """A comparison operator."""

    EQ = "eq"
    NE = "ne"
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"

    @property
    def negated(self) -> "Op":
        """The operator of the negated comparison (``not (a < b)`` is ``a >= b``)."""
        return _NEGATED[self]


_NEGATED: Final = {
    Op.EQ: Op.NE,
    Op.NE: Op.EQ,
    Op.LT: Op.GE,
    Op.GE: Op.LT,
    Op.GT: Op.LE,
    Op.LE: Op.GT,
}
_ORDERING: Final = frozenset({Op.LT, Op.LE, Op.GT, Op.GE})


class TextOp(StrEnum):
    """A text match; both sides are compared case-insensitively (``str.casefold``)."""

    CONTAINS = "contains"
    STARTSWITH = "startswith"
    ENDSWITH = "endswith"


class DateWindow(StrEnum):
    """A time window relative to the moment a rule is evaluated (UTC)."""

    WITHIN_LAST = "within_last"
    """From ``days`` days before now up to now."""
    MORE_THAN_AGO = "more_than_ago"
    """Earlier than ``days`` days before now."""
    THIS_MONTH = "this_month"
    """In the current calendar month (UTC)."""


class Measure(StrEnum):
    """What an activity condition measures over the matching activities."""

    COUNT = "count"
    SUM = "sum"
    """The sum of the activities' amounts in the currency of the compared value."""


class RuleEntity(StrEnum):
    """The kind of entity a rule selects."""

    CONTACT = "contact"
    LEAD = "lead"
    DEAL = "deal"
    TICKET = "ticket"


# ---------------------------------------------------------------------------- registry


class FieldType(StrEnum):
    """The type of a field a rule may name; it decides operators and literal types."""

    TEXT = "text"
    EMAIL = "email"
    """Text compared as an :class:`~crmkit.models.EmailAddress` (literals normalised)."""
    PHONE = "phone"
    """Text compared as a :class:`~crmkit.models.PhoneNumber` (literals in E.164)."""
    COUNTRY = "country"
    LANGUAGE = "language"
    ENUM = "enum"
    NUMBER = "number"
    """An int or float field; Decimal literals are compared as floats."""
    DECIMAL = "decimal"
    """A Decimal field; float literals are read as the decimal they are written as."""
    BOOL = "bool"
    DATETIME = "datetime"
    DATE = "date"
    UUID = "uuid"
    MONEY = "money"
    TAGS = "tags"
    JSON = "json"
    """A custom field or activity property: a JSON scalar of any type, or missing."""

    @property
    def ordered(self) -> bool:
        """Whether ``<``, ``<=``, ``>``, ``>=`` and ``BETWEEN`` apply (JSON: numbers only)."""
        return self in _ORDERED

    @property
    def textual(self) -> bool:
        """Whether text matches (``contains``, ...) apply (JSON: strings only)."""
        return self in _TEXTUAL


@attrs.frozen
class FieldSpec:
    """A field a rule may name: its name, type and (for enumerations) the allowed values."""

    name: str
    kind: FieldType
    enum: type[Enum] | None = None
    required: bool = False
    """The model guarantees a value (never ``None``), so the field is never NULL."""

    @property
    def attribute(self) -> str:
        """The model attribute (``custom`` for ``custom.plan``)."""
        return self.name.partition(".")[0]

    @property
    def key(self) -> str | None:
        """The custom field or property key (``plan`` for ``custom.plan``)."""
        return self.name.partition(".")[2] or None


def _specs(*specs: FieldSpec) -> Mapping[str, FieldSpec]:
    return MappingProxyType({spec.name: spec for spec in specs})


T = FieldType
_COMMON = (
    FieldSpec("id", T.UUID, required=True),
    FieldSpec("created_at", T.DATETIME, required=True),
    FieldSpec("updated_at", T.DATETIME, required=True),
)

FIELDS: Final[Mapping[RuleEntity, Mapping[str, FieldSpec]]] = MappingProxyType(
    {
        RuleEntity.CONTACT: _specs(
            *_COMMON,
            FieldSpec("first_name", T.TEXT),
            FieldSpec("last_name", T.TEXT),
            FieldSpec("email", T.EMAIL),
            FieldSpec("phone", T.PHONE),
            FieldSpec("country", T.COUNTRY),
            FieldSpec("language", T.LANGUAGE),
            FieldSpec("account_id", T.UUID),
            FieldSpec("lifecycle_stage", T.ENUM, LifecycleStage, required=True),
            FieldSpec("owner", T.TEXT),
            FieldSpec("do_not_contact", T.BOOL, required=True),
            FieldSpec("tags", T.TAGS),
        ),
        RuleEntity.LEAD: _specs(
            *_COMMON,
            FieldSpec("contact_id", T.UUID, required=True),
            FieldSpec("source", T.TEXT, required=True),
            FieldSpec("channel", T.ENUM, LeadChannel, required=True),
            FieldSpec("status", T.ENUM, LeadStatus, required=True),
            FieldSpec("score", T.NUMBER),
            FieldSpec("owner", T.TEXT),
            FieldSpec("pipeline", T.TEXT),
            FieldSpec("stage", T.TEXT),
            FieldSpec("deal_id", T.UUID),
        ),
        RuleEntity.DEAL: _specs(
            *_COMMON,
            FieldSpec("title", T.TEXT, required=True),
            FieldSpec("pipeline", T.TEXT, required=True),
            FieldSpec("stage", T.TEXT, required=True),
            FieldSpec("amount", T.MONEY),
            FieldSpec("probability", T.DECIMAL, required=True),
            FieldSpec("status", T.ENUM, DealStatus, required=True),
            FieldSpec("contact_id", T.UUID),
            FieldSpec("account_id", T.UUID),
            FieldSpec("expected_close", T.DATE),
            FieldSpec("closed_at", T.DATETIME),
            FieldSpec("lost_reason", T.TEXT),
            FieldSpec("owner", T.TEXT),
            FieldSpec("tags", T.TAGS),
            FieldSpec("forecast_category", T.ENUM, ForecastCategory),
        ),
        RuleEntity.TICKET: _specs(
            *_COMMON,
            FieldSpec("subject", T.TEXT, required=True),
            FieldSpec("contact_id", T.UUID, required=True),
            FieldSpec("account_id", T.UUID),
            FieldSpec("status", T.ENUM, TicketStatus, required=True),
            FieldSpec("priority", T.ENUM, TicketPriority, required=True),
            FieldSpec("channel", T.ENUM, TicketChannel, required=True),
            FieldSpec("assignee", T.TEXT),
            FieldSpec("csat", T.NUMBER),
            FieldSpec("tags", T.TAGS),
        ),
    }
)
"""The fields a rule may name, per entity. Every entity also has ``custom.<key>``."""

ACTIVITY_FIELDS: Final[Mapping[str, FieldSpec]] = _specs(
    FieldSpec("subject", T.TEXT),
    FieldSpec("amount", T.MONEY),
    FieldSpec("occurred_at", T.DATETIME, required=True),
    FieldSpec("actor", T.TEXT),
)
"""The fields the filter of an activity condition may name, and ``properties.<key>``."""

_DYNAMIC_KEY: Final = re.compile(r"[a-z][a-z0-9_]{0,62}\Z")


def field_spec(name: str, fields: Mapping[str, FieldSpec], dynamic_prefix: str) -> FieldSpec:
    """The spec of field ``name``, or :class:`InvalidRule` naming it.

    ``dynamic_prefix`` is ``"custom"`` for entities and ``"properties"`` for activities:
    ``custom.plan`` names the custom field ``plan``.
    """
    spec = fields.get(name)
    if spec is not None:
        return spec
    prefix, dot, key = name.partition(".")
    if dot and prefix == dynamic_prefix:
        if _DYNAMIC_KEY.match(key):
            return FieldSpec(name, FieldType.JSON)
        raise InvalidRule(name, name, f"{key!r} is not a valid {dynamic_prefix} field name")
    known = ", ".join(sorted(fields))
    raise InvalidRule(name, name, f"unknown field; known: {known}, {dynamic_prefix}.<name>")


# ---------------------------------------------------------------------------- nodes


def _same_typed(a: object, b: object) -> bool:
    """Equality that tells ``1``, ``1.0`` and ``True`` apart (they are different JSON)."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same_typed(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


_typed = attrs.cmp_using(eq=_same_typed)


def _is_scalar(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Decimal):
        return value.is_finite()
    return isinstance(value, str | int | date | UUID | Money)


def _check_field_name(_instance: object, _attribute: object, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidRule("field", value, "a field name is a non-empty string")


def _check_scalar(_instance: object, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if value is None:
        raise InvalidRule(attribute.name, value, "comparing with None is never TRUE: use is_null()")
    if not _is_scalar(value):
        raise InvalidRule(attribute.name, value, "expected a finite literal value")


def _instance_of(cls: type, what: str) -> Any:
    """attrs' ``instance_of``, raising :class:`InvalidRule` (not ``TypeError``)."""

    def check(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
        if not isinstance(value, cls):
            raise InvalidRule(attribute.name, value, f"expected {what}")

    return check


def _check_enum(enum: type[Enum]) -> Any:
    def check(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
        if not isinstance(value, enum):
            allowed = ", ".join(str(m.value) for m in enum)
            raise InvalidRule(attribute.name, value, f"expected one of: {allowed}")

    return check


class Condition:
    """Base of all condition nodes. ``a & b``, ``a | b`` and ``~a`` combine conditions."""

    __slots__ = ()

    def __and__(self, other: "Condition") -> "And":
        if not isinstance(other, Condition):
            return NotImplemented
        return _joined(And, (*_flat(self, And), *_flat(other, And)))

    def __or__(self, other: "Condition") -> "Or":
        if not isinstance(other, Condition):
            return NotImplemented
        return _joined(Or, (*_flat(self, Or), *_flat(other, Or)))

    def __invert__(self) -> "Not":
        return Not(self)

    def __bool__(self) -> bool:
        # ``a and b`` would silently keep only ``b``; ``if condition:`` means nothing.
        raise TypeError(
            "a rule condition has no truth value: combine conditions with & (and), "
            "| (or) and ~ (not) instead of 'and', 'or' and 'not'; test for a missing "
            "condition with 'is None'"
        )

    def children(self) -> tuple["Condition", ...]:
        """The conditions directly below this one."""
        return ()


def _flat(condition: Condition, kind: type["And"] | type["Or"]) -> tuple[Condition, ...]:
    return condition.items if type(condition) is kind else (condition,)


_Joined = TypeVar("_Joined", "And", "Or")


def _joined(kind: type[_Joined], items: tuple[Condition, ...]) -> _Joined:
    """``kind(items)`` for items already known to be conditions, without checking each
    one again: ``a | b | c | ...`` over n conditions stays linear in checks."""
    node = object.__new__(kind)
    object.__setattr__(node, "items", items)
    return node


@attrs.frozen
class Compare(Condition):
    """``field <op> value``; UNKNOWN when the field is missing (NULL)."""

    field: str = attrs.field(validator=_check_field_name)
    op: Op = attrs.field(validator=_check_enum(Op))
    value: Scalar = attrs.field(validator=_check_scalar, eq=_typed)


def _check_values(_instance: object, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if not isinstance(value, tuple) or not value:
        raise InvalidRule(attribute.name, value, "expected a non-empty tuple of values")
    if len(value) > MAX_IN_VALUES:
        raise InvalidRule(attribute.name, len(value), _too_many_values())
    for item in value:
        if item is not None and not _is_scalar(item):
            raise InvalidRule(attribute.name, item, "expected a finite literal value or None")
    if all(item is None for item in value):
        raise InvalidRule(attribute.name, value, "needs a value besides None (never TRUE)")


@attrs.frozen
class In(Condition):
    """``field IN (values)``, or ``NOT IN`` when ``negated``, with SQL's NULL rules.

    A ``None`` in ``values`` makes a non-matching ``IN`` UNKNOWN instead of FALSE, and a
    ``NOT IN`` never TRUE, exactly as in SQL.
    """

    field: str = attrs.field(validator=_check_field_name)
    values: tuple[Scalar | None, ...] = attrs.field(validator=_check_values, eq=_typed)
    negated: bool = attrs.field(default=False, validator=_instance_of(bool, "True or False"))


@attrs.frozen
class Between(Condition):
    """``low <= field <= high`` (inclusive, as SQL's ``BETWEEN``)."""

    field: str = attrs.field(validator=_check_field_name)
    low: Scalar = attrs.field(validator=_check_scalar, eq=_typed)
    high: Scalar = attrs.field(validator=_check_scalar, eq=_typed)


@attrs.frozen
class IsNull(Condition):
    """``field IS NULL`` (``IS NOT NULL`` when ``negated``); never UNKNOWN."""

    field: str = attrs.field(validator=_check_field_name)
    negated: bool = attrs.field(default=False, validator=_instance_of(bool, "True or False"))


def _check_text(_instance: object, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidRule(attribute.name, value, "expected a non-empty string")


@attrs.frozen
class TextMatch(Condition):
    """Case-insensitive ``contains`` / ``startswith`` / ``endswith`` on a text field."""

    field: str = attrs.field(validator=_check_field_name)
    op: TextOp = attrs.field(validator=_check_enum(TextOp))
    value: str = attrs.field(validator=_check_text)


def _normal_tag(value: object) -> str:
    if not isinstance(value, str):
        return value  # type: ignore[return-value]  # rejected by the validator
    try:
        (tag,) = normalise_tags([value])
    except ValidationError:
        return value
    return tag


def _check_tag(_instance: object, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    try:
        normalise_tags([value])
    except ValidationError as error:
        raise InvalidRule(attribute.name, value, error.reason) from None


def _check_tags_field(_instance: object, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if value not in ("tags", f"{_CONTACT}tags"):
        raise InvalidRule(attribute.name, value, "expected 'tags' or 'contact.tags'")


@attrs.frozen
class HasTag(Condition):
    """The entity carries ``tag`` (compared case-insensitively); never UNKNOWN.

    ``field`` is ``"tags"``, or ``"contact.tags"`` for the tags of a lead's, deal's or
    ticket's contact (see :func:`on_contact`).
    """

    tag: str = attrs.field(converter=_normal_tag, validator=_check_tag)
    field: str = attrs.field(default="tags", validator=_check_tags_field)


def _check_days(instance: "RelativeDate", attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if instance.window is DateWindow.THIS_MONTH:
        if value is not None:
            raise InvalidRule(attribute.name, value, "this_month takes no number of days")
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 36_500:
        raise InvalidRule(attribute.name, value, "expected a number of days from 0 to 36500")


@attrs.frozen
class RelativeDate(Condition):
    """A date or time field inside a window relative to now (see :class:`DateWindow`)."""

    field: str = attrs.field(validator=_check_field_name)
    window: DateWindow = attrs.field(validator=_check_enum(DateWindow))
    days: int | None = attrs.field(default=None, validator=_check_days)


@attrs.frozen
class InSegment(Condition):
    """The contact is a member of the segment ``segment_id`` (contact rules only)."""

    segment_id: UUID = attrs.field(validator=_instance_of(UUID, "a UUID"))


def _check_condition(_instance: object, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if value is not None and not isinstance(value, Condition):
        raise InvalidRule(attribute.name, value, "expected a condition")


def _check_within(_instance: object, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 36_500:
        raise InvalidRule(attribute.name, value, "expected a number of days from 1 to 36500")


def _check_measured(instance: "ActivityCondition", attribute: Any, value: Any) -> None:
    if instance.measure is Measure.COUNT:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _INT64:
            raise InvalidRule("value", value, "a count is compared with an int of 0 or more")
    elif not isinstance(value, Money):
        raise InvalidRule("value", value, "a sum is compared with Money (its currency is summed)")


@attrs.frozen
class ActivityCondition(Condition):
    """A measure of the contact's activities of one kind, compared with a value.

    Counts (or sums the amounts of) the activities of ``kind`` for which ``where`` is
    TRUE, that occurred within the last ``within_days`` days (all time when ``None``),
    and compares the result: "visited /pricing at least twice in 30 days" is
    ``count >= 2``. Sums add the amounts in the currency of ``value`` only. The result
    is never NULL, so the condition is never UNKNOWN.
    """

    kind: ActivityKind = attrs.field(validator=_check_enum(ActivityKind))
    measure: Measure = attrs.field(validator=_check_enum(Measure))
    op: Op = attrs.field(validator=_check_enum(Op))
    value: int | Money = attrs.field(validator=_check_measured, eq=_typed)
    where: Condition | None = attrs.field(default=None, validator=_check_condition)
    within_days: int | None = attrs.field(default=None, validator=_check_within)

    def children(self) -> tuple[Condition, ...]:
        return () if self.where is None else (self.where,)


class ReachCheck(StrEnum):
    """One check of :class:`Reachable`, in the order an audience reports exclusions."""

    CONTACT_POINT = "contact_point"
    """The contact has an address for the channel: an e-mail address for e-mail, a
    phone number for phone, SMS and messaging (post is not checked: crmkit stores no
    postal address)."""
    DO_NOT_CONTACT = "do_not_contact"
    """The contact is not marked ``do_not_contact`` (every channel) and no do-not-contact
    block is in force for the channel."""
    CONSENT = "consent"
    """The person decided for the channel and purpose (a pending request is no decision)."""
    WITHDRAWN = "withdrawn"
    """The latest decision is not a withdrawal."""
    EXPIRED = "expired"
    """The latest decision is not a grant that expired at or before now."""
    FREQUENCY_CAP = "frequency_cap"
    """Fewer than ``max_messages`` messages of the channel in the last ``within_days``
    days (no check when the node has no cap)."""


MESSAGE_KINDS: Final[Mapping[ConsentChannel, ActivityKind]] = MappingProxyType(
    {
        ConsentChannel.EMAIL: ActivityKind.EMAIL_SENT,
        ConsentChannel.SMS: ActivityKind.SMS_SENT,
        ConsentChannel.PHONE: ActivityKind.CALL,
        ConsentChannel.POST: ActivityKind.LETTER_SENT,
        ConsentChannel.MESSAGING: ActivityKind.MESSAGE_SENT,
    }
)
"""The activity that records a message sent on each channel: what a frequency cap counts."""


def _check_purpose(_instance: object, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if not isinstance(value, str) or not _PURPOSE.match(value):
        raise InvalidRule(
            attribute.name, value, "expected a key: lower-case letters, digits, '_', '.', '-'"
        )


def _check_cap(instance: "Reachable", attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000
    ):
        raise InvalidRule(attribute.name, value, "expected a number of messages from 1 to 1000000")


def _check_capped(instance: "Reachable", attribute: "attrs.Attribute[Any]", value: Any) -> None:
    _check_within(instance, attribute, value)
    if (value is None) != (instance.max_messages is None):
        raise InvalidRule(attribute.name, value, "a frequency cap needs max_messages and days")


def _to_checks(value: Any) -> Any:
    # Only ReachCheck members are converted: anything else (an unhashable item among
    # them) is left for the validator, which names the field.
    if isinstance(value, (list, tuple, set)) and all(isinstance(c, ReachCheck) for c in value):
        return frozenset(value)
    return value


def _check_checks(_instance: object, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if not isinstance(value, frozenset) or not all(isinstance(c, ReachCheck) for c in value):
        raise InvalidRule(attribute.name, value, "expected a set of ReachCheck members")


@attrs.frozen
class Reachable(Condition):
    """The contact may be sent a message on ``channel`` for ``purpose`` now.

    TRUE when every check of ``checks`` (all by default, see :class:`ReachCheck`)
    passes: the contact has an address for the channel; no do-not-contact block is in
    force for it; the latest consent decision for the channel and purpose (the
    ledger entry granted or withdrawn with the latest ``decided_at``; at the same time a
    withdrawal wins) is a grant that has not expired at now; and, with a frequency cap,
    fewer than ``max_messages`` messages (:data:`MESSAGE_KINDS`) of the channel occurred
    in the last ``within_days`` days. Otherwise FALSE: never UNKNOWN. Contact rules only.
    """

    channel: ConsentChannel = attrs.field(validator=_check_enum(ConsentChannel))
    purpose: str = attrs.field(validator=_check_purpose)
    max_messages: int | None = attrs.field(default=None, validator=_check_cap)
    within_days: int | None = attrs.field(default=None, validator=_check_capped)
    checks: frozenset[ReachCheck] = attrs.field(
        default=frozenset(ReachCheck), converter=_to_checks, validator=_check_checks
    )


def _check_items(_instance: object, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if not isinstance(value, tuple) or not value:
        raise InvalidRule(attribute.name, value, "expected a non-empty tuple of conditions")
    for item in value:
        if not isinstance(item, Condition):
            raise InvalidRule(attribute.name, item, "expected a condition")


@attrs.frozen
class And(Condition):
    """TRUE when every item is TRUE; FALSE when any is FALSE; else UNKNOWN."""

    items: tuple[Condition, ...] = attrs.field(validator=_check_items)

    def children(self) -> tuple[Condition, ...]:
        return self.items


@attrs.frozen
class Or(Condition):
    """TRUE when any item is TRUE; FALSE when every item is FALSE; else UNKNOWN."""

    items: tuple[Condition, ...] = attrs.field(validator=_check_items)

    def children(self) -> tuple[Condition, ...]:
        return self.items


@attrs.frozen
class Not(Condition):
    """TRUE when the item is FALSE, FALSE when it is TRUE, UNKNOWN when it is UNKNOWN."""

    item: Condition = attrs.field(validator=_instance_of(Condition, "a condition"))

    def children(self) -> tuple[Condition, ...]:
        return (self.item,)


# ---------------------------------------------------------------------------- rule


@attrs.frozen
class Rule:
    """A condition over one kind of entity, checked against that entity's fields.

    >>> from crmkit.models.rules import Compare, Op, Rule, RuleEntity
    >>> Rule(RuleEntity.CONTACT, Compare("country", Op.EQ, "de")).where.value
    'DE'
    """

    entity: RuleEntity = attrs.field(validator=_check_enum(RuleEntity))
    where: Condition = attrs.field(validator=_instance_of(Condition, "a condition"))

    def __attrs_post_init__(self) -> None:
        checker = _Checker(FIELDS[self.entity], "custom", self.entity, _Budget())
        object.__setattr__(self, "where", checker.check(self.where, 0, "where"))

    def walk(self) -> Iterator[Condition]:
        """Every condition of the rule, depth first."""
        pending = [self.where]
        while pending:
            node = pending.pop()
            yield node
            pending.extend(reversed(node.children()))


def _too_deep() -> str:
    return f"conditions nest deeper than {MAX_RULE_DEPTH} levels (MAX_RULE_DEPTH)"


def _too_many_conditions() -> str:
    return f"a rule holds at most {MAX_RULE_CONDITIONS} conditions (MAX_RULE_CONDITIONS)"


def _too_many_values() -> str:
    return f"the IN lists of a rule hold at most {MAX_IN_VALUES} values (MAX_IN_VALUES)"


@attrs.define
class _Budget:
    """What a rule has used of its bounds so far (conditions and IN values)."""

    conditions: int = 0
    values: int = 0

    def spend(self, node: Condition, path: str) -> None:
        self.conditions += 1
        if self.conditions > MAX_RULE_CONDITIONS:
            raise InvalidRule(path, self.conditions, _too_many_conditions())
        if isinstance(node, In):
            self.values += len(node.values)
            if self.values > MAX_IN_VALUES:
                raise InvalidRule(path, self.values, _too_many_values())


def check_bounds(rule: Rule, segment: "Callable[[UUID], Rule | None]") -> None:
    """Raise :class:`InvalidRule` if ``rule``, with the rules of the segments it names
    put in their place, exceeds :data:`MAX_RULE_DEPTH`, :data:`MAX_RULE_CONDITIONS`,
    :data:`MAX_IN_VALUES` or :data:`MAX_SEGMENT_DEPTH`; the error names the limit and
    the path (``where.items[2]``, and the segment ids for a chain).

    ``segment`` gives the rule of a segment by id (``None`` for a static or missing
    segment: the interpreters report missing segments and cycles themselves). Every
    interpreter calls this before it evaluates or compiles a rule; it walks without
    recursion and stops at the first bound exceeded, so no input costs more than the
    bounds allow.
    """
    budget = _Budget()
    # A path is built as text only for an error: (parent path, parent, index) until then.
    pending: list[tuple[Condition, int, Any, tuple[UUID, ...]]] = [(rule.where, 0, "where", ())]
    while pending:
        node, depth, path, chain = pending.pop()
        if depth > MAX_RULE_DEPTH:
            raise InvalidRule(_path(path), depth, _too_deep() + _counted(chain))
        budget.conditions += 1
        if budget.conditions > MAX_RULE_CONDITIONS:
            raise InvalidRule(_path(path), budget.conditions, _too_many_conditions())
        if isinstance(node, In):
            budget.values += len(node.values)
            if budget.values > MAX_IN_VALUES:
                raise InvalidRule(_path(path), budget.values, _too_many_values())
        if isinstance(node, InSegment) and node.segment_id not in chain:
            inner = segment(node.segment_id)
            if inner is None:
                continue
            nested = (*chain, node.segment_id)
            if len(nested) > MAX_SEGMENT_DEPTH:
                names = " > ".join(str(s) for s in nested)
                raise InvalidRule(
                    "segment_id",
                    node.segment_id,
                    f"segments nest deeper than {MAX_SEGMENT_DEPTH} (MAX_SEGMENT_DEPTH): {names}",
                )
            pending.append((inner.where, depth + 1, (path, None, -1), nested))
            continue
        children = node.children()
        if children:
            pending.extend(
                (child, depth + 1, (path, node, index), chain)
                for index, child in enumerate(children)
            )


def _path(path: Any) -> str:
    """The text of a path kept as ``(parent path, parent, index)`` links."""
    steps: list[str] = []
    while not isinstance(path, str):
        path, parent, index = path
        steps.append("->segment.where" if parent is None else _step(parent, index))
    return path + "".join(reversed(steps))


def _step(node: Condition, index: int) -> str:
    if isinstance(node, And | Or):
        return f".items[{index}]"
    return ".where" if isinstance(node, ActivityCondition) else ".item"


def _counted(chain: tuple[UUID, ...]) -> str:
    return f", counting the rules of segments {', '.join(map(str, chain))}" if chain else ""


class _Checker:
    """Checks names and literal types; returns the condition with normalised literals."""

    def __init__(
        self,
        fields: Mapping[str, FieldSpec],
        prefix: str,
        entity: RuleEntity | None,
        budget: _Budget,
    ) -> None:
        self.fields = fields
        self.prefix = prefix
        self.entity = entity
        self.budget = budget

    def spec(self, name: str) -> FieldSpec:
        return field_spec(name, self.fields, self.prefix)

    def contact_leaf(self, node: Condition, depth: int, path: str) -> Condition:
        """A condition on the contact's fields, checked as a contact rule would be."""
        inner = contact_condition(node)
        assert inner is not None
        checker = _Checker(FIELDS[RuleEntity.CONTACT], "custom", RuleEntity.CONTACT, self.budget)
        self.budget.conditions -= 1  # counted once, as the node it is
        try:
            checked = checker.check(inner, depth, path)
        except InvalidRule as error:
            raise error.within("contact") if not error.field.startswith(path) else error from None
        return on_contact(checked)

    def check(self, node: Condition, depth: int, path: str) -> Condition:  # noqa: PLR0912, PLR0915
        if depth > MAX_RULE_DEPTH:
            raise InvalidRule(path, depth, _too_deep())
        if isinstance(node, Condition):
            self.budget.spend(node, path)
        if self.entity in CONTACT_FIELDS_OF and _reads_contact(node):
            return self.contact_leaf(node, depth, path)
        match node:
            case And(items=items):
                return And(
                    tuple(
                        self.check(i, depth + 1, f"{path}.items[{n}]") for n, i in enumerate(items)
                    )
                )
            case Or(items=items):
                return Or(
                    tuple(
                        self.check(i, depth + 1, f"{path}.items[{n}]") for n, i in enumerate(items)
                    )
                )
            case Not(item=item):
                return Not(self.check(item, depth + 1, f"{path}.item"))
            case Compare(field=name, op=op, value=value):
                spec = self.spec(name)
                if op in _ORDERING and not spec.kind.ordered:
                    raise InvalidRule(name, value, f"{spec.kind} fields cannot be ordered")
                if spec.kind in (FieldType.BOOL, FieldType.UUID) and op not in (Op.EQ, Op.NE):
                    raise InvalidRule(name, value, f"{spec.kind} fields compare with eq or ne")
                if spec.kind is FieldType.JSON and op in _ORDERING and not _is_number(value):
                    raise InvalidRule(name, value, "custom fields are ordered by numbers only")
                return Compare(name, op, _literal(spec, value))
            case In(field=name, values=values, negated=negated):
                spec = self.spec(name)
                if spec.kind in (FieldType.TAGS, FieldType.MONEY):
                    raise InvalidRule(name, values, f"{spec.kind} fields have no IN")
                normal = tuple(None if v is None else _literal(spec, v) for v in values)
                return In(name, normal, negated)
            case Between(field=name, low=low, high=high):
                spec = self.spec(name)
                if not spec.kind.ordered or (
                    spec.kind is FieldType.JSON and not (_is_number(low) and _is_number(high))
                ):
                    raise InvalidRule(name, (low, high), f"{spec.kind} fields have no BETWEEN")
                low, high = _literal(spec, low), _literal(spec, high)
                money = isinstance(low, Money) and isinstance(high, Money)
                if money and low.currency != high.currency:  # type: ignore[union-attr]
                    raise InvalidRule(name, (low, high), "low and high differ in currency")
                if _greater(low, high):
                    raise InvalidRule(name, (low, high), "low is greater than high")
                return Between(name, low, high)
            case IsNull(field=name):
                if self.spec(name).kind is FieldType.TAGS:
                    raise InvalidRule(name, node, "tags are never missing: use has_tag()")
                return node
            case TextMatch(field=name, value=value):
                spec = self.spec(name)
                _check_text_literal(name, value)
                if not spec.kind.textual:
                    raise InvalidRule(name, value, f"{spec.kind} fields have no text matches")
                return node
            case HasTag(tag=tag, field=name):
                if name != "tags":
                    raise InvalidRule(name, tag, "only lead, deal and ticket rules have a contact")
                if "tags" not in self.fields:
                    raise InvalidRule("tags", tag, f"{self.entity or 'activity'} has no tags")
                return node
            case RelativeDate(field=name, days=days):
                spec = self.spec(name)
                if spec.kind not in (FieldType.DATETIME, FieldType.DATE):
                    raise InvalidRule(name, days, f"{spec.kind} fields have no date windows")
                return node
            case InSegment(segment_id=segment_id):
                if self.entity is not RuleEntity.CONTACT:
                    raise InvalidRule("segment_id", segment_id, "only contacts are in segments")
                return node
            case Reachable(channel=channel):
                if self.entity is not RuleEntity.CONTACT:
                    raise InvalidRule("channel", channel, "only contacts are reachable")
                return node
            case ActivityCondition(where=where):
                if self.entity is None:
                    raise InvalidRule("kind", node.kind, "activity conditions do not nest")
                if where is None:
                    return node
                inner = _Checker(ACTIVITY_FIELDS, "properties", None, self.budget).check(
                    where, depth + 1, f"{path}.where"
                )
                return attrs.evolve(node, where=inner)
        raise InvalidRule("where", node, "not a condition of the rule language")


_ORDERED: Final = frozenset(
    {
        FieldType.NUMBER,
        FieldType.DECIMAL,
        FieldType.DATETIME,
        FieldType.DATE,
        FieldType.MONEY,
        FieldType.JSON,
    }
)
_TEXTUAL: Final = frozenset({FieldType.TEXT, FieldType.EMAIL, FieldType.PHONE, FieldType.JSON})
_INT64: Final = 2**63


def _check_text_literal(name: str, value: str) -> None:
    if "\x00" in value or has_surrogate(value):
        raise InvalidRule(name, value, "text cannot contain NUL characters or lone surrogates")


def _check_int64(name: str, value: object) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
        raise InvalidRule(name, value, "integers must fit in 64 bits")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _greater(low: object, high: object) -> bool:
    try:
        return bool(low > high)  # type: ignore[operator]
    except (TypeError, ValidationError):
        return False


def _literal(spec: FieldSpec, value: object) -> Scalar:  # noqa: PLR0912, PLR0915
    """``value`` as the literal type of the field, or :class:`InvalidRule`."""
    name = spec.name
    match spec.kind:
        case FieldType.TEXT:
            if isinstance(value, str):
                _check_text_literal(name, value)
                return value
            raise InvalidRule(name, value, "a text field compares with a string")
        case FieldType.EMAIL | FieldType.PHONE:
            parse = EmailAddress if spec.kind is FieldType.EMAIL else PhoneNumber
            try:
                return str(parse(value))  # type: ignore[arg-type]
            except ValidationError as error:
                raise InvalidRule(name, value, error.reason) from None
        case FieldType.COUNTRY | FieldType.LANGUAGE:
            code = CountryCode if spec.kind is FieldType.COUNTRY else LanguageCode
            try:
                return str(code(value))  # type: ignore[arg-type]
            except ValidationError as error:
                raise InvalidRule(name, value, error.reason) from None
        case FieldType.ENUM:
            assert spec.enum is not None
            allowed = {str(m.value): str(m.value) for m in spec.enum}
            if isinstance(value, Enum):
                value = value.value
            if isinstance(value, str) and value in allowed:
                return allowed[value]
            raise InvalidRule(name, value, f"expected one of: {', '.join(allowed)}")
        case FieldType.NUMBER:
            if _is_number(value):
                _check_int64(name, value)
                # An int or float field: a Decimal literal is compared as the float it is.
                return float(value) if isinstance(value, Decimal) else value  # type: ignore[return-value]
            raise InvalidRule(name, value, "a number field compares with an int, float or Decimal")
        case FieldType.DECIMAL:
            if _is_number(value):
                # A float literal means the decimal it is written as: 0.1, not 0.1000...0555.
                return value if isinstance(value, Decimal) else Decimal(repr(value))
            raise InvalidRule(name, value, "a decimal field compares with a Decimal, int or float")
        case FieldType.BOOL:
            if isinstance(value, bool):
                return value
            raise InvalidRule(name, value, "a yes/no field compares with True or False")
        case FieldType.DATETIME:
            try:
                return ensure_utc(value)
            except ValidationError as error:
                raise InvalidRule(name, value, error.reason) from None
        case FieldType.DATE:
            if isinstance(value, date) and not isinstance(value, datetime):
                return value
            raise InvalidRule(name, value, "a date field compares with a date")
        case FieldType.UUID:
            if isinstance(value, UUID):
                return value
            raise InvalidRule(name, value, "an id field compares with a UUID")
        case FieldType.MONEY:
            if isinstance(value, Money):
                return value
            raise InvalidRule(name, value, "a money field compares with Money")
        case FieldType.JSON:
            if isinstance(value, str | bool) or _is_number(value):
                if isinstance(value, Decimal):
                    raise InvalidRule(name, value, "custom fields hold floats, not Decimals")
                if isinstance(value, str):
                    _check_text_literal(name, value)
                _check_int64(name, value)
                return value  # type: ignore[return-value]
            raise InvalidRule(name, value, "a custom field compares with str, number or bool")
        case FieldType.TAGS:
            raise InvalidRule(name, value, "tags are matched with has_tag(), not compared")
    raise AssertionError(spec.kind)  # pragma: no cover


# ---------------------------------------------------------------------------- contacts

CONTACT_FIELDS_OF: Final = frozenset({RuleEntity.LEAD, RuleEntity.DEAL, RuleEntity.TICKET})
"""The entities whose rules may name their contact's fields: ``contact.country``,
``contact.custom.plan``, ``contact.tags`` (in :class:`HasTag`), every field of
:data:`FIELDS` ``[contact]``. The contact is the one ``contact_id`` names, in the same
tenant; an entity without one (a deal without ``contact_id``, or whose contact is not
stored) has a contact whose every field is missing, with no tags and no custom fields:
``contact.country == "DE"`` is UNKNOWN for it, ``contact.country`` ``is_null()`` TRUE."""

_FIELD_LEAVES: Final = (Compare, In, Between, IsNull, TextMatch, RelativeDate)


def _reads_contact(node: Condition) -> bool:
    """Whether ``node`` is a leaf naming a field of the contact."""
    if isinstance(node, HasTag):
        return node.field != "tags"
    return isinstance(node, _FIELD_LEAVES) and node.field.startswith(_CONTACT)


def contact_condition(node: Condition) -> Condition | None:
    """The condition over the contact that ``node`` is, when every leaf of ``node``
    names a field of the contact (``contact.country``), with ``contact.`` taken off the
    names; ``None`` when some leaf reads anything else (or ``node`` is an ``in segment``
    or activity condition). The inverse of :func:`on_contact`."""
    match node:
        case And(items=items) | Or(items=items):
            inner = []
            for item in items:
                found = contact_condition(item)
                if found is None:
                    return None  # stops at the first condition on anything else
                inner.append(found)
            kind = And if isinstance(node, And) else Or
            return kind(tuple(inner))
        case Not(item=item):
            found = contact_condition(item)
            return None if found is None else Not(found)
        case HasTag(field=name) if name != "tags":
            return attrs.evolve(node, field="tags")
        case _ if isinstance(node, _FIELD_LEAVES) and node.field.startswith(_CONTACT):
            return attrs.evolve(node, field=node.field.removeprefix(_CONTACT))
    return None


def on_contact(condition: Condition) -> Condition:
    """``condition``, written over a contact, as a condition of a lead, deal or ticket
    rule on that entity's contact: every field name gets ``contact.`` in front.

    >>> on_contact(Compare("country", Op.EQ, "DE")).field
    'contact.country'

    The condition may hold field conditions, tags and ``&``, ``|``, ``~``; an activity or
    ``in segment`` condition raises :class:`~crmkit.errors.InvalidRule` (activity
    conditions of a lead rule already read its contact's activities).
    """
    match condition:
        case And(items=items) | Or(items=items):
            kind = And if isinstance(condition, And) else Or
            return kind(tuple(on_contact(item) for item in items))
        case Not(item=item):
            return Not(on_contact(item))
        case HasTag(field="tags"):
            return attrs.evolve(condition, field=f"{_CONTACT}tags")
        case _ if isinstance(condition, _FIELD_LEAVES) and not condition.field.startswith(_CONTACT):
            return attrs.evolve(condition, field=_CONTACT + condition.field)
    raise InvalidRule("where", condition, "only field and tag conditions apply to the contact")
