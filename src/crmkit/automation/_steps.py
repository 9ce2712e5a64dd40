"""Durable timers: a :class:`Step` is work stored to run at ``due_at``, and what happens
to it when a worker claims it, runs it, and the run succeeds or fails.

Pure functions over frozen values: the stores keep steps (see
:class:`crmkit.storage.StepRepository`), :meth:`crmkit.crm.CRM.run_due` drives them.

A step's life::

    pending --claim--> running --run ok--> done
                          |  \\--runner raised--> failed (due again after a backoff)
                          |                       or dead (after max_attempts claims)
                          \\--lease ran out (its worker died)--> claimable again

A claim takes a *lease*: a token (``lease``) and a time (``leased_until``). Until then no
other claim gets the step; afterwards it is claimable again, so a step whose worker was
killed is not lost but may run twice. Runners are therefore idempotent by ``step.id``.
"""

import enum
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final
from uuid import UUID, uuid4

import attrs

from crmkit.clock import ensure_utc
from crmkit.errors import ValidationError

__all__ = [
    "MAX_ERROR_CHARS",
    "MAX_PAYLOAD_BYTES",
    "Payload",
    "RunReport",
    "Step",
    "StepStatus",
    "check_payload",
    "claim_step",
    "is_claimable",
    "new_step",
    "payload_from_json",
    "payload_to_json",
    "retry_delay",
    "step_done",
    "step_failed",
]

MAX_PAYLOAD_BYTES: Final = 65_536
"""The largest payload a step may carry, as compact JSON in UTF-8."""
MAX_ERROR_CHARS: Final = 2000
"""A failed run's error is kept up to this many characters."""
_MAX_KIND: Final = 100
_MAX_SUBJECT: Final = 32


class StepStatus(enum.StrEnum):
    """Where a step stands."""

    PENDING = "pending"
    """Scheduled, not claimed yet: claimable from ``due_at``."""
    RUNNING = "running"
    """Claimed by a worker under a lease: claimable again once ``leased_until`` passes."""
    DONE = "done"
    """Its runner returned: never claimed again."""
    FAILED = "failed"
    """Its runner raised and it has attempts left: claimable again from ``due_at``."""
    DEAD = "dead"
    """Its runner raised on its last allowed attempt: never claimed again."""


CLAIMABLE: Final = frozenset({StepStatus.PENDING, StepStatus.FAILED, StepStatus.RUNNING})
"""The statuses of steps a claim may take (running ones only once their lease ran out)."""


class Payload(dict[str, Any]):
    """A step's payload: a JSON object, checked once (:func:`check_payload`), read-only.

    It compares equal to a ``dict`` with the same items; changing it raises
    :class:`TypeError`.
    """

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> None:
        raise TypeError("a step's payload is read-only: schedule a step with another")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]
    __ior__ = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple[object, ...]:
        return (Payload, (dict(self),))


def _not_json(constant: str) -> None:
    raise ValidationError("payload", constant, "not JSON: NaN and infinities are refused")


def payload_from_json(text: str) -> Payload:
    """The payload stored as JSON ``text`` (what :func:`payload_to_json` wrote); a
    :class:`~crmkit.errors.ValidationError` for text that is no JSON object."""
    try:
        found = json.loads(text, parse_constant=_not_json)
    except (TypeError, ValueError, RecursionError) as error:
        if isinstance(error, ValidationError):
            raise
        raise ValidationError("payload", text, f"not JSON: {error}") from None
    if not isinstance(found, dict):
        raise ValidationError("payload", text, "expected a JSON object")
    return Payload(found)


def payload_to_json(payload: Mapping[str, Any]) -> str:
    """A checked payload as compact JSON text, read back equal by
    :func:`payload_from_json`."""
    return json.dumps(check_payload(payload), allow_nan=False, separators=(",", ":"))


