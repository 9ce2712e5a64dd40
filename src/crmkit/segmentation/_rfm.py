"""RFM (recency, frequency, monetary) scores and the named RFM groups.

Conventions
-----------
The measures follow the "buy till you die" (BTYD) literature of Fader and Hardie and the
``lifetimes`` package (``summary_data_from_transaction_data`` with ``freq="D"``):

* **Period**: one UTC calendar day. All purchases of a contact on one UTC day form one
  purchase period, whatever their number.
* **frequency**: the number of *repeat* purchase periods, that is the number of distinct
  purchase days minus one. A contact who bought only once (or only on one day) has
  frequency 0.
* **recency_days**: UTC calendar days from the day of the last purchase to the day of
  ``as_of`` (0 when the last purchase was on the day of ``as_of``). This is the recency
  of RFM marketing, not the ``recency`` of ``lifetimes``, which is the age of the contact
  at the last purchase; that one is ``(last_purchase.date() - first_purchase.date()).days``
  and ``lifetimes``' ``T`` is ``(as_of.date() - first_purchase.date()).days``.
* **monetary**: the mean value of the repeat purchase periods: the purchases of each day
  are summed, the first purchase day is left out, and the day totals are averaged; it is
  rounded half to even to the currency's minor unit. It is zero when there are no repeat
  periods, as in ``lifetimes``. ``total`` is the exact sum of every purchase up to
  ``as_of``, the first day included.
* Purchases after ``as_of`` are ignored (one exactly at ``as_of`` counts). Amounts are
  summed as given, so a refund recorded as a negative purchase lowers its day's total.

Scores
------
``r``, ``f`` and ``m`` run from 1 to ``bins``, and for all three **higher is better**: a
small ``recency_days`` gives a high ``r``. A score is the quantile bin of the contact's
*percentile rank* among the contacts scored (those with a purchase up to ``as_of``),
``PR = (number below + half the number equal) / number of contacts`` with "below"
meaning worse, and ``score = ceil(bins * PR)``. Ties therefore always share one score,
the result does not depend on the order of the input, and the computation is exact
(integer arithmetic). With ``n`` a multiple of ``bins`` and no ties, every score holds
exactly ``n / bins`` contacts; when everybody ties (a single contact, say), everybody
gets the middle score ``ceil(bins / 2)``; with fewer contacts than bins, some scores do
not occur.

Groups
------
:class:`RfmGroup` names a contact from its ``r`` and ``f`` scores with the widely used
5 x 5 "segment map" (``r`` first, then ``f``):

=============  ==========================
r, f           group
=============  ==========================
1-2, 1-2       hibernating
1-2, 3-4       at_risk
1-2, 5         cannot_lose_them
3, 1-2         about_to_sleep
3, 3           need_attention
3-4, 4-5       loyal
4, 1           promising
5, 1           new_customers
4-5, 2-3       potential_loyalists
5, 4-5         champions
=============  ==========================

With ``bins != 5`` a score ``s`` (the percentile band ``((s-1)/bins, s/bins]``) is first
rescaled to the quintile that holds the middle of its band, ``ceil(5 * (2s - 1) /
(2 * bins))``: with ``bins=10`` the scores 1-2 become 1, 3-4 become 2 and so on; with
``bins=3`` they become 1, 3 and 5.
"""

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Final, Self
from uuid import UUID

import attrs

from crmkit.clock import ensure_utc
from crmkit.errors import CurrencyMismatch, ValidationError
from crmkit.models import Activity, ActivityKind, Money

__all__ = ["RfmGroup", "RfmScore", "rfm_group", "rfm_scores"]


class RfmGroup(StrEnum):
    """The named RFM groups of the 5 x 5 segment map (see the module documentation)."""

    CHAMPIONS = "champions"
    LOYAL = "loyal"
    POTENTIAL_LOYALISTS = "potential_loyalists"
    NEW_CUSTOMERS = "new_customers"
    PROMISING = "promising"
    NEED_ATTENTION = "need_attention"
    ABOUT_TO_SLEEP = "about_to_sleep"
    AT_RISK = "at_risk"
    CANNOT_LOSE_THEM = "cannot_lose_them"
    HIBERNATING = "hibernating"


