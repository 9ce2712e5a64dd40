"""Rule scoring: criteria (rules with points) in two groups, decay, caps and bands.

A :class:`ScoringModel` scores one kind of entity (a lead, a deal or a contact). Each
:class:`Criterion` is a rule of the rule language with points (negative points allowed)
in the group ``fit`` (who they are) or ``engagement`` (what they did). A criterion
scores its points when its rule is TRUE (UNKNOWN and FALSE score nothing, as in a
segment).

Rules over the scored entity see its fields; on a lead or deal model, a criterion whose
rule is a contact rule is evaluated against the entity's contact, which the caller
passes in.

Decay
    Engagement criteria must contain an activity condition. Their points decay from the
    time of the **latest activity that counts for one of the criterion's activity
    conditions** (of its kind, up to ``now``, within its window, its filter TRUE): "visited
    /pricing" loses half its points every ``days`` days after the latest such visit
    (:attr:`DecayKind.HALF_LIFE`), or falls linearly to zero ``days`` days after it
    (:attr:`DecayKind.LINEAR`). A criterion that holds although no counted activity
    exists (``count == 0``, say) has no anchor and is not decayed. Fit criteria never
    decay.

Caps
    A group's total is at most its cap, and the score at most the total cap. A cap that
    bites scales the positive contributions of its group (or of the whole card) by one
    factor, so that the contributions still add up to the capped total; negative points
    are never scaled.

Totals are computed as written: the points of the TRUE criteria added in model order
from ``0.0`` (after decay), then ``min(group, cap)`` per group and ``min(fit +
engagement, total_cap)``. The contributions add up to the total up to float rounding.
"""

import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, TypeVar
from uuid import UUID

import attrs

from crmkit._extras import import_extra
from crmkit.errors import NotFound, Problem, ValidationError
from crmkit.models import Activity, Contact, Deal, Lead
from crmkit.models._fields import finite
from crmkit.models.rules import (
    CONTACT_FIELDS_OF,
    ActivityCondition,
    InSegment,
    Rule,
    RuleEntity,
    contact_condition,
)
from crmkit.scoring._columns import ColumnRules, column_length
from crmkit.segmentation import (
    Context,
    compile_activity_filter,
    compile_keyed,
    compile_rule,
    compile_sum,
)

if TYPE_CHECKING:
    import numpy
    import numpy.typing

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

_SECONDS_PER_DAY: Final = 86_400.0
_MAX_POINTS: Final = 1e9
_COLUMNS_FEATURE: Final = "rule scoring of columns with numpy"


class Group(StrEnum):
    """The group of a criterion."""

    FIT = "fit"
    """Who they are: fields, tags, custom fields."""
    ENGAGEMENT = "engagement"
    """What they did: activity conditions; the points decay."""


class DecayKind(StrEnum):
    """How engagement points fade with the age of the latest counted activity."""

    NONE = "none"
    HALF_LIFE = "half_life"
    """``points * 0.5 ** (age_days / days)``."""
    LINEAR = "linear"
    """``points * max(0, 1 - age_days / days)``: zero from ``days`` days on."""


def _fail(field: str, value: object, reason: str) -> ValidationError:
    return ValidationError(field, value, reason)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_finite(field: str, value: object, *, low: float = -_MAX_POINTS) -> Problem | None:
    if not _is_number(value) or not finite(value):
        return Problem(field, value, "expected a finite number")
    if not low <= value <= _MAX_POINTS:  # type: ignore[operator]
        return Problem(field, value, f"expected a number from {low:g} to {_MAX_POINTS:g}")
    return None


def _not_a(value: object, cls: type | tuple[type, ...]) -> bool:
    """``not isinstance(value, cls)`` for values typed as ``cls`` but given at run time."""
    return not isinstance(value, cls)


def _raise_problems(problems: Sequence[Problem | None]) -> None:
    found = [p for p in problems if p is not None]
    if found:
        raise ValidationError.of(found)


def _to_float(value: Any) -> Any:
    """A number as a float; anything else, and an int beyond a float's range, unchanged
    (for the class's check to reject, naming the field)."""
    if not _is_number(value):
        return value
    try:
        return float(value)
    except OverflowError:
        return value


