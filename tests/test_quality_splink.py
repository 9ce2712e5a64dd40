"""The duplicate search on splink (DuckDB): the same pairs and weights as crmkit's own."""

import random
import sys

import pytest

from crmkit.errors import MissingExtra, ValidationError
from crmkit.quality import (
    CONTACT_SPEC,
    Comparison,
    DuplicateSpec,
    Method,
    duplicate_pairs,
    splink_pairs,
)
from tests.test_quality import _people

pytest.importorskip("splink", reason="the splink extra is not installed")

SPEC = DuplicateSpec(
    comparisons=(
        *CONTACT_SPEC.comparisons[:2],
        Comparison("email", "email", Method.LEVENSHTEIN, (0.8,)),
        *CONTACT_SPEC.comparisons[3:],
    ),
    blocking=CONTACT_SPEC.blocking,
)


def test_splink_finds_the_same_pairs_with_the_same_weights() -> None:
    records, truth = _people(random.Random(11), 300)
    ours = duplicate_pairs(records, SPEC)
    theirs = splink_pairs(records, SPEC, ours.model.weights)
    assert [(p.left, p.right) for p in theirs] == [(p.left, p.right) for p in ours.pairs]
    for mine, other in zip(ours.pairs, theirs, strict=True):
        assert other.weight == pytest.approx(mine.weight)
        assert other.verdict is mine.verdict
        assert [(c.comparison, c.level, c.label) for c in other.contributions] == [
            (c.comparison, c.level, c.label) for c in mine.contributions
        ]
    found = {frozenset((p.left, p.right)) for p in theirs}
    assert len(found & truth) / len(truth) >= 0.95


def test_what_splink_cannot_compare_is_refused() -> None:
    spec = DuplicateSpec(
        comparisons=(Comparison("name", "name", Method.TOKEN_SET, (0.9,)),),
        blocking=CONTACT_SPEC.blocking,
    )
    records, _truth = _people(random.Random(1), 10)
    weights = duplicate_pairs(records, CONTACT_SPEC).model.weights
    with pytest.raises(ValidationError) as refused:
        splink_pairs(records, spec, weights)
    assert refused.value.field == "weights"  # the weights do not fit this spec
    from crmkit.quality import Weights  # noqa: PLC0415

    fitting = Weights(0.1, ((0.1, 0.2, 0.7),), ((0.9, 0.07, 0.03),))
    with pytest.raises(ValidationError) as refused:
        splink_pairs(records, spec, fitting)
    assert refused.value.field == "spec"


def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    records, _truth = _people(random.Random(2), 30)
    weights = duplicate_pairs(records, SPEC).model.weights
    monkeypatch.setitem(sys.modules, "splink", None)
    with pytest.raises(MissingExtra) as missing:
        splink_pairs(records, SPEC, weights)
    assert (missing.value.extra, missing.value.package) == ("splink", "splink")