_SEGMENT_MAP: Final[tuple[tuple[RfmGroup, range, range], ...]] = (
    # group, r scores, f scores (on the 1..5 scale)
    (RfmGroup.HIBERNATING, range(1, 3), range(1, 3)),
    (RfmGroup.AT_RISK, range(1, 3), range(3, 5)),
    (RfmGroup.CANNOT_LOSE_THEM, range(1, 3), range(5, 6)),
    (RfmGroup.ABOUT_TO_SLEEP, range(3, 4), range(1, 3)),
    (RfmGroup.NEED_ATTENTION, range(3, 4), range(3, 4)),
    (RfmGroup.LOYAL, range(3, 5), range(4, 6)),
    (RfmGroup.PROMISING, range(4, 5), range(1, 2)),
    (RfmGroup.NEW_CUSTOMERS, range(5, 6), range(1, 2)),
    (RfmGroup.POTENTIAL_LOYALISTS, range(4, 6), range(2, 4)),
    (RfmGroup.CHAMPIONS, range(5, 6), range(4, 6)),
)
"""The segment map as written in the literature: each (r, f) cell in exactly one entry."""

_GRID: Final[dict[tuple[int, int], RfmGroup]] = {
    (r, f): group for group, rs, fs in _SEGMENT_MAP for r in rs for f in fs
}


@attrs.frozen(kw_only=True)
class RfmScore:
    """The RFM measures and scores of one contact (conventions: module documentation).

    ``recency_days``, ``frequency`` and ``monetary`` are the measures; ``r``, ``f`` and
    ``m`` their scores from 1 to ``bins`` (higher is better for all three); ``group``
    the named group of ``r`` and ``f``. ``total`` is all the contact spent up to
    ``as_of``; ``first_purchase`` and ``last_purchase`` are the instants of the first and
    the last purchase up to ``as_of``.
    """

    contact_id: UUID
    recency_days: int
    frequency: int
    monetary: Money
    total: Money
    first_purchase: datetime
    last_purchase: datetime
    r: int
    f: int
    m: int
    group: RfmGroup


def rfm_group(r: int, f: int, *, bins: int = 5) -> RfmGroup:
    """The named RFM group of a recency score ``r`` and a frequency score ``f``.

    Scores run from 1 to ``bins``; with ``bins != 5`` they are rescaled to 1..5 first
    (module documentation).

    >>> [str(rfm_group(r, f)) for r, f in [(5, 5), (1, 5), (2, 1), (4, 3)]]
    ['champions', 'cannot_lose_them', 'hibernating', 'potential_loyalists']
    >>> rfm_group(10, 1, bins=10)
    <RfmGroup.NEW_CUSTOMERS: 'new_customers'>
    """
    _check_bins(bins)
    _check_score("r", r, bins)
    _check_score("f", f, bins)
    return _GRID[_to_quintile(r, bins), _to_quintile(f, bins)]


def rfm_scores(
    purchases: Iterable[Activity], *, as_of: datetime, currency: str, bins: int = 5
) -> dict[UUID, RfmScore]:
    """Score every contact with a purchase up to ``as_of``, keyed by contact id.

    ``purchases`` are activities of kind ``purchase``, each with an ``amount`` in
    ``currency``; any other activity, a purchase without an amount or in another currency
    is rejected (:class:`~crmkit.errors.ValidationError`, a
    :class:`~crmkit.errors.CurrencyMismatch` for the currency, naming
    ``purchases[i]...``), also when it lies after ``as_of``: convert amounts to one
    currency first. ``as_of`` must be timezone-aware (another zone is converted to UTC).
    Scores are quantiles among the contacts returned, so they depend on who else is
    scored. The result is ordered by contact id.

    >>> from datetime import UTC
    >>> from uuid import UUID
    >>> from crmkit.clock import FixedClock
    >>> clock = FixedClock(datetime(2026, 3, 1, tzinfo=UTC))
    >>> ada, bob = UUID(int=1), UUID(int=2)
    >>> def buy(who, day, eur):
    ...     return Activity.new(contact_id=who, kind=ActivityKind.PURCHASE, clock=clock,
    ...                         occurred_at=datetime(2026, 2, day, tzinfo=UTC),
    ...                         amount=Money(eur, "EUR"))
    >>> scores = rfm_scores([buy(ada, 1, "20"), buy(ada, 9, "30"), buy(ada, 20, "50"),
    ...                      buy(bob, 2, "99")],
    ...                     as_of=datetime(2026, 3, 1, tzinfo=UTC), currency="EUR")
    >>> a = scores[ada]
    >>> a.recency_days, a.frequency, str(a.monetary), str(a.total), a.r, a.f, a.m, a.group
    (9, 2, '40.00 EUR', '100 EUR', 4, 4, 4, <RfmGroup.LOYAL: 'loyal'>)
    >>> b = scores[bob]
    >>> b.recency_days, b.frequency, str(b.monetary), b.r, b.f, b.m, b.group
    (27, 0, '0.00 EUR', 2, 2, 2, <RfmGroup.HIBERNATING: 'hibernating'>)
    """
    _check_bins(bins)
    as_of = ensure_utc(as_of, "as_of")
    code = _check_currency(currency)
    history: dict[UUID, list[tuple[datetime, Money]]] = {}
    for index, item in enumerate(_iterate(purchases, "purchases")):
        contact, when, amount = _purchase(item, index, code)
        if when <= as_of:
            history.setdefault(contact, []).append((when, amount))

    contacts = sorted(history, key=lambda c: c.int)
    measures = [_Measures.of(history[c], as_of.date(), code) for c in contacts]
    r_scores = _quantile_scores([-m.recency_days for m in measures], bins)
    f_scores = _quantile_scores([m.frequency for m in measures], bins)
    m_scores = _quantile_scores([m.monetary.amount for m in measures], bins)
    return {
        contact: RfmScore(
            contact_id=contact,
            recency_days=measure.recency_days,
            frequency=measure.frequency,
            monetary=measure.monetary,
            total=measure.total,
            first_purchase=measure.first_purchase,
            last_purchase=measure.last_purchase,
            r=r,
            f=f,
            m=m,
            group=rfm_group(r, f, bins=bins),
        )
        for contact, measure, r, f, m in zip(
            contacts, measures, r_scores, f_scores, m_scores, strict=True
        )
    }