def _text(field: str, value: object, *, limit: int = 200) -> Problem | None:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        return Problem(field, value, f"expected a non-blank name of at most {limit} characters")
    return None


@attrs.frozen
class Decay:
    """How engagement points decay; ``days`` is the half-life or the horizon."""

    kind: DecayKind = DecayKind.NONE
    days: float | None = attrs.field(default=None, converter=_to_float)

    def __attrs_post_init__(self) -> None:
        if _not_a(self.kind, DecayKind):
            raise _fail("kind", self.kind, "expected one of: none, half_life, linear")
        if self.kind is DecayKind.NONE:
            if self.days is not None:
                raise _fail("days", self.days, "no decay takes no number of days")
            return
        problem = _check_finite("days", self.days, low=0.0)
        if problem is None and not self.days:
            problem = Problem("days", self.days, "expected a positive number of days")
        _raise_problems([problem])

    def factor(self, age_days: float) -> float:
        """The share of the points left after ``age_days`` days (1 at age 0 or less)."""
        if self.kind is DecayKind.NONE or age_days <= 0:
            return 1.0
        assert self.days is not None
        if self.kind is DecayKind.HALF_LIFE:
            return float(0.5 ** (age_days / self.days))
        return max(0.0, 1.0 - age_days / self.days)


@attrs.frozen
class Criterion:
    """A rule and the points it gives when TRUE, in the group ``fit`` or ``engagement``."""

    name: str
    rule: Rule
    points: float = attrs.field(converter=_to_float)
    group: Group = Group.FIT

    def __attrs_post_init__(self) -> None:
        problems = [_text("name", self.name), _check_finite("points", self.points)]
        if _not_a(self.rule, Rule):
            problems.append(Problem("rule", self.rule, "expected a Rule"))
        if _not_a(self.group, Group):
            problems.append(Problem("group", self.group, "expected one of: fit, engagement"))
        _raise_problems(problems)
        if self.group is Group.ENGAGEMENT and not self.activity_conditions():
            raise _fail(
                "rule",
                self.rule.where,
                "an engagement criterion needs an activity condition (its points decay "
                "from the latest counted activity)",
            )

    def activity_conditions(self) -> tuple[ActivityCondition, ...]:
        """The activity conditions of the rule, depth first."""
        return tuple(n for n in self.rule.walk() if isinstance(n, ActivityCondition))


@attrs.frozen
class Band:
    """A named score band: scores from ``min_score`` up to the next band's minimum."""

    name: str
    min_score: float = attrs.field(converter=_to_float)

    def __attrs_post_init__(self) -> None:
        _raise_problems(
            [_text("name", self.name, limit=60), _check_finite("min_score", self.min_score)]
        )


_SCORED: Final = (RuleEntity.LEAD, RuleEntity.DEAL, RuleEntity.CONTACT)


