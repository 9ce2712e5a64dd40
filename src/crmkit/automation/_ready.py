"""Ready-made rules: speed-to-lead, follow-up after no reply, quarterly check-in and
SLA escalation. Each returns ordinary :class:`AutomationRule` data, to use as it is,
to change with :func:`attrs.evolve`, or to write out as JSON and edit."""

import math
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Final

from crmkit.automation._actions import AssignRoundRobin, Check, CreateTask, Wait
from crmkit.automation._catalog import check_event_type
from crmkit.automation._rules import AutomationRule, OnEvent, OnSchedule
from crmkit.errors import InvalidAutomation
from crmkit.models import ActivityKind, LifecycleStage, TaskKind
from crmkit.models.rules import Condition, In, Not, Or, Rule, RuleEntity
from crmkit.segmentation import activity

__all__ = [
    "REPLY_KINDS",
    "follow_up_after_no_reply",
    "no_reply_since",
    "quarterly_check_in",
    "sla_escalation",
    "speed_to_lead",
]

REPLY_KINDS: Final = (
    ActivityKind.EMAIL_CLICKED,
    ActivityKind.FORM_SUBMITTED,
    ActivityKind.CALL,
    ActivityKind.MEETING,
)
"""What counts as the contact answering, for :func:`follow_up_after_no_reply`."""


def speed_to_lead(
    team: Sequence[str],
    *,
    within: timedelta = timedelta(minutes=5),
    calendar: str | None = None,
    condition: Rule | None = None,
    name: str = "speed_to_lead",
) -> AutomationRule:
    """Every captured lead (for which ``condition`` holds) goes to the next member of
    ``team`` in turn, who gets a call task due ``within`` business time on ``calendar``."""
    return AutomationRule(
        name=name,
        trigger=OnEvent("lead.captured"),
        condition=condition,
        actions=(
            AssignRoundRobin(_team(team)),
            CreateTask("Call the new lead", due_in=within, calendar=calendar, kind=TaskKind.CALL),
        ),
        description="Speed to lead: assign every new lead and call it within minutes.",
    )


def _team(team: object) -> tuple[str, ...]:
    if isinstance(team, str | bytes) or not isinstance(team, Iterable):
        raise InvalidAutomation("team", team, "expected a list of owner names")
    return tuple(team)


def _days(value: timedelta) -> int:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise InvalidAutomation("after", value, "expected a positive timedelta")
    return max(1, math.ceil(value / timedelta(days=1)))


def no_reply_since(days: int, kinds: Iterable[ActivityKind] = REPLY_KINDS) -> Rule:
    """The contact rule "no reply (``kinds``) in the last ``days`` days"."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 36_500:
        raise InvalidAutomation("days", days, "expected a whole number of days from 1 to 36500")
    if isinstance(kinds, str | bytes) or not isinstance(kinds, Iterable):
        raise InvalidAutomation("kinds", kinds, "expected activity kinds")
    kinds = list(kinds)
    if not kinds or not all(isinstance(kind, ActivityKind) for kind in kinds):
        raise InvalidAutomation("kinds", kinds, "expected at least one ActivityKind")
    answered: tuple[Condition, ...] = tuple(
        activity(kind, within_days=days).exists() for kind in kinds
    )
    return Rule(RuleEntity.CONTACT, Not(Or(answered)))


def follow_up_after_no_reply(
    after: timedelta = timedelta(days=2),
    *,
    trigger: str = "lead.captured",
    calendar: str | None = None,
    name: str = "follow_up_after_no_reply",
) -> AutomationRule:
    """After ``trigger`` (by default a captured lead), wait ``after`` of business time
    on ``calendar``; if the contact has not answered since (no click, form, call or
    meeting, :data:`REPLY_KINDS`, in as many days as the wait lasted on the wall
    clock, at least ``after``), create a follow-up task due at once."""
    days = _days(after)
    if calendar is not None:  # business time lasts longer on the wall: look back further
        days = max(days, math.ceil(days * 7 / 5) + 2)
    return AutomationRule(
        name=name,
        trigger=OnEvent(check_event_type(trigger, "trigger")),
        actions=(
            Wait(after, calendar),
            Check(no_reply_since(days)),
            CreateTask("Follow up: no reply yet", kind=TaskKind.FOLLOW_UP),
        ),
        description="Follow up when a contact has not answered.",
    )


def quarterly_check_in(
    *,
    every: timedelta = timedelta(days=91),
    due_in: timedelta = timedelta(days=2),
    calendar: str | None = None,
    stages: Iterable[LifecycleStage] = (LifecycleStage.CUSTOMER, LifecycleStage.EVANGELIST),
    name: str = "quarterly_check_in",
) -> AutomationRule:
    """Every ``every`` (a quarter by default), a check-in task for each contact in
    ``stages`` (customers and evangelists), for its owner, due ``due_in`` later."""
    if isinstance(stages, str | bytes) or not isinstance(stages, Iterable):
        raise InvalidAutomation("stages", stages, "expected lifecycle stages")
    chosen = list(stages)
    if not all(isinstance(stage, LifecycleStage) for stage in chosen):
        raise InvalidAutomation("stages", chosen, "expected LifecycleStages")
    wanted = tuple(stage.value for stage in chosen)
    if not wanted:
        raise InvalidAutomation("stages", (), "expected at least one lifecycle stage")
    return AutomationRule(
        name=name,
        trigger=OnSchedule(every, RuleEntity.CONTACT),
        condition=Rule(RuleEntity.CONTACT, In("lifecycle_stage", wanted)),
        actions=(
            CreateTask(
                "Quarterly check-in", due_in=due_in, calendar=calendar, kind=TaskKind.CHECK_IN
            ),
        ),
        description="Check in with every customer once a quarter.",
    )


def sla_escalation(
    team: Sequence[str],
    *,
    calendar: str | None = None,
    answer_within: timedelta = timedelta(0),
    name: str = "sla_escalation",
) -> tuple[AutomationRule, AutomationRule]:
    """Two rules: when a ticket's SLA is at risk (``sla.at_risk``: set the
    :class:`~crmkit.lifecycle.SlaPolicy`'s ``at_risk_after`` to 0.8 to warn at 80 %),
    a task for its assignee to answer it; when it is breached (``sla.breached``), the
    ticket goes to the next member of the escalation ``team`` in turn, with a task."""
    if not isinstance(name, str):
        raise InvalidAutomation("name", name, "expected the rules' name as text")
    warn = AutomationRule(
        name=f"{name}_warn",
        trigger=OnEvent("sla.at_risk"),
        actions=(
            CreateTask(
                "SLA at risk: answer the ticket",
                due_in=answer_within,
                calendar=calendar,
                kind=TaskKind.FOLLOW_UP,
            ),
        ),
        description="Warn the assignee when a ticket's SLA is at risk.",
    )
    breach = AutomationRule(
        name=f"{name}_breach",
        trigger=OnEvent("sla.breached"),
        actions=(
            AssignRoundRobin(_team(team)),
            CreateTask(
                "SLA breached: take over the ticket",
                due_in=answer_within,
                calendar=calendar,
                kind=TaskKind.FOLLOW_UP,
            ),
        ),
        description="Reassign a ticket whose SLA is breached.",
    )
    return warn, breach
