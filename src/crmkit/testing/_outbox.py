"""The contracts of the outbox (``UnitOfWork.outbox``): events appended in order and
only by committed units, positions in commit order, fresh events taken lane by lane and
finished, pending deliveries claimed, leased and settled, as the dispatcher of
:class:`~crmkit.crm.CRM` relies on.

Fixed data, chosen to tell a right adapter from a wrong one: events of one subject (a
later one must wait for an earlier one that failed), subjects in different lanes, a
duplicate id, a rolled-back unit between two committed ones, two units racing to append,
two claims racing for a lane. :class:`~crmkit.testing.storage.StoreContract`
inherits them.
"""

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import attrs

from crmkit.automation import (
    LANES,
    ContactCreated,
    Delivery,
    DeliveryStatus,
    Event,
    Taken,
    TaskCreated,
    event_to_json,
    lane_of,
)
from crmkit.errors import NotFound, ValidationError
from crmkit.models import TaskKind
from crmkit.storage import Store
from crmkit.testing._contract import _c, _raises

__all__ = ["OutboxContract"]

_T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
_LEASE = timedelta(minutes=1)


def _in_lane(lane: int) -> UUID:
    """A random subject id of ``lane``."""
    found = uuid4()
    return UUID(int=found.int - lane_of(found) + lane)


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


def _take(
    store: Store,
    handler: str,
    *,
    now: datetime = _T0,
    limit: int = 100,
    lanes: int = LANES,
    types: list[str] | None = None,
) -> Taken:
    with store.unit_of_work() as unit:
        taken = unit.outbox.take(
            handler, types, now=now, lease=_LEASE, limit=limit, claim=uuid4(), lanes=lanes
        )
        unit.commit()
    return taken


def _finish(
    store: Store, taken: Taken, failures: list[Delivery] | None = None, at: datetime = _T0
) -> frozenset[int]:
    with store.unit_of_work() as unit:
        kept = unit.outbox.finish(taken, at=at, failures=failures or [])
        unit.commit()
    return kept


def _failure(taken: Taken, event: Event, *, next_at: datetime = _T0) -> Delivery:
    """The failed first attempt of ``event`` in ``taken``, due again at ``next_at``."""
    (position,) = [r.position for r in taken.events if r.event.id == event.id]
    return Delivery(
        position=position,
        event_id=event.id,
        event_type=event.type,
        handler=taken.handler,
        subject_id=event.subject_id,
        attempts=1,
        next_at=next_at,
        claim=taken.claim,
        leased_until=taken.leased_until,
        error="ValueError: no",
    )


def _pending(store: Store, handler: str, events: list[Event], *, next_at: datetime) -> None:
    """Make pending deliveries of ``events`` to ``handler``: the first of each subject
    failed once (due again at ``next_at``), the later ones wait behind it."""
    taken = _take(store, handler)
    firsts = {e.subject_id: e for e in reversed(events)}
    _finish(store, taken, [_failure(taken, e, next_at=next_at) for e in firsts.values()])


