"""The event types automation rules can be triggered by, and the entity each is about."""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from crmkit.errors import UnknownEventType

__all__ = ["EVENT_SUBJECTS", "check_event_type"]

EVENT_SUBJECTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "contact.created": "contact",
        "contact.stage_changed": "contact",
        "contact.merged": "contact",
        "person.erased": "contact",
        "consent.changed": "contact",
        "activity.recorded": "contact",
        "lead.captured": "lead",
        "lead.converted": "lead",
        "deal.moved": "deal",
        "deal.won": "deal",
        "deal.lost": "deal",
        "ticket.opened": "ticket",
        "ticket.replied": "ticket",
        "ticket.solved": "ticket",
        "sla.at_risk": "ticket",
        "sla.breached": "ticket",
        "task.created": "task",
        "task.due": "task",
        "task.overdue": "task",
        "contact.changed": "contact",
        "contact.unmerged": "contact",
        "do_not_contact.changed": "contact",
        "activity.changed": "contact",
        "lead.changed": "lead",
        "lead.moved": "lead",
        "lead.scored": "lead",
        "lead.status_changed": "lead",
        "deal.created": "deal",
        "deal.changed": "deal",
        "deal.reopened": "deal",
        "ticket.changed": "ticket",
        "ticket.moved": "ticket",
        "ticket.closed": "ticket",
        "task.changed": "task",
        "task.completed": "task",
        "task.cancelled": "task",
    }
)
"""Every event type a rule may name, with the kind of its subject (``Event.subject``).
An ``activity.recorded`` event's subject is the activity's contact. The events of
accounts and segments, and of deletions (the subject is gone), start no rule."""


def check_event_type(value: object, field: str) -> str:
    """``value`` if it is a known event type, else :class:`~crmkit.errors.UnknownEventType`."""
    if isinstance(value, str) and value in EVENT_SUBJECTS:
        return value
    known = ", ".join(sorted(EVENT_SUBJECTS))
    raise UnknownEventType(field, value, f"not an event type crmkit records ({known})")
