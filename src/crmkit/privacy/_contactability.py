"""Do-not-contact blocks and audiences that leave out whoever may not be contacted.

An audience is a segment for one channel and purpose: the contacts of the segment that
are reachable (:class:`~crmkit.models.rules.Reachable`), and, for every contact left
out, the first check it failed, in the order of
:class:`~crmkit.models.rules.ReachCheck`. The store answers every part with counting
queries (:func:`exclusion_steps`); no contact is loaded to explain an exclusion.
"""

from collections.abc import Iterable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final
from uuid import UUID, uuid4

import attrs

from crmkit.clock import ensure_utc
from crmkit.errors import ValidationError
from crmkit.models import ConsentChannel, Contact, DoNotContact, DoNotContactReason
from crmkit.models._fields import expect, expect_items, is_key, member_of
from crmkit.models.rules import And, Condition, Reachable, ReachCheck, Rule, RuleEntity
from crmkit.privacy._consent import check_channel

__all__ = ["Audience", "block_entry", "exclusion_steps"]

_ORDER: Final = tuple(ReachCheck)


def block_entry(
    contact: Contact,
    channel: ConsentChannel,
    reason: DoNotContactReason,
    *,
    source: str,
    at: datetime,
    lifted: bool = False,
) -> DoNotContact:
    """A do-not-contact ledger entry for ``contact`` on ``channel``, decided at ``at``:
    a block for ``reason``, or with ``lifted`` the end of the blocks before it (its
    reason says why the block is lifted: ``asked`` when the person asked for it)."""
    expect(contact, Contact, "contact", "a Contact")
    channel = check_channel(channel)
    reason = member_of(DoNotContactReason, reason, "reason")
    at = ensure_utc(at, "at")
    return DoNotContact(
        id=uuid4(),
        version=1,
        created_at=at,
        updated_at=at,
        contact_id=contact.id,
        channel=channel,
        reason=reason,
        source=source,
        decided_at=at,
        lifted=lifted,
    )


def exclusion_steps(where: Condition, reachable: Reachable) -> list[tuple[ReachCheck, Rule]]:
    """For each check of ``reachable`` in order, the contact rule "``where`` and every
    check so far passes". The members of one step that the next step loses failed its
    check first: counting each step tells how many contacts each check excluded.

    >>> from crmkit.models.rules import IsNull
    >>> steps = exclusion_steps(IsNull("email", negated=True),
    ...                         Reachable(ConsentChannel.EMAIL, "newsletter"))
    >>> [check.value for check, _ in steps][:3]
    ['contact_point', 'do_not_contact', 'consent']
    """
    expect(where, Condition, "where", "a condition")
    expect(reachable, Reachable, "reachable", "a Reachable condition")
    steps = []
    checked: set[ReachCheck] = set()
    for check in _ORDER:
        if check not in reachable.checks:
            continue
        if check is ReachCheck.FREQUENCY_CAP and reachable.max_messages is None:
            continue
        checked.add(check)
        step = attrs.evolve(reachable, checks=frozenset(checked))
        steps.append((check, Rule(RuleEntity.CONTACT, And((where, step)))))
    return steps


def _frozen(counts: Mapping[ReachCheck, int]) -> Mapping[ReachCheck, int]:
    if not isinstance(counts, Mapping):
        raise ValidationError("excluded", counts, "expected counts by ReachCheck")
    for check, number in counts.items():
        expect(check, ReachCheck, "excluded", "ReachCheck keys")
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise ValidationError(f"excluded.{check.value}", number, "expected a count")
    return MappingProxyType(dict(counts))


def _key(_: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    try:
        is_key(value)
    except ValidationError as error:
        raise error.within(attribute.name) from None


def _ids(ids: Iterable[UUID]) -> tuple[UUID, ...]:
    return tuple(expect_items(ids, UUID, "contact_ids", "contact ids"))


def _count(_: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(attribute.name, value, "expected a count")


@attrs.frozen
class Audience:
    """The contacts of a segment that may be sent a message on ``channel`` for
    ``purpose`` at ``at``, and how many of the segment were left out, by the first
    check they failed (every check is listed, with 0 when it excluded nobody).

    ``contact_ids`` are in id order; ``segment_size`` is ``len(contact_ids)`` plus
    every exclusion.
    """

    channel: ConsentChannel = attrs.field(converter=check_channel)
    purpose: str = attrs.field(validator=_key)
    at: datetime = attrs.field(converter=ensure_utc)
    contact_ids: tuple[UUID, ...] = attrs.field(converter=_ids)
    segment_size: int = attrs.field(validator=_count)
    excluded: Mapping[ReachCheck, int] = attrs.field(converter=_frozen)

    @property
    def size(self) -> int:
        """How many contacts the audience holds."""
        return len(self.contact_ids)

    @property
    def excluded_total(self) -> int:
        """How many contacts of the segment were left out."""
        return sum(self.excluded.values())
