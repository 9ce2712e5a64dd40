"""Regression tests for the report findings of the hostdev3 evaluation, on memory,
SQLite and PostgreSQL: funnel times over skipped stages (#5), money at the currency's
exponent on every store (#12, #22), forecast categories naming unknown stages (#11),
rate tables in any case (#20)."""

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from crmkit.analytics import (
    ForecastCategory,
    Granularity,
    Transaction,
    brier,
    period_of,
    spans_from_purchases,
)
from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.errors import ValidationError
from crmkit.lifecycle import Pipeline, Stage, StageKind, Touchpoint
from crmkit.models import (
    Activity,
    ActivityKind,
    Contact,
    LeadChannel,
    Money,
    Segment,
    SubjectKind,
    TicketChannel,
)
from crmkit.segmentation import contacts_where, field
from crmkit.storage import Store
from tests.storage_support import STORES, stepping_store

START = datetime(2026, 1, 5, 9, tzinfo=UTC)
SALES = Pipeline(
    key="sales",
    label="Sales",
    subject=SubjectKind.DEAL,
    stages=(
        Stage(key="discovery", label="D", probability=Decimal("0.2")),
        Stage(key="proposal", label="P", probability=Decimal("0.5")),
        Stage(key="won", label="W", probability=Decimal(1), kind=StageKind.WON),
        Stage(key="lost", label="L", kind=StageKind.LOST),
    ),
)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from stepping_store(request.param, tmp_path, START, "hostdev3")


def _deals(crm: CRM, amounts: tuple[str, ...]) -> list[object]:
    ids = []
    for n, amount in enumerate(amounts):
        touch = Touchpoint(email=f"d{n}@x.org", source="web", channel=LeadChannel.FORM)
        lead = crm.capture_lead(touch).lead
        deal = crm.convert_lead(
            lead.id, pipeline="sales", title=f"d{n}", amount=Money(amount, "EUR")
        ).deal
        ids.append(deal.id)
    return ids


def _advance(store: Store, days: int) -> None:
    store.clock.advance(timedelta(days=days))  # type: ignore[attr-defined]


def test_funnel_times_leave_out_subjects_that_skipped_a_stage(store: Store) -> None:
    """#5: a deal won straight from discovery is no 0-day proposal -> won step."""
    crm = CRM(store, pipelines=[SALES])
    a, b, c = _deals(crm, ("1000", "2000", "1500.5"))
    _advance(store, 10)
    crm.move_deal(a, "proposal", by="x")
    _advance(store, 20)
    for deal in (a, b, c):
        crm.win_deal(deal, by="x")
    rows = {r.stage: r for r in crm.funnel("sales").rows}
    assert rows["proposal"].reached == rows["won"].reached == 3
    assert (rows["proposal"].timed, rows["won"].timed) == (1, 1)
    assert rows["proposal"].median_time is not None
    assert abs(rows["proposal"].median_time - timedelta(days=10)) < timedelta(minutes=1)
    assert rows["won"].median_time is not None
    assert abs(rows["won"].median_time - timedelta(days=20)) < timedelta(minutes=1)


def test_report_money_comes_at_the_currency_exponent_on_every_store(store: Store) -> None:
    """#12, #22: ``4500.50`` on every store, not SQLite's ``4500.500000000000``, and
    ``0.00`` for the deals without an amount rather than ``0E-12``."""
    crm = CRM(store, pipelines=[SALES])
    a, _open, c = _deals(crm, ("1000", "2000", "1500.5"))
    touch = Touchpoint(email="none@x.org", source="web", channel=LeadChannel.FORM)
    lead = crm.capture_lead(touch).lead
    no_amount = crm.convert_lead(lead.id, pipeline="sales", title="none").deal.id
    _advance(store, 5)
    for deal in (a, c, no_amount):
        crm.win_deal(deal, by="x")
    month = [period_of(store.clock.now(), Granularity.MONTH)]
    rows = {r.currency: r for r in crm.pipeline_kpis("sales", periods=month).rows}
    assert str(rows["EUR"].won_amount) == str(rows["EUR"].new_revenue) == "2500.50"
    assert str(rows["EUR"].open_amount) == "2000.00"
    assert str(rows["EUR"].weighted) == "400.00"
    assert str(rows[None].won_amount) == "0.00"
    forecast = {r.currency: r for r in crm.forecast("sales", periods=month).rows}
    assert str(forecast["EUR"].closed) == "2500.50"
    assert str(forecast[None].closed) == "0.00"


