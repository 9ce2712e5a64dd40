"""A/B tests: stable weighted assignment by SHA-256 and the two-proportion z test."""

import math
import subprocess
import sys
from collections import Counter
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmkit.errors import ValidationError
from crmkit.segmentation import ProportionTest, assign_variant, two_proportion_test

CONTACT = UUID("0b6f2a3e-5d1c-4f7a-9e42-7c1d8b9a0f11")
IDS = [UUID(int=(i * 0x9E3779B97F4A7C15) % 2**128) for i in range(20_000)]

# ---------------------------------------------------------------------------- assignment


@pytest.mark.parametrize(
    ("experiment", "three_way", "half_half"),
    [
        # SHA-256 points of this contact: 0.4259, 0.8264 and 0.1361
        ("newsletter-subject", "a", "control"),
        ("pricing-page", "b", "treatment"),
        ("checkout", "control", "control"),
    ],
)
def test_assignment_is_fixed_for_a_contact_and_experiment(
    experiment: str, three_way: str, half_half: str
) -> None:
    assert assign_variant(experiment, CONTACT, {"control": 1, "a": 1, "b": 2}) == three_way
    assert assign_variant(experiment, CONTACT, {"control": 0.5, "treatment": 0.5}) == half_half


def test_assignment_is_the_same_in_another_process() -> None:
    code = (
        "from uuid import UUID\n"
        "from crmkit.segmentation import assign_variant\n"
        "ids = [UUID(int=i) for i in range(200)]\n"
        "print(''.join(assign_variant('exp', c, {'a': 1, 'b': 1, 'c': 1}) for c in ids))\n"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345"},
    ).stdout.strip()
    here = "".join(assign_variant("exp", UUID(int=i), {"a": 1, "b": 1, "c": 1}) for i in range(200))
    assert other == here


def test_weights_are_respected() -> None:
    weights = {"a": 1, "b": 3, "c": 6}
    counts = Counter(assign_variant("weights", c, weights) for c in IDS)
    for variant, weight in weights.items():
        # the standard deviation of a share is at most 0.0036 here: allow about 4 of them
        assert counts[variant] / len(IDS) == pytest.approx(weight / 10, abs=0.015)


def test_float_weights_are_relative() -> None:
    counts = Counter(assign_variant("floats", c, {"x": 0.25, "y": 0.75}) for c in IDS)
    assert counts["x"] / len(IDS) == pytest.approx(0.25, abs=0.015)


def test_another_experiment_reshuffles_the_contacts() -> None:
    split = {"a": 1, "b": 1}
    same = sum(assign_variant("one", c, split) == assign_variant("two", c, split) for c in IDS)
    assert same / len(IDS) == pytest.approx(0.5, abs=0.02)  # independent, not identical


def test_variants_are_cut_in_the_given_order() -> None:
    forward = [assign_variant("order", c, {"a": 1, "b": 1}) for c in IDS[:500]]
    backward = [assign_variant("order", c, {"b": 1, "a": 1}) for c in IDS[:500]]
    assert forward != backward
    assert {assign_variant("order", c, {"only": 0.001}) for c in IDS[:500]} == {"only"}


def test_a_larger_weight_only_moves_contacts_into_the_growing_last_variant() -> None:
    small = [assign_variant("ramp", c, {"control": 9, "new": 1}) for c in IDS[:2000]]
    large = [assign_variant("ramp", c, {"control": 9, "new": 3}) for c in IDS[:2000]]
    assert all(b == "new" for a, b in zip(small, large, strict=True) if a == "new")


