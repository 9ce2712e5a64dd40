"""One chronological view of a contact: activities, stage changes, deals, tickets, tasks."""

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Final
from uuid import UUID

import attrs

from crmkit.models import (
    Activity,
    Deal,
    Entity,
    StageChange,
    SubjectKind,
    Task,
    TaskStatus,
    Ticket,
)
from crmkit.models._fields import expect_items

__all__ = ["TimelineEntry", "TimelineKind", "timeline"]


class TimelineKind(StrEnum):
    """What a timeline entry shows."""

    ACTIVITY = "activity"
    DEAL_OPENED = "deal_opened"
    TICKET_OPENED = "ticket_opened"
    STAGE_CHANGE = "stage_change"
    TASK_CREATED = "task_created"
    TASK_DONE = "task_done"


_ORDER: Final = {kind: rank for rank, kind in enumerate(TimelineKind)}
# At one instant a lead's, deal's or ticket's move comes before the contact's move it causes.
_SUBJECT_ORDER: Final = {
    SubjectKind.LEAD: 0,
    SubjectKind.DEAL: 1,
    SubjectKind.TICKET: 2,
    SubjectKind.CONTACT: 3,
}


@attrs.frozen
class TimelineEntry:
    """One line of a contact's timeline: when, what, a sentence, and the item itself."""

    at: datetime
    kind: TimelineKind
    text: str
    item: Entity


def _change_text(change: StageChange) -> str:
    what = (
        change.subject.value
        if change.pipeline is None
        else f"{change.subject.value} in {change.pipeline}"
    )
    step = (
        change.to_stage
        if change.from_stage is None
        else f"{change.from_stage} -> {change.to_stage}"
    )
    if change.from_stage == change.to_stage:  # a deal's update: the values it snapshots
        values = [
            str(value)
            for value in (change.amount, change.expected_close and f"close {change.expected_close}")
            if value
        ]
        step = f"{change.to_stage}, {', '.join(values) or 'values'} updated"
        return f"{what}: {step}" + (f" by {change.by}" if change.by else "")
    extra = f" ({change.reason})" if change.reason else ""
    by = f" by {change.by}" if change.by else ""
    return f"{what}: {step}{by}{extra}"


def timeline(
    *,
    activities: Iterable[Activity] = (),
    stage_changes: Iterable[StageChange] = (),
    deals: Iterable[Deal] = (),
    tickets: Iterable[Ticket] = (),
    tasks: Iterable[Task] = (),
) -> list[TimelineEntry]:
    """Everything that happened, oldest first. Entries of one instant keep a fixed order:
    activities, deals and tickets opened, stage changes (a lead's, deal's or ticket's
    before the contact's move it causes), tasks; then by id. The same data always gives
    the same timeline."""
    activities = expect_items(activities, Activity, "activities", "Activity")
    stage_changes = expect_items(stage_changes, StageChange, "stage_changes", "StageChange")
    deals = expect_items(deals, Deal, "deals", "Deal")
    tickets = expect_items(tickets, Ticket, "tickets", "Ticket")
    tasks = expect_items(tasks, Task, "tasks", "Task")
    entries: list[TimelineEntry] = []
    for activity in activities:
        text = activity.kind.value.replace("_", " ")
        if activity.subject:
            text = f"{text}: {activity.subject}"
        entries.append(TimelineEntry(activity.occurred_at, TimelineKind.ACTIVITY, text, activity))
    entries.extend(
        TimelineEntry(change.at, TimelineKind.STAGE_CHANGE, _change_text(change), change)
        for change in stage_changes
    )
    for deal in deals:
        amount = f" ({deal.amount})" if deal.amount is not None else ""
        text = f"deal opened: {deal.title}{amount}"
        entries.append(TimelineEntry(deal.created_at, TimelineKind.DEAL_OPENED, text, deal))
    for ticket in tickets:
        text = f"ticket opened via {ticket.channel.value}: {ticket.subject}"
        entries.append(TimelineEntry(ticket.created_at, TimelineKind.TICKET_OPENED, text, ticket))
    for task in tasks:
        due = f"{task.title} (due {task.due_at:%Y-%m-%d %H:%M} UTC)"
        entries.append(
            TimelineEntry(task.created_at, TimelineKind.TASK_CREATED, f"task: {due}", task)
        )
        if task.status is TaskStatus.DONE and task.completed_at is not None:
            entries.append(
                TimelineEntry(
                    task.completed_at, TimelineKind.TASK_DONE, f"done: {task.title}", task
                )
            )

    def key(entry: TimelineEntry) -> tuple[datetime, int, int, UUID]:
        item = entry.item
        subject = _SUBJECT_ORDER[item.subject] if isinstance(item, StageChange) else 0
        return entry.at, _ORDER[entry.kind], subject, item.id

    return sorted(entries, key=key)