def test_forecast_categories_name_unknown_and_closed_stages(store: Store) -> None:
    """#11 (and #13: a category's string value is accepted like the member)."""
    crm = CRM(store, pipelines=[SALES])
    touch = Touchpoint(email="a@x.org", source="web", channel=LeadChannel.FORM)
    lead = crm.capture_lead(touch).lead
    close = (START + timedelta(days=3)).date()
    crm.convert_lead(
        lead.id, pipeline="sales", title="a", amount=Money("1000", "EUR"), expected_close=close
    )
    month = [period_of(START, Granularity.MONTH)]
    for wrong, name in (
        ({"negotation": ForecastCategory.COMMIT}, "categories['negotation']"),
        ({"won": ForecastCategory.PIPELINE}, "categories['won']"),
        ({"discovery": "certain"}, "categories['discovery']"),
    ):
        with pytest.raises(ValidationError) as refused:
            crm.forecast("sales", periods=month, categories=wrong)  # type: ignore[arg-type]
        assert refused.value.field == name
    by_value = crm.forecast("sales", periods=month, categories={"discovery": "commit"})  # type: ignore[dict-item]
    by_member = crm.forecast(
        "sales", periods=month, categories={"discovery": ForecastCategory.COMMIT}
    )
    assert by_value.rows == by_member.rows
    assert by_member.rows[0].commit == Decimal("1000.00")


def test_rate_tables_take_currency_codes_in_any_case(store: Store) -> None:
    """#20: ``{"usd": ...}`` and ``currency="eur"`` are EUR and USD, as in Money; a bogus
    code is refused as one, not reported as a missing rate."""
    crm = CRM(store, pipelines=[SALES])
    (a,) = _deals(crm, ("1000",))
    _advance(store, 1)
    crm.win_deal(a, by="x")
    month = [period_of(store.clock.now(), Granularity.MONTH)]
    lower = crm.pipeline_kpis("sales", periods=month, rates={"usd": Decimal("0.9")}, currency="eur")
    upper = crm.pipeline_kpis("sales", periods=month, rates={"USD": Decimal("0.9")}, currency="EUR")
    assert lower.rows == upper.rows
    assert lower.rows[0].currency == "EUR"
    with pytest.raises(ValidationError) as bogus:
        crm.pipeline_kpis("sales", periods=month, rates={"USD": Decimal("0.9")}, currency="EURO")
    assert bogus.value.field == "currency"
    with pytest.raises(ValidationError) as twice:
        crm.forecast(
            "sales",
            periods=month,
            rates={"USD": Decimal("0.9"), "usd": Decimal("0.8")},
            currency="EUR",
        )
    assert twice.value.field.startswith("rates[")


def test_deal_updates_reach_the_forecast_and_kpis_as_of_their_time(store: Store) -> None:
    """#3: an update of amount and expected close is replayed from its time on; as of a
    time before it, the values before it."""
    crm = CRM(store, pipelines=[SALES])
    touch = Touchpoint(email="a@x.org", source="web", channel=LeadChannel.FORM)
    lead = crm.capture_lead(touch).lead
    deal = crm.convert_lead(
        lead.id,
        pipeline="sales",
        title="a",
        amount=Money("1000", "EUR"),
        expected_close=date(2026, 1, 25),
    ).deal
    before = store.clock.now()
    _advance(store, 2)
    crm.update_deal(deal.id, amount=Money("50000", "USD"), expected_close=date(2026, 3, 10))
    jan, mar = (period_of(datetime(2026, m, 1, tzinfo=UTC), Granularity.MONTH) for m in (1, 3))
    now = {(r.period, r.currency): r for r in crm.forecast("sales", periods=[jan, mar]).rows}
    assert now[("2026-03", "USD")].pipeline == Decimal("50000.00")
    assert now[("2026-03", "USD")].deals == 1
    assert all(r.deals == 0 for (period, _), r in now.items() if period == "2026-01")
    then = crm.forecast("sales", periods=[jan], at=before).rows
    assert [(r.currency, r.pipeline, r.deals) for r in then] == [("EUR", Decimal("1000.00"), 1)]
    (kpi,) = crm.pipeline_kpis("sales", periods=[jan]).rows
    assert (kpi.currency, kpi.open, kpi.open_amount) == ("USD", 1, Decimal("50000.00"))
    history = crm.history(SubjectKind.DEAL, deal.id)
    assert [(c.from_stage, c.to_stage, c.reason) for c in history][-1] == (
        "discovery",
        "discovery",
        "updated",
    )
    crm.update_deal(deal.id, title="renamed")  # no value of the replay changed
    assert len(crm.history(SubjectKind.DEAL, deal.id)) == len(history)
    rows = {r.stage: r for r in crm.funnel("sales").rows}
    assert rows["discovery"].reached == 1
    assert rows["proposal"].reached == 0


