"""Customer and service KPIs: flows and churn, cohorts, revenue movement, CSAT, NPS, SLA."""

from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmkit.analytics import (
    CsatReport,
    CustomerFlows,
    CustomerSpan,
    Granularity,
    Nps,
    Rating,
    RetentionMatrix,
    RevenueReport,
    SlaCompliance,
    SlaOutcome,
    SlaVerdict,
    Transaction,
    csat_report,
    customer_flows,
    distribution,
    nps,
    periods,
    retention_matrix,
    revenue_report,
    service_times,
    sla_compliance,
    spans_from_purchases,
    spans_from_stage_changes,
)
from crmkit.errors import CrmkitError, ValidationError
from crmkit.models import Money, StageChange, SubjectKind
from crmkit.serialization import make_converter

JAN = datetime(2026, 1, 1, tzinfo=UTC)
APR = datetime(2026, 4, 1, tzinfo=UTC)


def day(n: int) -> datetime:
    return JAN + timedelta(days=n)


def usd(amount: str | int) -> Money:
    return Money(Decimal(amount), "USD")


def roundtrip(value: object) -> None:
    converter = make_converter()
    assert converter.structure(converter.unstructure(value), type(value)) == value


# ---------------------------------------------------------------------------- flows


SPANS = [
    CustomerSpan("a", day(-10)),  # customer before January, stays
    CustomerSpan("b", day(-10), day(40)),  # churns in February
    CustomerSpan("c", day(5), day(20)),  # new and churned in January
    CustomerSpan("d", day(35)),  # new in February
    CustomerSpan("e", day(70), day(75)),  # new and churned in March
]


def test_new_churned_and_churn_rate_per_month() -> None:
    flows = customer_flows(SPANS, start=JAN, end=APR, granularity=Granularity.MONTH)
    table = [
        (r.period, r.customers_at_start, r.new, r.churned, r.customers_at_end) for r in flows.rows
    ]
    assert table == [
        ("2026-01", 2, 1, 1, 2),
        ("2026-02", 2, 1, 1, 2),
        ("2026-03", 2, 1, 1, 2),
    ]
    # churn rate counts the customers of the period's start only
    assert [r.churn_rate for r in flows.rows] == [0.0, 0.5, 0.0]
    roundtrip(flows)
    empty = customer_flows([], start=JAN, end=APR)
    assert [r.churn_rate for r in empty.rows] == [None, None, None]
    assert customer_flows(SPANS, start=APR, end=JAN).rows == ()


def test_cohort_retention_matrix() -> None:
    matrix = retention_matrix(SPANS, start=JAN, end=APR)
    assert [(r.cohort, r.size, r.retained) for r in matrix.rows] == [
        ("2026-01", 1, (0, 0, 0)),
        ("2026-02", 1, (1, 1)),
        ("2026-03", 1, (0,)),
    ]
    assert matrix.rows[1].rates == (1.0, 1.0)
    roundtrip(matrix)


def test_churn_by_inactivity_and_by_lifecycle() -> None:
    buys = [
        Transaction("a", day(0), usd(5)),
        Transaction("a", day(50), usd(5)),
        Transaction("b", day(10), usd(5)),
        Transaction("c", day(200), usd(5)),  # after now: not yet a customer
    ]
    spans = spans_from_purchases(buys, inactive_after=timedelta(days=60), now=day(100))
    assert spans == [CustomerSpan("a", day(0)), CustomerSpan("b", day(10), day(70))]
    with pytest.raises(ValidationError) as error:
        spans_from_purchases(buys, inactive_after=timedelta(0), now=day(100))
    assert error.value.field == "inactive_after"

    ann, bob, imported = uuid4(), uuid4(), uuid4()

    def move(who: object, to: str, at: datetime, frm: str | None = None) -> StageChange:
        return StageChange(
            id=uuid4(),
            version=1,
            created_at=at,
            updated_at=at,
            subject=SubjectKind.CONTACT,
            subject_id=who,
            from_stage=frm,
            to_stage=to,
            at=at,
        )

    changes = [
        move(ann, "opportunity", day(1)),
        move(ann, "customer", day(3)),
        move(ann, "evangelist", day(9)),
        move(bob, "customer", day(4)),
        move(bob, "other", day(30)),
    ]
    spans = spans_from_stage_changes(changes, since={imported: day(-100)})
    assert set(spans) == {
        CustomerSpan(ann, day(3)),
        CustomerSpan(bob, day(4), day(30)),
        CustomerSpan(imported, day(-100)),
    }


# ---------------------------------------------------------------------------- revenue


