"""A/B tests: deterministic weighted variant assignment and a two-proportion test.

Assignment
----------
:func:`assign_variant` hashes ``f"{experiment}:{contact_id}"`` (UTF-8, the contact id in
its canonical lower-case, hyphenated form) with SHA-256, reads the first 8 bytes of the
digest as a big-endian integer ``x`` and places the contact at the point ``x / 2**64`` of
``[0, 1)``. The interval is cut into one bucket per variant, in the order the variants
are given, each as wide as the variant's share of the total weight; the contact gets the
variant whose bucket holds its point. The arithmetic is exact (fractions), so the
assignment is the same in every process, on every machine and Python version, and never
uses the built-in ``hash``. Consequences: the same contact always gets the same variant
of an experiment; another experiment name reshuffles the contacts independently;
reordering the variants or changing their weights moves contacts between variants.

Significance
------------
:func:`two_proportion_test` compares the conversion rates of two variants with the
two-sided z test for two proportions (the normal approximation, sound when each variant
has at least about 5 conversions and 5 non-conversions): the z statistic uses the
*pooled* standard error, the confidence interval for the difference ``rate_b - rate_a``
the *unpooled* (Wald) one, as textbooks do.
"""

import hashlib
import math
from collections.abc import Mapping
from fractions import Fraction
from statistics import NormalDist
from typing import Final
from uuid import UUID

import attrs

from crmkit.errors import ValidationError, short_repr
from crmkit.models._fields import finite

__all__ = ["ProportionTest", "assign_variant", "two_proportion_test"]

_SCALE: Final = 2**64
_STANDARD_NORMAL: Final = NormalDist()


def assign_variant(experiment: str, contact_id: UUID, variants: Mapping[str, float | int]) -> str:
    """The variant of ``experiment`` that ``contact_id`` sees (module documentation).

    ``variants`` maps each variant name to its weight, a positive number; weights are
    relative (``{"a": 1, "b": 3}`` sends a quarter of the contacts to ``a``).

    >>> contact = UUID("6f1c1ef2-8f0e-4a44-9a4b-2f5f6d1d2b3c")
    >>> assign_variant("subject-line", contact, {"control": 1, "emoji": 1})
    'emoji'
    >>> assign_variant("subject-line", contact, {"control": 1, "emoji": 1})
    'emoji'
    """
    name = _check_experiment(experiment)
    if not isinstance(contact_id, UUID):
        raise ValidationError("contact_id", contact_id, "expected a contact id (UUID)")
    weights = _check_variants(variants)
    digest = hashlib.sha256(f"{name}:{contact_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big")  # 0 <= point < 2**64
    total = sum(weights.values(), Fraction(0))
    bound = Fraction(0)
    for variant, weight in weights.items():
        bound += weight
        # point / 2**64 < bound / total, exactly
        if point * total < bound * _SCALE:
            return variant
    raise AssertionError("unreachable: the buckets cover [0, 1)")  # pragma: no cover


@attrs.frozen(kw_only=True)
class ProportionTest:
    """The result of :func:`two_proportion_test`.

    ``rate_a`` and ``rate_b`` are the conversion rates, ``difference`` is
    ``rate_b - rate_a``, ``z`` the test statistic (pooled standard error; positive when
    ``b`` converts better), ``p_value`` the two-sided p-value, ``ci_low`` and
    ``ci_high`` the Wald confidence interval of ``difference`` at ``confidence``
    (clipped to ``[-1, 1]``), and ``significant`` whether ``p_value < 1 - confidence``.
    """

    rate_a: float
    rate_b: float
    difference: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float
    confidence: float
    significant: bool


def two_proportion_test(
    conversions_a: int,
    n_a: int,
    conversions_b: int,
    n_b: int,
    *,
    confidence: float = 0.95,
) -> ProportionTest:
    """Compare the conversion rates ``conversions_a / n_a`` and ``conversions_b / n_b``.

    Both variants need at least one trial, and conversions lie between 0 and the number
    of trials. When both rates are 0 (or both 1) there is no variance: ``z`` is 0 and
    ``p_value`` 1, and a rate of 0 or 1 in both variants gives a zero-width interval (the
    known weakness of the Wald interval at the extremes).

    >>> result = two_proportion_test(200, 1000, 250, 1000)
    >>> round(result.z, 2), round(result.p_value, 4), result.significant
    (2.68, 0.0074, True)
    >>> round(result.ci_low, 4), round(result.ci_high, 4)
    (0.0135, 0.0865)
    """
    _check_count("n_a", n_a, 1)
    _check_count("n_b", n_b, 1)
    _check_count("conversions_a", conversions_a, 0, n_a)
    _check_count("conversions_b", conversions_b, 0, n_b)
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, float | int)
        or not 0 < confidence < 1
    ):
        raise ValidationError("confidence", confidence, "a confidence level lies between 0 and 1")

    rate_a = conversions_a / n_a
    rate_b = conversions_b / n_b
    difference = rate_b - rate_a
    pooled = (conversions_a + conversions_b) / (n_a + n_b)
    pooled_se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if pooled_se > 0:
        z = difference / pooled_se
        p_value = math.erfc(abs(z) / math.sqrt(2))  # 2 * (1 - Phi(|z|)), exact in the tails
    else:  # every trial converted, or none did: the rates are equal
        z = 0.0
        p_value = 1.0
    wald_se = math.sqrt(rate_a * (1 - rate_a) / n_a + rate_b * (1 - rate_b) / n_b)
    margin = _STANDARD_NORMAL.inv_cdf(1 - (1 - confidence) / 2) * wald_se
    return ProportionTest(
        rate_a=rate_a,
        rate_b=rate_b,
        difference=difference,
        z=z,
        p_value=p_value,
        ci_low=max(-1.0, difference - margin),
        ci_high=min(1.0, difference + margin),
        confidence=float(confidence),
        significant=p_value < 1 - confidence,
    )


def _check_experiment(experiment: object) -> str:
    if not isinstance(experiment, str) or not experiment.strip():
        raise ValidationError("experiment", experiment, "an experiment is named by a text")
    try:
        experiment.encode()
    except UnicodeEncodeError:
        raise ValidationError(
            "experiment", experiment, "an experiment name must be valid Unicode"
        ) from None
    return experiment


def _check_variants(variants: object) -> dict[str, Fraction]:
    if not isinstance(variants, Mapping) or not variants:
        raise ValidationError(
            "variants", variants, "expected a mapping of at least one variant name to its weight"
        )
    weights: dict[str, Fraction] = {}
    for name, weight in variants.items():
        if not isinstance(name, str) or not name.strip():
            raise ValidationError(
                f"variants[{short_repr(name)}]", name, "a variant is named by a text"
            )
        if (
            isinstance(weight, bool)
            or not isinstance(weight, float | int)
            or not finite(weight)
            or weight <= 0
        ):
            raise ValidationError(
                f"variants[{short_repr(name)}]",
                weight,
                "a weight is a finite number greater than 0",
            )
        weights[name] = Fraction(weight)
    return weights


def _check_count(name: str, value: object, low: int, high: int | None = None) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or value >= 2**63  # a count a database can hold; and short enough to print
        or (high is not None and value > high)
    ):
        bounds = f"at least {low}" if high is None else f"from {low} to {high}"
        raise ValidationError(name, value, f"expected a whole number {bounds}")
