"""What a learned score is made of: per-feature contributions to the log-odds."""

import math

import attrs

from crmkit.scoring._data import FeatureValue

__all__ = ["Explanation", "FeatureContribution", "sigmoid"]


def sigmoid(log_odds: float) -> float:
    """The probability of the log-odds ``log_odds``, without overflow."""
    if log_odds >= 0:
        return 1.0 / (1.0 + math.exp(-log_odds))
    e = math.exp(log_odds)
    return e / (1.0 + e)


@attrs.frozen
class FeatureContribution:
    """How much one feature of a record moved the log-odds (positive: towards won)."""

    feature: str
    value: FeatureValue
    log_odds: float


@attrs.frozen
class Explanation:
    """A learned score, taken apart.

    ``log_odds`` is ``baseline`` (the intercept, or the prior log-odds of naive Bayes) plus
    every contribution, added in the order listed (largest effect first); ``probability``
    is its logistic. Features that are missing or whose value was not seen in training
    contribute nothing and are not listed.
    """

    log_odds: float
    probability: float
    baseline: float
    contributions: tuple[FeatureContribution, ...]


def explanation(baseline: float, parts: list[FeatureContribution]) -> Explanation:
    parts.sort(key=lambda c: (-abs(c.log_odds), c.feature))
    total = math.fsum([baseline, *(c.log_odds for c in parts)])
    return Explanation(total, sigmoid(total), baseline, tuple(parts))