def test_inactivity_churn_splits_a_customer_at_each_long_gap(store: Store) -> None:
    """#9: a customer silent for longer than ``inactive_after`` churned then, and the
    purchase after the gap is a reactivation (new), so a past month's churn stays put."""
    crm = CRM(store)
    contact = crm.create_contact(Contact.new(email="buyer@x.org", clock=store.clock))
    jan = datetime(2025, 1, 10, tzinfo=UTC)
    for day in (0, 20, 200):  # a gap of 180 days after the second purchase
        crm.record_activity(
            Activity.new(
                contact_id=contact.id,
                kind=ActivityKind.PURCHASE,
                occurred_at=jan + timedelta(days=day),
                amount=Money("10", "EUR"),
                clock=store.clock,
            )
        )
    report = crm.customer_report(
        start=datetime(2025, 1, 1, tzinfo=UTC),
        end=datetime(2025, 9, 1, tzinfo=UTC),
        inactive_after=timedelta(days=90),
    )
    flows = {r.period: (r.customers_at_start, r.new, r.churned) for r in report.flows.rows}
    assert flows["2025-01"] == (0, 1, 0)
    assert flows["2025-04"] == (1, 0, 1)  # churned 90 days after 30 January
    assert flows["2025-05"] == (0, 0, 0)
    assert flows["2025-07"] == (0, 1, 0)  # back on 29 July: reactivated
    spans = spans_from_purchases(
        [Transaction("c", jan + timedelta(days=d), Money("1", "EUR")) for d in (0, 20, 200)],
        inactive_after=timedelta(days=90),
        now=START,
    )
    assert [(s.start, s.end) for s in spans] == [
        (jan, jan + timedelta(days=110)),
        (jan + timedelta(days=200), jan + timedelta(days=290)),
    ]


def test_a_rating_counts_in_the_month_its_ticket_was_solved(store: Store) -> None:
    """#15: created on 28 February, solved and rated on 1 March, closed later: in the
    March report, not lost between two monthly reports."""
    crm = CRM(store)
    contact = crm.create_contact(Contact.new(email="c@x.org", clock=store.clock))
    store.clock.set(datetime(2026, 2, 28, 12, tzinfo=UTC))  # type: ignore[attr-defined]
    ticket = crm.open_ticket(contact.id, subject="help", channel=TicketChannel.EMAIL)
    store.clock.set(datetime(2026, 3, 1, 9, tzinfo=UTC))  # type: ignore[attr-defined]
    crm.solve_ticket(ticket.id, by="agent")
    crm.record_csat(ticket.id, 5)
    store.clock.set(datetime(2026, 4, 2, 9, tzinfo=UTC))  # type: ignore[attr-defined]
    crm.close_ticket(ticket.id, by="agent")

    def responses(start: datetime, end: datetime) -> dict[str, int]:
        rows = crm.service_report(start=start, end=end).csat.rows
        return {r.period: r.responses for r in rows if r.agent is None}

    feb, mar, apr = (datetime(2026, m, 1, tzinfo=UTC) for m in (2, 3, 4))
    assert responses(feb, mar) == {"2026-02": 0}
    assert responses(mar, apr) == {"2026-03": 1}
    assert responses(feb, apr) == {"2026-02": 0, "2026-03": 1}
    assert sum(responses(apr, datetime(2026, 5, 1, tzinfo=UTC)).values()) == 0


def test_segment_cohorts_say_where_they_apply(store: Store) -> None:
    """#16: a deal funnel's segment cohort is refused with what a deal funnel takes, an
    unstored segment as one that must be stored first; a stored one cohorts."""
    crm = CRM(store, pipelines=[SALES])
    _deals(crm, ("1000",))
    german = Segment.new(
        name="German", rule=contacts_where(field("email").is_not_null()), clock=store.clock
    )
    with pytest.raises(ValidationError) as deals:
        crm.funnel("sales", segments=[german], times=False)
    assert deals.value.field == "segments"
    assert "lifecycle funnel only" in str(deals.value)
    with pytest.raises(ValidationError) as unstored:
        crm.funnel(segments=[german], times=False)
    assert unstored.value.field == "segments[0]"
    assert "not stored" in str(unstored.value)
    with store.unit_of_work() as unit:
        unit.segments.add(german)
        unit.commit()
    rows = crm.funnel(segments=[german], times=False).cohort("German")
    assert rows[0].reached == 1


def test_brier_is_the_same_float_in_any_order() -> None:
    """#22: the stores return outcomes in different orders; the score does not change."""
    rng = random.Random(3)
    outcomes = [
        (Decimal(str(round(rng.random(), 3))), rng.random() < 0.5, rng.randrange(1, 4))
        for _ in range(200)
    ]
    scores = set()
    for seed in range(20):
        shuffled = outcomes[:]
        random.Random(seed).shuffle(shuffled)
        scores.add(brier(shuffled))
    assert len(scores) == 1


def test_an_update_and_a_move_at_one_instant_leave_the_moved_stage(store: Store) -> None:
    """#3: ``update_deal`` then ``move_deal`` at the same time (a clock that does not
    move): the replay stands the deal in the stage it moved to, with the new amount."""
    still = FixedClock(START)
    crm = CRM(store, pipelines=[SALES], clock=still)
    deals = _deals(crm, ("1000",) * 6)  # several ids: no luck in which id is smaller
    still.advance(timedelta(hours=1))
    for deal in deals:
        crm.update_deal(deal, amount=Money("2000", "EUR"))
        crm.move_deal(deal, "proposal", by="x")
    month = [period_of(START, Granularity.MONTH)]
    (row,) = crm.pipeline_kpis("sales", periods=month).rows
    assert (row.open, row.open_amount) == (6, Decimal("12000.00"))
    assert row.weighted == Decimal("6000.00")  # all in proposal (0.5)
