"""The contracts of the durable timers' repository (``UnitOfWork.steps``): scheduling
is idempotent by id, a claim takes only due steps and never a step another claim holds
under an unexpired lease, a lease that ran out makes the step claimable again, outcomes
are recorded only under the claim's lease, and done and dead steps are never claimed.

Fixed data (times a microsecond apart, ids whose order differs from their due order,
the same id in two tenants), so a broken adapter fails on every run.
:class:`~crmkit.testing.storage.StoreContract` inherits them.
"""

import threading
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import attrs

from crmkit.automation import (
    Step,
    StepStatus,
    claim_step,
    new_step,
    step_done,
    step_failed,
)
from crmkit.errors import NotFound, ValidationError
from crmkit.storage import Store
from crmkit.testing._contract import _c, _raises

__all__ = ["StepContract"]

_T0 = datetime(2026, 5, 4, 9, tzinfo=UTC)
_US = timedelta(microseconds=1)
_LEASE = timedelta(minutes=5)


def _steps(count: int, *, kind: str = "kit") -> list[Step]:
    """``count`` steps due a microsecond apart, whose ids run against their due order."""
    ids = sorted((uuid4() for _ in range(count)), reverse=True)
    return [
        new_step(
            kind,
            {"n": n, "nested": {"list": [1, 2.5, None, "x"], "flag": True}},
            due_at=_T0 + n * _US,
            now=_T0 - timedelta(days=1),
            step_id=ids[n],
            subject="contact" if n % 2 else None,
            subject_id=ids[0] if n % 2 else None,
        )
        for n in range(count)
    ]


def _schedule(store: Store, steps: list[Step]) -> None:
    with store.unit_of_work() as unit:
        for step in steps:
            unit.steps.schedule(step)
        unit.commit()


def _claim(
    store: Store, now: datetime, *, limit: int = 100, lease: UUID | None = None
) -> list[Step]:
    with store.unit_of_work() as unit:
        claimed = unit.steps.claim(now, lease=lease or uuid4(), until=now + _LEASE, limit=limit)
        unit.commit()
    return claimed


