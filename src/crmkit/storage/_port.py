"""The storage port: what crmkit needs of a store, as Protocols.

A :class:`Store` is opened for one tenant. Its :meth:`Store.unit_of_work` is a context
manager giving a :class:`UnitOfWork`: one transaction holding one repository per
entity. Nothing is written unless :meth:`UnitOfWork.commit` is called; leaving the
block rolls back whatever was not committed, and an exception always rolls back.
"""

from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

from crmkit.clock import Clock
from crmkit.models import (
    Account,
    Activity,
    ActivityKind,
    Consent,
    Contact,
    Deal,
    EmailAddress,
    Entity,
    Lead,
    Segment,
    StageChange,
    SubjectKind,
    Task,
    TaskKind,
    TaskStatus,
    Ticket,
)
from crmkit.models.rules import Rule
from crmkit.storage._query import Cursor, Order, Page

__all__ = [
    "ActivityRepository",
    "ContactRepository",
    "Repository",
    "StageHistoryRepository",
    "Store",
    "TaskRepository",
    "UnitOfWork",
]

_E = TypeVar("_E", bound=Entity)


class Repository(Protocol[_E]):
    """The stored entities of one kind, in the store's tenant."""

    @property
    def entity(self) -> type[_E]:
        """The entity class this repository stores."""
        ...

    def get(self, id: UUID, /) -> _E:
        """The entity with this id; :class:`~crmkit.errors.NotFound` when there is none."""
        ...

    def get_many(self, ids: Iterable[UUID], /) -> Mapping[UUID, _E]:
        """The entities with these ids that exist, by id (missing ids are left out)."""
        ...

    def add(self, item: _E, /) -> _E:
        """Store a new entity; :class:`~crmkit.errors.Duplicate` when its id is taken."""
        ...

    def add_many(self, items: Iterable[_E], /) -> int:
        """Store many new entities, all or none; returns how many.

        Reads ``items`` once, in bounded memory. A wrong item raises
        :class:`~crmkit.errors.ValidationError` naming its index (``[12]``), a taken id
        :class:`~crmkit.errors.Duplicate` with ``index`` set; either way nothing of this
        call is kept.
        """
        ...

    def update(self, item: _E, /) -> _E:
        """Replace the stored entity with ``item``, which must carry the stored version.

        Returns the stored entity, whose version is one higher. Raises
        :class:`~crmkit.errors.ConcurrencyConflict` when the stored version differs and
        :class:`~crmkit.errors.NotFound` when there is no such entity.
        """
        ...

    def delete(self, id: UUID, /, *, version: int | None = None) -> None:
        """Delete the entity; with ``version``, only if that is the stored version.

        :class:`~crmkit.errors.NotFound` when there is no such entity,
        :class:`~crmkit.errors.ConcurrencyConflict` when ``version`` is not the stored
        one, and :class:`~crmkit.errors.StillReferenced` while other entities of the
        tenant refer to it (:data:`~crmkit.storage.REFERRERS` lists who refers to what),
        naming every kind that does; nothing is deleted then.
        """
        ...

    def find(
        self,
        rule: Rule | None = None,
        /,
        *,
        order: Order | None = None,
        limit: int | None = None,
        after: Cursor | None = None,
        now: datetime | None = None,
    ) -> Page[_E]:
        """The entities for which ``rule`` is TRUE (all without a rule), one page.

        ``order`` defaults to ``Order()`` (by ``created_at``); ``after`` continues from the
        ``next`` cursor of a previous page; ``now`` (default: the store's clock) fixes
        relative dates and activity windows.
        """
        ...

    def count(self, rule: Rule | None = None, /, *, now: datetime | None = None) -> int:
        """How many entities ``rule`` selects (all without a rule)."""
        ...

    def count_by(
        self, field: str, rule: Rule | None = None, /, *, now: datetime | None = None
    ) -> dict[Any, int]:
        """How many entities ``rule`` selects (all without a rule), per value of
        ``field``, counted by the store (no entity is loaded).

        ``field`` is one of :func:`~crmkit.storage.groupable_fields`: an id, text, enum,
        yes/no, whole number or date field. The keys are the model's values (enum
        members, UUIDs, dates), ``None`` for entities without a value; values with no
        entity are left out.
        """
        ...

    def ids(self, rule: Rule | None = None, /, *, now: datetime | None = None) -> list[UUID]:
        """The ids of the entities ``rule`` selects, in id order, without loading them."""
        ...

    def iterate(
        self, rule: Rule | None = None, /, *, batch_size: int = 1000, now: datetime | None = None
    ) -> Iterator[_E]:
        """Every entity ``rule`` selects, by id, fetched ``batch_size`` at a time."""
        ...


