"""The CRM's customer, service and CLV reports on memory, SQLite and PostgreSQL: the store
path gives what the pure functions give on the same data."""

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from uuid import UUID, uuid4

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmkit.analytics import (
    Granularity,
    customer_flows,
    fit_bg_nbd,
    retention_matrix,
    revenue_report,
    rfm_summary,
    spans_from_purchases,
    spans_from_stage_changes,
    transactions_from_activities,
    transactions_from_deals,
)
from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.errors import ValidationError
from crmkit.lifecycle import SlaPolicy
from crmkit.models import (
    Activity,
    ActivityKind,
    Contact,
    Deal,
    DealStatus,
    LifecycleStage,
    Money,
    StageChange,
    SubjectKind,
    TicketChannel,
    TicketPriority,
)
from crmkit.serialization import make_converter
from crmkit.storage import Store
from tests.storage_support import STORES, stepping_store

JAN = datetime(2025, 1, 1, tzinfo=UTC)
WON: dict[str, list[Deal]] = {}  # the won deals seeded per tenant
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from stepping_store(request.param, tmp_path, NOW, "kpis")


def seed(
    store: Store, rnd: random.Random
) -> tuple[list[Activity], list[StageChange], dict[UUID, datetime]]:
    """Forty contacts: customers by lifecycle (some imported, some churned) with purchases
    in EUR and USD through 2025."""
    clock = FixedClock(JAN)
    contacts, activities, changes = [], [], []
    imported = {}
    for i in range(40):
        stage = rnd.choice([LifecycleStage.CUSTOMER, LifecycleStage.OTHER, LifecycleStage.LEAD])
        contact = Contact.new(email=f"c{i}@example.com", lifecycle_stage=stage, clock=clock)
        contacts.append(contact)
        became = JAN + timedelta(days=rnd.randrange(0, 300))
        if stage is LifecycleStage.CUSTOMER and i % 4 == 0:
            imported[contact.id] = contact.created_at
        elif stage is not LifecycleStage.LEAD:
            changes.append(
                StageChange.new(
                    subject=SubjectKind.CONTACT,
                    subject_id=contact.id,
                    from_stage="opportunity",
                    to_stage="customer",
                    at=became,
                    clock=clock,
                )
            )
            if stage is LifecycleStage.OTHER:
                changes.append(
                    StageChange.new(
                        subject=SubjectKind.CONTACT,
                        subject_id=contact.id,
                        from_stage="customer",
                        to_stage="other",
                        at=became + timedelta(days=rnd.randrange(1, 60)),
                        clock=clock,
                    )
                )
        activities.extend(
            Activity.new(
                contact_id=contact.id,
                kind=rnd.choice([ActivityKind.PURCHASE, ActivityKind.PURCHASE, ActivityKind.NOTE]),
                occurred_at=JAN + timedelta(days=rnd.randrange(0, 365), hours=rnd.randrange(24)),
                amount=Money(Decimal(rnd.randrange(1, 500)), rnd.choice(["EUR", "USD"])),
                clock=clock,
            )
            for _ in range(rnd.randrange(0, 6))
        )
    deals = [
        attrs.evolve(
            Deal.new(
                title=f"Order {i}",
                pipeline="sales",
                stage="won",
                amount=Money(Decimal(rnd.randrange(100, 9000)), rnd.choice(["EUR", "USD"])),
                contact_id=contacts[i].id,
                clock=clock,
            ),
            status=DealStatus.WON,
            probability=Decimal(1),
            closed_at=JAN + timedelta(days=rnd.randrange(0, 365)),
        )
        for i in rnd.sample(range(len(contacts)), 6)
    ]
    with store.unit_of_work() as unit:
        unit.contacts.add_many(contacts)  # referenced contacts first
        unit.activities.add_many(activities)
        unit.stage_history.add_many(changes)
        unit.deals.add_many(deals)
        unit.commit()
    WON[store.tenant] = deals
    return activities, changes, imported


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(seed_value=st.integers(0, 2**32), inactive_days=st.integers(1, 200))
def test_customer_report_agrees_with_the_pure_functions(
    store: Store, seed_value: int, inactive_days: int
) -> None:
    tenant = store.for_tenant(f"p-{uuid4().hex[:12]}")  # a fresh tenant per example
    activities, changes, imported = seed(tenant, random.Random(seed_value))
    crm = CRM(tenant, clock=FixedClock(NOW))
    period = {"start": JAN, "end": NOW, "granularity": Granularity.MONTH}
    purchases = transactions_from_activities(activities)

    by_lifecycle = crm.customer_report(start=JAN, end=NOW)
    spans = spans_from_stage_changes(changes, since=imported)
    assert by_lifecycle.flows == customer_flows(spans, **period)
    assert by_lifecycle.retention == retention_matrix(spans, **period)
    assert by_lifecycle.revenue == revenue_report(purchases, **period)
    assert {r.currency for r in by_lifecycle.revenue.rows} <= {"EUR", "USD"}
    assert sum(r.new for r in by_lifecycle.flows.rows) == len(spans) - sum(
        1 for s in spans if s.start < JAN
    )

    idle = timedelta(days=inactive_days)
    by_inactivity = crm.customer_report(
        start=JAN, end=NOW, granularity=Granularity.QUARTER, inactive_after=idle
    )
    lives = spans_from_purchases(purchases, inactive_after=idle, now=NOW)
    quarters = {**period, "granularity": Granularity.QUARTER}
    assert by_inactivity.flows == customer_flows(lives, **quarters)
    assert by_inactivity.retention == retention_matrix(lives, **quarters)
    converter = make_converter()
    assert converter.structure(converter.unstructure(by_inactivity), type(by_inactivity)) == (
        by_inactivity
    )
    by_deals = crm.customer_report(start=JAN, end=NOW, revenue_from="deals")
    assert by_deals.revenue == revenue_report(transactions_from_deals(WON[tenant.tenant]), **period)
    assert by_deals.revenue.rows
    with pytest.raises(ValidationError) as error:
        crm.customer_report(start=JAN, end=NOW, revenue_from="invoices")
    assert error.value.field == "revenue_from"


