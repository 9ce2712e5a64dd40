"""The steps of an automation rule, as data: actions, waits and branches.

Every step is a frozen attrs class; in JSON it is an object whose ``"type"`` names the
step (``{"type": "create_task", "title": "Call", "due_in": "PT15M"}``). An unknown type
raises :class:`~crmkit.errors.UnknownAction` naming its JSON path; a wrong field raises
:class:`~crmkit.errors.InvalidAutomation`. What a step refers to by name (a calendar, a
pipeline stage, a sender, a hook) is checked when the rules are put together in an
:class:`~crmkit.automation.Automation`.
"""

from collections.abc import Callable, Iterable
from datetime import time, timedelta
from typing import Any, ClassVar, Final
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from crmkit.automation._catalog import check_event_type
from crmkit.errors import InvalidAutomation, UnknownAction, ValidationError
from crmkit.models import ConsentChannel, CustomFields, TaskKind
from crmkit.models import _fields as f
from crmkit.models.rules import Rule

__all__ = [
    "Action",
    "AddTag",
    "AddToSegment",
    "AssignByCapacity",
    "AssignByTerritory",
    "AssignRoundRobin",
    "Branch",
    "CallHook",
    "Check",
    "CreateTask",
    "MoveStage",
    "RemoveTag",
    "Rescore",
    "Seat",
    "SendMessage",
    "Territory",
    "Wait",
    "WaitUntil",
]

_NAME: Final = f.text(200)
_TITLE: Final = f.text(500)
_NOTES: Final = f.text(10_000, single_line=False)
_LONGEST_WAIT: Final = timedelta(days=3660)
MAX_NESTING: Final = 8
"""How deep branches may nest in one rule."""


