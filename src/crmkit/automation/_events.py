"""Domain events: what a CRM use case changed, as typed, frozen, serialisable records.

Every event has an ``id`` (made by the use case), the use case's clock reading
``occurred_at``, the ``subject`` it happened to (``"contact"``, ``"lead"``, ``"deal"``,
``"ticket"``, ``"task"``, ``"account"``, ``"segment"``) and its ``subject_id``, and
``caused_by``: the id of the event or step whose handling ran the use case (``None``
when a person or the host called it). Its class variable ``type`` names it
(``"lead.captured"``). Events carry ids, keys, enumerations and times only, never
personal data: no names, addresses, phone numbers or free texts.

:data:`EVENT_TYPES` maps each type to its class; :func:`event_to_json` and
:func:`event_from_json` convert an event to JSON-compatible data and back with crmkit's
converter (:func:`crmkit.serialization.make_converter`).
"""

import enum
import functools
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from functools import cache
from types import MappingProxyType
from typing import Any, ClassVar, Final, cast
from uuid import UUID

import attrs

from crmkit.errors import Problem, ValidationError
from crmkit.models import (
    ActivityKind,
    ConsentChannel,
    ConsentStatus,
    DealStatus,
    DoNotContactReason,
    LeadChannel,
    LeadStatus,
    TaskKind,
    TaskStatus,
    TicketChannel,
    TicketPriority,
    TicketStatus,
)
from crmkit.models._shape import shape_problems
from crmkit.serialization import CrmkitConverter, make_converter

__all__ = [
    "EVENT_TYPES",
    "AccountChanged",
    "AccountCreated",
    "AccountDeleted",
    "AccountMerged",
    "AccountUnmerged",
    "ActivityChanged",
    "ActivityDeleted",
    "ActivityRecorded",
    "BlockChanged",
    "ConsentChanged",
    "ContactChanged",
    "ContactCreated",
    "ContactDeleted",
    "ContactMerged",
    "ContactStageChanged",
    "ContactUnmerged",
    "DealChanged",
    "DealCreated",
    "DealDeleted",
    "DealLost",
    "DealMoved",
    "DealReopened",
    "DealWon",
    "Event",
    "LeadCaptured",
    "LeadChanged",
    "LeadConverted",
    "LeadDeleted",
    "LeadMoved",
    "LeadScored",
    "LeadStatusChanged",
    "PersonErased",
    "SegmentChanged",
    "SegmentCreated",
    "SegmentDeleted",
    "SlaAtRisk",
    "SlaBreached",
    "TaskCancelled",
    "TaskChanged",
    "TaskCompleted",
    "TaskCreated",
    "TaskDeleted",
    "TaskDue",
    "TaskOverdue",
    "TicketChanged",
    "TicketClosed",
    "TicketDeleted",
    "TicketMoved",
    "TicketOpened",
    "TicketReplied",
    "TicketSolved",
    "caused_by",
    "current_cause",
    "event_from_json",
    "event_to_json",
]

_CAUSE: Final[ContextVar[UUID | None]] = ContextVar("crmkit_event_cause", default=None)


def current_cause() -> UUID | None:
    """The id of the event or step being handled in this context (``None``: none)."""
    return _CAUSE.get()


@contextmanager
def caused_by(cause: UUID | None) -> Iterator[None]:
    """Within the block, every event a use case records carries ``caused_by=cause``.

    The dispatcher runs each handler in ``caused_by(event.id)``, a step runner in
    ``caused_by(step.id)``: a chain of handlers calling use cases is then traceable (and
    boundable) from event to event. Works per thread and per asyncio task.
    """
    if cause is not None and not isinstance(cause, UUID):
        raise ValidationError("cause", cause, "expected a UUID or None")
    token = _CAUSE.set(cause)
    try:
        yield
    finally:
        _CAUSE.reset(token)


_ZERO: Final = timedelta(0)
_QUICK: dict[type, Callable[[object], bool]] = {}


