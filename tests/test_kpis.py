"""Funnel, pipeline KPIs, forecast and backtest through ``CRM``: known answers on a small
hand-made history (memory, SQLite, PostgreSQL), bad input, and serialisation."""

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import attrs
import pytest

from crmkit.analytics import (
    Backtest,
    Forecast,
    ForecastCategory,
    Funnel,
    Granularity,
    PipelineKpis,
    entry_durations,
    period_of,
    periods,
)
from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.errors import ClosedRecord, ValidationError
from crmkit.lifecycle import Pipeline, Stage, StageKind, Touchpoint
from crmkit.models import (
    Contact,
    Deal,
    DealStatus,
    LeadChannel,
    LifecycleStage,
    Money,
    StageChange,
    SubjectKind,
)
from crmkit.scoring import LogisticScorer, deal_examples, deal_record
from crmkit.segmentation import deals_where, field
from crmkit.serialization import make_converter
from crmkit.storage import Store
from tests.storage_support import STORES, stepping_store

JAN = datetime(2026, 1, 1, tzinfo=UTC)
FEB = period_of(datetime(2026, 2, 1, tzinfo=UTC), Granularity.MONTH)
MARCH_1 = datetime(2026, 3, 1, tzinfo=UTC)

SALES = Pipeline(
    key="sales",
    label="Sales",
    subject=SubjectKind.DEAL,
    stages=(
        Stage(key="discovery", label="Discovery", probability=Decimal("0.2")),
        Stage(key="proposal", label="Proposal", probability=Decimal("0.5")),
        Stage(key="negotiation", label="Negotiation", probability=Decimal("0.8")),
        Stage(key="won", label="Won", probability=Decimal(1), kind=StageKind.WON),
        Stage(key="lost", label="Lost", kind=StageKind.LOST),
    ),
)


def _day(month: int, day: int, hour: int = 0) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from stepping_store(request.param, tmp_path, MARCH_1, "kpis")


def _deal(name: str, owner: str, created: datetime, stage: str, money: Money | None) -> Deal:
    deal = Deal.new(
        title=name,
        pipeline="sales",
        stage=stage,
        amount=money,
        owner=owner,
        clock=FixedClock(created),
    )
    if stage in ("won", "lost"):
        status = DealStatus.WON if stage == "won" else DealStatus.LOST
        reason = "price" if stage == "lost" else None
        deal = attrs.evolve(deal, status=status, closed_at=created, lost_reason=reason)
    return deal


def _moves(
    deal: Deal, *steps: tuple[str, datetime, date | None], reason: str | None = None
) -> list[StageChange]:
    moves, previous = [], None
    for to, at, close in steps:
        moves.append(
            StageChange.new(
                subject=SubjectKind.DEAL,
                subject_id=deal.id,
                pipeline="sales",
                from_stage=previous,
                to_stage=to,
                at=at,
                amount=deal.amount,
                probability=SALES.stage(to).probability,
                expected_close=close,
                reason=reason if to == "lost" else None,
                clock=FixedClock(at),
            )
        )
        previous = to
    return moves


@pytest.fixture
def crm(store: Store) -> CRM:
    eur, usd = (lambda a: Money(Decimal(a), "EUR")), (lambda a: Money(Decimal(a), "USD"))
    d1 = _deal("d1", "ann", _day(1, 5), "won", eur(1000))
    d2 = _deal("d2", "ann", _day(1, 6), "lost", eur(500))
    d3 = _deal("d3", "bo", _day(1, 7), "negotiation", usd(2000))
    d4 = _deal("d4", "bo", _day(1, 8), "discovery", None)
    d5 = _deal("d5", "bo", _day(1, 9), "won", eur(300))
    history = [
        *_moves(
            d1,
            ("discovery", _day(1, 5), None),
            ("proposal", _day(1, 10), date(2026, 2, 5)),
            ("won", _day(2, 3), date(2026, 2, 5)),
        ),
        *_moves(d2, ("discovery", _day(1, 6), None), ("lost", _day(2, 10), None), reason="price"),
        *_moves(
            d3,
            ("discovery", _day(1, 7), date(2026, 2, 25)),
            ("negotiation", _day(2, 1, 10), date(2026, 2, 25)),
        ),
        *_moves(d4, ("discovery", _day(1, 8), date(2026, 2, 20))),
        *_moves(
            d5,
            ("discovery", _day(1, 9), date(2026, 2, 28)),
            ("won", _day(2, 20), date(2026, 2, 28)),
        ),
    ]
    with store.unit_of_work() as unit:
        unit.deals.add_many([d1, d2, d3, d4, d5])
        unit.stage_history.add_many(history)
        unit.commit()
    return CRM(store, pipelines=[SALES])


