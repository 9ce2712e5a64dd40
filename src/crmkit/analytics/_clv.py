"""Customer lifetime value: the RFM summary, BG/NBD and Gamma-Gamma by maximum likelihood.

The summary (:func:`rfm_summary`) is pure Python and exact (amounts stay ``Decimal``);
the fits and predictions need the extra ``analytics`` (numpy and scipy) and raise
:class:`~crmkit.errors.MissingExtra` naming it without them.

Time is counted in whole ``unit`` periods (a day by default) on the UTC calendar, as
`lifetimes` does: purchases in one period are one purchase of their summed value.
``frequency`` is the number of periods with a purchase after the first, ``recency`` the
periods from the first to the last purchase, ``T`` the periods from the first purchase
to the end of the calibration period, and ``monetary_value`` the mean value of the
repeat purchases (0 for a customer with one purchase).
"""

import functools
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final, ParamSpec, TypeVar
from uuid import UUID

import attrs

from crmkit._extras import import_extra
from crmkit.analytics import _clv_math as _m
from crmkit.clock import ensure_utc
from crmkit.errors import CurrencyMismatch, Problem, ValidationError
from crmkit.models import Activity, ActivityKind, Money
from crmkit.models._fields import expect_items

__all__ = [
    "BgNbdFit",
    "ClvReport",
    "ClvRow",
    "Estimate",
    "GammaGammaFit",
    "HoldoutCheck",
    "RfmRow",
    "RfmSummary",
    "Transaction",
    "customer_lifetime_value",
    "fit_bg_nbd",
    "fit_gamma_gamma",
    "holdout_check",
    "rfm_summary",
    "transactions_from_activities",
]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_RATE_LOW: Final = Decimal("1e-12")
_RATE_HIGH: Final = Decimal("1e12")
_FEATURE: Final = "customer lifetime value (BG/NBD and Gamma-Gamma fits)"