def test_clv_summary_reads_the_stored_purchases(store: Store) -> None:
    activities, _, _ = seed(store, random.Random(5))
    crm = CRM(store, clock=FixedClock(NOW))
    rates = {"EUR": Decimal("1.10")}
    summary = crm.clv_summary(currency="USD", rates=rates)
    expected = rfm_summary(
        transactions_from_activities(activities),
        observation_end=NOW,
        currency="USD",
        rates=rates,
    )
    assert summary == expected
    assert fit_bg_nbd(summary).converged


def test_service_report_from_stored_tickets(store: Store) -> None:
    gold = SlaPolicy(
        name="gold",
        priorities=frozenset({TicketPriority.HIGH}),
        first_response=timedelta(minutes=30),
        resolution=timedelta(hours=8),
    )
    crm = CRM(store, sla_policies=[gold])
    contact = crm.create_contact(Contact.new(email="ann@example.com", clock=crm.clock))
    scores = {"ann": [5, 4], "bob": [2]}
    for agent, answers in scores.items():
        for score in answers:
            ticket = crm.open_ticket(
                contact.id,
                subject="Where is my order?",
                channel=TicketChannel.EMAIL,
                priority=TicketPriority.HIGH,
                assignee=agent,
            )
            crm.reply_to_ticket(ticket.id, by=agent, text="On its way.")
            crm.solve_ticket(ticket.id, by=agent)
            crm.record_csat(ticket.id, score)
    waiting = crm.open_ticket(
        contact.id, subject="Refund?", channel=TicketChannel.EMAIL, priority=TicketPriority.HIGH
    )
    crm.open_ticket(contact.id, subject="No policy", channel=TicketChannel.CHAT)
    report = crm.service_report(
        start=NOW - timedelta(days=1), end=NOW + timedelta(days=1), granularity=Granularity.DAY
    )
    totals = [r for r in report.csat.rows if r.agent is None and r.responses]
    assert [(r.responses, r.satisfied) for r in totals] == [(3, 2)]
    assert {r.agent: r.csat for r in report.csat.rows if r.agent} == {"ann": 1.0, "bob": 0.0}
    first, resolution = report.compliance.rows
    assert (first.policy, first.metric, first.tickets, first.met, first.running) == (
        "gold",
        "first_response",
        4,
        3,
        1,
    )
    assert first.compliance == 1.0
    assert (resolution.met, resolution.running) == (3, 1)
    assert report.times.first_response.count == 3
    assert report.times.resolution.count == 3
    assert report.times.first_response.maximum is not None
    assert report.times.first_response.maximum < timedelta(minutes=1)
    assert waiting.id  # the unanswered ticket is the running one
    converter = make_converter()
    assert converter.structure(converter.unstructure(report), type(report)) == report
