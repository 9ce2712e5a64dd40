"""The BG/NBD and Gamma-Gamma likelihoods and predictions, vectorised with numpy and scipy.

Private to :mod:`crmkit.analytics._clv`, which imports numpy and scipy lazily (extra
``analytics``) and passes the modules in; nothing here is imported without them. The
formulas are those of the papers:

* Fader, Hardie and Lee (2005), "Counting your customers the easy way: an alternative to
  the Pareto/NBD model", Marketing Science 24(2): the BG/NBD log-likelihood (eq. 6), the
  conditional expectation (eq. 10) and P(alive) (eq. 11 of the technical note).
* Fader, Hardie and Berger (2004), "The Gamma-Gamma model of monetary value": the
  likelihood of a customer's average spend and its conditional expectation.

Parameters are fitted on their logarithms (so they stay positive) with L-BFGS-B and the
analytic gradient; standard errors come from the inverse Hessian of the negative
log-likelihood (a central difference of the analytic gradient), by the delta method.
"""

from collections.abc import Callable
from typing import Any, Final

__all__ = [
    "Fitted",
    "Histories",
    "Spends",
    "bg_nbd_gradient",
    "bg_nbd_log_likelihood",
    "conditional_expected_purchases",
    "expected_average_spend",
    "fit",
    "gamma_gamma_gradient",
    "gamma_gamma_log_likelihood",
    "p_alive",
]

Array = Any  # a numpy array; numpy is an optional extra, imported at run time
Histories = tuple[Array, Array, Array, Array]  # frequency, recency, age, weight
Spends = tuple[Array, Array, Array]  # repeat purchases, their mean value, weight
_STEP: Final = 1e-5
_FLAT: Final = 1e-6


def bg_nbd_log_likelihood(sp: Any, np: Any, params: Array, data: Histories) -> float:
    """The BG/NBD log-likelihood of customers (frequency ``x``, recency ``t_x``, age ``t``),
    each counted ``weights`` times; ``params`` are ``r, alpha, a, b``."""
    r, alpha, a, b = params
    x, t_x, t, weights = data
    a1 = sp.gammaln(r + x) - sp.gammaln(r) + r * np.log(alpha)
    a2 = sp.gammaln(a + b) + sp.gammaln(b + x) - sp.gammaln(b) - sp.gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + t)
    repeat = x > 0
    a4 = np.where(
        repeat,
        np.log(a) - np.log(np.where(repeat, b + x - 1, 1.0)) - (r + x) * np.log(alpha + t_x),
        -np.inf,
    )
    return float(np.sum(weights * (a1 + a2 + np.logaddexp(a3, a4))))


def bg_nbd_gradient(sp: Any, np: Any, params: Array, data: Histories) -> Array:
    """The gradient of :func:`bg_nbd_log_likelihood` with respect to ``r, alpha, a, b``."""
    r, alpha, a, b = params
    x, t_x, t, weights = data
    repeat = x > 0
    b_x1 = np.where(repeat, b + x - 1, 1.0)
    a3 = -(r + x) * np.log(alpha + t)
    a4 = np.where(repeat, np.log(a) - np.log(b_x1) - (r + x) * np.log(alpha + t_x), -np.inf)
    total = np.logaddexp(a3, a4)
    w3 = np.exp(a3 - total)
    w4 = np.exp(a4 - total)  # 0 where x == 0
    d_r = (
        sp.digamma(r + x)
        - sp.digamma(r)
        + np.log(alpha)
        - w3 * np.log(alpha + t)
        - w4 * np.log(alpha + t_x)
    )
    d_alpha = r / alpha - w3 * (r + x) / (alpha + t) - w4 * (r + x) / (alpha + t_x)
    d_a = sp.digamma(a + b) - sp.digamma(a + b + x) + w4 / a
    d_b = (
        sp.digamma(a + b)
        + sp.digamma(b + x)
        - sp.digamma(b)
        - sp.digamma(a + b + x)
        - np.where(repeat, w4 / b_x1, 0.0)
    )
    return np.array([np.sum(weights * d) for d in (d_r, d_alpha, d_a, d_b)])


def gamma_gamma_log_likelihood(sp: Any, np: Any, params: Array, data: Spends) -> float:
    """The Gamma-Gamma log-likelihood of customers with ``x`` repeat purchases of average
    value ``m`` (both positive), each counted ``weights`` times; ``params`` are ``p, q, v``."""
    p, q, v = params
    x, m, weights = data
    px = p * x
    value = (
        sp.gammaln(px + q)
        - sp.gammaln(px)
        - sp.gammaln(q)
        + q * np.log(v)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(x * m + v)
    )
    return float(np.sum(weights * value))


def gamma_gamma_gradient(sp: Any, np: Any, params: Array, data: Spends) -> Array:
    """The gradient of :func:`gamma_gamma_log_likelihood` with respect to ``p, q, v``."""
    p, q, v = params
    x, m, weights = data
    px = p * x
    shared = sp.digamma(px + q)
    d_p = x * (shared - sp.digamma(px) + np.log(m) + np.log(x) - np.log(x * m + v))
    d_q = shared - sp.digamma(q) + np.log(v) - np.log(x * m + v)
    d_v = q / v - (px + q) / (x * m + v)
    return np.array([np.sum(weights * d) for d in (d_p, d_q, d_v)])