class ContactRepository(Repository[Contact], Protocol):
    """Contacts, with the look-ups that identify a person."""

    def with_email(self, email: EmailAddress, /) -> list[Contact]:
        """The contacts whose e-mail address equals ``email`` compared without case
        (``str.casefold`` of the whole address), oldest first (``created_at``, then
        ``id``).

        A store that keeps one contact per address (the default identity policy) gives
        at most one. The look-up is an index look-up: its cost does not grow with the
        number of contacts.
        """
        ...


class TaskRepository(Repository[Task], Protocol):
    """Tasks, with the query behind follow-up lists, reminders and timelines."""

    def select(
        self,
        *,
        status: TaskStatus | None = None,
        kind: TaskKind | None = None,
        assignee: str | None = None,
        contact_id: UUID | None = None,
        due_until: datetime | None = None,
    ) -> list[Task]:
        """The tasks that match every filter given (``None`` leaves one out), by
        ``due_at`` then ``id``; ``due_until`` keeps tasks due at or before it."""
        ...


class ActivityRepository(Repository[Activity], Protocol):
    """Activities: the timeline events of contacts."""

    def append(self, activity: Activity, /) -> Activity:
        """Record an activity (``add`` under the name a timeline uses)."""
        ...

    def for_contact(
        self,
        contact_id: UUID,
        /,
        *,
        kinds: Iterable[ActivityKind] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Activity]:
        """A contact's activities from ``since`` (inclusive) to ``until`` (exclusive),
        of ``kinds`` (all when ``None``), oldest first."""
        ...


class StageHistoryRepository(Repository[StageChange], Protocol):
    """Stage changes of contacts, leads, deals and tickets."""

    def for_subject(self, subject: SubjectKind, subject_id: UUID, /) -> list[StageChange]:
        """The stage changes of one entity, oldest first."""
        ...

    def for_subjects(
        self, subject: SubjectKind, subject_ids: Iterable[UUID], /
    ) -> list[StageChange]:
        """The stage changes of many entities of one kind, in one query: oldest first
        (``at``, then ``id``), whatever the order of ``subject_ids``."""
        ...


class UnitOfWork(Protocol):
    """One transaction over every repository of a store, one repository per entity."""

    @property
    def contacts(self) -> ContactRepository: ...
    @property
    def accounts(self) -> Repository[Account]: ...
    @property
    def leads(self) -> Repository[Lead]: ...
    @property
    def deals(self) -> Repository[Deal]: ...
    @property
    def tickets(self) -> Repository[Ticket]: ...
    @property
    def activities(self) -> ActivityRepository: ...
    @property
    def tasks(self) -> TaskRepository: ...
    @property
    def segments(self) -> Repository[Segment]: ...
    @property
    def consents(self) -> Repository[Consent]: ...
    @property
    def stage_history(self) -> StageHistoryRepository: ...

    def commit(self) -> None:
        """Make everything done so far permanent; the unit stays open for more work."""
        ...

    def rollback(self) -> None:
        """Discard everything done since the last commit."""
        ...


class Store(Protocol):
    """A place where one tenant's CRM data lives."""

    @property
    def tenant(self) -> str:
        """The tenant whose rows this store reads and writes, and no other."""
        ...

    @property
    def clock(self) -> Clock:
        """The clock that gives ``now`` to queries that do not pass one."""
        ...

    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]:
        """A new unit of work (see the module documentation)."""
        ...

    def for_tenant(self, tenant: str, /) -> "Store":
        """A store on the same data for another tenant."""
        ...

    def close(self) -> None:
        """Release what the store holds (connections); it cannot be used afterwards."""
        ...
