"""How right and how fast is the CLV fit (BG/NBD and Gamma-Gamma)?

Data: purchases simulated from known parameters (BG/NBD r=0.25, alpha=4, a=0.8, b=2.5
per day; Gamma-Gamma p=6, q=4, v=15; first purchases spread over 90 days, a year
observed, seed 20240601), as ``Transaction`` objects and the same rows as a pandas frame.

* **Agreement with lifetimes** (``lifetimes`` 0.11, not a crmkit dependency: install it
  next to crmkit to run this part) on N customers (default 10,000): the RFM summaries of
  both must be equal; the fitted parameters, log-likelihoods, P(alive), expected
  purchases over 90 days and 12-month CLV are printed side by side with the largest
  relative difference (CLV where it exceeds 20 USD, as crmkit rounds it to cents). Target:
  3 significant digits (relative difference < 5e-4).
* **Recovery**: the fitted parameters next to the simulated ones with standard errors,
  fitted on hours (days merge a customer's purchases of one day, which biases alpha).
* **Holdout error**: calibration on the first 270 days, holdout the last 95: total
  predicted and actual purchases, per-customer MAE and RMSE.
* **Speed**: summary and fits on 100,000 customers (``--big``). Target: fit < 10 s.

Usage: ``python benchmarks/clv.py [--n 10000] [--big 100000] [--json]``.
"""

import argparse
import json
import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from crmkit.analytics import (
    Estimate,
    Transaction,
    customer_lifetime_value,
    fit_bg_nbd,
    fit_gamma_gamma,
    holdout_check,
    rfm_summary,
)
from crmkit.models import Money

SEED = 20240601
START = datetime(2025, 1, 1, tzinfo=UTC)
END = START + timedelta(days=365)
TRUE = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5, "p": 6.0, "q": 4.0, "v": 15.0}


def simulate(n: int, seed: int = SEED) -> list[Transaction]:
    """Purchases of ``n`` customers drawn from the BG/NBD and Gamma-Gamma models."""
    rnd = random.Random(seed)
    out: list[Transaction] = []
    for i in range(n):
        rate = rnd.gammavariate(TRUE["r"], 1 / TRUE["alpha"])
        drop = rnd.betavariate(TRUE["a"], TRUE["b"])
        scale = rnd.gammavariate(TRUE["q"], 1 / TRUE["v"])
        at = rnd.uniform(0, 90)
        made = 0
        while True:
            cents = max(1, round(rnd.gammavariate(TRUE["p"], 1 / scale) * 100))
            amount = Money(Decimal(cents).scaleb(-2), "USD")
            out.append(Transaction(f"c{i:07d}", START + timedelta(days=at), amount))
            made += 1
            # a customer may drop out after each repeat purchase, not after the first
            if made > 1 and rnd.random() < drop:
                break
            at += rnd.expovariate(rate) if rate > 0 else 1e9
            if at >= 365:
                break
    return out


