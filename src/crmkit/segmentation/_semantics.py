"""What each atom of the rule language means, in SQL's three-valued logic.

``None`` stands for UNKNOWN. Both the reference interpreter (:mod:`._evaluate`) and the
compiler (:mod:`._compile`) use these definitions, so that they cannot drift apart;
the storage adapter's SQL compiler follows the same rules.

* A missing field (``None``, a missing custom key, JSON ``null``) makes a comparison
  UNKNOWN.
* A custom field holding another JSON type than the literal (text vs number vs
  true/false) makes the comparison UNKNOWN, as if it were missing.
* Money compares only within one currency; another currency is UNKNOWN.
* ``IN`` is the ``OR`` of equalities and ``NOT IN`` the ``AND`` of inequalities, so a
  ``None`` in the list behaves as in SQL. ``BETWEEN`` is ``low <= x AND x <= high``.
* Text matches compare ``str.casefold()`` of both sides; tags likewise.
* Activities count up to ``now`` only, and from ``within_days`` days before it when given.
* ``reachable`` is TRUE or FALSE, never UNKNOWN (:func:`reachable`).
"""

import calendar
import operator
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, Final
from uuid import UUID

import attrs

from crmkit.clock import ensure_utc
from crmkit.errors import ValidationError
from crmkit.models import (
    Activity,
    Consent,
    ConsentStatus,
    Contact,
    DoNotContact,
    Segment,
    contact_point,
    covers_address,
    current_block,
    current_consent,
    is_expired,
)
from crmkit.models.rules import (
    MESSAGE_KINDS,
    DateWindow,
    FieldSpec,
    FieldType,
    Op,
    Reachable,
    ReachCheck,
    TextOp,
)

__all__ = [
    "MISSING_CONTACT",
    "OPS",
    "Context",
    "activity_window",
    "comparable",
    "compare",
    "contact_of",
    "field_value",
    "in_window",
    "reachable",
    "text_matches",
    "window_bounds",
]

OPS: Final[Mapping[Op, Callable[[Any, Any], bool]]] = {
    Op.EQ: operator.eq,
    Op.NE: operator.ne,
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.GT: operator.gt,
    Op.GE: operator.ge,
}


@attrs.frozen
class Context:
    """What a rule is evaluated against, besides the entity itself.

    ``now`` (aware; kept in UTC) fixes relative dates, calendar months and activity
    windows for the whole evaluation;
    ``activities`` maps a contact id to that contact's activities; ``segments`` holds
    the segments that ``in segment`` conditions may name; ``contacts`` maps a contact id
    to the contact, for the ``contact.<field>`` conditions of lead, deal and ticket rules
    (a contact missing from it has every field missing, as if it were not stored);
    ``consents`` and ``blocks`` map a contact id to its consent and do-not-contact
    ledger entries, for ``reachable`` conditions.
    """

    now: datetime = attrs.field(converter=ensure_utc)
    activities: Mapping[UUID, Sequence[Activity]] = attrs.field(factory=dict)
    segments: Mapping[UUID, Segment] = attrs.field(factory=dict)
    contacts: Mapping[UUID, Contact] = attrs.field(factory=dict)
    consents: Mapping[UUID, Sequence[Consent]] = attrs.field(factory=dict)
    blocks: Mapping[UUID, Sequence[DoNotContact]] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        for name in ("activities", "segments", "contacts", "consents", "blocks"):
            if not isinstance(getattr(self, name), Mapping):
                raise ValidationError(name, getattr(self, name), "expected a mapping by id")


MISSING_CONTACT: Final[Any] = SimpleNamespace(
    **{a.name: None for a in attrs.fields(Contact)} | {"tags": frozenset(), "custom": {}}
)
"""The contact of an entity without one: every field missing, no tags, no custom fields."""


def contact_of(context: Context, entity: Any) -> Any:
    """The contact of a lead, deal or ticket, or :data:`MISSING_CONTACT`."""
    contact_id = entity.contact_id
    if contact_id is None:
        return MISSING_CONTACT
    return context.contacts.get(contact_id, MISSING_CONTACT)


def field_value(spec: FieldSpec, obj: object) -> Any:
    """The value of ``spec`` on ``obj``; ``None`` when missing."""
    value = getattr(obj, spec.attribute)
    key = spec.key
    if key is None:
        return value
    return value.get(key)


def _json_kind(value: object) -> type | None:
    if isinstance(value, bool):
        return bool
    if isinstance(value, int | float | Decimal):
        return float
    if isinstance(value, str):
        return str
    return None


def comparable(kind: FieldType, value: object, literal: object) -> bool:
    """Whether a non-missing ``value`` can be compared with ``literal`` at all."""
    if kind is FieldType.JSON:
        return _json_kind(value) is _json_kind(literal)
    if kind is FieldType.MONEY:
        return bool(value.currency == literal.currency)  # type: ignore[attr-defined]
    return True


def _plain(kind: FieldType, value: Any) -> Any:
    return value.amount if kind is FieldType.MONEY else value


def compare(kind: FieldType, op: Op, value: object, literal: object) -> bool | None:
    """``value <op> literal`` in three-valued logic."""
    if value is None or literal is None or not comparable(kind, value, literal):
        return None
    return OPS[op](_plain(kind, value), _plain(kind, literal))