def test_the_pipeline_funnel_counts_skipped_stages_as_passed(crm: CRM) -> None:
    found = crm.funnel("sales", at=MARCH_1)
    assert found.stages == ("discovery", "proposal", "negotiation", "won")
    rows = found.cohort("all")
    assert [r.reached for r in rows] == [5, 3, 3, 2]
    assert [r.imported for r in rows] == [0, 0, 0, 0]
    assert [r.step_conversion for r in rows] == [None, 0.6, 1.0, pytest.approx(2 / 3)]
    assert rows[3].overall_conversion == 0.4
    first_step = rows[1]
    assert first_step.timed == 1  # d3 and d5 skipped proposal: not timed for this step
    assert first_step.median_time == first_step.p90_time == timedelta(days=5)  # d1: Jan 5 -> 10
    by_owner = crm.funnel("sales", by="owner", at=MARCH_1, times=False)
    assert [r.reached for r in by_owner.cohort("ann")] == [2, 1, 1, 1]
    assert [r.reached for r in by_owner.cohort("bo")] == [3, 2, 2, 1]
    earlier = crm.funnel("sales", at=_day(1, 31))  # as of January: nothing won yet
    assert [r.reached for r in earlier.cohort("all")] == [5, 1, 0, 0]


def test_pipeline_kpis_per_owner_and_currency(crm: CRM) -> None:
    kpis = crm.pipeline_kpis(
        "sales", periods=[FEB], by="owner", at=MARCH_1, quota=Money(Decimal(4000), "USD")
    )
    rows = {(r.group, r.currency): r for r in kpis.rows}
    assert set(rows) == {("ann", "EUR"), ("bo", "EUR"), ("bo", "USD"), ("bo", None)}
    ann = rows[("ann", "EUR")]
    assert (ann.won, ann.lost, ann.win_rate) == (1, 1, 0.5)
    assert ann.win_rate_by_value == pytest.approx(2 / 3)
    assert (ann.average_deal, ann.new_revenue) == (Decimal("1000.00"), Decimal(1000))
    assert ann.cycle_days == pytest.approx(32.0)  # 29 and 35 days
    assert [(x.reason, x.count) for x in ann.lost_reasons] == [("price", 1)]
    assert ann.velocity_per_day == Decimal("0.00")  # nothing open
    usd = rows[("bo", "USD")]
    assert (usd.open, usd.open_amount, usd.weighted) == (1, Decimal(2000), Decimal("1600.0"))
    assert (usd.win_rate, usd.average_deal, usd.cycle_days) == (None, None, None)
    assert usd.coverage == 0.5  # 2,000 USD due in February, open on February 1
    assert rows[("bo", None)].open == 1
    converted = crm.pipeline_kpis(
        "sales", periods=[FEB], at=MARCH_1, rates={"USD": Decimal("0.5")}, currency="EUR"
    )
    eur = {r.currency: r for r in converted.rows}["EUR"]
    assert (eur.won, eur.won_amount, eur.open_amount) == (2, Decimal(1300), Decimal("1000.0"))


def test_an_empty_period_has_a_defined_row(crm: CRM) -> None:
    june = period_of(datetime(2025, 6, 1, tzinfo=UTC), Granularity.MONTH)
    (row,) = crm.pipeline_kpis("sales", periods=[june], at=MARCH_1).rows
    assert (row.won, row.win_rate, row.average_deal, row.velocity_per_day) == (0, None, None, None)
    (forecast,) = crm.forecast("sales", periods=[june], at=MARCH_1).rows
    assert (forecast.expected, forecast.deals) == (Decimal("0.00"), 0)
    backtest = crm.forecast_backtest("sales", periods=[june], at=MARCH_1)
    assert (backtest.brier, backtest.deals) == (None, 0)


def test_forecast_by_category_and_expected_revenue(crm: CRM) -> None:
    forecast = crm.forecast("sales", periods=[FEB], at=_day(2, 15))
    rows = {r.currency: r for r in forecast.rows}
    assert rows["EUR"].closed == Decimal(1000)
    assert rows["EUR"].pipeline == Decimal(300)
    assert rows["EUR"].expected == Decimal("1060.00")
    assert (rows["USD"].commit, rows["USD"].expected) == (Decimal(2000), Decimal("1600.00"))
    assert rows[None].deals == 1
    mapped = crm.forecast(
        "sales",
        periods=[FEB],
        at=_day(2, 15),
        categories={"negotiation": ForecastCategory.BEST_CASE},
    )
    assert {r.currency: r for r in mapped.rows}["USD"].best_case == Decimal(2000)


