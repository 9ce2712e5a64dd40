"""The funnel: how many subjects reached at least each stage, step and overall
conversion, and the time between stages, per cohort.

"Reached at least" makes a skipped stage count as passed, and a subject created
(imported) at a stage counts as having reached it and every stage before it; the rows
say how many of a stage's count are such imports, since they have no recorded entry.
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from itertools import pairwise

import attrs

from crmkit.analytics._replay import MAX_RANK, Reach, check_ranks, check_rows
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
    "stage_durations",
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
    is). ``median_in_stage`` and ``p90_in_stage`` are the time spent in this stage
    itself: from a move into it to the subject's next move, over the ``visits`` that
    ended before the funnel's time (a skipped stage has no visit; ``None`` without
    one)."""

    cohort: str
    stage: str
    reached: int
    imported: int
    step_conversion: float | None
    overall_conversion: float | None
    median_time: timedelta | None
    p90_time: timedelta | None
    timed: int
    median_in_stage: timedelta | None = None
    p90_in_stage: timedelta | None = None
    visits: int = 0


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


def _check_stage_keys(stages: object) -> tuple[str, ...]:
    if isinstance(stages, str | bytes) or not isinstance(stages, Sequence):
        raise ValidationError("stages", stages, "expected a sequence of stage keys")
    if not stages or len(stages) > MAX_RANK + 1:
        raise ValidationError("stages", stages, f"a funnel has 1 to {MAX_RANK + 1} stages")
    found = tuple(stages)
    if not all(isinstance(stage, str) for stage in found):
        raise ValidationError("stages", stages, "expected a sequence of stage keys")
    return found


def _check_durations(durations: object) -> dict[int, list[timedelta]]:
    """``durations`` (rank -> times taken to reach it) with each list sorted."""
    if durations is None:
        return {}
    if not isinstance(durations, Mapping):
        raise ValidationError("durations", durations, "expected rank -> timedeltas")
    found: dict[int, list[timedelta]] = {}
    for rank, times in durations.items():
        if (
            type(rank) is not int
            or isinstance(times, str | bytes)
            or not isinstance(times, Iterable)
        ):
            raise ValidationError("durations", durations, "expected rank -> timedeltas")
        taken = list(times)
        if not all(isinstance(t, timedelta) for t in taken):
            raise ValidationError(f"durations[{rank}]", times, "expected timedeltas")
        found[rank] = sorted(taken)
    return found


def stage_durations(
    histories: Iterable[Sequence[StageChange]], stages: Sequence[str], until: datetime
) -> dict[str, list[timedelta]]:
    """For each of ``stages``, how long each visit of it lasted: from a move into the
    stage to the subject's next move (each history in time order), for the visits that
    ended before ``until`` (a subject still in a stage is not counted there)."""
    until = ensure_utc(until, "until")
    wanted = frozenset(_check_stage_keys(stages))
    supplied: object = histories  # checked as the object a host may pass
    if isinstance(supplied, str | bytes) or not isinstance(supplied, Iterable):
        raise ValidationError("histories", histories, "expected sequences of StageChanges")
    found: dict[str, list[timedelta]] = {}
    for history in histories:
        if not isinstance(history, Sequence) or not all(
            isinstance(change, StageChange) for change in history
        ):
            raise ValidationError("histories", history, "expected sequences of StageChanges")
        ordered = sorted((c for c in history if c.at < until), key=lambda c: (c.at, c.id))
        for entered, left in pairwise(ordered):
            if entered.to_stage in wanted:
                found.setdefault(entered.to_stage, []).append(left.at - entered.at)
    return found


def _check_in_stage(in_stage: object) -> dict[str, list[timedelta]]:
    """``in_stage`` (stage -> visit lengths) with each list sorted."""
    if in_stage is None:
        return {}
    if not isinstance(in_stage, Mapping):
        raise ValidationError("in_stage", in_stage, "expected stage -> timedeltas")
    found: dict[str, list[timedelta]] = {}
    for stage, times in in_stage.items():
        if (
            not isinstance(stage, str)
            or isinstance(times, str | bytes)
            or not isinstance(times, Iterable)
        ):
            raise ValidationError("in_stage", in_stage, "expected stage -> timedeltas")
        taken = list(times)
        if not all(isinstance(t, timedelta) for t in taken):
            raise ValidationError(f"in_stage[{stage!r}]", times, "expected timedeltas")
        found[stage] = sorted(taken)
    return found


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def funnel_rows(
    cohort: str,
    reach: Iterable[Reach],
    stages: Sequence[str],
    durations: Mapping[int, Sequence[timedelta]] | None = None,
    in_stage: Mapping[str, Sequence[timedelta]] | None = None,
) -> list[FunnelRow]:
    """The rows of one cohort from its :class:`Reach` rows (ranks index ``stages``);
    ``durations`` (:func:`entry_durations`) give the time between stages, ``in_stage``
    (:func:`stage_durations`) the time in each stage."""
    if not isinstance(cohort, str):
        raise ValidationError("cohort", cohort, "expected a cohort label")
    reach = check_rows(reach, Reach, "reach")
    stages = _check_stage_keys(stages)
    times = _check_durations(durations)
    spent = _check_in_stage(in_stage)
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
        taken = times.get(k, [])
        visits = spent.get(stage, [])
        rows.append(
            FunnelRow(
                cohort=cohort,
                stage=stage,
                reached=reached[k],
                imported=imported[k],
                step_conversion=None if k == 0 else _ratio(reached[k], reached[k - 1]),
                overall_conversion=None if k == 0 else _ratio(reached[k], reached[0]),
                median_time=nearest_rank(taken, 0.5),
                p90_time=nearest_rank(taken, 0.9),
                timed=len(taken),
                median_in_stage=nearest_rank(visits, 0.5),
                p90_in_stage=nearest_rank(visits, 0.9),
                visits=len(visits),
            )
        )
    return rows