@attrs.frozen
class ScoringModel:
    """Criteria with points, decay of engagement, caps and bands (see the module doc).

    ``entity`` is what is scored: a lead, a deal or a contact. Criteria are rules over
    that entity or, for leads and deals, over their contact. ``mql_at`` is the score from
    which a lead is a marketing-qualified lead (MQL).
    """

    name: str
    criteria: tuple[Criterion, ...]
    entity: RuleEntity = RuleEntity.LEAD
    decay: Decay = attrs.field(factory=Decay)
    fit_cap: float | None = attrs.field(default=None, converter=_to_float)
    engagement_cap: float | None = attrs.field(default=None, converter=_to_float)
    total_cap: float | None = attrs.field(default=None, converter=_to_float)
    bands: tuple[Band, ...] = ()
    mql_at: float | None = attrs.field(default=None, converter=_to_float)

    def __attrs_post_init__(self) -> None:  # noqa: PLR0912
        problems: list[Problem | None] = [_text("name", self.name)]
        if _not_a(self.entity, RuleEntity) or self.entity not in _SCORED:
            raise _fail("entity", self.entity, "expected lead, deal or contact")
        if _not_a(self.criteria, tuple):
            raise _fail("criteria", self.criteria, "expected a tuple of criteria")
        if _not_a(self.decay, Decay):
            problems.append(Problem("decay", self.decay, "expected a Decay"))
        allowed = {self.entity, RuleEntity.CONTACT}
        names: set[str] = set()
        for index, criterion in enumerate(self.criteria):
            where = f"criteria[{index}]"
            if _not_a(criterion, Criterion):
                problems.append(Problem(where, criterion, "expected a Criterion"))
                continue
            if criterion.name in names:
                problems.append(Problem(f"{where}.name", criterion.name, "appears twice"))
            names.add(criterion.name)
            if criterion.rule.entity not in allowed:
                problems.append(
                    Problem(
                        f"{where}.rule.entity",
                        criterion.rule.entity,
                        f"a {self.entity} model takes {self.entity} or contact rules",
                    )
                )
        for name in ("fit_cap", "engagement_cap", "total_cap", "mql_at"):
            value = getattr(self, name)
            if value is not None:
                problems.append(_check_finite(name, value, low=0.0 if "cap" in name else -1e9))
        if _not_a(self.bands, tuple):
            raise _fail("bands", self.bands, "expected a tuple of bands")
        seen: set[str] = set()
        for index, band in enumerate(self.bands):
            if _not_a(band, Band):
                problems.append(Problem(f"bands[{index}]", band, "expected a Band"))
                continue
            if band.name in seen:
                problems.append(Problem(f"bands[{index}].name", band.name, "appears twice"))
            seen.add(band.name)
            previous = self.bands[index - 1] if index else None
            if isinstance(previous, Band) and band.min_score <= previous.min_score:
                problems.append(
                    Problem(
                        f"bands[{index}].min_score",
                        band.min_score,
                        "bands go from the lowest to the highest min_score",
                    )
                )
        _raise_problems(problems)

    def band(self, total: float) -> str | None:
        """The name of the highest band whose ``min_score`` ``total`` reaches, if any."""
        found = None
        for band in self.bands:
            if total >= band.min_score:
                found = band.name
        return found

    def compile(self, context: Context) -> "CompiledModel":
        """The model compiled for evaluations at ``context`` (its ``now`` and activities)."""
        return CompiledModel(self, context)


@attrs.frozen
class Contribution:
    """What one TRUE criterion adds to the score.

    ``points`` is ``base_points * decay * cap``: after decay (engagement only) and caps.
    ``anchor`` is the time of the activity the decay is measured from (if any).
    """

    criterion: str
    group: Group
    points: float
    base_points: float
    decay: float = 1.0
    cap: float = 1.0
    anchor: datetime | None = None


@attrs.frozen
class ScoreCard:
    """A score with its parts: the total, per-group totals, band and contributions.

    ``contributions`` lists the TRUE criteria in model order; criteria that are FALSE or
    UNKNOWN contribute nothing and are not listed.
    """

    total: float
    fit: float
    engagement: float
    band: str | None
    mql: bool
    contributions: tuple[Contribution, ...]

    def points(self) -> dict[str, float]:
        """Points per criterion name, after decay and caps."""
        return {c.criterion: c.points for c in self.contributions}


_Anchor = Callable[[Iterable[Activity]], datetime | None]
_S = TypeVar("_S")
_CONTACT_INT: Final = operator.attrgetter("contact_id.int")
_ID_INT: Final = operator.attrgetter("id.int")