def test_backtest_scores_the_stage_probabilities(crm: CRM) -> None:
    backtest = crm.forecast_backtest("sales", periods=[FEB], at=MARCH_1)
    assert backtest.deals == 4
    assert backtest.brier == pytest.approx(0.97 / 4)
    rows = {r.currency: r for r in backtest.rows}
    eur = rows["EUR"]
    assert (eur.deals, eur.expected, eur.won_of_expected) == (2, Decimal("560.00"), Decimal(1300))
    assert (eur.actual, eur.error) == (Decimal(1300), Decimal("740.00"))
    assert eur.brier == pytest.approx(0.445)
    assert rows["USD"].error == Decimal("-400.00")
    bins = {b.low: b for b in backtest.reliability}
    assert (bins[0.2].deals, bins[0.2].won_rate) == (3, pytest.approx(1 / 3))
    assert (bins[0.5].deals, bins[0.5].won_rate) == (1, 1.0)
    assert len(backtest.reliability) == 10


def test_results_round_trip_through_the_converter(crm: CRM) -> None:
    converter = make_converter()
    months = periods(JAN, MARCH_1, Granularity.MONTH)
    for result, kind in (
        (crm.funnel("sales", at=MARCH_1), Funnel),
        (crm.pipeline_kpis("sales", periods=months, by="owner", at=MARCH_1), PipelineKpis),
        (crm.forecast("sales", periods=months, at=MARCH_1), Forecast),
        (crm.forecast_backtest("sales", periods=months, at=MARCH_1), Backtest),
    ):
        assert converter.structure(converter.unstructure(result), kind) == result


def test_lifecycle_funnel_flags_imported_contacts_per_creation_month(store: Store) -> None:
    walked = Contact.new(first_name="W", clock=FixedClock(_day(1, 3)))
    imported = attrs.evolve(
        Contact.new(first_name="I", clock=FixedClock(_day(2, 3))),
        lifecycle_stage=LifecycleStage.CUSTOMER,
    )
    move = StageChange.new(
        subject=SubjectKind.CONTACT,
        subject_id=walked.id,
        from_stage="subscriber",
        to_stage="mql",
        at=_day(1, 4),
        clock=FixedClock(_day(1, 4)),
    )
    with store.unit_of_work() as unit:
        unit.contacts.add_many([walked, imported])
        unit.stage_history.add(move)
        unit.commit()
    crm = CRM(store)
    months = periods(JAN, MARCH_1, Granularity.MONTH)
    found = crm.funnel(created=months, at=MARCH_1)
    january, february = found.cohort("2026-01"), found.cohort("2026-02")
    assert [r.reached for r in january] == [1, 1, 1, 0, 0, 0, 0]
    assert [r.imported for r in january] == [0, 0, 0, 0, 0, 0, 0]  # entered mql, a later stage
    assert [r.reached for r in february] == [1, 1, 1, 1, 1, 1, 0]
    assert [r.imported for r in february] == [1, 1, 1, 1, 1, 1, 0]


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda crm: crm.funnel("nope"), "pipeline"),
        (lambda crm: crm.funnel(by="owner", created=[FEB]), "by"),
        (lambda crm: crm.funnel("sales", segments=[FEB]), "segments"),
        (lambda crm: crm.funnel(at=datetime(2026, 1, 1)), "at"),
        (lambda crm: crm.funnel(times="yes"), "times"),
        (lambda crm: crm.funnel(rule=deals_where(field("owner") == "a")), "rule"),
        (lambda crm: crm.pipeline_kpis(periods=[]), "periods"),
        (lambda crm: crm.pipeline_kpis(periods=["2026-02"]), "periods[0]"),
        (lambda crm: crm.pipeline_kpis(periods=[FEB], by="created_at"), "field"),
        (lambda crm: crm.pipeline_kpis(periods=[FEB], currency="EUR"), "currency"),
        (lambda crm: crm.pipeline_kpis(periods=[FEB], rates={"USD": 2}, currency="EUR"),
         "rates['USD']"),
        (lambda crm: crm.pipeline_kpis(periods=[FEB], rates={"GBP": Decimal(1)}, currency="EUR"),
         "rates"),
        (lambda crm: crm.pipeline_kpis(periods=[FEB], quota=100), "quota"),
        (lambda crm: crm.forecast("nope", periods=[FEB]), "pipeline"),
        (lambda crm: crm.forecast("sales", periods=[FEB], categories={"proposal": "x"}),
         "categories['proposal']"),
        (lambda crm: crm.forecast_backtest(None, periods=[FEB]), "pipeline"),
    ],
)  # fmt: skip
def test_bad_input_names_the_field(crm: CRM, call: object, name: str) -> None:
    with pytest.raises(ValidationError) as error:
        call(crm)  # type: ignore[operator]
    assert error.value.field == name


