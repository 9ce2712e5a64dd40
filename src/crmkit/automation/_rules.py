"""Automation rules as data: a trigger, a condition and a sequence of steps.

A rule is read from JSON with :func:`rules_from_json` (cattrs, strict: every problem is
reported with its JSON path) or built in Python. :func:`check_rules` checks a list of
rules against what the CRM is configured with (pipelines and their stages, business
calendars, message senders, host hooks) and looks for rules that trigger each other in
a cycle: each action records known event types (:data:`ACTION_EMITS`), so a rule whose
actions record the event that triggers another rule leads to it, and a path back to a
rule it started from is a cycle, refused with :class:`~crmkit.errors.InvalidAutomation`
naming the rules, unless allowed (then the run-time bound holds).

:func:`compile_steps` flattens a rule's steps, branches included, into a list of
instructions run one after the other (a branch jumps forward), so that a position in
a running sequence is one number.
"""

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any, ClassVar, Final
from uuid import UUID
from zoneinfo import ZoneInfo

import attrs

from crmkit.automation._actions import (
    MAX_NESTING,
    Action,
    AddTag,
    AddToSegment,
    AssignByCapacity,
    AssignByTerritory,
    AssignRoundRobin,
    Branch,
    CallHook,
    Check,
    CreateTask,
    MoveStage,
    RemoveTag,
    Rescore,
    SendMessage,
    Wait,
    WaitUntil,
    _valid,
    typed,
)
from crmkit.automation._catalog import EVENT_SUBJECTS, check_event_type
from crmkit.automation._sendtime import check_zone
from crmkit.clock import ensure_utc
from crmkit.errors import (
    InvalidAutomation,
    Problem,
    UnknownAction,
    UnknownReference,
    ValidationError,
)
from crmkit.lifecycle import BusinessCalendar, Pipeline, StageKind, add_business_time
from crmkit.models import LifecycleStage, SubjectKind
from crmkit.models import _fields as f
from crmkit.models.rules import Rule, RuleEntity
from crmkit.serialization import make_converter

__all__ = [
    "ACTION_EMITS",
    "MAX_RULES",
    "AutomationRule",
    "Instruction",
    "OnEvent",
    "OnSchedule",
    "Trigger",
    "chain_depth",
    "check_rules",
    "compile_steps",
    "emits",
    "find_cycle",
    "next_time_of_day",
    "rules_from_json",
    "rules_to_json",
    "wait_until",
]

MAX_RULES: Final = 1_000
"""The most rules one automation holds."""
MAX_STEPS: Final = 200
"""The most steps (instructions, branches flattened) of one rule."""
SCHEDULE_ANCHOR: Final = datetime(2000, 1, 3, tzinfo=UTC)
"""Where schedules count their periods from by default (a Monday, 00:00 UTC)."""

_SUBJECT_RULES: Final[Mapping[str, RuleEntity]] = {e.value: e for e in RuleEntity}


@attrs.frozen
class Trigger:
    """What starts a rule (the base class): ``{"type": "event", "event": "lead.captured"}``
    or ``{"type": "schedule", "every": "P91D", "entity": "contact"}``."""

    __crmkit_variants__: ClassVar[dict[str, type["Trigger"]]] = {}
    __crmkit_unknown__: ClassVar[type[ValidationError]] = InvalidAutomation
    tag: ClassVar[str] = ""


def _event_type(value: object) -> None:
    check_event_type(value, "")


@attrs.frozen
class OnEvent(Trigger):
    """The rule runs for every event of type ``event`` (one of
    :data:`~crmkit.automation.EVENT_SUBJECTS`), on the event's subject."""

    tag: ClassVar[str] = "event"
    event: str = attrs.field(validator=_valid(_event_type))

    @property
    def subject(self) -> str:
        """The kind of entity the event is about."""
        return EVENT_SUBJECTS[self.event]


def _period(value: object) -> None:
    if not isinstance(value, timedelta):
        raise ValidationError("", value, "expected a timedelta (in JSON an ISO 8601 duration)")
    if not timedelta(minutes=1) <= value <= timedelta(days=3660):
        raise ValidationError("", value, "expected a period from one minute to 3660 days")


