"""What a store replays from stage history for the KPIs, and the reference replay.

Two grouped questions go to the store (DESIGN.md 17: aggregates go to the database):

* :class:`Reach`: how far subjects got in an ordered set of stages as of a time;
* :class:`Standing`: where subjects stood as of a time, with the values their last move
  snapshotted (and, for a backtest, where they stood at a later time).

The store answers with these rows, grouped in the database;
:func:`replay_reach` and :func:`replay_standing` are the same answers computed in Python
from models, which the memory store uses and the conformance kit checks adapters against.
"""

import enum
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import attrs

from crmkit.clock import ensure_utc
from crmkit.errors import ValidationError
from crmkit.models import Contact, Deal, Entity, Lead, StageChange, SubjectKind
from crmkit.models._fields import expect_items

__all__ = [
    "REPLAYED",
    "Reach",
    "Standing",
    "StandingWindow",
    "check_ranks",
    "check_replay",
    "check_rows",
    "check_stages",
    "check_windows",
    "replay_reach",
    "replay_standing",
]

_R = TypeVar("_R", "Reach", "Standing")

REPLAYED: Mapping[SubjectKind, type[Entity]] = {
    SubjectKind.CONTACT: Contact,
    SubjectKind.LEAD: Lead,
    SubjectKind.DEAL: Deal,
}
"""The subjects whose stage history a store replays, and their entity classes."""


MAX_RANK = 10_000
"""The highest stage rank accepted: no pipeline has more stages, and the funnel loops
over the ranks."""

MAX_COUNT = 10**15
"""The most subjects one row counts: more than any CRM holds."""

MAX_AMOUNT = Decimal(10) ** 30
"""The largest amount (in absolute value) a row may sum: a million deals of the largest
:class:`~crmkit.models.Money` are far below it, and sums of such rows stay exact."""

_MAX_SECONDS = 1e30  # a count of ages of up to 9999 years each
_GROUP_TYPES = (str, int, float, Decimal, UUID, date, enum.Enum)


def _int_from(low: int, high: int) -> Any:
    def check(_: object, field: "attrs.Attribute[Any]", value: object) -> None:
        if type(value) is not int or not low <= value <= high:
            raise ValidationError(field.name, value, f"expected an int from {low} to {high}")

    return check


def _optional(kind: type | tuple[type, ...], what: str) -> Any:
    def check(_: object, field: "attrs.Attribute[Any]", value: object) -> None:
        if value is not None and not isinstance(value, kind):
            raise ValidationError(field.name, value, f"expected {what} or None")

    return check


def _text(_: object, field: "attrs.Attribute[Any]", value: object) -> None:
    if not isinstance(value, str):
        raise ValidationError(field.name, value, "expected a stage key")


def _is_group_key(value: object) -> bool:
    if value is None or isinstance(value, enum.Enum):
        return True
    if not isinstance(value, _GROUP_TYPES):
        return False
    if isinstance(value, Decimal):
        return value.is_finite()
    return not isinstance(value, float) or math.isfinite(value)


def _group(_: object, field: "attrs.Attribute[Any]", value: object) -> None:
    if not _is_group_key(value):
        raise ValidationError(field.name, value, "expected a finite scalar group key or None")


def _day(_: object, field: "attrs.Attribute[Any]", value: object) -> None:
    if value is not None and (not isinstance(value, date) or isinstance(value, datetime)):
        raise ValidationError(field.name, value, "expected a date or None")


def _amount(_: object, field: "attrs.Attribute[Any]", value: object) -> None:
    if not isinstance(value, Decimal) or not value.is_finite() or abs(value) > MAX_AMOUNT:
        raise ValidationError(field.name, value, "expected a finite Decimal up to 10**30")


def _seconds(_: object, field: "attrs.Attribute[Any]", value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or abs(value) > _MAX_SECONDS
    ):
        raise ValidationError(field.name, value, "expected a finite number of seconds")


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

    group: Any = attrs.field(validator=_group)
    reached: int = attrs.field(validator=_int_from(0, MAX_RANK))
    entered: int | None = attrs.field(validator=attrs.validators.optional(_int_from(0, MAX_RANK)))
    count: int = attrs.field(validator=_int_from(0, MAX_COUNT))


