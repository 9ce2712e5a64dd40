"""Customer lifetime value: the RFM summary, BG/NBD and Gamma-Gamma fits, predictions."""

import math
import random
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st

from crmkit.analytics import (
    BgNbdFit,
    ClvReport,
    Estimate,
    GammaGammaFit,
    RfmSummary,
    Transaction,
    _clv_math,
    customer_lifetime_value,
    fit_bg_nbd,
    fit_gamma_gamma,
    holdout_check,
    rfm_summary,
    transactions_from_activities,
)
from crmkit.errors import CrmkitError, CurrencyMismatch, MissingExtra, ValidationError
from crmkit.models import Activity, ActivityKind, Money
from crmkit.serialization import make_converter

START = datetime(2025, 1, 1, tzinfo=UTC)
END = START + timedelta(days=365)
TRUE = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5, "p": 6.0, "q": 4.0, "v": 15.0}


def usd(amount: str) -> Money:
    return Money(Decimal(amount), "USD")


def simulate(n: int, seed: int) -> list[Transaction]:
    """Purchases drawn from BG/NBD (per day) and Gamma-Gamma with the TRUE parameters."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        rate = rnd.gammavariate(TRUE["r"], 1 / TRUE["alpha"])
        drop = rnd.betavariate(TRUE["a"], TRUE["b"])
        scale = rnd.gammavariate(TRUE["q"], 1 / TRUE["v"])
        at, made = rnd.uniform(0, 90), 0
        while True:
            cents = max(1, round(rnd.gammavariate(TRUE["p"], 1 / scale) * 100))
            out.append(
                Transaction(f"c{i}", START + timedelta(days=at), Money(Decimal(cents) / 100, "USD"))
            )
            made += 1
            if made > 1 and rnd.random() < drop:
                break
            at += rnd.expovariate(rate) if rate > 0 else 1e9
            if at >= 365:
                break
    return out


@pytest.fixture(scope="module")
def simulated() -> list[Transaction]:
    return simulate(6000, seed=7)


def test_parameters_are_recovered_from_simulated_purchases(simulated: list[Transaction]) -> None:
    # hours: one customer's purchases rarely share an hour, so the summary keeps them all
    summary = rfm_summary(simulated, observation_end=END, unit=timedelta(hours=1))
    purchases, spend = fit_bg_nbd(summary), fit_gamma_gamma(summary)
    assert purchases.converged
    assert spend.converged
    fitted = {
        "r": purchases.r,
        "alpha": Estimate(purchases.alpha.value / 24, purchases.alpha.standard_error),
        "a": purchases.a,
        "b": purchases.b,
        "p": spend.p,
        "q": spend.q,
        "v": spend.v,
    }
    for name, estimate in fitted.items():
        assert estimate.standard_error is not None
        error = estimate.standard_error / (24 if name == "alpha" else 1)
        assert 0 < error < 0.2 * TRUE[name], name
        assert abs(estimate.value - TRUE[name]) < 3.5 * error, (name, estimate)


def test_the_gradient_is_the_derivative_of_the_log_likelihood() -> None:
    rnd = np.random.default_rng(3)
    x = rnd.integers(0, 6, 50).astype(float)
    t = rnd.integers(1, 60, 50).astype(float)
    t_x = np.where(x > 0, np.floor(t * rnd.uniform(0.1, 1, 50)).clip(1, None), 0.0)
    w = np.ones(50)
    params = np.array([0.7, 3.0, 1.3, 2.2])
    sp = scipy.special
    data = (x, t_x, t, w)
    grad = _clv_math.bg_nbd_gradient(sp, np, params, data)
    for i in range(4):
        up, down = params.copy(), params.copy()
        up[i] += 1e-6
        down[i] -= 1e-6
        numeric = (
            _clv_math.bg_nbd_log_likelihood(sp, np, up, data)
            - _clv_math.bg_nbd_log_likelihood(sp, np, down, data)
        ) / 2e-6
        assert grad[i] == pytest.approx(numeric, rel=1e-5)
    m = rnd.uniform(5, 50, 50)
    xs = x + 1
    spend = np.array([3.0, 2.5, 12.0])
    spends = (xs, m, w)
    grad = _clv_math.gamma_gamma_gradient(sp, np, spend, spends)
    for i in range(3):
        up, down = spend.copy(), spend.copy()
        up[i] += 1e-6
        down[i] -= 1e-6
        numeric = (
            _clv_math.gamma_gamma_log_likelihood(sp, np, up, spends)
            - _clv_math.gamma_gamma_log_likelihood(sp, np, down, spends)
        ) / 2e-6
        assert grad[i] == pytest.approx(numeric, rel=1e-5)


def test_the_log_likelihood_matches_the_papers_formula_term_by_term() -> None:
    # one customer, x=2, t_x=5, T=10 at r=1, alpha=2, a=1, b=3 (eq. 6 of Fader et al.)
    r, alpha, a, b, x, t_x, t = 1.0, 2.0, 1.0, 3.0, 2, 5.0, 10.0
    beta = math.lgamma
    a1 = beta(r + x) - beta(r) + r * math.log(alpha)
    a2 = beta(a + b) + beta(b + x) - beta(b) - beta(a + b + x)
    a3 = -(r + x) * math.log(alpha + t)
    a4 = math.log(a) - math.log(b + x - 1) - (r + x) * math.log(alpha + t_x)
    expected = a1 + a2 + math.log(math.exp(a3) + math.exp(a4))
    got = _clv_math.bg_nbd_log_likelihood(
        scipy.special,
        np,
        np.array([r, alpha, a, b]),
        (np.array([2.0]), np.array([t_x]), np.array([t]), np.ones(1)),
    )
    assert got == pytest.approx(expected, rel=1e-12)


def test_the_summary_counts_periods_as_lifetimes_does() -> None:
    day = timedelta(days=1)
    transactions = [
        Transaction("ann", START, usd("10")),
        Transaction("ann", START + timedelta(hours=3), usd("5")),  # same day: one purchase
        Transaction("ann", START + 4 * day, usd("20")),
        Transaction("ann", START + 6 * day, usd("40")),
        Transaction("ann", START + 12 * day, usd("7")),  # holdout
        Transaction("bob", START + 2 * day, usd("99")),  # one purchase
        Transaction("cem", START + 11 * day, usd("1")),  # first purchase in the holdout
        Transaction("dan", START + 30 * day, usd("1")),  # after the observation end
    ]
    summary = rfm_summary(
        transactions, observation_end=START + 14 * day, calibration_end=START + 10 * day
    )
    assert summary.holdout_periods == 4
    ann, bob = summary.rows
    assert (ann.customer, ann.frequency, ann.recency, ann.T) == ("ann", 2, 6, 10)
    assert ann.monetary_value == Decimal(30)
    assert (ann.holdout_frequency, ann.holdout_monetary_value) == (1, Decimal(7))
    assert (bob.frequency, bob.recency, bob.T, bob.monetary_value) == (0, 0, 8, Decimal(0))


def test_currencies_are_never_added() -> None:
    mixed = [
        Transaction("ann", START, usd("10")),
        Transaction("ann", START + timedelta(days=2), Money(Decimal(10), "EUR")),
    ]
    with pytest.raises(CurrencyMismatch) as error:
        rfm_summary(mixed, observation_end=END)
    assert error.value.field == "transactions[1].amount.currency"
    summary = rfm_summary(mixed, observation_end=END, rates={"EUR": Decimal("1.1")})
    assert summary.currency == "USD"
    assert summary.rows[0].monetary_value == Decimal("11.0")
    in_eur = rfm_summary(mixed, observation_end=END, currency="EUR", rates={"USD": Decimal("0.9")})
    assert in_eur.rows[0].monetary_value == Decimal(10)
    with pytest.raises(ValidationError) as error:
        rfm_summary(mixed, observation_end=END, rates={"EUR": Decimal(0)})
    assert error.value.field == "rates['EUR']"


def test_refunds_are_refused_and_free_purchases_count() -> None:
    refund = [Transaction("ann", START, usd("10")), Transaction("ann", START, usd("-10"))]
    with pytest.raises(ValidationError) as error:
        rfm_summary(refund, observation_end=END)
    assert error.value.field == "transactions[1].amount"
    free = [Transaction("ann", START, usd("0")), Transaction("ann", START + timedelta(2), usd("0"))]
    (row,) = rfm_summary(free, observation_end=END).rows
    assert (row.frequency, row.monetary_value) == (1, Decimal(0))


def test_fits_refuse_data_that_cannot_identify_them() -> None:
    singles = [Transaction(f"c{i}", START + timedelta(days=i), usd("5")) for i in range(20)]
    summary = rfm_summary(singles, observation_end=END)
    with pytest.raises(ValidationError) as error:
        fit_bg_nbd(summary)
    assert error.value.field == "summary"
    with pytest.raises(ValidationError) as error:
        fit_gamma_gamma(summary)
    assert error.value.field == "summary"
    empty = rfm_summary([], observation_end=END)
    assert (empty.rows, empty.currency) == ((), None)
    with pytest.raises(ValidationError):
        fit_bg_nbd(empty)


def test_predictions_and_clv(simulated: list[Transaction]) -> None:
    split = rfm_summary(simulated, observation_end=END, calibration_end=END - timedelta(days=90))
    purchases, spend = fit_bg_nbd(split), fit_gamma_gamma(split)
    check = holdout_check(split, purchases)
    assert check.holdout_periods == 90
    assert check.actual == sum(r.holdout_frequency for r in split.rows)
    assert abs(check.predicted - check.actual) < 0.15 * check.actual
    assert 0 < check.mean_absolute_error <= check.root_mean_squared_error

    # a customer never seen again for long is less likely alive and buys less
    assert purchases.p_alive(0, 0, 100) == 1.0
    assert purchases.p_alive(5, 20, 200) < purchases.p_alive(5, 190, 200)
    assert purchases.expected_purchases(5, 20, 200, 30) < purchases.expected_purchases(
        5, 190, 200, 30
    )
    assert purchases.expected_purchases(5, 190, 200, 0) == 0
    with pytest.raises(ValidationError) as error:
        purchases.p_alive(0, 3, 10)
    assert error.value.field == "recency"

    report = customer_lifetime_value(
        split, purchases, spend, steps=12, discount_rate=Decimal("0.01"), margin=Decimal("0.3")
    )
    assert len(report.rows) == len(split.rows)
    assert [r.clv.amount for r in report.rows] == sorted(
        (r.clv.amount for r in report.rows), reverse=True
    )
    # a customer with one purchase is valued at the population's mean spend
    once = next(r.customer for r in split.rows if r.frequency == 0)
    single = next(r for r in report.rows if r.customer == once)
    population = spend.expected_spend(0, Decimal(0))
    assert population == pytest.approx(
        Decimal(spend.p.value * spend.v.value / (spend.q.value - 1)), rel=Decimal("1e-6")
    )
    assert single.expected_spend == Money(population, "USD").rounded()
    assert single.clv.currency == "USD"
    assert single.clv.amount > 0
    undiscounted = customer_lifetime_value(
        split, purchases, spend, discount_rate=Decimal(0), margin=Decimal(1)
    )
    assert undiscounted.total.amount > report.total.amount / Decimal("0.3")
    # the converter round-trips every result
    converter = make_converter()
    for value, kind in (
        (report, ClvReport),
        (purchases, BgNbdFit),
        (spend, GammaGammaFit),
        (split, RfmSummary),
    ):
        assert converter.structure(converter.unstructure(value), kind) == value


def test_purchase_activities_are_transactions() -> None:
    contact = uuid4()
    activities = [
        Activity(
            id=uuid4(),
            version=1,
            created_at=START,
            updated_at=START,
            contact_id=contact,
            kind=kind,
            occurred_at=START,
            amount=amount,
        )
        for kind, amount in (
            (ActivityKind.PURCHASE, usd("12.50")),
            (ActivityKind.NOTE, None),
        )
    ]
    (only,) = transactions_from_activities(activities)
    assert only == Transaction(str(contact), START, usd("12.50"))
    without = [*activities, attrs_evolve(activities[0], amount=None)]
    with pytest.raises(ValidationError) as error:
        transactions_from_activities(without)
    assert error.value.field == "activities[2].amount"


def attrs_evolve(activity: Activity, **changes: object) -> Activity:
    import attrs  # noqa: PLC0415

    return attrs.evolve(activity, **changes)


def test_numpy_and_scipy_are_the_extra_analytics(monkeypatch: pytest.MonkeyPatch) -> None:
    summary = rfm_summary([Transaction("ann", START, usd("1"))], observation_end=END)
    for hidden in ("numpy", "scipy.optimize"):
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, hidden, None)
            with pytest.raises(MissingExtra) as error:
                fit_bg_nbd(summary)
            assert error.value.extra == "analytics"


purchases_strategy = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d"]),
        st.integers(0, 400),
        st.decimals(min_value=-5, max_value=500, places=2, allow_nan=False),
        st.sampled_from(["USD", "USD", "USD", "EUR"]),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(purchases_strategy, st.integers(0, 400))
def test_only_crmkit_errors_escape_and_results_are_finite(
    rows: list[tuple[str, int, Decimal, str]], holdout: int
) -> None:
    transactions = [
        Transaction(c, START + timedelta(days=d), Money(a, cur)) for c, d, a, cur in rows
    ]
    try:
        summary = rfm_summary(
            transactions, observation_end=END, calibration_end=END - timedelta(days=holdout)
        )
        purchases = fit_bg_nbd(summary)
        for estimate in (purchases.r, purchases.alpha, purchases.a, purchases.b):
            assert math.isfinite(estimate.value)
        spend = fit_gamma_gamma(summary)
        report = customer_lifetime_value(summary, purchases, spend)
        assert all(r.clv.amount.is_finite() and 0 <= r.p_alive <= 1 for r in report.rows)
        if summary.holdout_periods:
            check = holdout_check(summary, purchases)
            assert math.isfinite(check.root_mean_squared_error)
    except CrmkitError:
        pass
