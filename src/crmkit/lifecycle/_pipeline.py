"""Pipelines as data: ordered stages, the moves between them and what each stage requires.

A :class:`Pipeline` is validated when it is built and raises
:class:`~crmkit.errors.InvalidPipeline` listing every problem: no stages, duplicate
stage keys, no won stage, a first stage that is not open, transitions naming unknown
stages, stages that cannot be reached from the first one, requirements naming fields
the entity does not have. Pipelines are frozen attrs classes; :mod:`crmkit.serialization`
writes them as JSON and reads them back.
"""

import re
from collections.abc import Iterable, Iterator
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

import attrs

from crmkit.errors import InvalidPipeline, Problem, ValidationError, short_repr
from crmkit.models import Deal, Entity, Lead, Money, SubjectKind
from crmkit.models._fields import is_key, is_probability, text

__all__ = [
    "Pipeline",
    "Stage",
    "StageKind",
    "StageRequirements",
    "TransitionMode",
]

_LABEL: Final = text(200)
_GUARD: Final = re.compile(r"[a-z][a-z0-9_]{0,62}\Z")
_SUBJECTS: Final[dict[SubjectKind, type[Entity]]] = {
    SubjectKind.DEAL: Deal,
    SubjectKind.LEAD: Lead,
}
# Fields every move sets or that identify the entity: a stage cannot require them.
_MANAGED: Final = frozenset(
    {"id", "version", "created_at", "updated_at", "pipeline", "stage", "status", "closed_at"}
)


class StageKind(StrEnum):
    """Whether a stage is still open, or closes the entity as won or lost."""

    OPEN = "open"
    WON = "won"
    LOST = "lost"


class TransitionMode(StrEnum):
    """Which moves between open stages a pipeline allows.

    Closing (moving to a won or lost stage) is allowed from every open stage in every
    mode but ``explicit``; leaving a won or lost stage needs ``reopen=True``.
    """

    FORWARD = "forward"
    """Only to a later stage of the list."""
    ANY = "any"
    """To any other stage, forward or back."""
    EXPLICIT = "explicit"
    """Only the ``(from, to)`` pairs listed in ``Pipeline.transitions``."""


def _wrong(value: object, kind: type | tuple[type, ...]) -> bool:
    """Whether ``value`` is not a ``kind`` (for values typed as one but read from anywhere)."""
    return not isinstance(value, kind)


def _collection(value: object) -> list[Any] | None:
    """The items of a collection, or ``None`` for a string or a non-collection (which the
    class's check then rejects, naming the field: a string is never split into letters)."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return None
    return list(value)


def _names(value: Iterable[str]) -> frozenset[str]:
    items = _collection(value)
    if items is None:
        return value  # type: ignore[return-value]
    try:
        return frozenset(items)
    except TypeError:  # an unhashable item: kept in a tuple, for the check to name it
        return tuple(items)  # type: ignore[return-value]


def _guard_names(value: Iterable[str]) -> tuple[str, ...]:
    items = _collection(value)
    return value if items is None else tuple(items)  # type: ignore[return-value]


def _pairs(value: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Transitions as a sorted tuple of ``(from, to)`` pairs, each listed once."""
    items = _collection(value)
    if items is None:
        return value  # type: ignore[return-value]
    pairs = [tuple(p) if isinstance(p, list | tuple) else p for p in items]
    try:
        unique = set(pairs)
    except TypeError:  # an unhashable pair or key: kept as given, for the check to name it
        return tuple(pairs)
    return tuple(sorted(unique, key=short_repr))


def _check_key(what: str, value: object) -> None:
    try:
        is_key(value)
    except ValidationError as error:
        raise ValidationError(what, value, error.problems[0].reason) from None


def _check_label(value: object) -> None:
    try:
        _LABEL(value)
    except ValidationError as error:
        raise ValidationError("label", value, error.problems[0].reason) from None


