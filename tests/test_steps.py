"""Durable timers: scheduling steps, running the due ones, failures, leases (memory,
SQLite and PostgreSQL)."""

import threading
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4, uuid5

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmkit.automation import (
    RunReport,
    Step,
    StepStatus,
    check_payload,
    claim_step,
    new_step,
    retry_delay,
    step_done,
    step_failed,
)
from crmkit.crm import CRM, RUNNING_STEP
from crmkit.errors import Duplicate, NotFound, StorageError, ValidationError
from crmkit.models import Activity, ActivityKind, Contact
from crmkit.storage import Store
from crmkit.storage.sql import open_store
from tests.storage_support import STORES, postgres_url, stepping_store

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from stepping_store(request.param, tmp_path, NOW, "steps")


def noted_activity(crm: CRM, step: Step) -> None:
    """An idempotent runner: records one activity whose id derives from the step's."""
    activity = Activity.new(
        contact_id=UUID(step.payload["contact"]),
        kind=ActivityKind.NOTE,
        body=f"step {step.payload['n']}",
        clock=crm.clock,
    )
    with suppress(Duplicate):  # a rerun of the step: its effect is stored already
        crm.record_activity(attrs.evolve(activity, id=uuid5(step.id, "note")))


def notes(store: Store, contact_id: UUID) -> list[Activity]:
    """The contact's note activities (what ``noted_activity`` records)."""
    with store.unit_of_work() as unit:
        return unit.activities.for_contact(contact_id, kinds=[ActivityKind.NOTE])


def crm_with_contact(store: Store) -> tuple[CRM, Contact]:
    crm = CRM(store)
    contact = crm.create_contact(Contact.new(email="ada@example.org", clock=crm.clock))
    crm.register_runner("note", noted_activity)
    return crm, contact


def test_a_due_step_runs_once_outside_any_unit_of_work(store: Store) -> None:
    crm, ada = crm_with_contact(store)
    seen: list[Step | None] = []
    crm.register_runner("peek", lambda c, s: seen.append(RUNNING_STEP.get()))
    later = crm.schedule_step(
        "note", {"contact": str(ada.id), "n": 2}, due_at=NOW + timedelta(hours=1)
    )
    now_step = crm.schedule_step(
        "note", {"contact": str(ada.id), "n": 1}, due_at=NOW, subject="contact", subject_id=ada.id
    )
    peek = crm.schedule_step("peek", {}, due_at=NOW)

    report = crm.run_due(NOW + timedelta(minutes=1))

    assert set(report.claimed) == {now_step.id, peek.id}
    assert set(report.done) == {now_step.id, peek.id}
    assert report.failed == report.dead == report.lost == ()
    assert seen[0] is not None
    assert seen[0].id == peek.id
    assert RUNNING_STEP.get() is None
    done = crm.step(now_step.id)
    assert (done.status, done.attempts, done.finished_at) == (
        StepStatus.DONE,
        1,
        NOW + timedelta(minutes=1),
    )
    assert crm.step(later.id).status is StepStatus.PENDING
    assert len(notes(store, ada.id)) == 1
    assert crm.run_due(NOW + timedelta(minutes=2)) == RunReport()  # done is never rerun
    assert crm.steps(subject_id=ada.id) == [done]
    assert crm.run_due(NOW + timedelta(hours=2)).done == (later.id,)


def test_scheduling_is_idempotent_by_step_id(store: Store) -> None:
    crm, ada = crm_with_contact(store)
    key = uuid5(uuid4(), "rule:0")
    first = crm.schedule_step("note", {"contact": str(ada.id), "n": 1}, due_at=NOW, step_id=key)
    again = crm.schedule_step(
        "note", {"contact": str(ada.id), "n": 2}, due_at=NOW + timedelta(days=1), step_id=key
    )
    assert again == first
    assert [s.id for s in crm.steps()] == [key]


