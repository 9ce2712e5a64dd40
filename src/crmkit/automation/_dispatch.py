"""Delivery of outbox events to handlers: the records and the retry policy.

The outbox (:class:`crmkit.storage.OutboxRepository`) keeps every committed event with
its *position*: 1, 2, 3 ... per tenant, in commit order. A handler subscribes to event
types under a unique name; for each event of those types the store keeps one
:class:`Delivery` per handler, which says whether the handler has received it
(``done``), must still get it (``pending``, after ``next_at``) or gave up
(``dead``, after ``max_attempts`` failures). A failed attempt is retried after
:func:`backoff`, doubling from :data:`RETRY_BASE` up to :data:`RETRY_MAX`.

Fresh events reach a handler through its *lanes*: the events of one subject id always
fall in the same one of :data:`LANES` lanes (:func:`lane_of`), and each lane of each
handler has a cursor, the position up to which its events were delivered or recorded.
A dispatcher leases a few lanes at a time (:class:`Taken`), calls the handler for their
events and then records the outcomes and moves the cursors: one delivery row per event,
written once. Several dispatchers work on different lanes of one handler at once.
"""

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final
from uuid import UUID

import attrs

from crmkit.automation._events import Event, quick_check
from crmkit.errors import ValidationError
from crmkit.models._shape import shape_problems

__all__ = [
    "LANES",
    "RETRY_BASE",
    "RETRY_MAX",
    "Delivery",
    "DeliveryStatus",
    "DispatchReport",
    "Lane",
    "Recorded",
    "SubscriptionStart",
    "Taken",
    "backoff",
    "lane_of",
]

RETRY_BASE: Final = timedelta(seconds=10)
"""The wait after a handler's first failure (doubled after each further one)."""
RETRY_MAX: Final = timedelta(hours=1)
"""The longest wait between two attempts."""


LANES: Final = 16
"""How many lanes the events of each handler are split into (by subject id)."""


def lane_of(subject_id: UUID) -> int:
    """The lane of the events of ``subject_id``: ``subject_id.int % LANES`` (0 to 15)."""
    if not isinstance(subject_id, UUID):
        raise ValidationError("subject_id", subject_id, "expected a UUID")
    return subject_id.int % LANES


def backoff(attempts: int) -> timedelta:
    """How long to wait before the next attempt after ``attempts`` failures (1 or more):
    ``RETRY_BASE * 2 ** (attempts - 1)``, at most ``RETRY_MAX``."""
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValidationError("attempts", attempts, "expected an int >= 1")
    if attempts > 20:
        return RETRY_MAX
    wait: timedelta = RETRY_BASE * 2 ** (attempts - 1)
    return min(wait, RETRY_MAX)


def _check_shape(obj: object) -> None:
    """Refuse an instance whose fields do not have their annotated types."""
    if quick_check(obj):
        return
    problems = shape_problems(obj)
    if problems:
        raise ValidationError.of(problems)


@attrs.frozen
class Recorded:
    """An event as the outbox holds it: its ``position`` (1, 2, 3 ... per tenant, in
    commit order) and the event."""

    position: int
    event: Event


class SubscriptionStart(StrEnum):
    """Where the deliveries of a handler subscribed under a new name begin (see
    :meth:`crmkit.crm.CRM.subscribe`); a name the store has seen keeps its place."""

    BEGINNING = "beginning"
    """With the first event stored: the handler gets the whole history."""
    NOW = "now"
    """With the next event recorded: the history stored so far is not delivered."""


class DeliveryStatus(StrEnum):
    """Where the delivery of one event to one handler stands."""

    PENDING = "pending"
    """Not yet delivered: due at ``next_at`` (after a failure, later)."""
    DONE = "done"
    """The handler returned: it is never called again for this event."""
    DEAD = "dead"
    """The handler failed ``max_attempts`` times: a dead letter, until retried."""


@attrs.frozen(kw_only=True)
class Delivery:
    """The delivery of the event at ``position`` to the handler named ``handler``.

    ``attempts`` counts the calls that failed; ``error`` is the last failure
    (``"ValueError: the message"``); ``next_at`` is when a pending delivery is due;
    ``claim`` and ``leased_until`` are set while a dispatcher holds it (another
    dispatcher may take it over once the lease has run out); ``finished_at`` is when it
    became done or dead.
    """

    position: int
    event_id: UUID
    event_type: str
    handler: str
    subject_id: UUID
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    next_at: datetime | None = None
    claim: UUID | None = None
    leased_until: datetime | None = None
    error: str | None = None
    finished_at: datetime | None = None

    def __attrs_post_init__(self) -> None:
        _check_shape(self)


@attrs.frozen(kw_only=True)
class DispatchReport:
    """What one :meth:`crmkit.crm.CRM.dispatch` did: handler calls that returned
    (``delivered``), that raised and will be retried (``failed``), that raised for the
    last time (``dead``), and results that were not recorded because the lease ran out
    and another dispatcher took the delivery over (``lost``)."""

    delivered: int = 0
    failed: int = 0
    dead: int = 0
    lost: int = 0

    @property
    def calls(self) -> int:
        """How many times a handler was called."""
        return self.delivered + self.failed + self.dead + self.lost


@attrs.frozen(kw_only=True)
class Lane:
    """One lane of a handler in a :class:`Taken`: every event of the lane up to position
    ``start`` was delivered or recorded; the take holds its events of the handler's types
    after ``start`` up to ``end``, and finishing the take moves the lane's cursor to
    ``end``."""

    lane: int
    start: int
    end: int

    def __attrs_post_init__(self) -> None:
        _check_shape(self)


@attrs.frozen(kw_only=True)
class Taken:
    """What :meth:`crmkit.storage.OutboxRepository.take` leased to one dispatcher: lanes
    of ``handler`` (leased to ``claim`` until ``leased_until``) and their fresh events, by
    position. ``waiting`` holds the subject ids of those events that have a pending
    delivery to the handler (a retry, or events held behind one): their events must wait
    behind it, and :meth:`~crmkit.storage.OutboxRepository.finish` records them pending
    instead of delivered."""

    handler: str
    claim: UUID
    leased_until: datetime
    lanes: tuple[Lane, ...]
    events: tuple[Recorded, ...]
    waiting: frozenset[UUID] = frozenset()

    def __attrs_post_init__(self) -> None:
        _check_shape(self)
