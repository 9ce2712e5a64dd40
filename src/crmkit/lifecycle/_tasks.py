"""Tasks and reminders: completing them, the follow-up dashboard, recurring check-ins."""

from collections.abc import Iterable
from datetime import datetime, timedelta
from uuid import UUID

import attrs

from crmkit.clock import FixedClock, ensure_utc
from crmkit.errors import TransitionNotAllowed, ValidationError
from crmkit.models import Contact, LifecycleStage, Task, TaskKind, TaskStatus
from crmkit.models._fields import expect_items

__all__ = [
    "CheckInPlan",
    "FollowUps",
    "cancel_task",
    "check_ins_due",
    "complete_task",
    "follow_ups",
]


def _check_task(task: object, to: TaskStatus) -> Task:
    if not isinstance(task, Task):
        raise ValidationError("task", task, "expected a Task")
    if task.status is not TaskStatus.OPEN:
        raise TransitionNotAllowed(
            "task", task.status.value, to.value, ["only an open task can be"
            f" {'done' if to is TaskStatus.DONE else 'cancelled'}"], codes=["not_open"]
        )  # fmt: skip
    return task


def complete_task(task: Task, *, at: datetime) -> Task:
    """Mark an open task done at ``at`` (aware)."""
    task = _check_task(task, TaskStatus.DONE)
    now = ensure_utc(at, "at")
    return attrs.evolve(task, status=TaskStatus.DONE, completed_at=now, updated_at=now)


def cancel_task(task: Task, *, at: datetime) -> Task:
    """Cancel an open task at ``at`` (aware)."""
    task = _check_task(task, TaskStatus.CANCELLED)
    return attrs.evolve(task, status=TaskStatus.CANCELLED, updated_at=ensure_utc(at, "at"))


@attrs.frozen
class FollowUps:
    """The follow-up dashboard: open tasks past due, and those due soon (by due time)."""

    overdue: tuple[Task, ...]
    due_soon: tuple[Task, ...]


def _later(at: datetime, delta: timedelta) -> datetime | None:
    """``at + delta``; ``None`` when that is after the last time a datetime can hold."""
    try:
        return at + delta
    except OverflowError:
        return None


def follow_ups(tasks: Iterable[Task], *, now: datetime, within: timedelta) -> FollowUps:
    """Sort the open ``tasks`` into overdue (due before ``now``) and due within
    ``within`` from ``now``; done and cancelled tasks are left out."""
    now = ensure_utc(now, "now")
    if not isinstance(within, timedelta) or within < timedelta(0):
        raise ValidationError("within", within, "expected a timedelta >= 0")
    horizon = _later(now, within)
    late: list[Task] = []
    soon: list[Task] = []
    for task in expect_items(tasks, Task, "tasks", "a Task"):
        if task.status is not TaskStatus.OPEN:
            continue
        if task.due_at < now:
            late.append(task)
        elif horizon is None or task.due_at <= horizon:
            soon.append(task)

    def key(task: Task) -> tuple[datetime, UUID]:
        return task.due_at, task.id

    return FollowUps(tuple(sorted(late, key=key)), tuple(sorted(soon, key=key)))


@attrs.frozen(kw_only=True)
class CheckInPlan:
    """Check in with every customer every ``every``: a task per customer, kept open."""

    every: timedelta
    title: str = "Check in"
    assignee: str | None = None
    stages: frozenset[LifecycleStage] = frozenset(
        {LifecycleStage.CUSTOMER, LifecycleStage.EVANGELIST}
    )

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.every, timedelta) or self.every <= timedelta(0):
            raise ValidationError("every", self.every, "expected a positive timedelta")
        if not isinstance(self.title, str) or not self.title.strip():
            raise ValidationError("title", self.title, "expected a non-blank title")
        if self.assignee is not None and (
            not isinstance(self.assignee, str) or not self.assignee.strip()
        ):
            raise ValidationError("assignee", self.assignee, "expected a user id or None")
        if (
            not isinstance(self.stages, frozenset)
            or not self.stages
            or not all(isinstance(s, LifecycleStage) for s in self.stages)
        ):
            raise ValidationError("stages", self.stages, "expected a set of LifecycleStage")


def check_ins_due(
    contacts: Iterable[Contact],
    tasks: Iterable[Task],
    plan: CheckInPlan,
    *,
    now: datetime,
) -> list[Task]:
    """The check-in tasks to create: one for each contact in ``plan.stages`` that has no
    open check-in, due ``plan.every`` after its last completed check-in (or after it
    became a contact, for the first), and never earlier than now.

    ``tasks`` are the contacts' existing check-in tasks (other tasks are ignored).
    """
    contacts = expect_items(contacts, Contact, "contacts", "Contact")
    tasks = expect_items(tasks, Task, "tasks", "Task")
    if not isinstance(plan, CheckInPlan):
        raise ValidationError("plan", plan, "expected a CheckInPlan")
    now = ensure_utc(now, "now")
    clock = FixedClock(now)
    open_for: set[UUID] = set()
    last_done: dict[UUID, datetime] = {}
    for task in tasks:
        if task.kind is not TaskKind.CHECK_IN or task.contact_id is None:
            continue
        if task.status is TaskStatus.OPEN:
            open_for.add(task.contact_id)
        elif task.status is TaskStatus.DONE and task.completed_at is not None:
            previous = last_done.get(task.contact_id)
            if previous is None or task.completed_at > previous:
                last_done[task.contact_id] = task.completed_at
    made = []
    for contact in contacts:
        if contact.lifecycle_stage not in plan.stages or contact.id in open_for:
            continue
        since = last_done.get(contact.id, contact.created_at)
        due = _later(since, plan.every)
        if due is None:
            raise ValidationError(
                "plan.every", plan.every, f"the check-in of {contact.id} falls after year 9999"
            )
        made.append(
            Task.new(
                title=f"{plan.title}: {contact.display_name}",
                due_at=max(due, now),
                kind=TaskKind.CHECK_IN,
                assignee=plan.assignee or contact.owner,
                contact_id=contact.id,
                clock=clock,
            )
        )
        open_for.add(contact.id)
    return made
