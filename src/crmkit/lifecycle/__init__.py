"""The lifecycle: pipelines and their state machine, contact lifecycle stages, lead
capture and conversion, tickets with SLAs, tasks and the contact timeline.

Pure domain logic over :mod:`crmkit.models`: functions take entities and return new
entities plus the events to store; ``crmkit.crm`` runs them against a store.
"""

from crmkit.lifecycle._calendar import (
    BusinessCalendar,
    WorkingHours,
    add_business_time,
    business_time_between,
)
from crmkit.lifecycle._moved import Moved, Unmet
from crmkit.lifecycle._sla import (
    SlaMetric,
    SlaPolicies,
    SlaPolicy,
    SlaReport,
    SlaState,
    SlaTimer,
    TicketEvent,
    TicketEventKind,
    breached,
    due_within,
    sla_status,
    ticket_events,
)
from crmkit.lifecycle._tickets import TICKET_TRANSITIONS, can_move_ticket, move_ticket, record_csat

__all__ = [
    "TICKET_TRANSITIONS",
    "BusinessCalendar",
    "Moved",
    "SlaMetric",
    "SlaPolicies",
    "SlaPolicy",
    "SlaReport",
    "SlaState",
    "SlaTimer",
    "TicketEvent",
    "TicketEventKind",
    "Unmet",
    "WorkingHours",
    "add_business_time",
    "breached",
    "business_time_between",
    "can_move_ticket",
    "due_within",
    "move_ticket",
    "record_csat",
    "sla_status",
    "ticket_events",
]
