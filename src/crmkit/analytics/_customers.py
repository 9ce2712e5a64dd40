"""Customer KPIs: new and churned customers, churn rate, cohort retention, revenue per
customer and the revenue movement (new, expansion, contraction, churned, reactivated).

A customer's life is a :class:`CustomerSpan`: from becoming a customer to churning
(``end``; ``None`` while a customer). The host chooses what churn means:

* by **lifecycle**: :func:`spans_from_stage_changes` reads when a contact entered the
  customer stages and whether its last change left them;
* by **inactivity**: :func:`spans_from_purchases` starts a customer at a purchase and
  churns it ``inactive_after`` the last purchase before a longer gap, once that lies in
  the past at ``now``; a purchase after the gap starts a new span (a reactivation).

Revenue comes from purchases or won deals as :class:`~crmkit.analytics.Transaction`, and
is reported per currency: EUR is never added to USD.
"""

from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from uuid import UUID

import attrs

from crmkit.analytics._clv import Transaction, check_customer_key, customer_key
from crmkit.analytics._periods import Granularity, Period, period_of
from crmkit.analytics._range import period_at, report_periods, within_calendar
from crmkit.clock import ensure_utc
from crmkit.errors import ValidationError
from crmkit.models import (
    Contact,
    Deal,
    DealStatus,
    LifecycleStage,
    Money,
    StageChange,
    SubjectKind,
)
from crmkit.models._fields import expect_items

__all__ = [
    "CUSTOMER_STAGES",
    "CohortRow",
    "CustomerFlowRow",
    "CustomerFlows",
    "CustomerReport",
    "CustomerSpan",
    "RetentionMatrix",
    "RevenueReport",
    "RevenueRow",
    "check_customer_stages",
    "customer_flows",
    "replay_customer_spans",
    "retention_matrix",
    "revenue_report",
    "spans_from_purchases",
    "spans_from_stage_changes",
    "transactions_from_deals",
]

_PLACES = Decimal("1e-12")
CUSTOMER_STAGES = frozenset({LifecycleStage.CUSTOMER, LifecycleStage.EVANGELIST})
"""The lifecycle stages of a customer: churn by lifecycle is leaving them."""


@attrs.frozen
class CustomerSpan:
    """One customer from ``start`` to churning at ``end`` (``None``: still a customer)."""

    customer: str = attrs.field(converter=customer_key)
    start: datetime
    end: datetime | None = None

    def __attrs_post_init__(self) -> None:
        check_customer_key(self.customer)
        object.__setattr__(self, "start", ensure_utc(self.start, "start"))
        if self.end is not None:
            object.__setattr__(self, "end", ensure_utc(self.end, "end"))
            if self.end < self.start:
                raise ValidationError("end", self.end, "expected at or after start")


def _spans(spans: Iterable[CustomerSpan]) -> list[CustomerSpan]:
    found = []
    for index, span in enumerate(expect_items(spans, CustomerSpan, "spans", "CustomerSpans")):
        if not isinstance(span, CustomerSpan):
            raise ValidationError(f"spans[{index}]", span, "expected a CustomerSpan")
        found.append(span)
    return found


def _positive(value: object, field: str) -> timedelta:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise ValidationError(field, value, "expected a positive timedelta")
    return value


def spans_from_purchases(
    transactions: Iterable[Transaction], *, inactive_after: timedelta, now: datetime
) -> list[CustomerSpan]:
    """Churn by inactivity: a customer from a purchase (up to ``now``), churned
    ``inactive_after`` the last purchase before a gap longer than that, once it lies at
    or before ``now``. A customer who buys again after such a gap starts a new span
    (reactivated: counted as new in that period), so a past period's churn does not
    change when a lapsed customer comes back later; customers appear once per span,
    ordered by customer and start."""
    _positive(inactive_after, "inactive_after")
    at = ensure_utc(now, "now")
    bought: dict[str, list[datetime]] = {}
    for index, item in enumerate(
        expect_items(transactions, Transaction, "transactions", "Transactions")
    ):
        if not isinstance(item, Transaction):
            raise ValidationError(f"transactions[{index}]", item, "expected a Transaction")
        if item.at > at:
            continue
        bought.setdefault(item.customer, []).append(item.at)
    spans = []
    for customer in sorted(bought):
        times = sorted(bought[customer])
        begun = times[0]
        for previous, following in zip(times, [*times[1:], None], strict=True):
            churn = _plus(previous, inactive_after)
            if following is not None and (churn is None or following <= churn):
                continue  # bought again in time: the same span goes on
            spans.append(CustomerSpan(customer, begun, churn if churn and churn <= at else None))
            if following is not None:
                begun = following
    return spans


