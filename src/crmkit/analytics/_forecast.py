"""The sales forecast per period (Salesforce's forecast categories) and its backtest.

A deal's category comes from its stage: won is ``closed``, lost ``omitted``, an open
stage is what the host maps it to, or by default ``commit`` from probability 0.8,
``best_case`` from 0.5, else ``pipeline``; an open deal's own category
(``Deal.forecast_category``) overrides its stage's. Expected revenue is what closed plus
each open deal's amount times its stage probability, or times the probability a learned
scorer (:mod:`crmkit.scoring`) gives the deal. The backtest replays the history as of each
period's start and scores those probabilities against what happened by the period's end.
"""

import math
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import attrs

from crmkit.analytics._periods import Period
from crmkit.analytics._pipeline import (
    StageFacts,
    _convert,
    check_facts,
    check_facts_table,
    check_period,
    check_rates,
    minor,
)
from crmkit.analytics._replay import Standing, check_rows
from crmkit.errors import ValidationError
from crmkit.models import DealStatus, ForecastCategory

__all__ = [
    "Backtest",
    "BacktestRow",
    "Forecast",
    "ForecastCategory",
    "ForecastRow",
    "ReliabilityBin",
    "backtest_rows",
    "brier",
    "category_of",
    "check_mapping",
    "forecast_rows",
    "reliability",
]

_MAX_BINS = 1_000
_MAX_COUNT = 10**15  # more deals than any CRM holds


def category_of(
    stage: str, facts: StageFacts, mapping: Mapping[str, ForecastCategory] | None = None
) -> ForecastCategory:
    """The category of a deal in ``stage`` (``mapping`` first for open stages)."""
    facts = check_facts(facts, "facts")
    if facts.status is DealStatus.WON:
        return ForecastCategory.CLOSED
    if facts.status is DealStatus.LOST:
        return ForecastCategory.OMITTED
    if mapping is not None:
        if not isinstance(mapping, Mapping):
            raise ValidationError("mapping", mapping, "expected a mapping of stage to category")
        if isinstance(stage, str) and stage in mapping:
            category = mapping[stage]
            if not isinstance(category, ForecastCategory):
                raise ValidationError(f"mapping[{stage!r}]", category, "not a ForecastCategory")
            return category
    if facts.probability >= Decimal("0.8"):
        return ForecastCategory.COMMIT
    if facts.probability >= Decimal("0.5"):
        return ForecastCategory.BEST_CASE
    return ForecastCategory.PIPELINE


def check_mapping(mapping: object) -> Mapping[str, ForecastCategory] | None:
    """``mapping`` (open stage -> :class:`ForecastCategory`, or ``None``), checked, or a
    ValidationError naming ``mapping`` or the stage."""
    if mapping is None:
        return None
    if not isinstance(mapping, Mapping):
        raise ValidationError("mapping", mapping, "expected a mapping of stage to category")
    for stage, category in mapping.items():
        if not isinstance(stage, str):
            raise ValidationError("mapping", stage, "expected stage keys")
        if not isinstance(category, ForecastCategory):
            raise ValidationError(f"mapping[{stage!r}]", category, "not a ForecastCategory")
    return mapping


def _check_overrides(overrides: object) -> Mapping[Any, ForecastCategory]:
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise ValidationError("overrides", overrides, "expected group -> ForecastCategory")
    for key, category in overrides.items():
        if not isinstance(category, ForecastCategory):
            raise ValidationError(f"overrides[{key!r}]", category, "not a ForecastCategory")
    return overrides


def _check_scores(scores: object) -> dict[Any, Decimal]:
    if scores is None:
        return {}
    if not isinstance(scores, Mapping):
        raise ValidationError("scores", scores, "expected group -> probability")
    found: dict[Any, Decimal] = {}
    for key, score in scores.items():
        if isinstance(score, bool) or not isinstance(score, int | float | Decimal):
            raise ValidationError(f"scores[{key!r}]", score, "expected a probability 0..1")
        value = score if isinstance(score, Decimal) else Decimal(repr(float(score)))
        if not value.is_finite() or not 0 <= value <= 1:
            raise ValidationError(f"scores[{key!r}]", score, "expected a probability 0..1")
        found[key] = value
    return found


@attrs.frozen
class ForecastRow:
    """One period's forecast in one currency: ``closed`` is what was won within the
    period, the other categories the amounts of open deals expected to close within
    it, ``expected`` is ``closed`` plus each open deal's amount times its stage
    probability; ``deals`` counts those open deals."""

    period: str
    currency: str | None
    closed: Decimal
    commit: Decimal
    best_case: Decimal
    pipeline: Decimal
    omitted: Decimal
    expected: Decimal
    deals: int


@attrs.frozen
class Forecast:
    """The forecast of ``pipeline`` as of ``at``; ``unscheduled`` counts the open deals
    whose last move snapshotted no expected close date (they are in no period).
    ``expected_from`` says where the open deals' probabilities came from: ``"stage"``
    (the stage probabilities) or ``"scorer"`` (a learned scorer)."""

    pipeline: str
    at: datetime
    rows: tuple[ForecastRow, ...]
    unscheduled: int
    expected_from: str = "stage"


