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

__all__ = ["splink_pairs"]


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


def _settings(spec: DuplicateSpec, weights: Weights) -> dict[str, Any]:
    comparisons = []
    for index, comparison in enumerate(spec.comparisons):
        labels = list(reversed(comparison.labels))  # equal ... different
        m = list(reversed(weights.m[index]))
        u = list(reversed(weights.u[index]))
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
            levels.append(
                {
                    "sql_condition": condition,
                    "label_for_charts": label,
                    "m_probability": m_level,
                    "u_probability": u_level,
                }
            )
        comparisons.append({"output_column_name": f"c{index}", "comparison_levels": levels})
    return {
        "link_type": "dedupe_only",
        "unique_id_column_name": "unique_id",
        "probability_two_random_records_match": weights.prior,
        "blocking_rules_to_generate_predictions": [
            f'l."b{index}" = r."b{index}"' for index in range(len(spec.blocking))
        ],
        "comparisons": comparisons,
        "retain_matching_columns": False,
        "retain_intermediate_calculation_columns": True,
    }


def _column(values: list[object]) -> list[object]:
    return [v.isoformat() if isinstance(v, date) else v for v in values]


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
        return []
    pandas: Any = import_extra("pandas", extra="splink", feature="duplicate search on splink")
    frame = pandas.DataFrame(table)
    for index, comparison in enumerate(spec.comparisons):
        if comparison.method is Method.DATE:
            frame[f"c{index}"] = pandas.to_datetime(frame[f"c{index}"])
    db_api = duckdb_api.DuckDBAPI()
    linker = splink.Linker(frame, settings, db_api=db_api)
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
