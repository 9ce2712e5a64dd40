"""How good is a score? Ranking, probability and lift measures, and cross-validation.

Standard library only. ``labels`` are booleans (won = ``True``); ``scores`` any numbers
where higher means more likely to win; ``probabilities`` numbers from 0 to 1.
"""

import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

import attrs

from crmkit.errors import ValidationError
from crmkit.scoring._data import Example, Record, checked_examples

__all__ = [
    "CalibrationBin",
    "CrossValidation",
    "DecileLift",
    "FoldResult",
    "Predictor",
    "brier_score",
    "calibration_table",
    "cross_validate",
    "lift_by_decile",
    "log_loss",
    "pr_auc",
    "roc_auc",
    "stratified_folds",
]


def _check(
    labels: Iterable[bool], scores: Iterable[float], *, probabilities: bool = False
) -> tuple[list[bool], list[float]]:
    """The labels as bools and the scores as floats. Any iterable works, numpy arrays
    included; numpy's bools and numbers count as Python's."""
    ys, xs = _items("labels", labels), _items("scores", scores)
    if len(ys) != len(xs):
        raise ValidationError("scores", len(xs), f"expected {len(ys)} scores, one per label")
    if not ys:
        raise ValidationError("labels", ys, "expected at least one label")
    found_ys = []
    for index, y in enumerate(ys):
        if not isinstance(y, bool) and not _numpy_kind(y, "b"):
            raise ValidationError(f"labels[{index}]", y, "expected True (won) or False")
        found_ys.append(bool(y))
    found_xs = []
    for index, x in enumerate(xs):
        number = _number(x)
        if number is None:
            raise ValidationError(f"scores[{index}]", x, "expected a finite number")
        if probabilities and not 0.0 <= number <= 1.0:
            raise ValidationError(f"scores[{index}]", x, "expected a probability from 0 to 1")
        found_xs.append(number)
    return found_ys, found_xs


def _items(name: str, values: object) -> list[object]:
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise ValidationError(name, values, "expected a sequence (a list, a numpy array, ...)")
    return list(values)


def _numpy_kind(value: object, kinds: str) -> bool:
    """Whether ``value`` is a numpy scalar (or 0-d array) of one of the dtype ``kinds``."""
    dtype = getattr(value, "dtype", None)
    return getattr(dtype, "kind", None) in tuple(kinds) and getattr(value, "ndim", 1) == 0


def _number(value: object) -> float | None:
    """``value`` as a finite float, if it is a real number (not a bool)."""
    if isinstance(value, bool):
        return None
    if not isinstance(value, int | float) and not _numpy_kind(value, "iuf"):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except OverflowError:  # an int beyond a float's range
        return None
    return number if math.isfinite(number) else None


def _both(ys: Sequence[bool]) -> None:
    won = sum(ys)
    if won in (0, len(ys)):
        raise ValidationError("labels", f"{won} of {len(ys)} won", "needs won and lost labels")


def roc_auc(labels: Iterable[bool], scores: Iterable[float]) -> float:
    """The area under the ROC curve: the chance that a random won case scores higher than
    a random lost one (ties count half), from the ranks (Mann-Whitney U)."""
    ys, xs = _check(labels, scores)
    _both(ys)
    order = sorted(range(len(xs)), key=xs.__getitem__)
    ranks = [0.0] * len(xs)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and xs[order[end + 1]] == xs[order[start]]:
            end += 1
        mean_rank = (start + end) / 2 + 1
        for k in range(start, end + 1):
            ranks[order[k]] = mean_rank
        start = end + 1
    won = sum(ys)
    lost = len(ys) - won
    rank_sum = math.fsum(r for r, y in zip(ranks, ys, strict=True) if y)
    return (rank_sum - won * (won + 1) / 2) / (won * lost)


