"""What a store replays from stage history for the KPIs, and the reference replay.

Two grouped questions go to the store (DESIGN.md 17: aggregates go to the database):

* :class:`Reach`: how far subjects got in an ordered set of stages as of a time;
* :class:`Standing`: where subjects stood as of a time, with the values their last move
  snapshotted (and, for a backtest, where they stood at a later time).

The store answers with these rows, grouped in the database;
:func:`replay_reach` and :func:`replay_standing` are the same answers computed in Python
from models, which the memory store uses and the conformance kit checks adapters against.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import attrs

from crmkit.clock import ensure_utc
from crmkit.errors import ValidationError
from crmkit.models import Contact, Deal, Entity, Lead, StageChange, SubjectKind

__all__ = [
    "REPLAYED",
    "Reach",
    "Standing",
    "check_ranks",
    "check_replay",
    "check_stages",
    "replay_reach",
    "replay_standing",
]

REPLAYED: Mapping[SubjectKind, type[Entity]] = {
    SubjectKind.CONTACT: Contact,
    SubjectKind.LEAD: Lead,
    SubjectKind.DEAL: Deal,
}
"""The subjects whose stage history a store replays, and their entity classes."""


@attrs.frozen
class Reach:
    """``count`` subjects of ``group`` got as far as rank ``reached``, of which the
    highest stage they entered by a recorded move has rank ``entered`` (``None``: no
    recorded move into a ranked stage).

    A subject reached the stages its moves before the time entered or left (a skipped
    stage counts as passed, since reach is "at least"). A subject with no move at all
    counts at its current stage; one whose moves all come later at the lowest stage it
    left from (stages move forward). ``entered < reached`` means the subject was created
    (imported) at a stage beyond the ones it entered: the funnel flags those.
    """

    group: Any
    reached: int
    entered: int | None
    count: int


@attrs.frozen
class Standing:
    """``count`` subjects of ``group`` whose last move before the time went to
    ``stage`` of ``pipeline`` (with ``reason``), snapshotting an amount in ``currency``
    (``None``: no amount) and ``expected_close``; ``amount`` is the sum of those
    snapshots, ``age_seconds`` the sum of the time from each subject's creation to that
    move. ``later`` is the stage the subjects stood in at the later time of a backtest
    (``None`` without one)."""

    group: Any
    pipeline: str | None
    stage: str
    reason: str | None
    currency: str | None
    expected_close: date | None
    later: str | None
    count: int
    amount: Decimal
    age_seconds: float


MAX_RANK = 10_000
"""The highest stage rank accepted: no pipeline has more stages, and the funnel loops
over the ranks."""


def check_ranks(ranks: object) -> dict[str, int]:
    """``ranks`` as a dict of stage key to a rank (an int from 0 to :data:`MAX_RANK`), or
    a ValidationError naming ``ranks``."""
    if not isinstance(ranks, Mapping) or not ranks:
        raise ValidationError("ranks", ranks, "expected a non-empty mapping of stage to rank")
    checked: dict[str, int] = {}
    for key, rank in ranks.items():
        if not isinstance(key, str) or type(rank) is not int or not 0 <= rank <= MAX_RANK:
            raise ValidationError("ranks", ranks, f"ranks map stage keys to ints 0..{MAX_RANK}")
        checked[key] = rank
    return checked


def check_stages(stages: object) -> frozenset[str] | None:
    """``stages`` as a frozenset of stage keys (``None`` stays ``None``), or a
    ValidationError naming ``stages``."""
    if stages is None:
        return None
    if isinstance(stages, str | bytes) or not isinstance(stages, Iterable):
        raise ValidationError("stages", stages, "expected a collection of stage keys")
    found = tuple(stages)  # items are checked before hashing: a list item is refused
    if not all(isinstance(stage, str) for stage in found):
        raise ValidationError("stages", stages, "expected a collection of stage keys")
    return frozenset(found)


def check_replay(
    subject: object,
    until: object,
    pipeline: object,
    since: object = None,
    then: object = None,
) -> tuple[SubjectKind, datetime, str | None, datetime | None, datetime | None]:
    """The checked arguments of a replay query, or a ValidationError naming one."""
    if not isinstance(subject, SubjectKind) or subject not in REPLAYED:
        raise ValidationError("subject", subject, "expected SubjectKind contact, lead or deal")
    high = ensure_utc(until, "until")
    if pipeline is not None and (not isinstance(pipeline, str) or subject is SubjectKind.CONTACT):
        raise ValidationError("pipeline", pipeline, "a lead or deal pipeline key, or None")
    low = None if since is None else ensure_utc(since, "since")
    if low is not None and low > high:
        raise ValidationError("since", since, "is after until")
    later = None if then is None else ensure_utc(then, "then")
    if later is not None and later < high:
        raise ValidationError("then", then, "is before until")
    return subject, high, pipeline, low, later


def _stage_of(item: Entity) -> str | None:
    if isinstance(item, Contact):
        return item.lifecycle_stage.value
    return getattr(item, "stage", None)


def _histories(
    subjects: Iterable[Entity],
    changes: Iterable[StageChange],
    subject: SubjectKind,
    until: datetime,
    pipeline: str | None,
) -> list[tuple[Entity, list[StageChange]]]:
    for name, items in (("subjects", subjects), ("changes", changes)):
        if not isinstance(items, Iterable):
            raise ValidationError(name, items, "expected an iterable")
    subjects = list(subjects)
    changes = list(changes)
    if not all(isinstance(s, Entity) for s in subjects):
        raise ValidationError("subjects", subjects, "expected entities")
    if not all(isinstance(c, StageChange) for c in changes):
        raise ValidationError("changes", changes, "expected StageChanges")
    chosen = [
        s
        for s in subjects
        if s.created_at < until and (pipeline is None or getattr(s, "pipeline", None) == pipeline)
    ]
    wanted = {s.id for s in chosen}
    by_subject: dict[UUID, list[StageChange]] = defaultdict(list)
    for change in changes:
        if (
            change.subject is subject
            and change.subject_id in wanted
            and (pipeline is None or change.pipeline == pipeline)
        ):
            by_subject[change.subject_id].append(change)
    return [(s, sorted(by_subject.get(s.id, ()), key=_order)) for s in chosen]


def _best(*ranks: int | None) -> int | None:
    present = [r for r in ranks if r is not None]
    return max(present) if present else None


def replay_reach(
    subjects: Iterable[Entity],
    changes: Iterable[StageChange],
    subject: SubjectKind,
    ranks: Mapping[str, int],
    *,
    until: datetime,
    pipeline: str | None = None,
    group: str | None = None,
) -> list[Reach]:
    """:class:`Reach` rows of ``subjects`` (already selected by a rule) created before
    ``until``, from ``changes``, as a store gives them (in no particular order)."""
    counts: dict[tuple[Any, int, int | None], int] = defaultdict(int)
    for item, history in _histories(subjects, changes, subject, until, pipeline):
        before = [c for c in history if c.at < until]
        entered = _best(*(ranks.get(c.to_stage) for c in before))
        passed = _best(*(ranks.get(c.from_stage) for c in before if c.from_stage is not None))
        start: int | None = None
        if not history:
            stage = _stage_of(item)
            start = None if stage is None else ranks.get(stage)
        elif not before:
            lowest = [ranks[c.from_stage] for c in history if c.from_stage in ranks]  # type: ignore[index]
            start = min(lowest) if lowest else None
        reached = _best(entered, passed, start)
        if reached is not None:
            key = None if group is None else getattr(item, group)
            counts[(key, reached, entered)] += 1
    return [Reach(g, r, e, n) for (g, r, e), n in counts.items()]


def _order(change: StageChange) -> tuple[datetime, bool, UUID]:
    """History order: by ``at``; at one instant a move comes after an update snapshot
    (``from_stage == to_stage``, which ``update_deal`` records), so an update and the
    move right after it at the same time leave the deal in the stage it moved to; then
    by id."""
    return (change.at, change.from_stage != change.to_stage, change.id)


def replay_standing(
    subjects: Iterable[Entity],
    changes: Iterable[StageChange],
    subject: SubjectKind,
    *,
    until: datetime,
    since: datetime | None = None,
    then: datetime | None = None,
    pipeline: str | None = None,
    group: str | None = None,
    stages: frozenset[str] | None = None,
) -> list[Standing]:
    """:class:`Standing` rows of ``subjects`` (already selected by a rule) created before
    ``until``: each subject's last move before ``until`` (by ``at``, a move after an
    update snapshot of the same instant, then id), kept when
    it is at or after ``since`` and (with ``stages``) went to one of ``stages``; with
    ``then``, ``later`` is the stage of its last move before ``then``."""
    totals: dict[tuple[Any, ...], list[Any]] = {}
    for item, history in _histories(subjects, changes, subject, until, pipeline):
        before = [c for c in history if c.at < until]
        if not before or (since is not None and before[-1].at < since):
            continue
        last = before[-1]
        if stages is not None and last.to_stage not in stages:
            continue
        later = None
        if then is not None:
            later = [c for c in history if c.at < then][-1].to_stage
        currency = None if last.amount is None else last.amount.currency
        key = (
            None if group is None else getattr(item, group),
            last.pipeline,
            last.to_stage,
            last.reason,
            currency,
            last.expected_close,
            later,
        )
        total = totals.setdefault(key, [0, Decimal(0), 0.0])
        total[0] += 1
        total[1] += Decimal(0) if last.amount is None else last.amount.amount
        total[2] += (last.at - item.created_at).total_seconds()
    return [Standing(*key, *total) for key, total in totals.items()]
