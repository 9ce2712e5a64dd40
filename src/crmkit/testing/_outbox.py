"""The contracts of the outbox (``UnitOfWork.outbox``): events appended in order and
only by committed units, positions in commit order, deliveries made, claimed, leased and
settled as the dispatcher of :class:`~crmkit.crm.CRM` relies on.

Fixed data, chosen to tell a right adapter from a wrong one: two events of one subject
(the second must wait for the first), a duplicate id, a rolled-back unit between two
committed ones, two units racing to append. :class:`~crmkit.testing.storage.StoreContract`
inherits them.
"""

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import attrs

from crmkit.automation import (
    ContactCreated,
    Delivery,
    DeliveryStatus,
    Event,
    TaskCreated,
    event_to_json,
)
from crmkit.errors import NotFound, ValidationError
from crmkit.models import TaskKind
from crmkit.storage import Store
from crmkit.testing._contract import _c, _raises

__all__ = ["OutboxContract"]

_T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
_LEASE = timedelta(minutes=1)


def _event(subject_id: UUID | None = None, minute: int = 0) -> Event:
    return ContactCreated(
        id=uuid4(),
        occurred_at=_T0 + timedelta(minutes=minute),
        subject="contact",
        subject_id=uuid4() if subject_id is None else subject_id,
    )


def _task_event(subject_id: UUID) -> Event:
    return TaskCreated(
        id=uuid4(),
        occurred_at=_T0,
        subject="task",
        subject_id=subject_id,
        kind=TaskKind.CALL,
        due_at=_T0 + timedelta(days=1),
    )


def _positions(store: Store) -> list[tuple[int, UUID]]:
    with store.unit_of_work() as unit:
        return [(r.position, r.event.id) for r in unit.outbox.read(limit=10_000)]


def _append(store: Store, events: list[Event]) -> None:
    with store.unit_of_work() as unit:
        unit.outbox.append(events)
        unit.commit()


def _claim(store: Store, handlers: list[str], *, now: datetime, limit: int = 100) -> list[Any]:
    with store.unit_of_work() as unit:
        for handler in handlers:
            unit.outbox.fan_out(handler, None, at=_T0)
        claimed = unit.outbox.claim(handlers, now=now, lease=_LEASE, limit=limit, claim=uuid4())
        unit.commit()
    return claimed


def _settle(store: Store, delivery: Delivery) -> bool:
    with store.unit_of_work() as unit:
        done = unit.outbox.settle(delivery)
        unit.commit()
    return done


