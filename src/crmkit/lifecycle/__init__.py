"""The lifecycle: pipelines and their state machine, contact lifecycle stages, lead
capture and conversion, tickets with SLAs, tasks and the contact timeline.

Pure domain logic over :mod:`crmkit.models`: functions take entities and return new
entities plus the events to store (:class:`Moved`, :class:`Captured`, ...);
:mod:`crmkit.crm` runs them against a store, one unit of work per use case. Time comes
from the clock passed in.
"""

from crmkit.lifecycle._calendar import (
    BusinessCalendar,
    WorkingHours,
    add_business_time,
    business_time_between,
)
from crmkit.lifecycle._contacts import (
    FUNNEL,
    LifecycleEvent,
    advance_contact,
    can_move_contact,
    move_contact,
    reset_contact,
)
from crmkit.lifecycle._leads import (
    Captured,
    Converted,
    Enrichment,
    Qualified,
    Touchpoint,
    accept_lead,
    capture_lead,
    convert_lead,
    disqualify_lead,
    score_lead,
)
from crmkit.lifecycle._machine import Guard, Guards, PipelineMachine, closed_state
from crmkit.lifecycle._moved import Moved, Unmet
from crmkit.lifecycle._pipeline import (
    Pipeline,
    Stage,
    StageKind,
    StageRequirements,
    TransitionMode,
)
from crmkit.lifecycle._sla import (
    AGENT_REPLY_KINDS,
    CUSTOMER_REPLY_KINDS,
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
from crmkit.lifecycle._tasks import (
    CheckInPlan,
    FollowUps,
    cancel_task,
    check_ins_due,
    complete_task,
    follow_ups,
)
from crmkit.lifecycle._tickets import TICKET_TRANSITIONS, can_move_ticket, move_ticket, record_csat
from crmkit.lifecycle._timeline import TimelineEntry, TimelineKind, timeline

__all__ = [
    "AGENT_REPLY_KINDS",
    "CUSTOMER_REPLY_KINDS",
    "FUNNEL",
    "TICKET_TRANSITIONS",
    "BusinessCalendar",
    "Captured",
    "CheckInPlan",
    "Converted",
    "Enrichment",
    "FollowUps",
    "Guard",
    "Guards",
    "LifecycleEvent",
    "Moved",
    "Pipeline",
    "PipelineMachine",
    "Qualified",
    "SlaMetric",
    "SlaPolicies",
    "SlaPolicy",
    "SlaReport",
    "SlaState",
    "SlaTimer",
    "Stage",
    "StageKind",
    "StageRequirements",
    "TicketEvent",
    "TicketEventKind",
    "TimelineEntry",
    "TimelineKind",
    "Touchpoint",
    "TransitionMode",
    "Unmet",
    "WorkingHours",
    "accept_lead",
    "add_business_time",
    "advance_contact",
    "breached",
    "business_time_between",
    "can_move_contact",
    "can_move_ticket",
    "cancel_task",
    "capture_lead",
    "check_ins_due",
    "closed_state",
    "complete_task",
    "convert_lead",
    "disqualify_lead",
    "due_within",
    "follow_ups",
    "move_contact",
    "move_ticket",
    "record_csat",
    "reset_contact",
    "score_lead",
    "sla_status",
    "ticket_events",
    "timeline",
]
