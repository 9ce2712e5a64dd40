"""Argument checks and rules of the outbox that every adapter shares."""

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID

import attrs

from crmkit.automation import LANES, Delivery, DeliveryStatus, Event, Recorded, Taken, lane_of
from crmkit.clock import ensure_utc
from crmkit.errors import ValidationError
from crmkit.storage._base import check_count, check_id

__all__ = [
    "HANDLER_LIMIT",
    "check_claim",
    "check_count",
    "check_events",
    "check_finish",
    "check_handler",
    "check_handlers",
    "check_lanes",
    "check_position",
    "check_settled",
    "check_settled_many",
    "check_status",
    "check_take",
    "check_types",
    "split_outcomes",
]

HANDLER_LIMIT: Final = 200
"""The longest handler name, in characters."""


def check_events(events: object) -> list[Event]:
    """``events`` as a list, each item an event (else the error names ``events[i]``)."""
    if isinstance(events, str | bytes | Event) or not isinstance(events, Iterable):
        raise ValidationError("events", events, "expected a collection of events")
    found = list(events)
    for index, event in enumerate(found):
        if not isinstance(event, Event):
            raise ValidationError(f"events[{index}]", event, "expected an Event")
    return found


def check_handler(handler: object, field: str = "handler") -> str:
    """A handler name: 1 to 200 characters, not only spaces."""
    if not isinstance(handler, str) or not handler.strip() or len(handler) > HANDLER_LIMIT:
        raise ValidationError(field, handler, f"expected a name of 1 to {HANDLER_LIMIT} characters")
    return handler


def check_handlers(handlers: object) -> list[str]:
    """A collection of handler names."""
    if isinstance(handlers, str) or not isinstance(handlers, Iterable):
        raise ValidationError("handlers", handlers, "expected a collection of handler names")
    return sorted({check_handler(h, "handlers") for h in handlers})


def check_types(types: object) -> frozenset[str] | None:
    """Event type names, or ``None`` for all."""
    if types is None:
        return None
    if isinstance(types, str) or not isinstance(types, Iterable):
        raise ValidationError("types", types, "expected a collection of event types or None")
    found = list(types)
    for kind in found:
        if not isinstance(kind, str) or not kind:
            raise ValidationError("types", kind, "expected an event type name")
    return frozenset(found)


def check_position(value: object, field: str = "after") -> int:
    """A position (an int >= 0)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(field, value, "expected an int >= 0")
    return value


def check_status(status: object) -> DeliveryStatus | None:
    """A delivery status or ``None``."""
    if status is not None and not isinstance(status, DeliveryStatus):
        raise ValidationError("status", status, "expected a DeliveryStatus or None")
    return status


def check_claim(
    now: object, lease: object, limit: object, claim: object
) -> tuple[datetime, timedelta, int, UUID]:
    """The arguments of ``claim``."""
    at = ensure_utc(now, "now")
    if not isinstance(lease, timedelta) or lease <= timedelta(0):
        raise ValidationError("lease", lease, "expected a positive timedelta")
    return at, lease, check_count(limit), check_id(claim, "claim")


def check_settled(delivery: object) -> Delivery:
    """A delivery to settle: it names its claim, and a pending one its ``next_at``."""
    if not isinstance(delivery, Delivery):
        raise ValidationError("delivery", delivery, "expected a Delivery")
    if delivery.claim is None:
        raise ValidationError("delivery.claim", None, "settle a delivery as claim returned it")
    if delivery.status is DeliveryStatus.PENDING and delivery.next_at is None:
        raise ValidationError("delivery.next_at", None, "a pending delivery needs its next_at")
    return delivery


def check_settled_many(deliveries: object) -> list[Delivery]:
    """Deliveries to settle, each checked by :func:`check_settled`."""
    if isinstance(deliveries, Delivery) or not isinstance(deliveries, Iterable):
        raise ValidationError("deliveries", deliveries, "expected a collection of deliveries")
    found = list(deliveries)
    for index, delivery in enumerate(found):
        try:
            check_settled(delivery)
        except ValidationError as error:
            raise error.within(f"deliveries[{index}]") from None
    return found


def check_take(
    now: object, lease: object, limit: object, claim: object, lanes: object
) -> tuple[datetime, timedelta, int, UUID, int]:
    """The arguments of ``take``: those of :func:`check_claim` and ``lanes``, an int
    from 1 to :data:`~crmkit.automation.LANES`."""
    at, span, most, token = check_claim(now, lease, limit, claim)
    return at, span, most, token, check_lanes(lanes)


def check_lanes(lanes: object) -> int:
    """How many lanes to take: an int from 1 to :data:`~crmkit.automation.LANES`."""
    if isinstance(lanes, bool) or not isinstance(lanes, int) or not 1 <= lanes <= LANES:
        raise ValidationError("lanes", lanes, f"expected an int from 1 to {LANES}")
    return lanes


def check_finish(
    taken: object, at: object, failures: object
) -> tuple[Taken, datetime, dict[int, Delivery]]:
    """The arguments of ``finish``: the take, the time, and the failures by position,
    each a pending (with ``next_at``) or dead delivery of an event of the take, to its
    handler, under its claim."""
    if not isinstance(taken, Taken):
        raise ValidationError("taken", taken, "expected a Taken, as take returned it")
    when = ensure_utc(at, "at")
    if isinstance(failures, Delivery) or not isinstance(failures, Iterable):
        raise ValidationError("failures", failures, "expected a collection of deliveries")
    for index, recorded in enumerate(taken.events):
        if not isinstance(recorded.position, int) or not isinstance(recorded.event, Event):
            raise ValidationError(f"taken.events[{index}]", recorded, "expected a Recorded event")
    positions = {r.position: r.event for r in taken.events}
    found: dict[int, Delivery] = {}
    for index, failure in enumerate(failures):
        field = f"failures[{index}]"
        if not isinstance(failure, Delivery):
            raise ValidationError(field, failure, "expected a Delivery")
        event = positions.get(failure.position)
        if (
            event is None
            or failure.event_id != event.id
            or failure.handler != taken.handler
            or failure.claim != taken.claim
        ):
            raise ValidationError(field, failure, "not a delivery of an event of this take")
        if failure.status is DeliveryStatus.DONE:
            raise ValidationError(field, failure.status, "a failure is pending or dead")
        if failure.status is DeliveryStatus.PENDING and failure.next_at is None:
            raise ValidationError(f"{field}.next_at", None, "a pending failure needs its next_at")
        found[failure.position] = failure
    return taken, when, found


def split_outcomes(
    taken: Taken, failures: dict[int, Delivery], lanes: Iterable[int]
) -> tuple[list[Recorded], list[Recorded], list[Delivery]]:
    """What :meth:`~crmkit.storage.OutboxRepository.finish` records for the events of
    ``taken`` in ``lanes``, by position: the events delivered (done), the events held
    (pending, no attempt: their subject waits or failed earlier in the take) and the
    failures as given (lease fields cleared)."""
    kept = set(lanes)
    held_subjects = set(taken.waiting)
    done: list[Recorded] = []
    held: list[Recorded] = []
    failed: list[Delivery] = []
    for recorded in taken.events:
        subject = recorded.event.subject_id
        if lane_of(subject) not in kept:
            continue
        failure = failures.get(recorded.position)
        if failure is not None:
            held_subjects.add(subject)
            failed.append(attrs.evolve(failure, claim=None, leased_until=None))
        elif subject in held_subjects:
            held.append(recorded)
        else:
            done.append(recorded)
    return done, held, failed
