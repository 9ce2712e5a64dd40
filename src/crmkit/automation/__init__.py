"""Automation: rules as data that react to domain events and schedules, ready-made
rules, and the best send hour.

Pure domain logic: rules are frozen attrs classes read from JSON
(:func:`rules_from_json`) and checked when built (:class:`Automation`,
:func:`check_rules`); the :class:`~crmkit.crm.CRM` runs their steps through its use
cases, and :meth:`Automation.install` wires them to a CRM's event subscriptions and
durable steps.

* :class:`AutomationRule`: a trigger (:class:`OnEvent`, :class:`OnSchedule`), a
  condition (a :class:`~crmkit.models.rules.Rule`) and steps: :class:`CreateTask`,
  :class:`AssignRoundRobin`, :class:`AssignByCapacity`, :class:`AssignByTerritory`,
  :class:`AddTag`, :class:`RemoveTag`, :class:`AddToSegment`, :class:`MoveStage`,
  :class:`Rescore`, :class:`SendMessage`, :class:`CallHook`, :class:`Wait`,
  :class:`WaitUntil`, :class:`Check` and :class:`Branch`;
* ready-made rules: :func:`speed_to_lead`, :func:`follow_up_after_no_reply`,
  :func:`quarterly_check_in`, :func:`sla_escalation`;
* :func:`best_send_hours`: the hour of the week each contact (and a segment) opens
  and clicks most, in the contact's time zone.
"""

from crmkit.automation._actions import (
    Action,
    AddTag,
    AddToSegment,
    AssignByCapacity,
    AssignByTerritory,
    AssignRoundRobin,
    Branch,
    CallHook,
    Check,
    CreateTask,
    MoveStage,
    RemoveTag,
    Rescore,
    Seat,
    SendMessage,
    Territory,
    Wait,
    WaitUntil,
)
from crmkit.automation._catalog import EVENT_SUBJECTS, check_event_type
from crmkit.automation._engine import (
    ACTION_STEP,
    SWEEP_STEP,
    Automation,
    AutomationHost,
    HookCall,
    Message,
    PlannedStep,
    StepResult,
)
from crmkit.automation._ready import (
    REPLY_KINDS,
    follow_up_after_no_reply,
    no_reply_since,
    quarterly_check_in,
    sla_escalation,
    speed_to_lead,
)
from crmkit.automation._rules import (
    ACTION_EMITS,
    MAX_RULES,
    AutomationRule,
    Instruction,
    OnEvent,
    OnSchedule,
    Trigger,
    chain_depth,
    check_rules,
    compile_steps,
    emits,
    find_cycle,
    next_time_of_day,
    rules_from_json,
    rules_to_json,
    wait_until,
)
from crmkit.automation._sendtime import (
    ENGAGEMENT_KINDS,
    HOURS_OF_WEEK,
    SendHour,
    SendHours,
    best_send_hours,
    contact_zone,
    engagement_profile,
    hour_of_week,
)

__all__ = [
    "ACTION_EMITS",
    "ACTION_STEP",
    "ENGAGEMENT_KINDS",
    "EVENT_SUBJECTS",
    "HOURS_OF_WEEK",
    "MAX_RULES",
    "REPLY_KINDS",
    "SWEEP_STEP",
    "Action",
    "AddTag",
    "AddToSegment",
    "AssignByCapacity",
    "AssignByTerritory",
    "AssignRoundRobin",
    "Automation",
    "AutomationHost",
    "AutomationRule",
    "Branch",
    "CallHook",
    "Check",
    "CreateTask",
    "HookCall",
    "Instruction",
    "Message",
    "MoveStage",
    "OnEvent",
    "OnSchedule",
    "PlannedStep",
    "RemoveTag",
    "Rescore",
    "Seat",
    "SendHour",
    "SendHours",
    "SendMessage",
    "StepResult",
    "Territory",
    "Trigger",
    "Wait",
    "WaitUntil",
    "best_send_hours",
    "chain_depth",
    "check_event_type",
    "check_rules",
    "compile_steps",
    "contact_zone",
    "emits",
    "engagement_profile",
    "find_cycle",
    "follow_up_after_no_reply",
    "hour_of_week",
    "next_time_of_day",
    "no_reply_since",
    "quarterly_check_in",
    "rules_from_json",
    "rules_to_json",
    "sla_escalation",
    "speed_to_lead",
    "wait_until",
]
