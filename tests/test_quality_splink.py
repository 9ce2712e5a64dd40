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


def test_splink_trains_m_and_u_with_its_own_em() -> None:
    """``splink_weights``: u from random pairs and m by splink's EM on each blocking
    key, on DuckDB; the weights it learns without labels find the duplicates."""
    from crmkit.quality import Weights, splink_weights  # noqa: PLC0415

    records, truth = _people(random.Random(11), 300)
    trained = splink_weights(records, SPEC, max_pairs=20_000, seed=3)
    assert isinstance(trained, Weights)
    trained.fits(SPEC)
    for m, u in zip(trained.m, trained.u, strict=True):
        assert m[-1] > u[-1]  # "equal" is likelier among duplicates than among others
        assert m[0] < u[0]  # and "different" less likely
    theirs = splink_pairs(records, SPEC, trained)
    found = {frozenset((p.left, p.right)) for p in theirs}
    assert len(found & truth) / len(truth) >= 0.9
    precision = len(found & truth) / len(found)
    assert precision >= 0.9
    started = splink_weights(
        records, SPEC, start=duplicate_pairs(records, SPEC).model.weights, max_pairs=20_000
    )
    assert started.prior == duplicate_pairs(records, SPEC).model.weights.prior


def test_splink_training_refuses_bad_arguments() -> None:
    from crmkit.quality import splink_weights  # noqa: PLC0415

    records, _ = _people(random.Random(2), 5)
    for kwargs, field in (
        ({"max_pairs": 0}, "max_pairs"),
        ({"seed": -1}, "seed"),
        ({"start": "w"}, "start"),
    ):
        with pytest.raises(ValidationError) as caught:
            splink_weights(records, SPEC, **kwargs)  # type: ignore[arg-type]
        assert caught.value.field == field
    with pytest.raises(ValidationError) as caught:
        splink_weights(records[:1], SPEC)
    assert caught.value.field == "records"