def test_a_lead_pipeline_funnel_by_source(store: Store) -> None:
    inbound = Pipeline(
        key="inbound",
        label="Inbound",
        subject=SubjectKind.LEAD,
        stages=(
            Stage(key="new", label="New"),
            Stage(key="contacted", label="Contacted", probability=Decimal("0.3")),
            Stage(key="qualified", label="Qualified", probability=Decimal(1), kind=StageKind.WON),
        ),
    )
    crm = CRM(store, pipelines=[inbound], lead_pipeline="inbound")
    leads = [
        crm.capture_lead(Touchpoint(email=f"p{n}@example.com", source=source, channel=channel))
        for n, (source, channel) in enumerate(
            [
                ("webinar", LeadChannel.FORM),
                ("webinar", LeadChannel.CHAT),
                ("ads", LeadChannel.FORM),
            ]
        )
    ]
    crm.move_lead(leads[0].lead.id, "contacted", by="ana")
    crm.move_lead(leads[0].lead.id, "qualified", by="ana")
    crm.move_lead(leads[2].lead.id, "qualified", by="ana")  # contacted skipped
    by_source = crm.funnel("inbound", by="source")
    assert [r.reached for r in by_source.cohort("webinar")] == [2, 1, 1]
    assert [r.reached for r in by_source.cohort("ads")] == [1, 1, 1]
    by_channel = crm.funnel("inbound", by="channel")
    assert [r.reached for r in by_channel.cohort("form")] == [2, 2, 2]


def test_forecast_converts_with_a_rate_table(crm: CRM) -> None:
    forecast = crm.forecast(
        "sales", periods=[FEB], at=_day(2, 15), rates={"USD": Decimal("0.9")}, currency="EUR"
    )
    rows = {r.currency: r for r in forecast.rows}
    assert set(rows) == {"EUR", None}  # no EUR plus USD: USD converted, no amount apart
    assert rows["EUR"].commit == Decimal("1800.0")
    assert rows["EUR"].expected == Decimal("2500.00")  # 1,000 + 300 x 0.2 + 1,800 x 0.8


def test_entry_durations_refuses_a_huge_rank_instead_of_looping() -> None:
    with pytest.raises(ValidationError) as caught:
        entry_durations([], {"won": 10**18}, datetime(2026, 3, 2, tzinfo=UTC))
    assert caught.value.field == "ranks"


def test_category_of_and_brier_refuse_bad_facts_and_outcomes() -> None:
    from crmkit.analytics import StageFacts, brier, category_of, check_stages  # noqa: PLC0415

    with pytest.raises(ValidationError) as caught:
        category_of("open", StageFacts(DealStatus.OPEN, Decimal("sNaN")))
    assert caught.value.field == "facts.probability"
    with pytest.raises(ValidationError) as caught:
        brier([()])  # type: ignore[list-item]
    assert caught.value.field == "outcomes"
    with pytest.raises(ValidationError) as caught:
        check_stages([["won"]])
    assert caught.value.field == "stages"


def test_group_label_refuses_an_int_too_long_to_print() -> None:
    from crmkit.analytics import group_label  # noqa: PLC0415

    with pytest.raises(ValidationError) as caught:
        group_label(10**5000)
    assert caught.value.field == "value"


def test_a_deal_s_own_forecast_category_overrides_its_stage(crm: CRM) -> None:
    d3 = _open_deal(crm, "d3")
    crm.set_forecast_category(d3.id, ForecastCategory.OMITTED, by="ann")
    usd = {r.currency: r for r in crm.forecast("sales", periods=[FEB], at=_day(2, 15)).rows}["USD"]
    assert (usd.commit, usd.omitted, usd.expected) == (Decimal(0), Decimal(2000), Decimal(1600))
    mapped = crm.forecast(
        "sales", periods=[FEB], at=_day(2, 15), categories={"negotiation": ForecastCategory.COMMIT}
    )
    assert {r.currency: r for r in mapped.rows}["USD"].omitted == Decimal(2000)  # the deal's wins
    crm.set_forecast_category(d3.id, None)
    usd = {r.currency: r for r in crm.forecast("sales", periods=[FEB], at=_day(2, 15)).rows}["USD"]
    assert (usd.commit, usd.omitted) == (Decimal(2000), Decimal(0))
    # The category's value is accepted as the member (as every enum of the CRM API);
    # anything else is refused, naming the field.
    assert crm.set_forecast_category(d3.id, "commit").forecast_category is (  # type: ignore[arg-type]
        ForecastCategory.COMMIT
    )
    with pytest.raises(ValidationError) as caught:
        crm.set_forecast_category(d3.id, "maybe")  # type: ignore[arg-type]
    assert caught.value.field == "category"
    with pytest.raises(ClosedRecord):
        crm.set_forecast_category(_open_deal(crm, "d1").id, ForecastCategory.COMMIT)