class CompiledModel:
    """A :class:`ScoringModel` compiled once for one context; score many entities fast.

    The criteria are compiled into Python functions (see
    :func:`crmkit.segmentation.compile_sum`): scoring one lead with 20 criteria takes a
    few microseconds. :meth:`totals` scores many entities at once and evaluates the
    criteria only once per distinct *key* (see :func:`crmkit.segmentation.compile_keyed`:
    what the criteria read of an entity, such as its channel, status and whether its
    budget is at least 10,000) and once per distinct contact: for the benchmark's
    20 criteria about 1.1 million leads a second, 2.5 times ``totals(keyed=False)``,
    with the same totals as :meth:`score`, bit for bit. :meth:`totals_columns` scores
    entities given as columns with numpy (the extra ``fast``), for models without
    activity or segment conditions: with native numpy arrays several million leads a
    second, again the totals of :meth:`score`, bit for bit.

    ``contact`` / ``contacts`` give the contacts for the contact rules of a lead or deal
    model; they are required only when the model has contact rules. The
    ``contact.<field>`` conditions of the entity's own rules read ``context.contacts``.
    """

    def __init__(self, model: ScoringModel, context: Context) -> None:
        if _not_a(model, ScoringModel):
            raise _fail("model", model, "expected a ScoringModel")
        if _not_a(context, Context):
            raise _fail("context", context, "expected a segmentation Context")
        self.model = model
        self.context = context
        self._needs_contact = model.entity is not RuleEntity.CONTACT and any(
            c.rule.entity is RuleEntity.CONTACT for c in model.criteria
        )
        self._contact_flags = tuple(self._on_contact(c) for c in model.criteria)
        own = [c for c in model.criteria if not self._on_contact(c)]
        other = [c for c in model.criteria if self._on_contact(c)]
        self._predicates = [compile_rule(c.rule, context) for c in model.criteria]
        self._anchors = [self._anchor(c) for c in model.criteria]
        decays = model.decay.kind is not DecayKind.NONE
        self._sums: list[tuple[Group, bool, Callable[[Iterable[Any]], list[float]]]] = []
        # The groups whose totals are sums of points (engagement decays per entity).
        self._summed = tuple(g for g in Group if not (g is Group.ENGAGEMENT and decays))
        summers: dict[tuple[Group, bool], Callable[[Iterable[Any]], list[float]]] = {}
        for group in self._summed:
            for on_contact, part in ((False, own), (True, other)):
                terms = [(c.rule, c.points) for c in part if c.group is group]
                if terms:
                    summer = compile_sum(terms, context)
                    self._sums.append((group, on_contact, summer))
                    summers[(group, on_contact)] = summer
        self._engaged = decays and any(c.group is Group.ENGAGEMENT for c in model.criteria)
        self._caps = (
            math.inf if model.fit_cap is None else model.fit_cap,
            math.inf if model.engagement_cap is None else model.engagement_cap,
            math.inf if model.total_cap is None else model.total_cap,
        )
        # Batch scoring: the entity's own sums per key, the contact's per contact.
        self._groups = tuple(g for g in self._summed if any(c.group is g for c in model.criteria))
        self._own_parts = tuple(summers.get((g, False)) for g in self._groups)
        self._other_parts = tuple(summers.get((g, True)) for g in self._groups)
        self._whole = not self._needs_contact and not self._engaged
        own_rules = [c.rule for c in own if c.group in self._groups]
        other_rules = [c.rule for c in other if c.group in self._groups]
        self._totals_keyed = compile_keyed(own_rules, context, self._capped_total)
        self._own_keyed = compile_keyed(own_rules, context, self._own_sums)
        self._other_keyed = compile_keyed(other_rules, context, self._other_sums)
        # A model with one summed group (the common case) keeps floats, not 1-tuples.
        self._own_first = compile_keyed(own_rules, context, self._own_first_sum)
        self._other_first = compile_keyed(other_rules, context, self._other_first_sum)

    def _sums_of(
        self,
        entity: Any,
        parts: tuple[Callable[[Iterable[Any]], list[float]] | None, ...],
    ) -> tuple[float, ...]:
        single = [entity]
        return tuple(0.0 if part is None else part(single)[0] for part in parts)

    def _own_sums(self, entity: Any) -> tuple[float, ...]:
        return self._sums_of(entity, self._own_parts)

    def _other_sums(self, contact: Any) -> tuple[float, ...]:
        return self._sums_of(contact, self._other_parts)

    def _own_first_sum(self, entity: Any) -> float:
        return self._own_sums(entity)[0]

    def _other_first_sum(self, contact: Any) -> float:
        return self._other_sums(contact)[0]

    def _capped_total(self, entity: Any) -> float:
        """The total of an entity of a model without contact rules nor decay."""
        return self._combine(self._own_sums(entity), None, None)

    def _combine(
        self,
        own: tuple[float, ...],
        other: tuple[float, ...] | None,
        engagement: float | None,
    ) -> float:
        """The total from the group sums, as :meth:`score` adds and caps them."""
        sums = {Group.FIT: 0.0, Group.ENGAGEMENT: 0.0}
        for index, group in enumerate(self._groups):
            sums[group] = own[index] if other is None else own[index] + other[index]
        if engagement is not None:
            sums[Group.ENGAGEMENT] = engagement
        fit_cap, engagement_cap, total_cap = self._caps
        fit = min(sums[Group.FIT], fit_cap)
        return min(fit + min(sums[Group.ENGAGEMENT], engagement_cap), total_cap)

    def _on_contact(self, criterion: Criterion) -> bool:
        return self.model.entity is not RuleEntity.CONTACT and (
            criterion.rule.entity is RuleEntity.CONTACT
        )

    def _anchor(self, criterion: Criterion) -> _Anchor | None:
        if criterion.group is not Group.ENGAGEMENT:
            return None
        now = self.context.now
        filters = [compile_activity_filter(n, now) for n in criterion.activity_conditions()]

        def latest(activities: Iterable[Activity]) -> datetime | None:
            times = [a.occurred_at for a in activities if any(f(a) for f in filters)]
            return max(times) if times else None

        return latest

    def _contact_of(self, entity: Any, contact: Contact | None) -> Any:
        if not self._needs_contact:
            return contact
        contact_id = entity.contact_id
        if contact is None:
            raise NotFound("contact", str(contact_id))
        if not isinstance(contact, Contact) or contact.id != contact_id:
            raise _fail("contact", contact, f"expected the contact {contact_id} of the entity")
        return contact

    def _check(self, entity: object, index: int | None = None) -> None:
        expected = _ENTITY_CLASSES[self.model.entity]
        if not isinstance(entity, expected):
            where = "entity" if index is None else f"entities[{index}]"
            raise _fail(where, entity, f"expected a {self.model.entity}")

    def score(self, entity: Any, *, contact: Contact | None = None) -> ScoreCard:
        """The score card of ``entity`` (and its ``contact`` for contact rules)."""
        self._check(entity)
        other = self._contact_of(entity, contact)
        model = self.model
        own_id = entity.id if model.entity is RuleEntity.CONTACT else entity.contact_id
        activities = self.context.activities.get(own_id, ()) if own_id is not None else ()
        now = self.context.now
        raw: list[tuple[Criterion, float, float, datetime | None]] = []
        for criterion, predicate, anchor in zip(
            model.criteria, self._predicates, self._anchors, strict=True
        ):
            target = other if self._on_contact(criterion) else entity
            if not predicate(target):
                continue
            factor, at = 1.0, None
            if anchor is not None and model.decay.kind is not DecayKind.NONE:
                at = anchor(activities)
                if at is not None:
                    factor = model.decay.factor((now - at).total_seconds() / _SECONDS_PER_DAY)
            raw.append((criterion, criterion.points * factor, factor, at))
        return _card(model, raw)

    def total(self, entity: Any, *, contact: Contact | None = None) -> float:
        """The total score of ``entity``: the same number as ``score(entity).total``."""
        self._check(entity)
        other = self._contact_of(entity, contact)
        if self._whole:
            return self._capped_total(entity)
        engagement = self.score(entity, contact=other).engagement if self._engaged else None
        sums = self._other_sums(other) if self._needs_contact else None
        return self._combine(self._own_sums(entity), sums, engagement)

    def totals(
        self,
        entities: Iterable[Any],
        *,
        contacts: Mapping[UUID, Contact] | Sequence[Contact] | None = None,
        keyed: bool = True,
    ) -> list[float]:
        """The total scores of many entities, in their order (the batch fast path).

        ``contacts`` is a mapping from contact id to contact, or a sequence aligned with
        ``entities``; needed only for the contact rules of a lead or deal model.

        With ``keyed`` (the default) the criteria are evaluated once per distinct key
        of what they read and once per distinct contact (see the class doc); with
        ``keyed=False`` every criterion is evaluated for every entity, which is faster
        only when nearly every entity differs in what the criteria read. Both give the
        totals of :meth:`score`.
        """
        items = entities if isinstance(entities, list | tuple) else list(entities)
        expected = _ENTITY_CLASSES[self.model.entity]
        if set(map(type, items)) - {expected}:
            for index, item in enumerate(items):
                if not isinstance(item, expected):
                    self._check(item, index)
        if not keyed:
            return self._totals_per_entity(items, contacts)
        if self._whole:
            return self._totals_keyed(items)
        fit_cap, engagement_cap, total_cap = self._caps
        if not self._engaged and len(self._groups) == 1:
            table, keys = self._per_contact(items, contacts, self._other_first)
            cap = fit_cap if self._groups[0] is Group.FIT else engagement_cap
            firsts = self._own_first(items)
            return [min(o + table[k], cap, total_cap) for o, k in zip(firsts, keys, strict=True)]
        own = self._own_keyed(items)
        if not self._engaged:
            sums, keys = self._per_contact(items, contacts, self._other_keyed)
            return [
                min(min(o + c, fit_cap) + min(p + d, engagement_cap), total_cap)
                for (o, p), (c, d) in zip(own, map(sums.__getitem__, keys), strict=True)
            ]
        people = self._people(items, contacts) if self._needs_contact else None
        engagement = [
            self.score(item, contact=None if people is None else people[index]).engagement
            for index, item in enumerate(items)
        ]
        if people is None:
            return [self._combine(o, None, e) for o, e in zip(own, engagement, strict=True)]
        other = self._other_keyed(people)
        return [self._combine(o, c, e) for o, c, e in zip(own, other, engagement, strict=True)]

    def totals_columns(
        self,
        columns: Mapping[str, Any],
        *,
        contact_columns: Mapping[str, Any] | None = None,
    ) -> "numpy.typing.NDArray[numpy.float64]":
        """The total scores of entities given as columns, with numpy (the extra ``fast``).

        ``columns`` maps the name of a field of the model's entity to its values, one per
        entity, in the order of the entities: ``"channel"``, ``"custom.budget"`` for a
        custom field, ``"tags"`` for the tags (a column of sets of tags). A lead or deal
        model with contact rules also takes ``contact_columns``: the contact's fields,
        row ``i`` the contact of entity ``i``. A column is a numpy array of a native
        type (``str``, numbers, ``bool``, ``datetime64`` in UTC; missing values masked,
        ``nan`` or ``NaT``), evaluated with vectorised comparisons, or any sequence of
        the values the entity holds (``None`` missing), evaluated once per distinct value;
        decimal, money, id and tag columns are sequences. Only the columns the rules
        read are needed; all columns must have one length.

        The totals are those of :meth:`score`, bit for bit: the same three-valued truths
        (a criterion counts only when its rule is TRUE), the points added in model order
        and the same caps. Criteria with an activity condition (every engagement
        criterion among them) or an ``in segment`` condition need the entities: they are
        rejected with a :class:`~crmkit.errors.ValidationError` naming the criterion
        (score such models with :meth:`totals`), so no decay arises here. A missing
        column, columns of different lengths or values of the wrong type raise a
        :class:`~crmkit.errors.ValidationError` naming the column.
        """
        np = import_extra("numpy", extra="fast", feature=_COLUMNS_FEATURE)
        self._check_columnar()
        size = self._columns_size(columns, contact_columns)
        context = self.context
        own = ColumnRules(
            np, columns, size, entity=self.model.entity, context=context, where="columns"
        )
        other = None
        if self._needs_contact:
            if contact_columns is None:
                raise _fail(
                    "contact_columns", None, "the model has contact rules: pass the contact columns"
                )
            other = ColumnRules(
                np,
                contact_columns,
                size,
                entity=RuleEntity.CONTACT,
                context=context,
                where="contact_columns",
            )
        # As score() adds: per group the entity's own criteria in model order from 0.0,
        # then the contact's, then own + contact, each group capped, then the total.
        sums = {(g, c): np.zeros(size) for g in Group for c in (False, True)}
        for criterion, on_contact in zip(self.model.criteria, self._contact_flags, strict=True):
            rules = other if on_contact and other is not None else own
            into = sums[(criterion.group, on_contact)]
            np.add(into, criterion.points, out=into, where=rules.true(criterion.rule))
        fit_cap, engagement_cap, total_cap = self._caps
        fit = np.minimum(sums[(Group.FIT, False)] + sums[(Group.FIT, True)], fit_cap)
        engaged = sums[(Group.ENGAGEMENT, False)] + sums[(Group.ENGAGEMENT, True)]
        return np.minimum(fit + np.minimum(engaged, engagement_cap), total_cap)  # type: ignore[no-any-return]

    def _check_columnar(self) -> None:
        """Reject the criteria that columns cannot evaluate (activities, segments)."""
        for index, criterion in enumerate(self.model.criteria):
            for node in criterion.rule.walk():
                if (
                    criterion.rule.entity in CONTACT_FIELDS_OF
                    and contact_condition(node) is not None
                ):
                    raise _fail(
                        f"criteria[{index}]",
                        criterion.name,
                        f"criterion {criterion.name!r} names the contact's fields, which "
                        "columns of the entity do not hold: score the entities with totals()",
                    )
                if isinstance(node, ActivityCondition | InSegment):
                    what = "an activity" if isinstance(node, ActivityCondition) else "an in segment"
                    raise _fail(
                        f"criteria[{index}]",
                        criterion.name,
                        f"criterion {criterion.name!r} has {what} condition, which columns "
                        "cannot hold: score the entities with totals()",
                    )

    def _columns_size(
        self, columns: Mapping[str, Any], contact_columns: Mapping[str, Any] | None
    ) -> int:
        """The one length of all columns (0 when there are none)."""
        lengths: set[int] = set()
        for where, given in (("columns", columns), ("contact_columns", contact_columns)):
            if given is None and where == "contact_columns":
                continue
            if not isinstance(given, Mapping):
                raise _fail(where, given, "expected a mapping of field name to column")
            for name, column in given.items():
                lengths.add(column_length(where, str(name), column))
        if len(lengths) > 1:
            raise _fail("columns", sorted(lengths), "columns differ in length")
        return lengths.pop() if lengths else 0

    def _per_contact(
        self,
        items: Sequence[Any],
        contacts: Mapping[UUID, Contact] | Sequence[Contact] | None,
        sums: Callable[[Iterable[Any]], list[_S]],
    ) -> tuple[dict[int, _S], Iterable[int]]:
        """The contact sums, computed once per distinct contact, and per entity its key
        in them (its contact's id as a number, or the contact object's identity)."""
        if contacts is None or not items:
            self._people(items, contacts)  # raises for missing contacts
            return {}, ()
        try:
            ids: list[int] = list(map(_CONTACT_INT, items))
        except AttributeError:  # an entity without a contact
            ids = []
        if isinstance(contacts, Mapping):
            if len(ids) != len(items):
                self._people(items, contacts)  # raises NotFound
            distinct = list(dict.fromkeys(ids))
            found = [contacts.get(UUID(int=key)) for key in distinct]
            for key, contact in zip(distinct, found, strict=True):
                if contact is None:
                    raise NotFound("contact", str(UUID(int=key)))
            return dict(zip(distinct, sums(found), strict=True)), ids
        people = contacts if isinstance(contacts, list | tuple) else list(contacts)
        if len(people) != len(items) or len(ids) != len(items):
            self._people(items, people)  # raises naming the problem
        if set(map(type, people)) - {Contact} or not all(
            map(operator.eq, map(_ID_INT, people), ids)
        ):
            self._people(items, people)  # raises naming the first wrong contact
        objects = dict(zip(map(id, people), people, strict=True))
        table = dict(zip(objects, sums(list(objects.values())), strict=True))
        return table, map(id, people)

    def _totals_per_entity(
        self,
        items: Sequence[Any],
        contacts: Mapping[UUID, Contact] | Sequence[Contact] | None,
    ) -> list[float]:
        people = self._people(items, contacts) if self._needs_contact else []
        fit = [0.0] * len(items)
        engagement = [0.0] * len(items)
        for group, on_contact, summer in self._sums:
            sums = summer(people if on_contact else items)
            into = fit if group is Group.FIT else engagement
            if on_contact:  # the entity's own criteria first, as in score()
                into[:] = [a + b for a, b in zip(into, sums, strict=True)]
            else:
                into[:] = sums
        if self._engaged:
            for index, item in enumerate(items):
                contact = people[index] if self._needs_contact else None
                engagement[index] = self.score(item, contact=contact).engagement
        fit_cap, engagement_cap, total_cap = self._caps
        return [
            min(min(f, fit_cap) + min(e, engagement_cap), total_cap)
            for f, e in zip(fit, engagement, strict=True)
        ]

    def _people(
        self, items: Sequence[Any], contacts: Mapping[UUID, Contact] | Sequence[Contact] | None
    ) -> list[Contact]:
        if contacts is None:
            raise _fail("contacts", None, "the model has contact rules: pass the contacts")
        if isinstance(contacts, Mapping):
            people = []
            for item in items:
                found = contacts.get(item.contact_id)
                if found is None:
                    raise NotFound("contact", str(item.contact_id))
                people.append(found)
            return people
        people = list(contacts)
        if len(people) != len(items):
            raise _fail("contacts", len(people), f"expected {len(items)} contacts, one per entity")
        for item, person in zip(items, people, strict=True):
            if not isinstance(person, Contact) or person.id != item.contact_id:
                raise _fail("contacts", person, f"expected the contact {item.contact_id}")
        return people