def _valid(check: Callable[[Any], None]) -> Callable[[Any, "attrs.Attribute[Any]", Any], None]:
    """An attrs validator running a field check; its error names the field."""

    def validate(_: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
        try:
            check(value)
        except ValidationError as error:
            kind = type(error) if isinstance(error, InvalidAutomation) else InvalidAutomation
            raise kind.of([p.within(attribute.name) for p in error.problems]) from None

    return validate


def typed(
    kind: type | tuple[type, ...], what: str
) -> Callable[[Any, "attrs.Attribute[Any]", Any], None]:
    """An attrs validator of a result's field: a ``kind``, else a ValidationError naming
    the field (``bool`` is no ``int`` here)."""

    def validate(_: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
        wrong = isinstance(value, bool) and bool not in (
            kind if isinstance(kind, tuple) else (kind,)
        )
        if wrong or not isinstance(value, kind):
            raise ValidationError(attribute.name, value, f"expected {what}")

    return validate


def typed_items(kind: type, what: str) -> Callable[[Any, "attrs.Attribute[Any]", Any], None]:
    """An attrs validator of a tuple of ``kind`` items."""

    def validate(_: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
        if not isinstance(value, tuple):
            raise ValidationError(attribute.name, value, f"expected a tuple of {what}")
        for index, item in enumerate(value):
            if not isinstance(item, kind):
                raise ValidationError(f"{attribute.name}[{index}]", item, f"expected {what}")

    return validate


def _optional(check: Callable[[Any], None]) -> Callable[[Any, "attrs.Attribute[Any]", Any], None]:
    return _valid(f.optional(check))


def _member(enum: Any) -> Callable[[Any, "attrs.Attribute[Any]", Any], None]:
    return _valid(f.member(enum))


def _duration(value: object) -> None:
    if not isinstance(value, timedelta):
        raise ValidationError("", value, "expected a timedelta (in JSON an ISO 8601 duration)")
    if not timedelta(0) <= value <= _LONGEST_WAIT:
        raise ValidationError("", value, "expected a duration from 0 to 3660 days")


def _positive_duration(value: object) -> None:
    _duration(value)
    if value == timedelta(0):
        raise ValidationError("", value, "must be longer than zero")


def _time_of_day(value: object) -> None:
    if not isinstance(value, time) or value.tzinfo is not None:
        raise ValidationError("", value, "expected a time of day without a time zone ('09:00')")


def _zone_name(value: object) -> None:
    if not isinstance(value, str) or not value or "\x00" in value or len(value) > 200:
        raise ValidationError("", value, "expected an IANA time zone name")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError("", value, "unknown time zone (an IANA name)") from None


def _rule(value: object) -> None:
    if not isinstance(value, Rule):
        raise ValidationError("", value, "expected a rule")


def _items(kind: type, what: str, *, empty: bool = False) -> Callable[[object], None]:
    def check(value: object) -> None:
        if not isinstance(value, tuple):
            raise ValidationError("", value, f"expected a list of {what}")
        if not value and not empty:
            raise ValidationError("", value, f"expected at least one of {what}")
        for index, item in enumerate(value):
            if not isinstance(item, kind):
                raise ValidationError(f"[{index}]", item, f"expected {what}")

    return check


def _tuple(value: Iterable[Any]) -> tuple[Any, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return value  # type: ignore[return-value]  # the validator names it
    return tuple(value)


def _names_set(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidAutomation("emits", value, "expected a list of event types")
    try:
        return frozenset(value)
    except TypeError:
        raise InvalidAutomation("emits", value, "expected a list of event types") from None


def _custom(value: object) -> CustomFields:
    if isinstance(value, CustomFields):
        return value
    try:
        return CustomFields(value)  # type: ignore[arg-type]
    except ValidationError as error:
        raise InvalidAutomation.of([p.within("params") for p in error.problems]) from None


@attrs.frozen
class Action:
    """One step of an automation rule: an action, a wait or a branch (the base class).

    In JSON a step is an object with a ``"type"``: ``create_task``,
    ``assign_round_robin``, ``assign_by_capacity``, ``assign_by_territory``, ``add_tag``,
    ``remove_tag``, ``add_to_segment``, ``move_stage``, ``rescore``, ``send_message``,
    ``call_hook``, ``wait``, ``wait_until``, ``check``, ``branch``.
    """

    __crmkit_variants__: ClassVar[dict[str, type["Action"]]] = {}
    __crmkit_unknown__: ClassVar[type[ValidationError]] = UnknownAction
    tag: ClassVar[str] = ""


@attrs.frozen
class CreateTask(Action):
    """Create a task on the event's subject (its contact, deal or ticket), due
    ``due_in`` of business time after the step runs on the named ``calendar`` (calendar
    hours without one). ``assignee`` ``None`` gives it to the subject's owner."""

    tag: ClassVar[str] = "create_task"
    title: str = attrs.field(validator=_valid(_TITLE))
    due_in: timedelta = attrs.field(default=timedelta(0), validator=_valid(_duration))
    calendar: str | None = attrs.field(default=None, validator=_optional(f.is_key))
    kind: TaskKind = attrs.field(default=TaskKind.FOLLOW_UP, validator=_member(TaskKind))
    assignee: str | None = attrs.field(default=None, validator=_optional(_NAME))
    notes: str | None = attrs.field(default=None, validator=_optional(_NOTES))


@attrs.frozen
class AssignRoundRobin(Action):
    """Give the subject to the members of ``team`` in turn: the next after the one
    who was given the last subject of its kind (the turn is counted in the store, so
    it survives restarts and holds across workers)."""

    tag: ClassVar[str] = "assign_round_robin"
    team: tuple[str, ...] = attrs.field(
        converter=_tuple, validator=_valid(_items(str, "owner names"))
    )

    def __attrs_post_init__(self) -> None:
        _names(self.team, "team")


@attrs.frozen
class Seat:
    """A member of a team and how many open subjects (leads, deals or tickets of the
    kind being assigned) they can hold at once."""

    owner: str = attrs.field(validator=_valid(_NAME))
    capacity: int = attrs.field(validator=_valid(f.int_between(1, 1_000_000)))


@attrs.frozen
class AssignByCapacity(Action):
    """Give the subject to the member of ``team`` with the most free capacity (the
    lowest share of their capacity in use; the first listed on a tie). When everyone is
    full, the subject goes to ``overflow`` (``None``: it keeps its owner)."""

    tag: ClassVar[str] = "assign_by_capacity"
    team: tuple[Seat, ...] = attrs.field(converter=_tuple, validator=_valid(_items(Seat, "seats")))
    overflow: str | None = attrs.field(default=None, validator=_optional(_NAME))

    def __attrs_post_init__(self) -> None:
        _names(tuple(s.owner for s in self.team), "team")


@attrs.frozen
class Territory:
    """Subjects matching ``rule`` (of the subject's entity or a contact rule, checked
    on its contact) belong to ``owner``."""

    rule: Rule = attrs.field(validator=_valid(_rule))
    owner: str = attrs.field(validator=_valid(_NAME))


@attrs.frozen
class AssignByTerritory(Action):
    """Give the subject to the owner of the first territory whose rule it matches, else
    to ``otherwise`` (``None``: it keeps its owner)."""

    tag: ClassVar[str] = "assign_by_territory"
    territories: tuple[Territory, ...] = attrs.field(
        converter=_tuple, validator=_valid(_items(Territory, "territories"))
    )
    otherwise: str | None = attrs.field(default=None, validator=_optional(_NAME))


@attrs.frozen
class AddTag(Action):
    """Add the tag ``name`` to the subject's contact (the contact itself, or the
    contact of a lead, deal, ticket or task)."""

    tag: ClassVar[str] = "add_tag"
    name: str = attrs.field(validator=_valid(_NAME))


@attrs.frozen
class RemoveTag(Action):
    """Remove the tag ``name`` from the subject's contact."""

    tag: ClassVar[str] = "remove_tag"
    name: str = attrs.field(validator=_valid(_NAME))


@attrs.frozen
class AddToSegment(Action):
    """Add the subject's contact to the static segment ``segment_id``."""

    tag: ClassVar[str] = "add_to_segment"
    segment_id: UUID = attrs.field(validator=_valid(f.is_uuid))


@attrs.frozen
class MoveStage(Action):
    """Move the subject to ``stage``: a deal or a lead to a stage of ``pipeline`` (which
    must be its pipeline), or, without a pipeline, the contact (of the subject) forward
    to the lifecycle stage ``stage``."""

    tag: ClassVar[str] = "move_stage"
    stage: str = attrs.field(validator=_valid(f.is_key))
    pipeline: str | None = attrs.field(default=None, validator=_optional(f.is_key))


@attrs.frozen
class Rescore(Action):
    """Rescore the subject's open leads with the CRM's scoring model (a lead: itself)."""

    tag: ClassVar[str] = "rescore"


@attrs.frozen
class SendMessage(Action):
    """Send the message ``template`` to the subject's contact through the host's
    ``sender``, on ``channel`` for ``purpose``: only while the contact is reachable
    there (address, no do-not-contact, consent in force, under the frequency cap).
    Otherwise the step is skipped, and says why."""

    tag: ClassVar[str] = "send_message"
    sender: str = attrs.field(validator=_valid(f.is_key))
    channel: ConsentChannel = attrs.field(validator=_member(ConsentChannel))
    purpose: str = attrs.field(validator=_valid(f.is_key))
    template: str = attrs.field(validator=_valid(_NAME))


@attrs.frozen
class CallHook(Action):
    """Call the host's hook ``hook`` with the step (its id is the idempotency key) and
    ``params``. ``emits`` declares the event types the hook's use cases record, so that
    cycles through hooks are found when the rules are built."""

    tag: ClassVar[str] = "call_hook"
    hook: str = attrs.field(validator=_valid(f.is_key))
    params: CustomFields = attrs.field(factory=CustomFields, converter=_custom)
    emits: frozenset[str] = attrs.field(factory=frozenset, converter=_names_set)

    def __attrs_post_init__(self) -> None:
        for name in sorted(self.emits, key=repr):
            check_event_type(name, "emits")


@attrs.frozen
class Wait(Action):
    """Wait ``duration`` of business time on ``calendar`` (calendar hours without one)
    before the next step: ``{"type": "wait", "duration": "PT2H", "calendar": "office"}``
    is "wait 2 business hours"."""

    tag: ClassVar[str] = "wait"
    duration: timedelta = attrs.field(validator=_valid(_positive_duration))
    calendar: str | None = attrs.field(default=None, validator=_optional(f.is_key))


@attrs.frozen
class WaitUntil(Action):
    """Wait until the next ``at`` (a time of day, ``"09:00"``) in ``timezone``, or in
    the contact's time zone without one (see ``Automation.timezone_field``); a step at
    exactly that time goes on at once."""

    tag: ClassVar[str] = "wait_until"
    at: time = attrs.field(validator=_valid(_time_of_day))
    timezone: str | None = attrs.field(default=None, validator=_optional(_zone_name))


@attrs.frozen
class Check(Action):
    """Go on only while ``rule`` holds for the subject (its own entity's rule, or a
    contact rule on its contact); otherwise the sequence stops here."""

    tag: ClassVar[str] = "check"
    rule: Rule = attrs.field(validator=_valid(_rule))


@attrs.frozen
class Branch(Action):
    """Run ``then`` when ``rule`` holds for the subject, else ``otherwise``; the
    sequence goes on after either."""

    tag: ClassVar[str] = "branch"
    rule: Rule = attrs.field(validator=_valid(_rule))
    then: tuple[Action, ...] = attrs.field(
        converter=_tuple, validator=_valid(_items(Action, "steps", empty=True))
    )
    otherwise: tuple[Action, ...] = attrs.field(
        default=(), converter=_tuple, validator=_valid(_items(Action, "steps", empty=True))
    )


def _names(names: tuple[str, ...], field: str) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise InvalidAutomation(f"{field}[{index}]", name, "is listed twice")
        seen.add(name)


STEP_TYPES: Final[tuple[type[Action], ...]] = (
    CreateTask,
    AssignRoundRobin,
    AssignByCapacity,
    AssignByTerritory,
    AddTag,
    RemoveTag,
    AddToSegment,
    MoveStage,
    Rescore,
    SendMessage,
    CallHook,
    Wait,
    WaitUntil,
    Check,
    Branch,
)
Action.__crmkit_variants__.update({cls.tag: cls for cls in STEP_TYPES})