def test_bad_input_is_refused_and_stores_nothing(store: Store) -> None:
    crm, ada = crm_with_contact(store)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("kind", {"kind": "nobody-runs-this"}),
        ("kind", {"kind": 7}),
        ("due_at", {"due_at": datetime(2026, 12, 1, 9)}),  # naive
        ("due_at", {"due_at": "2026-12-01"}),
        ("payload", {"payload": {"when": NOW}}),
        ("payload", {"payload": {"ids": (1, 2)}}),
        ("payload", {"payload": {1: "x"}}),
        ("payload", {"payload": {"x": float("nan")}}),
        ("payload", {"payload": ["not", "an", "object"]}),
        ("step_id", {"step_id": "not-a-uuid"}),
        ("subject_id", {"subject_id": 12}),
        ("subject", {"subject": ""}),
    ]
    for field, change in cases:
        arguments: dict[str, Any] = {
            "kind": "note",
            "payload": {"contact": str(ada.id)},
            "due_at": NOW,
        }
        arguments.update(change)
        kind, payload = arguments.pop("kind"), arguments.pop("payload")
        with pytest.raises(ValidationError) as refused:
            crm.schedule_step(kind, payload, **arguments)
        assert refused.value.field == field, change
    for field, call in [
        ("now", lambda: crm.run_due(datetime(2026, 12, 1))),
        ("limit", lambda: crm.run_due(NOW, 0)),
        ("limit", lambda: crm.run_due(NOW, True)),
        ("lease", lambda: crm.run_due(NOW, lease=timedelta(0))),
        ("runner", lambda: crm.register_runner("x", "not callable")),  # type: ignore[arg-type]
        ("max_attempts", lambda: crm.register_runner("x", noted_activity, max_attempts=0)),
        ("kind", lambda: crm.register_runner("", noted_activity)),
    ]:
        with pytest.raises(ValidationError) as refused:
            call()
        assert refused.value.field == field
    assert crm.steps() == []
    with pytest.raises(NotFound):
        crm.step(uuid4())


def test_a_failing_runner_is_retried_with_backoff_then_dead(store: Store) -> None:
    crm, ada = crm_with_contact(store)
    calls: list[int] = []

    def flaky(crm: CRM, step: Step) -> None:
        calls.append(step.attempts)
        raise RuntimeError(f"mail server down ({step.attempts})")

    crm.register_runner("flaky", flaky, max_attempts=3, retry_after=timedelta(minutes=1))
    bad = crm.schedule_step("flaky", {}, due_at=NOW)
    good = crm.schedule_step("note", {"contact": str(ada.id), "n": 1}, due_at=NOW)

    first = crm.run_due(NOW)
    assert (first.failed, first.done) == ((bad.id,), (good.id,))  # the others run on
    failed = crm.step(bad.id)
    assert failed.status is StepStatus.FAILED
    assert failed.due_at == NOW + timedelta(minutes=1)
    assert failed.last_error == "RuntimeError: mail server down (1)"
    assert crm.run_due(NOW + timedelta(seconds=59)).claimed == ()  # not due yet
    assert crm.run_due(NOW + timedelta(minutes=1)).failed == (bad.id,)
    assert crm.step(bad.id).due_at == NOW + timedelta(minutes=3)  # doubled
    last = crm.run_due(NOW + timedelta(minutes=3))
    assert last.dead == (bad.id,)
    dead = crm.step(bad.id)
    assert (dead.status, dead.attempts, dead.finished_at) == (
        StepStatus.DEAD,
        3,
        NOW + timedelta(minutes=3),
    )
    assert crm.steps(status=StepStatus.DEAD) == [dead]
    assert crm.run_due(NOW + timedelta(days=1)).claimed == ()  # dead is never rerun
    assert calls == [1, 2, 3]


def test_a_step_whose_worker_died_is_claimed_again_after_its_lease(store: Store) -> None:
    crm, ada = crm_with_contact(store)
    step = crm.schedule_step("note", {"contact": str(ada.id), "n": 1}, due_at=NOW)
    dead_worker = uuid4()
    with store.unit_of_work() as unit:  # a worker claims, then is killed before settling
        [claimed] = unit.steps.claim(
            NOW, lease=dead_worker, until=NOW + timedelta(minutes=5), limit=10
        )
        unit.commit()
    noted_activity(crm, claimed)  # it got as far as the effect

    assert crm.run_due(NOW + timedelta(minutes=4)).claimed == ()  # the lease holds
    rerun = crm.run_due(NOW + timedelta(minutes=5))
    assert rerun.done == (step.id,)
    assert crm.step(step.id).attempts == 2
    assert len(notes(store, ada.id)) == 1  # the runner is idempotent by step id
    with store.unit_of_work() as unit:  # the killed worker's late outcome is not kept
        assert unit.steps.settle([step_done(claimed, now=NOW)], lease=dead_worker) == set()


def test_a_lease_that_runs_out_during_the_run_reports_the_step_lost(store: Store) -> None:
    crm, _ = crm_with_contact(store)
    stolen: list[list[Step]] = []

    def slow(crm: CRM, step: Step) -> None:  # meanwhile the lease ran out, another claimed
        with crm.store.unit_of_work() as unit:
            later = step.leased_until
            assert later is not None
            stolen.append(
                unit.steps.claim(later, lease=uuid4(), until=later + timedelta(hours=1), limit=1)
            )
            unit.commit()

    crm.register_runner("slow", slow)
    step = crm.schedule_step("slow", {}, due_at=NOW)
    report = crm.run_due(NOW, lease=timedelta(seconds=30))
    assert report.lost == (step.id,)
    assert report.done == ()
    assert [s.id for s in stolen[0]] == [step.id]
    assert crm.step(step.id).status is StepStatus.RUNNING  # the other claim's, unsettled


