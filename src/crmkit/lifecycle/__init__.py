"""The lifecycle: pipelines and their state machine, contact lifecycle stages, lead
capture and conversion, tickets with SLAs, tasks and the contact timeline.

Pure domain logic over :mod:`crmkit.models`: functions take entities and return new
entities plus the events to store (:class:`Moved`, :class:`Captured`, ...);
:mod:`crmkit.crm` runs them against a store, one unit of work per use case. Time comes
from the clock passed in.
"""

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
from crmkit.lifecycle._machine import Guard, Guards, PipelineMachine
from crmkit.lifecycle._moved import Moved, Unmet
from crmkit.lifecycle._pipeline import (
    Pipeline,
    Stage,
    StageKind,
    StageRequirements,
    TransitionMode,
)
from crmkit.lifecycle._tasks import (
    CheckInPlan,
    FollowUps,
    cancel_task,
    check_ins_due,
    complete_task,
    follow_ups,
)
from crmkit.lifecycle._timeline import TimelineEntry, TimelineKind, timeline

__all__ = [
    "FUNNEL",
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
    "Stage",
    "StageKind",
    "StageRequirements",
    "TimelineEntry",
    "TimelineKind",
    "Touchpoint",
    "TransitionMode",
    "Unmet",
    "accept_lead",
    "advance_contact",
    "can_move_contact",
    "cancel_task",
    "capture_lead",
    "check_ins_due",
    "complete_task",
    "convert_lead",
    "disqualify_lead",
    "follow_ups",
    "move_contact",
    "reset_contact",
    "score_lead",
    "timeline",
]