@pytest.mark.parametrize(
    ("variants", "field", "value"),
    [
        ({}, "variants", {}),
        ({"a": 0}, "variants['a']", 0),
        ({"a": 1, "b": -1}, "variants['b']", -1),
        ({"a": math.inf}, "variants['a']", math.inf),
        ({"a": True}, "variants['a']", True),
        ({"a": "1"}, "variants['a']", "1"),
        ({"": 1}, "variants['']", ""),
        ([("a", 1)], "variants", [("a", 1)]),
    ],
)
def test_bad_variants_are_rejected(variants: object, field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        assign_variant("exp", CONTACT, variants)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert caught.value.value == value


@pytest.mark.parametrize(
    ("experiment", "contact", "field"),
    [("", CONTACT, "experiment"), (7, CONTACT, "experiment"), ("exp", str(CONTACT), "contact_id")],
)
def test_bad_experiment_or_contact_is_rejected(
    experiment: object, contact: object, field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        assign_variant(experiment, contact, {"a": 1})  # type: ignore[arg-type]
    assert caught.value.field == field


# ---------------------------------------------------------------------------- significance


def test_known_values() -> None:
    result = two_proportion_test(200, 1000, 250, 1000)
    # pooled p = 0.225, se = sqrt(0.225 * 0.775 * 2 / 1000) = 0.018675, z = 0.05 / se
    assert result.rate_a == 0.2
    assert result.rate_b == 0.25
    assert result.difference == pytest.approx(0.05)
    assert result.z == pytest.approx(2.6774, abs=1e-4)
    assert result.p_value == pytest.approx(0.00742, abs=1e-5)
    # unpooled se = sqrt(0.2 * 0.8 / 1000 + 0.25 * 0.75 / 1000) = 0.018641; 1.96 * se
    assert result.ci_low == pytest.approx(0.013464, abs=1e-6)
    assert result.ci_high == pytest.approx(0.086536, abs=1e-6)
    assert result.significant
    assert result.confidence == 0.95


def test_a_small_difference_is_not_significant() -> None:
    result = two_proportion_test(50, 1000, 55, 1000)
    # pooled p = 0.0525, se = sqrt(0.0525 * 0.9475 * 2 / 1000) = 0.0099743
    assert result.z == pytest.approx(0.5013, abs=1e-4)
    assert result.p_value == pytest.approx(0.6162, abs=1e-4)
    assert not result.significant
    assert result.ci_low < 0 < result.ci_high


def test_a_higher_confidence_widens_the_interval_and_raises_the_bar() -> None:
    at_95 = two_proportion_test(100, 1000, 128, 1000)
    at_99 = two_proportion_test(100, 1000, 128, 1000, confidence=0.99)
    assert at_95.p_value == at_99.p_value
    assert at_95.significant  # z = 1.970, p = 0.0488
    assert not at_99.significant
    assert at_99.ci_low < at_95.ci_low < at_95.ci_high < at_99.ci_high


@pytest.mark.parametrize(("a", "b"), [(0, 0), (100, 100)])
def test_no_variance_gives_no_evidence(a: int, b: int) -> None:
    result = two_proportion_test(a, 100, b, 100)
    assert (result.z, result.p_value, result.significant) == (0.0, 1.0, False)
    assert (result.difference, result.ci_low, result.ci_high) == (0.0, 0.0, 0.0)


def test_rates_of_zero_and_one_give_a_zero_width_interval() -> None:
    result = two_proportion_test(0, 100, 100, 100)
    assert result.difference == 1.0
    assert (result.ci_low, result.ci_high) == (1.0, 1.0)
    assert result.z == pytest.approx(math.sqrt(200))
    assert result.significant


@pytest.mark.parametrize(
    ("args", "field", "value"),
    [
        ((101, 100, 5, 100), "conversions_a", 101),
        ((5, 100, 7, 6), "conversions_b", 7),
        ((-1, 100, 5, 100), "conversions_a", -1),
        ((0, 0, 5, 100), "n_a", 0),
        ((5, 100, 0, -2), "n_b", -2),
        ((5.0, 100, 5, 100), "conversions_a", 5.0),
        ((5, True, 5, 100), "n_a", True),
    ],
)
def test_bad_counts_are_rejected(args: tuple[object, ...], field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        two_proportion_test(*args)  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.value) == (field, value)


@pytest.mark.parametrize("confidence", [0, 1, 1.5, -0.5, 95, True, "0.95"])
def test_bad_confidence_is_rejected(confidence: object) -> None:
    with pytest.raises(ValidationError) as caught:
        two_proportion_test(5, 100, 6, 100, confidence=confidence)  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.value) == ("confidence", confidence)


@st.composite
def experiments(draw: st.DrawFn) -> tuple[int, int, int, int]:
    n_a = draw(st.integers(min_value=1, max_value=100_000))
    n_b = draw(st.integers(min_value=1, max_value=100_000))
    return draw(st.integers(0, n_a)), n_a, draw(st.integers(0, n_b)), n_b


@given(experiments(), st.floats(min_value=0.5, max_value=0.999))
def test_results_are_consistent(counts: tuple[int, int, int, int], confidence: float) -> None:
    ca, na, cb, nb = counts
    result = two_proportion_test(ca, na, cb, nb, confidence=confidence)
    assert isinstance(result, ProportionTest)
    assert 0 <= result.p_value <= 1
    assert -1 <= result.ci_low <= result.difference <= result.ci_high <= 1
    assert result.significant == (result.p_value < 1 - confidence)
    mirrored = two_proportion_test(cb, nb, ca, na, confidence=confidence)
    assert mirrored.z == -result.z
    assert mirrored.p_value == result.p_value
    assert mirrored.difference == -result.difference


@given(st.integers(min_value=0, max_value=2**128 - 1), st.text(min_size=1).filter(str.strip))
def test_assignment_always_names_a_given_variant(number: int, experiment: str) -> None:
    variants = {"a": 2, "b": 0.5, "c": 1e-9}
    assert assign_variant(experiment, UUID(int=number), variants) in variants