@attrs.frozen
class Standing:
    """``count`` subjects of ``group`` whose last move before the time went to
    ``stage`` of ``pipeline`` (with ``reason``), snapshotting an amount in ``currency``
    (``None``: no amount) and ``expected_close``; ``amount`` is the sum of those
    snapshots, ``age_seconds`` the sum of the time from each subject's creation to that
    move. ``later`` is the stage the subjects stood in at the later time of a backtest
    (``None`` without one)."""

    group: Any = attrs.field(validator=_group)
    pipeline: str | None = attrs.field(validator=_optional(str, "a pipeline key"))
    stage: str = attrs.field(validator=_text)
    reason: str | None = attrs.field(validator=_optional(str, "a text"))
    currency: str | None = attrs.field(validator=_optional(str, "a currency code"))
    expected_close: date | None = attrs.field(validator=_day)
    later: str | None = attrs.field(validator=_optional(str, "a stage key"))
    count: int = attrs.field(validator=_int_from(0, MAX_COUNT))
    amount: Decimal = attrs.field(validator=_amount)
    age_seconds: float = attrs.field(validator=_seconds)


def check_rows(rows: object, cls: type[_R], field: str) -> list[_R]:
    """The items of the collection ``rows``, each a ``cls`` (a :class:`Reach` or
    :class:`Standing`, whose constructors check their values), or a ValidationError
    naming ``field``."""
    if isinstance(rows, str | bytes | Mapping) or not isinstance(rows, Iterable):
        raise ValidationError(field, rows, f"expected a collection of {cls.__name__} rows")
    found = list(rows)
    for index, row in enumerate(found):
        if not isinstance(row, cls):
            raise ValidationError(f"{field}[{index}]", row, f"expected a {cls.__name__}")
    return found


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


@attrs.frozen
class StandingWindow:
    """One question of :meth:`~crmkit.storage.StageHistoryRepository.standings`: the
    ``until``, ``since``, ``then`` and ``stages`` of one
    :meth:`~crmkit.storage.StageHistoryRepository.standing` call (checked as it checks
    them: aware times, ``since`` at or before ``until``, ``then`` at or after it)."""

    until: datetime
    since: datetime | None = None
    then: datetime | None = None
    stages: frozenset[str] | None = attrs.field(default=None, converter=check_stages)

    def __attrs_post_init__(self) -> None:
        _, until, _, since, then = check_replay(
            SubjectKind.DEAL, self.until, None, self.since, self.then
        )
        object.__setattr__(self, "until", until)
        object.__setattr__(self, "since", since)
        object.__setattr__(self, "then", then)


def check_windows(windows: object) -> list[StandingWindow]:
    """The items of the collection ``windows``, each a :class:`StandingWindow`, or a
    ValidationError naming ``windows`` (or ``windows[n]``)."""
    if isinstance(windows, str | bytes | Mapping) or not isinstance(windows, Iterable):
        raise ValidationError("windows", windows, "expected a collection of StandingWindows")
    found = list(windows)
    for index, window in enumerate(found):
        if not isinstance(window, StandingWindow):
            raise ValidationError(f"windows[{index}]", window, "expected a StandingWindow")
    return found


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
    *,
    group: str | None,
) -> list[tuple[Entity, list[StageChange]]]:
    entity = REPLAYED[subject]
    if group is not None and (not isinstance(group, str) or group not in _fields(entity)):
        raise ValidationError("group", group, f"expected a field of {entity.entity_name}s")
    subjects = expect_items(subjects, entity, "subjects", entity.__name__)
    changes = expect_items(changes, StageChange, "changes", "StageChange")
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


def _fields(entity: type[Entity]) -> frozenset[str]:
    return frozenset(attrs.fields_dict(entity))


def _key(item: Entity, group: str | None) -> Any:
    """The group key of ``item``: a scalar field's value (a collection is refused)."""
    if group is None:
        return None
    value = getattr(item, group)
    if not _is_group_key(value):
        raise ValidationError("group", group, "expected a field with scalar values")
    return value


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
    subject, until, pipeline, _, _ = check_replay(subject, until, pipeline)
    ranks = check_ranks(ranks)
    counts: dict[tuple[Any, int, int | None], int] = defaultdict(int)
    for item, history in _histories(subjects, changes, subject, until, pipeline, group=group):
        before = [c for c in history if c.at < until]
        entered = _best(*(ranks.get(c.to_stage) for c in before))
        passed = _best(*(ranks.get(c.from_stage) for c in before if c.from_stage is not None))
        start: int | None = None
        if not history:
            stage = _stage_of(item)
            start = None if stage is None else ranks.get(stage)
        elif not before:
            lowest = [ranks[c.from_stage] for c in history if c.from_stage in ranks]
            start = min(lowest) if lowest else None
        reached = _best(entered, passed, start)
        if reached is not None:
            counts[(_key(item, group), reached, entered)] += 1
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
    subject, until, pipeline, since, then = check_replay(subject, until, pipeline, since, then)
    stages = check_stages(stages)
    totals: dict[tuple[Any, ...], list[Any]] = {}
    for item, history in _histories(subjects, changes, subject, until, pipeline, group=group):
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
            _key(item, group),
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