def pr_auc(labels: Iterable[bool], scores: Iterable[float]) -> float:
    """The area under the precision-recall curve as average precision: the mean of the
    precision at each won case's threshold (tied scores form one threshold)."""
    ys, xs = _check(labels, scores)
    _both(ys)
    order = sorted(range(len(xs)), key=lambda i: -xs[i])
    total_won = sum(ys)
    area, true_pos, seen, index = 0.0, 0, 0, 0
    while index < len(order):
        end = index
        while end + 1 < len(order) and xs[order[end + 1]] == xs[order[index]]:
            end += 1
        block = [ys[order[k]] for k in range(index, end + 1)]
        gained = sum(block)
        true_pos += gained
        seen += len(block)
        area += gained / total_won * (true_pos / seen)
        index = end + 1
    return area


def log_loss(labels: Iterable[bool], probabilities: Iterable[float], eps: float = 1e-15) -> float:
    """The mean negative log-likelihood (probabilities clipped to ``[eps, 1 - eps]``)."""
    ys, ps = _check(labels, probabilities, probabilities=True)
    clipped = (min(max(p, eps), 1 - eps) for p in ps)
    return -math.fsum(
        math.log(p) if y else math.log(1 - p) for y, p in zip(ys, clipped, strict=False)
    ) / len(ys)


def brier_score(labels: Iterable[bool], probabilities: Iterable[float]) -> float:
    """The mean squared difference between probability and outcome (0 is perfect)."""
    ys, ps = _check(labels, probabilities, probabilities=True)
    return math.fsum((p - y) ** 2 for y, p in zip(ys, ps, strict=True)) / len(ys)


@attrs.frozen
class CalibrationBin:
    """The cases whose probability lies in ``[low, high)`` (the last bin includes 1)."""

    low: float
    high: float
    count: int
    mean_probability: float
    won_rate: float


def calibration_table(
    labels: Iterable[bool], probabilities: Iterable[float], bins: int = 10
) -> tuple[CalibrationBin, ...]:
    """Predicted against observed, in ``bins`` equal-width probability bins (empty bins
    are left out). A calibrated model has ``mean_probability`` close to ``won_rate``."""
    if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= 1000:
        raise ValidationError("bins", bins, "expected an int from 1 to 1000")
    ys, ps = _check(labels, probabilities, probabilities=True)
    grouped: dict[int, list[tuple[bool, float]]] = {}
    for y, p in zip(ys, ps, strict=True):
        grouped.setdefault(_bin_of(p, bins), []).append((y, p))
    return tuple(
        CalibrationBin(
            low=k / bins,
            high=(k + 1) / bins,
            count=len(items),
            mean_probability=math.fsum(p for _, p in items) / len(items),
            won_rate=sum(y for y, _ in items) / len(items),
        )
        for k, items in sorted(grouped.items())
    )


def _bin_of(p: float, bins: int) -> int:
    """The bin ``k`` with ``k / bins <= p < (k + 1) / bins`` (the last bin also holds 1),
    compared with the very bounds the table reports (``int(p * bins)`` alone can be one
    off where the product rounds across an integer)."""
    k = min(int(p * bins), bins - 1)
    while k > 0 and p < k / bins:
        k -= 1
    while k < bins - 1 and p >= (k + 1) / bins:
        k += 1
    return k


@attrs.frozen
class DecileLift:
    """One tenth of the cases, from the highest scores (decile 1) down."""

    decile: int
    count: int
    won: float
    """The won cases (tied scores shared evenly, so possibly a fraction)."""
    won_rate: float
    lift: float
    """``won_rate`` over the won rate of all cases."""


def lift_by_decile(labels: Iterable[bool], scores: Iterable[float]) -> tuple[DecileLift, ...]:
    """Won rate and lift per decile of the score, highest first. Cases are sorted by
    score, highest first, and cut into ten groups whose sizes differ by at most one.

    Cases with tied scores cannot be told apart, so their won cases are shared evenly
    over the places they take: a decile holding some of a tie counts that share (``won``
    may then be a fraction), and the result does not depend on the order of the input.
    """
    ys, xs = _check(labels, scores)
    _both(ys)
    order = sorted(range(len(xs)), key=lambda i: -xs[i])
    share = [0.0] * len(order)  # the won share of each place in that order
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and xs[order[end + 1]] == xs[order[start]]:
            end += 1
        tied = range(start, end + 1)
        mean = sum(ys[order[k]] for k in tied) / len(tied)
        for k in tied:
            share[k] = mean
        start = end + 1
    base = sum(ys) / len(ys)
    n = len(ys)
    found = []
    for decile in range(10):
        low, high = n * decile // 10, n * (decile + 1) // 10
        if low == high:
            continue
        won = math.fsum(share[low:high])
        if won.is_integer():
            won = int(won)
        rate = won / (high - low)
        found.append(DecileLift(decile + 1, high - low, won, rate, rate / base))
    return tuple(found)