class StepContract:
    """Steps: schedule, claim, lease, settle (mixed into ``StoreContract``)."""

    def test_steps_are_scheduled_once_and_come_back_equal(self, fresh: Store) -> None:
        steps = _steps(3)
        with fresh.unit_of_work() as unit:
            for step in steps:
                assert unit.steps.schedule(step) == step, _c("schedule returns the step")
            unit.commit()
        with fresh.unit_of_work() as unit:
            for step in steps:
                assert unit.steps.get(step.id) == step, _c("a step comes back equal")
            other = attrs.evolve(steps[0], payload={"other": 1}, due_at=_T0 + timedelta(days=9))
            assert unit.steps.schedule(other) == steps[0], _c(
                "schedule of a stored id stores nothing and returns the stored step"
            )
            assert unit.steps.get(steps[0].id) == steps[0], _c(
                "schedule of a stored id leaves the stored step as it was"
            )
            assert unit.steps.select() == steps, _c("select lists by due_at, then id")
            assert unit.steps.select(limit=2) == steps[:2], _c("select keeps to its limit")
            assert unit.steps.select(subject_id=steps[0].id) == [steps[1]], _c(
                "select filters by subject_id"
            )
            assert unit.steps.select(kind="other") == [], _c("select filters by kind")
            with _raises(NotFound, "get of a missing step is NotFound") as missing:
                unit.steps.get(uuid4())
            assert missing.value.entity == "step", _c("NotFound names the step")
            with _raises(ValidationError, "schedule refuses what is not a Step"):
                unit.steps.schedule("step")  # type: ignore[arg-type]
            claimed = claim_step(_steps(1)[0], lease=uuid4(), until=_T0)
            with _raises(ValidationError, "schedule refuses a step that is not pending"):
                unit.steps.schedule(claimed)
        twin = fresh.for_tenant(f"{fresh.tenant[:50]}-twin")
        _schedule(twin, [attrs.evolve(steps[0], payload={"twin": True})])
        with fresh.unit_of_work() as unit:
            assert unit.steps.get(steps[0].id) == steps[0], _c(
                "steps are the tenant's own: the same id in another tenant is another step"
            )
        assert [s.id for s in _claim(twin, _T0 + timedelta(days=1))] == [steps[0].id], _c(
            "a claim takes the tenant's own steps only"
        )

    def test_a_claim_takes_only_due_steps_earliest_first(self, fresh: Store) -> None:
        steps = _steps(5)
        _schedule(fresh, steps)
        lease = uuid4()
        with fresh.unit_of_work() as unit:
            claimed = unit.steps.claim(_T0 + 2 * _US, lease=lease, until=_T0 + _LEASE, limit=2)
            expected = [claim_step(s, lease=lease, until=_T0 + _LEASE) for s in steps[:2]]
            assert claimed == expected, _c(
                "a claim returns the earliest due steps, running, one attempt more, under "
                "its lease, up to its limit"
            )
            assert unit.steps.get(steps[0].id) == expected[0], _c("a claim stores the claim")
            unit.commit()
        rest = _claim(fresh, _T0 + 2 * _US)
        assert [s.id for s in rest] == [steps[2].id], _c(
            "a claim takes the steps due at or before now, none due later"
        )
        with fresh.unit_of_work() as unit:
            assert unit.steps.claim(_T0, lease=uuid4(), until=_T0 + _LEASE, limit=9) == [], _c(
                "nothing is due: the claim is empty"
            )
            found = unit.steps.claim(
                _T0 + _LEASE - _US, lease=uuid4(), until=_T0 + _LEASE * 9, limit=9
            )
            assert [s.id for s in found] == [s.id for s in steps[3:]], _c(
                "a claim never takes what another claim holds under its lease"
            )
            unit.rollback()
        with fresh.unit_of_work() as unit:
            assert unit.steps.get(steps[3].id) == steps[3], _c("a rolled back claim is undone")
            with _raises(ValidationError, "claim refuses a naive now"):
                unit.steps.claim(datetime(2026, 1, 1), lease=uuid4(), until=_T0 + _LEASE, limit=1)
            with _raises(ValidationError, "claim refuses a lease that ends before now"):
                unit.steps.claim(_T0, lease=uuid4(), until=_T0, limit=1)
            with _raises(ValidationError, "claim refuses a limit below 1"):
                unit.steps.claim(_T0, lease=uuid4(), until=_T0 + _LEASE, limit=0)

    def test_a_lease_that_runs_out_makes_the_step_claimable_again(self, fresh: Store) -> None:
        [step] = _steps(1)
        _schedule(fresh, [step])
        first = uuid4()
        taken = _claim(fresh, _T0, lease=first)
        assert [s.id for s in taken] == [step.id], _c("a claim takes the due step")
        held = taken[0]
        assert _claim(fresh, _T0 + _LEASE - _US) == [], _c(
            "no claim gets a step before its lease runs out"
        )
        second = uuid4()
        found = _claim(fresh, _T0 + _LEASE, lease=second)
        assert [(s.id, s.attempts, s.lease) for s in found] == [(step.id, 2, second)], _c(
            "a step whose lease ran out is claimed again, one attempt more"
        )
        again = found[0]
        with fresh.unit_of_work() as unit:
            late = step_done(held, now=_T0 + _LEASE)
            assert unit.steps.settle([late], lease=first) == set(), _c(
                "an outcome under a lease that was taken over is not recorded"
            )
            assert unit.steps.get(step.id) == again, _c("a refused outcome changes nothing")
            done = step_done(again, now=_T0 + _LEASE + _US)
            assert unit.steps.settle([done], lease=second) == {step.id}, _c(
                "settle records an outcome under the claim's lease and returns its id"
            )
            assert unit.steps.get(step.id) == done, _c("a done step is stored as done")
            unit.commit()
        assert _claim(fresh, _T0 + timedelta(days=365)) == [], _c("a done step is never claimed")

    def test_failed_steps_are_due_again_and_dead_ones_never(self, fresh: Store) -> None:
        failing, dying = _steps(2)
        _schedule(fresh, [failing, dying])
        lease = uuid4()
        claimed = _claim(fresh, _T0 + _US, lease=lease)
        assert [s.id for s in claimed] == [failing.id, dying.id], _c("a claim takes every due step")
        one, two = claimed
        failed = step_failed(one, now=_T0 + _US, error="boom", max_attempts=3)
        dead = step_failed(two, now=_T0 + _US, error="gone", max_attempts=1)
        with fresh.unit_of_work() as unit:
            assert unit.steps.settle([failed, dead], lease=lease) == {one.id, two.id}, _c(
                "settle records every outcome of the claim"
            )
            assert unit.steps.get(one.id) == failed, _c("a failed step is stored as failed")
            assert unit.steps.get(two.id) == dead, _c("a dead step is stored as dead")
            assert unit.steps.select(status=StepStatus.DEAD) == [dead], _c(
                "select filters by status"
            )
            unit.commit()
        assert _claim(fresh, failed.due_at - _US) == [], _c("a failed step waits for its due_at")
        again = _claim(fresh, failed.due_at + timedelta(days=365))
        assert [s.id for s in again] == [one.id], _c(
            "a failed step is claimable again from its due_at; a dead one never"
        )

    def test_concurrent_claims_never_take_the_same_step(self, fresh: Store) -> None:
        steps = _steps(60)
        _schedule(fresh, steps)
        taken: list[list[UUID]] = [[] for _ in range(4)]
        errors: list[BaseException] = []

        def work(index: int) -> None:
            try:
                for _ in range(len(steps)):  # bounded: a claim that keeps nothing repeats
                    got = _claim(fresh, _T0 + timedelta(days=1), limit=7)
                    if not got:
                        return
                    taken[index].extend(s.id for s in got)
            except BaseException as error:  # reported below, in the test's thread
                errors.append(error)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, _c(f"concurrent claims succeed: {errors[:1]}")
        every = [i for ids in taken for i in ids]
        assert sorted(every) == sorted(s.id for s in steps), _c(
            "concurrent claims take every due step exactly once"
        )

    def test_claims_keep_to_the_kinds_asked_for(self, fresh: Store) -> None:
        mail, call = _steps(1, kind="mail")[0], _steps(1, kind="call")[0]
        _schedule(fresh, [mail, call])
        with fresh.unit_of_work() as unit:
            later = _T0 + timedelta(days=1)
            assert (
                unit.steps.claim(later, lease=uuid4(), until=later + _LEASE, limit=9, kinds=[])
                == []
            ), _c("a claim of no kinds takes nothing")
            found = unit.steps.claim(
                later, lease=uuid4(), until=later + _LEASE, limit=9, kinds=["call"]
            )
            assert [s.id for s in found] == [call.id], _c("a claim takes the kinds asked for")
