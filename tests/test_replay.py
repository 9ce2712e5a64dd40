"""The stage-history replays of the port (``reach``, ``standing``, ``standings``): every
store gives what the Python reference replay gives on random histories (memory, SQLite,
PostgreSQL)."""

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmkit.analytics import (
    StandingWindow,
    replay_customer_spans,
    replay_reach,
    replay_standing,
)
from crmkit.clock import FixedClock
from crmkit.errors import ValidationError
from crmkit.models import (
    Contact,
    Deal,
    DealStatus,
    LifecycleStage,
    Money,
    StageChange,
    SubjectKind,
)
from crmkit.segmentation import deals_where, field
from crmkit.storage import MemoryStore, Store
from tests.storage_support import postgres_store, sqlite_store

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STAGES = ("new", "qualified", "proposal", "won", "lost")
RANKS = {"new": 0, "qualified": 1, "proposal": 2, "won": 3}


@pytest.fixture(scope="module", params=["memory", "sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore(tenant="replay")
    elif request.param == "sqlite":
        yield from sqlite_store(tmp_path_factory.mktemp("replay") / "crm.db", tenant="replay")
    else:
        yield from postgres_store(tenant="replay")


def _fresh(store: Store) -> Store:
    return store.for_tenant(f"r-{uuid4().hex[:12]}")


@st.composite
def _deals(draw: st.DrawFn) -> tuple[list[Deal], list[StageChange]]:
    deals: list[Deal] = []
    changes: list[StageChange] = []
    for n in range(draw(st.integers(0, 6))):
        created = T0 + timedelta(hours=draw(st.integers(0, 30)))
        stage = draw(st.sampled_from(STAGES))
        status = {"won": DealStatus.WON, "lost": DealStatus.LOST}.get(stage, DealStatus.OPEN)
        deal = Deal.new(
            title=f"d{n}",
            pipeline=draw(st.sampled_from(("sales", "renewals"))),
            stage=stage,
            owner=draw(st.sampled_from(("ann", "bo", None))),
            clock=FixedClock(created),
        )
        if status is not DealStatus.OPEN:
            deal = attrs.evolve(deal, status=status, closed_at=created + timedelta(days=1))
        deals.append(deal)
        previous = draw(st.sampled_from((None, "new", "qualified")))
        for _ in range(draw(st.integers(0, 4))):
            to = draw(st.sampled_from([s for s in STAGES if s != previous]))
            amount = draw(
                st.one_of(
                    st.none(),
                    st.builds(
                        Money,
                        st.decimals(0, 10_000, places=2).map(Decimal),
                        st.sampled_from(("EUR", "USD")),
                    ),
                )
            )
            changes.append(
                StageChange.new(
                    subject=SubjectKind.DEAL,
                    subject_id=deal.id,
                    pipeline=draw(st.sampled_from((deal.pipeline, deal.pipeline, "other"))),
                    from_stage=previous,
                    to_stage=to,
                    at=created + timedelta(hours=draw(st.integers(0, 40))),  # ties happen
                    reason=draw(st.sampled_from((None, "price"))),
                    amount=amount,
                    probability=draw(st.sampled_from((None, "0.5"))),
                    expected_close=draw(st.sampled_from((None, date(2026, 2, 1)))),
                    clock=FixedClock(created),
                )
            )
            previous = to
    return deals, changes


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-3 * max(1.0, abs(a))


def _same_standing(found: list, expected: list) -> None:  # type: ignore[type-arg]
    def key(row):  # type: ignore[no-untyped-def]
        return (str(row.group), row.pipeline, row.stage, str(row.reason), str(row.currency),
                str(row.expected_close), str(row.later))  # fmt: skip

    found_by = {key(r): r for r in found}
    expected_by = {key(r): r for r in expected}
    assert found_by.keys() == expected_by.keys()
    for k, want in expected_by.items():
        got = found_by[k]
        assert (got.count, got.amount) == (want.count, want.amount), k
        assert _close(got.age_seconds, want.age_seconds), k


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    world=_deals(),
    hours=st.integers(0, 80),
    pipeline=st.sampled_from((None, "sales")),
    group=st.sampled_from((None, "owner", "status")),
    ruled=st.booleans(),
    stages=st.one_of(st.none(), st.frozensets(st.sampled_from(STAGES))),
)
def test_the_store_replays_deals_as_the_reference_does(  # noqa: PLR0917
    store: Store,
    world: tuple[list[Deal], list[StageChange]],
    hours: int,
    pipeline: str | None,
    group: str | None,
    ruled: bool,
    stages: frozenset[str] | None,
) -> None:
    deals, changes = world
    fresh = _fresh(store)
    with fresh.unit_of_work() as unit:
        unit.deals.add_many(deals)
        unit.stage_history.add_many(changes)
        unit.commit()
    until = T0 + timedelta(hours=hours)
    rule = deals_where(field("owner") == "ann") if ruled else None
    chosen = [d for d in deals if not ruled or d.owner == "ann"]
    with fresh.unit_of_work() as unit:
        reach = unit.stage_history.reach(
            SubjectKind.DEAL, RANKS, until=until, pipeline=pipeline, rule=rule, group=group
        )
        expected = replay_reach(
            chosen, changes, SubjectKind.DEAL, RANKS, until=until, pipeline=pipeline, group=group
        )
        assert sorted(reach, key=repr) == sorted(expected, key=repr)
        since = until - timedelta(hours=10)
        then = until + timedelta(hours=12)
        standing = unit.stage_history.standing(
            SubjectKind.DEAL,
            until=until,
            since=since,
            then=then,
            pipeline=pipeline,
            rule=rule,
            group=group,
            stages=stages,
        )
        _same_standing(
            standing,
            replay_standing(
                chosen,
                changes,
                SubjectKind.DEAL,
                until=until,
                since=since,
                then=then,
                pipeline=pipeline,
                group=group,
                stages=stages,
            ),
        )
        plain = unit.stage_history.standing(SubjectKind.DEAL, until=until, group=group)
        _same_standing(
            plain, replay_standing(deals, changes, SubjectKind.DEAL, until=until, group=group)
        )
        # many windows in one call: each as its own replay (the SQL store orders the history
        # once for all of them and keeps each window's own stages, since and then)
        windows = [
            StandingWindow(until, since=since, then=then, stages=stages),
            StandingWindow(until),
            StandingWindow(since, stages=frozenset({"won", "lost"})),
            StandingWindow(then, since=until, then=then + timedelta(hours=5)),
            StandingWindow(until, stages=frozenset()),
        ]
        found = unit.stage_history.standings(
            SubjectKind.DEAL, windows, pipeline=pipeline, rule=rule, group=group
        )
        assert len(found) == len(windows)
        for window, rows in zip(windows, found, strict=True):
            _same_standing(
                rows,
                replay_standing(
                    chosen,
                    changes,
                    SubjectKind.DEAL,
                    until=window.until,
                    since=window.since,
                    then=window.then,
                    pipeline=pipeline,
                    group=group,
                    stages=window.stages,
                ),
            )


_LIFECYCLE = ("lead", "customer", "evangelist", "other")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["lead", "customer", "other"]),  # stage now
            st.lists(st.tuples(st.sampled_from(_LIFECYCLE), st.integers(0, 3)), max_size=4),
        ),
        max_size=6,
    ),
    st.sampled_from([None, ("customer",), ("evangelist", "customer")]),
)
def test_the_store_gives_the_customer_spans_of_the_reference(
    store: Store,
    people: list[tuple[str, list[tuple[str, int]]]],
    stages: tuple[str, ...] | None,
) -> None:
    clock = FixedClock(T0)
    contacts, changes = [], []
    for now, moves in people:
        contact = Contact.new(lifecycle_stage=LifecycleStage(now), clock=clock)
        contacts.append(contact)
        # few distinct hours: moves at one instant, told apart by id alone
        changes += [
            StageChange.new(
                subject=SubjectKind.CONTACT,
                subject_id=contact.id,
                to_stage=stage,
                at=T0 + timedelta(hours=hour),
                clock=clock,
            )
            for stage, hour in moves
        ]
    fresh = _fresh(store)
    with fresh.unit_of_work() as unit:
        unit.contacts.add_many(contacts)
        unit.stage_history.add_many(changes)
        unit.commit()
    asked = [LifecycleStage(s) for s in stages] if stages else None
    with fresh.unit_of_work() as unit:
        history = unit.stage_history
        found = history.customer_spans(asked) if asked else history.customer_spans()
    want = (
        replay_customer_spans(contacts, changes, asked)
        if asked
        else (replay_customer_spans(contacts, changes))
    )
    assert sorted(found, key=repr) == sorted(want, key=repr)


