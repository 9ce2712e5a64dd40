"""The CRM's events: reading the outbox, subscriptions, the dispatcher, the sweep of
time-based events, dead letters (a mixin of :class:`crmkit.crm.CRM`)."""

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID, uuid4, uuid5

import attrs

from crmkit.automation import (
    EVENT_TYPES,
    LANES,
    Delivery,
    DeliveryStatus,
    DispatchReport,
    Event,
    Recorded,
    SlaAtRisk,
    SlaBreached,
    SubscriptionStart,
    Taken,
    TaskDue,
    TaskOverdue,
    backoff,
    caused_by,
    current_cause,
    lane_of,
)
from crmkit.clock import Clock, ensure_utc
from crmkit.errors import ValidationError
from crmkit.lifecycle import SlaReport, SlaState
from crmkit.models import TaskStatus, Ticket, TicketStatus
from crmkit.models._fields import member_of
from crmkit.segmentation import field, tickets_where
from crmkit.storage import Store, UnitOfWork
from crmkit.storage._outbox import check_count, check_handler, check_lanes

if TYPE_CHECKING:
    from crmkit.crm._service import CRM

__all__ = ["ALL_EVENTS", "EventUseCases", "Handler"]

Handler = Callable[["CRM", Event], None]
"""A handler: called with the CRM and one event, outside any unit of work."""

ALL_EVENTS: Final = "*"
"""The event type of a subscription to every event."""

_SWEEP: Final = UUID("6f1d3c8e-2b7a-5e44-9a0b-3c5d7e9f1a2b")
"""The namespace of the ids of the sweep's events (one id per subject, target, level)."""
_UNSOLVED: Final = tuple(
    s.value for s in TicketStatus if s not in {TicketStatus.SOLVED, TicketStatus.CLOSED}
)
_ROUNDS: Final = 100


@attrs.frozen
class _Subscription:
    handler: Handler
    types: frozenset[str] | None
    max_attempts: int


def _counted(
    report: DispatchReport,
    outcomes: list[Delivery],
    released: set[tuple[str, int]],
    recorded: list[bool],
) -> DispatchReport:
    """``report`` with the settled ``outcomes`` added (``recorded``: whether the store
    kept each; ``released``: the keys of those not called, which count for nothing)."""
    counts = {"delivered": 0, "failed": 0, "dead": 0, "lost": 0}
    for outcome, kept in zip(outcomes, recorded, strict=True):
        if (outcome.handler, outcome.position) in released:
            continue  # not called: settled as it was, its lease ends
        if not kept:
            counts["lost"] += 1
        elif outcome.status is DeliveryStatus.DONE:
            counts["delivered"] += 1
        elif outcome.status is DeliveryStatus.DEAD:
            counts["dead"] += 1
        else:
            counts["failed"] += 1
    return DispatchReport(
        delivered=report.delivered + counts["delivered"],
        failed=report.failed + counts["failed"],
        dead=report.dead + counts["dead"],
        lost=report.lost + counts["lost"],
    )


def _failed(delivery: Delivery, error: Exception, max_attempts: int, at: datetime) -> Delivery:
    """``delivery`` after its handler raised ``error``: dead after ``max_attempts``
    failures, else pending again after :func:`~crmkit.automation.backoff`."""
    attempts = delivery.attempts + 1
    text = f"{type(error).__name__}: {error}"[:2000]
    if attempts >= max_attempts:
        return attrs.evolve(
            delivery,
            status=DeliveryStatus.DEAD,
            attempts=attempts,
            error=text,
            finished_at=at,
        )
    return attrs.evolve(delivery, attempts=attempts, error=text, next_at=at + backoff(attempts))


def _finished(
    report: DispatchReport,
    taken: Taken,
    failures: list[Delivery],
    called: dict[int, int],
    kept: frozenset[int],
) -> DispatchReport:
    """``report`` with the calls of a finished take added: in the lanes recorded
    (``kept``) the calls that returned, failed or died; in the others, lost ones."""
    counts = {"failed": 0, "dead": 0}
    fails: dict[int, int] = {}
    for failure in failures:
        lane = lane_of(failure.subject_id)
        fails[lane] = fails.get(lane, 0) + 1
        if lane in kept:
            counts["dead" if failure.status is DeliveryStatus.DEAD else "failed"] += 1
    delivered = sum(n - fails.get(lane, 0) for lane, n in called.items() if lane in kept)
    lost = sum(n for lane, n in called.items() if lane not in kept)
    return DispatchReport(
        delivered=report.delivered + delivered,
        failed=report.failed + counts["failed"],
        dead=report.dead + counts["dead"],
        lost=report.lost + lost,
    )


