"""Pipeline KPIs per period: win rate by count and value, average deal size, sales-cycle
length, lost reasons, open and weighted pipeline, velocity, coverage and new revenue,
from the :class:`~crmkit.analytics.Standing` rows a store replays from stage history.

Money is never added across currencies: rows are per currency unless the host passes a
rate table (``rates``: how many units of ``currency`` one unit of another is worth).
Deals whose moves snapshotted no amount form the rows of currency ``None``.
"""

import enum
import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Context, Decimal
from typing import Any, Final
from uuid import UUID

import attrs

from crmkit.analytics._periods import Granularity, Period
from crmkit.analytics._replay import MAX_AMOUNT, Standing, check_rows
from crmkit.errors import ValidationError
from crmkit.models import CURRENCIES, DealStatus, Money

__all__ = [
    "LostReason",
    "PipelineKpis",
    "PipelineRow",
    "StageFacts",
    "cents",
    "check_facts_table",
    "check_period",
    "check_periods",
    "check_quota",
    "check_rates",
    "convert",
    "group_label",
    "pipeline_rows",
]

_CENT = Decimal("0.01")
_MAX_RATE = Decimal(10) ** 12
_DAY = 86400.0
_MAX_INT_BITS = 13_000  # about 3,900 digits: str() refuses ints over 4,300


@attrs.frozen
class StageFacts:
    """What the KPIs need of a pipeline stage: whether it is open, won or lost, and its
    probability."""

    status: DealStatus
    probability: Decimal


@attrs.frozen
class LostReason:
    """How many deals were lost for ``reason`` (``None``: no reason given)."""

    reason: str | None
    count: int


@attrs.frozen
class PipelineRow:
    """The KPIs of one group's deals in one currency for one period.

    Won and lost count the deals whose last move before the period's end (or ``at``)
    closed them within the period; ``win_rate`` is won over won and lost,
    ``win_rate_by_value`` the same by amount, ``average_deal`` the won amount per won
    deal, ``cycle_days`` the mean days from a closed deal's creation to its close.
    ``open``, ``open_amount`` and ``weighted`` (amount times stage probability) are the
    deals open at the period's end; ``velocity_per_day`` is open deals times average
    deal times win rate over cycle days; ``coverage`` the amount open at the period's
    start and expected to close within it, over the quota. ``new_revenue`` is the won
    amount. Ratios are ``None`` where they would divide by zero."""

    period: str
    group: str | None
    currency: str | None
    won: int
    lost: int
    win_rate: float | None
    won_amount: Decimal
    lost_amount: Decimal
    win_rate_by_value: float | None
    average_deal: Decimal | None
    cycle_days: float | None
    open: int
    open_amount: Decimal
    weighted: Decimal
    velocity_per_day: Decimal | None
    coverage: float | None
    new_revenue: Decimal
    lost_reasons: tuple[LostReason, ...]


@attrs.frozen
class PipelineKpis:
    """Pipeline KPIs as of ``at`` per period, group (the deal field ``by``) and
    currency."""

    pipeline: str | None
    by: str | None
    at: datetime
    rows: tuple[PipelineRow, ...]


def check_facts(facts: object, field: str) -> StageFacts:
    """``facts`` as :class:`StageFacts` with a DealStatus and a probability from 0 to 1,
    or a ValidationError naming ``field``."""
    if not isinstance(facts, StageFacts):
        raise ValidationError(field, facts, "expected StageFacts")
    probability = facts.probability
    if not isinstance(facts.status, DealStatus):
        raise ValidationError(f"{field}.status", facts.status, "expected a DealStatus")
    if not isinstance(probability, Decimal) or not probability.is_finite():
        raise ValidationError(f"{field}.probability", probability, "expected a Decimal 0..1")
    if not 0 <= probability <= 1:
        raise ValidationError(f"{field}.probability", probability, "expected a Decimal 0..1")
    return facts


def group_label(value: Any) -> str | None:
    """A group key as text (enum values, UUIDs and dates as their text form)."""
    if value is None:
        return None
    text = value.value if isinstance(value, enum.Enum) else value
    if not isinstance(text, str | int | float | Decimal | UUID | date):
        raise ValidationError("value", value, "expected a scalar group key")
    if isinstance(text, int) and text.bit_length() > _MAX_INT_BITS:
        raise ValidationError("value", value, "an integer group key has at most 4000 digits")
    return str(text)