def _modules() -> tuple[Any, Any, Any]:
    np = import_extra("numpy", extra="analytics", feature=_FEATURE)
    special = import_extra("scipy.special", extra="analytics", feature=_FEATURE)
    optimize = import_extra("scipy.optimize", extra="analytics", feature=_FEATURE)
    return np, special, optimize


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _numeric(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``function`` with numpy's floating point warnings off: every result it returns
    is checked to be finite instead (a :class:`~crmkit.errors.ValidationError` names
    what gave none), so that no warning turns into an error of the host's."""

    @functools.wraps(function)
    def quiet(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        np, _, _ = _modules()
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            return function(*args, **kwargs)

    return quiet


def customer_key(value: object) -> str:
    """A customer key as text: a UUID as its canonical form, text as it is; anything else
    is left for the check of :func:`check_customer_key` to refuse."""
    return str(value) if isinstance(value, UUID) else value  # type: ignore[return-value]


def check_customer_key(value: object) -> None:
    """Refuse a customer key that is not 1 to 200 characters of text."""
    if not isinstance(value, str) or not 0 < len(value) <= 200:
        raise ValidationError("customer", value, "expected a customer key (text or UUID)")


@attrs.frozen
class Transaction:
    """One purchase of a customer (any stable key: a contact id, an order system's id)."""

    customer: str = attrs.field(converter=customer_key)
    at: datetime
    amount: Money

    def __attrs_post_init__(self) -> None:
        check_customer_key(self.customer)
        object.__setattr__(self, "at", ensure_utc(self.at, "at"))
        if not isinstance(self.amount, Money):
            raise ValidationError("amount", self.amount, "expected Money")


def transactions_from_activities(activities: Iterable[Activity]) -> list[Transaction]:
    """The purchases among ``activities`` as transactions of their contacts.

    Activities of other kinds are skipped; a purchase without an amount is refused
    (field ``activities[i].amount``), because its value is unknown.
    """
    found: list[Transaction] = []
    for index, activity in enumerate(expect_items(activities, Activity, "activities", "Activitys")):
        if not isinstance(activity, Activity):
            raise ValidationError(f"activities[{index}]", activity, "expected an Activity")
        if activity.kind is not ActivityKind.PURCHASE:
            continue
        if activity.amount is None:
            raise ValidationError(
                f"activities[{index}].amount", None, "a purchase needs an amount for CLV"
            )
        found.append(Transaction(activity.contact_id, activity.occurred_at, activity.amount))
    return found


@attrs.frozen(kw_only=True)
class RfmRow:
    """One customer's purchase summary in periods of the summary's ``unit``.

    The ``holdout_*`` fields count the purchases after the calibration period (0 when the
    summary has no holdout period).
    """

    customer: str
    frequency: int
    recency: int
    T: int
    monetary_value: Decimal
    holdout_frequency: int = 0
    holdout_monetary_value: Decimal = Decimal(0)

    def __attrs_post_init__(self) -> None:
        problems: list[Problem] = []
        try:
            check_customer_key(self.customer)
        except ValidationError as error:
            problems.extend(error.problems)
        for name in ("frequency", "recency", "T", "holdout_frequency"):
            problems.extend(_count(getattr(self, name), name))
        for name in ("monetary_value", "holdout_monetary_value"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                problems.append(Problem(name, value, "expected a Decimal >= 0"))
        if not problems and not (
            self.recency <= self.T and (self.frequency == 0) == (self.recency == 0)
        ):
            problems.append(
                Problem(
                    "recency",
                    self.recency,
                    f"inconsistent with frequency {self.frequency} and T {self.T}",
                )
            )
        if problems:
            raise ValidationError.of(problems)


@attrs.frozen(kw_only=True)
class RfmSummary:
    """The RFM summary of every customer with a purchase in the calibration period.

    ``holdout_periods`` is the length of the holdout period in units (0 without one).
    Amounts are in ``currency`` (``None`` only for a summary without transactions).
    """

    currency: str | None
    unit: timedelta
    calibration_end: datetime
    observation_end: datetime
    holdout_periods: int
    rows: tuple[RfmRow, ...]

    def __attrs_post_init__(self) -> None:
        problems = []
        currency: object = self.currency
        if currency is not None and not isinstance(currency, str):
            problems.append(Problem("currency", currency, "expected a currency code"))
        if not isinstance(self.unit, timedelta) or self.unit <= timedelta(0):
            problems.append(Problem("unit", self.unit, "expected a positive timedelta"))
        for name in ("calibration_end", "observation_end"):
            try:
                ensure_utc(getattr(self, name), name)
            except ValidationError as error:
                problems.extend(error.problems)
        problems.extend(_count(self.holdout_periods, "holdout_periods"))
        rows: object = self.rows
        if not isinstance(rows, tuple):
            problems.append(Problem("rows", rows, "expected a tuple of RfmRow"))
        else:
            problems.extend(
                Problem(f"rows[{i}]", row, "expected an RfmRow")
                for i, row in enumerate(rows)
                if not isinstance(row, RfmRow)
            )
        if problems:
            raise ValidationError.of(problems)


_LARGEST: Final = 2**53  # counts beyond this lose precision as floats


def _count(value: object, field: str) -> list[Problem]:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _LARGEST:
        return [Problem(field, value, "expected a whole number >= 0")]
    return []


def _period(at: datetime, unit: timedelta) -> int:
    return (at - _EPOCH) // unit


def _rates(rates: Mapping[str, Decimal] | None) -> dict[str, Decimal]:
    if rates is None:
        return {}
    if not isinstance(rates, Mapping):
        raise ValidationError("rates", rates, "expected a mapping of currency to rate")
    checked: dict[str, Decimal] = {}
    for code, rate in rates.items():
        if not isinstance(code, str):
            raise ValidationError("rates", code, "expected currency codes as keys")
        if (
            not isinstance(rate, Decimal)
            or not rate.is_finite()
            or not _RATE_LOW <= rate <= _RATE_HIGH
        ):
            raise ValidationError(
                f"rates[{code!r}]", rate, "expected a positive Decimal from 1e-12 to 1e12"
            )
        checked[str(code)] = rate
    return checked


def rfm_summary(
    transactions: Iterable[Transaction],
    *,
    observation_end: datetime,
    calibration_end: datetime | None = None,
    unit: timedelta = timedelta(days=1),
    currency: str | None = None,
    rates: Mapping[str, Decimal] | None = None,
) -> RfmSummary:
    """The RFM summary of ``transactions`` up to ``observation_end`` (inclusive).

    With ``calibration_end`` the purchases after it (up to ``observation_end``) form the
    holdout period, and customers whose first purchase lies after it are left out.
    Amounts must be in ``currency`` (default: that of the first transaction); another
    currency is converted with ``rates`` (units of ``currency`` per unit of the other,
    ``{"EUR": Decimal("1.08")}`` for a USD summary) or refused with
    :class:`~crmkit.errors.CurrencyMismatch`: EUR is never added to USD. A negative amount
    (a refund) is refused; net refunds against their purchase first. A zero amount counts
    as a purchase of no value.
    """
    end = ensure_utc(observation_end, "observation_end")
    cal_end = end if calibration_end is None else ensure_utc(calibration_end, "calibration_end")
    if cal_end > end:
        raise ValidationError(
            "calibration_end", calibration_end, "expected at or before observation_end"
        )
    if not isinstance(unit, timedelta) or unit <= timedelta(0):
        raise ValidationError("unit", unit, "expected a positive timedelta")
    table = _rates(rates)
    # customer -> period -> summed amount
    spend: dict[str, dict[int, Decimal]] = {}
    for index, item in enumerate(
        expect_items(transactions, Transaction, "transactions", "Transactions")
    ):
        if not isinstance(item, Transaction):
            raise ValidationError(f"transactions[{index}]", item, "expected a Transaction")
        if item.at > end:
            continue
        if currency is None:
            currency = item.amount.currency
        amount = _in_currency(item.amount, currency, table, index)
        if amount < 0:
            raise ValidationError(
                f"transactions[{index}].amount",
                item.amount,
                "a purchase cannot be negative; net refunds against their purchase",
            )
        periods = spend.setdefault(item.customer, {})
        key = _period(item.at, unit)
        periods[key] = periods.get(key, Decimal(0)) + amount
    cal_period, end_period = _period(cal_end, unit), _period(end, unit)
    rows = []
    for customer in sorted(spend):
        row = _row(customer, spend[customer], cal_period)
        if row is not None:
            rows.append(row)
    return RfmSummary(
        currency=currency,
        unit=unit,
        calibration_end=cal_end,
        observation_end=end,
        holdout_periods=end_period - cal_period,
        rows=tuple(rows),
    )


def _in_currency(amount: Money, currency: str, rates: Mapping[str, Decimal], index: int) -> Decimal:
    if amount.currency == currency:
        return amount.amount
    rate = rates.get(amount.currency)
    if rate is None:
        raise CurrencyMismatch(
            f"transactions[{index}].amount.currency",
            amount.currency,
            f"the summary is in {currency}; pass rates to convert {amount.currency}",
        )
    return amount.amount * rate


def _mean(values: Sequence[Decimal]) -> Decimal:
    if not values:
        return Decimal(0)
    try:
        return sum(values, Decimal(0)) / len(values)
    except InvalidOperation:  # pragma: no cover - sums of bounded money amounts
        raise ValidationError("monetary_value", values, "out of range") from None


def _row(customer: str, periods: Mapping[int, Decimal], cal_period: int) -> RfmRow | None:
    calibration = sorted(p for p in periods if p <= cal_period)
    if not calibration:
        return None
    holdout = [periods[p] for p in sorted(periods) if p > cal_period]
    first, last = calibration[0], calibration[-1]
    return RfmRow(
        customer=customer,
        frequency=len(calibration) - 1,
        recency=last - first,
        T=cal_period - first,
        monetary_value=_mean([periods[p] for p in calibration[1:]]),
        holdout_frequency=len(holdout),
        holdout_monetary_value=_mean(holdout),
    )


# ---------------------------------------------------------------------------- fits


@attrs.frozen
class Estimate:
    """A fitted parameter and its standard error (``None`` where the observed
    information is not positive definite, so no error can be given)."""

    value: float
    standard_error: float | None

    def __attrs_post_init__(self) -> None:
        if not _is_number(self.value):
            raise ValidationError("value", self.value, "expected a finite number")
        error = self.standard_error
        if error is not None and (not _is_number(error) or error < 0):
            raise ValidationError("standard_error", error, "expected a finite number >= 0")


def _is_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float
        return False


def _fit_problems(fit: "BgNbdFit | GammaGammaFit", names: Sequence[str]) -> list[Problem]:
    problems = []
    for name in names:
        value = getattr(fit, name)
        if not isinstance(value, Estimate) or not value.value > 0:
            problems.append(Problem(name, value, "expected an Estimate with a positive value"))
    if not _is_number(fit.log_likelihood):
        problems.append(Problem("log_likelihood", fit.log_likelihood, "expected a finite number"))
    problems.extend(_count(fit.customers, "customers"))
    converged: object = fit.converged
    if not isinstance(converged, bool):
        problems.append(Problem("converged", converged, "expected a bool"))
    return problems


@attrs.frozen(kw_only=True)
class BgNbdFit:
    """BG/NBD parameters fitted by maximum likelihood (time in the summary's ``unit``).

    Purchases of an alive customer follow a Poisson process whose rate is Gamma(r, alpha)
    over customers; after each purchase a customer drops out with a probability that is
    Beta(a, b) over customers.
    """

    r: Estimate
    alpha: Estimate
    a: Estimate
    b: Estimate
    log_likelihood: float
    customers: int
    unit: timedelta
    converged: bool

    def __attrs_post_init__(self) -> None:
        problems = _fit_problems(self, ("r", "alpha", "a", "b"))
        if not isinstance(self.unit, timedelta) or self.unit <= timedelta(0):
            problems.append(Problem("unit", self.unit, "expected a positive timedelta"))
        if problems:
            raise ValidationError.of(problems)

    def _params(self, np: Any) -> Any:
        return np.array([self.r.value, self.alpha.value, self.a.value, self.b.value])

    @_numeric
    def p_alive(self, frequency: int, recency: int, T: int) -> float:  # noqa: N803
        """The probability that a customer with this history is still alive at ``T``."""
        np, _, _ = _modules()
        x, t_x, t = _history(np, [frequency], [recency], [T])
        return float(_m.p_alive(np, self._params(np), x, t_x, t)[0])

    @_numeric
    def expected_purchases(
        self,
        frequency: int,
        recency: int,
        T: int,  # noqa: N803
        horizon: float,
    ) -> float:
        """The expected number of purchases of such a customer in the next ``horizon``
        units."""
        np, special, _ = _modules()
        x, t_x, t = _history(np, [frequency], [recency], [T])
        value = _m.conditional_expected_purchases(
            special, np, self._params(np), _horizon(np, horizon), (x, t_x, t)
        )
        return _finite(np, value, "horizon", horizon)[0]


@attrs.frozen(kw_only=True)
class GammaGammaFit:
    """Gamma-Gamma parameters of spend per purchase fitted by maximum likelihood on the
    customers with repeat purchases of positive value, in ``currency``."""

    p: Estimate
    q: Estimate
    v: Estimate
    log_likelihood: float
    customers: int
    currency: str
    converged: bool

    def __attrs_post_init__(self) -> None:
        problems = _fit_problems(self, ("p", "q", "v"))
        currency: object = self.currency
        if not isinstance(currency, str):
            problems.append(Problem("currency", currency, "expected a currency code"))
        if problems:
            raise ValidationError.of(problems)

    @_numeric
    def expected_spend(self, frequency: int, monetary_value: Decimal) -> Decimal:
        """The expected value of a future purchase of such a customer (the population
        mean for a customer without repeat purchases); needs ``q > 1``."""
        _require_q(self)
        np, _, _ = _modules()
        if not isinstance(monetary_value, Decimal) or not monetary_value.is_finite():
            raise ValidationError("monetary_value", monetary_value, "expected a finite Decimal")
        problems = _count(frequency, "frequency")
        if problems:
            raise ValidationError.of(problems)
        params = (self.p.value, self.q.value, self.v.value)
        value = _m.expected_average_spend(params, np.float64(frequency), float(monetary_value))
        return _decimal(_finite(np, np.atleast_1d(value), "monetary_value", monetary_value)[0])


def _history(np: Any, x: Sequence[int], t_x: Sequence[int], t: Sequence[int]) -> Any:
    problems = []
    for index, (f, r, age) in enumerate(zip(x, t_x, t, strict=True)):
        for name, value in (("frequency", f), ("recency", r), ("T", age)):
            problems.extend(_count(value, name))
        if not problems and not (r <= age and (f > 0 or r == 0) and (f == 0 or r > 0)):
            problems.append(Problem("recency", r, f"inconsistent with frequency {f} and T {age}"))
        if problems:
            raise ValidationError.of(problems).within(f"rows[{index}]" if len(x) > 1 else "")
    return (
        np.asarray(x, dtype=np.float64),
        np.asarray(t_x, dtype=np.float64),
        np.asarray(t, dtype=np.float64),
    )


def _horizon(np: Any, horizon: float) -> Any:
    if isinstance(horizon, bool) or not isinstance(horizon, int | float) or not horizon >= 0:
        raise ValidationError("horizon", horizon, "expected a number of units >= 0")
    if horizon == float("inf"):
        raise ValidationError("horizon", horizon, "expected a finite number of units")
    return np.float64(horizon)


def _finite(np: Any, values: Any, field: str, given: object) -> list[float]:
    if not np.all(np.isfinite(values)):
        raise ValidationError(field, given, "the fitted model gives no finite prediction here")
    return [float(v) for v in values]


def _decimal(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(Decimal("1e-6"))


def _require_q(fit: GammaGammaFit) -> None:
    if fit.q.value <= 1:
        raise ValidationError(
            "q", fit.q.value, "the expected spend is infinite for q <= 1 (too few customers?)"
        )


def _arrays(np: Any, summary: RfmSummary) -> tuple[Any, Any, Any]:
    if not isinstance(summary, RfmSummary):
        raise ValidationError("summary", summary, "expected an RfmSummary")
    rows = summary.rows
    x = np.fromiter((r.frequency for r in rows), np.float64, len(rows))
    t_x = np.fromiter((r.recency for r in rows), np.float64, len(rows))
    t = np.fromiter((r.T for r in rows), np.float64, len(rows))
    return x, t_x, t


@_numeric
def fit_bg_nbd(summary: RfmSummary) -> BgNbdFit:
    """Fit BG/NBD by maximum likelihood on the calibration period of ``summary``.

    Needs at least one customer with a repeat purchase and one with a history of more
    than one unit; :class:`~crmkit.errors.ValidationError` (field ``summary``) otherwise.
    """
    np, special, optimize = _modules()
    x, t_x, t = _arrays(np, summary)
    if not np.any(x > 0) or not np.any(t > 0):
        raise ValidationError(
            "summary",
            f"{len(summary.rows)} customers",
            "BG/NBD needs customers with repeat purchases and some history",
        )
    # customers with the same history share one likelihood term
    keys, weights = np.unique(np.stack([x, t_x, t]), axis=1, return_counts=True)
    ux, ut_x, ut = keys
    data = (ux, ut_x, ut, weights.astype(np.float64))
    fitted = _m.fit(
        np,
        optimize,
        lambda p: _m.bg_nbd_log_likelihood(special, np, p, data),
        lambda p: _m.bg_nbd_gradient(special, np, p, data),
        [1.0, max(float(np.mean(t)), 1.0), 1.0, 1.0],
    )
    r, alpha, a, b = (
        Estimate(v, e) for v, e in zip(fitted.params, fitted.standard_errors, strict=True)
    )
    return BgNbdFit(
        r=r,
        alpha=alpha,
        a=a,
        b=b,
        log_likelihood=fitted.log_likelihood,
        customers=len(summary.rows),
        unit=summary.unit,
        converged=fitted.converged,
    )


@_numeric
def fit_gamma_gamma(summary: RfmSummary) -> GammaGammaFit:
    """Fit Gamma-Gamma by maximum likelihood on the customers with repeat purchases of
    positive average value (customers with one purchase carry no spend information).

    Needs at least two such customers; :class:`~crmkit.errors.ValidationError` (field
    ``summary``) otherwise.
    """
    np, special, optimize = _modules()
    if not isinstance(summary, RfmSummary):
        raise ValidationError("summary", summary, "expected an RfmSummary")
    used = [r for r in summary.rows if r.frequency > 0 and r.monetary_value > 0]
    if len(used) < 2 or summary.currency is None:
        raise ValidationError(
            "summary",
            f"{len(used)} customers with repeat purchases",
            "Gamma-Gamma needs at least two customers with repeat purchases of some value",
        )
    x = np.fromiter((r.frequency for r in used), np.float64, len(used))
    m = np.fromiter((float(r.monetary_value) for r in used), np.float64, len(used))
    data = (x, m, np.ones_like(x))
    scale = float(np.mean(m))
    fitted = _m.fit(
        np,
        optimize,
        lambda p: _m.gamma_gamma_log_likelihood(special, np, p, data),
        lambda p: _m.gamma_gamma_gradient(special, np, p, data),
        [1.0, 2.0, scale],
    )
    p, q, v = (
        Estimate(val, e) for val, e in zip(fitted.params, fitted.standard_errors, strict=True)
    )
    return GammaGammaFit(
        p=p,
        q=q,
        v=v,
        log_likelihood=fitted.log_likelihood,
        customers=len(used),
        currency=summary.currency,
        converged=fitted.converged,
    )


# ---------------------------------------------------------------------------- predictions


@attrs.frozen(kw_only=True)
class HoldoutCheck:
    """How well a BG/NBD fit predicted the holdout period of its summary.

    ``predicted`` and ``actual`` are the total purchases of the holdout period; the mean
    absolute and root mean squared errors are per customer.
    """

    customers: int
    holdout_periods: int
    predicted: float
    actual: int
    mean_absolute_error: float
    root_mean_squared_error: float


@_numeric
def holdout_check(summary: RfmSummary, fit: BgNbdFit) -> HoldoutCheck:
    """Compare the purchases ``fit`` expects in the holdout period of ``summary`` with the
    purchases made. Needs a summary with a holdout period and customers."""
    np, special, _ = _modules()
    if not isinstance(fit, BgNbdFit):
        raise ValidationError("fit", fit, "expected a BgNbdFit")
    x, t_x, t = _arrays(np, summary)
    if summary.holdout_periods <= 0 or not summary.rows:
        raise ValidationError(
            "summary", summary.holdout_periods, "needs a holdout period and customers"
        )
    predicted = _m.conditional_expected_purchases(
        special, np, fit._params(np), np.float64(summary.holdout_periods), (x, t_x, t)
    )
    _finite(np, predicted, "fit", fit)
    actual = np.fromiter((r.holdout_frequency for r in summary.rows), np.float64, len(x))
    error = predicted - actual
    return HoldoutCheck(
        customers=len(x),
        holdout_periods=summary.holdout_periods,
        predicted=float(np.sum(predicted)),
        actual=int(np.sum(actual)),
        mean_absolute_error=float(np.mean(np.abs(error))),
        root_mean_squared_error=float(np.sqrt(np.mean(error**2))),
    )


@attrs.frozen(kw_only=True)
class ClvRow:
    """One customer's value: P(alive) now, the purchases expected over the horizon, the
    expected value of a purchase and the discounted margin over the horizon (``clv``)."""

    customer: str
    p_alive: float
    expected_purchases: float
    expected_spend: Money
    clv: Money


@attrs.frozen(kw_only=True)
class ClvReport:
    """Customer lifetime value over ``steps`` steps of ``step`` each, discounted by
    ``discount_rate`` per step, at ``margin`` of revenue; rows by descending CLV."""

    steps: int
    step: timedelta
    discount_rate: Decimal
    margin: Decimal
    currency: str
    rows: tuple[ClvRow, ...]

    @property
    def total(self) -> Money:
        """The summed CLV of every customer."""
        return sum((r.clv for r in self.rows), Money.zero(self.currency))


def _fraction(value: object, field: str, *, upper: Decimal | None) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise ValidationError(field, value, "expected a Decimal >= 0")
    if upper is not None and value > upper:
        raise ValidationError(field, value, f"expected a Decimal <= {upper}")
    return value


@_numeric
def customer_lifetime_value(
    summary: RfmSummary,
    purchases: BgNbdFit,
    spend: GammaGammaFit,
    *,
    steps: int = 12,
    step: timedelta = timedelta(days=30),
    discount_rate: Decimal = Decimal("0.01"),
    margin: Decimal = Decimal(1),
) -> ClvReport:
    """The lifetime value of every customer of ``summary`` over ``steps`` steps.

    Each step's expected purchases (from ``purchases``) times the expected spend (from
    ``spend``) times ``margin`` is discounted by ``(1 + discount_rate) ** i`` for step
    ``i`` (1, 2, ...), as `lifetimes` computes it; a month is 30 days by default.
    """
    np, special, _ = _modules()
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 10_000:
        raise ValidationError("steps", steps, "expected a whole number from 1 to 10000")
    if not isinstance(step, timedelta) or step <= timedelta(0):
        raise ValidationError("step", step, "expected a positive timedelta")
    rate = _fraction(discount_rate, "discount_rate", upper=None)
    share = _fraction(margin, "margin", upper=Decimal(1))
    if not isinstance(purchases, BgNbdFit):
        raise ValidationError("purchases", purchases, "expected a BgNbdFit")
    if not isinstance(spend, GammaGammaFit):
        raise ValidationError("spend", spend, "expected a GammaGammaFit")
    x, t_x, t = _arrays(np, summary)
    if spend.currency != summary.currency:
        raise CurrencyMismatch(
            "spend.currency", spend.currency, f"the summary is in {summary.currency}"
        )
    _require_q(spend)
    currency = summary.currency or spend.currency
    params = purchases._params(np)
    scale = step / summary.unit
    monetary = np.fromiter((float(r.monetary_value) for r in summary.rows), np.float64, len(x))
    average = _m.expected_average_spend((spend.p.value, spend.q.value, spend.v.value), x, monetary)
    value = np.zeros_like(x)
    before = np.zeros_like(x)
    for i in range(1, steps + 1):
        upto = _m.conditional_expected_purchases(special, np, params, i * scale, (x, t_x, t))
        value += (upto - before) / (1 + float(rate)) ** i
        before = upto
    value *= average * float(share)
    _finite(np, value, "purchases", purchases)
    alive = _m.p_alive(np, params, x, t_x, t)
    rows = [
        ClvRow(
            customer=row.customer,
            p_alive=float(alive[i]),
            expected_purchases=float(before[i]),
            expected_spend=Money(_decimal(float(average[i])), currency).rounded(),
            clv=Money(_decimal(float(value[i])), currency).rounded(),
        )
        for i, row in enumerate(summary.rows)
    ]
    rows.sort(key=lambda r: (-r.clv.amount, r.customer))
    return ClvReport(
        steps=steps,
        step=step,
        discount_rate=rate,
        margin=share,
        currency=currency,
        rows=tuple(rows),
    )
