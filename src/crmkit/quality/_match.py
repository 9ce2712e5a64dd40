"""Fellegi-Sunter matching: weights per comparison level, estimated without labels.

A :class:`DuplicateSpec` says which pairs are compared (blocking keys) and how
(comparisons); :class:`Weights` give, per comparison level, ``m`` (how often a true
duplicate pair falls into the level) and ``u`` (how often a distinct pair does). A pair's
match weight is ``log2(prior / (1 - prior))`` plus ``log2(m / u)`` of each comparison's
level; its probability is ``1 / (1 + 2 ** -weight)``. :func:`estimate_weights` finds
``m``, ``u`` and the prior by expectation maximisation over the candidate pairs, without
labels (as splink and recordlinkage's ECM do); a host may give them instead.
"""

import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from enum import StrEnum
from typing import Any, Final

import attrs

from crmkit.errors import ValidationError
from crmkit.models import Account, Contact
from crmkit.quality._blocking import ACCOUNT_KEYS, CONTACT_KEYS, BlockingKey
from crmkit.quality._compare import Comparison, Method, Normaliser

__all__ = [
    "ACCOUNT_SPEC",
    "CONTACT_SPEC",
    "BatchResult",
    "Contribution",
    "DuplicateModel",
    "DuplicatePair",
    "DuplicateSpec",
    "FitDiagnostic",
    "FitProblem",
    "Verdict",
    "Weights",
    "duplicate_pairs",
    "estimate_weights",
]

_EPSILON: Final = 1e-6


class Verdict(StrEnum):
    """What a pair's probability says, against the spec's thresholds."""

    DUPLICATE = "duplicate"
    REVIEW = "review"
    DISTINCT = "distinct"


class FitProblem(StrEnum):
    """Why weights estimated without labels are not to be trusted."""

    NOT_CONVERGED = "not_converged"
    """Expectation maximisation stopped at ``max_iterations`` still moving."""
    INVERTED = "inverted"
    """EM learnt agreement on a comparison as evidence against a duplicate (a label
    switch: its "duplicates" are something else); the weights were fitted again with
    ``m / u`` held rising with the level, which leaves such a comparison at no weight."""
    UNOBSERVED = "unobserved"
    """No candidate pair agrees on a comparison, so its weights could not be learnt."""


@attrs.frozen
class FitDiagnostic:
    """One reason not to trust weights estimated without labels."""

    problem: FitProblem
    comparison: str | None
    """The comparison concerned (``None`` for the model as a whole)."""
    detail: str