def _scaled(
    parts: list[tuple[Criterion, float, float, datetime | None, float]], total: float, cap: float
) -> float:
    """Scale the positive parts (in place) so that they add up to ``cap``; the factor."""
    positive = math.fsum(p[1] * p[4] for p in parts if p[1] > 0)
    negative = total - positive
    factor = max(0.0, (cap - negative) / positive) if positive > 0 else 1.0
    for index, part in enumerate(parts):
        if part[1] > 0:
            parts[index] = (*part[:4], part[4] * factor)
    return factor


def _card(
    model: ScoringModel, raw: list[tuple[Criterion, float, float, datetime | None]]
) -> ScoreCard:
    def contact_rule(criterion: Criterion) -> bool:
        return model.entity is not RuleEntity.CONTACT and (
            criterion.rule.entity is RuleEntity.CONTACT
        )

    parts = [(c, points, factor, at, 1.0) for c, points, factor, at in raw]
    totals: dict[Group, float] = {}
    caps = {Group.FIT: model.fit_cap, Group.ENGAGEMENT: model.engagement_cap}
    for group in Group:
        mine = [i for i, p in enumerate(parts) if p[0].group is group]
        # Added as CompiledModel.totals adds: the entity's own criteria, then the contact's.
        own, other = 0.0, 0.0
        for i in mine:
            if contact_rule(parts[i][0]):
                other += parts[i][1]
            else:
                own += parts[i][1]
        added = own + other if any(contact_rule(parts[i][0]) for i in mine) else own
        cap = caps[group]
        if cap is not None and added > cap:
            chosen = [parts[i] for i in mine]
            _scaled(chosen, math.fsum(p[1] for p in chosen), cap)
            for i, part in zip(mine, chosen, strict=True):
                parts[i] = part
            added = cap
        totals[group] = added
    total = totals[Group.FIT] + totals[Group.ENGAGEMENT]
    if model.total_cap is not None and total > model.total_cap:
        current = math.fsum(p[1] * p[4] for p in parts)
        _scaled(parts, current, model.total_cap)
        total = model.total_cap
    contributions = tuple(
        Contribution(
            criterion=c.name,
            group=c.group,
            points=points * cap,
            base_points=c.points,
            decay=factor,
            cap=cap,
            anchor=at,
        )
        for c, points, factor, at, cap in parts
    )
    return ScoreCard(
        total=total,
        fit=totals[Group.FIT],
        engagement=totals[Group.ENGAGEMENT],
        band=model.band(total),
        mql=model.mql_at is not None and total >= model.mql_at,
        contributions=contributions,
    )


def score(
    model: ScoringModel, entity: Any, context: Context, *, contact: Contact | None = None
) -> ScoreCard:
    """The score card of one entity; compiles the model for this one call.

    To score many entities, or on every write, compile the model once with
    :meth:`ScoringModel.compile` and call :meth:`CompiledModel.score` or
    :meth:`CompiledModel.totals`.

    A given ``contact`` also answers the ``contact.<field>`` conditions of the entity's
    own rules (a compiled model reads those from ``context.contacts``).
    """
    known = context.contacts if isinstance(context, Context) else None
    if known is not None and isinstance(contact, Contact) and contact.id not in known:
        context = attrs.evolve(context, contacts={**known, contact.id: contact})
    return CompiledModel(model, context).score(entity, contact=contact)


_ENTITY_CLASSES: Final[Mapping[RuleEntity, type]] = {
    RuleEntity.LEAD: Lead,
    RuleEntity.DEAL: Deal,
    RuleEntity.CONTACT: Contact,
}
