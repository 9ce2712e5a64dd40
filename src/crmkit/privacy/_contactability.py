"""Do-not-contact blocks and audiences that leave out whoever may not be contacted.

An audience is a segment for one channel and purpose: the contacts of the segment that
are reachable (:class:`~crmkit.models.rules.Reachable`), and, for every contact left
out, the first check it failed, in the order of
:class:`~crmkit.models.rules.ReachCheck`. The store answers every part with counting
queries (:func:`exclusion_steps`); no contact is loaded to explain an exclusion.
"""

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Final
from uuid import UUID, uuid4

import attrs

from crmkit.clock import ensure_utc
from crmkit.errors import ValidationError
from crmkit.models import ConsentChannel, Contact, DoNotContact, DoNotContactReason
from crmkit.models.rules import And, Condition, Reachable, ReachCheck, Rule, RuleEntity

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
    if not isinstance(reason, DoNotContactReason):
        raise ValidationError("reason", reason, "expected a DoNotContactReason")
    at = ensure_utc(at)
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
    return MappingProxyType(dict(counts))


@attrs.frozen
class Audience:
    """The contacts of a segment that may be sent a message on ``channel`` for
    ``purpose`` at ``at``, and how many of the segment were left out, by the first
    check they failed (every check is listed, with 0 when it excluded nobody).

    ``contact_ids`` are in id order; ``segment_size`` is ``len(contact_ids)`` plus
    every exclusion.
    """

    channel: ConsentChannel
    purpose: str
    at: datetime
    contact_ids: tuple[UUID, ...]
    segment_size: int
    excluded: Mapping[ReachCheck, int] = attrs.field(converter=_frozen)

    @property
    def size(self) -> int:
        """How many contacts the audience holds."""
        return len(self.contact_ids)

    @property
    def excluded_total(self) -> int:
        """How many contacts of the segment were left out."""
        return sum(self.excluded.values())
