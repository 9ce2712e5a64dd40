"""What every adapter's step repository checks, shared so that the adapters cannot
disagree (see :class:`crmkit.storage.StepRepository`)."""

from datetime import datetime
from typing import Final
from uuid import UUID

import attrs

from crmkit.automation import Step, StepStatus
from crmkit.clock import ensure_utc
from crmkit.errors import ValidationError
from crmkit.storage._base import check_id, check_limit, check_many

__all__ = [
    "MAX_CLAIM",
    "StepFilter",
    "check_new_step",
    "check_step",
    "check_step_claim",
    "check_steps_settled",
    "settled",
    "step_filter",
]

MAX_CLAIM: Final = 10_000
"""The most steps one claim may take."""


def check_step(value: object) -> Step:
    """``value`` if it is a :class:`~crmkit.automation.Step` (field ``step``)."""
    if not isinstance(value, Step):
        raise ValidationError("step", value, "expected a Step")
    return value


def check_new_step(value: object) -> Step:
    """``value`` if it is a step that may be scheduled: pending, never claimed."""
    step = check_step(value)
    if step.status is not StepStatus.PENDING or step.attempts != 0:
        raise ValidationError("step", step, "a scheduled step is pending, with no attempts")
    return step


_OUTCOMES: Final = frozenset({StepStatus.DONE, StepStatus.FAILED, StepStatus.DEAD})


def check_steps_settled(values: object, lease: object) -> tuple[list[Step], UUID]:
    """``values`` if they are runs' outcomes (done, failed or dead steps, each id once;
    field ``steps[3]``), and the lease (field ``lease``)."""
    steps = []
    seen: set[UUID] = set()
    for index, value in enumerate(check_many(values, "steps")):
        if not isinstance(value, Step) or value.status not in _OUTCOMES:
            raise ValidationError(f"steps[{index}]", value, "expected a done, failed or dead Step")
        if value.id in seen:
            raise ValidationError(f"steps[{index}]", value, "this step is given twice")
        seen.add(value.id)
        steps.append(value)
    return steps, check_id(lease, "lease")


def settled(stored: Step, outcome: Step, lease: UUID) -> Step | None:
    """The step to store for ``outcome`` if ``stored`` is still running under ``lease``
    (its outcome fields written, its lease released), else ``None``."""
    if stored.status is not StepStatus.RUNNING or stored.lease != lease:
        return None
    return attrs.evolve(
        stored,
        status=outcome.status,
        due_at=outcome.due_at,
        last_error=outcome.last_error,
        finished_at=outcome.finished_at,
        lease=None,
        leased_until=None,
    )


def check_step_claim(
    now: object, lease: object, until: object, limit: object, kinds: object = None
) -> tuple[datetime, datetime, frozenset[str] | None]:
    """The checked ``now`` and ``until`` of a claim (aware, UTC) and its kinds, after
    checking its other arguments: ``until`` after ``now``, ``lease`` a UUID, ``limit``
    from 1 to :data:`MAX_CLAIM`, ``kinds`` ``None`` or a collection of str."""
    at = ensure_utc(now, "now")
    check_id(lease, "lease")
    end = ensure_utc(until, "until")
    if end <= at:
        raise ValidationError("until", until, "a lease ends after now")
    if type(limit) is not int or not 1 <= limit <= MAX_CLAIM:
        raise ValidationError("limit", limit, f"expected an int from 1 to {MAX_CLAIM}")
    if kinds is None:
        return at, end, None
    found = []
    for index, kind in enumerate(check_many(kinds, "kinds")):
        if not isinstance(kind, str):
            raise ValidationError(f"kinds[{index}]", kind, "expected a str")
        found.append(kind)
    return at, end, frozenset(found)


@attrs.frozen
class StepFilter:
    """The checked filters of :meth:`~crmkit.storage.StepRepository.select`."""

    status: StepStatus | None
    kind: str | None
    subject_id: UUID | None
    limit: int | None

    def matches(self, step: Step) -> bool:
        """Whether ``step`` passes every filter (the limit aside)."""
        return (
            (self.status is None or step.status is self.status)
            and (self.kind is None or step.kind == self.kind)
            and (self.subject_id is None or step.subject_id == self.subject_id)
        )


def step_filter(status: object, kind: object, subject_id: object, limit: object) -> StepFilter:
    """The filters of a step look-up, checked."""
    if status is not None and not isinstance(status, StepStatus):
        raise ValidationError("status", status, "expected a StepStatus or None")
    if kind is not None and not isinstance(kind, str):
        raise ValidationError("kind", kind, "expected a str or None")
    if subject_id is not None:
        check_id(subject_id, "subject_id")
    return StepFilter(status, kind, subject_id, check_limit(limit))  # type: ignore[arg-type]