def _plus(moment: datetime, span: timedelta) -> datetime | None:
    try:
        return moment + span
    except OverflowError:
        return None


def spans_from_stage_changes(
    changes: Iterable[StageChange],
    *,
    stages: Iterable[LifecycleStage] = CUSTOMER_STAGES,
    since: Mapping[UUID, datetime] | None = None,
) -> list[CustomerSpan]:
    """Churn by lifecycle: contacts become customers when a change moves them into
    ``stages`` and churn when their last change moves them out (a customer who came back
    is a customer). ``since`` gives the start of customers without such a change (imported
    at the stage: their creation time). Changes of other subjects are ignored."""
    try:
        wanted = {LifecycleStage(s).value for s in expect_items(stages, object, "stages", "")}
    except (TypeError, ValueError) as error:
        if isinstance(error, ValidationError):
            raise
        raise ValidationError("stages", stages, "expected lifecycle stages") from None
    if since is not None and not isinstance(since, Mapping):
        raise ValidationError("since", since, "expected a mapping of contact id to time")
    starts: dict[UUID, datetime] = {}
    ends: dict[UUID, datetime | None] = {}
    ordered = []
    for index, change in enumerate(expect_items(changes, StageChange, "changes", "StageChanges")):
        if not isinstance(change, StageChange):
            raise ValidationError(f"changes[{index}]", change, "expected a StageChange")
        if change.subject is SubjectKind.CONTACT:
            ordered.append(change)
    ordered.sort(key=lambda c: (c.at, c.id))
    for change in ordered:
        inside = change.to_stage in wanted
        if inside and change.subject_id not in starts:
            starts[change.subject_id] = change.at
        if change.subject_id in starts:
            ends[change.subject_id] = None if inside else change.at
    for contact, at in (since or {}).items():
        if not isinstance(contact, UUID):
            raise ValidationError("since", contact, "expected contact ids (UUIDs) as keys")
        if contact not in starts:
            starts[contact] = ensure_utc(at, f"since[{contact}]")
            ends[contact] = None
    return [CustomerSpan(c, starts[c], ends[c]) for c in sorted(starts, key=str)]


def check_customer_stages(stages: object) -> frozenset[LifecycleStage]:
    """``stages`` as a non-empty frozenset of lifecycle stages, or a ValidationError
    naming ``stages``."""
    if isinstance(stages, str | bytes) or not isinstance(stages, Iterable):
        raise ValidationError("stages", stages, "expected lifecycle stages")
    try:
        found = frozenset(LifecycleStage(s) for s in stages)
    except (TypeError, ValueError):
        raise ValidationError("stages", stages, "expected lifecycle stages") from None
    if not found:
        raise ValidationError("stages", stages, "expected at least one lifecycle stage")
    return found


def replay_customer_spans(
    contacts: Iterable[Contact],
    changes: Iterable[StageChange],
    stages: Iterable[LifecycleStage] = CUSTOMER_STAGES,
) -> list[CustomerSpan]:
    """The customer spans of :func:`spans_from_stage_changes` as a store gives them
    (``StageHistoryRepository.customer_spans``): from every contact change, with the
    contacts now in ``stages`` (of ``contacts``) that no change moved into them starting
    at their creation (imported there). The reference a store's grouped query must equal."""
    wanted = check_customer_stages(stages)
    listed = expect_items(contacts, Contact, "contacts", "Contacts")
    since = {c.id: c.created_at for c in listed if c.lifecycle_stage in wanted}
    return spans_from_stage_changes(changes, stages=wanted, since=since)


def transactions_from_deals(deals: Iterable[Deal]) -> list[Transaction]:
    """The won deals with an amount as transactions of their account (else their contact),
    at their close time; deals with neither, open or lost deals are left out."""
    found = []
    for index, deal in enumerate(expect_items(deals, Deal, "deals", "Deals")):
        if not isinstance(deal, Deal):
            raise ValidationError(f"deals[{index}]", deal, "expected a Deal")
        customer = deal.account_id or deal.contact_id
        if (
            deal.status is DealStatus.WON
            and deal.amount is not None
            and deal.closed_at is not None
            and customer is not None
        ):
            found.append(Transaction(customer, deal.closed_at, deal.amount))
    return found


# ---------------------------------------------------------------------------- flows


