"""The report's batched store queries agree with what they replace, on memory, SQLite
and PostgreSQL: a contact's "no activity of these kinds" conditions asked as one
subquery (the data-quality audit's stale count), the SLA reports of many tickets from
one read of their histories and their contacts' activities (``for_contacts``), and
the solve times of many rated tickets."""

import contextlib
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmkit.analytics import transactions_from_activities
from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.crm._service import _solved_at
from crmkit.errors import TransitionNotAllowed
from crmkit.lifecycle import SlaPolicy, sla_status, ticket_events
from crmkit.models import (
    Activity,
    ActivityKind,
    Contact,
    Money,
    SubjectKind,
    TicketChannel,
    TicketPriority,
    TicketStatus,
)
from crmkit.models.rules import (
    ActivityCondition,
    And,
    Condition,
    DateWindow,
    Measure,
    Not,
    Op,
    RelativeDate,
    Rule,
    RuleEntity,
)
from crmkit.segmentation import Context, evaluate
from crmkit.storage import Store
from tests.storage_support import STORES, stepping_store

NOW = datetime(2026, 3, 1, tzinfo=UTC)
KINDS = (ActivityKind.PAGE_VIEW, ActivityKind.PURCHASE, ActivityKind.CALL, ActivityKind.NOTE)
SETTINGS = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from stepping_store(request.param, tmp_path, NOW, "reportq")


def _fresh(store: Store) -> Store:
    return store.for_tenant(f"reportq-{uuid4().hex[:12]}")


# ---------------------------------------------------------------------------- absence

_NONE = [(Op.EQ, 0), (Op.LE, 0), (Op.LT, 1)]
_OTHER = [(Op.GE, 1), (Op.GT, 0), (Op.NE, 0), (Op.GE, 2), (Op.EQ, 1)]


@st.composite
def _quiet_rules(draw: st.DrawFn) -> Rule:
    """An AND of "no activity of kind k within d days" conditions (the audit's stale
    shape), with other counts, a date condition and a negated AND among them."""
    items: list[Condition] = []
    for _ in range(draw(st.integers(1, 6))):
        none = draw(st.integers(0, 3)) > 0
        op, value = draw(st.sampled_from(_NONE if none else _OTHER))
        items.append(
            ActivityCondition(
                draw(st.sampled_from(KINDS)),
                Measure.COUNT,
                op,
                value,
                within_days=draw(st.sampled_from([None, 30, 30, 7])),
            )
        )
    if draw(st.booleans()):
        items.append(RelativeDate("created_at", DateWindow.MORE_THAN_AGO, 20))
    if draw(st.booleans()):
        items.append(Not(And(tuple(items))))
    return Rule(RuleEntity.CONTACT, And(tuple(draw(st.permutations(items)))))


@SETTINGS
@given(seed=st.integers(0, 2**32), rule=_quiet_rules())
def test_absent_activities_select_what_the_interpreter_selects(
    store: Store, seed: int, rule: Rule
) -> None:
    rnd = random.Random(seed)
    tenant = _fresh(store)
    people = [
        Contact.new(first_name=f"p{i}", clock=FixedClock(NOW - timedelta(days=rnd.choice([5, 40]))))
        for i in range(5)
    ]
    index: dict[UUID, list[Activity]] = {p.id: [] for p in people}
    for person in people:
        for _ in range(rnd.randrange(4)):
            # around the windows' edges (7 and 30 days), and later than now
            age = rnd.choice([0, 6, 7, 8, 29, 30, 31, 90]) * 86_400 + rnd.choice([-1, 0, 1])
            index[person.id].append(
                Activity.new(
                    contact_id=person.id,
                    kind=rnd.choice(KINDS),
                    occurred_at=NOW - timedelta(seconds=age),
                    clock=FixedClock(NOW),
                )
            )
    with tenant.unit_of_work() as unit:
        unit.contacts.add_many(people)
        unit.activities.add_many([a for found in index.values() for a in found])
        unit.commit()
    context = Context(now=NOW, activities=index)
    expected = {p.id for p in people if evaluate(rule, p, context) is True}
    with tenant.unit_of_work() as unit:
        assert set(unit.contacts.ids(rule, now=NOW)) == expected
        assert unit.contacts.count(rule, now=NOW) == len(expected)