def check_payload(payload: object, field: str = "payload") -> Payload:
    """``payload`` as a read-only :class:`Payload` if it is a JSON object that comes back
    equal from JSON (str keys; str, int, finite float, bool, None, lists and objects of
    them) and is at most :data:`MAX_PAYLOAD_BYTES` long; else a
    :class:`~crmkit.errors.ValidationError` naming ``field``. Nothing is converted:
    a tuple, a set, a UUID or a datetime is refused, not turned into text."""
    if type(payload) is Payload:
        return payload  # checked when it was made
    if not isinstance(payload, Mapping):
        raise ValidationError(field, payload, "expected a JSON object (a dict with str keys)")
    try:
        text = json.dumps(dict(payload), allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as error:
        raise ValidationError(field, payload, f"not JSON-serialisable: {error}") from None
    if len(text.encode()) > MAX_PAYLOAD_BYTES:
        raise ValidationError(
            field, payload, f"longer than {MAX_PAYLOAD_BYTES} bytes as JSON ({len(text)})"
        )
    copy = json.loads(text)
    if not _same_json(copy, payload):
        raise ValidationError(
            field, payload, "does not come back equal from JSON (tuples, non-str keys, ...)"
        )
    return Payload(copy)


def _same_json(read: object, given: object) -> bool:
    """Whether ``given`` is exactly what JSON gave back as ``read`` (types included)."""
    if isinstance(read, dict):
        return (
            isinstance(given, Mapping)
            and len(given) == len(read)
            and all(type(k) is str and k in read and _same_json(read[k], given[k]) for k in given)
        )
    if isinstance(read, list):
        return (
            type(given) is list
            and len(given) == len(read)
            and all(_same_json(r, g) for r, g in zip(read, given, strict=True))
        )
    return type(read) is type(given) and read == given


def _check_text(value: object, field: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ValidationError(field, value, f"expected a non-blank str of at most {limit} chars")
    return value


def _check_step(step: "Step") -> None:
    if not isinstance(step.id, UUID):
        raise ValidationError("id", step.id, "expected a UUID")
    _check_text(step.kind, "kind", _MAX_KIND)
    if step.subject is not None:
        _check_text(step.subject, "subject", _MAX_SUBJECT)
    if step.subject_id is not None and not isinstance(step.subject_id, UUID):
        raise ValidationError("subject_id", step.subject_id, "expected a UUID or None")
    if type(step.attempts) is not int or step.attempts < 0:
        raise ValidationError("attempts", step.attempts, "expected an int >= 0")
    if not isinstance(step.status, StepStatus):
        raise ValidationError("status", step.status, "expected a StepStatus")
    if step.last_error is not None and not isinstance(step.last_error, str):
        raise ValidationError("last_error", step.last_error, "expected a str or None")
    if step.lease is not None and not isinstance(step.lease, UUID):
        raise ValidationError("lease", step.lease, "expected a UUID or None")
    held = step.status is StepStatus.RUNNING
    if held != (step.lease is not None) or held != (step.leased_until is not None):
        raise ValidationError(
            "lease", step.lease, "a running step has a lease and leased_until, no other step"
        )
    finished = step.status in (StepStatus.DONE, StepStatus.DEAD)
    if finished != (step.finished_at is not None):
        raise ValidationError(
            "finished_at", step.finished_at, "done and dead steps have it, no other step"
        )


def _due_at(value: object) -> datetime:
    return ensure_utc(value, "due_at")


def _created_at(value: object) -> datetime:
    return ensure_utc(value, "created_at")


def _leased_until(value: object) -> datetime | None:
    return None if value is None else ensure_utc(value, "leased_until")


def _finished_at(value: object) -> datetime | None:
    return None if value is None else ensure_utc(value, "finished_at")


@attrs.frozen
class Step:
    """A piece of work stored to run at ``due_at`` by the runner registered for
    ``kind`` (see :meth:`crmkit.crm.CRM.register_runner`).

    ``id`` is the idempotency key of the step's effects: a runner that creates entities
    gives them ids derived from it (``uuid5(step.id, "task")``), so that a second run
    of the same step (after its worker died) finds them stored and does nothing.
    ``payload`` is a JSON object (see :func:`check_payload`); ``subject`` and
    ``subject_id`` name what the step is about (``"contact"``, a contact id), for
    look-ups. ``attempts`` counts claims; ``lease`` and ``leased_until`` are the current
    claim's token and end (running steps only); ``last_error`` is the last failed run's
    error; ``finished_at`` is when the step became done or dead.
    Invalid values raise :class:`~crmkit.errors.ValidationError` naming the field.
    """

    id: UUID
    kind: str
    payload: Mapping[str, Any] = attrs.field(converter=check_payload)
    due_at: datetime = attrs.field(converter=_due_at)
    created_at: datetime = attrs.field(converter=_created_at)
    subject: str | None = None
    subject_id: UUID | None = None
    attempts: int = 0
    status: StepStatus = StepStatus.PENDING
    lease: UUID | None = None
    leased_until: datetime | None = attrs.field(default=None, converter=_leased_until)
    last_error: str | None = None
    finished_at: datetime | None = attrs.field(default=None, converter=_finished_at)

    def __attrs_post_init__(self) -> None:
        _check_step(self)


def new_step(
    kind: str,
    payload: Mapping[str, Any],
    *,
    due_at: datetime,
    now: datetime,
    step_id: UUID | None = None,
    subject: str | None = None,
    subject_id: UUID | None = None,
) -> Step:
    """A pending step (a new random id unless ``step_id`` is given), checked."""
    if step_id is not None and not isinstance(step_id, UUID):
        raise ValidationError("step_id", step_id, "expected a UUID or None")
    return Step(
        id=uuid4() if step_id is None else step_id,
        kind=kind,
        payload=payload,
        due_at=due_at,
        created_at=ensure_utc(now, "now"),
        subject=subject,
        subject_id=subject_id,
    )


def _check(step: object) -> Step:
    if not isinstance(step, Step):
        raise ValidationError("step", step, "expected a Step")
    return step


def _check_positive(value: object, field: str) -> timedelta:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise ValidationError(field, value, "expected a positive timedelta")
    return value


def is_claimable(step: Step, now: datetime) -> bool:
    """Whether a claim at ``now`` may take ``step``: pending or failed and due, or
    running under a lease that ran out."""
    step, now = _check(step), ensure_utc(now, "now")
    if step.status is StepStatus.RUNNING:
        assert step.leased_until is not None
        return step.leased_until <= now
    return step.status in CLAIMABLE and step.due_at <= now


def claim_step(step: Step, *, lease: UUID, until: datetime) -> Step:
    """``step`` claimed under ``lease`` until ``until``: running, one attempt more."""
    step = _check(step)
    if step.status not in CLAIMABLE:
        raise ValidationError("step", step, "a done or dead step is never claimed")
    if not isinstance(lease, UUID):
        raise ValidationError("lease", lease, "expected a UUID")
    return attrs.evolve(
        step,
        status=StepStatus.RUNNING,
        attempts=step.attempts + 1,
        lease=lease,
        leased_until=until,
    )


def step_done(step: Step, *, now: datetime) -> Step:
    """``step`` after its runner returned: done, its lease released."""
    step = _check(step)
    return attrs.evolve(
        step, status=StepStatus.DONE, lease=None, leased_until=None, finished_at=now
    )


def retry_delay(
    attempts: int,
    *,
    base: timedelta = timedelta(seconds=30),
    cap: timedelta = timedelta(hours=1),
) -> timedelta:
    """How long a step that failed on its ``attempts``-th claim waits before it is due
    again: ``base`` doubled per attempt after the first, at most ``cap``."""
    if type(attempts) is not int or attempts < 1:
        raise ValidationError("attempts", attempts, "expected an int >= 1")
    _check_positive(base, "base")
    _check_positive(cap, "cap")
    try:
        grown: timedelta = base * 2 ** min(attempts - 1, 64)
        return min(grown, cap)
    except OverflowError:  # beyond timedelta's range: the cap is smaller
        return cap


def step_failed(
    step: Step,
    *,
    now: datetime,
    error: str,
    max_attempts: int,
    base: timedelta = timedelta(seconds=30),
    cap: timedelta = timedelta(hours=1),
) -> Step:
    """``step`` after its runner raised ``error``: dead once it was claimed
    ``max_attempts`` times, else failed and due again after :func:`retry_delay`."""
    step, now = _check(step), ensure_utc(now, "now")
    if not isinstance(error, str):
        raise ValidationError("error", error, "expected a str")
    if type(max_attempts) is not int or max_attempts < 1:
        raise ValidationError("max_attempts", max_attempts, "expected an int >= 1")
    error = error[:MAX_ERROR_CHARS]
    if step.attempts >= max_attempts:
        return attrs.evolve(
            step,
            status=StepStatus.DEAD,
            lease=None,
            leased_until=None,
            last_error=error,
            finished_at=now,
        )
    return attrs.evolve(
        step,
        status=StepStatus.FAILED,
        lease=None,
        leased_until=None,
        last_error=error,
        due_at=_later(now, retry_delay(max(step.attempts, 1), base=base, cap=cap)),
    )


def _later(now: datetime, delay: timedelta) -> datetime:
    try:
        return now + delay
    except OverflowError:
        raise ValidationError("now", now, "a retry after it lies beyond the year 9999") from None


@attrs.frozen
class RunReport:
    """What one :meth:`crmkit.crm.CRM.run_due` did, by step id.

    ``claimed`` is every step it claimed; each ended ``done`` (its runner returned),
    ``failed`` (it raised and will be retried), ``dead`` (it raised on its last
    attempt) or ``lost`` (its lease ran out and another worker claimed it before this
    one could record the outcome: that worker's outcome counts).
    """

    claimed: tuple[UUID, ...] = ()
    done: tuple[UUID, ...] = ()
    failed: tuple[UUID, ...] = ()
    dead: tuple[UUID, ...] = ()
    lost: tuple[UUID, ...] = ()

    @property
    def ran(self) -> int:
        """How many steps were run."""
        return len(self.claimed)