def test_revenue_movement_per_period_and_currency() -> None:
    buys = [
        Transaction("a", day(-20), usd(100)),  # December: before the report
        Transaction("b", day(-20), usd(50)),
        Transaction("c", day(-60), usd(10)),  # November
        Transaction("a", day(3), usd(150)),  # expansion +50
        Transaction("b", day(4), usd(20)),  # contraction -30
        Transaction("d", day(5), usd(70)),  # new
        Transaction("c", day(6), usd(10)),  # reactivated (bought in November)
        Transaction("e", day(7), Money(Decimal(40), "EUR")),  # another currency
        Transaction("a", day(40), usd(150)),
    ]
    report = revenue_report(buys, start=JAN, end=datetime(2026, 3, 1, tzinfo=UTC))
    jan_eur, jan_usd, feb_eur, feb_usd = report.rows
    assert (jan_usd.period, jan_usd.currency) == ("2026-01", "USD")
    assert jan_usd.revenue == usd(250)
    assert jan_usd.previous == usd(150)
    assert (jan_usd.new, jan_usd.reactivated) == (usd(70), usd(10))
    assert (jan_usd.expansion, jan_usd.contraction, jan_usd.churned) == (usd(50), usd(30), usd(0))
    assert jan_usd.customers == 4
    assert jan_usd.per_customer == usd("62.50")
    assert jan_eur.revenue == Money(Decimal(40), "EUR")
    assert jan_eur.new == Money(Decimal(40), "EUR")
    assert feb_usd.churned == usd(100)  # b, d, c bought nothing in February
    assert feb_eur.churned == Money(Decimal(40), "EUR")
    assert feb_eur.per_customer is None
    for row in report.rows:
        moved = (
            row.previous.amount
            + row.new.amount
            + row.reactivated.amount
            + row.expansion.amount
            - row.contraction.amount
            - row.churned.amount
        )
        assert moved == row.revenue.amount
    roundtrip(report)
    with pytest.raises(ValidationError) as error:
        revenue_report([Transaction("a", day(1), usd(-1))], start=JAN, end=APR)
    assert error.value.field == "transactions[0].amount"


# ---------------------------------------------------------------------------- service


def test_csat_per_month_and_agent() -> None:
    ratings = [
        Rating(day(1), 5, "ann"),
        Rating(day(2), 3, "ann"),
        Rating(day(3), 4, "bob"),
        Rating(day(4), 1, None),
        Rating(day(40), 5, "bob"),
    ]
    report = csat_report(ratings, start=JAN, end=APR)
    table = [(r.period, r.agent, r.responses, r.satisfied, r.csat) for r in report.rows]
    assert table == [
        ("2026-01", None, 4, 2, 0.5),
        ("2026-01", "ann", 2, 1, 0.5),
        ("2026-01", "bob", 1, 1, 1.0),
        ("2026-02", None, 1, 1, 1.0),
        ("2026-02", "bob", 1, 1, 1.0),
        ("2026-03", None, 0, 0, None),
    ]
    assert report.rows[0].mean_score == 13 / 4
    roundtrip(report)
    with pytest.raises(ValidationError) as error:
        Rating(day(1), 6)
    assert error.value.field == "score"


def test_nps_and_its_wald_interval_against_a_hand_computed_value() -> None:
    # 50 promoters, 30 passives, 20 detractors: NPS 30, variance on the -1/0/1 scale
    # (0.5 + 0.2 - 0.3**2) / 100 = 0.0061, so 30 +- 1.959964 * 100 * sqrt(0.0061)
    result = nps([10] * 25 + [9] * 25 + [7] * 30 + [0] * 10 + [6] * 10)
    assert (result.promoters, result.passives, result.detractors) == (50, 30, 20)
    assert result.score == pytest.approx(30.0)
    half = 1.959963984540054 * 100 * 0.0061**0.5
    assert result.low == pytest.approx(30 - half, abs=1e-9)
    assert result.high == pytest.approx(30 + half, abs=1e-9)
    assert round(result.low, 2) == 14.69
    narrow = nps([10] * 50 + [8] * 30 + [3] * 20, confidence=0.5)
    assert narrow.high - narrow.low < result.high - result.low
    assert nps([]) == Nps(
        responses=0,
        promoters=0,
        passives=0,
        detractors=0,
        score=None,
        low=None,
        high=None,
        confidence=0.95,
    )
    everyone = nps([10, 10])
    assert (everyone.score, everyone.low, everyone.high) == (100.0, 100.0, 100.0)
    with pytest.raises(ValidationError) as error:
        nps([10, 11])
    assert error.value.field == "answers[1]"
    with pytest.raises(ValidationError):
        nps([10], confidence=1.0)
    roundtrip(result)