def test_the_audit_counts_as_stale_only_contacts_quiet_in_every_kind(store: Store) -> None:
    tenant = _fresh(store)
    old = FixedClock(NOW - timedelta(days=400))
    people = {kind: Contact.new(first_name=kind.value, clock=old) for kind in ActivityKind}
    quiet = Contact.new(first_name="quiet", clock=old)
    recent = Contact.new(first_name="recent", clock=FixedClock(NOW - timedelta(days=3)))
    long_ago = Contact.new(first_name="long ago", clock=old)
    with tenant.unit_of_work() as unit:
        unit.contacts.add_many([*people.values(), quiet, recent, long_ago])
        unit.activities.add_many(
            [
                Activity.new(
                    contact_id=person.id,
                    kind=kind,
                    occurred_at=NOW - timedelta(days=179),
                    clock=FixedClock(NOW),
                )
                for kind, person in people.items()
            ]
            + [
                Activity.new(
                    contact_id=long_ago.id,
                    kind=ActivityKind.PAGE_VIEW,
                    occurred_at=NOW - timedelta(days=181),
                    clock=FixedClock(NOW),
                )
            ]
        )
        unit.commit()
    report = CRM(tenant).audit(stale_after_days=180)
    assert report.stale == 2, "quiet and long ago: an activity of any kind keeps one fresh"
    quiet_in_all = And(
        tuple(
            ActivityCondition(kind, Measure.COUNT, Op.EQ, 0, within_days=180)
            for kind in ActivityKind
        )
    )
    with tenant.unit_of_work() as unit:
        found = set(unit.contacts.ids(Rule(RuleEntity.CONTACT, quiet_in_all), now=NOW))
    assert found == {quiet.id, recent.id, long_ago.id}


# ---------------------------------------------------------------------------- timelines


@SETTINGS
@given(seed=st.integers(0, 2**32))
def test_for_contacts_lists_what_for_contact_lists_of_each(store: Store, seed: int) -> None:
    rnd = random.Random(seed)
    tenant = _fresh(store)
    people = [Contact.new(first_name=f"p{i}", clock=FixedClock(NOW)) for i in range(4)]
    tied = NOW - timedelta(days=3)
    activities = [
        Activity.new(
            contact_id=rnd.choice(people).id,
            kind=rnd.choice(KINDS),
            occurred_at=tied if rnd.random() < 0.3 else NOW - timedelta(hours=rnd.randrange(200)),
            clock=FixedClock(NOW),
        )
        for _ in range(rnd.randrange(12))
    ]
    with tenant.unit_of_work() as unit:
        unit.contacts.add_many(people)
        unit.activities.add_many(activities)
        unit.commit()
    asked = rnd.sample([p.id for p in people], rnd.randrange(5))
    kinds = None if rnd.random() < 0.5 else rnd.sample(KINDS, rnd.randrange(3))
    since = None if rnd.random() < 0.3 else NOW - timedelta(hours=rnd.randrange(200))
    until = None if rnd.random() < 0.5 else NOW - timedelta(hours=rnd.randrange(100))
    with tenant.unit_of_work() as unit:
        each = [
            a
            for contact_id in asked
            for a in unit.activities.for_contact(contact_id, kinds=kinds, since=since, until=until)
        ]
        found = unit.activities.for_contacts(
            asked + asked[:1], kinds=kinds, since=since, until=until
        )
    assert found == sorted(each, key=lambda a: (a.occurred_at, a.id))


# ---------------------------------------------------------------------------- SLA