def _open_deal(crm: CRM, title: str) -> Deal:
    with crm.store.unit_of_work() as unit:
        return next(d for d in unit.deals.iterate() if d.title == title)


def test_expected_revenue_from_a_learned_scorer(crm: CRM) -> None:
    """A logistic scorer fitted on the closed deals gives each open deal its probability;
    the expected revenue is what closed plus the amounts times those probabilities."""
    with crm.store.unit_of_work() as unit:
        deals = list(unit.deals.iterate())
    scorer = LogisticScorer.fit(deal_examples(deals), l2=0.5)
    forecast = crm.forecast("sales", periods=[FEB], at=_day(2, 15), scorer=scorer)
    assert forecast.expected_from == "scorer"
    rows = {r.currency: r for r in forecast.rows}
    by_title = {d.title: d for d in deals}
    p3 = Decimal(repr(scorer.predict(deal_record(by_title["d3"]))))
    p5 = Decimal(repr(scorer.predict(deal_record(by_title["d5"]))))
    assert rows["USD"].expected == (2000 * p3).quantize(Decimal("0.01"))
    assert rows["EUR"].expected == (1000 + 300 * p5).quantize(Decimal("0.01"))
    assert rows["USD"].commit == Decimal(2000)  # the categories stay the stages'
    assert rows[None].deals == 1
    stage_only = crm.forecast("sales", periods=[FEB], at=_day(2, 15))
    assert stage_only.expected_from == "stage"
    assert {r.currency: r for r in stage_only.rows}["USD"].expected == Decimal("1600.00")


class _Broken:
    def predict_many(self, records: object) -> list[float]:
        raise ZeroDivisionError


class _Wrong:
    def predict_many(self, records: list[object]) -> list[float]:
        return [float("nan")] * len(records)


def test_a_scorer_that_fails_is_named(crm: CRM) -> None:
    for scorer, named in ((_Broken(), "scorer"), (_Wrong(), None), (object(), "scorer")):
        with pytest.raises(ValidationError) as caught:
            crm.forecast("sales", periods=[FEB], at=_day(2, 15), scorer=scorer)  # type: ignore[arg-type]
        assert named is None or caught.value.field == named
        assert named is not None or caught.value.field.startswith("scores[")


def test_time_in_stage_is_each_visit_not_the_time_between_stages(crm: CRM) -> None:
    """Discovery visits: d1 5 days, d2 35 days (left to lost), d3 25 days 10 hours, d5
    42 days (negotiation skipped); d4 is still there. The time between discovery and
    proposal is another measure, over the subjects whose history enters both (d1, 5
    days; d3 and d5 skipped proposal and are not timed for that step)."""
    rows = crm.funnel("sales", at=MARCH_1).cohort("all")
    discovery, proposal, negotiation, won = rows
    assert discovery.visits == 4
    assert discovery.median_in_stage == timedelta(days=25, hours=10)
    assert discovery.p90_in_stage == timedelta(days=42)
    assert (proposal.visits, proposal.median_in_stage) == (1, timedelta(days=24))
    assert (negotiation.visits, negotiation.median_in_stage) == (0, None)  # still open
    assert (proposal.timed, proposal.median_time) == (1, timedelta(days=5))  # between, not in
    assert won.visits == 0


def test_cohorts_by_a_field_have_times_too(crm: CRM) -> None:
    by_owner = crm.funnel("sales", by="owner", at=MARCH_1)
    ann, bo = by_owner.cohort("ann"), by_owner.cohort("bo")
    assert (ann[1].timed, ann[1].median_time) == (1, timedelta(days=5))  # d1
    assert (ann[0].visits, ann[0].median_in_stage) == (2, timedelta(days=5))  # d1, d2
    assert (bo[0].visits, bo[0].median_in_stage) == (2, timedelta(days=25, hours=10))
    assert (bo[1].timed, bo[1].median_time) == (0, None)  # d3 and d5 skipped proposal
    counts = crm.funnel("sales", by="owner", at=MARCH_1, times=False)
    assert [r.reached for r in counts.rows] == [r.reached for r in by_owner.rows]
    assert all(r.timed == 0 and r.visits == 0 for r in counts.rows)