@attrs.frozen
class OnSchedule(Trigger):
    """The rule runs every ``every``, for each stored ``entity`` its condition selects
    (the sweep runs in the store). Periods are counted from ``anchor``: with
    ``every = P1D`` and the default anchor, at 00:00 UTC each day."""

    tag: ClassVar[str] = "schedule"
    every: timedelta = attrs.field(validator=_valid(_period))
    entity: RuleEntity = attrs.field(
        default=RuleEntity.CONTACT, validator=_valid(f.member(RuleEntity))
    )
    anchor: datetime = attrs.field(default=SCHEDULE_ANCHOR, validator=_valid(f.is_utc))

    @property
    def subject(self) -> str:
        """The kind of entity the rule runs on."""
        return self.entity.value

    def period(self, at: datetime) -> int:
        """The number of the period ``at`` falls in (0 starts at the anchor)."""
        return (ensure_utc(at, "at") - self.anchor) // self.every

    def starts(self, period: int) -> datetime:
        """When period ``period`` starts."""
        if isinstance(period, bool) or not isinstance(period, int):
            raise ValidationError("period", period, "expected a whole number")
        try:
            return self.anchor + self.every * period
        except OverflowError:
            raise ValidationError("period", period, "reaches beyond the years 1 to 9999") from None


Trigger.__crmkit_variants__.update({OnEvent.tag: OnEvent, OnSchedule.tag: OnSchedule})


def _steps(value: object) -> None:
    if not isinstance(value, tuple) or not value:
        raise ValidationError("", value, "expected a list of at least one step")
    for index, item in enumerate(value):
        if not isinstance(item, Action):
            raise ValidationError(f"[{index}]", item, "expected a step")


def _condition(value: object) -> None:
    if value is not None and not isinstance(value, Rule):
        raise ValidationError("", value, "expected a rule or null")