@attrs.frozen(kw_only=True)
class StageRequirements:
    """What an entity must satisfy to enter a stage; every unmet one is reported.

    * ``required_fields``: fields of the entity that must be set (not ``None``, not
      empty); ``custom.<name>`` names a custom field.
    * ``minimum_amount``: the deal's amount must be at least this, in its currency.
    * ``approval``: a second person, not the one who moves, must approve the move
      (the four-eyes principle).
    * ``guards``: names of checks the host application registers
      (:class:`~crmkit.lifecycle.Guards`).
    """

    required_fields: frozenset[str] = attrs.field(default=frozenset(), converter=_names)
    minimum_amount: Money | None = None
    approval: bool = False
    guards: tuple[str, ...] = attrs.field(default=(), converter=_guard_names)

    def __attrs_post_init__(self) -> None:
        problems: list[Problem] = []
        for name, value in (("required_fields", self.required_fields), ("guards", self.guards)):
            # required_fields is a tuple when an item was unhashable (named just below)
            if _wrong(value, (frozenset, tuple) if name == "required_fields" else tuple):
                problems.append(Problem(name, value, "expected a collection of names"))
        if problems:
            raise ValidationError.of(problems)
        problems = [
            Problem("required_fields", name, "expected a field name")
            for name in sorted(self.required_fields, key=short_repr)
            if not isinstance(name, str) or not name
        ]
        if self.minimum_amount is not None and _wrong(self.minimum_amount, Money):
            problems.append(Problem("minimum_amount", self.minimum_amount, "expected Money"))
        if _wrong(self.approval, bool):
            problems.append(Problem("approval", self.approval, "expected True or False"))
        for index, guard in enumerate(self.guards):
            if not isinstance(guard, str) or not _GUARD.match(guard):
                problems.append(
                    Problem(f"guards[{index}]", guard, "a guard name is a lower-case identifier")
                )
        named = [guard for guard in self.guards if isinstance(guard, str)]
        if len(set(named)) != len(named):
            problems.append(Problem("guards", self.guards, "names a guard twice"))
        if problems:
            raise ValidationError.of(problems)

    @property
    def empty(self) -> bool:
        """Whether the stage requires nothing."""
        return not (self.required_fields or self.minimum_amount or self.approval or self.guards)


@attrs.frozen(kw_only=True)
class Stage:
    """One stage: a key, a label, the win probability it stands for and its kind."""

    key: str
    label: str
    probability: Decimal = attrs.field(default=Decimal("0"))
    kind: StageKind = StageKind.OPEN
    requires: StageRequirements = StageRequirements()

    def __attrs_post_init__(self) -> None:
        problems: list[Problem] = []
        for check, name, value in (
            (lambda v: _check_key("key", v), "key", self.key),
            (_check_label, "label", self.label),
            (is_probability, "probability", self.probability),
        ):
            try:
                check(value)
            except ValidationError as error:
                problems.extend(p.within(name) if p.field == "" else p for p in error.problems)
        if _wrong(self.kind, StageKind):
            problems.append(Problem("kind", self.kind, "expected open, won or lost"))
        elif self.kind is StageKind.WON and self.probability != 1:
            problems.append(Problem("probability", self.probability, "a won stage has 1"))
        elif self.kind is StageKind.LOST and self.probability != 0:
            problems.append(Problem("probability", self.probability, "a lost stage has 0"))
        if _wrong(self.requires, StageRequirements):
            problems.append(Problem("requires", self.requires, "expected StageRequirements"))
        if problems:
            raise ValidationError.of(problems)

    @property
    def closed(self) -> bool:
        """Whether the stage closes the entity (won or lost)."""
        return self.kind is not StageKind.OPEN


def _stage_tuple(value: Iterable["Stage"]) -> tuple["Stage", ...]:
    items = _collection(value)
    return value if items is None else tuple(items)  # type: ignore[return-value]