class Fitted:
    """The maximum of a log-likelihood: the parameters, their standard errors (``None``
    where the Hessian is not positive definite), the log-likelihood and convergence."""

    __slots__ = ("converged", "log_likelihood", "params", "standard_errors")

    def __init__(
        self,
        params: list[float],
        standard_errors: list[float | None],
        log_likelihood: float,
        converged: bool,
    ) -> None:
        self.params = params
        self.standard_errors = standard_errors
        self.log_likelihood = log_likelihood
        self.converged = converged


def fit(
    np: Any,
    optimize: Any,
    log_likelihood: Callable[[Array], float],
    gradient: Callable[[Array], Array],
    start: list[float],
) -> Fitted:
    """Maximise ``log_likelihood`` over positive parameters, from ``start``."""

    def objective(theta: Array) -> tuple[float, Array]:
        params = np.exp(theta)
        value = log_likelihood(params)
        if not np.isfinite(value):
            return 1e300, np.zeros_like(theta)
        return -value, -gradient(params) * params

    result = optimize.minimize(
        objective,
        np.log(np.asarray(start, dtype=np.float64)),
        jac=True,
        method="L-BFGS-B",
        bounds=[(-30.0, 30.0)] * len(start),
        options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-9},
    )
    params = np.exp(result.x)
    value = log_likelihood(params)
    # L-BFGS-B may stop on a line search at the limit of float precision; the maximum is
    # reached when the gradient (on log-parameters) vanishes relative to the likelihood
    slope = gradient(params) * params
    flat = bool(np.all(np.isfinite(slope))) and float(np.max(np.abs(slope))) <= _FLAT * max(
        1.0, abs(value)
    )
    return Fitted(
        [float(p) for p in params],
        _standard_errors(np, gradient, params),
        float(value),
        bool(np.isfinite(value)) and (bool(result.success) or flat),
    )


def _standard_errors(
    np: Any, gradient: Callable[[Array], Array], params: Array
) -> list[float | None]:
    """Standard errors from the observed information (the Hessian of the negative
    log-likelihood on log-parameters, by central differences of the gradient), mapped to
    the parameters by the delta method (se(p) = p * se(log p))."""
    size = len(params)
    theta = np.log(params)
    hessian = np.empty((size, size))
    for i in range(size):
        step = np.zeros(size)
        step[i] = _STEP
        up, down = np.exp(theta + step), np.exp(theta - step)
        hessian[:, i] = -(gradient(up) * up - gradient(down) * down) / (2 * _STEP)
    hessian = (hessian + hessian.T) / 2
    if not np.all(np.isfinite(hessian)):
        return [None] * size
    try:
        np.linalg.cholesky(hessian)
    except np.linalg.LinAlgError:
        return [None] * size
    variances = np.diag(np.linalg.inv(hessian))
    return [
        float(p * np.sqrt(v)) if v > 0 and np.isfinite(v) else None
        for p, v in zip(params, variances, strict=True)
    ]


def p_alive(np: Any, params: Array, x: Array, t_x: Array, t: Array) -> Array:
    """P(alive) of customers at their age ``t`` (eq. 11 of the BG/NBD note)."""
    r, alpha, a, b = params
    repeat = x > 0
    odds = np.where(
        repeat,
        a
        / np.where(repeat, b + x - 1, 1.0)
        * np.exp((r + x) * np.log((alpha + t) / (alpha + t_x))),
        0.0,
    )
    return 1.0 / (1.0 + odds)


def conditional_expected_purchases(
    sp: Any, np: Any, params: Array, horizon: Array, history: tuple[Array, Array, Array]
) -> Array:
    """Expected purchases in the next ``horizon`` time units of customers with
    ``history`` (frequency, recency, age) (eq. 10)."""
    r, alpha, a, b = params
    x, t_x, t = history
    big_a, big_b, big_c = r + x, b + x, a + b + x - 1
    z = horizon / (alpha + t + horizon)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        hyp = sp.hyp2f1(big_a, big_b, big_c, z)
        # Euler's transformation where the series overflows: 2F1(a,b;c;z) =
        # (1-z)^(c-a-b) 2F1(c-a, c-b; c; z)
        log_hyp = np.where(
            np.isfinite(hyp) & (hyp > 0),
            np.log(np.where(np.isfinite(hyp) & (hyp > 0), hyp, 1.0)),
            np.log(sp.hyp2f1(big_c - big_a, big_c - big_b, big_c, z))
            + (big_c - big_a - big_b) * np.log1p(-z),
        )
        first = (a + b + x - 1) / (a - 1)
        second = 1 - np.exp(log_hyp + (r + x) * np.log((alpha + t) / (alpha + t + horizon)))
    return first * second * p_alive(np, params, x, t_x, t)


def expected_average_spend(params: Array, x: Array, m: Array) -> Array:
    """The Gamma-Gamma expected average spend of customers with ``x`` repeat purchases of
    average value ``m`` (the population mean ``p v / (q - 1)`` where ``x`` is 0)."""
    p, q, v = params
    return (p * (v + x * m)) / (p * x + q - 1)
