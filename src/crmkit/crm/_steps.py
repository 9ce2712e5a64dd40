"""The durable-timer use cases of :class:`~crmkit.crm.CRM`: schedule a step, register
the runner of a kind, and run the due steps (claimed under a lease, run outside any unit
of work, their outcomes recorded)."""

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID, uuid4

import attrs

from crmkit.automation import (
    RunReport,
    Step,
    StepStatus,
    caused_by,
    new_step,
    step_done,
    step_failed,
)
from crmkit.clock import Clock, ensure_utc
from crmkit.errors import CrmkitError, StorageError, ValidationError
from crmkit.models._fields import member_of
from crmkit.storage import Store
from crmkit.storage._base import check_id
from crmkit.storage._steps import MAX_CLAIM

if TYPE_CHECKING:
    from crmkit.crm._service import CRM

__all__ = ["RUNNING_STEP", "StepRunner", "StepUseCases"]

StepRunner = Callable[["CRM", Step], None]
"""A step runner: called with the CRM and the claimed step, outside any unit of work.
It returns when the step's work is done and raises when it failed. It must be idempotent
by ``step.id`` (see :meth:`StepUseCases.register_runner`)."""

RUNNING_STEP: Final[ContextVar[Step | None]] = ContextVar("crmkit_running_step", default=None)
"""The step whose runner is running in this context (``None`` outside runners): what a
use case called by a runner may record as the cause of its changes."""

DEFAULT_LEASE: Final = timedelta(minutes=5)
_MAX_ATTEMPTS: Final = 1000


@attrs.frozen
class _Runner:
    run: StepRunner
    max_attempts: int
    retry_after: timedelta


def _check_delta(value: object, field: str) -> timedelta:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise ValidationError(field, value, "expected a positive timedelta")
    return value


