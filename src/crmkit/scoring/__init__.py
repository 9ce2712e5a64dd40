"""Lead scoring: explainable rule scores, scores learned from won/lost history, evaluation.

* **Rule scoring**: a :class:`ScoringModel` of :class:`Criterion` (a rule and its points)
  in the groups fit and engagement, with decay, caps and bands. :func:`score` and
  :class:`CompiledModel` give a :class:`ScoreCard` listing every contribution.
* **Learned scoring**: :class:`NaiveBayesScorer` and :class:`LogisticScorer`, fitted on
  :class:`Example` records (built from leads and deals by :func:`lead_examples` and
  :func:`deal_examples`), with ``predict`` and ``explain`` (per-feature log-odds).
* **Criteria from history**: :func:`suggest_criteria` ranks feature values by lift and
  proposes criteria for a rule model.
* **Evaluation**: :func:`roc_auc`, :func:`pr_auc`, :func:`log_loss`, :func:`brier_score`,
  :func:`calibration_table`, :func:`lift_by_decile` and :func:`cross_validate`.

Pure domain logic: no I/O; entities come in as iterables (from a store or anywhere).
"""

from crmkit.scoring._bayes import (
    FieldCounts,
    LevelCounts,
    NaiveBayesScorer,
    NumericBins,
    TeamCounts,
)
from crmkit.scoring._data import (
    Example,
    FeatureValue,
    Record,
    deal_examples,
    deal_record,
    lead_examples,
    lead_record,
)
from crmkit.scoring._explain import Explanation, FeatureContribution
from crmkit.scoring._logistic import CategoryWeights, LogisticScorer, NumericWeight
from crmkit.scoring._metrics import (
    CalibrationBin,
    CrossValidation,
    DecileLift,
    FoldResult,
    Predictor,
    brier_score,
    calibration_table,
    cross_validate,
    lift_by_decile,
    log_loss,
    pr_auc,
    roc_auc,
    stratified_folds,
)
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
from crmkit.scoring._suggest import Suggestion, suggest_criteria, wilson_interval

__all__ = [
    "Band",
    "CalibrationBin",
    "CategoryWeights",
    "CompiledModel",
    "Contribution",
    "Criterion",
    "CrossValidation",
    "Decay",
    "DecayKind",
    "DecileLift",
    "Example",
    "Explanation",
    "FeatureContribution",
    "FeatureValue",
    "FieldCounts",
    "FoldResult",
    "Group",
    "LevelCounts",
    "LogisticScorer",
    "NaiveBayesScorer",
    "NumericBins",
    "NumericWeight",
    "Predictor",
    "Record",
    "ScoreCard",
    "ScoringModel",
    "Suggestion",
    "TeamCounts",
    "brier_score",
    "calibration_table",
    "cross_validate",
    "deal_examples",
    "deal_record",
    "lead_examples",
    "lead_record",
    "lift_by_decile",
    "log_loss",
    "pr_auc",
    "roc_auc",
    "score",
    "stratified_folds",
    "suggest_criteria",
    "wilson_interval",
]
