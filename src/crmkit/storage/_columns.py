"""What each entity field is, for storage: one descriptor per attrs field.

Both adapters read this table: the memory adapter to know which fields can order a
query, the SQL adapter to build its tables and to convert rows. It is derived from the
models' type annotations once, so a field added to a model is stored without anyone
editing a list here.
"""

import typing
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from functools import cache
from types import MappingProxyType, NoneType, UnionType
from typing import Any, Final, ParamSpec, TypeVar, cast
from uuid import UUID

import attrs

from crmkit.models import (
    Account,
    Activity,
    AuditEntry,
    Consent,
    Contact,
    CustomFields,
    Deal,
    DoNotContact,
    Entity,
    Erasure,
    Lead,
    Money,
    Segment,
    StageChange,
    Suppression,
    Task,
    Ticket,
)
from crmkit.models.rules import Rule

__all__ = [
    "ENTITIES",
    "REFERENCES",
    "REFERRERS",
    "REPOSITORIES",
    "Column",
    "Kind",
    "columns",
    "groupable",
    "memo",
    "references",
    "sortable",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def memo(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """:func:`functools.cache`, keeping the signature (entity classes are the keys)."""
    return cast(Callable[_P, _R], cache(function))


class Kind(Enum):
    """How a field is stored."""

    UUID = "uuid"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    TEXT = "text"
    ENUM = "enum"
    DATETIME = "datetime"
    DATE = "date"
    DECIMAL = "decimal"
    MONEY = "money"
    TAGS = "tags"
    JSON = "json"
    UUID_SET = "uuid_set"
    RULE = "rule"


_SORTABLE: Final = frozenset(
    {Kind.UUID, Kind.INT, Kind.FLOAT, Kind.BOOL, Kind.TEXT, Kind.ENUM, Kind.DATETIME, Kind.DATE}
)


@attrs.frozen
class Column:
    """One entity field: its name, storage kind and whether it may be ``None``."""

    name: str
    kind: Kind
    optional: bool
    enum: type[Enum] | None = None


ENTITIES: Final[tuple[type[Entity], ...]] = (
    Contact,
    Account,
    Lead,
    Deal,
    Ticket,
    Activity,
    Task,
    Segment,
    Consent,
    DoNotContact,
    StageChange,
    Suppression,
    Erasure,
    AuditEntry,
)
"""Every stored entity class, in the order their tables are created."""

REPOSITORIES: Final[Mapping[type[Entity], str]] = MappingProxyType(
    {
        Contact: "contacts",
        Account: "accounts",
        Lead: "leads",
        Deal: "deals",
        Ticket: "tickets",
        Activity: "activities",
        Task: "tasks",
        Segment: "segments",
        Consent: "consents",
        DoNotContact: "do_not_contact",
        StageChange: "stage_history",
        Suppression: "suppressions",
        Erasure: "erasures",
        AuditEntry: "audit",
    }
)
"""Per stored entity class, the name of its repository on a
:class:`~crmkit.storage.UnitOfWork` (``REPOSITORIES[Deal] == "deals"``): code that must
visit every repository (an export) goes through this table, not a list of its own."""


def _kind(tp: Any) -> Kind:  # noqa: PLR0912 - one branch per storage kind
    if tp is UUID:
        return Kind.UUID
    if tp is bool:
        return Kind.BOOL
    if tp is int:
        return Kind.INT
    if tp is float:
        return Kind.FLOAT
    if tp is datetime:
        return Kind.DATETIME
    if tp is date:
        return Kind.DATE
    if tp is Decimal:
        return Kind.DECIMAL
    if tp is Money:
        return Kind.MONEY
    if tp is CustomFields:
        return Kind.JSON
    if tp is Rule:
        return Kind.RULE
    if isinstance(tp, type) and issubclass(tp, Enum):
        return Kind.ENUM
    if isinstance(tp, type) and issubclass(tp, str):
        return Kind.TEXT
    if typing.get_origin(tp) is frozenset:
        (item,) = typing.get_args(tp)
        return Kind.TAGS if item is str else Kind.UUID_SET
    raise TypeError(f"no storage kind for {tp!r}")  # pragma: no cover - caught by tests


@memo
def columns(entity: type[Entity]) -> Mapping[str, Column]:
    """The storage descriptors of ``entity``'s fields, in declaration order."""
    hints = typing.get_type_hints(entity)
    found: dict[str, Column] = {}
    for field in attrs.fields(entity):
        tp = hints[field.name]
        optional = False
        if isinstance(tp, UnionType) or typing.get_origin(tp) is typing.Union:
            args = [a for a in typing.get_args(tp) if a is not NoneType]
            optional = len(args) < len(typing.get_args(tp))
            (tp,) = args
        kind = _kind(tp)
        found[field.name] = Column(field.name, kind, optional, tp if kind is Kind.ENUM else None)
    return MappingProxyType(found)


def sortable(entity: type[Entity]) -> frozenset[str]:
    """The fields a query on ``entity`` may be ordered by: ids, numbers, yes/no, text
    and enumerations (by code point), dates and times; not money, decimals, tags or
    custom fields."""
    return frozenset(c.name for c in columns(entity).values() if c.kind in _SORTABLE)


_GROUPABLE: Final = frozenset({Kind.UUID, Kind.INT, Kind.BOOL, Kind.TEXT, Kind.ENUM, Kind.DATE})


@memo
def groupable(entity: type[Entity]) -> frozenset[str]:
    """The fields whose values ``count_by`` counts: ids, whole numbers, yes/no, text,
    enumerations and dates (not times, money, decimals, floats, tags or custom fields)."""
    return frozenset(c.name for c in columns(entity).values() if c.kind in _GROUPABLE)


REFERRERS: Final[Mapping[str, tuple[tuple[type[Entity], str], ...]]] = MappingProxyType(
    {
        "contact": (
            (Lead, "contact_id"),
            (Deal, "contact_id"),
            (Ticket, "contact_id"),
            (Activity, "contact_id"),
            (Task, "contact_id"),
            (Consent, "contact_id"),
            (DoNotContact, "contact_id"),
        ),
        "account": ((Contact, "account_id"), (Deal, "account_id"), (Ticket, "account_id")),
        "lead": ((Deal, "lead_id"),),
        "deal": ((Lead, "deal_id"), (Activity, "deal_id"), (Task, "deal_id")),
        "ticket": ((Activity, "ticket_id"), (Task, "ticket_id")),
    }
)
"""Per entity, the fields of other entities that refer to it: a delete is refused while
one of them does. Stage history is not a reference: it is the record of what happened
to an entity (the CRM service deletes an entity's own history with it)."""


def _references() -> Mapping[type[Entity], tuple[tuple[str, type[Entity]], ...]]:
    by_name = {entity.entity_name: entity for entity in ENTITIES}
    found: dict[type[Entity], list[tuple[str, type[Entity]]]] = {}
    for target, referrers in REFERRERS.items():
        for entity, field in referrers:
            found.setdefault(entity, []).append((field, by_name[target]))
    return MappingProxyType({entity: tuple(refs) for entity, refs in found.items()})


REFERENCES: Final = _references()
"""Per entity class, its reference fields and the entity class each names: the inverse
of :data:`REFERRERS`. A written entity whose reference names no stored entity of the
tenant is refused with :class:`~crmkit.errors.DanglingReference`."""


@memo
def references(entity: type[Entity]) -> frozenset[str]:
    """The fields of ``entity`` that :data:`REFERRERS` lists as references to another
    entity (``references(Deal) == {"contact_id", "account_id", "lead_id"}``): what
    :meth:`~crmkit.storage.Repository.referring` may look up."""
    return frozenset(
        name for referrers in REFERRERS.values() for kind, name in referrers if kind is entity
    )
