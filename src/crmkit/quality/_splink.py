"""The same duplicate search on splink (extra ``splink``), for data beyond one process.

:func:`splink_pairs` turns a :class:`~crmkit.quality.DuplicateSpec` and its
:class:`~crmkit.quality.Weights` into splink settings: each blocking key becomes a column
of its values and an equality blocking rule, each comparison a column of its prepared
values and the same levels in SQL, each level its ``m`` and ``u``. splink (on DuckDB here,
Spark where the host has a cluster) does the blocking, comparing and scoring; its pairs
come back as :class:`~crmkit.quality.DuplicatePair` with the weight of each comparison.
"""

import math
from collections.abc import Iterable
from datetime import date
from typing import Any

from crmkit._extras import import_extra
from crmkit.errors import ValidationError
from crmkit.quality._compare import Comparison, Method
from crmkit.quality._match import (
    Contribution,
    DuplicatePair,
    DuplicateSpec,
    Weights,
    _records,
    id_of,
)

__all__ = ["splink_pairs", "splink_weights"]


def _levels_sql(index: int, comparison: Comparison) -> list[str]:
    """The SQL condition of each level, "equal" first, "different" (ELSE) last."""
    left, right = f'"c{index}_l"', f'"c{index}_r"'
    conditions = [f"{left} = {right}"]
    for threshold in comparison.thresholds:
        match comparison.method:
            case Method.JARO_WINKLER:
                conditions.append(f"jaro_winkler_similarity({left}, {right}) >= {threshold}")
            case Method.LEVENSHTEIN:
                conditions.append(
                    f"1.0 - levenshtein({left}, {right}) / "
                    f"greatest(length({left}), length({right})) >= {threshold}"
                )
            case Method.DATE:
                conditions.append(f"abs(date_diff('day', {left}, {right})) <= {threshold}")
            case Method.NUMBER:
                conditions.append(
                    f"abs({left} - {right}) / greatest(abs({left}), abs({right})) <= {threshold}"
                )
            case _:
                raise ValidationError(
                    "spec",
                    comparison.method,
                    f"comparison {comparison.name!r}: splink_pairs runs exact, Jaro-Winkler, "
                    "Levenshtein, date and number comparisons",
                )
    return [*conditions, "ELSE"]


def _settings(spec: DuplicateSpec, weights: Weights | None) -> dict[str, Any]:
    """splink settings of ``spec``; without ``weights`` the levels have no ``m`` and
    ``u`` (splink starts from its defaults when it trains them)."""
    comparisons = []
    for index, comparison in enumerate(spec.comparisons):
        labels = list(reversed(comparison.labels))  # equal ... different
        size = len(labels)
        m = list(reversed(weights.m[index])) if weights else [None] * size
        u = list(reversed(weights.u[index])) if weights else [None] * size
        levels: list[dict[str, Any]] = [
            {
                "sql_condition": f'"c{index}_l" IS NULL OR "c{index}_r" IS NULL',
                "label_for_charts": "missing",
                "is_null_level": True,
            }
        ]
        for condition, label, m_level, u_level in zip(
            _levels_sql(index, comparison), labels, m, u, strict=True
        ):
            level: dict[str, Any] = {"sql_condition": condition, "label_for_charts": label}
            if m_level is not None:
                level |= {"m_probability": m_level, "u_probability": u_level}
            levels.append(level)
        comparisons.append({"output_column_name": f"c{index}", "comparison_levels": levels})
    prior = {} if weights is None else {"probability_two_random_records_match": weights.prior}
    return {
        **prior,
        "link_type": "dedupe_only",
        "unique_id_column_name": "unique_id",
        "blocking_rules_to_generate_predictions": [
            f'l."b{index}" = r."b{index}"' for index in range(len(spec.blocking))
        ],
        "comparisons": comparisons,
        "retain_matching_columns": False,
        "retain_intermediate_calculation_columns": True,
    }


def _column(values: list[object]) -> list[object]:
    return [v.isoformat() if isinstance(v, date) else v for v in values]


def _linker(
    records: Iterable[object], spec: DuplicateSpec, weights: Weights | None
) -> tuple[Any, dict[str, Any]] | None:
    """A splink linker over ``records`` on an in-process DuckDB database, and the ids by
    their text (``None`` for fewer than two records)."""
    settings = _settings(spec, weights)  # refuses unsupported comparisons before import
    splink: Any = import_extra("splink", extra="splink", feature="duplicate search on splink")
    duckdb_api: Any = import_extra(
        "splink.backends.duckdb", extra="splink", feature="duplicate search on splink"
    )
    listed = _records(records)
    ids = [id_of(record) for record in listed]
    if len(set(ids)) != len(ids):
        raise ValidationError("records", len(ids), "an id was given twice")
    by_key = {str(id): id for id in ids}
    table: dict[str, list[object]] = {"unique_id": list(by_key)}
    for index, key in enumerate(spec.blocking):
        table[f"b{index}"] = list(key.values(listed))
    for index, comparison in enumerate(spec.comparisons):
        table[f"c{index}"] = _column(comparison.prepare_many(listed))
    if len(listed) < 2:
        return None
    pandas: Any = import_extra("pandas", extra="splink", feature="duplicate search on splink")
    frame = pandas.DataFrame(table)
    for index, comparison in enumerate(spec.comparisons):
        if comparison.method is Method.DATE:
            frame[f"c{index}"] = pandas.to_datetime(frame[f"c{index}"])
    return splink.Linker(frame, settings, db_api=duckdb_api.DuckDBAPI()), by_key