def _probability(name: str) -> Any:
    def check(_i: object, _a: object, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            raise ValidationError(name, value, "expected a probability between 0 and 1")

    return check


def _positive(name: str) -> Any:
    def check(_i: object, _a: object, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ValidationError(name, value, "expected a whole number of 2 or more")

    return check


def _check_comparisons(_i: object, _a: object, value: Any) -> None:
    if not isinstance(value, tuple) or not value:
        raise ValidationError("comparisons", value, "expected a non-empty tuple of comparisons")
    for index, item in enumerate(value):
        if not isinstance(item, Comparison):
            raise ValidationError(f"comparisons[{index}]", item, "expected a Comparison")
    names = [c.name for c in value]
    if len(set(names)) != len(names):
        raise ValidationError("comparisons", names, "comparison names must differ")


def _check_blocking(_i: object, _a: object, value: Any) -> None:
    if not isinstance(value, tuple) or not value:
        raise ValidationError("blocking", value, "expected a non-empty tuple of blocking keys")
    for index, item in enumerate(value):
        if not isinstance(item, BlockingKey):
            raise ValidationError(f"blocking[{index}]", item, "expected a BlockingKey")


@attrs.frozen
class DuplicateSpec:
    """One specification for batch and on-create duplicate detection.

    ``duplicate`` and ``review`` are the probabilities from which a pair is a duplicate,
    or worth a person's look; ``max_block`` skips blocks with more records (a key value
    shared by thousands, such as a common surname alone, compares nothing useful);
    ``max_candidates`` bounds what the look-up before a create compares per blocking key
    (a common name brings no more than that many, and cannot crowd out a shared e-mail
    address); ``max_cluster`` is the size from which a cluster is reported, not trusted.
    """

    comparisons: tuple[Comparison, ...] = attrs.field(validator=_check_comparisons)
    blocking: tuple[BlockingKey, ...] = attrs.field(validator=_check_blocking)
    duplicate: float = attrs.field(default=0.99, validator=_probability("duplicate"))
    review: float = attrs.field(default=0.8, validator=_probability("review"))
    max_block: int = attrs.field(default=1000, validator=_positive("max_block"))
    max_candidates: int = attrs.field(default=20, validator=_positive("max_candidates"))
    max_cluster: int = attrs.field(default=10, validator=_positive("max_cluster"))

    def __attrs_post_init__(self) -> None:
        if self.review > self.duplicate:
            raise ValidationError(
                "review", self.review, "the review threshold must not exceed the duplicate one"
            )

    def verdict(self, probability: float) -> Verdict:
        """The verdict for a pair with this probability."""
        if probability >= self.duplicate:
            return Verdict.DUPLICATE
        if probability >= self.review:
            return Verdict.REVIEW
        return Verdict.DISTINCT


def _check_levels(name: str) -> Any:
    def check(_i: object, _a: object, value: Any) -> None:
        if not isinstance(value, tuple) or not all(
            isinstance(levels, tuple)
            and len(levels) >= 2
            and all(
                isinstance(p, int | float) and not isinstance(p, bool) and 0 < p <= 1
                for p in levels
            )
            for levels in value
        ):
            raise ValidationError(
                name, value, "expected a tuple per comparison of probabilities per level"
            )
        for index, levels in enumerate(value):
            if not math.isclose(math.fsum(levels), 1.0, abs_tol=1e-6):
                raise ValidationError(f"{name}[{index}]", levels, "the levels must sum to 1")

    return check


@attrs.frozen
class Weights:
    """``m`` and ``u`` per comparison and level, and the ``prior`` probability that a
    compared pair is a duplicate."""

    prior: float = attrs.field(validator=_probability("prior"))
    m: tuple[tuple[float, ...], ...] = attrs.field(validator=_check_levels("m"))
    u: tuple[tuple[float, ...], ...] = attrs.field(validator=_check_levels("u"))

    def __attrs_post_init__(self) -> None:
        if [len(x) for x in self.m] != [len(x) for x in self.u]:
            raise ValidationError("u", self.u, "m and u need the same levels")

    def fits(self, spec: DuplicateSpec) -> None:
        """Raise :class:`~crmkit.errors.ValidationError` unless these weights have one
        entry per comparison of ``spec`` and one probability per level."""
        wanted = [c.levels for c in spec.comparisons]
        if [len(x) for x in self.m] != wanted:
            raise ValidationError(
                "weights", [len(x) for x in self.m], f"the spec's comparisons have {wanted} levels"
            )

    def level_weights(self) -> tuple[tuple[float, ...], ...]:
        """``log2(m / u)`` per comparison and level."""
        return tuple(
            tuple(math.log2(m / u) for m, u in zip(ms, us, strict=True))
            for ms, us in zip(self.m, self.u, strict=True)
        )


@attrs.frozen
class Contribution:
    """What one comparison added to a pair's match weight."""

    comparison: str
    level: int | None
    """The level (``None``: a value was missing, which adds nothing)."""
    label: str
    weight: float


@attrs.frozen
class DuplicatePair:
    """Two records that may be one, with the reasons.

    ``left`` is the record compared (the candidate of an on-create check), ``right`` the
    other one; in batch pairs ``left`` is the smaller id.
    """

    left: Any
    right: Any
    weight: float
    probability: float
    verdict: Verdict
    contributions: tuple[Contribution, ...]

    def explain(self) -> str:
        """One line per comparison: its level and the weight it added."""
        lines = [f"match weight {self.weight:+.2f}, probability {self.probability:.4f}"]
        lines += [f"  {c.comparison}: {c.label} ({c.weight:+.2f})" for c in self.contributions]
        return "\n".join(lines)


def _records(records: object) -> list[object]:
    """``records`` as a list; each needs an id (an ``id`` key or attribute)."""
    if isinstance(records, str | bytes | Mapping) or not isinstance(records, Iterable):
        raise ValidationError("records", records, "expected a collection of records")
    listed = list(records)
    for index, record in enumerate(listed):
        try:
            id_of(record)
        except (KeyError, AttributeError, TypeError):
            raise ValidationError(f"records[{index}]", record, "a record needs an id") from None
    return listed


def id_of(record: object) -> Any:
    """The id of a record: its ``id`` key or attribute."""
    if isinstance(record, Mapping):
        return record["id"]
    return getattr(record, "id")  # noqa: B009 - any record with an id


_Vector = tuple[int | None, ...]


@attrs.frozen
class DuplicateModel:
    """A :class:`DuplicateSpec` with its :class:`Weights`: scores and finds pairs."""

    spec: DuplicateSpec
    weights: Weights
    _level_weights: tuple[tuple[float, ...], ...] = attrs.field(init=False, repr=False)
    _levellers: tuple[Callable[[object, object], int | None], ...] = attrs.field(
        init=False, repr=False, eq=False
    )
    _prior_weight: float = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.spec, DuplicateSpec):
            raise ValidationError("spec", self.spec, "expected a DuplicateSpec")
        if not isinstance(self.weights, Weights):
            raise ValidationError("weights", self.weights, "expected Weights")
        self.weights.fits(self.spec)
        object.__setattr__(self, "_level_weights", self.weights.level_weights())
        levellers = tuple(c.leveller() for c in self.spec.comparisons)
        object.__setattr__(self, "_levellers", levellers)
        prior = self.weights.prior
        object.__setattr__(self, "_prior_weight", math.log2(prior / (1 - prior)))

    def prepared(self, record: object) -> tuple[object, ...]:
        """The values the comparisons compare, once per record."""
        return tuple(c.prepare(record) for c in self.spec.comparisons)

    def vector(self, a: tuple[object, ...], b: tuple[object, ...]) -> _Vector:
        """The levels of two prepared records."""
        return tuple(level(x, y) for level, x, y in zip(self._levellers, a, b, strict=True))

    def weight(self, vector: _Vector) -> float:
        """The match weight of a pair whose levels are ``vector``."""
        total = self._prior_weight
        for level, weights in zip(vector, self._level_weights, strict=True):
            if level is not None:
                total += weights[level]
        return total

    def kept(self, vectors: Mapping[tuple[Any, Any], _Vector]) -> list[DuplicatePair]:
        """The pairs of ``vectors`` at or above the review threshold, most likely first."""
        review = self.spec.review
        found = [
            self.pair(a, b, vector)
            for (a, b), vector in vectors.items()
            if _sigmoid(self.weight(vector)) >= review
        ]
        found.sort(key=lambda p: (-p.weight, str(p.left), str(p.right)))
        return found

    def pair(self, left: Any, right: Any, vector: _Vector) -> DuplicatePair:
        """The pair of ``left`` and ``right`` (ids) whose levels are ``vector``."""
        weight = self._prior_weight
        contributions = []
        for comparison, level, weights in zip(
            self.spec.comparisons, vector, self._level_weights, strict=True
        ):
            added = 0.0 if level is None else weights[level]
            weight += added
            label = "missing" if level is None else comparison.labels[level]
            contributions.append(Contribution(comparison.name, level, label, added))
        probability = _sigmoid(weight)
        return DuplicatePair(
            left, right, weight, probability, self.spec.verdict(probability), tuple(contributions)
        )

    def score(self, left: object, right: object) -> DuplicatePair:
        """Compare two records (entities or mappings with an ``id``)."""
        vector = self.vector(self.prepared(left), self.prepared(right))
        return self.pair(id_of(left), id_of(right), vector)

    def duplicates_of(self, candidate: object, others: Iterable[object]) -> list[DuplicatePair]:
        """The pairs of ``candidate`` with each of ``others`` that reach the review
        threshold, most likely first; ``others`` with the candidate's id are skipped."""
        own = id_of(candidate)
        mine = self.prepared(candidate)
        found = []
        for other in others:
            other_id = id_of(other)
            if other_id == own:
                continue
            pair = self.pair(own, other_id, self.vector(mine, self.prepared(other)))
            if pair.verdict is not Verdict.DISTINCT:
                found.append(pair)
        found.sort(key=lambda p: (-p.weight, str(p.right)))
        return found

    def pairs(self, records: Iterable[object]) -> list[DuplicatePair]:
        """Every pair of ``records`` that shares a blocking key and reaches the review
        threshold, most likely first."""
        _prepared, vectors = candidate_vectors(self, _records(records))
        return self.kept(vectors)


def _sigmoid(weight: float) -> float:
    if weight >= 0:
        return 1.0 / (1.0 + math.pow(2.0, -weight))
    power = math.pow(2.0, weight)
    return power / (1.0 + power)


def candidate_pairs(
    spec: DuplicateSpec, keyed: Iterable[tuple[Any, frozenset[tuple[str, str]]]]
) -> Iterator[tuple[Any, Any]]:
    """Each pair of ids that shares a key, once, the smaller id first; blocks larger
    than ``spec.max_block`` are skipped."""
    blocks: dict[tuple[str, str], list[Any]] = {}
    for id, keys in keyed:
        for key in keys:
            blocks.setdefault(key, []).append(id)
    seen: set[tuple[Any, Any]] = set()
    for members in blocks.values():
        if len(members) < 2 or len(members) > spec.max_block:
            continue
        ordered = sorted(set(members), key=str)
        for i, a in enumerate(ordered):
            for b in ordered[i + 1 :]:
                if (a, b) not in seen:
                    seen.add((a, b))
                    yield a, b


def candidate_vectors(
    model: DuplicateModel, records: Sequence[object]
) -> tuple[dict[Any, tuple[object, ...]], dict[tuple[Any, Any], _Vector]]:
    """The prepared values per id and the level vector of every candidate pair.

    Works a column at a time: each comparison prepares, and each blocking key computes,
    every distinct value once."""
    ids = [id_of(record) for record in records]
    seen: set[Any] = set()
    for index, id in enumerate(ids):
        if id in seen:
            raise ValidationError(f"records[{index}]", id, "an id was given twice")
        seen.add(id)
    columns = [c.prepare_many(records) for c in model.spec.comparisons]
    prepared = dict(zip(ids, zip(*columns, strict=True), strict=True)) if columns else {}
    key_columns = [(k.name, k.values(records)) for k in model.spec.blocking]
    keyed: list[tuple[Any, frozenset[tuple[str, str]]]] = []
    for i, id in enumerate(ids):
        keys = set()
        for name, values in key_columns:
            value = values[i]
            if value is not None:
                keys.add((name, value))
        keyed.append((id, frozenset(keys)))
    cache: dict[tuple[int, object, object], int | None] = {}
    levellers = model._levellers
    vectors: dict[tuple[Any, Any], _Vector] = {}
    indexed = list(enumerate(levellers))
    for a, b in candidate_pairs(model.spec, keyed):
        pa, pb = prepared[a], prepared[b]
        levels: list[int | None] = []
        for index, level_of in indexed:
            x, y = pa[index], pb[index]
            if x is None or y is None:
                levels.append(None)
                continue
            # Values of one comparison are all text, all dates or all numbers.
            memo = (index, x, y) if x <= y else (index, y, x)
            level = cache.get(memo, -1)
            if level == -1:
                level = level_of(x, y)
                cache[memo] = level
            levels.append(level)
        vectors[(a, b)] = tuple(levels)
    return prepared, vectors


def _initial(levels: int) -> tuple[float, ...]:
    """A starting ``m``: most weight on "equal", rising with the level."""
    rising = [2.0**i for i in range(levels)]
    rising[-1] = sum(rising[:-1]) * 4
    total = sum(rising)
    return tuple(x / total for x in rising)


def _normalised(counts: Sequence[float]) -> tuple[float, ...]:
    smoothed = [c + _EPSILON for c in counts]
    total = sum(smoothed)
    return tuple(c / total for c in smoothed)


def estimate_weights(
    spec: DuplicateSpec,
    records: Iterable[object],
    *,
    max_iterations: int = 100,
    tolerance: float = 1e-4,
    sample: int = 5_000,
    seed: int = 0,
) -> Weights:
    """``m``, ``u`` and the prior that explain the candidate pairs of ``records`` best,
    without labels, as splink does.

    ``u`` (how often distinct records fall into each level) comes from ``sample`` pairs
    drawn at random (``seed``), which are almost all distinct; ``m`` and the prior come
    from expectation maximisation over the candidate pairs with ``u`` held: each round
    gives every distinct level vector the probability of being a duplicate, then
    re-estimates ``m`` and the prior from those probabilities, until no value moves more
    than ``tolerance``. Where EM learnt disagreement on a comparison as evidence of a
    duplicate (``m > u``), or equality as evidence against (a label switch), it runs
    again with
    ``m / u`` held rising with the level in every round (a closer agreement is never
    less evidence, as splink and recordlinkage expect), and :func:`duplicate_pairs`
    reports it (:attr:`FitProblem.INVERTED`). Fewer than two records or candidate pairs raise
    :class:`~crmkit.errors.ValidationError` (field ``records``).
    """
    for name, value in (("max_iterations", max_iterations), ("sample", sample)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValidationError(name, value, "expected a whole number of 1 or more")
    if not isinstance(spec, DuplicateSpec):
        raise ValidationError("spec", spec, "expected a DuplicateSpec")
    listed = _records(records)
    model = DuplicateModel(spec, _seed_weights(spec))
    prepared, vectors = candidate_vectors(model, listed)
    weights, _diagnostics = _estimate(
        model,
        prepared,
        vectors,
        max_iterations=max_iterations,
        tolerance=tolerance,
        sample=sample,
        seed=seed,
    )
    return weights


def _seed_weights(spec: DuplicateSpec) -> Weights:
    start = tuple(_initial(c.levels) for c in spec.comparisons)
    return Weights(0.5, start, start)


def _estimate(
    model: DuplicateModel,
    prepared: Mapping[Any, tuple[object, ...]],
    vectors: Mapping[tuple[Any, Any], _Vector],
    *,
    max_iterations: int = 100,
    tolerance: float = 1e-4,
    sample: int = 5_000,
    seed: int = 0,
) -> tuple[Weights, tuple[FitDiagnostic, ...]]:
    if len(prepared) < 2 or len(vectors) < 2:
        raise ValidationError(
            "records", len(vectors), "fewer than two candidate pairs to learn from"
        )
    comparisons = model.spec.comparisons
    rows = list(prepared.values())
    rng = random.Random(seed)
    shares: list[list[float]] = [[0.0] * c.levels for c in comparisons]
    for _ in range(min(sample, len(rows) * (len(rows) - 1) // 2)):
        a, b = rng.sample(range(len(rows)), 2)
        for k, level in enumerate(model.vector(rows[a], rows[b])):
            if level is not None:
                shares[k][level] += 1
    u = [list(_normalised(s)) for s in shares]
    return _em(comparisons, Counter(vectors.values()), u, max_iterations, tolerance)


def _monotone(counts: Sequence[float], u: Sequence[float]) -> list[float]:
    """``m`` from expected duplicate ``counts`` per level, with ``m / u`` rising with the
    level (a closer agreement is never less evidence of a duplicate): the most likely
    ``m`` under that constraint, by pooling adjacent levels that violate it."""
    blocks: list[list[float]] = []  # [count, u, levels]
    for count, share in zip(counts, u, strict=True):
        blocks.append([count, share, 1.0])
        while len(blocks) > 1 and blocks[-2][0] * blocks[-1][1] > blocks[-1][0] * blocks[-2][1]:
            last = blocks.pop()
            blocks[-1] = [blocks[-1][0] + last[0], blocks[-1][1] + last[1], blocks[-1][2] + last[2]]
    total = sum(b[0] for b in blocks)
    m: list[float] = []
    for count, share, levels in blocks:
        ratio = count / share / total if total > 0 else 1.0
        m.extend([ratio] * int(levels))
    return [r * share for r, share in zip(m, u, strict=True)]


def _em(
    comparisons: Sequence[Comparison],
    counted: Mapping[_Vector, int],
    u: list[list[float]],
    max_iterations: int,
    tolerance: float,
) -> tuple[Weights, tuple[FitDiagnostic, ...]]:
    """EM as it comes; where it learnt that agreement on a comparison is no more
    evidence of a duplicate than disagreement (a label switch), EM again with ``m / u``
    held rising in every round, and that comparison reported."""
    free, converged = _rounds(comparisons, counted, u, max_iterations, tolerance, held=False)
    inverted = [
        comparison.name
        for comparison, levels in zip(comparisons, free.level_weights(), strict=True)
        if levels[0] > 1e-9 or levels[-1] < -1e-9
    ]
    if not inverted:
        return free, _diagnose(comparisons, counted, free, converged, max_iterations, inverted=())
    held, converged = _rounds(comparisons, counted, u, max_iterations, tolerance, held=True)
    return held, _diagnose(comparisons, counted, held, converged, max_iterations, inverted=inverted)


def _rounds(
    comparisons: Sequence[Comparison],
    counted: Mapping[_Vector, int],
    u: list[list[float]],
    max_iterations: int,
    tolerance: float,
    *,
    held: bool,
) -> tuple[Weights, bool]:
    totals = sum(counted.values())
    m = [list(_initial(c.levels)) for c in comparisons]
    present = [
        ([(k, level) for k, level in enumerate(vector) if level is not None], count)
        for vector, count in counted.items()
    ]
    prior = 0.5
    converged = False
    for _ in range(max_iterations):
        m_counts = [[0.0] * c.levels for c in comparisons]
        u_counts = [[0.0] * c.levels for c in comparisons]
        matched = 0.0
        for levels, count in present:
            pm, pu = prior, 1.0 - prior
            for k, level in levels:
                pm *= m[k][level]
                pu *= u[k][level]
            g = pm / (pm + pu) if pm + pu > 0 else 0.0
            matched += g * count
            for k, level in levels:
                m_counts[k][level] += g * count
                u_counts[k][level] += (1.0 - g) * count
        new_u = [list(_normalised(c)) for c in u_counts]
        if held:
            new_m = [_monotone(c, us) for c, us in zip(m_counts, new_u, strict=True)]
        else:
            new_m = [list(_normalised(c)) for c in m_counts]
        new_prior = min(max(matched / totals, _EPSILON), 1 - _EPSILON)
        moved = max(
            abs(new_prior - prior),
            *(abs(a - b) for x, y in zip(new_m, m, strict=True) for a, b in zip(x, y, strict=True)),
            *(abs(a - b) for x, y in zip(new_u, u, strict=True) for a, b in zip(x, y, strict=True)),
        )
        m, u, prior = new_m, new_u, new_prior
        if moved < tolerance:
            converged = True
            break
    return Weights(prior, tuple(_fix(x) for x in m), tuple(_fix(x) for x in u)), converged


def _diagnose(
    comparisons: Sequence[Comparison],
    counted: Mapping[_Vector, int],
    weights: Weights,
    converged: bool,
    max_iterations: int,
    *,
    inverted: Sequence[str],
) -> tuple[FitDiagnostic, ...]:
    found = [
        FitDiagnostic(
            FitProblem.INVERTED,
            name,
            "the fit learnt agreement on it as evidence against a duplicate (a label "
            "switch); it was fitted again with closer levels held to weigh more",
        )
        for name in inverted
    ]
    if not converged:
        found.append(
            FitDiagnostic(
                FitProblem.NOT_CONVERGED,
                None,
                f"still moving after {max_iterations} rounds of expectation maximisation",
            )
        )
    for k, comparison in enumerate(comparisons):
        agreeing = sum(n for vector, n in counted.items() if (vector[k] or 0) > 0)
        if not agreeing:
            found.append(
                FitDiagnostic(
                    FitProblem.UNOBSERVED,
                    comparison.name,
                    "no candidate pair agrees on it, so its weights could not be learnt",
                )
            )
    return tuple(found)


@attrs.frozen
class BatchResult:
    """What :func:`duplicate_pairs` found: the pairs and the model that scored them."""

    model: DuplicateModel
    pairs: tuple[DuplicatePair, ...]
    """The pairs at or above the review threshold, most likely first."""
    compared: int
    """How many candidate pairs blocking gave."""
    diagnostics: tuple[FitDiagnostic, ...] = ()
    """Why the weights estimated without labels are not to be trusted (empty when they
    look sound, or when the caller gave the weights)."""

    @property
    def degenerate(self) -> bool:
        """Whether the estimated model is not to be trusted (any diagnostic but
        :attr:`FitProblem.UNOBSERVED`, which leaves the comparison without weight and
        harms nothing): then no pair is called :attr:`Verdict.DUPLICATE` (they come
        back as :attr:`Verdict.REVIEW` at most)."""
        return _degenerate(self.diagnostics)


def duplicate_pairs(
    records: Iterable[object],
    spec: DuplicateSpec,
    *,
    weights: Weights | None = None,
    seed: int = 0,
) -> BatchResult:
    """The duplicate pairs among ``records`` (entities, or mappings with an ``id``).

    Without ``weights`` they are estimated from the same records
    (:func:`estimate_weights`); the candidate pairs are compared once for both. When
    that estimate looks degenerate (a comparison whose agreement EM learnt as evidence
    against, or no convergence),
    :attr:`BatchResult.diagnostics` says why and no pair is called a
    duplicate: the would-be duplicates come back as pairs to review, so that a host that
    merges :attr:`Verdict.DUPLICATE` pairs merges nothing on a model it cannot trust.
    """
    if not isinstance(spec, DuplicateSpec):
        raise ValidationError("spec", spec, "expected a DuplicateSpec")
    if weights is not None and not isinstance(weights, Weights):
        raise ValidationError("weights", weights, "expected Weights")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValidationError("seed", seed, "expected a whole number")
    listed = _records(records)
    model = DuplicateModel(spec, weights if weights is not None else _seed_weights(spec))
    prepared, vectors = candidate_vectors(model, listed)
    if weights is not None:
        return BatchResult(model, tuple(model.kept(vectors)), len(vectors))
    learned, diagnostics = _estimate(model, prepared, vectors, seed=seed)
    model = DuplicateModel(spec, learned)
    pairs = model.kept(vectors)
    if _degenerate(diagnostics):
        pairs = [
            attrs.evolve(p, verdict=Verdict.REVIEW) if p.verdict is Verdict.DUPLICATE else p
            for p in pairs
        ]
    return BatchResult(model, tuple(pairs), len(vectors), diagnostics)


def _degenerate(diagnostics: Iterable[FitDiagnostic]) -> bool:
    return any(d.problem is not FitProblem.UNOBSERVED for d in diagnostics)


def _fix(levels: Sequence[float]) -> tuple[float, ...]:
    """Probabilities that sum to 1 within float error, none zero."""
    total = math.fsum(levels)
    return tuple(max(p / total, 1e-12) for p in levels)


CONTACT_SPEC: Final = DuplicateSpec(
    comparisons=(
        Comparison("first_name", "first_name", Method.JARO_WINKLER, (0.92, 0.8), Normaliser.NAME),
        Comparison("last_name", "last_name", Method.JARO_WINKLER, (0.92, 0.8), Normaliser.NAME),
        Comparison("email", "email", Method.LEVENSHTEIN, (0.8,), Normaliser.EMAIL),
        Comparison("phone", "phone", Method.EXACT, (), Normaliser.RAW),
        Comparison("country", "country", Method.EXACT, (), Normaliser.RAW),
    ),
    blocking=CONTACT_KEYS,
)
"""The default specification for contacts: names by Jaro-Winkler, the e-mail key by
Levenshtein, phone and country exactly, blocked on :data:`CONTACT_KEYS`."""

ACCOUNT_SPEC: Final = DuplicateSpec(
    comparisons=(
        Comparison("name", "name", Method.TOKEN_SET, (0.9, 0.7), Normaliser.COMPANY),
        Comparison("domain", "domain", Method.EXACT, (), Normaliser.TEXT),
        Comparison("country", "country", Method.EXACT, (), Normaliser.RAW),
    ),
    blocking=ACCOUNT_KEYS,
)
"""The default specification for accounts: the company name without legal form by
token set, domain and country exactly, blocked on :data:`ACCOUNT_KEYS`."""

CONTACT_WEIGHTS: Final = Weights(
    prior=0.01,
    m=(
        (0.03, 0.04, 0.08, 0.85),
        (0.02, 0.03, 0.05, 0.90),
        (0.10, 0.05, 0.85),
        (0.30, 0.70),
        (0.05, 0.95),
    ),
    u=(
        (0.90, 0.05, 0.02, 0.03),
        (0.90, 0.05, 0.03, 0.02),
        (0.97999, 0.02, 0.00001),
        (0.9999, 0.0001),
        (0.40, 0.60),
    ),
)
"""Weights for :data:`CONTACT_SPEC` before any are estimated from the host's data: an
equal e-mail key or phone alone makes a duplicate; an equal name with a similar address
(``ada.smith1@`` and ``ada.smith2@``: two mailboxes as often as a typo) a pair to review;
a different address weighs strongly against, so an equal name alone is no duplicate."""

ACCOUNT_WEIGHTS: Final = Weights(
    prior=0.01,
    m=((0.04, 0.06, 0.10, 0.80), (0.20, 0.80), (0.05, 0.95)),
    u=((0.90, 0.07, 0.029, 0.001), (0.9999, 0.0001), (0.40, 0.60)),
)
"""Weights for :data:`ACCOUNT_SPEC` before any are estimated: an equal domain makes a
duplicate, an equal company name alone a pair to review."""


def default_model(entity: type[Contact] | type[Account]) -> DuplicateModel:
    """The default model of contacts or accounts."""
    if entity is Account:
        return DuplicateModel(ACCOUNT_SPEC, ACCOUNT_WEIGHTS)
    return DuplicateModel(CONTACT_SPEC, CONTACT_WEIGHTS)