def test_reach_counts_skipped_and_imported_stages(store: Store) -> None:
    fresh = _fresh(store)
    clock = FixedClock(T0)
    walked = Contact.new(first_name="Walked", clock=clock)
    skipped = Contact.new(first_name="Skipped", clock=clock)
    imported = attrs.evolve(
        Contact.new(first_name="Imported", clock=clock), lifecycle_stage=LifecycleStage.SQL
    )
    late = attrs.evolve(
        Contact.new(first_name="Late", clock=clock), lifecycle_stage=LifecycleStage.CUSTOMER
    )
    unborn = Contact.new(first_name="Unborn", clock=FixedClock(T0 + timedelta(days=9)))

    def move(contact: Contact, from_: str | None, to: str, days: int) -> StageChange:
        return StageChange.new(
            subject=SubjectKind.CONTACT,
            subject_id=contact.id,
            from_stage=from_,
            to_stage=to,
            at=T0 + timedelta(days=days),
            clock=clock,
        )

    history = [
        move(walked, None, "subscriber", 0),
        move(walked, "subscriber", "lead", 1),
        move(walked, "lead", "mql", 2),
        move(skipped, None, "subscriber", 0),
        move(skipped, "subscriber", "opportunity", 3),  # lead, mql and sql skipped
        move(late, "mql", "customer", 8),  # imported at mql, moved after the time
    ]
    with fresh.unit_of_work() as unit:
        unit.contacts.add_many([walked, skipped, imported, late, unborn])
        unit.stage_history.add_many(history)
        unit.commit()
    ranks = {s.value: n for n, s in enumerate(LifecycleStage) if s is not LifecycleStage.OTHER}
    with fresh.unit_of_work() as unit:
        rows = unit.stage_history.reach(SubjectKind.CONTACT, ranks, until=T0 + timedelta(days=5))
    assert sorted((r.reached, r.entered or -1, r.count) for r in rows) == [
        (2, -1, 1),  # late: at mql (the stage it left later), no recorded entry
        (2, 2, 1),  # walked: mql, entered
        (3, -1, 1),  # imported: sql, without history
        (4, 4, 1),  # skipped: opportunity
    ]