def stratified_folds(
    labels: Sequence[bool], folds: int = 5, seed: int = 0
) -> list[tuple[list[int], list[int]]]:
    """``(train, test)`` index lists of ``folds``-fold cross-validation; won and lost cases
    are shuffled with ``random.Random(seed)`` and dealt round-robin, so every fold holds
    about the same share of won cases. The same seed gives the same folds."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValidationError("folds", folds, "expected an int >= 2")
    if isinstance(labels, str | bytes | Mapping) or not isinstance(labels, Sequence):
        raise ValidationError("labels", labels, "expected a sequence of True and False")
    if folds > len(labels):
        raise ValidationError("folds", folds, f"more folds than the {len(labels)} cases")
    rng = random.Random(seed)
    assignment = [0] * len(labels)
    dealt = 0
    for outcome in (True, False):
        members = [i for i, y in enumerate(labels) if y is outcome]
        rng.shuffle(members)
        for i in members:
            assignment[i] = dealt % folds
            dealt += 1
    return [
        (
            [i for i, f in enumerate(assignment) if f != k],
            [i for i, f in enumerate(assignment) if f == k],
        )
        for k in range(folds)
    ]


class Predictor(Protocol):
    """Anything fitted that gives probabilities for records (both learned scorers)."""

    def predict_many(self, records: Iterable[Record]) -> list[float]:
        """The probability of winning of each record."""
        ...


@attrs.frozen
class FoldResult:
    """The measures on one held-out fold."""

    repeat: int
    fold: int
    roc_auc: float
    pr_auc: float
    log_loss: float
    brier: float
    top_decile_lift: float


@attrs.frozen
class CrossValidation:
    """Every fold's measures and their means."""

    folds: tuple[FoldResult, ...]

    def mean(self, measure: str) -> float:
        """The mean of ``measure`` (``"roc_auc"``, ``"top_decile_lift"``, ...) over folds."""
        if measure not in {"roc_auc", "pr_auc", "log_loss", "brier", "top_decile_lift"}:
            raise ValidationError("measure", measure, "not a measure of FoldResult")
        return math.fsum(getattr(f, measure) for f in self.folds) / len(self.folds)


def cross_validate(
    fit: Callable[[list[Example]], Predictor],
    examples: Iterable[Example],
    *,
    folds: int = 5,
    repeats: int = 1,
    seed: int = 0,
) -> CrossValidation:
    """Fit on all folds but one and measure on that one, for every fold; ``repeats``
    times with the seeds ``seed``, ``seed + 1``, ... (stratified, see
    :func:`stratified_folds`)."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValidationError("repeats", repeats, "expected an int >= 1")
    found = checked_examples(examples)
    labels = [e.won for e in found]
    if isinstance(folds, int) and not isinstance(folds, bool) and folds >= 2:
        for outcome, what in ((True, "won"), (False, "lost")):
            count = labels.count(outcome)
            if count < folds:
                raise ValidationError(
                    "folds",
                    folds,
                    f"only {count} {what} examples: every fold needs at least one "
                    f"(use at most {count} folds, or more examples)",
                )
    results = []
    for repeat in range(repeats):
        for k, (train, test) in enumerate(stratified_folds(labels, folds, seed + repeat)):
            model = fit([found[i] for i in train])
            ys = [labels[i] for i in test]
            ps = model.predict_many([found[i].record for i in test])
            results.append(
                FoldResult(
                    repeat=repeat,
                    fold=k,
                    roc_auc=roc_auc(ys, ps),
                    pr_auc=pr_auc(ys, ps),
                    log_loss=log_loss(ys, ps),
                    brier=brier_score(ys, ps),
                    top_decile_lift=lift_by_decile(ys, ps)[0].lift,
                )
            )
    return CrossValidation(tuple(results))