@attrs.frozen(kw_only=True)
class Pipeline:
    """An ordered, validated set of stages for deals or leads, and the moves it allows.

    ``key`` is what entities store in their ``pipeline`` field. The first stage is
    where new entities start. ``lost_reason_required`` makes a reason mandatory when
    moving to a lost stage; ``reopen`` lets won and lost entities move back to an open
    stage.

    >>> from decimal import Decimal
    >>> sales = Pipeline(
    ...     key="sales", label="Sales", subject=SubjectKind.DEAL,
    ...     stages=(
    ...         Stage(key="qualify", label="Qualify", probability=Decimal("0.1")),
    ...         Stage(key="proposal", label="Proposal", probability=Decimal("0.5")),
    ...         Stage(key="won", label="Won", probability=Decimal(1), kind=StageKind.WON),
    ...         Stage(key="lost", label="Lost", kind=StageKind.LOST),
    ...     ),
    ... )
    >>> [s.key for s in sales.targets("qualify")]
    ['proposal', 'won', 'lost']
    """

    key: str
    label: str
    subject: SubjectKind
    stages: tuple[Stage, ...] = attrs.field(converter=_stage_tuple)
    mode: TransitionMode = TransitionMode.FORWARD
    transitions: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_pairs)
    lost_reason_required: bool = True
    reopen: bool = False

    def __attrs_post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise InvalidPipeline.of(problems)

    def _problems(self) -> Iterator[Problem]:  # noqa: PLR0912 - one check after another
        for check, value in (
            (lambda v: _check_key("key", v), self.key),
            (_check_label, self.label),
        ):
            try:
                check(value)
            except ValidationError as error:
                yield from error.problems
        if _wrong(self.subject, SubjectKind) or self.subject not in _SUBJECTS:
            yield Problem("subject", self.subject, "pipelines are for deals or leads")
        if _wrong(self.mode, TransitionMode):
            yield Problem("mode", self.mode, "expected forward, any or explicit")
        for name in ("lost_reason_required", "reopen"):
            if not isinstance(getattr(self, name), bool):
                yield Problem(name, getattr(self, name), "expected True or False")
        if _wrong(self.stages, tuple) or _wrong(self.transitions, tuple):
            which = "stages" if _wrong(self.stages, tuple) else "transitions"
            yield Problem(which, getattr(self, which), "expected a collection")
            return
        if not self.stages:
            yield Problem("stages", self.stages, "a pipeline needs stages")
            return
        keys: set[str] = set()
        for index, stage in enumerate(self.stages):
            if _wrong(stage, Stage):
                yield Problem(f"stages[{index}]", stage, "expected a Stage")
                return
            if stage.key in keys:
                yield Problem(f"stages[{index}].key", stage.key, "is used by two stages")
            keys.add(stage.key)
        if self.stages[0].closed:
            yield Problem("stages[0].kind", self.stages[0].kind, "the first stage must be open")
        if not self.stages[0].requires.empty:
            yield Problem(
                "stages[0].requires",
                self.stages[0].requires,
                "entities start in the first stage: it cannot require anything",
            )
        if not any(stage.kind is StageKind.WON for stage in self.stages):
            yield Problem("stages", [s.key for s in self.stages], "a pipeline needs a won stage")
        yield from self._transition_problems(keys)
        entity = _SUBJECTS.get(self.subject)
        if entity is not None:
            fields = {a.name for a in attrs.fields(entity)} - _MANAGED
            for index, stage in enumerate(self.stages):
                where = f"stages[{index}].requires"
                for name in sorted(stage.requires.required_fields):
                    if not (name in fields or _is_custom_name(name)):
                        yield Problem(
                            f"{where}.required_fields", name, f"{entity.entity_name} has no field"
                        )
                if stage.requires.minimum_amount is not None and entity is not Deal:
                    yield Problem(
                        f"{where}.minimum_amount", stage.requires.minimum_amount, "deals only"
                    )
        if len(keys) != len(self.stages):
            return  # reachability means nothing while two stages share a key
        unreachable = list(self._unreachable())
        if unreachable:
            yield Problem("stages", unreachable, "cannot be reached from the first stage")
        stuck = self._stuck()
        if stuck:
            yield Problem("stages", stuck, "open stages that no move leaves (a dead end)")

    def _transition_problems(self, keys: set[str]) -> Iterator[Problem]:
        if self.mode is not TransitionMode.EXPLICIT:
            if self.transitions:
                yield Problem("transitions", self.transitions, "only for mode explicit")
            return
        closed = {s.key for s in self.stages if s.closed}
        for pair in self.transitions:
            if not _is_pair(pair):
                yield Problem("transitions", pair, "expected (from, to) pairs of stage keys")
                continue
            source, target = pair
            for key in pair:
                if key not in keys:
                    yield Problem("transitions", pair, f"names an unknown stage {key!r}")
            if source == target:
                yield Problem("transitions", pair, "a stage cannot move to itself")
            if source in closed and not self.reopen:
                yield Problem("transitions", pair, "leaves a closed stage but reopen is False")
            if source in closed and target in closed:
                yield Problem("transitions", pair, "moves between two closed stages")

    # ------------------------------------------------------------------ reading

    def stage(self, key: str) -> Stage:
        """The stage ``key``; ``ValidationError`` naming the key if there is none."""
        for stage in self.stages:
            if stage.key == key:
                return stage
        raise ValidationError("stage", key, f"pipeline {self.key!r} has no such stage")

    @property
    def first(self) -> Stage:
        """Where new entities start."""
        return self.stages[0]

    def won(self) -> Stage:
        """The first won stage."""
        return next(s for s in self.stages if s.kind is StageKind.WON)

    def lost(self) -> Stage | None:
        """The first lost stage, if the pipeline has one."""
        return next((s for s in self.stages if s.kind is StageKind.LOST), None)

    def allows(self, source: str, target: str) -> bool:
        """Whether the pipeline's transition policy allows ``source`` -> ``target``
        (stage requirements aside)."""
        return _Moves(self).allows(source, target)

    def targets(self, source: str) -> list[Stage]:
        """The stages the policy allows moving to from ``source``, in pipeline order."""
        moves = _Moves(self)
        return [s for s in self.stages if moves.allows(source, s.key)]

    def _unreachable(self) -> Iterator[str]:
        seen = _Moves(self).reachable()
        return (s.key for s in self.stages if s.key not in seen)

    def _stuck(self) -> list[str]:
        """The open stages no move leaves (linear: no stage's targets are listed)."""
        moves = _Moves(self)
        return [s.key for s in self.stages if not s.closed and not moves.leaves(s.key)]

    def to_mermaid(self) -> str:
        """The pipeline as a Mermaid state diagram (``stateDiagram-v2``)."""
        lines = ["stateDiagram-v2", f"    %% {self.key}: {self.label}"]
        for stage in self.stages:
            label = stage.label.replace('"', "'")
            lines.append(f'    state "{label} ({stage.probability:%})" as {_id(stage.key)}')
        lines.append(f"    [*] --> {_id(self.first.key)}")
        for stage in self.stages:
            lines.extend(f"    {_id(stage.key)} --> {_id(t.key)}" for t in self.targets(stage.key))
            if stage.closed:
                lines.append(f"    {_id(stage.key)} --> [*]")
        return "\n".join(lines) + "\n"