def _claim(store: Store, handlers: list[str], *, now: datetime, limit: int = 100) -> list[Any]:
    with store.unit_of_work() as unit:
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

    def test_takes_give_fresh_events_per_handler_and_type(self, fresh: Store) -> None:
        one, two = _in_lane(3), _in_lane(9)
        contact, task = _event(one), _task_event(two)
        more = [_event(one, minute) for minute in range(1, 4)]
        _append(fresh, [contact, task, *more])
        tasks = _take(fresh, "tasks", types=["task.created"])
        assert [r.event for r in tasks.events] == [task], _c(
            "take gives the handler's fresh events of its types only"
        )
        assert {lane.lane for lane in tasks.lanes} == {3, 9}, _c(
            "take leases the lanes that hold fresh events (the lane of an event is "
            "lane_of(subject_id)), also those without an event of the handler's types"
        )
        assert _finish(fresh, tasks) == {3, 9}, _c("finish returns the lanes it recorded")
        assert _take(fresh, "tasks", types=["task.created"]).events == (), _c(
            "finish moves the lanes' cursors: a finished event is never taken again"
        )
        first = _take(fresh, "all", limit=2, lanes=1)
        assert [r.position for r in first.events] == [1, 3], _c(
            "take(limit=2, lanes=1) gives the lane furthest behind, its first 2 events by "
            "position; a new handler gets every stored event"
        )
        _finish(fresh, first)
        rest = _take(fresh, "all")
        assert [r.position for r in rest.events] == [2, 4, 5], _c(
            "a lane finished at the last event of its share gives the events after it "
            "next time, and lanes never taken give all of theirs, by position"
        )
        _finish(fresh, rest, at=_T0 + _LEASE)
        with fresh.unit_of_work() as unit:
            made = unit.outbox.deliveries(handler="tasks")
            assert [(d.position, d.event_id, d.status, d.finished_at) for d in made] == [
                (2, task.id, DeliveryStatus.DONE, _T0)
            ], _c("finish records each event of the take as a done delivery, finished at")
            everything = unit.outbox.deliveries(handler="all", status=DeliveryStatus.DONE)
            assert [(d.position, d.subject_id) for d in everything] == [
                (1, one),
                (2, two),
                (3, one),
                (4, one),
                (5, one),
            ], _c("deliveries() lists them by position, with the event's subject")
            assert len(unit.outbox.deliveries()) == 6, _c("deliveries() lists every one")

    def test_a_take_of_every_lane_follows_commit_order(self, fresh: Store) -> None:
        first, second, third = (_event(_in_lane(lane)) for lane in (5, 3, 0))
        _append(fresh, [first, second, third, _task_event(_in_lane(7))])
        order = []
        for _ in range(3):
            taken = _take(fresh, "h", limit=1, types=["contact.created"])
            order += [r.event for r in taken.events]
            _finish(fresh, taken)
        assert order == [first, second, third], _c(
            "take(limit=1) over every lane gives the first fresh event by position, "
            "whatever its lane: one dispatcher sees the events in commit order"
        )
        assert _take(fresh, "h").events == (), _c(
            "a take that gave every event of its types moves its lanes' cursors to the "
            "last position stored: the task event it passed over is not fresh any more"
        )

    def test_a_handler_can_start_at_the_end(self, fresh: Store) -> None:
        older, old, new = _event(_in_lane(0)), _event(_in_lane(1)), _event(_in_lane(2))
        _append(fresh, [older, old])
        with fresh.unit_of_work() as unit:
            assert unit.outbox.start_at_end("late") == 2, _c(
                "start_at_end gives a handler without cursors its lanes' cursors at the "
                "last position, and returns it"
            )
            unit.commit()
        early = _take(fresh, "early", limit=1, lanes=1)
        assert [r.event for r in early.events] == [older]
        _finish(fresh, early)  # one lane moved on, the others at 0
        with fresh.unit_of_work() as unit:
            assert unit.outbox.start_at_end("early") == 0, _c(
                "a handler that has cursors keeps them: start_at_end does not move them "
                "(and returns the lowest)"
            )
            unit.commit()
        with fresh.unit_of_work() as unit:
            unit.outbox.start_at_end("gone")
            unit.rollback()
        _append(fresh, [new])
        with fresh.unit_of_work() as unit:
            assert unit.outbox.start_at_end("late") == 2, _c(
                "start_at_end called again keeps the cursors it gave"
            )
            unit.commit()
        assert [r.event for r in _take(fresh, "late").events] == [new], _c(
            "a handler started at the end gets the events appended after, only"
        )
        assert [r.event for r in _take(fresh, "early").events] == [old, new], _c(
            "a handler whose cursors start_at_end kept gets every event after them"
        )
        assert len(_take(fresh, "gone").events) == 3, _c(
            "the cursors that start_at_end gave in a unit that rolled back are gone"
        )

    def test_lanes_are_leased_to_one_claim(self, fresh: Store) -> None:
        here, there = _event(_in_lane(5)), _event(_in_lane(6))
        _append(fresh, [here, there])
        first = _take(fresh, "h", lanes=1)
        assert [r.event for r in first.events] == [here], _c("take(lanes=1) takes one lane")
        assert (first.leased_until, first.lanes[0].lane) == (_T0 + _LEASE, 5), _c(
            "a take is leased until now + lease"
        )
        half = _T0 + _LEASE / 2
        second = _take(fresh, "h", now=half)
        assert [r.event for r in second.events] == [there], _c(
            "a leased lane is not taken again before its lease ends (other lanes are)"
        )
        third = _take(fresh, "h", now=_T0 + _LEASE * 5 / 4)  # the second's lease holds
        assert [r.event for r in third.events] == [here], _c(
            "a lane whose lease ran out is taken again, from its cursor"
        )
        assert _finish(fresh, first) == frozenset(), _c(
            "finish by a claim whose lease ran out (another claim took the lane over) "
            "records nothing and returns no lane"
        )
        with fresh.unit_of_work() as unit:
            assert unit.outbox.deliveries(handler="h") == [], _c(
                "a lost lane's events get no delivery"
            )
        assert _finish(fresh, third) == {5}, _c("the claim that holds the lane finishes it")
        assert _finish(fresh, second) == {6}
        assert _take(fresh, "h", now=_T0 + _LEASE * 9).events == (), _c(
            "a finished lane ends its lease and gives nothing already finished"
        )
        with fresh.unit_of_work() as unit:
            kept = unit.outbox.deliveries(handler="h")
            assert [(d.event_id, d.claim, d.leased_until) for d in kept] == [
                (here.id, None, None),
                (there.id, None, None),
            ], _c("each event is recorded once, by the claim that held its lane")

    def test_finish_keeps_each_subjects_order(self, fresh: Store) -> None:
        slow, calm = _in_lane(7), _in_lane(7)
        one, two, three, quiet = _event(slow), _event(slow, 1), _event(slow, 2), _event(calm)
        _append(fresh, [one])
        taken = _take(fresh, "h")
        assert taken.waiting == frozenset(), _c("no subject waits while nothing is pending")
        with fresh.unit_of_work() as unit:
            with _raises(ValidationError, "a failure of an event not in the take"):
                unit.outbox.finish(
                    taken,
                    at=_T0,
                    failures=[
                        Delivery(
                            position=99,
                            event_id=uuid4(),
                            event_type="contact.created",
                            handler="h",
                            subject_id=slow,
                            claim=taken.claim,
                            next_at=_T0,
                        )
                    ],
                )
            unit.commit()
        retry_at = _T0 + timedelta(hours=1)
        _finish(fresh, taken, [_failure(taken, one, next_at=retry_at)])
        _append(fresh, [two, quiet, three])
        later = _take(fresh, "h")
        assert [r.event for r in later.events] == [two, quiet, three]
        assert later.waiting == {slow}, _c(
            "take names the subjects of its events that have a pending delivery"
        )
        _finish(fresh, later)
        with fresh.unit_of_work() as unit:
            found = {d.event_id: d for d in unit.outbox.deliveries(handler="h")}
        assert (found[one.id].status, found[one.id].attempts, found[one.id].next_at) == (
            DeliveryStatus.PENDING,
            1,
            retry_at,
        ), _c("finish records a failure as given: pending, its attempts, its next_at")
        assert [(found[e.id].status, found[e.id].attempts) for e in (two, three)] == [
            (DeliveryStatus.PENDING, 0),
            (DeliveryStatus.PENDING, 0),
        ], _c(
            "finish records the events of a waiting subject pending, with no attempt, "
            "behind the delivery they wait for"
        )
        assert found[quiet.id].status is DeliveryStatus.DONE, _c(
            "another subject of the same lane does not wait"
        )
        assert _claim(fresh, ["h"], now=_T0 + timedelta(minutes=30)) == [], _c(
            "the held events wait behind the failure's next_at"
        )
        claimed = _claim(fresh, ["h"], now=retry_at)
        assert [e.id for _, e in claimed] == [one.id, two.id, three.id], _c(
            "claim gives the failed delivery and the events held behind it, in order"
        )
        fourth, fifth = _event(slow, 3), _event(slow, 4)
        _append(fresh, [fourth, fifth])
        again = _take(fresh, "h2")
        _finish(fresh, again, [_failure(again, two)])
        with fresh.unit_of_work() as unit:
            statuses = [(d.event_id, d.status) for d in unit.outbox.deliveries(handler="h2")]
        assert statuses == [
            (one.id, DeliveryStatus.DONE),
            (two.id, DeliveryStatus.PENDING),
            (quiet.id, DeliveryStatus.DONE),
            (three.id, DeliveryStatus.PENDING),
            (fourth.id, DeliveryStatus.PENDING),
            (fifth.id, DeliveryStatus.PENDING),
        ], _c(
            "finish records the later events of a subject that failed in the take pending "
            "(they wait behind the failure), the earlier ones done"
        )

    def test_claims_follow_subjects_and_leases(self, fresh: Store) -> None:
        subject = uuid4()
        first, second, other = _event(subject), _event(subject, 1), _event()
        _append(fresh, [first, second, other])
        _pending(fresh, "h", [first, second, other], next_at=_T0)
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
        _pending(fresh, "h", [event], next_at=_T0)
        claimed = _claim(fresh, ["h"], now=_T0)
        assert len(claimed) == 1, _c("claim gives the due delivery")
        delivery = claimed[0][0]
        retry_at = _T0 + timedelta(minutes=10)
        failed = attrs.evolve(delivery, attempts=2, error="ValueError: no", next_at=retry_at)
        assert _settle(fresh, failed), _c("settle records a failed attempt")
        assert _claim(fresh, ["h"], now=retry_at - timedelta(seconds=1)) == [], _c(
            "a pending delivery is not claimed before its next_at"
        )
        claimed = _claim(fresh, ["h"], now=retry_at)
        assert len(claimed) == 1, _c("a failed delivery is claimed again at its next_at")
        again = claimed[0][0]
        assert (again.attempts, again.error) == (2, "ValueError: no"), _c(
            "a claimed delivery carries its attempts and last error"
        )
        dead = attrs.evolve(again, status=DeliveryStatus.DEAD, attempts=3, finished_at=retry_at)
        assert _settle(fresh, dead), _c("settle records a dead delivery")
        assert _claim(fresh, ["h"], now=retry_at + timedelta(days=1)) == [], _c(
            "a dead delivery is not claimed"
        )
        with fresh.unit_of_work() as unit:
            (listed,) = unit.outbox.deliveries(status=DeliveryStatus.DEAD)
            assert (listed.event_id, listed.attempts) == (event.id, 3), _c(
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
                (
                    "handler",
                    lambda: outbox.take("", None, now=_T0, lease=_LEASE, limit=1, claim=uuid4()),
                ),
                (
                    "lanes",
                    lambda: outbox.take(
                        "h", None, now=_T0, lease=_LEASE, limit=1, claim=uuid4(), lanes=0
                    ),
                ),
                ("taken", lambda: outbox.finish("all done", at=_T0)),  # type: ignore[arg-type]
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