def text_matches(op: TextOp, value: object, literal: str) -> bool | None:
    """Case-insensitive ``contains`` / ``startswith`` / ``endswith``."""
    if not isinstance(value, str):
        return None
    text, part = value.casefold(), literal.casefold()
    if op is TextOp.CONTAINS:
        return part in text
    if op is TextOp.STARTSWITH:
        return text.startswith(part)
    return text.endswith(part)


_FIRST: Final = datetime.min.replace(tzinfo=UTC)
_LAST: Final = datetime.max.replace(tzinfo=UTC)


def window_bounds(
    window: DateWindow, days: int | None, now: datetime, *, dates: bool
) -> tuple[Any, Any, bool]:
    """``(low, high, high_inclusive)`` of a date window; ``None`` is an open end."""
    if window is DateWindow.THIS_MONTH:
        first = now.date().replace(day=1)
        start = first if dates else datetime(first.year, first.month, 1, tzinfo=now.tzinfo)
        if first.year == date.max.year and first.month == 12:  # no following month
            return start, date.max if dates else _LAST, True
        last_day = calendar.monthrange(first.year, first.month)[1]
        following = first + timedelta(days=last_day)
        if dates:
            return first, following, False
        end = datetime(following.year, following.month, 1, tzinfo=now.tzinfo)
        return start, end, False
    assert days is not None
    anchor: date | datetime = now.date() if dates else now
    try:
        cutoff = anchor - timedelta(days=days)
    except OverflowError:  # before year 1: every value is later, as it is than the first
        cutoff = date.min if dates else _FIRST
    if window is DateWindow.WITHIN_LAST:
        return cutoff, anchor, True
    return None, cutoff, False


def in_window(value: Any, bounds: tuple[Any, Any, bool]) -> bool | None:
    """Whether ``value`` lies in the window; UNKNOWN when it is missing."""
    if value is None:
        return None
    low, high, high_inclusive = bounds
    if low is not None and value < low:
        return False
    return bool(value <= high) if high_inclusive else bool(value < high)


def activity_window(within_days: int | None, now: datetime) -> tuple[Any, Any, bool]:
    """When an activity counts: up to ``now`` (never later, so that evaluating at a past
    ``now`` replays what was known then), and from ``within_days`` days before it."""
    if within_days is None:
        return None, now, True
    return window_bounds(DateWindow.WITHIN_LAST, within_days, now, dates=False)


def failed_checks(node: Reachable, contact: Contact, context: Context) -> list[ReachCheck]:
    """The checks of ``node`` that ``contact`` fails at ``context.now``, in the order of
    :class:`~crmkit.models.rules.ReachCheck`.

    The consent checks read the decision in force
    (:func:`~crmkit.models.current_consent`): ``CONSENT`` fails without one, or when
    it is a grant for another address than the contact's current one
    (:func:`~crmkit.models.covers_address`),
    ``WITHDRAWN`` when it is a withdrawal, ``EXPIRED`` when it is a grant expired at or
    before now; the frequency cap counts the channel's messages (``MESSAGE_KINDS``) in
    the activity window of ``within_days`` (see :func:`activity_window`).
    """
    failed: list[ReachCheck] = []
    checks = node.checks
    if ReachCheck.CONTACT_POINT in checks and contact_point(contact, node.channel) is None:
        failed.append(ReachCheck.CONTACT_POINT)
    blocks = context.blocks.get(contact.id, ())
    blocked = contact.do_not_contact or current_block(blocks, node.channel) is not None
    if ReachCheck.DO_NOT_CONTACT in checks and blocked:
        failed.append(ReachCheck.DO_NOT_CONTACT)
    decision = current_consent(context.consents.get(contact.id, ()), node.channel, node.purpose)
    if (
        decision is not None
        and decision.status is ConsentStatus.GRANTED
        and not covers_address(decision, contact)
    ):
        decision = None  # a grant for another address is no consent for this one
    if ReachCheck.CONSENT in checks and decision is None:
        failed.append(ReachCheck.CONSENT)
    withdrawn = decision is not None and decision.status is ConsentStatus.WITHDRAWN
    if ReachCheck.WITHDRAWN in checks and withdrawn:
        failed.append(ReachCheck.WITHDRAWN)
    expired = decision is not None and not withdrawn and is_expired(decision, context.now)
    if ReachCheck.EXPIRED in checks and expired:
        failed.append(ReachCheck.EXPIRED)
    if ReachCheck.FREQUENCY_CAP in checks and node.max_messages is not None:
        kind = MESSAGE_KINDS[node.channel]
        window = activity_window(node.within_days, context.now)
        sent = sum(
            1
            for a in context.activities.get(contact.id, ())
            if a.kind is kind and in_window(a.occurred_at, window)
        )
        if sent >= node.max_messages:
            failed.append(ReachCheck.FREQUENCY_CAP)
    return failed


def reachable(node: Reachable, contact: Contact, context: Context) -> bool:
    """Whether ``contact`` passes every check of ``node`` (see :func:`failed_checks`)."""
    return not failed_checks(node, contact, context)
