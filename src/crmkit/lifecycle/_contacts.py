"""The contact lifecycle: subscriber -> lead -> mql -> sql -> opportunity -> customer ->
evangelist, forward only unless reset on purpose.

Domain events advance a contact (:class:`LifecycleEvent`); an event that would not move
the contact forward changes nothing and returns ``None`` (a customer who fills in a
form stays a customer). Contacts in stage ``other`` (partners, suppliers, colleagues)
are outside the funnel: events leave them there; :func:`move_contact` or
:func:`reset_contact` moves them.
"""

from datetime import datetime
from enum import StrEnum
from typing import Final

import attrs

from crmkit.clock import FixedClock, ensure_utc
from crmkit.errors import TransitionNotAllowed, ValidationError
from crmkit.lifecycle._moved import Moved, Unmet
from crmkit.models import Contact, LifecycleStage, StageChange, SubjectKind
from crmkit.models._fields import member_of

__all__ = [
    "FUNNEL",
    "LifecycleEvent",
    "advance_contact",
    "can_move_contact",
    "move_contact",
    "reset_contact",
]

FUNNEL: Final = (
    LifecycleStage.SUBSCRIBER,
    LifecycleStage.LEAD,
    LifecycleStage.MQL,
    LifecycleStage.SQL,
    LifecycleStage.OPPORTUNITY,
    LifecycleStage.CUSTOMER,
    LifecycleStage.EVANGELIST,
)
"""The lifecycle stages in funnel order (``other`` is outside it)."""

_RANK: Final = {stage: rank for rank, stage in enumerate(FUNNEL)}


class LifecycleEvent(StrEnum):
    """Domain events that advance a contact, and the stage each one reaches."""

    LEAD_CAPTURED = "lead_captured"
    MARKETING_QUALIFIED = "marketing_qualified"
    SALES_ACCEPTED = "sales_accepted"
    DEAL_OPENED = "deal_opened"
    DEAL_WON = "deal_won"
    REFERRAL = "referral"
    PROMOTER_FEEDBACK = "promoter_feedback"

    @property
    def stage(self) -> LifecycleStage:
        """The lifecycle stage the event brings a contact to."""
        return _EVENT_STAGE[self]


_EVENT_STAGE: Final = {
    LifecycleEvent.LEAD_CAPTURED: LifecycleStage.LEAD,
    LifecycleEvent.MARKETING_QUALIFIED: LifecycleStage.MQL,
    LifecycleEvent.SALES_ACCEPTED: LifecycleStage.SQL,
    LifecycleEvent.DEAL_OPENED: LifecycleStage.OPPORTUNITY,
    LifecycleEvent.DEAL_WON: LifecycleStage.CUSTOMER,
    LifecycleEvent.REFERRAL: LifecycleStage.EVANGELIST,
    LifecycleEvent.PROMOTER_FEEDBACK: LifecycleStage.EVANGELIST,
}


def _stage(value: object) -> LifecycleStage:
    return member_of(LifecycleStage, value, "to")


def _check_contact(contact: object) -> Contact:
    if not isinstance(contact, Contact):
        raise ValidationError("contact", contact, "expected a Contact")
    return contact


def can_move_contact(contact: Contact, to: LifecycleStage) -> tuple[Unmet, ...]:
    """Why ``contact`` cannot move forward to ``to`` (empty when it can)."""
    current = _check_contact(contact).lifecycle_stage
    to = _stage(to)
    if current is to:
        return (Unmet("same_stage", f"is already in stage {to.value!r}"),)
    if to is LifecycleStage.OTHER or current is LifecycleStage.OTHER:
        return (Unmet("transition", "moves into or out of 'other' need reset_contact"),)
    if _RANK[to] < _RANK[current]:
        return (
            Unmet(
                "transition",
                f"the lifecycle moves forward only ({current.value!r} -> {to.value!r}); "
                "use reset_contact to go back",
            ),
        )
    return ()


def _moved(
    contact: Contact, to: LifecycleStage, by: str | None, reason: str | None, at: object
) -> Moved[Contact]:
    now = ensure_utc(at, "at")
    change = StageChange.new(
        subject=SubjectKind.CONTACT,
        subject_id=contact.id,
        from_stage=contact.lifecycle_stage.value,
        to_stage=to.value,
        at=now,
        by=by,
        reason=reason,
        clock=FixedClock(now),
    )
    return Moved(attrs.evolve(contact, lifecycle_stage=to, updated_at=now), change)


def move_contact(
    contact: Contact,
    to: LifecycleStage,
    *,
    by: str | None = None,
    reason: str | None = None,
    at: datetime,
) -> Moved[Contact]:
    """Move ``contact`` forward to ``to``, or raise ``TransitionNotAllowed``."""
    to = _stage(to)
    unmet = can_move_contact(contact, to)
    if unmet:
        raise TransitionNotAllowed(
            "contact",
            contact.lifecycle_stage.value,
            to.value,
            [u.message for u in unmet],
            codes=[u.code for u in unmet],
        )
    return _moved(contact, to, by, reason, at)


def reset_contact(
    contact: Contact,
    to: LifecycleStage,
    *,
    by: str,
    reason: str,
    at: datetime,
) -> Moved[Contact]:
    """Put ``contact`` in any stage, backwards too; who and why are required."""
    contact = _check_contact(contact)
    to = _stage(to)
    for name, value in (("by", by), ("reason", reason)):
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(name, value, "a reset needs who resets and why")
    if contact.lifecycle_stage is to:
        raise TransitionNotAllowed(
            "contact",
            to.value,
            to.value,
            [f"is already in stage {to.value!r}"],
            codes=["same_stage"],
        )
    return _moved(contact, to, by, reason, at)


def advance_contact(
    contact: Contact,
    event: LifecycleEvent,
    *,
    by: str | None = None,
    at: datetime,
) -> Moved[Contact] | None:
    """Advance ``contact`` for a domain event; ``None`` when it is already as far or
    further, or outside the funnel (``other``)."""
    contact = _check_contact(contact)
    event = member_of(LifecycleEvent, event, "event")
    current, to = contact.lifecycle_stage, event.stage
    if current is LifecycleStage.OTHER or _RANK[to] <= _RANK[current]:
        return None
    return _moved(contact, to, by, event.value.replace("_", " "), at)