def test_response_time_distribution_and_sla_compliance() -> None:
    hours = [timedelta(hours=h) for h in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)]
    spread = distribution(hours)
    assert (spread.count, spread.median, spread.p90) == (10, hours[4], hours[8])
    assert spread.mean == timedelta(hours=5.5)
    assert distribution([]).median is None

    def outcome(policy: str, metric: str, verdict: SlaVerdict, h: int = 1) -> SlaOutcome:
        return SlaOutcome(
            ticket=str(uuid4()),
            policy=policy,
            metric=metric,
            target=timedelta(hours=4),
            elapsed=timedelta(hours=h),
            stopped=verdict in (SlaVerdict.MET, SlaVerdict.BREACHED),
            verdict=verdict,
        )

    outcomes = [
        outcome("gold", "first_response", SlaVerdict.MET, 1),
        outcome("gold", "first_response", SlaVerdict.MET, 2),
        outcome("gold", "first_response", SlaVerdict.BREACHED, 6),
        outcome("gold", "first_response", SlaVerdict.RUNNING),
        outcome("gold", "resolution", SlaVerdict.RUNNING),
        outcome("basic", "resolution", SlaVerdict.IDLE),
    ]
    compliance = sla_compliance(outcomes)
    table = [
        (r.policy, r.metric, r.tickets, r.met, r.breached, r.running, r.compliance)
        for r in compliance.rows
    ]
    assert table == [
        ("basic", "resolution", 1, 0, 0, 0, None),
        ("gold", "first_response", 4, 2, 1, 1, 2 / 3),
        ("gold", "resolution", 1, 0, 0, 1, None),
    ]
    times = service_times(outcomes)
    assert times.first_response.count == 3
    assert times.first_response.maximum == timedelta(hours=6)
    assert times.resolution.count == 0
    roundtrip(compliance)
    roundtrip(times)


def _retention_oracle(
    spans: list[CustomerSpan], start: datetime, end: datetime, granularity: Granularity, tz: tzinfo
) -> list[tuple[str, datetime, int, tuple[int, ...]]]:
    """The matrix by its definition: per cohort period, its members, and per later
    period those whose churn (if any) is at or after its end."""
    found = []
    cohorts = periods(start, end, granularity, tz)
    for index, cohort in enumerate(cohorts):
        members = [s for s in spans if s.start in cohort and start <= s.start < end]
        if members:
            retained = tuple(
                sum(1 for s in members if s.end is None or s.end >= later.end)
                for later in cohorts[index:]
            )
            found.append((cohort.label, cohort.start, len(members), retained))
    return found


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-60, 500), st.none() | st.integers(0, 400)),
        max_size=40,
    ),
    st.integers(-30, 200),
    st.integers(1, 400),
    st.sampled_from(Granularity),
    st.sampled_from([UTC, ZoneInfo("Europe/Berlin"), ZoneInfo("America/Sao_Paulo")]),
)
def test_the_retention_matrix_counts_each_cohort_by_its_definition(
    lives: list[tuple[int, int | None]],
    first: int,
    days: int,
    granularity: Granularity,
    tz: tzinfo,
) -> None:
    # starts and churns on hours, so that some fall on a period's bounds exactly
    hours = [(day(0) + timedelta(hours=6 * a), b) for a, b in lives]
    spans = [
        CustomerSpan(f"c{i}", at, None if b is None else at + timedelta(hours=6 * b))
        for i, (at, b) in enumerate(hours)
    ]
    start, end = day(first), day(first + days)
    matrix = retention_matrix(spans, start=start, end=end, granularity=granularity, tz=tz)
    found = [(r.cohort, r.start, r.size, r.retained) for r in matrix.rows]
    assert found == _retention_oracle(spans, start, end, granularity, tz)
    assert all(r.rates == tuple(n / r.size for n in r.retained) for r in matrix.rows)


# ---------------------------------------------------------------------------- fuzz

instants = st.integers(-400, 400).map(day)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from("abcde"),
            instants,
            st.integers(-3, 500),
            st.sampled_from(["USD", "EUR"]),
        ),
        max_size=20,
    ),
    instants,
    instants,
    st.sampled_from(Granularity),
    st.lists(st.integers(-2, 12), max_size=30),
)
def test_only_crmkit_errors_escape(
    buys: list[tuple[str, datetime, int, str]],
    start: datetime,
    end: datetime,
    granularity: Granularity,
    answers: list[int],
) -> None:
    transactions = [Transaction(c, at, Money(Decimal(a), cur)) for c, at, a, cur in buys]
    for compute in (
        lambda: revenue_report(transactions, start=start, end=end, granularity=granularity),
        lambda: customer_flows(
            spans_from_purchases(transactions, inactive_after=timedelta(days=30), now=end),
            start=start,
            end=end,
            granularity=granularity,
        ),
        lambda: retention_matrix(
            spans_from_purchases(transactions, inactive_after=timedelta(days=30), now=end),
            start=start,
            end=end,
            granularity=granularity,
        ),
        lambda: nps(answers),
        lambda: csat_report([Rating(at, 1 + a % 5) for _, at, a, _ in buys], start=start, end=end),
    ):
        try:
            result = compute()
        except CrmkitError:
            continue
        assert isinstance(
            result,
            RevenueReport | CustomerFlows | RetentionMatrix | Nps | CsatReport | SlaCompliance,
        )
        for row in getattr(result, "rows", ()):
            for rate in (getattr(row, "churn_rate", None), getattr(row, "csat", None)):
                assert rate is None or 0 <= rate <= 1