class OutboxContract:
    """What the outbox of a store must do."""

    def test_the_outbox_appends_in_order(self, fresh: Store) -> None:
        one, two, three = _event(), _event(), _event()
        _append(fresh, [one, two])
        _append(fresh, [three, one])  # one again: skipped
        assert _positions(fresh) == [(1, one.id), (2, two.id), (3, three.id)], _c(
            "outbox positions are 1, 2, 3 ... in the order events were appended; an id "
            "the outbox holds already is skipped"
        )
        with fresh.unit_of_work() as unit:
            assert unit.outbox.append([two]) == 0, _c("append counts the new events only")
            found = unit.outbox.read(after=1, limit=1)
            assert [(r.position, r.event) for r in found] == [(2, two)], _c(
                "read(after, limit) gives the events after the position, at most limit, and "
                "each event comes back equal"
            )
            assert unit.outbox.read(subject_id=three.subject_id)[0].event == three, _c(
                "read(subject_id=) gives the events of that subject"
            )
            assert unit.outbox.read(types=["task.created"]) == [], _c(
                "read(types=) gives the events of those types only"
            )
            assert unit.outbox.known([one.id, uuid4()]) == {one.id}, _c(
                "known(ids) names the ids the outbox holds"
            )
        twin = fresh.for_tenant(f"kit-{uuid4().hex[:12]}")
        _append(twin, [one])
        assert _positions(twin) == [(1, one.id)], _c(
            "each tenant has its own outbox, positions from 1, and the same event id"
        )

    def test_the_outbox_keeps_nothing_of_a_rolled_back_unit(self, fresh: Store) -> None:
        first, lost, gone, last = _event(), _event(), _event(), _event()
        _append(fresh, [first])
        with fresh.unit_of_work() as unit:
            unit.outbox.append([lost])  # never committed
        try:
            with fresh.unit_of_work() as unit:
                unit.outbox.append([gone])
                raise LookupError("the use case fails")
        except LookupError:
            pass
        with fresh.unit_of_work() as unit:
            unit.outbox.append([gone])
            unit.rollback()
            unit.outbox.append([last])
            unit.commit()
        assert _positions(fresh) == [(1, first.id), (2, last.id)], _c(
            "the events of a unit that rolls back (or never commits) are gone, positions "
            "included: the next committed event takes the next position, without a gap"
        )

    def test_positions_follow_commit_order(self, fresh: Store) -> None:
        capabilities = getattr(self, "capabilities", None)
        if capabilities is not None and not capabilities.threads:
            return
        early, late = _event(), _event()
        appended, release, committing = threading.Event(), threading.Event(), threading.Event()
        errors: list[BaseException] = []
        order: list[bool] = []

        def slow() -> None:  # appends first, commits last
            try:
                with fresh.unit_of_work() as unit:
                    unit.outbox.append([early])
                    appended.set()
                    release.wait(5)
                    time.sleep(0.2)
                    committing.set()
                    unit.commit()
            except BaseException as error:
                errors.append(error)
                appended.set()

        def quick() -> None:
            try:
                appended.wait(5)
                release.set()
                _append(fresh, [late])
                order.append(committing.is_set())
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=slow), threading.Thread(target=quick)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors, _c(f"two units appending at once both succeed: {errors!r}")
        assert order == [True], _c(
            "a unit that has appended holds the outbox until it ends: another unit's append "
            "and commit wait for it"
        )
        assert _positions(fresh) == [(1, early.id), (2, late.id)], _c(
            "positions follow commit order: a unit that has appended holds the outbox until "
            "it ends, so a later unit's events come after its own"
        )

    def test_deliveries_are_made_per_handler_and_type(self, fresh: Store) -> None:
        contact, task = _event(), _task_event(uuid4())
        _append(fresh, [contact, task])
        with fresh.unit_of_work() as unit:
            assert unit.outbox.fan_out("tasks", ["task.created"], at=_T0, limit=1) == 0, _c(
                "fan_out(limit=n) looks at the next n events only (here a contact event)"
            )
            assert unit.outbox.fan_out("tasks", ["task.created"], at=_T0) == 1, _c(
                "fan_out makes one delivery per event of the handler's types"
            )
            assert unit.outbox.fan_out("tasks", ["task.created"], at=_T0) == 0, _c(
                "fan_out never makes a delivery twice: the handler's cursor moved on"
            )
            assert unit.outbox.fan_out("all", None, at=_T0) == 2, _c(
                "a new handler gets every stored event"
            )
            unit.commit()
        with fresh.unit_of_work() as unit:
            made = unit.outbox.deliveries(handler="tasks")
            assert [(d.position, d.event_id, d.status) for d in made] == [
                (2, task.id, DeliveryStatus.PENDING)
            ], _c("deliveries(handler=) lists the handler's deliveries, pending when made")
            assert len(unit.outbox.deliveries()) == 3, _c("deliveries() lists every one")

    def test_a_handler_can_start_at_the_end(self, fresh: Store) -> None:
        older, old, new = _event(), _event(), _event()
        _append(fresh, [older, old])
        with fresh.unit_of_work() as unit:
            assert unit.outbox.start_at_end("late") == 2, _c(
                "start_at_end gives a handler without a cursor one at the last position, "
                "and returns it"
            )
            unit.outbox.fan_out("early", None, at=_T0, limit=1)  # its cursor: 1
            assert unit.outbox.start_at_end("early") == 1, _c(
                "a handler that has a cursor keeps it: start_at_end does not move it"
            )
            unit.commit()
        with fresh.unit_of_work() as unit:
            unit.outbox.start_at_end("gone")
            unit.rollback()
        _append(fresh, [new])
        with fresh.unit_of_work() as unit:
            assert unit.outbox.start_at_end("late") == 2, _c(
                "start_at_end called again keeps the cursor it gave"
            )
            assert unit.outbox.fan_out("late", None, at=_T0) == 1, _c(
                "a handler started at the end gets the events appended after, only"
            )
            assert [d.event_id for d in unit.outbox.deliveries(handler="late")] == [new.id]
            assert unit.outbox.fan_out("early", None, at=_T0) == 2, _c(
                "a handler whose cursor start_at_end kept gets every event after it"
            )
            assert unit.outbox.fan_out("gone", None, at=_T0) == 3, _c(
                "the cursor that start_at_end gave in a unit that rolled back is gone"
            )

    def test_claims_follow_subjects_and_leases(self, fresh: Store) -> None:
        subject = uuid4()
        first, second, other = _event(subject), _event(subject, 1), _event()
        _append(fresh, [first, second, other])
        claimed = _claim(fresh, ["h"], now=_T0, limit=1)
        assert [e for _, e in claimed] == [first], _c(
            "claim gives deliveries by position, at most limit, with their events"
        )
        held = claimed[0][0]
        assert (held.claim is not None, held.leased_until) == (True, _T0 + _LEASE), _c(
            "a claimed delivery carries its claim and leased_until = now + lease"
        )
        half = _T0 + _LEASE / 2
        claimed = _claim(fresh, ["h"], now=half)
        assert [d.event_id for d, _ in claimed] == [other.id], _c(
            "a leased delivery is not claimed again before its lease ends, and the later "
            "events of its subject wait behind it (other subjects do not)"
        )
        failed = attrs.evolve(held, attempts=1, error="E: no", next_at=_T0 + _LEASE * 10)
        assert _settle(fresh, failed), _c("settle with the holding claim returns True")
        waiting = _claim(fresh, ["h"], now=_T0 + _LEASE * 5)
        assert [e.id for _, e in waiting] == [other.id], _c(
            "a failed delivery waits for its next_at, and the events of its subject with it "
            "(a delivery of another subject whose lease ran out is claimed again)"
        )
        later = _T0 + _LEASE * 10
        run = _claim(fresh, ["h"], now=later)
        assert [e.id for _, e in run] == [first.id, second.id, other.id], _c(
            "claim gives the first pending delivery of each subject and the due ones after "
            "it, by position; a delivery whose lease ran out is claimed again"
        )
        done = attrs.evolve(claimed[0][0], status=DeliveryStatus.DONE, finished_at=half)
        assert _settle(fresh, done) is False, _c(
            "settle by a claim whose lease ran out (another claim took the delivery over) "
            "writes nothing and returns False"
        )
        for delivery, _ in run:
            finished = attrs.evolve(delivery, status=DeliveryStatus.DONE, finished_at=later)
            assert _settle(fresh, finished), _c("settle records a done delivery")
        assert _claim(fresh, ["h"], now=later + _LEASE * 100) == [], _c(
            "a done delivery is never claimed again"
        )
        with fresh.unit_of_work() as unit:
            stored = unit.outbox.deliveries(handler="h", status=DeliveryStatus.DONE)
            assert [(d.position, d.claim, d.leased_until) for d in stored] == [
                (1, None, None),
                (2, None, None),
                (3, None, None),
            ], _c("settle ends the lease")

    def test_failed_deliveries_wait_and_dead_ones_are_retried(self, fresh: Store) -> None:
        event = _event()
        _append(fresh, [event])
        claimed = _claim(fresh, ["h"], now=_T0)
        assert len(claimed) == 1, _c("claim gives the due delivery")
        delivery = claimed[0][0]
        retry_at = _T0 + timedelta(minutes=10)
        failed = attrs.evolve(delivery, attempts=1, error="ValueError: no", next_at=retry_at)
        assert _settle(fresh, failed), _c("settle records a failed attempt")
        assert _claim(fresh, ["h"], now=retry_at - timedelta(seconds=1)) == [], _c(
            "a pending delivery is not claimed before its next_at"
        )
        claimed = _claim(fresh, ["h"], now=retry_at)
        assert len(claimed) == 1, _c("a failed delivery is claimed again at its next_at")
        again = claimed[0][0]
        assert (again.attempts, again.error) == (1, "ValueError: no"), _c(
            "a claimed delivery carries its attempts and last error"
        )
        dead = attrs.evolve(again, status=DeliveryStatus.DEAD, attempts=2, finished_at=retry_at)
        assert _settle(fresh, dead), _c("settle records a dead delivery")
        assert _claim(fresh, ["h"], now=retry_at + timedelta(days=1)) == [], _c(
            "a dead delivery is not claimed"
        )
        with fresh.unit_of_work() as unit:
            (listed,) = unit.outbox.deliveries(status=DeliveryStatus.DEAD)
            assert (listed.event_id, listed.attempts) == (event.id, 2), _c(
                "deliveries(status=DEAD) lists the dead letters"
            )
            with _raises(NotFound, "retry of a delivery that does not exist"):
                unit.outbox.retry(uuid4(), "h", at=retry_at)
            revived = unit.outbox.retry(event.id, "h", at=retry_at)
            with _raises(ValidationError, "retry of a delivery that is not dead"):
                unit.outbox.retry(event.id, "h", at=retry_at)
            unit.commit()
        assert (revived.status, revived.attempts) == (DeliveryStatus.PENDING, 0), _c(
            "retry makes a dead delivery pending again, attempts counted afresh"
        )
        assert [e.id for _, e in _claim(fresh, ["h"], now=retry_at)] == [event.id], _c(
            "a retried delivery is claimed again"
        )

    def test_the_outbox_checks_its_arguments(self, fresh: Store) -> None:
        with fresh.unit_of_work() as unit:
            outbox = unit.outbox
            checks: list[tuple[str, Any]] = [
                ("events[0]", lambda: outbox.append([event_to_json(_event())])),  # type: ignore[list-item]
                ("limit", lambda: outbox.read(limit=0)),
                ("after", lambda: outbox.read(after=-1)),
                ("handler", lambda: outbox.fan_out("", None, at=_T0)),
                ("handler", lambda: outbox.start_at_end(" ")),
                (
                    "lease",
                    lambda: outbox.claim(
                        ["h"], now=_T0, lease=timedelta(0), limit=1, claim=uuid4()
                    ),
                ),
                ("delivery", lambda: outbox.settle("done")),  # type: ignore[arg-type]
            ]
            for field, call in checks:
                with _raises(ValidationError, f"a wrong {field} is refused") as caught:
                    call()
                assert caught.value.field == field, _c(f"the error names {field!r}")
            assert outbox.read() == [], _c("a refused call appends nothing")
