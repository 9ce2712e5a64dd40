"""Criteria from history: which feature values convert better (or worse) than average.

For every text or true/false value of every feature, :func:`suggest_criteria` counts the
examples with it and the won ones among them, and puts a Wilson score interval around
that conversion rate. A value is suggested when the whole interval lies above the
overall conversion rate (positive points) or below it (negative points). The points are
``scale * log2(lift)`` of the *conservative* end of the interval (the lower end for a
good value, the upper end for a bad one), rounded to whole points: a value that at
least doubles conversion earns ``scale`` points.

Each suggestion carries a ready :class:`~crmkit.scoring.Criterion` when its feature is
something a rule can name: a field or ``custom.<key>`` of the scored entity,
``tag.<tag>``, or ``contact.<field>``, ``contact.custom.<key>`` and ``contact.tag.<tag>``
of its contact (the names :func:`~crmkit.scoring.lead_record` and
:func:`~crmkit.scoring.deal_record` write).
"""

import math
from collections.abc import Iterable
from statistics import NormalDist

import attrs

from crmkit.errors import InvalidRule, ValidationError
from crmkit.models._fields import finite
from crmkit.models.rules import Compare, Condition, HasTag, Op, Rule, RuleEntity
from crmkit.scoring._data import Example, checked_examples
from crmkit.scoring._rules import Criterion

__all__ = ["Suggestion", "suggest_criteria", "wilson_interval"]


def wilson_interval(won: int, count: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of the rate ``won / count`` at ``confidence``."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count < 2**63:
        raise ValidationError("count", count, "expected an int from 1 to 2**63 - 1")
    if isinstance(won, bool) or not isinstance(won, int) or not 0 <= won <= count:
        raise ValidationError("won", won, f"expected an int from 0 to {count}")
    if not isinstance(confidence, float) or not 0.5 <= confidence < 1:
        raise ValidationError("confidence", confidence, "expected a float from 0.5 to below 1")
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    rate = won / count
    denominator = 1 + z * z / count
    centre = (rate + z * z / (2 * count)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / count + z * z / (4 * count * count)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@attrs.frozen
class Suggestion:
    """A feature value whose conversion rate differs from the average with confidence."""

    feature: str
    value: str | bool
    count: int
    won: int
    rate: float
    lift: float
    """``rate`` over the overall conversion rate."""
    low: float
    high: float
    """The confidence interval of ``rate``."""
    points: float
    criterion: Criterion | None
    """The criterion to accept into a rule model; ``None`` when no rule names the feature."""


def _condition(name: str, value: str | bool) -> tuple[bool, Condition] | None:
    """``(on_contact, condition)`` for a record feature, if a rule can name it."""
    on_contact = name.startswith("contact.")
    field = name.removeprefix("contact.")
    if field.startswith("tag."):
        return (on_contact, HasTag(field.removeprefix("tag."))) if value is True else None
    return on_contact, Compare(field, Op.EQ, value)


def _criterion(entity: RuleEntity, name: str, value: str | bool, points: float) -> Criterion | None:
    found = _condition(name, value)
    if found is None:
        return None
    on_contact, condition = found
    try:
        rule = Rule(RuleEntity.CONTACT if on_contact else entity, condition)
    except InvalidRule:
        return None
    shown = "yes" if value is True else "no" if value is False else value
    return Criterion(f"{name} = {shown}", rule, points)


def suggest_criteria(  # noqa: PLR0912
    examples: Iterable[Example],
    *,
    entity: RuleEntity = RuleEntity.LEAD,
    min_count: int = 20,
    confidence: float = 0.95,
    scale: float = 10.0,
    limit: int = 20,
) -> tuple[Suggestion, ...]:
    """Feature values that convert better or worse than average, largest effect first.

    Values held by fewer than ``min_count`` examples are not considered. ``entity`` is
    the entity the records describe (their criteria are rules over it).
    """
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValidationError("min_count", min_count, "expected an int >= 1")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
        raise ValidationError("scale", scale, "expected a positive number")
    if not finite(scale):
        raise ValidationError("scale", scale, "expected a positive number")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValidationError("limit", limit, "expected an int >= 1")
    if entity not in (RuleEntity.LEAD, RuleEntity.DEAL, RuleEntity.CONTACT):
        raise ValidationError("entity", entity, "expected lead, deal or contact")
    wilson_interval(1, 1, confidence)  # checks confidence
    found = checked_examples(examples)
    base = sum(e.won for e in found) / len(found)
    counts: dict[tuple[str, str | bool], list[int]] = {}
    for example in found:
        for name, value in example.record.items():
            if isinstance(value, str | bool):
                entry = counts.setdefault((name, value), [0, 0])
                entry[0] += 1
                entry[1] += example.won
    suggestions = []
    for (name, value), (count, won) in counts.items():
        if count < min_count:
            continue
        low, high = wilson_interval(won, count, confidence)
        if low > base:
            bound = low
        elif high < base:
            bound = max(high, 1e-9)
        else:
            continue
        points = float(round(scale * math.log2(bound / base)))
        if points == 0:
            continue
        criterion = _criterion(entity, name, value, points)
        rate = won / count
        suggestions.append(
            Suggestion(name, value, count, won, rate, rate / base, low, high, points, criterion)
        )
    suggestions.sort(key=lambda s: (-abs(s.points), -s.count, s.feature, str(s.value)))
    return tuple(suggestions[:limit])