def _to_tuple(value: Iterable[Any]) -> tuple[Action, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return value  # type: ignore[return-value]  # the validator names it
    return tuple(value)


@attrs.frozen
class AutomationRule:
    """A rule: when ``trigger`` fires and ``condition`` holds for the subject (its own
    entity's rule, or a contact rule on the subject's contact), run ``actions`` in
    order (waits, checks and branches among them).

    ``name`` is a key, unique within an automation: it is part of every step's id, so
    renaming a rule starts its sequences afresh. ``allow_cycle`` accepts that this
    rule takes part in a cycle of rules triggering each other (its condition ends it);
    the automation's ``max_depth`` still bounds it at run time.
    """

    name: str = attrs.field(validator=_valid(f.is_key))
    trigger: Trigger = attrs.field(
        validator=_valid(lambda v: f.expect(v, Trigger, "", "a trigger"))
    )
    actions: tuple[Action, ...] = attrs.field(converter=_to_tuple, validator=_valid(_steps))
    condition: Rule | None = attrs.field(default=None, validator=_valid(_condition))
    allow_cycle: bool = attrs.field(default=False, validator=_valid(f.is_bool))
    description: str | None = attrs.field(default=None, validator=_valid(f.optional(f.text(2000))))

    def __attrs_post_init__(self) -> None:
        problems = list(_subject_problems(self))
        try:
            program = compile_steps(self.actions)
        except InvalidAutomation as error:
            problems.extend(error.problems)
        else:
            if len(program) > MAX_STEPS:
                problems.append(
                    Problem("actions", len(program), f"a rule runs at most {MAX_STEPS} steps")
                )
        if problems:
            raise InvalidAutomation.of(problems)

    @property
    def subject(self) -> str:
        """The kind of entity the rule runs on (the trigger's subject)."""
        subject: str = self.trigger.subject  # type: ignore[attr-defined]
        return subject

    @property
    def program(self) -> tuple["Instruction", ...]:
        """The rule's steps as instructions (see :func:`compile_steps`)."""
        return compile_steps(self.actions)


def _rules_in(rule: AutomationRule) -> Iterator[tuple[str, Rule]]:
    if rule.condition is not None:
        yield "condition", rule.condition
    for path, action in _walk(rule.actions, "actions"):
        if isinstance(action, Check | Branch):
            yield f"{path}.rule", action.rule
        if isinstance(action, AssignByTerritory):
            for index, territory in enumerate(action.territories):
                yield f"{path}.territories[{index}].rule", territory.rule


def _subject_problems(rule: AutomationRule) -> Iterator[Problem]:
    """Rules on an entity the subject is not (a deal rule on a lead.captured)."""
    if not isinstance(rule.trigger, OnEvent | OnSchedule):
        return
    subject = rule.subject
    for path, condition in _rules_in(rule):
        if condition.entity is RuleEntity.CONTACT or condition.entity.value == subject:
            continue
        yield Problem(
            f"{path}.entity",
            condition.entity.value,
            f"the rule runs on a {subject}: expected a {subject} rule or a contact rule",
        )
    if isinstance(rule.trigger, OnSchedule):
        return
    for path, action in _walk(rule.actions, "actions"):
        if subject == "task" and isinstance(action, AssignRoundRobin | AssignByCapacity | Rescore):
            yield Problem(
                f"{path}.type", action.tag, "a task has no owner to assign or lead to score"
            )


def _walk(actions: Sequence[Action], path: str, depth: int = 0) -> Iterator[tuple[str, Action]]:
    for index, action in enumerate(actions):
        where = f"{path}[{index}]"
        yield where, action
        if isinstance(action, Branch):
            if depth + 1 >= MAX_NESTING:
                raise InvalidAutomation(
                    where, action.tag, f"branches nest at most {MAX_NESTING} deep"
                )
            yield from _walk(action.then, f"{where}.then", depth + 1)
            yield from _walk(action.otherwise, f"{where}.otherwise", depth + 1)


# ---------------------------------------------------------------------------- program


@attrs.frozen
class Instruction:
    """One instruction of a compiled sequence: ``action`` at ``path`` (its place in the
    rule, ``actions[2].then[0]``); for a branch, ``jump`` is where to go on when its rule
    does not hold (for a check, ``None``: stop); after a branch's ``then`` part,
    ``jump`` skips its ``otherwise`` part (``action`` is ``None`` then)."""

    path: str = attrs.field(validator=typed(str, "a path"))
    action: Action | None = attrs.field(validator=typed((Action, type(None)), "a step or None"))
    jump: int | None = attrs.field(default=None, validator=typed((int, type(None)), "an index"))


def compile_steps(actions: Sequence[Action]) -> tuple[Instruction, ...]:
    """``actions`` as a flat list of instructions: a branch becomes a test that jumps
    past its ``then`` part when its rule does not hold, and a jump at the end of the
    ``then`` part past the ``otherwise`` part. Jumps only go forward, so a sequence
    runs each instruction at most once."""
    program: list[Instruction] = []
    _compile(f.expect_items(actions, Action, "actions", "steps"), "actions", program, 0)
    return tuple(program)


def _compile(actions: Sequence[Action], path: str, program: list[Instruction], depth: int) -> None:
    if depth >= MAX_NESTING:
        raise InvalidAutomation(path, len(actions), f"branches nest at most {MAX_NESTING} deep")
    for index, action in enumerate(actions):
        where = f"{path}[{index}]"
        if type(action) not in ACTION_EMITS and not isinstance(action, MoveStage | CallHook):
            raise UnknownAction(where, action, "not a step type of crmkit.automation")
        if not isinstance(action, Branch):
            program.append(Instruction(where, action))
            continue
        test = len(program)
        program.append(Instruction(where, action))
        _compile(action.then, f"{where}.then", program, depth + 1)
        if action.otherwise:
            skip = len(program)
            program.append(Instruction(f"{where}.then", None))
            program[test] = Instruction(where, action, len(program))
            _compile(action.otherwise, f"{where}.otherwise", program, depth + 1)
            program[skip] = Instruction(f"{where}.then", None, len(program))
        else:
            program[test] = Instruction(where, action, len(program))


# ---------------------------------------------------------------------------- JSON


_CONVERTER = make_converter()


def rules_from_json(data: object) -> tuple[AutomationRule, ...]:
    """Rules from JSON data (a list of rule objects, as :func:`json.loads` returns it).

    Raises :class:`~crmkit.errors.InvalidAutomation` (or its subclasses
    :class:`~crmkit.errors.UnknownAction`, :class:`~crmkit.errors.UnknownEventType`)
    listing every problem with its JSON path (``$[0].actions[1].type``). Names must be
    unique. References to the CRM's configuration are checked by :func:`check_rules`.
    """
    if not isinstance(data, list):
        raise InvalidAutomation("$", data, "expected a list of rules")
    if len(data) > MAX_RULES:
        raise InvalidAutomation("$", len(data), f"at most {MAX_RULES} rules")
    try:
        rules = tuple(_CONVERTER.structure(data, list[AutomationRule]))
    except InvalidAutomation:
        raise
    except ValidationError as error:
        raise _automation_error(error) from None
    _unique(rules, "$")
    return rules


def _automation_error(error: ValidationError) -> InvalidAutomation:
    """A rule-language or value error met while reading rules, as an automation error
    (each problem keeps its path)."""
    return InvalidAutomation.of(error.problems)


def rules_to_json(rules: Iterable[AutomationRule]) -> list[dict[str, Any]]:
    """Rules as JSON data that :func:`rules_from_json` reads back equal."""
    rules = f.expect_items(rules, AutomationRule, "rules", "AutomationRules")
    return [_CONVERTER.unstructure(rule, unstructure_as=AutomationRule) for rule in rules]


def _unique(rules: Sequence[AutomationRule], root: str) -> None:
    seen: dict[str, int] = {}
    for index, rule in enumerate(rules):
        if rule.name in seen:
            raise InvalidAutomation(
                f"{root}[{index}].name", rule.name, f"is the name of rule {seen[rule.name]} too"
            )
        seen[rule.name] = index


# ---------------------------------------------------------------------------- checks


_ASSIGNED: Final = frozenset({"contact.changed", "lead.changed", "deal.changed", "ticket.changed"})
"""What a change of owner (or a ticket's assignee) records."""

ACTION_EMITS: Final[Mapping[type[Action], frozenset[str]]] = {
    CreateTask: frozenset({"task.created"}),
    AssignRoundRobin: _ASSIGNED,
    AssignByCapacity: _ASSIGNED,
    AssignByTerritory: _ASSIGNED,
    AddTag: frozenset({"contact.changed"}),
    RemoveTag: frozenset({"contact.changed"}),
    AddToSegment: frozenset({"segment.changed"}),
    Rescore: frozenset(
        {"lead.scored", "lead.changed", "lead.status_changed", "contact.stage_changed"}
    ),
    SendMessage: frozenset({"activity.recorded"}),
    Wait: frozenset(),
    WaitUntil: frozenset(),
    Check: frozenset(),
    Branch: frozenset(),
}
"""The event types each action records (a stage move and a hook: see :func:`emits`)."""

_MOVE_EMITS: Final[Mapping[SubjectKind, Mapping[StageKind, frozenset[str]]]] = {
    SubjectKind.DEAL: {
        StageKind.OPEN: frozenset({"deal.moved"}),
        StageKind.WON: frozenset({"deal.moved", "deal.won"}),
        StageKind.LOST: frozenset({"deal.moved", "deal.lost"}),
    },
    SubjectKind.LEAD: {
        StageKind.OPEN: frozenset({"lead.moved", "lead.changed", "contact.stage_changed"}),
        StageKind.WON: frozenset(
            {"lead.moved", "lead.changed", "contact.stage_changed", "lead.converted"}
        ),
        StageKind.LOST: frozenset({"lead.moved", "lead.changed"}),
    },
}


def emits(action: Action, pipelines: Mapping[str, Pipeline]) -> frozenset[str]:
    """The event types ``action`` records when it runs."""
    f.expect(action, Action, "action", "a step of a rule")
    pipelines = _pipelines(pipelines)
    if isinstance(action, CallHook):
        return action.emits
    if isinstance(action, MoveStage):
        if action.pipeline is None:
            return frozenset({"contact.stage_changed"})
        pipeline = pipelines.get(action.pipeline)
        if pipeline is None or action.stage not in {s.key for s in pipeline.stages}:
            return frozenset()
        return _MOVE_EMITS[pipeline.subject][pipeline.stage(action.stage).kind]
    found = ACTION_EMITS.get(type(action))
    if found is None:
        raise UnknownAction("action", action, "not a step type of crmkit.automation")
    return found


def check_rules(
    rules: Sequence[AutomationRule],
    *,
    pipelines: Mapping[str, Pipeline] | None,
    calendars: Mapping[str, BusinessCalendar],
    senders: Iterable[str],
    hooks: Iterable[str],
    root: str = "rules",
) -> None:
    """Check ``rules`` against the configuration: every pipeline, stage, calendar,
    sender and hook they name must exist (``pipelines`` ``None``: not known yet, not
    checked) (else :class:`~crmkit.errors.UnknownReference`
    naming the path, ``rules[0].actions[1].calendar``), a stage move must fit the
    rule's subject, and no rules may trigger each other in a cycle unless each of
    them allows it (else :class:`~crmkit.errors.InvalidAutomation` naming the cycle).
    """
    if not isinstance(root, str):
        raise ValidationError("root", root, "expected a path")
    rules = f.expect_items(rules, AutomationRule, root, "AutomationRules")
    senders, hooks = _names(senders, "senders"), _names(hooks, "hooks")
    pipelines = None if pipelines is None else _pipelines(pipelines)
    if not isinstance(calendars, Mapping):
        raise ValidationError("calendars", calendars, "expected a mapping of names to calendars")
    _unique(rules, root)
    problems: list[Problem] = []
    for index, rule in enumerate(rules):
        where = f"{root}[{index}]"
        for path, action in _walk(rule.actions, "actions"):
            problems.extend(
                p.within(f"{where}.{path}")
                for p in _reference_problems(rule, action, pipelines, calendars, senders, hooks)
            )
    if problems:
        unknown = all(p.reason.startswith("no ") for p in problems)
        raise (UnknownReference if unknown else InvalidAutomation).of(problems)
    cycle = find_cycle(rules, {} if pipelines is None else pipelines)
    if cycle is not None:
        names = " -> ".join(rules[i].name for i in cycle)
        first = cycle[0]
        raise InvalidAutomation(
            f"{root}[{first}].trigger",
            names,
            "rules trigger each other in a cycle (set allow_cycle on each of them to run "
            "it, bounded by max_depth)",
        )


def _reference_problems(  # noqa: PLR0917 - one check per kind of reference
    rule: AutomationRule,
    action: Action,
    pipelines: Mapping[str, Pipeline] | None,
    calendars: Mapping[str, BusinessCalendar],
    senders: frozenset[str],
    hooks: frozenset[str],
) -> Iterator[Problem]:
    calendar = getattr(action, "calendar", None)
    if isinstance(action, CreateTask | Wait) and calendar is not None and calendar not in calendars:
        yield Problem("calendar", calendar, f"no such business calendar ({_known(calendars)})")
    if isinstance(action, SendMessage) and action.sender not in senders:
        yield Problem("sender", action.sender, f"no such message sender ({_known(senders)})")
    if isinstance(action, CallHook) and action.hook not in hooks:
        yield Problem("hook", action.hook, f"no such hook ({_known(hooks)})")
    if isinstance(action, MoveStage) and (pipelines is not None or action.pipeline is None):
        yield from _move_problems(rule, action, {} if pipelines is None else pipelines)


def _move_problems(
    rule: AutomationRule, action: MoveStage, pipelines: Mapping[str, Pipeline]
) -> Iterator[Problem]:
    if action.pipeline is None:
        if action.stage not in {s.value for s in LifecycleStage}:
            stages = ", ".join(s.value for s in LifecycleStage)
            yield Problem("stage", action.stage, f"no such lifecycle stage ({stages})")
        return
    pipeline = pipelines.get(action.pipeline)
    if pipeline is None:
        yield Problem("pipeline", action.pipeline, f"no such pipeline ({_known(pipelines)})")
        return
    if action.stage not in {s.key for s in pipeline.stages}:
        stages = ", ".join(s.key for s in pipeline.stages)
        yield Problem("stage", action.stage, f"no such stage in pipeline {pipeline.key} ({stages})")
    if pipeline.subject.value != rule.subject:
        yield Problem(
            "pipeline",
            action.pipeline,
            f"is a {pipeline.subject.value} pipeline; this rule runs on a {rule.subject}",
        )


def _names(value: object, field: str) -> frozenset[str]:
    """The names of a collection (or a mapping's keys), each a string."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValidationError(field, value, "expected a collection of names")
    names = list(value)
    for name in names:
        if not isinstance(name, str):
            raise ValidationError(field, name, "expected a name (a string)")
    return frozenset(names)


def _pipelines(value: object) -> Mapping[str, Pipeline]:
    if not isinstance(value, Mapping):
        raise ValidationError("pipelines", value, "expected a mapping of keys to Pipelines")
    for key, pipeline in value.items():
        if not isinstance(pipeline, Pipeline):
            raise ValidationError(f"pipelines[{key!r}]", pipeline, "expected a Pipeline")
    return value


def _known(names: Iterable[str]) -> str:
    listed = sorted(names, key=str)
    return "configured: " + (", ".join(listed) if listed else "none")


def find_cycle(
    rules: Sequence[AutomationRule], pipelines: Mapping[str, Pipeline]
) -> list[int] | None:
    """The positions of rules that trigger each other in a cycle (the first repeated at
    the end), among rules that do not all allow it; ``None`` when there is none."""
    rules = f.expect_items(rules, AutomationRule, "rules", "AutomationRules")
    pipelines = _pipelines(pipelines)
    leads_to: dict[int, list[int]] = {}
    triggered: dict[str, list[int]] = {}
    for index, rule in enumerate(rules):
        if isinstance(rule.trigger, OnEvent):
            triggered.setdefault(rule.trigger.event, []).append(index)
    for index, rule in enumerate(rules):
        recorded = {e for _, action in _walk(rule.actions, "") for e in emits(action, pipelines)}
        leads_to[index] = sorted({t for event in recorded for t in triggered.get(event, [])})
    state: dict[int, int] = {}  # 1: on the path, 2: done
    path: list[int] = []

    def visit(node: int) -> list[int] | None:
        state[node] = 1
        path.append(node)
        for after in leads_to[node]:
            if state.get(after) == 1:
                cycle = [*path[path.index(after) :], after]
                if not all(rules[i].allow_cycle for i in cycle):
                    return cycle
            elif after not in state:
                found = visit(after)
                if found is not None:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in range(len(rules)):
        if start not in state:
            found = visit(start)
            if found is not None:
                return found
    return None


# ---------------------------------------------------------------------------- time


def next_time_of_day(after: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The first instant not before ``after`` whose wall-clock time in ``zone`` is
    ``at`` (in UTC). On a day the clock skips ``at`` (set forward), the instant the
    day's clock reaches it after the change; when it occurs twice, the first."""
    after = ensure_utc(after, "after")
    if not isinstance(at, time) or at.tzinfo is not None:
        raise ValidationError("at", at, "expected a time of day without a time zone")
    zone = check_zone(zone, "zone")
    try:
        day = after.astimezone(zone).date()
        for offset in range(3):
            candidate = _wall(day + timedelta(days=offset), at, zone)
            if candidate >= after:
                return candidate
    except OverflowError:
        pass
    raise ValidationError("after", after, "reaches beyond the year 9999")


def _wall(day: Any, at: time, zone: ZoneInfo) -> datetime:
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=zone, fold=0)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive:
        return first.astimezone(UTC)
    # Skipped by a change forward: the first whole minute the clock shows a later time
    # (the change itself; the search starts before it, with the offset after it).
    moment = naive.replace(tzinfo=zone, fold=1).astimezone(UTC).replace(second=0, microsecond=0)
    while moment.astimezone(zone).replace(tzinfo=None) < naive:
        moment += timedelta(minutes=1)
    return moment


