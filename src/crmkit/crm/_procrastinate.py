"""Hand crmkit's due steps to procrastinate (a PostgreSQL task queue): its workers call
the same claim-and-run code as :meth:`~crmkit.crm.CRM.run_due` (extra ``automation-pg``)."""

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from crmkit._extras import import_extra
from crmkit.automation import Step
from crmkit.crm._steps import DEFAULT_LEASE
from crmkit.errors import ValidationError
from crmkit.storage._steps import MAX_CLAIM

if TYPE_CHECKING:
    from crmkit.crm._service import CRM

__all__ = ["procrastinate_tasks"]


def procrastinate_tasks(
    app: Any,
    crm: "CRM",
    *,
    name: str = "crmkit.run_due",
    queue: str = "crmkit",
    limit: int = 100,
    lease: timedelta = DEFAULT_LEASE,
    cron: str | None = "* * * * *",
    defer_on_schedule: bool = True,
) -> Any:
    """Register on the procrastinate ``app`` a task ``name`` (in ``queue``) that runs
    ``crm``'s due steps, and return it.

    The task calls :meth:`~crmkit.crm.CRM.run_due` (``limit`` steps at a time, under
    ``lease``) until a run finds fewer than ``limit`` due steps, and returns how many it
    ran: procrastinate's workers claim crmkit's steps exactly as crmkit's own workers
    do, so both may run side by side. With ``defer_on_schedule`` every step that
    :meth:`~crmkit.crm.CRM.schedule_step` stores defers one job of the task at the
    step's ``due_at`` (procrastinate's ``schedule_at``), so the queue runs due work when
    it falls due instead of polling; with ``cron`` (procrastinate's periodic tasks, by
    default every minute) a sweep runs what no deferred job ran (steps whose retry
    became due, steps whose worker died). Needs the extra ``automation-pg``
    (:class:`~crmkit.errors.MissingExtra` names it).
    """
    procrastinate = import_extra(
        "procrastinate", extra="automation-pg", feature="crmkit.crm.procrastinate_tasks"
    )
    if not isinstance(app, procrastinate.App):
        raise ValidationError("app", app, "expected a procrastinate.App")
    if not isinstance(name, str) or not name or not isinstance(queue, str) or not queue:
        raise ValidationError("name", (name, queue), "expected non-empty str name and queue")
    if type(limit) is not int or not 1 <= limit <= MAX_CLAIM:
        raise ValidationError("limit", limit, f"expected an int from 1 to {MAX_CLAIM}")
    if not isinstance(lease, timedelta) or lease <= timedelta(0):
        raise ValidationError("lease", lease, "expected a positive timedelta")
    if cron is not None and not isinstance(cron, str):
        raise ValidationError("cron", cron, "expected a cron expression or None")

    def run_due() -> int:
        ran = 0
        while True:
            report = crm.run_due(limit=limit, lease=lease)
            ran += report.ran
            if report.ran < limit:
                return ran

    task = app.task(name=name, queue=queue)(run_due)
    if cron is not None:

        def sweep(timestamp: int) -> int:
            del timestamp  # procrastinate passes the time the sweep was due
            return run_due()

        app.periodic(cron=cron, periodic_id=name)(
            app.task(name=f"{name}.sweep", queue=queue)(sweep)
        )
    if defer_on_schedule:

        def defer(step: Step) -> None:
            task.configure(schedule_at=step.due_at).defer()

        crm.on_step_scheduled(defer)
    return task
