"""Lead scoring: explainable rule scores, scores learned from won/lost history, evaluation.

* Rule scoring: a :class:`ScoringModel` of :class:`Criterion` (a rule and points) in the
  groups fit and engagement, with decay, caps and bands; :func:`score` and
  :class:`CompiledModel` give a :class:`ScoreCard` with every contribution.
"""

from crmkit.scoring._rules import (
    Band,
    CompiledModel,
    Contribution,
    Criterion,
    Decay,
    DecayKind,
    Group,
    ScoreCard,
    ScoringModel,
    score,
)

__all__ = [
    "Band",
    "CompiledModel",
    "Contribution",
    "Criterion",
    "Decay",
    "DecayKind",
    "Group",
    "ScoreCard",
    "ScoringModel",
    "score",
]