def _sig(x: float) -> str:
    return f"{x:.4g}"


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def against_lifetimes(transactions: list[Transaction]) -> dict[str, Any]:
    import lifetimes  # type: ignore[import-untyped]  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    frame = pd.DataFrame(
        {
            "customer": [t.customer for t in transactions],
            "date": [t.at.replace(tzinfo=None) for t in transactions],
            "amount": [float(t.amount.amount) for t in transactions],
        }
    )
    theirs = lifetimes.utils.summary_data_from_transaction_data(
        frame,
        "customer",
        "date",
        monetary_value_col="amount",
        observation_period_end=(END - timedelta(microseconds=1)).replace(tzinfo=None),
        freq="D",
    ).sort_index()
    ours = rfm_summary(transactions, observation_end=END - timedelta(microseconds=1))
    same = (
        [r.customer for r in ours.rows] == list(theirs.index)
        and [r.frequency for r in ours.rows] == [int(v) for v in theirs["frequency"]]
        and [r.recency for r in ours.rows] == [int(v) for v in theirs["recency"]]
        and [r.T for r in ours.rows] == [int(v) for v in theirs["T"]]
        and np.allclose(
            [float(r.monetary_value) for r in ours.rows], theirs["monetary_value"], rtol=1e-9
        )
    )
    started = time.perf_counter()
    bg = fit_bg_nbd(ours)
    gg = fit_gamma_gamma(ours)
    ours_time = time.perf_counter() - started
    started = time.perf_counter()
    bgf = lifetimes.BetaGeoFitter(penalizer_coef=0.0)
    bgf.fit(theirs["frequency"], theirs["recency"], theirs["T"])
    repeat = theirs[(theirs["frequency"] > 0) & (theirs["monetary_value"] > 0)]
    ggf = lifetimes.GammaGammaFitter(penalizer_coef=0.0)
    ggf.fit(repeat["frequency"], repeat["monetary_value"])
    their_time = time.perf_counter() - started

    rows = []
    worst = 0.0
    pairs = [
        ("r", bg.r.value, bgf.params_["r"]),
        ("alpha", bg.alpha.value, bgf.params_["alpha"]),
        ("a", bg.a.value, bgf.params_["a"]),
        ("b", bg.b.value, bgf.params_["b"]),
        ("p", gg.p.value, ggf.params_["p"]),
        ("q", gg.q.value, ggf.params_["q"]),
        ("v", gg.v.value, ggf.params_["v"]),
    ]
    alive = bgf.conditional_probability_alive(theirs["frequency"], theirs["recency"], theirs["T"])
    expected = bgf.conditional_expected_number_of_purchases_up_to_time(
        90, theirs["frequency"], theirs["recency"], theirs["T"]
    )
    clv_theirs = ggf.customer_lifetime_value(
        bgf,
        theirs["frequency"],
        theirs["recency"],
        theirs["T"],
        theirs["monetary_value"],
        time=12,
        discount_rate=0.01,
        freq="D",
    )
    report = customer_lifetime_value(ours, bg, gg, steps=12, discount_rate=Decimal("0.01"))
    clv_ours = {r.customer: float(r.clv.amount) for r in report.rows}
    sample = list(theirs.index[:: max(1, len(theirs) // 200)])
    for customer in sample[:5]:
        row = next(r for r in ours.rows if r.customer == customer)
        pairs.append(
            (
                f"P(alive) {customer}",
                bg.p_alive(row.frequency, row.recency, row.T),
                float(alive[theirs.index.get_loc(customer)]),
            )
        )
        pairs.append(
            (
                f"E[purchases 90d] {customer}",
                bg.expected_purchases(row.frequency, row.recency, row.T, 90),
                float(expected[customer]),
            )
        )
        pairs.append((f"CLV 12m {customer}", clv_ours[customer], float(clv_theirs[customer])))
    for name, mine, other in pairs:
        rel = _rel(mine, float(other))
        if not name.startswith("CLV"):  # CLV rows are rounded to cents
            worst = max(worst, rel)
        rows.append({"what": name, "crmkit": mine, "lifetimes": float(other), "rel": rel})
    # crmkit rounds CLV to cents: compare where that rounding is below the target
    clv_rel = max(
        _rel(clv_ours[c], float(clv_theirs[c])) for c in theirs.index if clv_theirs[c] > 20
    )
    return {
        "customers": len(theirs),
        "summaries_equal": bool(same),
        "rows": rows,
        "worst_relative_difference": worst,
        "worst_clv_relative_difference": clv_rel,
        "fit_seconds_crmkit": ours_time,
        "fit_seconds_lifetimes": their_time,
    }


def recovery_and_holdout(transactions: list[Transaction]) -> dict[str, Any]:
    # hours, so that the summary loses no purchases to merged days; alpha back in days
    full = rfm_summary(transactions, observation_end=END, unit=timedelta(hours=1))
    bg, gg = fit_bg_nbd(full), fit_gamma_gamma(full)
    alpha_se = bg.alpha.standard_error
    fitted = {
        "r": bg.r,
        "alpha": Estimate(bg.alpha.value / 24, None if alpha_se is None else alpha_se / 24),
        "a": bg.a,
        "b": bg.b,
        "p": gg.p,
        "q": gg.q,
        "v": gg.v,
    }
    split = rfm_summary(transactions, observation_end=END, calibration_end=START + timedelta(270))
    check = holdout_check(split, fit_bg_nbd(split))
    return {
        "recovered": {
            k: {"true": TRUE[k], "fit": e.value, "se": e.standard_error} for k, e in fitted.items()
        },
        "holdout": {
            "customers": check.customers,
            "periods": check.holdout_periods,
            "predicted": check.predicted,
            "actual": check.actual,
            "mae": check.mean_absolute_error,
            "rmse": check.root_mean_squared_error,
        },
    }


def speed(n: int) -> dict[str, Any]:
    transactions = simulate(n, SEED + 1)
    started = time.perf_counter()
    summary = rfm_summary(transactions, observation_end=END)
    summarised = time.perf_counter() - started
    started = time.perf_counter()
    fit_bg_nbd(summary)
    bg_time = time.perf_counter() - started
    started = time.perf_counter()
    fit_gamma_gamma(summary)
    gg_time = time.perf_counter() - started
    return {
        "customers": n,
        "transactions": len(transactions),
        "summary_seconds": summarised,
        "bg_nbd_fit_seconds": bg_time,
        "gamma_gamma_fit_seconds": gg_time,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    transactions = simulate(args.n)
    result: dict[str, Any] = {"n": args.n}
    try:
        result["lifetimes"] = against_lifetimes(transactions)
    except ImportError as exc:
        result["lifetimes"] = f"skipped: {exc}"
    result.update(recovery_and_holdout(transactions))
    result["speed"] = speed(args.big)
    if isinstance(result["lifetimes"], dict):
        agree = result["lifetimes"]
        print(f"lifetimes agreement on {agree['customers']} customers")
        print(f"  summaries equal: {agree['summaries_equal']}")
        for row in agree["rows"]:
            print(
                f"  {row['what']:<32} crmkit {_sig(row['crmkit']):>12}"
                f"  lifetimes {_sig(row['lifetimes']):>12}  rel {row['rel']:.1e}"
            )
        print(f"  worst relative difference {agree['worst_relative_difference']:.1e}")
        print(f"  worst CLV relative difference {agree['worst_clv_relative_difference']:.1e}")
        print(
            f"  fit time crmkit {agree['fit_seconds_crmkit']:.2f} s,"
            f" lifetimes {agree['fit_seconds_lifetimes']:.2f} s"
        )
    else:
        print(f"lifetimes: {result['lifetimes']}")
    print("parameter recovery (true, fitted +- standard error)")
    for name, got in result["recovered"].items():
        se = got["se"]
        print(f"  {name:<6} {got['true']:>6}  {got['fit']:.4g} +- {se:.2g}" if se else name)
    hold = result["holdout"]
    print(
        f"holdout ({hold['periods']} days, {hold['customers']} customers): predicted"
        f" {hold['predicted']:.0f}, actual {hold['actual']}, MAE {hold['mae']:.3f},"
        f" RMSE {hold['rmse']:.3f}"
    )
    fast = result["speed"]
    print(
        f"speed on {fast['customers']} customers ({fast['transactions']} purchases):"
        f" summary {fast['summary_seconds']:.2f} s, BG/NBD fit {fast['bg_nbd_fit_seconds']:.2f} s,"
        f" Gamma-Gamma fit {fast['gamma_gamma_fit_seconds']:.2f} s (target fit < 10 s)"
    )
    if args.json:
        print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