def check_rates(rates: object, currency: object) -> tuple[Mapping[str, Decimal] | None, str | None]:
    """``rates`` (currency code -> units of ``currency`` per unit of it: a Decimal above
    0 and at most 10**12) and ``currency``, checked together: rates need a currency to
    convert to, and a currency needs rates; else a ValidationError naming the field."""
    if rates is None:
        if currency is not None:
            raise ValidationError("currency", currency, "a currency needs rates to convert")
        return None, None
    if not isinstance(rates, Mapping):
        raise ValidationError("rates", rates, "rates map currencies to Decimals")
    if not isinstance(currency, str):
        raise ValidationError("currency", currency, "rates need the currency they convert to")
    for code, rate in rates.items():
        if not isinstance(code, str):
            raise ValidationError("rates", code, "expected currency codes as keys")
        if not isinstance(rate, Decimal) or not rate.is_finite() or not 0 < rate <= _MAX_RATE:
            raise ValidationError(f"rates[{code!r}]", rate, "expected a Decimal above 0, <= 10**12")
    return rates, currency


def check_facts_table(facts: object) -> Mapping[tuple[str | None, str], StageFacts]:
    """``facts`` as a mapping of (pipeline, stage) to checked :class:`StageFacts`, or a
    ValidationError naming ``facts``."""
    if not isinstance(facts, Mapping):
        raise ValidationError("facts", facts, "expected (pipeline, stage) -> StageFacts")
    for key, known in facts.items():
        if (
            not isinstance(key, tuple)
            or len(key) != 2
            or not isinstance(key[0], str | None)
            or not isinstance(key[1], str)
        ):
            raise ValidationError("facts", key, "expected (pipeline, stage) keys")
        check_facts(known, f"facts[{key!r}]")
    return facts


def check_period(period: object) -> Period:
    """``period`` as a checked :class:`Period`, or a ValidationError naming ``period``."""
    if not isinstance(period, Period):
        raise ValidationError("period", period, "expected a Period")
    try:
        return check_periods((period,))[0]
    except ValidationError as error:
        raise ValidationError("period", period, error.reason) from None


_PRECISION = Context(prec=28)


def _context(digits: int) -> Context:
    """A context of the default precision (28) or of ``digits`` if more: the shared one
    for nearly every sum (one built per call cost a third of :func:`pipeline_rows` for
    thousands of groups)."""
    return _PRECISION if digits <= _PRECISION.prec else Context(prec=digits)


def cents(value: Decimal) -> Decimal:
    """``value`` rounded to hundredths, however many digits it has (the default context
    would refuse a result of more than 28 digits)."""
    return value.quantize(_CENT, context=_context(value.adjusted() + 4))


def _convert(
    amount: Decimal, currency: str | None, rates: Mapping[str, Decimal] | None, to: str | None
) -> tuple[Decimal, str | None]:
    if rates is None or currency is None or currency == to:
        return amount, currency
    rate = rates.get(currency)
    if rate is None:
        raise ValidationError("rates", currency, f"no rate from {currency} to {to}")
    return amount * rate, to


def convert(
    amount: Decimal, currency: str | None, rates: Mapping[str, Decimal] | None, to: str | None
) -> tuple[Decimal, str | None]:
    """``amount`` in ``to`` by ``rates`` (unchanged without rates or amount); a rate
    that is missing is a ValidationError naming ``rates`` and the currency."""
    if not isinstance(amount, Decimal) or not amount.is_finite() or abs(amount) > MAX_AMOUNT:
        raise ValidationError("amount", amount, "expected a finite Decimal up to 10**30")
    if currency is not None and not isinstance(currency, str):
        raise ValidationError("currency", currency, "expected a currency code or None")
    if rates is not None or to is not None:
        rates, to = check_rates(rates, to)
    return _convert(amount, currency, rates, to)


def check_quota(quota: object) -> Money | None:
    """``quota`` if it is Money or None, else a ValidationError naming ``quota``."""
    if quota is not None and not isinstance(quota, Money):
        raise ValidationError("quota", quota, "expected Money or None")
    return quota