# ---------------------------------------------------------------------------- measures


@attrs.frozen(kw_only=True)
class _Measures:
    recency_days: int
    frequency: int
    monetary: Money
    total: Money
    first_purchase: datetime
    last_purchase: datetime

    @classmethod
    def of(cls, purchases: list[tuple[datetime, Money]], today: date, currency: str) -> Self:
        zero = Money.zero(currency)
        by_day: dict[date, Money] = {}
        for when, amount in purchases:
            by_day[when.date()] = by_day.get(when.date(), zero) + amount
        days = sorted(by_day)
        frequency = len(days) - 1
        instants = [when for when, _ in purchases]
        return cls(
            recency_days=(today - days[-1]).days,
            frequency=frequency,
            monetary=_mean(sum((by_day[d] for d in days[1:]), zero), frequency),
            total=sum((by_day[d] for d in days), zero),
            first_purchase=min(instants),
            last_purchase=max(instants),
        )


def _mean(total: Money, count: int) -> Money:
    """``total / count`` rounded half to even to the minor unit; zero when ``count`` is 0."""
    places = total.minor_units
    if count == 0:
        return Money(Decimal(0).scaleb(-places), total.currency)
    scaled = round(Fraction(total.amount) * 10**places / count)
    return Money(Decimal(scaled).scaleb(-places), total.currency)


def _quantile_scores(values: Sequence[Decimal | int], bins: int) -> list[int]:
    """``ceil(bins * PR)`` per value, PR the percentile rank (higher value, higher PR)."""
    n = len(values)
    order = sorted(range(n), key=values.__getitem__)
    scores = [0] * n
    start = 0
    while start < n:
        end = start
        while end + 1 < n and values[order[end + 1]] == values[order[start]]:
            end += 1
        # below = start, equal = end - start + 1: PR = (start + equal / 2) / n
        numerator = bins * (start + end + 1)
        score = -(-numerator // (2 * n))
        for position in range(start, end + 1):
            scores[order[position]] = score
        start = end + 1
    return scores


def _to_quintile(score: int, bins: int) -> int:
    """The quintile (1..5) holding the middle of the percentile band of ``score``."""
    return -(-5 * (2 * score - 1) // (2 * bins))


# ---------------------------------------------------------------------------- checks


def _check_bins(bins: object) -> None:
    if isinstance(bins, bool) or not isinstance(bins, int) or not 2 <= bins <= 1000:
        raise ValidationError("bins", bins, "the number of bins is an integer from 2 to 1000")


def _check_score(name: str, score: object, bins: int) -> None:
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= bins:
        raise ValidationError(name, score, f"a score is an integer from 1 to {bins}")


def _check_currency(currency: str) -> str:
    try:
        return Money.zero(currency).currency
    except ValidationError as error:
        raise ValidationError("currency", currency, error.reason) from None


def _iterate(items: object, name: str) -> Iterable[object]:
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise ValidationError(name, items, "expected a collection of activities")
    return items


def _purchase(item: object, index: int, currency: str) -> tuple[UUID, datetime, Money]:
    where = f"purchases[{index}]"
    if not isinstance(item, Activity):
        raise ValidationError(where, item, "expected an Activity")
    if item.kind is not ActivityKind.PURCHASE:
        raise ValidationError(f"{where}.kind", item.kind, "expected a purchase activity")
    if item.amount is None:
        raise ValidationError(f"{where}.amount", None, "a purchase needs an amount for RFM")
    if item.amount.currency != currency:
        raise CurrencyMismatch(
            f"{where}.amount.currency",
            item.amount.currency,
            f"expected {currency}: convert purchase amounts to one currency first",
        )
    return item.contact_id, item.occurred_at, item.amount