class EventUseCases:
    """Reading the outbox, subscribing handlers, dispatching (see ``CRM``)."""

    store: Store
    clock: Clock
    _records_events: bool = True
    """A private switch: ``False`` records no events (the benchmark of their cost)."""

    def _unit(
        self, by: str | None = None, *, audits: bool = True
    ) -> AbstractContextManager[UnitOfWork]:
        raise NotImplementedError  # pragma: no cover - CRM's

    def _sla(self, unit: UnitOfWork, ticket: Ticket, now: datetime) -> SlaReport:
        raise NotImplementedError  # pragma: no cover - CRM's

    @property
    def _subscriptions(self) -> dict[str, _Subscription]:
        found: dict[str, _Subscription] | None = self.__dict__.get("_subscribed")
        if found is None:
            found = self.__dict__["_subscribed"] = {}
        return found

    # ------------------------------------------------------------------ the outbox

    def events(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        types: Iterable[str] | None = None,
        subject_id: UUID | None = None,
    ) -> list[Recorded]:
        """The recorded events after position ``after`` (1, 2, 3 ... in commit order), at
        most ``limit``, of ``types`` and of one subject id if given."""
        with self.store.unit_of_work() as unit:
            return unit.outbox.read(after=after, limit=limit, types=types, subject_id=subject_id)

    # ------------------------------------------------------------------ subscriptions

    def subscribe(
        self,
        event_type: str,
        handler: Handler,
        *,
        name: str,
        max_attempts: int = 5,
        start: SubscriptionStart = SubscriptionStart.BEGINNING,
    ) -> None:
        """Call ``handler(crm, event)`` for every event of ``event_type`` (one of
        :data:`~crmkit.automation.EVENT_TYPES`, or ``"*"`` for all).

        ``name`` identifies the handler in the store: its deliveries are recorded under
        it, so a handler that returned is never called again for that event, in this
        process or another. Subscribing the same handler under its name again adds an
        event type; another handler under a taken name is refused. A handler that raises
        is called again after :func:`~crmkit.automation.backoff`, and after
        ``max_attempts`` failures its delivery is dead (see :meth:`dead_letters`).

        ``start`` (a :class:`~crmkit.automation.SubscriptionStart` or its value) says
        where a name the store has not seen begins: ``"beginning"`` (the default) at
        the first stored event, so the handler gets the whole history of its types;
        ``"now"`` after the last event stored when ``subscribe`` returns, so it gets
        only the events recorded from then on. A name the store has seen (dispatched
        before, in this process or another) keeps its place whatever ``start`` says:
        subscribing again never skips nor repeats a delivery.
        """
        check_handler(name, "name")
        begin = member_of(SubscriptionStart, start, "start")
        if not isinstance(event_type, str) or (
            event_type != ALL_EVENTS and event_type not in EVENT_TYPES
        ):
            raise ValidationError("event_type", event_type, "no such event type (EVENT_TYPES)")
        if not callable(handler):
            raise ValidationError("handler", handler, "expected a callable(crm, event)")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
            raise ValidationError("max_attempts", max_attempts, "expected an int from 1 to 100")
        if not 1 <= max_attempts <= 100:
            raise ValidationError("max_attempts", max_attempts, "expected an int from 1 to 100")
        known = self._subscriptions.get(name)
        types: frozenset[str] | None = None if event_type == ALL_EVENTS else frozenset({event_type})
        if known is not None:
            if known.handler is not handler:
                raise ValidationError("name", name, "another handler is subscribed under it")
            types = None if known.types is None or types is None else known.types | types
        if begin is SubscriptionStart.NOW:
            with self.store.unit_of_work() as unit:
                unit.outbox.start_at_end(name)
                unit.commit()
        self._subscriptions[name] = _Subscription(handler, types, max_attempts)

    def dispatch(
        self,
        *,
        limit: int = 100,
        now: datetime | None = None,
        lease: timedelta = timedelta(minutes=5),
        lanes: int = LANES,
    ) -> DispatchReport:
        """Deliver up to ``limit`` due events to the subscribed handlers; returns what
        happened.

        At least once, in commit order per subject and handler: each handler call runs
        outside any unit of work (it may call use cases, whose events record the event
        as their cause), and its outcome is recorded per handler after the batch, in the
        unit of work that claims the next batch (one per round): a dispatcher that stops
        leaves at most its last batch to be delivered again once its lease ends. A
        handler that raises never undoes the use case that recorded the event: the
        delivery is retried after a backoff, and is dead after the subscription's
        ``max_attempts``. Several dispatchers (threads, processes) may run at once: the
        store leases each delivery to one of them for ``lease``; one that dies leaves
        its deliveries to be taken again when the lease has run out.

        Fresh events reach each handler through its :data:`~crmkit.automation.LANES`
        lanes (one subject's events share a lane); each round leases up to ``lanes`` of
        them (1 to 16) to this dispatcher. With every lane (the default) a dispatcher
        delivers a handler's events in commit order across subjects, and a second one
        finds the lanes taken; with ``lanes=4``, up to four dispatchers deliver one
        handler's events side by side, in commit order per subject.
        """
        most, width = check_count(limit), check_lanes(lanes)
        at = self.clock.now() if now is None else ensure_utc(now, "now")
        if not isinstance(lease, timedelta) or lease <= timedelta(0):
            raise ValidationError("lease", lease, "expected a positive timedelta")
        subscriptions = dict(self._subscriptions)
        report = DispatchReport()
        # Each round is one unit of work: it records the outcomes of the round before
        # (at least once: a dispatcher that stops leaves at most that round to be taken
        # again when its leases run out), then claims the due pending deliveries (retries
        # and the events waiting behind them) and takes fresh events of each handler's
        # lanes. The last round records the last outcomes only.
        outcomes: list[Delivery] = []
        released: set[tuple[str, int]] = set()
        takes: list[tuple[Taken, list[Delivery], dict[int, int]]] = []
        calls = 0
        for round in range(_ROUNDS + 1):
            if now is None and round:  # leases run from the round's start, not the call's
                at = self.clock.now()
            room = most - calls if round < _ROUNDS and subscriptions else 0
            if room <= 0 and not outcomes and not takes:
                break
            claimed: list[tuple[Delivery, Event]] = []
            fresh: list[Taken] = []
            with self.store.unit_of_work() as unit:
                recorded = unit.outbox.settle_many(outcomes) if outcomes else []
                finished = [
                    unit.outbox.finish(taken, at=at, failures=failures)
                    for taken, failures, _ in takes
                ]
                if room > 0:
                    token = uuid4()
                    claimed = unit.outbox.claim(
                        subscriptions, now=at, lease=lease, limit=room, claim=token
                    )
                    left = room - len(claimed)
                    for index, (name, subscription) in enumerate(subscriptions.items()):
                        if left <= 0:
                            break
                        share = -(-left // (len(subscriptions) - index))  # rounded up
                        taken = unit.outbox.take(
                            name,
                            subscription.types,
                            now=at,
                            lease=lease,
                            limit=share,
                            claim=token,
                            lanes=width,
                        )
                        if taken.events or taken.lanes:
                            fresh.append(taken)
                            left -= len(taken.events)
                unit.commit()
            report = _counted(report, outcomes, released, recorded)
            for (taken, failures, called), kept in zip(takes, finished, strict=True):
                report = _finished(report, taken, failures, called, kept)
            if not claimed and not fresh:
                break
            outcomes, released = self._deliver(subscriptions, claimed, at)
            calls += len(outcomes) - len(released)
            takes = [self._deliver_fresh(subscriptions[t.handler], t, at) for t in fresh]
            calls += sum(sum(called.values()) for _, _, called in takes)
        return report

    def _deliver_fresh(
        self, subscription: _Subscription, taken: Taken, at: datetime
    ) -> tuple[Taken, list[Delivery], dict[int, int]]:
        """Call the handler for the fresh events of ``taken`` in order, except those of
        a subject that waits (a pending delivery before them, or a failure earlier in
        this take): the take, its failures, and the calls per lane."""
        failures: list[Delivery] = []
        stopped = set(taken.waiting)
        called: dict[int, int] = {}
        handler = subscription.handler
        for recorded in taken.events:
            event = recorded.event
            subject = event.subject_id
            if subject in stopped:
                continue
            lane = lane_of(subject)
            called[lane] = called.get(lane, 0) + 1
            try:
                with caused_by(event.id):
                    handler(self, event)  # type: ignore[arg-type]
            except Exception as error:
                stopped.add(subject)
                failures.append(
                    _failed(
                        Delivery(
                            position=recorded.position,
                            event_id=event.id,
                            event_type=event.type,
                            handler=taken.handler,
                            subject_id=subject,
                            claim=taken.claim,
                            leased_until=taken.leased_until,
                        ),
                        error,
                        subscription.max_attempts,
                        at,
                    )
                )
        return taken, failures, called

    def _deliver(
        self,
        subscriptions: dict[str, _Subscription],
        claimed: list[tuple[Delivery, Event]],
        at: datetime,
    ) -> tuple[list[Delivery], set[tuple[str, int]]]:
        """Call the handlers of ``claimed``: their outcomes, and the keys of the
        deliveries not called (behind a failure in their lane), to settle unchanged."""
        outcomes: list[Delivery] = []
        released: set[tuple[str, int]] = set()
        stopped: set[tuple[str, UUID]] = set()
        for delivery, event in claimed:
            lane = (delivery.handler, delivery.subject_id)
            if lane in stopped:  # an earlier event of its subject failed: it waits
                outcomes.append(delivery)
                released.add((delivery.handler, delivery.position))
                continue
            subscription = subscriptions[delivery.handler]
            try:
                with caused_by(event.id):
                    subscription.handler(self, event)  # type: ignore[arg-type]
            except Exception as error:
                stopped.add(lane)
                outcome = _failed(delivery, error, subscription.max_attempts, at)
            else:
                outcome = attrs.evolve(delivery, status=DeliveryStatus.DONE, finished_at=at)
            outcomes.append(outcome)
        return outcomes, released

    # ------------------------------------------------------------------ deliveries

    def deliveries(
        self,
        *,
        handler: str | None = None,
        status: DeliveryStatus | None = None,
        event_id: UUID | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        """The recorded deliveries that match every filter given, by position."""
        with self.store.unit_of_work() as unit:
            return unit.outbox.deliveries(
                handler=handler,
                status=None if status is None else member_of(DeliveryStatus, status, "status"),
                event_id=event_id,
                limit=limit,
            )

    def dead_letters(self, *, handler: str | None = None, limit: int = 100) -> list[Delivery]:
        """The deliveries that failed ``max_attempts`` times, with their last error."""
        return self.deliveries(handler=handler, status=DeliveryStatus.DEAD, limit=limit)

    def retry_dead_letter(
        self, event_id: UUID, handler: str, *, now: datetime | None = None
    ) -> Delivery:
        """Make a dead delivery pending again (due ``now``, attempts counted afresh),
        once the handler's fault is fixed; the next :meth:`dispatch` calls it."""
        at = self.clock.now() if now is None else ensure_utc(now, "now")
        with self.store.unit_of_work() as unit:
            again = unit.outbox.retry(event_id, handler, at=at)
            unit.commit()
        return again

    # ------------------------------------------------------------------ time-based events

    def emit_due_events(
        self, now: datetime | None = None, *, notice: timedelta = timedelta(hours=1)
    ) -> list[Event]:
        """Record the events that time alone makes happen, and return the new ones.

        ``sla.at_risk`` and ``sla.breached`` for the SLA timers of unsolved tickets,
        ``task.due`` for open tasks due within ``notice`` and ``task.overdue`` for those
        past due. Each is recorded at most once per subject, target (the timer and its
        start; the task's due time) and level, however often the sweep runs, even by
        several processes at once: call it from a scheduler every minute or so.
        """
        at = self.clock.now() if now is None else ensure_utc(now, "now")
        if not isinstance(notice, timedelta) or notice < timedelta(0):
            raise ValidationError("notice", notice, "expected a timedelta >= 0")
        cause = current_cause()
        with self._unit() as unit:
            found = self._sla_events(unit, at, cause) + self._task_events(unit, at, notice, cause)
            known = unit.outbox.known([e.id for e in found]) if found else set()
            fresh = [e for e in found if e.id not in known]
            unit.note(fresh)  # type: ignore[attr-defined]  # an AuditedUnit
        return fresh

    def _sla_events(self, unit: UnitOfWork, at: datetime, cause: UUID | None) -> list[Event]:
        found: list[Event] = []
        unsolved = tickets_where(field("status").is_in(*_UNSOLVED))
        for ticket in unit.tickets.iterate(unsolved):
            report = self._sla(unit, ticket, at)
            for timer in report.timers:
                if timer.started_at is None:
                    continue
                levels: list[tuple[str, Any]] = []
                if timer.state in (SlaState.AT_RISK, SlaState.BREACHED):
                    levels.append((SlaAtRisk.type, SlaAtRisk))
                if timer.state is SlaState.BREACHED:
                    levels.append((SlaBreached.type, SlaBreached))
                target = f"{timer.metric.value}@{timer.started_at.isoformat()}"
                for level, kind in levels:
                    found.append(
                        kind(
                            id=uuid5(_SWEEP, f"{level}|{ticket.id}|{target}"),
                            occurred_at=at,
                            subject="ticket",
                            subject_id=ticket.id,
                            caused_by=cause,
                            metric=timer.metric.value,
                            due_at=timer.due_at or timer.breached_at,
                        )
                    )
        return found

    @staticmethod
    def _task_events(
        unit: UnitOfWork, at: datetime, notice: timedelta, cause: UUID | None
    ) -> list[Event]:
        try:
            until = at + notice
        except OverflowError:
            until = datetime.max.replace(tzinfo=at.tzinfo)
        found: list[Event] = []
        for task in unit.tasks.select(status=TaskStatus.OPEN, due_until=until):
            kind: type[TaskDue] | type[TaskOverdue] = TaskOverdue if task.due_at < at else TaskDue
            found.append(
                kind(
                    id=uuid5(_SWEEP, f"{kind.type}|{task.id}|{task.due_at.isoformat()}"),
                    occurred_at=at,
                    subject="task",
                    subject_id=task.id,
                    caused_by=cause,
                    due_at=task.due_at,
                )
            )
        return found