_NONE = Decimal(0)
"""The sums of :class:`_Totals` that nothing was added to (this very object), which
:func:`_minor` rounds once per currency."""


@attrs.define
class _Totals:
    won: int = 0
    lost: int = 0
    won_amount: Decimal = _NONE
    lost_amount: Decimal = _NONE
    age: float = 0.0
    open: int = 0
    open_amount: Decimal = _NONE
    weighted: Decimal = _NONE
    due: Decimal = _NONE
    reasons: dict[str | None, int] = attrs.Factory(dict)


def _facts(row: Standing, facts: Mapping[tuple[str | None, str], StageFacts]) -> StageFacts | None:
    return facts.get((row.pipeline, row.stage))


@functools.cache
def _quantum(places: int) -> Decimal:
    return Decimal(1).scaleb(-places)


@functools.lru_cache(maxsize=512)
def _minor_unit(currency: str | None) -> tuple[int, Decimal]:
    """The places and the quantum of ``currency``'s minor unit (cents for ``None`` and
    for codes crmkit does not know)."""
    places = CURRENCIES.get(currency, 2) if currency is not None else 2
    return places, _quantum(places)


@functools.lru_cache(maxsize=512)
def _minor_none(currency: str | None) -> Decimal:
    return minor(_NONE, currency)


def _minor(amount: Decimal, currency: str | None) -> Decimal:
    """:func:`minor` of a sum of :class:`_Totals`, the untouched ones from a cache (a
    report of thousands of groups has mostly empty sums)."""
    return _minor_none(currency) if amount is _NONE else minor(amount, currency)


def minor(amount: Decimal, currency: str | None) -> Decimal:
    """``amount`` at the exponent of ``currency``'s minor unit (cents for ``None``, the
    rows of deals without an amount), so that every store gives the same ``Decimal``
    whatever scale its sums come back in (SQLite's ``4500.500000000000``, ``0E-12``)."""
    places, quantum = _minor_unit(currency)
    # However many digits: the default context refuses a result of more than 28.
    digits = amount.adjusted() + places + 2
    return amount.quantize(
        quantum, context=_PRECISION if digits <= _PRECISION.prec else _context(digits)
    )


def pipeline_rows(
    period: Period,
    closed: Iterable[Standing],
    open_at_end: Iterable[Standing],
    open_at_start: Iterable[Standing],
    facts: Mapping[tuple[str | None, str], StageFacts],
    *,
    quota: Money | None = None,
    rates: Mapping[str, Decimal] | None = None,
    currency: str | None = None,
) -> list[PipelineRow]:
    """The rows of one period from three replays: what closed within it (``since`` its
    start), what was open at its end and what was open at its start. Rows of stages
    that ``facts`` does not know (a pipeline the host no longer configures) are left
    out."""
    period = check_period(period)
    closed = check_rows(closed, Standing, "closed")
    open_at_end = check_rows(open_at_end, Standing, "open_at_end")
    open_at_start = check_rows(open_at_start, Standing, "open_at_start")
    facts = check_facts_table(facts)
    quota = check_quota(quota)
    rates, currency = check_rates(rates, currency)
    totals: dict[tuple[str | None, str | None], _Totals] = {}

    def slot(row: Standing) -> tuple[_Totals, Decimal]:
        if rates is None:  # as _convert, without the call: most reports convert nothing
            amount, money = row.amount, row.currency
        else:
            amount, money = _convert(row.amount, row.currency, rates, currency)
        group = row.group
        key = (group if type(group) is str else group_label(group), money)
        total = totals.get(key)
        if total is None:
            total = totals[key] = _Totals()
        return total, amount

    for row in closed:
        known = facts.get((row.pipeline, row.stage))  # _facts, without the call
        if known is None or known.status is DealStatus.OPEN:
            continue
        total, amount = slot(row)
        total.age += row.age_seconds
        if known.status is DealStatus.WON:
            total.won += row.count
            total.won_amount += amount
        else:
            total.lost += row.count
            total.lost_amount += amount
            total.reasons[row.reason] = total.reasons.get(row.reason, 0) + row.count
    for row in open_at_end:
        known = _facts(row, facts)
        if known is None or known.status is not DealStatus.OPEN:
            continue
        total, amount = slot(row)
        total.open += row.count
        total.open_amount += amount
        total.weighted += amount * known.probability
    first, last = period.start.date(), period.end.date()
    for row in open_at_start:
        known = _facts(row, facts)
        if known is None or known.status is not DealStatus.OPEN:
            continue
        if row.expected_close is not None and first <= row.expected_close < last:
            total, amount = slot(row)
            total.due += amount
    if not totals:
        totals[(None, currency if rates is not None else None)] = _Totals()
    label = period.label
    lost_reasons: dict[tuple[str | None, int], LostReason] = {}  # frozen: shared by rows
    return [
        _row(label, group, money, total, quota=quota, lost_reasons=lost_reasons)
        for (group, money), total in sorted(totals.items(), key=lambda kv: _order(kv[0]))
    ]