def wait_until(
    action: Wait | WaitUntil,
    now: datetime,
    *,
    calendars: Mapping[str, BusinessCalendar],
    zone: ZoneInfo,
) -> datetime:
    """When the sequence goes on after the wait ``action`` that starts at ``now``:
    ``duration`` of business time later on the action's calendar, or the next
    ``at`` in the action's time zone (else ``zone``, the contact's)."""
    f.expect(action, (Wait, WaitUntil), "action", "a Wait or a WaitUntil")
    if not isinstance(calendars, Mapping):
        raise ValidationError("calendars", calendars, "expected a mapping of names to calendars")
    if isinstance(action, Wait):
        calendar = None
        if action.calendar is not None:
            calendar = calendars.get(action.calendar)
            if not isinstance(calendar, BusinessCalendar):
                raise UnknownReference("calendar", action.calendar, "no such business calendar")
        return add_business_time(calendar, now, action.duration)
    target = check_zone(zone if action.timezone is None else action.timezone, "zone")
    return next_time_of_day(now, action.at, target)


def chain_depth(cause: UUID | None, cause_of: Callable[[UUID], UUID | None], *, limit: int) -> int:
    """How many causes lie behind an event whose ``caused_by`` is ``cause``: follow
    ``cause_of`` (the cause recorded for an event or a step id, ``None`` at the root)
    until the root, or until more than ``limit`` (then ``limit + 1``). A cause seen
    twice ends the walk as over the limit, so a malformed chain cannot loop."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= 10_000:
        raise ValidationError("limit", limit, "expected a whole number from 0 to 10000")
    if not callable(cause_of):
        raise ValidationError("cause_of", cause_of, "expected a callable")
    depth, seen = 0, set()
    field = "cause"
    while cause is not None:
        if not isinstance(cause, UUID):
            raise ValidationError(field, cause, "expected an event or step id (a UUID) or None")
        if cause in seen or depth > limit:
            return limit + 1
        seen.add(cause)
        depth += 1
        cause = cause_of(cause)
        field = "cause_of"
    return depth