def splink_weights(
    records: Iterable[object],
    spec: DuplicateSpec,
    *,
    start: Weights | None = None,
    max_pairs: int = 1_000_000,
    seed: int = 0,
) -> Weights:
    """``m`` and ``u`` of ``spec`` trained by splink itself on ``records`` (DuckDB), the
    splink way: ``u`` from up to ``max_pairs`` random pairs
    (``estimate_u_using_random_sampling``, ``seed``), then ``m`` by expectation
    maximisation over the candidate pairs of each blocking key in turn
    (``estimate_parameters_using_expectation_maximisation``), starting from ``start``
    (default: splink's own starting values). The prior is ``start``'s, else splink's
    default. Use the result with :func:`splink_pairs` or
    :func:`~crmkit.quality.duplicate_pairs`; needs the extra ``splink``.

    Fewer than two records raise :class:`~crmkit.errors.ValidationError` (``records``);
    a level that no pair reached keeps a tiny probability instead of none.
    """
    if not isinstance(spec, DuplicateSpec):
        raise ValidationError("spec", spec, "expected a DuplicateSpec")
    if start is not None:
        if not isinstance(start, Weights):
            raise ValidationError("start", start, "expected Weights or None")
        start.fits(spec)
    for name, value in (("max_pairs", max_pairs), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValidationError(name, value, "expected a whole number of 0 or more")
    if max_pairs < 1:
        raise ValidationError("max_pairs", max_pairs, "expected at least one pair")
    made = _linker(records, spec, start)
    if made is None:
        raise ValidationError("records", records, "fewer than two records to learn from")
    linker, _ = made
    linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs, seed=seed)
    for index in range(len(spec.blocking)):
        linker.training.estimate_parameters_using_expectation_maximisation(
            f'l."b{index}" = r."b{index}"'
        )
    model = linker.misc.save_model_to_json()
    return _weights_of(model, spec)


def _weights_of(model: dict[str, Any], spec: DuplicateSpec) -> Weights:
    """crmkit :class:`Weights` from a splink model: levels back in crmkit's order
    (different ... equal), the null level left out, unreached levels kept possible."""
    floor = 1e-9
    m: list[tuple[float, ...]] = []
    u: list[tuple[float, ...]] = []
    for index, _comparison in enumerate(spec.comparisons):
        levels = [
            level
            for level in model["comparisons"][index]["comparison_levels"]
            if not level.get("is_null_level")
        ]
        for name, found in (("m_probability", m), ("u_probability", u)):
            values = [max(float(level.get(name) or 0.0), floor) for level in levels]
            total = sum(values)
            found.append(tuple(reversed([v / total for v in values])))
    prior = float(model.get("probability_two_random_records_match", 1e-4))
    return Weights(prior, tuple(m), tuple(u))


def splink_pairs(
    records: Iterable[object], spec: DuplicateSpec, weights: Weights
) -> list[DuplicatePair]:
    """The pairs among ``records`` at or above the review threshold, found by splink on
    an in-process DuckDB database with ``spec`` and ``weights`` (estimate them with
    :func:`~crmkit.quality.estimate_weights` on a sample, or give them), most likely
    first; needs the extra ``splink``.

    Values are normalised by crmkit before splink sees them, so the blocks are the same
    as :func:`~crmkit.quality.duplicate_pairs` makes, and so are the levels of exact,
    date and number comparisons; Jaro-Winkler and Levenshtein use DuckDB's functions,
    which can differ in the last decimals. Token-set comparisons have no DuckDB
    equivalent and are refused (:class:`~crmkit.errors.ValidationError`, field
    ``spec``).
    """
    if not isinstance(spec, DuplicateSpec):
        raise ValidationError("spec", spec, "expected a DuplicateSpec")
    if not isinstance(weights, Weights):
        raise ValidationError("weights", weights, "expected Weights")
    weights.fits(spec)
    made = _linker(records, spec, weights)
    if made is None:
        return []
    linker, by_key = made
    predicted = linker.inference.predict(threshold_match_probability=spec.review)
    found = []
    level_weights = weights.level_weights()
    for row in predicted.as_record_dict():
        contributions = []
        for index, comparison in enumerate(spec.comparisons):
            # splink reports the Bayes factor m/u of the level: the level is the one with
            # that factor, "missing" (factor 1, no level) when a value was missing.
            weight = math.log2(float(row[f"bf_c{index}"]))
            known = level_weights[index]
            nearest = min(range(len(known)), key=lambda n: abs(known[n] - weight))
            level: int | None = nearest
            if abs(known[nearest] - weight) > 1e-6:
                level, weight = None, 0.0
            label = "missing" if level is None else comparison.labels[level]
            contributions.append(Contribution(comparison.name, level, label, weight))
        left, right = by_key[str(row["unique_id_l"])], by_key[str(row["unique_id_r"])]
        if str(left) > str(right):
            left, right = right, left
        probability = float(row["match_probability"])
        found.append(
            DuplicatePair(
                left,
                right,
                float(row["match_weight"]),
                probability,
                spec.verdict(probability),
                tuple(contributions),
            )
        )
    found.sort(key=lambda p: (-p.weight, str(p.left), str(p.right)))
    return found
