"""Logistic regression with L2 regularisation, in pure Python or with numpy.

The model encodes records itself: numbers and true/false are standardised (mean 0,
standard deviation 1 on the training data; a missing number counts as the mean), text
is one-hot encoded (one weight per value seen in training; a missing or unseen value
contributes nothing). It is fitted by Newton's method (iteratively reweighted least
squares) on ``sum of log losses + l2 / 2 * |w|^2`` (the intercept is not penalised;
``l2 = 1`` is scikit-learn's ``C = 1``). The objective is strictly convex, so the
pure-Python and the numpy fit find the same weights.

Pure Python costs ``O(n * d^2)`` per Newton step for ``n`` examples of ``d`` encoded
features: fine for thousands of examples and tens of features. With the extra ``fast``
(numpy) installed, ``backend="auto"`` fits with numpy.
"""

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

from crmkit._extras import import_extra
from crmkit.errors import Problem, ValidationError
from crmkit.models._fields import finite
from crmkit.models._shape import shape_problems, to_tuple
from crmkit.scoring._data import (
    TEXT,
    Example,
    FeatureValue,
    Record,
    check_record,
    checked_examples,
    field_kinds,
)
from crmkit.scoring._explain import Explanation, FeatureContribution, explanation, sigmoid

if TYPE_CHECKING:
    import numpy
    import numpy.typing

__all__ = ["CategoryWeights", "LogisticScorer", "NumericWeight"]

Backend = Literal["auto", "python", "numpy"]
Rows = Sequence[Sequence[tuple[int, float]]]
_FEATURE: Final = "logistic regression with numpy"


@attrs.frozen
class NumericWeight:
    """A number or true/false feature: ``weight * (x - mean) / scale``."""

    name: str
    mean: float
    scale: float
    weight: float


@attrs.frozen
class CategoryWeights:
    """A text feature, one-hot: the weight of each value seen in training."""

    name: str
    levels: tuple[str, ...]
    weights: tuple[float, ...]


class _Levels(dict[object, float]):
    """Weights of the values of a text feature: 0 for a missing or unseen value, NaN (a
    signal to check the record) for a value that is not text."""

    def __missing__(self, key: object) -> float:
        return 0.0 if key is None or isinstance(key, str) else math.nan


def _numpy() -> Any:
    return import_extra("numpy", extra="fast", feature=_FEATURE)


def _have_numpy() -> bool:
    try:
        _numpy()
    except ImportError:
        return False
    return True


def _check_l2(l2: object) -> float:
    if isinstance(l2, bool) or not isinstance(l2, int | float) or not finite(l2):
        raise ValidationError("l2", l2, "expected a positive finite number")
    if l2 <= 0:
        raise ValidationError("l2", l2, "expected a positive finite number")
    return float(l2)