def _within(day: date | None, period: Period) -> bool:
    return day is not None and period.start.date() <= day < period.end.date()


def forecast_rows(
    period: Period,
    won: Iterable[Standing],
    open_now: Iterable[Standing],
    facts: Mapping[tuple[str | None, str], StageFacts],
    *,
    mapping: Mapping[str, ForecastCategory] | None = None,
    rates: Mapping[str, Decimal] | None = None,
    currency: str | None = None,
    overrides: Mapping[Any, ForecastCategory] | None = None,
    scores: Mapping[Any, Decimal | float] | None = None,
) -> list[ForecastRow]:
    """One period's rows: ``won`` are the deals closed within it, ``open_now`` the open
    deals as of the forecast's time (those expected within the period count).

    ``overrides`` maps the ``group`` of an ``open_now`` row to the category its deals
    are in, whatever their stage (the per-deal category: rows grouped by
    ``forecast_category`` map each category to itself, rows grouped by deal id map the
    ids of deals that have one); ``scores`` maps a row's group (a deal id) to the
    probability a learned scorer gives it, which replaces the stage probability in
    ``expected``."""
    period = check_period(period)
    won = check_rows(won, Standing, "won")
    open_now = check_rows(open_now, Standing, "open_now")
    facts = check_facts_table(facts)
    mapping = check_mapping(mapping)
    rates, currency = check_rates(rates, currency)
    chosen = _check_overrides(overrides)
    probabilities = _check_scores(scores)
    sums: dict[str | None, dict[str, Decimal]] = {}
    counts: dict[str | None, int] = {}

    def slot(row: Standing) -> tuple[dict[str, Decimal], Decimal, str | None]:
        amount, money = _convert(row.amount, row.currency, rates, currency)
        found = sums.setdefault(money, {c.value: Decimal(0) for c in ForecastCategory})
        found.setdefault("expected", Decimal(0))
        return found, amount, money

    for row in won:
        known = facts.get((row.pipeline, row.stage))
        if known is None or known.status is not DealStatus.WON:
            continue
        found, amount, _ = slot(row)
        found[ForecastCategory.CLOSED] += amount
        found["expected"] += amount
    for row in open_now:
        known = facts.get((row.pipeline, row.stage))
        if known is None or known.status is not DealStatus.OPEN:
            continue
        if not _within(row.expected_close, period):
            continue
        found, amount, money = slot(row)
        category = chosen.get(row.group) if row.group is not None else None
        found[category or category_of(row.stage, known, mapping)] += amount
        found["expected"] += amount * probabilities.get(row.group, known.probability)
        counts[money] = counts.get(money, 0) + row.count
    if not sums:
        sums[currency if rates is not None else None] = {}
    return [
        ForecastRow(
            period=period.label,
            currency=money,
            closed=minor(found.get(ForecastCategory.CLOSED, Decimal(0)), money),
            commit=minor(found.get(ForecastCategory.COMMIT, Decimal(0)), money),
            best_case=minor(found.get(ForecastCategory.BEST_CASE, Decimal(0)), money),
            pipeline=minor(found.get(ForecastCategory.PIPELINE, Decimal(0)), money),
            omitted=minor(found.get(ForecastCategory.OMITTED, Decimal(0)), money),
            expected=minor(found.get("expected", Decimal(0)), money),
            deals=counts.get(money, 0),
        )
        for money, found in sorted(sums.items(), key=lambda kv: kv[0] or "")
    ]


@attrs.frozen
class ReliabilityBin:
    """Deals forecast with a probability in ``[low, high)`` (the last bin includes 1):
    how many, their mean probability and the share that was won."""

    low: float
    high: float
    deals: int
    mean_probability: float | None
    won_rate: float | None


@attrs.frozen
class BacktestRow:
    """One period replayed as of its start, in one currency: the ``deals`` open then and
    expected to close within it, the revenue ``expected`` from their stage
    probabilities, how much of it was won by the period's end (``won_of_expected``),
    everything ``actual``-ly won within the period, and the Brier score of those
    deals' probabilities (``None`` without deals)."""

    period: str
    currency: str | None
    deals: int
    expected: Decimal
    won_of_expected: Decimal
    actual: Decimal
    error: Decimal
    brier: float | None


@attrs.frozen
class Backtest:
    """The backtest of ``pipeline`` as of ``at``: per period and currency, the Brier
    score over every replayed deal and the reliability table (probabilities in ten
    bins)."""

    pipeline: str
    at: datetime
    rows: tuple[BacktestRow, ...]
    brier: float | None
    deals: int
    reliability: tuple[ReliabilityBin, ...]


Outcome = tuple[Decimal, bool, int]
"""A backtested group of deals: their probability, whether they were won, how many."""