class StepUseCases:
    """Durable timers: steps stored to run later, and the workers that run them.

    A host registers a runner per kind of step (:meth:`register_runner`), schedules
    steps (:meth:`schedule_step`) and calls :meth:`run_due` in as many worker processes
    as it likes; each due step is run by one worker at a time. A worker killed while it
    runs a step leaves the step to be claimed again when its lease runs out, so a
    runner may run twice for one step and must be idempotent by ``step.id``.
    """

    store: Store
    clock: Clock

    @property
    def _runners(self) -> dict[str, _Runner]:
        found: dict[str, _Runner] | None = self.__dict__.get("_step_runners")
        if found is None:
            found = self.__dict__["_step_runners"] = {}
        return found

    @property
    def _schedule_listeners(self) -> list[Callable[[Step], None]]:
        found: list[Callable[[Step], None]] | None = self.__dict__.get("_step_listeners")
        if found is None:
            found = self.__dict__["_step_listeners"] = []
        return found

    def register_runner(
        self,
        kind: str,
        runner: StepRunner,
        *,
        max_attempts: int = 5,
        retry_after: timedelta = timedelta(seconds=30),
    ) -> None:
        """Run the steps of ``kind`` with ``runner(crm, step)``.

        The runner is called outside any unit of work (it may call this CRM's use cases,
        each its own unit) and must be **idempotent by step id**: a step whose worker
        died is run again once its lease runs out, so whatever the runner creates gets
        an id derived from the step (``uuid5(step.id, "task")``) and a rerun that finds
        it stored (:class:`~crmkit.errors.Duplicate`) does nothing more.

        A runner that raises leaves the step ``failed``, due again after
        ``retry_after`` doubled per attempt (at most an hour); after ``max_attempts``
        claims it is ``dead``, its error recorded. Registering a kind again replaces its
        runner. Wrong arguments raise :class:`~crmkit.errors.ValidationError`.
        """
        if not isinstance(kind, str) or not kind.strip() or len(kind) > 100:
            raise ValidationError("kind", kind, "expected a non-blank str of at most 100 chars")
        if not callable(runner):
            raise ValidationError("runner", runner, "expected a callable (crm, step) -> None")
        if type(max_attempts) is not int or not 1 <= max_attempts <= _MAX_ATTEMPTS:
            raise ValidationError(
                "max_attempts", max_attempts, f"expected an int from 1 to {_MAX_ATTEMPTS}"
            )
        _check_delta(retry_after, "retry_after")
        self._runners[kind] = _Runner(runner, max_attempts, retry_after)

    @property
    def runners(self) -> Mapping[str, StepRunner]:
        """The registered runners by kind."""
        return {kind: found.run for kind, found in self._runners.items()}

    def on_step_scheduled(self, listener: Callable[[Step], None], /) -> None:
        """Call ``listener(step)`` after each :meth:`schedule_step` committed: how a task
        queue learns of new work (see :func:`crmkit.crm.procrastinate_tasks`). A
        listener that raises makes :meth:`schedule_step` raise
        :class:`~crmkit.errors.StorageError` (a crmkit error it raises as it is); the
        step stays stored, and a worker's :meth:`run_due` runs it when it is due."""
        if not callable(listener):
            raise ValidationError("listener", listener, "expected a callable (step) -> None")
        self._schedule_listeners.append(listener)

    def schedule_step(
        self,
        kind: str,
        payload: Mapping[str, Any],
        *,
        due_at: datetime,
        step_id: UUID | None = None,
        subject: str | None = None,
        subject_id: UUID | None = None,
    ) -> Step:
        """Store a step of ``kind`` to run at ``due_at`` (aware) with ``payload`` (a JSON
        object, see :func:`~crmkit.automation.check_payload`); returns the stored step.

        Scheduling is idempotent by ``step_id``: when a step with that id is stored
        already, nothing is stored and the stored step is returned (a redelivered event
        that schedules ``uuid5(event.id, ...)`` schedules once). ``kind`` must have a
        runner (:meth:`register_runner`); an unknown kind, a naive ``due_at`` or a
        payload that is no JSON object raise :class:`~crmkit.errors.ValidationError`
        naming the field, and store nothing.
        """
        if not isinstance(kind, str) or kind not in self._runners:
            raise ValidationError(
                "kind", kind, f"no runner is registered for it (known: {sorted(self._runners)})"
            )
        step = new_step(
            kind,
            payload,
            due_at=due_at,
            now=self.clock.now(),
            step_id=step_id,
            subject=subject,
            subject_id=subject_id,
        )
        with self.store.unit_of_work() as unit:
            stored = unit.steps.schedule(step)
            unit.commit()
        for listener in self._schedule_listeners:
            try:
                listener(stored)
            except CrmkitError:
                raise
            except Exception as error:
                raise StorageError(
                    f"step {stored.id} is stored, but a listener failed: "
                    f"{type(error).__name__}: {error}"
                ) from error
        return stored

    def step(self, step_id: UUID, /) -> Step:
        """The stored step with this id; :class:`~crmkit.errors.NotFound` when none."""
        check_id(step_id, "step_id")
        with self.store.unit_of_work() as unit:
            return unit.steps.get(step_id)

    def steps(
        self,
        *,
        status: StepStatus | None = None,
        kind: str | None = None,
        subject_id: UUID | None = None,
        limit: int | None = 1000,
    ) -> list[Step]:
        """The stored steps that match every filter given, earliest due first (the
        dead ones: ``crm.steps(status=StepStatus.DEAD)``)."""
        with self.store.unit_of_work() as unit:
            return unit.steps.select(
                status=None if status is None else member_of(StepStatus, status, "status"),
                kind=kind,
                subject_id=subject_id,
                limit=limit,
            )

    def run_due(
        self,
        now: datetime | None = None,
        limit: int = 100,
        *,
        lease: timedelta = DEFAULT_LEASE,
    ) -> RunReport:
        """Claim up to ``limit`` steps due at ``now`` (default: the clock's) whose kind
        has a runner, run each, and record the outcomes; returns what happened.

        The claim is one unit of work: it takes the steps under a new lease until
        ``now + lease`` (PostgreSQL ``FOR UPDATE SKIP LOCKED``, so workers in other
        processes claim other steps without waiting; SQLite runs one claim at a time).
        Each runner is called outside any unit of work, in order of ``due_at``; one
        that raises makes its step failed (or dead), the others run on. The outcomes are
        recorded in one unit of work at the end, each only if this lease still holds
        it: keep ``limit`` times a run's duration well under ``lease``, or another
        worker will claim the steps again (they are reported ``lost``). While a runner
        runs, :data:`RUNNING_STEP` holds its step.
        """
        at = self.clock.now() if now is None else ensure_utc(now, "now")
        if type(limit) is not int or not 1 <= limit <= MAX_CLAIM:
            raise ValidationError("limit", limit, f"expected an int from 1 to {MAX_CLAIM}")
        _check_delta(lease, "lease")
        try:
            until = at + lease
        except OverflowError:
            raise ValidationError("lease", lease, "now + lease lies beyond the year 9999") from None
        runners = dict(self._runners)
        token = uuid4()
        with self.store.unit_of_work() as unit:
            claimed = unit.steps.claim(
                at, lease=token, until=until, limit=limit, kinds=tuple(runners)
            )
            unit.commit()
        outcomes: list[Step] = []
        try:
            outcomes.extend(self._run_one(runners[step.kind], step, at) for step in claimed)
        finally:
            recorded: frozenset[UUID] = frozenset()
            if outcomes:
                with self.store.unit_of_work() as unit:
                    recorded = unit.steps.settle(outcomes, lease=token)
                    unit.commit()

        def ids(status: StepStatus) -> tuple[UUID, ...]:
            return tuple(s.id for s in outcomes if s.status is status and s.id in recorded)

        return RunReport(
            claimed=tuple(s.id for s in claimed),
            done=ids(StepStatus.DONE),
            failed=ids(StepStatus.FAILED),
            dead=ids(StepStatus.DEAD),
            lost=tuple(s.id for s in outcomes if s.id not in recorded),
        )

    def _run_one(self, runner: _Runner, step: Step, now: datetime) -> Step:
        with _running(step):
            try:
                runner.run(self, step)  # type: ignore[arg-type]  # self is the CRM
            except Exception as error:  # a runner's failure is recorded, not raised
                return step_failed(
                    step,
                    now=now,
                    error=f"{type(error).__name__}: {error}",
                    max_attempts=runner.max_attempts,
                    base=runner.retry_after,
                )
        return step_done(step, now=now)


@contextmanager
def _running(step: Step) -> Iterator[None]:
    token = RUNNING_STEP.set(step)
    try:
        with caused_by(step.id):  # the events its use cases record name the step
            yield
    finally:
        RUNNING_STEP.reset(token)
