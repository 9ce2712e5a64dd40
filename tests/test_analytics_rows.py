"""The analytics row builders check what they are given: a typed error naming the field
and the value, never a builtin exception, a hang or a NaN (issue 13, bad input)."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmkit.analytics import (
    ForecastCategory,
    Granularity,
    Reach,
    StageFacts,
    Standing,
    backtest_rows,
    convert,
    forecast_rows,
    funnel_rows,
    period_of,
    pipeline_rows,
    replay_reach,
)
from crmkit.clock import FixedClock
from crmkit.errors import ValidationError
from crmkit.models import Deal, DealStatus, SubjectKind

MARCH = period_of(datetime(2026, 3, 5, tzinfo=UTC), Granularity.MONTH)
DAY = timedelta(days=1)
FACTS = {
    ("sales", "open"): StageFacts(DealStatus.OPEN, Decimal("0.5")),
    ("sales", "won"): StageFacts(DealStatus.WON, Decimal(1)),
}


def standing(stage: str = "open", amount: Decimal = Decimal(100), **changes: Any) -> Standing:
    values: dict[str, Any] = {
        "group": None,
        "pipeline": "sales",
        "stage": stage,
        "reason": None,
        "currency": "EUR",
        "expected_close": date(2026, 3, 20),
        "later": None,
        "count": 1,
        "amount": amount,
        "age_seconds": 86400.0,
    }
    return Standing(**(values | changes))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount": Decimal("NaN")}, "amount"),
        ({"amount": Decimal("sNaN")}, "amount"),
        ({"amount": Decimal("1e400")}, "amount"),
        ({"count": -1}, "count"),
        ({"count": True}, "count"),
        ({"age_seconds": float("inf")}, "age_seconds"),
        ({"expected_close": datetime(2026, 3, 1, tzinfo=UTC)}, "expected_close"),
        ({"stage": None}, "stage"),
        ({"group": [1]}, "group"),
        ({"group": Decimal("NaN")}, "group"),
    ],
)
def test_a_standing_row_checks_its_values(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        standing(**changes)
    assert caught.value.field == field


def test_a_reach_row_checks_its_ranks_and_count() -> None:
    for bad in ({"reached": -1}, {"entered": 10**6}, {"count": "3"}):
        with pytest.raises(ValidationError) as caught:
            Reach(**({"group": None, "reached": 1, "entered": None, "count": 1} | bad))
        assert caught.value.field == next(iter(bad))


def test_convert_names_the_bad_argument() -> None:
    assert convert(Decimal(10), "USD", {"USD": Decimal("0.5")}, "EUR") == (Decimal(5), "EUR")
    cases: list[tuple[tuple[Any, ...], str]] = [
        ((Decimal("NaN"), "USD", None, None), "amount"),
        ((10, "USD", None, None), "amount"),
        ((Decimal(1), 7, None, None), "currency"),
        ((Decimal(1), "USD", {"USD": Decimal(0)}, "EUR"), "rates['USD']"),
        ((Decimal(1), "USD", {"USD": Decimal("Infinity")}, "EUR"), "rates['USD']"),
        ((Decimal(1), "USD", {"USD": Decimal(1)}, None), "currency"),
        ((Decimal(1), "USD", {"GBP": Decimal(1)}, "EUR"), "rates"),
        ((Decimal(1), "USD", "rates", "EUR"), "rates"),
    ]
    for args, field in cases:
        with pytest.raises(ValidationError) as caught:
            convert(*args)
        assert caught.value.field == field, args


def test_funnel_rows_refuse_what_would_hang_or_crash() -> None:
    reach = [Reach(None, 1, 1, 3)]
    rows = funnel_rows("all", reach, ("a", "b"), {1: [timedelta(days=2), timedelta(days=1)]})
    assert [r.reached for r in rows] == [3, 3]
    assert rows[1].median_time == timedelta(days=1)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"stages": range(10**9)}, "stages"),
        ({"stages": iter(["a"])}, "stages"),
        ({"stages": ["a", 1]}, "stages"),
        ({"reach": [object()]}, "reach[0]"),
        ({"reach": 5}, "reach"),
        ({"durations": {1: ["1 day"]}}, "durations[1]"),
        ({"durations": {"1": []}}, "durations"),
        ({"cohort": None}, "cohort"),
    ]
    for changes, field in cases:
        arguments = {"cohort": "all", "reach": reach, "stages": ("a", "b")} | changes
        with pytest.raises(ValidationError) as caught:
            funnel_rows(**arguments)
        assert caught.value.field == field, changes


def test_pipeline_forecast_and_backtest_rows_check_their_arguments() -> None:
    won = [standing("won", Decimal(300))]
    open_ = [standing()]
    assert pipeline_rows(MARCH, won, open_, open_, FACTS)[0].won_amount == Decimal(300)
    assert forecast_rows(MARCH, won, open_, FACTS)[0].expected == Decimal("350.00")
    outcomes: list[Any] = []
    assert backtest_rows(MARCH, open_, won, FACTS, outcomes)[0].actual == Decimal(300)
    builders = [
        lambda **k: pipeline_rows(
            k.get("period", MARCH), won, open_, open_, k.get("facts", FACTS), rates=k.get("rates")
        ),
        lambda **k: forecast_rows(
            k.get("period", MARCH), won, open_, k.get("facts", FACTS), rates=k.get("rates")
        ),
        lambda **k: backtest_rows(
            k.get("period", MARCH), open_, won, k.get("facts", FACTS), [], rates=k.get("rates")
        ),
    ]
    for build in builders:
        for changes, field in [
            ({"period": "2026-03"}, "period"),
            ({"facts": {"sales": FACTS[("sales", "open")]}}, "facts"),
            ({"facts": {("sales", "open"): StageFacts(DealStatus.OPEN, Decimal(2))}}, None),
            ({"rates": {"EUR": Decimal(1)}}, "currency"),
        ]:
            with pytest.raises(ValidationError) as caught:
                build(**changes)
            if field is not None:
                assert caught.value.field == field, changes
    with pytest.raises(ValidationError) as caught:
        forecast_rows(MARCH, won, open_, FACTS, mapping={"open": "commit"})
    assert caught.value.field == "mapping['open']"
    with pytest.raises(ValidationError) as caught:
        backtest_rows(MARCH, open_, won, FACTS, ())  # type: ignore[arg-type]
    assert caught.value.field == "outcomes"


def test_huge_amounts_round_to_cents_instead_of_failing() -> None:
    big = Decimal(10) ** 29
    rows = forecast_rows(MARCH, [standing("won", big)], [standing(amount=big)], FACTS)
    assert rows[0].expected == Decimal("150000000000000000000000000000.00")


def test_replay_reach_checks_its_arguments() -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    deal = Deal.new(title="d", pipeline="sales", stage="open", clock=FixedClock(at - DAY))
    ok = replay_reach([deal], [], SubjectKind.DEAL, {"open": 0}, until=at, group="owner")
    assert ok == [Reach(None, 0, None, 1)]
    for kwargs, field in [
        ({"ranks": {"open": -1}}, "ranks"),
        ({"group": "nope"}, "group"),
        ({"group": "tags"}, "group"),
        ({"subjects": [object()]}, "subjects[0]"),
        ({"until": datetime(2026, 3, 1)}, "until"),
        ({"subject": SubjectKind.TICKET}, "subject"),
    ]:
        arguments: dict[str, Any] = {
            "subjects": [deal],
            "changes": [],
            "subject": SubjectKind.DEAL,
            "ranks": {"open": 0},
            "until": at,
        } | kwargs
        with pytest.raises(ValidationError) as caught:
            replay_reach(**arguments)
        assert caught.value.field == field, kwargs


def test_a_category_is_a_forecast_category() -> None:
    assert ForecastCategory("commit") is ForecastCategory.COMMIT


# ---------------------------------------------------------------------------- pipeline rows


_SALES_FACTS = {
    ("sales", "open"): StageFacts(DealStatus.OPEN, Decimal("0.5")),
    ("sales", "won"): StageFacts(DealStatus.WON, Decimal(1)),
    ("sales", "lost"): StageFacts(DealStatus.LOST, Decimal(0)),
}


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ann", "bo"]),
            st.sampled_from(["won", "lost"]),
            st.sampled_from([None, "price", "timing"]),
            st.integers(1, 4),
            st.decimals(-5000, 5000, places=2),
            st.integers(-(10**7), 10**7).map(float),  # seconds from creation to close
        ),
        max_size=12,
    ),
    st.lists(
        st.tuples(
            st.sampled_from(["ann", "carl"]), st.integers(1, 3), st.decimals(0, 900, places=1)
        ),
        max_size=4,
    ),
)
def test_pipeline_rows_compute_each_kpi_by_its_definition(
    closed: list[tuple[str, str, str | None, int, Decimal, float]],
    still_open: list[tuple[str, int, Decimal]],
) -> None:
    year = period_of(datetime(2026, 1, 1, tzinfo=UTC), Granularity.YEAR)
    won_lost = [
        Standing(g, "sales", stage, reason, "EUR", None, None, n, amount, age)
        for g, stage, reason, n, amount, age in closed
    ]
    opened = [
        Standing(g, "sales", "open", None, "EUR", None, None, n, amount, 0.0)
        for g, n, amount in still_open
    ]
    rows = pipeline_rows(year, won_lost, opened, (), _SALES_FACTS)
    cent = Decimal("0.01")
    for row in rows:
        mine = [r for r in won_lost if r.group == row.group]
        won = [r for r in mine if r.stage == "won"]
        lost = [r for r in mine if r.stage == "lost"]
        n_won, n_lost = sum(r.count for r in won), sum(r.count for r in lost)
        n_open = sum(r.count for r in opened if r.group == row.group)
        won_amount = sum((r.amount for r in won), Decimal(0)).quantize(cent)
        average = None if not n_won else (won_amount / n_won).quantize(cent)
        closed_n = n_won + n_lost
        cycle = None if not closed_n else sum(r.age_seconds for r in mine) / closed_n / 86400.0
        velocity = None
        if average is not None and cycle:
            velocity = (n_open * average * n_won / closed_n / Decimal(repr(cycle))).quantize(cent)
        # the same values, signs and exponents (str: Decimal("-0.00") == Decimal("0.00"))
        assert str(row.velocity_per_day) == str(velocity)
        assert (row.won, row.lost, row.open) == (n_won, n_lost, n_open)
        assert str(row.won_amount) == str(won_amount)
        assert str(row.average_deal) == str(average)
        assert str(row.open_amount) == str(
            sum((r.amount for r in opened if r.group == row.group), Decimal(0)).quantize(cent)
        )
        reasons: dict[str | None, int] = {}
        for r in lost:
            reasons[r.reason] = reasons.get(r.reason, 0) + r.count
        ranked = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0] or ""))
        assert [(x.reason, x.count) for x in row.lost_reasons] == ranked