def _is(hint: Any) -> Callable[[object], bool]:
    """A fast test that a value has the annotated type ``hint`` (the shapes events and
    deliveries use); :func:`shape_problems` names what is wrong when it fails."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        test = _is(inner)
        return lambda value: value is None or test(value)
    if typing.get_origin(hint) is tuple:
        item = _is(args[0])
        return lambda value: isinstance(value, tuple) and all(item(v) for v in value)
    if typing.get_origin(hint) is frozenset:
        member = _is(args[0])
        return lambda value: isinstance(value, frozenset) and all(member(v) for v in value)
    if hint is float:
        return lambda value: type(value) in (int, float)
    if hint is int:
        return lambda value: type(value) is int
    if isinstance(hint, type):
        return lambda value: isinstance(value, hint)
    return lambda value: False  # pragma: no cover - the slow check decides


def _test_source(hint: Any, value: str, namespace: dict[str, Any]) -> str:
    """A Python expression testing that ``value`` has the type ``hint`` (plain types
    inline, the others through :func:`_is`), names it needs added to ``namespace``."""
    name = f"t{len(namespace)}"
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return f"({value} is None or {_test_source(inner, value, namespace)})"
    if hint is int:
        return f"{value}.__class__ is int"
    if isinstance(hint, type) and hint is not float and typing.get_origin(hint) is None:
        namespace[name] = hint
        return f"isinstance({value}, {name})"
    namespace[name] = _is(hint)
    return f"{name}({value})"


def quick_check(obj: object) -> bool:
    """Whether every field of the attrs instance ``obj`` has its annotated type, fast
    (one test function per class, generated once from its fields' types)."""
    cls = type(obj)
    test = _QUICK.get(cls)
    if test is None:
        hints = typing.get_type_hints(cls)
        namespace: dict[str, Any] = {}
        tests = [
            _test_source(hints[a.name], f"obj.{a.name}", namespace)
            for a in attrs.fields(cast(Any, cls))
        ]
        source = f"def test(obj):\n    return {' and '.join(tests) or 'True'}\n"
        # Generated from the class's own attribute names (identifiers) and fixed text.
        exec(compile(source, f"<crmkit quick check {cls.__name__}>", "exec"), namespace)
        test = _QUICK[cls] = namespace["test"]
    return bool(test(obj))


@attrs.frozen(kw_only=True)
class Event:
    """The base class of every domain event (see the module documentation)."""

    type: ClassVar[str] = "event"

    id: UUID
    occurred_at: datetime
    subject: str
    subject_id: UUID
    caused_by: UUID | None = None

    def __attrs_post_init__(self) -> None:
        if quick_check(self) and self.subject and self.occurred_at.utcoffset() == _ZERO:
            return
        problems = shape_problems(self)
        if not problems:
            at = self.occurred_at
            if at.utcoffset() != timedelta(0):
                problems.append(Problem("occurred_at", at, "expected an aware UTC time"))
            if not self.subject:
                problems.append(Problem("subject", self.subject, "expected a subject kind"))
        if problems:
            raise ValidationError.of(problems)


# ---------------------------------------------------------------------------- contacts


@attrs.frozen(kw_only=True)
class ContactCreated(Event):
    """A contact was stored (captured, created, imported)."""

    type: ClassVar[str] = "contact.created"
    account_id: UUID | None = None


@attrs.frozen(kw_only=True)
class ContactChanged(Event):
    """Fields of a contact changed (their names, never their values)."""

    type: ClassVar[str] = "contact.changed"
    fields: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class ContactStageChanged(Event):
    """A contact moved in the lifecycle (``lead`` -> ``mql`` ...)."""

    type: ClassVar[str] = "contact.stage_changed"
    from_stage: str | None = None
    to_stage: str


@attrs.frozen(kw_only=True)
class ContactDeleted(Event):
    """A contact was deleted."""

    type: ClassVar[str] = "contact.deleted"


@attrs.frozen(kw_only=True)
class ContactMerged(Event):
    """Contacts were merged into the subject (the survivor)."""

    type: ClassVar[str] = "contact.merged"
    merge_id: UUID
    merged_ids: tuple[UUID, ...] = ()


@attrs.frozen(kw_only=True)
class ContactUnmerged(Event):
    """A merge into the subject was undone."""

    type: ClassVar[str] = "contact.unmerged"
    merge_id: UUID


@attrs.frozen(kw_only=True)
class PersonErased(Event):
    """The subject contact's personal data was erased (anonymised everywhere)."""

    type: ClassVar[str] = "person.erased"


@attrs.frozen(kw_only=True)
class ConsentChanged(Event):
    """A consent decision of the subject contact was recorded."""

    type: ClassVar[str] = "consent.changed"
    consent_id: UUID
    channel: ConsentChannel
    purpose: str
    status: ConsentStatus


@attrs.frozen(kw_only=True)
class BlockChanged(Event):
    """The subject contact was blocked on a channel (do not contact), or a block lifted."""

    type: ClassVar[str] = "do_not_contact.changed"
    channel: ConsentChannel
    reason: DoNotContactReason
    lifted: bool = False


@attrs.frozen(kw_only=True)
class ActivityRecorded(Event):
    """An activity joined the subject contact's timeline."""

    type: ClassVar[str] = "activity.recorded"
    activity_id: UUID
    kind: ActivityKind
    deal_id: UUID | None = None
    ticket_id: UUID | None = None


@attrs.frozen(kw_only=True)
class ActivityChanged(Event):
    """An activity of the subject contact changed (an erasure anonymised it)."""

    type: ClassVar[str] = "activity.changed"
    activity_id: UUID
    fields: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class ActivityDeleted(Event):
    """An activity of the subject contact was deleted."""

    type: ClassVar[str] = "activity.deleted"
    activity_id: UUID


# ---------------------------------------------------------------------------- accounts


@attrs.frozen(kw_only=True)
class AccountCreated(Event):
    """An account was stored."""

    type: ClassVar[str] = "account.created"


@attrs.frozen(kw_only=True)
class AccountChanged(Event):
    """Fields of an account changed (their names)."""

    type: ClassVar[str] = "account.changed"
    fields: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class AccountDeleted(Event):
    """An account was deleted."""

    type: ClassVar[str] = "account.deleted"


@attrs.frozen(kw_only=True)
class AccountMerged(Event):
    """Accounts were merged into the subject (the survivor)."""

    type: ClassVar[str] = "account.merged"
    merge_id: UUID
    merged_ids: tuple[UUID, ...] = ()


@attrs.frozen(kw_only=True)
class AccountUnmerged(Event):
    """A merge into the subject account was undone."""

    type: ClassVar[str] = "account.unmerged"
    merge_id: UUID


# ---------------------------------------------------------------------------- leads


@attrs.frozen(kw_only=True)
class LeadCaptured(Event):
    """A lead was stored (captured from a touchpoint, or added)."""

    type: ClassVar[str] = "lead.captured"
    contact_id: UUID
    channel: LeadChannel
    pipeline: str | None = None
    stage: str | None = None


@attrs.frozen(kw_only=True)
class LeadChanged(Event):
    """Fields of a lead changed (their names)."""

    type: ClassVar[str] = "lead.changed"
    fields: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class LeadScored(Event):
    """A lead's score changed."""

    type: ClassVar[str] = "lead.scored"
    score: float | None = None


@attrs.frozen(kw_only=True)
class LeadStatusChanged(Event):
    """A lead's status changed (accepted, qualified, disqualified, reopened ...)."""

    type: ClassVar[str] = "lead.status_changed"
    from_status: LeadStatus
    to_status: LeadStatus


@attrs.frozen(kw_only=True)
class LeadMoved(Event):
    """A lead moved to another stage of its lead pipeline."""

    type: ClassVar[str] = "lead.moved"
    pipeline: str | None = None
    from_stage: str | None = None
    to_stage: str


@attrs.frozen(kw_only=True)
class LeadConverted(Event):
    """A lead was converted into the deal ``deal_id``."""

    type: ClassVar[str] = "lead.converted"
    contact_id: UUID
    deal_id: UUID


@attrs.frozen(kw_only=True)
class LeadDeleted(Event):
    """A lead was deleted."""

    type: ClassVar[str] = "lead.deleted"


# ---------------------------------------------------------------------------- deals


@attrs.frozen(kw_only=True)
class DealCreated(Event):
    """A deal was stored."""

    type: ClassVar[str] = "deal.created"
    pipeline: str
    stage: str
    contact_id: UUID | None = None
    lead_id: UUID | None = None


@attrs.frozen(kw_only=True)
class DealChanged(Event):
    """Fields of a deal changed (their names)."""

    type: ClassVar[str] = "deal.changed"
    fields: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class DealMoved(Event):
    """A deal moved to another stage of its pipeline."""

    type: ClassVar[str] = "deal.moved"
    pipeline: str | None = None
    from_stage: str | None = None
    to_stage: str


@attrs.frozen(kw_only=True)
class DealWon(Event):
    """A deal was won."""

    type: ClassVar[str] = "deal.won"
    contact_id: UUID | None = None


@attrs.frozen(kw_only=True)
class DealLost(Event):
    """A deal was lost."""

    type: ClassVar[str] = "deal.lost"
    contact_id: UUID | None = None


@attrs.frozen(kw_only=True)
class DealReopened(Event):
    """A closed deal was reopened."""

    type: ClassVar[str] = "deal.reopened"
    from_status: DealStatus


@attrs.frozen(kw_only=True)
class DealDeleted(Event):
    """A deal was deleted."""

    type: ClassVar[str] = "deal.deleted"


# ---------------------------------------------------------------------------- tickets


@attrs.frozen(kw_only=True)
class TicketOpened(Event):
    """A ticket was opened."""

    type: ClassVar[str] = "ticket.opened"
    contact_id: UUID
    channel: TicketChannel
    priority: TicketPriority


@attrs.frozen(kw_only=True)
class TicketReplied(Event):
    """A reply was recorded on a ticket: by an agent, or by the customer."""

    type: ClassVar[str] = "ticket.replied"
    activity_id: UUID
    kind: ActivityKind
    by_customer: bool


@attrs.frozen(kw_only=True)
class TicketMoved(Event):
    """A ticket's status changed."""

    type: ClassVar[str] = "ticket.moved"
    from_status: TicketStatus | None = None
    to_status: TicketStatus


@attrs.frozen(kw_only=True)
class TicketSolved(Event):
    """A ticket was solved."""

    type: ClassVar[str] = "ticket.solved"
    contact_id: UUID


@attrs.frozen(kw_only=True)
class TicketClosed(Event):
    """A ticket was closed."""

    type: ClassVar[str] = "ticket.closed"
    contact_id: UUID


@attrs.frozen(kw_only=True)
class TicketChanged(Event):
    """Fields of a ticket changed (their names): a CSAT score, an assignee."""

    type: ClassVar[str] = "ticket.changed"
    fields: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class TicketDeleted(Event):
    """A ticket was deleted."""

    type: ClassVar[str] = "ticket.deleted"


@attrs.frozen(kw_only=True)
class SlaAtRisk(Event):
    """An SLA timer of the subject ticket passed its policy's at-risk share."""

    type: ClassVar[str] = "sla.at_risk"
    metric: str
    due_at: datetime | None = None


@attrs.frozen(kw_only=True)
class SlaBreached(Event):
    """An SLA timer of the subject ticket ran past its due time."""

    type: ClassVar[str] = "sla.breached"
    metric: str
    due_at: datetime | None = None


# ---------------------------------------------------------------------------- tasks


@attrs.frozen(kw_only=True)
class TaskCreated(Event):
    """A task was stored."""

    type: ClassVar[str] = "task.created"
    kind: TaskKind
    due_at: datetime
    contact_id: UUID | None = None
    deal_id: UUID | None = None
    ticket_id: UUID | None = None


@attrs.frozen(kw_only=True)
class TaskChanged(Event):
    """Fields of a task changed (their names)."""

    type: ClassVar[str] = "task.changed"
    fields: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class TaskCompleted(Event):
    """A task was done."""

    type: ClassVar[str] = "task.completed"


@attrs.frozen(kw_only=True)
class TaskCancelled(Event):
    """A task was cancelled."""

    type: ClassVar[str] = "task.cancelled"
    from_status: TaskStatus = TaskStatus.OPEN


@attrs.frozen(kw_only=True)
class TaskDeleted(Event):
    """A task was deleted."""

    type: ClassVar[str] = "task.deleted"


@attrs.frozen(kw_only=True)
class TaskDue(Event):
    """An open task falls due soon (within the sweep's notice)."""

    type: ClassVar[str] = "task.due"
    due_at: datetime


@attrs.frozen(kw_only=True)
class TaskOverdue(Event):
    """An open task is past its due time."""

    type: ClassVar[str] = "task.overdue"
    due_at: datetime


# ---------------------------------------------------------------------------- segments


@attrs.frozen(kw_only=True)
class SegmentCreated(Event):
    """A segment was stored."""

    type: ClassVar[str] = "segment.created"


@attrs.frozen(kw_only=True)
class SegmentChanged(Event):
    """A segment changed (its rule, its members ...: the fields' names)."""

    type: ClassVar[str] = "segment.changed"
    fields: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class SegmentDeleted(Event):
    """A segment was deleted."""

    type: ClassVar[str] = "segment.deleted"


def _subclasses() -> dict[str, type[Event]]:
    found: dict[str, type[Event]] = {}
    for name in __all__:
        value = globals().get(name)
        if isinstance(value, type) and issubclass(value, Event) and value is not Event:
            found[value.type] = value
    return found


EVENT_TYPES: Final[Mapping[str, type[Event]]] = MappingProxyType(_subclasses())
"""Every event type crmkit records, by its ``type`` (``"deal.won"``: :class:`DealWon`)."""


@cache
def _converter() -> CrmkitConverter:
    return make_converter()


def event_to_json(event: Event) -> dict[str, Any]:
    """``event`` as JSON-compatible data: its fields and its ``type``."""
    if not isinstance(event, Event) or type(event) not in _CLASSES:
        raise ValidationError("event", event, "expected an event of EVENT_TYPES")
    data: dict[str, Any] = _converter().unstructure(event)
    data["type"] = event.type
    return data


_CLASSES: Final = frozenset(EVENT_TYPES.values())


def event_from_json(data: object) -> Event:
    """The event ``data`` (from :func:`event_to_json`) describes; a wrong type name, a
    missing or wrong field raises :class:`~crmkit.errors.ValidationError`."""
    if not isinstance(data, Mapping):
        raise ValidationError("data", data, "expected a JSON object")
    kind = data.get("type")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValidationError("type", kind, "no such event type (see EVENT_TYPES)")
    if len(data) == len(_readers(cls)) + 1:
        # The fast path reads a well-formed document only (what event_to_json wrote);
        # any doubt goes the slow way, which checks everything and names what is wrong.
        try:
            return _quick_reader(cls)(data)
        except Exception:  # the slow path below raises the right error
            pass
    fields = {k: v for k, v in data.items() if k != "type"}
    event: Event = _converter().structure(fields, cls)
    return event


_READERS: dict[type[Event], list[tuple[str, Callable[[Any, Any], Any], Any]]] = {}


def _readers(cls: type[Event]) -> list[tuple[str, Callable[[Any, Any], Any], Any]]:
    """Per field of ``cls``: its name, the converter's structure hook of its type, the
    type (built once per class: the converter's whole-class function collects every
    problem of a document, which costs more than reading a good one)."""
    found = _READERS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        converter = _converter()
        found = _READERS[cls] = [
            (a.name, converter.get_structure_hook(hints[a.name]), hints[a.name])
            for a in attrs.fields(cast(Any, cls))
        ]
    return found


_QUICK_READERS: dict[type[Event], Callable[[Mapping[str, Any]], Event]] = {}


class _Doubt(Exception):
    """A value the quick reader does not take as it is: the slow path decides."""


def _utc(value: Any) -> datetime:
    if value.__class__ is not str:
        raise _Doubt
    found = datetime.fromisoformat(value)
    if found.utcoffset() != _ZERO:
        raise _Doubt
    return found


def _utc_or_none(value: Any) -> datetime | None:
    return None if value is None else _utc(value)


def _text(value: Any) -> str:
    if value.__class__ is not str:
        raise _Doubt
    return str(value)


def _text_or_none(value: Any) -> str | None:
    return None if value is None else _text(value)


def _flag(value: Any) -> bool:
    if value.__class__ is not bool:
        raise _Doubt
    return value is True


def _quick_reader(cls: type[Event]) -> Callable[[Mapping[str, Any]], Event]:
    """A function that builds ``cls`` from a well-formed JSON document, or raises.

    Each field is read by a strict test of its JSON form (a canonical UUID, an ISO time
    at UTC, a str, a bool, an enum value; other types through the converter's hook) and
    set on a new instance, without running ``__init__`` again: the tests are those of
    :func:`quick_check` and ``Event.__attrs_post_init__``, which a document failing any
    of them meets on the slow path. One function per class, generated once.
    """
    found = _QUICK_READERS.get(cls)
    if found is not None:
        return found
    hints = typing.get_type_hints(cls)
    read_uuid = functools.partial(_hooked, _converter().get_structure_hook(UUID), UUID)
    simple: dict[Any, Callable[[Any], Any]] = {
        UUID: read_uuid,
        UUID | None: functools.partial(_or_none, read_uuid),
        datetime: _utc,
        datetime | None: _utc_or_none,
        str: _text,
        str | None: _text_or_none,
        bool: _flag,
    }
    namespace: dict[str, Any] = {
        "_new": object.__new__,
        "_set": object.__setattr__,
        "_check": quick_check,
        "cls": cls,
    }
    lines = ["def read(data):", "    obj = _new(cls)"]
    hooked = False
    for index, field in enumerate(attrs.fields(cast(Any, cls))):
        hint = hints[field.name]
        reader = simple.get(hint)
        if reader is None and isinstance(hint, type) and issubclass(hint, enum.Enum):
            reader = _enum_reader(hint)
        if reader is None:
            hook = _converter().get_structure_hook(hint)
            reader = functools.partial(_hooked, hook, hint)
            hooked = True
        namespace[f"_r{index}"] = reader
        lines.append(f"    _set(obj, {field.name!r}, _r{index}(data[{field.name!r}]))")
    if hooked:  # what a hook gives is checked as __init__ would check it
        lines += ["    if not _check(obj):", "        raise _Doubt"]
    lines += ["    if not obj.subject:", "        raise _Doubt", "    return obj"]
    namespace["_Doubt"] = _Doubt
    # Generated from the class's own attribute names (identifiers) and fixed text.
    exec(compile("\n".join(lines), f"<crmkit quick reader {cls.__name__}>", "exec"), namespace)
    made: Callable[[Mapping[str, Any]], Event] = namespace["read"]
    _QUICK_READERS[cls] = made
    return made


def _enum_reader(kind: type[enum.Enum]) -> Callable[[Any], Any]:
    members = kind._value2member_map_

    def read(value: Any) -> Any:
        if value.__class__ is not str:
            raise _Doubt
        return members[value]

    return read


def _hooked(hook: Callable[[Any, Any], Any], hint: Any, value: Any) -> Any:
    return hook(value, hint)


def _or_none(read: Callable[[Any], Any], value: Any) -> Any:
    return None if value is None else read(value)