def backtest_rows(
    period: Period,
    replayed: Iterable[Standing],
    won: Iterable[Standing],
    facts: Mapping[tuple[str | None, str], StageFacts],
    outcomes: list[Outcome],
    *,
    rates: Mapping[str, Decimal] | None = None,
    currency: str | None = None,
) -> list[BacktestRow]:
    """One period's rows: ``replayed`` is the standing as of the period's start with the
    stage at its end as ``later``; ``won`` what closed won within it. The deals scored
    are appended to ``outcomes`` (for the overall score and reliability)."""
    period = check_period(period)
    replayed = check_rows(replayed, Standing, "replayed")
    won = check_rows(won, Standing, "won")
    facts = check_facts_table(facts)
    if not isinstance(outcomes, list):
        raise ValidationError("outcomes", outcomes, "expected a list to append outcomes to")
    rates, currency = check_rates(rates, currency)
    rows: dict[str | None, list[Decimal]] = {}
    scored: dict[str | None, list[Outcome]] = {}
    for row in replayed:
        known = facts.get((row.pipeline, row.stage))
        if known is None or known.status is not DealStatus.OPEN:
            continue
        if not _within(row.expected_close, period):
            continue
        later = facts.get((row.pipeline, row.later or ""))
        success = later is not None and later.status is DealStatus.WON
        amount, money = _convert(row.amount, row.currency, rates, currency)
        total = rows.setdefault(money, [Decimal(0)] * 3)
        total[0] += amount * known.probability
        total[1] += amount if success else Decimal(0)
        scored.setdefault(money, []).append((known.probability, success, row.count))
    for row in won:
        known = facts.get((row.pipeline, row.stage))
        if known is None or known.status is not DealStatus.WON:
            continue
        amount, money = _convert(row.amount, row.currency, rates, currency)
        rows.setdefault(money, [Decimal(0)] * 3)[2] += amount
    if not rows:
        rows[currency if rates is not None else None] = [Decimal(0)] * 3
    found = []
    for money, (expected, won_of, actual) in sorted(rows.items(), key=lambda kv: kv[0] or ""):
        group = scored.get(money, [])
        outcomes.extend(group)
        found.append(
            BacktestRow(
                period=period.label,
                currency=money,
                deals=sum(n for _, _, n in group),
                expected=minor(expected, money),
                won_of_expected=minor(won_of, money),
                actual=minor(actual, money),
                error=minor(actual - expected, money),
                brier=brier(group),
            )
        )
    return found


def _outcome(outcome: object) -> Outcome:
    """``outcome`` as a checked (probability from 0 to 1, won, count from 0) triple."""
    if (
        not isinstance(outcome, tuple)
        or len(outcome) != 3
        or not isinstance(outcome[0], Decimal)
        or not outcome[0].is_finite()
        or not 0 <= outcome[0] <= 1
        or not isinstance(outcome[1], bool)
        or type(outcome[2]) is not int
        or not 0 <= outcome[2] <= _MAX_COUNT
    ):
        raise ValidationError("outcomes", outcome, "expected (probability, won, count) triples")
    return outcome[0], outcome[1], outcome[2]


def brier(outcomes: Iterable[Outcome]) -> float | None:
    """The mean squared difference of probability and outcome (``None`` when empty)."""
    supplied: object = outcomes  # checked as the object a host may pass
    if isinstance(supplied, str | bytes) or not isinstance(supplied, Iterable):
        raise ValidationError("outcomes", outcomes, "expected (probability, won, count) triples")
    squares = []
    deals = 0
    for outcome in outcomes:
        probability, success, count = _outcome(outcome)
        squares.append(count * (float(probability) - (1.0 if success else 0.0)) ** 2)
        deals += count
    # fsum: the same float whatever order a store returns the outcomes in
    return None if not deals else math.fsum(squares) / deals


def reliability(outcomes: Iterable[Outcome], bins: int = 10) -> tuple[ReliabilityBin, ...]:
    """The reliability table: ``bins`` equal probability bins (1 to 1,000), empty ones
    included."""
    if type(bins) is not int or not 1 <= bins <= _MAX_BINS:
        raise ValidationError("bins", bins, f"expected an int from 1 to {_MAX_BINS}")
    supplied: object = outcomes  # checked as the object a host may pass
    if isinstance(supplied, str | bytes) or not isinstance(supplied, Iterable):
        raise ValidationError("outcomes", outcomes, "expected (probability, won, count) triples")
    outcomes = [_outcome(outcome) for outcome in outcomes]
    counts = [0] * bins
    probabilities = [0.0] * bins
    wins = [0] * bins
    for probability, success, count in outcomes:
        index = min(int(float(probability) * bins), bins - 1)
        counts[index] += count
        probabilities[index] += float(probability) * count
        wins[index] += count if success else 0
    return tuple(
        ReliabilityBin(
            low=k / bins,
            high=(k + 1) / bins,
            deals=counts[k],
            mean_probability=None if not counts[k] else probabilities[k] / counts[k],
            won_rate=None if not counts[k] else wins[k] / counts[k],
        )
        for k in range(bins)
    )