def _order(key: tuple[str | None, str | None]) -> tuple[str, str]:
    return (key[0] or "", key[1] or "")


def _ratio(part: Decimal | int, whole: Decimal | int) -> float | None:
    return None if not whole else float(Decimal(part) / Decimal(whole))


def _row(
    label: str,
    group: str | None,
    currency: str | None,
    total: _Totals,
    *,
    quota: Money | None,
    lost_reasons: dict[tuple[str | None, int], LostReason],
) -> PipelineRow:
    won, lost, count = total.won, total.lost, total.open
    closed = won + lost
    won_amount = _minor(total.won_amount, currency)
    lost_amount = _minor(total.lost_amount, currency)
    due = _minor(total.due, currency)
    average = None if not won else minor(won_amount / won, currency)
    cycle = None if not closed else total.age / closed / _DAY
    velocity = None
    if average is not None and cycle and not count:
        # nothing open: the product below is a zero of the sign of average times cycle
        velocity = _ZERO_CENTS[average.is_signed() != (cycle < 0)]
    elif average is not None and cycle:
        velocity = cents(count * average * won / closed / Decimal(repr(cycle)))
    coverage = None
    if quota is not None and quota.currency == currency and quota.amount > 0:
        coverage = float(due / quota.amount)
    reasons = total.reasons
    if len(reasons) > 1:
        ranked = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0] or ""))
    else:
        ranked = list(reasons.items())
    return PipelineRow(
        period=label,
        group=group,
        currency=currency,
        won=won,
        lost=lost,
        win_rate=None if not closed else float(Decimal(won) / Decimal(closed)),
        won_amount=won_amount,
        lost_amount=lost_amount,
        win_rate_by_value=_ratio(won_amount, won_amount + lost_amount),
        average_deal=average,
        cycle_days=cycle,
        open=count,
        open_amount=_minor(total.open_amount, currency),
        weighted=_minor(total.weighted, currency),
        velocity_per_day=velocity,
        coverage=coverage,
        new_revenue=won_amount,
        lost_reasons=tuple(_lost_reason(lost_reasons, r, n) for r, n in ranked),
    )


_ZERO_CENTS: Final = (Decimal("0.00"), Decimal("-0.00"))


def _lost_reason(
    known: dict[tuple[str | None, int], LostReason], reason: str | None, count: int
) -> LostReason:
    found = known.get((reason, count))
    if found is None:
        found = known[reason, count] = LostReason(reason, count)
    return found


def check_periods(periods: object) -> tuple[Period, ...]:
    """``periods`` as a non-empty tuple of :class:`Period`, or a ValidationError."""
    if isinstance(periods, Period):
        return (periods,)
    if isinstance(periods, str | bytes) or not isinstance(periods, Sequence) or not periods:
        raise ValidationError("periods", periods, "expected a non-empty sequence of Periods")
    for index, period in enumerate(periods):
        name = f"periods[{index}]"
        if not isinstance(period, Period):
            raise ValidationError(name, period, "expected a Period")
        for bound in (period.start, period.end):
            if not isinstance(bound, datetime) or bound.utcoffset() is None:
                raise ValidationError(name, period, "a period's bounds are aware datetimes")
        if period.end <= period.start:
            raise ValidationError(name, period, "a period ends after it starts")
        if not isinstance(period.granularity, Granularity):
            raise ValidationError(name, period, "expected a period of a Granularity")
    return tuple(periods)