def _is_custom_name(name: str) -> bool:
    prefix, _, rest = name.partition(".")
    return prefix == "custom" and bool(re.fullmatch(r"[a-z][a-z0-9_]{0,62}", rest))


def _id(key: str) -> str:
    """A stage key as a Mermaid state id (letters, digits and ``_``)."""
    return "s_" + re.sub(r"[^a-z0-9_]", lambda m: f"_{ord(m.group()):x}_", key)


def _is_pair(pair: object) -> bool:
    """Whether ``pair`` is a ``(from, to)`` tuple of two stage keys (strings)."""
    return (
        not _wrong(pair, tuple)
        and len(pair) == 2  # type: ignore[arg-type]
        and all(isinstance(k, str) for k in pair)  # type: ignore[attr-defined]
    )


class _Moves:
    """The moves of one pipeline, with constant-time look-ups (built in linear time).

    Validation asks which stages are reachable and which open stages no move leaves;
    both are answered in time linear in the stages and transitions, never by listing
    every stage's targets (which is quadratic, and cubic when repeated per stage).
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.position = {s.key: i for i, s in enumerate(pipeline.stages)}
        # Only well-formed pairs: the others are reported by the pipeline's checks.
        self.pairs: frozenset[object] = frozenset(
            pair for pair in pipeline.transitions if _is_pair(pair)
        )
        self._moves: dict[str, list[str]] | None = None
        opened = [i for i, s in enumerate(pipeline.stages) if not s.closed]
        self.any_closed = len(opened) < len(pipeline.stages)
        self.last_open = opened[-1] if opened else -1

    def allows(self, source: str, target: str) -> bool:
        if source == target:
            return False
        position = self.position
        if source not in position or target not in position:
            return False
        pipeline = self.pipeline
        origin, goal = pipeline.stages[position[source]], pipeline.stages[position[target]]
        if pipeline.mode is TransitionMode.EXPLICIT:
            return (source, target) in self.pairs
        if origin.closed:
            return pipeline.reopen and not goal.closed
        if goal.closed:
            return True
        return pipeline.mode is TransitionMode.ANY or position[target] > position[source]

    def _explicit(self) -> dict[str, list[str]]:
        """The allowed moves of an explicit pipeline, by source stage (built once)."""
        if self._moves is None:
            self._moves = {}
            for pair in self.pipeline.transitions:
                if _is_pair(pair) and self.allows(*pair):
                    self._moves.setdefault(pair[0], []).append(pair[1])
        return self._moves

    def leaves(self, source: str) -> bool:
        """Whether any move leaves the stage ``source``."""
        pipeline = self.pipeline
        if pipeline.mode is TransitionMode.EXPLICIT:
            return source in self._explicit()
        here = self.position[source]
        if pipeline.stages[here].closed:
            return pipeline.reopen and self.last_open >= 0
        if self.any_closed:
            return True
        if pipeline.mode is TransitionMode.ANY:
            return len(self.position) > 1
        return here < self.last_open

    def reachable(self) -> set[str]:
        """The keys of the stages reachable from the first stage."""
        stages = self.pipeline.stages
        first = stages[0].key
        if self.pipeline.mode is TransitionMode.EXPLICIT:
            moves = self._explicit()
            seen, todo = {first}, [first]
            while todo:
                for target in moves.get(todo.pop(), ()):
                    if target not in seen:
                        seen.add(target)
                        todo.append(target)
            return seen
        # Forward and any: from an open stage every closed stage, and every open stage
        # (any) or every later one (forward); from a closed stage, with reopen, every
        # open stage. Closed under these rules in a few linear passes.
        opened = [i for i, s in enumerate(stages) if not s.closed]
        closed = [i for i, s in enumerate(stages) if s.closed]
        reached = {0}
        while True:
            before = len(reached)
            open_reached = [i for i in reached if not stages[i].closed]
            if open_reached:
                reached.update(closed)
                lowest = min(open_reached)
                if self.pipeline.mode is TransitionMode.ANY:
                    reached.update(opened)
                else:
                    reached.update(i for i in opened if i > lowest)
            if self.pipeline.reopen and any(stages[i].closed for i in reached):
                reached.update(opened)
            if len(reached) == before:
                return {stages[i].key for i in reached}
