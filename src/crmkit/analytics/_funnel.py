"""The funnel: how many subjects reached at least each stage, step and overall
conversion, and the time between stages, per cohort.

"Reached at least" makes a skipped stage count as passed, and a subject created
(imported) at a stage counts as having reached it and every stage before it; the rows
say how many of a stage's count are such imports, since they have no recorded entry.
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

import attrs

from crmkit.analytics._replay import Reach, check_ranks
from crmkit.clock import ensure_utc
from crmkit.errors import ValidationError
from crmkit.models import LifecycleStage, StageChange, SubjectKind

__all__ = [
    "Funnel",
    "FunnelRow",
    "entry_durations",
    "funnel_rows",
    "lifecycle_stages",
    "nearest_rank",
]


@attrs.frozen
class FunnelRow:
    """One stage of one cohort's funnel.

    ``reached`` counts the subjects that reached this stage or a later one;
    ``imported`` how many of them have no recorded entry into it or a later one (created
    or imported there). ``step_conversion`` is ``reached`` over the previous stage's,
    ``overall_conversion`` over the first stage's (``None`` for the first stage, or when
    the stage divided by has no subject). ``median_time`` and ``p90_time`` are the time
    from first entering the previous stage to first entering this one (nearest rank,
    over the ``timed`` subjects whose history records an entry into both stages; a
    subject that skipped either stage is not timed for this step; ``None`` when none
    is)."""

    cohort: str
    stage: str
    reached: int
    imported: int
    step_conversion: float | None
    overall_conversion: float | None
    median_time: timedelta | None
    p90_time: timedelta | None
    timed: int


@attrs.frozen
class Funnel:
    """A funnel over ``stages`` of the lifecycle (``pipeline`` ``None``) or of a lead or
    deal pipeline, as of ``at``: one row per cohort and stage, cohorts in the order
    asked, stages in order."""

    subject: SubjectKind
    pipeline: str | None
    at: datetime
    stages: tuple[str, ...]
    rows: tuple[FunnelRow, ...]

    def cohort(self, label: str) -> tuple[FunnelRow, ...]:
        """The rows of one cohort (empty for a label that is not one)."""
        return tuple(row for row in self.rows if row.cohort == label)


def lifecycle_stages() -> tuple[str, ...]:
    """The contact lifecycle in forward order (``other`` is outside it)."""
    return tuple(s.value for s in LifecycleStage if s is not LifecycleStage.OTHER)


def nearest_rank(values: Sequence[timedelta], q: float) -> timedelta | None:
    """The ``q``-quantile of sorted ``values`` by nearest rank (``None`` when empty)."""
    supplied: object = values  # checked as the object a host may pass
    if isinstance(supplied, str | bytes) or not isinstance(supplied, Sequence):
        raise ValidationError("values", values, "expected a sequence of timedeltas")
    if isinstance(q, bool) or not isinstance(q, int | float) or not 0 <= q <= 1:
        raise ValidationError("q", q, "expected a number from 0 to 1")
    if not values:
        return None
    return values[max(0, math.ceil(q * len(values)) - 1)]


def entry_durations(
    histories: Iterable[Sequence[StageChange]], ranks: Mapping[str, int], until: datetime
) -> dict[int, list[timedelta]]:
    """For each rank ``k`` from 1, the time each subject took from first entering rank
    ``k - 1`` to first entering rank ``k``, by its moves before ``until``. Only subjects
    whose history records an entry into both stages count: one that skipped either
    stage (straight from ``k - 1`` to a later one, or into ``k`` from an earlier one) is
    left out of that step rather than counted as a zero-length step, and so is one that
    first entered ``k`` before ``k - 1`` (it moved back)."""
    ranks = check_ranks(ranks)
    until = ensure_utc(until, "until")
    supplied: object = histories  # checked as the object a host may pass
    if isinstance(supplied, str | bytes) or not isinstance(supplied, Iterable):
        raise ValidationError("histories", histories, "expected sequences of StageChanges")
    found: dict[int, list[timedelta]] = {}
    top = max(ranks.values(), default=-1)
    for history in histories:
        if not isinstance(history, Sequence) or not all(
            isinstance(change, StageChange) for change in history
        ):
            raise ValidationError("histories", history, "expected sequences of StageChanges")
        first: dict[int, datetime] = {}
        for change in history:
            rank = ranks.get(change.to_stage)
            if rank is None or change.at >= until:
                continue
            if rank not in first or change.at < first[rank]:
                first[rank] = change.at
        for k in range(1, top + 1):
            if k in first and k - 1 in first and first[k] >= first[k - 1]:
                found.setdefault(k, []).append(first[k] - first[k - 1])
    return found


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def funnel_rows(
    cohort: str,
    reach: Iterable[Reach],
    stages: Sequence[str],
    durations: Mapping[int, Sequence[timedelta]] | None = None,
) -> list[FunnelRow]:
    """The rows of one cohort from its :class:`Reach` rows (ranks index ``stages``)."""
    if not stages:
        raise ValidationError("stages", stages, "a funnel needs at least one stage")
    size = len(stages)
    reached = [0] * size
    imported = [0] * size
    for row in reach:
        for k in range(min(row.reached, size - 1) + 1):
            reached[k] += row.count
            if row.entered is None or row.entered < k:
                imported[k] += row.count
    rows = []
    for k, stage in enumerate(stages):
        times = sorted((durations or {}).get(k, ()))
        rows.append(
            FunnelRow(
                cohort=cohort,
                stage=stage,
                reached=reached[k],
                imported=imported[k],
                step_conversion=None if k == 0 else _ratio(reached[k], reached[k - 1]),
                overall_conversion=None if k == 0 else _ratio(reached[k], reached[0]),
                median_time=nearest_rank(times, 0.5),
                p90_time=nearest_rank(times, 0.9),
                timed=len(times),
            )
        )
    return rows
