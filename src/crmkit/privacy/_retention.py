"""Retention policies: which records have been kept long enough, as rules the store
evaluates (no record is loaded to decide)."""

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final
from uuid import UUID

import attrs

from crmkit.clock import ensure_utc
from crmkit.errors import ValidationError
from crmkit.models import ActivityKind, TicketStatus
from crmkit.models.rules import (
    ActivityCondition,
    And,
    Compare,
    IsNull,
    Measure,
    Op,
    Rule,
    RuleEntity,
)

__all__ = ["RetentionAction", "RetentionPlan", "RetentionPolicy", "RetentionRules"]

MONTH_DAYS: Final = 30
YEAR_DAYS: Final = 365
_MAX_DAYS: Final = 36_500


class RetentionAction(StrEnum):
    """What a retention policy does with what it selects."""

    ANONYMISE = "anonymise"
    """Erase the personal data and keep the records (as an erasure does)."""
    DELETE = "delete"
    """Delete the records (a contact with everything that refers to it)."""


def _period(name: str, value: object, unit_days: int) -> int | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 1 <= value * unit_days <= _MAX_DAYS
    ):
        raise ValidationError(
            name, value, f"expected a whole number from 1 to {_MAX_DAYS // unit_days}"
        )
    return value


def _months(_instance: object, attribute: "attrs.Attribute[int | None]", value: object) -> None:
    _period(attribute.name, value, MONTH_DAYS)


def _days(_instance: object, attribute: "attrs.Attribute[int | None]", value: object) -> None:
    _period(attribute.name, value, 1)


def _years(_instance: object, attribute: "attrs.Attribute[int | None]", value: object) -> None:
    _period(attribute.name, value, YEAR_DAYS)


def _action(
    _instance: object, attribute: "attrs.Attribute[RetentionAction]", value: object
) -> None:
    if not isinstance(value, RetentionAction):
        raise ValidationError(attribute.name, value, "expected a RetentionAction")


@attrs.frozen
class RetentionRules:
    """The rules of a policy at one ``now``: ``None`` where the policy sets no limit."""

    contacts: Rule | None
    leads: Rule | None
    tickets: Rule | None


@attrs.frozen
class RetentionPolicy:
    """How long records are kept; ``None`` keeps them for ever. A month counts as 30
    days, a year as 365.

    * ``contacts_inactive_months``: contacts not changed and without any activity for
      that long;
    * ``leads_unconverted_days``: leads created that long ago that never became a deal;
    * ``tickets_closed_years``: closed tickets not changed for that long.

    ``action`` says whether they are anonymised (the default) or deleted.

    >>> from datetime import datetime, UTC
    >>> rules = RetentionPolicy(leads_unconverted_days=90).rules(datetime(2026, 6, 1, tzinfo=UTC))
    >>> rules.contacts is None, rules.leads.entity
    (True, <RuleEntity.LEAD: 'lead'>)
    """

    contacts_inactive_months: int | None = attrs.field(default=None, validator=_months)
    leads_unconverted_days: int | None = attrs.field(default=None, validator=_days)
    tickets_closed_years: int | None = attrs.field(default=None, validator=_years)
    action: RetentionAction = attrs.field(default=RetentionAction.ANONYMISE, validator=_action)

    def rules(self, now: datetime) -> RetentionRules:
        """The rules selecting what has been kept long enough at ``now``."""
        now = ensure_utc(now, "now")
        contacts = leads = tickets = None
        if self.contacts_inactive_months is not None:
            days = self.contacts_inactive_months * MONTH_DAYS
            quiet = [
                ActivityCondition(kind, Measure.COUNT, Op.EQ, 0, within_days=days)
                for kind in ActivityKind
            ]
            contacts = Rule(
                RuleEntity.CONTACT,
                And((Compare("updated_at", Op.LT, now - timedelta(days=days)), *quiet)),
            )
        if self.leads_unconverted_days is not None:
            cutoff = now - timedelta(days=self.leads_unconverted_days)
            leads = Rule(
                RuleEntity.LEAD, And((Compare("created_at", Op.LT, cutoff), IsNull("deal_id")))
            )
        if self.tickets_closed_years is not None:
            cutoff = now - timedelta(days=self.tickets_closed_years * YEAR_DAYS)
            tickets = Rule(
                RuleEntity.TICKET,
                And(
                    (
                        Compare("status", Op.EQ, TicketStatus.CLOSED.value),
                        Compare("updated_at", Op.LT, cutoff),
                    )
                ),
            )
        return RetentionRules(contacts, leads, tickets)


@attrs.frozen
class RetentionPlan:
    """What a policy selected (in id order) and whether it was applied (``False``: a
    dry run, nothing changed)."""

    action: RetentionAction
    contacts: tuple[UUID, ...]
    leads: tuple[UUID, ...]
    tickets: tuple[UUID, ...]
    applied: bool

    @property
    def total(self) -> int:
        """How many records the plan names."""
        return len(self.contacts) + len(self.leads) + len(self.tickets)