def test_standing_counts_a_last_move_at_since_and_not_one_before_it(store: Store) -> None:
    # since is inclusive: a deal whose last move before until is exactly at since counts
    # (with that move's snapshot, not the update snapshot at the same instant), one whose
    # last move is before since does not, whatever moves it had before
    fresh = _fresh(store)
    clock = FixedClock(T0)
    at_since, before, back = (Deal.new(title=t, pipeline="sales", stage="new", clock=clock)
                              for t in ("at since", "before", "back"))  # fmt: skip
    since, until, then = (T0 + timedelta(hours=h) for h in (5, 10, 20))

    def move(deal: Deal, from_: str, to: str, hours: int, amount: str = "0") -> StageChange:
        return StageChange.new(
            subject=SubjectKind.DEAL,
            subject_id=deal.id,
            pipeline="sales",
            from_stage=from_,
            to_stage=to,
            at=T0 + timedelta(hours=hours),
            reason="price" if to == "lost" else None,
            amount=Money(Decimal(amount), "EUR"),
            clock=clock,
        )

    history = [
        move(at_since, "new", "qualified", 1, "10"),
        move(at_since, "qualified", "won", 5, "100"),
        move(at_since, "won", "won", 5, "999"),  # an update snapshot at the same instant
        move(at_since, "won", "lost", 12, "7"),
        move(before, "new", "lost", 1, "50"),
        move(back, "new", "won", 2, "20"),
        move(back, "won", "qualified", 6, "30"),
    ]
    with fresh.unit_of_work() as unit:
        unit.deals.add_many([at_since, before, back])
        unit.stage_history.add_many(history)
        unit.commit()
    with fresh.unit_of_work() as unit:
        rows = unit.stage_history.standing(
            SubjectKind.DEAL, until=until, since=since, then=then, stages=("won", "lost")
        )
        every = unit.stage_history.standing(SubjectKind.DEAL, until=until, since=since)
    found = [(r.stage, r.count, r.amount, r.later) for r in rows]
    assert found == [("won", 1, Decimal(100), "lost")]
    assert sorted((r.stage, r.count, r.amount) for r in every) == [
        ("qualified", 1, Decimal(30)),
        ("won", 1, Decimal(100)),
    ]
    expected = replay_standing(
        [at_since, before, back], history, SubjectKind.DEAL, until=until, since=since
    )
    _same_standing(every, expected)


def test_replay_arguments_are_checked(store: Store) -> None:
    naive = T0.replace(tzinfo=None)
    later, earlier = T0 + timedelta(1), T0 - timedelta(1)
    deal, contact = SubjectKind.DEAL, SubjectKind.CONTACT
    with _fresh(store).unit_of_work() as unit:
        history = unit.stage_history
        cases = [
            (lambda: history.reach(SubjectKind.TICKET, RANKS, until=T0), "subject"),
            (lambda: history.reach(deal, {}, until=T0), "ranks"),
            (lambda: history.reach(deal, {"a": -1}, until=T0), "ranks"),
            (lambda: history.reach(deal, RANKS, until=naive), "until"),
            (lambda: history.reach(contact, RANKS, until=T0, pipeline="p"), "pipeline"),
            (lambda: history.reach(deal, RANKS, until=T0, group="created_at"), "field"),
            (lambda: history.standing(deal, until=T0, since=later), "since"),
            (lambda: history.standing(deal, until=T0, then=earlier), "then"),
            (lambda: history.standing(deal, until=T0, stages="won"), "stages"),
            (lambda: history.standing(deal, until=T0, stages=[1]), "stages"),
            (lambda: history.standings(deal, "windows"), "windows"),  # type: ignore[arg-type]
            (lambda: history.standings(deal, [StandingWindow(T0), T0]), "windows[1]"),  # type: ignore[list-item]
            (lambda: history.standings(contact, [StandingWindow(T0)], pipeline="p"), "pipeline"),
            (lambda: StandingWindow(T0, since=later), "since"),
            (lambda: StandingWindow(naive), "until"),
            (lambda: StandingWindow(T0, stages="won"), "stages"),  # type: ignore[arg-type]
        ]
        for call, name in cases:
            with pytest.raises(ValidationError) as error:
                call()
            assert error.value.field == name