def _one_by_one(crm: CRM, store: Store, now: datetime) -> tuple[list[Any], dict[UUID, Any]]:
    """The SLA reports and solve times of every ticket as ``service_report`` built them
    before: queries per ticket."""
    with store.unit_of_work() as unit:
        tickets = list(unit.tickets.iterate())
        reports = [
            sla_status(
                t,
                ticket_events(
                    t,
                    unit.stage_history.for_subject(SubjectKind.TICKET, t.id),
                    unit.activities.for_contact(t.contact_id, since=t.created_at),
                ),
                crm.sla_policies,
                now,
            )
            for t in tickets
        ]
        solved = {}
        for t in tickets:
            history = unit.stage_history.for_subject(SubjectKind.TICKET, t.id)
            moves = [c.at for c in history if c.to_stage == TicketStatus.SOLVED.value]
            done = t.status in (TicketStatus.SOLVED, TicketStatus.CLOSED)
            solved[t.id] = max(moves) if moves else t.updated_at if done else None
    return reports, solved


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32))
def test_sla_reports_of_many_tickets_agree_with_one_by_one(store: Store, seed: int) -> None:
    rnd = random.Random(seed)
    tenant = _fresh(store)
    gold = SlaPolicy(
        name="gold",
        priorities=frozenset({TicketPriority.HIGH}),
        first_response=timedelta(seconds=rnd.choice([2, 5, 60])),
        resolution=timedelta(seconds=rnd.choice([4, 20, 600])),
    )
    rest = SlaPolicy(name="rest", first_response=timedelta(days=1))
    crm = CRM(tenant, sla_policies=[gold, rest])
    people = [
        crm.create_contact(Contact.new(first_name=f"p{i}", clock=crm.clock)) for i in range(3)
    ]
    tickets = []
    for i in range(rnd.randrange(1, 7)):
        who = rnd.choice(people)
        ticket = crm.open_ticket(
            who.id,
            subject=f"t{i}",
            channel=TicketChannel.EMAIL,
            priority=rnd.choice([TicketPriority.HIGH, TicketPriority.NORMAL]),
        )
        tickets.append(ticket)
        if rnd.random() < 0.5:  # an activity of the contact that answers no ticket
            crm.record_activity(
                Activity.new(
                    contact_id=who.id,
                    kind=ActivityKind.CALL,
                    occurred_at=crm.clock.now(),
                    actor="ann",
                    clock=crm.clock,
                )
            )
    done = set()
    for _ in range(rnd.randrange(10)):
        ticket = rnd.choice(tickets)
        step = rnd.random()
        if ticket.id in done:
            continue
        if step < 0.4:
            crm.reply_to_ticket(ticket.id, by=rnd.choice(["ann", None]), text="hello")
        elif step < 0.7:
            crm.solve_ticket(ticket.id, by="ann")
            done.add(ticket.id)
            if rnd.random() < 0.7:
                crm.record_csat(ticket.id, rnd.randrange(1, 6))
        else:
            with contextlib.suppress(TransitionNotAllowed):  # already pending
                crm.move_ticket(ticket.id, TicketStatus.PENDING, by="ann")
    now = crm.clock.now()
    expected, solved = _one_by_one(crm, tenant, now)
    with tenant.unit_of_work() as unit:
        stored = list(unit.tickets.iterate())
        assert crm._slas(unit, stored, now) == expected
        assert _solved_at(unit, stored) == solved
        assert crm._slas(unit, [], now) == []
        assert _solved_at(unit, []) == {}
    report = crm.service_report(start=now - timedelta(days=1), end=now + timedelta(days=1))
    assert report.compliance.rows  # the batched path ran on these tickets


# ---------------------------------------------------------------------------- purchases


@SETTINGS
@given(
    seed=st.integers(0, 2**32),
    amounts=st.lists(st.decimals(0, 10**9, places=3), min_size=0, max_size=10),
)
def test_purchases_are_the_transactions_of_the_purchase_activities(
    store: Store, seed: int, amounts: list[Decimal]
) -> None:
    rnd = random.Random(seed)
    tenant = _fresh(store)
    people = [Contact.new(first_name=f"p{i}", clock=FixedClock(NOW)) for i in range(3)]
    tied = NOW - timedelta(days=2)
    activities = [
        Activity.new(
            contact_id=rnd.choice(people).id,
            kind=ActivityKind.PURCHASE if rnd.random() < 0.8 else ActivityKind.CALL,
            occurred_at=tied
            if rnd.random() < 0.3
            else NOW - timedelta(minutes=rnd.randrange(5000)),
            amount=Money(amount, rnd.choice(["EUR", "USD", "JPY"])),
            clock=FixedClock(NOW),
        )
        for amount in amounts
    ]
    with tenant.unit_of_work() as unit:
        unit.contacts.add_many(people)
        unit.activities.add_many(activities)
        unit.commit()
    since = None if rnd.random() < 0.5 else NOW - timedelta(minutes=rnd.randrange(5000))
    until = None if rnd.random() < 0.5 else tied
    with tenant.unit_of_work() as unit:
        bought = unit.activities.of_kinds([ActivityKind.PURCHASE], since=since, until=until)
        assert unit.activities.purchases(since=since, until=until) == (
            transactions_from_activities(bought)
        )
    crm = CRM(tenant)
    upto = [a for a in activities if a.occurred_at <= crm.clock.now()]
    assert crm.purchases() == transactions_from_activities(
        sorted(
            (a for a in upto if a.kind is ActivityKind.PURCHASE),
            key=lambda a: (a.occurred_at, a.id),
        )
    )