@attrs.frozen(kw_only=True)
class CustomerFlowRow:
    """One period: customers at its start, new and churned customers in it, customers at
    its end, and the churn rate (the share of the customers at the start who churned in
    the period; ``None`` without customers at the start)."""

    period: str
    start: datetime
    customers_at_start: int
    new: int
    churned: int
    customers_at_end: int
    churn_rate: float | None


@attrs.frozen(kw_only=True)
class CustomerFlows:
    """New and churned customers per period."""

    granularity: Granularity
    rows: tuple[CustomerFlowRow, ...]


def _alive(span: CustomerSpan, at: datetime) -> bool:
    return span.start < at and (span.end is None or span.end >= at)


def customer_flows(
    spans: Iterable[CustomerSpan],
    *,
    start: datetime,
    end: datetime,
    granularity: Granularity = Granularity.MONTH,
    tz: tzinfo = UTC,
) -> CustomerFlows:
    """New customers, churned customers and churn rate per period from ``start`` to
    ``end``."""
    lives = _spans(spans)
    rows = []
    for period in report_periods(start, end, granularity, tz):
        base = [s for s in lives if _alive(s, period.start)]
        new = sum(1 for s in lives if s.start in period)
        churned = sum(1 for s in lives if s.end is not None and s.end in period)
        lost = sum(1 for s in base if s.end is not None and s.end in period)
        rows.append(
            CustomerFlowRow(
                period=period.label,
                start=period.start,
                customers_at_start=len(base),
                new=new,
                churned=churned,
                customers_at_end=len(base) + new - churned,
                churn_rate=lost / len(base) if base else None,
            )
        )
    return CustomerFlows(granularity=Granularity(granularity), rows=tuple(rows))


# ---------------------------------------------------------------------------- cohorts


@attrs.frozen(kw_only=True)
class CohortRow:
    """The customers who became customers in one period (``cohort``), and how many of them
    were still customers at the end of each period since (``retained[0]`` the cohort's own
    period), up to the report's end; ``rates`` are the shares of ``size``."""

    cohort: str
    start: datetime
    size: int
    retained: tuple[int, ...]
    rates: tuple[float, ...]


@attrs.frozen(kw_only=True)
class RetentionMatrix:
    """Cohort retention: one row per cohort period with customers, oldest first."""

    granularity: Granularity
    rows: tuple[CohortRow, ...]


def retention_matrix(
    spans: Iterable[CustomerSpan],
    *,
    start: datetime,
    end: datetime,
    granularity: Granularity = Granularity.MONTH,
    tz: tzinfo = UTC,
) -> RetentionMatrix:
    """The cohort retention matrix of the customers who started from ``start`` to
    ``end`` (monthly cohorts by default)."""
    lives = _spans(spans)
    spans_of = report_periods(start, end, granularity, tz)
    starts = [period.start for period in spans_of]
    ends = [period.end for period in spans_of]
    # One pass over the spans: each to its cohort (the period it started in) and to how
    # many periods ended by its churn (it is retained at the end of each earlier one).
    # The periods are consecutive, in order: a start is in the last one begun by then.
    lasted: list[Counter[int]] = [Counter() for _ in spans_of]
    for life in lives:
        if not start <= life.start < end:
            continue
        index = bisect_right(starts, life.start) - 1
        if index < 0 or life.start not in spans_of[index]:
            continue
        lasted[index][len(spans_of) if life.end is None else bisect_right(ends, life.end)] += 1
    rows = []
    for index, cohort in enumerate(spans_of):
        counts = lasted[index]
        size = counts.total()
        if not size:
            continue
        retained = []
        # retained at the end of period `later`: those that outlasted it (none churned
        # before its cohort began: the periods before it end by the cohort's start)
        left = size
        for later in range(index, len(spans_of)):
            left -= counts[later]  # churned at or before the end of `later` (ends <= churn)
            retained.append(left)
        rows.append(
            CohortRow(
                cohort=cohort.label,
                start=cohort.start,
                size=size,
                retained=tuple(retained),
                rates=tuple(n / size for n in retained),
            )
        )
    return RetentionMatrix(granularity=Granularity(granularity), rows=tuple(rows))


# ---------------------------------------------------------------------------- revenue