def test_a_worker_claims_only_the_kinds_it_can_run(store: Store) -> None:
    crm, _ = crm_with_contact(store)
    crm.register_runner("report", lambda c, s: None)
    report = crm.schedule_step("report", {}, due_at=NOW)
    other = CRM(store)  # a worker without the report runner
    other.register_runner("note", noted_activity)
    assert other.run_due(NOW).claimed == ()
    assert crm.step(report.id).status is StepStatus.PENDING
    assert crm.run_due(NOW).done == (report.id,)


def test_a_runner_that_is_interrupted_still_records_what_ran(store: Store) -> None:
    crm, ada = crm_with_contact(store)

    def stop(crm: CRM, step: Step) -> None:
        raise KeyboardInterrupt

    crm.register_runner("stop", stop)
    first = crm.schedule_step("note", {"contact": str(ada.id), "n": 1}, due_at=NOW)
    crm.schedule_step("stop", {}, due_at=NOW + timedelta(seconds=1))
    with pytest.raises(KeyboardInterrupt):
        crm.run_due(NOW + timedelta(seconds=1))
    assert crm.step(first.id).status is StepStatus.DONE


def test_concurrent_claims_take_different_steps(tmp_path: Path) -> None:
    """Two PostgreSQL claims at once: SKIP LOCKED gives each its own steps, and neither
    waits for the other."""
    store = open_store(postgres_url(), tenant=f"claims-{uuid4().hex[:8]}")
    try:
        with store.unit_of_work() as unit:
            for n in range(40):
                unit.steps.schedule(new_step("k", {"n": n}, due_at=NOW, now=NOW))
            unit.commit()
        barrier = threading.Barrier(2)
        taken: list[list[UUID]] = []

        def claim() -> None:
            with store.unit_of_work() as unit:
                got = unit.steps.claim(
                    NOW, lease=uuid4(), until=NOW + timedelta(minutes=1), limit=15
                )
                barrier.wait(timeout=10)  # both hold their locks now
                taken.append([s.id for s in got])
                unit.commit()

        threads = [threading.Thread(target=claim) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(taken) == 2
        assert [len(t) for t in taken] == [15, 15]
        assert not set(taken[0]) & set(taken[1])
    finally:
        store.close()


def test_a_runner_that_nests_units_of_work_fails_and_is_recorded(store: Store) -> None:
    """Use cases open their own units: a runner that wraps one in a unit of its own
    fails (units do not nest) and its step says why."""
    crm, ada = crm_with_contact(store)

    def nested(crm: CRM, step: Step) -> None:
        with crm.store.unit_of_work():
            crm.record_activity(
                Activity.new(contact_id=ada.id, kind=ActivityKind.NOTE, clock=crm.clock)
            )

    crm.register_runner("nested", nested)
    step = crm.schedule_step("nested", {}, due_at=NOW)
    assert crm.run_due(NOW).failed == (step.id,)
    stored = crm.step(step.id)
    assert stored.status is StepStatus.FAILED
    assert (stored.last_error or "").startswith(StorageError.__name__)


# ---------------------------------------------------------------------------- pure parts


def test_the_backoff_doubles_up_to_its_cap() -> None:
    assert [retry_delay(n).total_seconds() for n in (1, 2, 3)] == [30, 60, 120]
    assert retry_delay(100) == timedelta(hours=1)
    with pytest.raises(ValidationError):
        retry_delay(0)


def test_a_step_refuses_an_inconsistent_state() -> None:
    step = new_step("k", {}, due_at=NOW, now=NOW)
    with pytest.raises(ValidationError) as refused:
        attrs.evolve(step, status=StepStatus.RUNNING)  # running without a lease
    assert refused.value.field == "lease"
    with pytest.raises(ValidationError) as refused:
        attrs.evolve(step, status=StepStatus.DONE)
    assert refused.value.field == "finished_at"
    claimed = claim_step(step, lease=uuid4(), until=NOW + timedelta(minutes=1))
    assert step_failed(claimed, now=NOW, error="x" * 5000, max_attempts=1).last_error == "x" * 2000


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.text(), _json, max_size=4))
def test_a_json_object_is_a_payload_and_comes_back_equal(payload: dict[str, Any]) -> None:
    copy = check_payload(payload)
    assert copy == payload
    assert copy is not payload