@attrs.frozen
class LogisticScorer:
    """A fitted logistic regression over plain records; see the module doc.

    Build it with :meth:`fit`. :meth:`log_odds` and :meth:`predict` score one record,
    :meth:`predict_many` many, :meth:`log_odds_columns` columns with numpy, and
    :meth:`explain` takes a score apart into per-feature log-odds.
    """

    intercept: float
    numeric: tuple[NumericWeight, ...] = attrs.field(default=(), converter=to_tuple)
    categorical: tuple[CategoryWeights, ...] = attrs.field(default=(), converter=to_tuple)
    l2: float = 1.0
    _function: Callable[[Record], float] = attrs.field(init=False, eq=False, repr=False, hash=False)

    def __attrs_post_init__(self) -> None:
        problems = shape_problems(self)
        if problems:  # the checks below need the types right
            raise ValidationError.of(problems)
        numbers = [("intercept", self.intercept), ("l2", self.l2)]
        for i, n in enumerate(self.numeric):
            numbers += [(f"numeric[{i}].{a}", getattr(n, a)) for a in ("mean", "scale", "weight")]
        for i, c in enumerate(self.categorical):
            if len(c.levels) != len(c.weights):
                problems.append(Problem(f"categorical[{i}].weights", c.weights, "one per level"))
            numbers += [(f"categorical[{i}].weights", w) for w in c.weights]
        for name, value in numbers:
            if not isinstance(value, float | int) or not finite(value):
                problems.append(Problem(name, value, "expected a finite number"))
        for i, n in enumerate(self.numeric):
            if isinstance(n.scale, float | int) and n.scale <= 0:
                problems.append(Problem(f"numeric[{i}].scale", n.scale, "expected > 0"))
        names = [n.name for n in self.numeric] + [c.name for c in self.categorical]
        if len(set(names)) != len(names):
            problems.append(Problem("numeric", names, "a feature appears twice"))
        if problems:
            raise ValidationError.of(problems)
        object.__setattr__(self, "_function", self._compile())

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(
        cls,
        examples: Iterable[Example],
        *,
        l2: float = 1.0,
        backend: Backend = "auto",
        max_iterations: int = 100,
    ) -> "LogisticScorer":
        """Fit on ``examples``; ``backend`` ``"numpy"`` needs the extra ``fast``."""
        penalty = _check_l2(l2)
        if backend not in ("auto", "python", "numpy"):
            raise ValidationError("backend", backend, "expected auto, python or numpy")
        if isinstance(max_iterations, bool) or not isinstance(max_iterations, int):
            raise ValidationError("max_iterations", max_iterations, "expected an int >= 1")
        if max_iterations < 1:
            raise ValidationError("max_iterations", max_iterations, "expected an int >= 1")
        found = checked_examples(examples)
        records = [e.record for e in found]
        kinds = field_kinds(records)
        numeric = sorted(n for n, k in kinds.items() if k != TEXT)
        text = sorted(n for n, k in kinds.items() if k == TEXT)
        stats = [_mean_scale(records, name) for name in numeric]
        levels = [sorted({str(r[n]) for r in records if r.get(n) is not None}) for n in text]
        rows = _design(records, numeric, stats, text, levels)
        labels = [1.0 if e.won else 0.0 for e in found]
        use_numpy = backend == "numpy" or (backend == "auto" and _have_numpy())
        solve = _newton_numpy if use_numpy else _newton_python
        width = 1 + len(numeric) + sum(len(x) for x in levels)
        weights = solve(rows, labels, width, penalty, max_iterations)
        position = 1 + len(numeric)
        groups = []
        for name, values in zip(text, levels, strict=True):
            groups.append(
                CategoryWeights(
                    name, tuple(values), tuple(weights[position : position + len(values)])
                )
            )
            position += len(values)
        return cls(
            intercept=weights[0],
            numeric=tuple(
                NumericWeight(name, mean, scale, weights[1 + i])
                for i, (name, (mean, scale)) in enumerate(zip(numeric, stats, strict=True))
            ),
            categorical=tuple(groups),
            l2=penalty,
        )

    # ------------------------------------------------------------------ scoring

    def _compile(self) -> Callable[[Record], float]:
        """``record -> log-odds`` with the standardisation folded into the weights."""
        constants: dict[str, object] = {}
        offset = self.intercept
        terms = []
        for i, n in enumerate(self.numeric):
            slope = n.weight / n.scale
            missing = slope * n.mean  # a missing value counts as the mean: no effect
            offset -= missing
            constants[f"w{i}"], constants[f"m{i}"] = slope, missing
            terms.append(f"(w{i} * x if (x := g({n.name!r})) is not None else m{i})")
        for i, c in enumerate(self.categorical):
            constants[f"t{i}"] = _Levels(zip(c.levels, c.weights, strict=True))
            terms.append(f"t{i}[g({c.name!r})]")
        constants["b"] = offset
        body = " + ".join(["b", *terms])
        source = f"def log_odds(r):\n    g = r.get\n    return {body}\n"
        exec(compile(source, "<crmkit logistic>", "exec"), constants)
        function: Callable[[Record], float] = constants["log_odds"]  # type: ignore[assignment]
        return function

    def _checked(self, record: object, where: str = "record") -> None:
        problems = check_record(record, where)
        if not problems:
            assert isinstance(record, Mapping)
            for n in self.numeric:
                value = record.get(n.name)
                if value is not None and not isinstance(value, int | float):
                    problems.append(Problem(f"{where}.{n.name}", value, "expected a number"))
            for c in self.categorical:
                value = record.get(c.name)
                if value is not None and not isinstance(value, str):
                    problems.append(Problem(f"{where}.{c.name}", value, "expected text"))
        if problems:
            raise ValidationError.of(problems)

    def log_odds(self, record: Record) -> float:
        """The log-odds of winning for ``record`` (features it lacks count as missing)."""
        try:
            value = self._function(record)
        except (TypeError, AttributeError):
            value = math.nan
        if not math.isfinite(value):
            self._checked(record)
            raise ValidationError("record", record, "cannot be scored")  # pragma: no cover
        return value

    def predict(self, record: Record) -> float:
        """The probability of winning for ``record``."""
        return sigmoid(self.log_odds(record))

    def log_odds_many(self, records: Iterable[Record]) -> list[float]:
        """The log-odds of many records, in order (the pure-Python fast path)."""
        items = records if isinstance(records, list | tuple) else list(records)
        function = self._function
        try:
            found = list(map(function, items))
        except (TypeError, AttributeError):
            found = [math.nan]
        if not all(map(math.isfinite, found)):
            for index, record in enumerate(items):
                self._checked(record, f"records[{index}]")
        return found

    def predict_many(self, records: Iterable[Record]) -> list[float]:
        """The probabilities of many records, in order."""
        return [sigmoid(z) for z in self.log_odds_many(records)]

    def log_odds_columns(
        self, columns: Mapping[str, Sequence[FeatureValue]]
    ) -> "numpy.typing.NDArray[numpy.float64]":
        """The log-odds of records given as columns (name -> values), with numpy.

        Number columns may be numpy arrays (``nan`` is a missing value); a column that is
        absent is missing in every record. Needs the extra ``fast``.
        """
        np = _numpy()
        if not isinstance(columns, Mapping):
            raise ValidationError("columns", columns, "expected a mapping of name to column")
        lengths = {len(c) for c in columns.values()}
        if len(lengths) > 1:
            raise ValidationError("columns", sorted(lengths), "columns differ in length")
        size = lengths.pop() if lengths else 0
        total = np.full(size, self.intercept, dtype=np.float64)
        for n in self.numeric:
            column = columns.get(n.name)
            if column is None:
                continue
            try:
                values = np.asarray(column, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValidationError(n.name, column, "expected a column of numbers") from None
            if np.isinf(values).any():
                raise ValidationError(n.name, column, "expected finite numbers")
            contribution = (values - n.mean) * (n.weight / n.scale)
            total += np.nan_to_num(contribution, nan=0.0)
        for c in self.categorical:
            column = columns.get(c.name)
            if column is None:
                continue
            table = dict(zip(c.levels, c.weights, strict=True))
            total += np.fromiter((table.get(v, 0.0) for v in column), np.float64, size)  # type: ignore[arg-type]
        return total  # type: ignore[no-any-return]

    def explain(self, record: Record) -> Explanation:
        """Per-feature log-odds of ``record``; they add up to its log-odds."""
        self._checked(record)
        parts = []
        for n in self.numeric:
            value = record.get(n.name)
            if value is not None:
                parts.append(
                    FeatureContribution(n.name, value, n.weight * (float(value) - n.mean) / n.scale)
                )
        for c in self.categorical:
            value = record.get(c.name)
            if isinstance(value, str) and value in c.levels:
                parts.append(FeatureContribution(c.name, value, c.weights[c.levels.index(value)]))
        return explanation(self.intercept, parts)


# ---------------------------------------------------------------------------- fitting


def _mean_scale(records: Sequence[Record], name: str) -> tuple[float, float]:
    values = [float(v) for r in records if (v := r.get(name)) is not None]
    try:
        mean, scale = _moments(values, 1.0)
    except OverflowError:  # squares beyond a float (values near 1e154): in units of the largest
        mean, scale = _moments(values, max(map(abs, values)))
    return mean, scale if scale > 1e-12 else 1.0


def _moments(values: Sequence[float], unit: float) -> tuple[float, float]:
    """Mean and standard deviation of ``values``, computed in multiples of ``unit``."""
    shrunk = [v / unit for v in values]
    mean = math.fsum(shrunk) / len(shrunk)
    variance = math.fsum((v - mean) ** 2 for v in shrunk) / len(shrunk)
    return mean * unit, math.sqrt(variance) * unit


def _standard(value: float, mean: float, scale: float) -> float:
    """``(value - mean) / scale``, also where ``value - mean`` alone exceeds a float."""
    found = (value - mean) / scale
    return found if math.isfinite(found) else value / scale - mean / scale


def _design(
    records: Sequence[Record],
    numeric: Sequence[str],
    stats: Sequence[tuple[float, float]],
    text: Sequence[str],
    levels: Sequence[Sequence[str]],
) -> list[list[tuple[int, float]]]:
    """Sparse rows ``[(column, value), ...]``; column 0 is the intercept."""
    positions = []
    start = 1 + len(numeric)
    for values in levels:
        positions.append({v: start + i for i, v in enumerate(values)})
        start += len(values)
    rows = []
    for record in records:
        row = [(0, 1.0)]
        for column, (name, (mean, scale)) in enumerate(zip(numeric, stats, strict=True), 1):
            value = record.get(name)
            if value is not None:
                row.append((column, _standard(float(value), mean, scale)))
        for name, where in zip(text, positions, strict=True):
            value = record.get(name)
            if value is not None:
                row.append((where[str(value)], 1.0))
        rows.append(row)
    return rows


def _log1pexp(z: float) -> float:
    return z + math.log1p(math.exp(-z)) if z > 0 else math.log1p(math.exp(z))


def _objective(
    rows: Rows,
    labels: Sequence[float],
    w: Sequence[float],
    l2: float,
) -> float:
    loss = 0.0
    for row, y in zip(rows, labels, strict=True):
        z = sum(w[j] * x for j, x in row)
        loss += _log1pexp(z) - y * z
    return loss + l2 / 2 * math.fsum(v * v for v in w[1:])


def _newton_python(
    rows: Rows,
    labels: Sequence[float],
    width: int,
    l2: float,
    max_iterations: int,
) -> list[float]:
    w = [0.0] * width
    current = _objective(rows, labels, w, l2)
    for _ in range(max_iterations):
        gradient = [0.0] * width
        hessian = [[0.0] * width for _ in range(width)]
        for row, y in zip(rows, labels, strict=True):
            p = sigmoid(sum(w[j] * x for j, x in row))
            residual, curvature = p - y, p * (1.0 - p)
            for j, xj in row:
                gradient[j] += residual * xj
                line, factor = hessian[j], curvature * xj
                for k, xk in row:
                    line[k] += factor * xk
        for j in range(1, width):
            gradient[j] += l2 * w[j]
            hessian[j][j] += l2
        hessian[0][0] += 1e-12
        step = _solve(hessian, gradient)
        w, current, size = _line_search(rows, labels, w, step, l2, current)
        if size < 1e-10:
            break
    return w


def _line_search(  # noqa: PLR0917
    rows: Rows,
    labels: Sequence[float],
    w: list[float],
    step: Sequence[float],
    l2: float,
    current: float,
) -> tuple[list[float], float, float]:
    rate = 1.0
    for _ in range(30):
        candidate = [a - rate * b for a, b in zip(w, step, strict=True)]
        value = _objective(rows, labels, candidate, l2)
        if value <= current + 1e-12 * abs(current):
            return candidate, value, rate * max(map(abs, step), default=0.0)
        rate /= 2
    return w, current, 0.0


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """``matrix^-1 vector`` by Gaussian elimination with partial pivoting."""
    size = len(vector)
    a = [[*row, vector[i]] for i, row in enumerate(matrix)]
    for col in range(size):
        pivot = max(range(col, size), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        head = a[col][col]
        if head == 0.0:
            continue
        for r in range(col + 1, size):
            factor = a[r][col] / head
            if factor:
                line, top = a[r], a[col]
                for k in range(col, size + 1):
                    line[k] -= factor * top[k]
    x = [0.0] * size
    for r in range(size - 1, -1, -1):
        head = a[r][r]
        rest = math.fsum(a[r][k] * x[k] for k in range(r + 1, size))
        x[r] = (a[r][size] - rest) / head if head else 0.0
    return x


def _newton_numpy(
    rows: Rows,
    labels: Sequence[float],
    width: int,
    l2: float,
    max_iterations: int,
) -> list[float]:
    np = _numpy()
    x = np.zeros((len(rows), width))
    for i, row in enumerate(rows):
        for j, value in row:
            x[i, j] = value
    y = np.asarray(labels)
    penalty = np.full(width, l2)
    penalty[0] = 1e-12

    def objective(w: Any) -> float:
        z = x @ w
        return float(np.logaddexp(0.0, z).sum() - y @ z + 0.5 * (penalty[1:] * w[1:] ** 2).sum())

    w = np.zeros(width)
    current = objective(w)
    for _ in range(max_iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        gradient = x.T @ (p - y) + penalty * w
        gradient[0] -= penalty[0] * w[0]
        hessian = (x * (p * (1.0 - p))[:, None]).T @ x + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        rate = 1.0
        for _ in range(30):
            candidate = w - rate * step
            value = objective(candidate)
            if value <= current + 1e-12 * abs(current):
                break
            rate /= 2
        else:
            break
        w, current = candidate, value
        if rate * float(np.abs(step).max()) < 1e-10:
            break
    return [float(v) for v in w]