@attrs.frozen(kw_only=True)
class RevenueRow:
    """Revenue of one period in one currency: the total, the paying customers and the
    revenue per paying customer, and how it moved against the period before per customer:
    ``new`` (first purchases ever), ``reactivated`` (customers back after a period without
    purchases), ``expansion`` and ``contraction`` (more or less than the period before) and
    ``churned`` (the revenue of the period before from customers who bought nothing now).
    ``revenue = previous + new + reactivated + expansion - contraction - churned``."""

    period: str
    start: datetime
    currency: str
    revenue: Money
    previous: Money
    customers: int
    per_customer: Money | None
    new: Money
    reactivated: Money
    expansion: Money
    contraction: Money
    churned: Money


@attrs.frozen(kw_only=True)
class RevenueReport:
    """Revenue per period and currency, by period then currency."""

    granularity: Granularity
    rows: tuple[RevenueRow, ...]


def revenue_report(
    transactions: Iterable[Transaction],
    *,
    start: datetime,
    end: datetime,
    granularity: Granularity = Granularity.MONTH,
    tz: tzinfo = UTC,
) -> RevenueReport:
    """Revenue, revenue per customer and revenue movement per period and currency from
    ``start`` to ``end``; a negative amount is refused (net refunds first)."""
    spans_of = report_periods(start, end, granularity, tz)
    if not spans_of:
        return RevenueReport(granularity=Granularity(granularity), rows=())
    gran = spans_of[0].granularity
    first_seen: dict[tuple[str, str], datetime] = {}
    # (currency, period start) -> customer -> revenue
    by_period: dict[tuple[str, datetime], dict[str, Decimal]] = {}
    first = spans_of[0].start
    before = within_calendar(
        lambda: period_of(first - timedelta(microseconds=1), gran, tz), "start", start
    )
    for index, item in enumerate(
        expect_items(transactions, Transaction, "transactions", "Transactions")
    ):
        if not isinstance(item, Transaction):
            raise ValidationError(f"transactions[{index}]", item, "expected a Transaction")
        if item.amount.amount < 0:
            raise ValidationError(
                f"transactions[{index}].amount", item.amount, "a purchase cannot be negative"
            )
        key = (item.customer, item.amount.currency)
        first_seen[key] = min(first_seen.get(key, item.at), item.at)
        if before.start <= item.at < end:
            slot = (item.amount.currency, period_at(item.at, gran, tz).start)
            customers = by_period.setdefault(slot, {})
            customers[item.customer] = customers.get(item.customer, Decimal(0)) + item.amount.amount
    currencies = sorted({c for c, _ in by_period})
    rows = []
    previous_start = before.start
    for period in spans_of:
        for currency in currencies:
            now = by_period.get((currency, period.start), {})
            then = by_period.get((currency, previous_start), {})
            if not now and not then:
                continue
            rows.append(_revenue_row(period, currency, now, then, first_seen))
        previous_start = period.start
    return RevenueReport(granularity=gran, rows=tuple(rows))


def _revenue_row(
    period: Period,
    currency: str,
    now: Mapping[str, Decimal],
    then: Mapping[str, Decimal],
    first_seen: Mapping[tuple[str, str], datetime],
) -> RevenueRow:
    moves = dict.fromkeys(("new", "reactivated", "expansion", "contraction", "churned"), Decimal(0))
    for customer in now.keys() | then.keys():
        cur, prev = now.get(customer, Decimal(0)), then.get(customer, Decimal(0))
        if customer not in then:
            fresh = first_seen[(customer, currency)] >= period.start
            moves["new" if fresh else "reactivated"] += cur
        elif customer not in now:
            moves["churned"] += prev
        elif cur > prev:
            moves["expansion"] += cur - prev
        elif cur < prev:
            moves["contraction"] += prev - cur
    revenue = sum(now.values(), Decimal(0))

    def money(amount: Decimal) -> Money:
        return Money(amount, currency)

    return RevenueRow(
        period=period.label,
        start=period.start,
        currency=currency,
        revenue=money(revenue),
        previous=money(sum(then.values(), Decimal(0))),
        customers=len(now),
        per_customer=money((revenue / len(now)).quantize(_PLACES)).rounded() if now else None,
        new=money(moves["new"]),
        reactivated=money(moves["reactivated"]),
        expansion=money(moves["expansion"]),
        contraction=money(moves["contraction"]),
        churned=money(moves["churned"]),
    )


@attrs.frozen(kw_only=True)
class CustomerReport:
    """The customer KPIs of one range of periods, as :meth:`crmkit.crm.CRM.customer_report`
    computes them from the store."""

    flows: CustomerFlows
    retention: RetentionMatrix
    revenue: RevenueReport
