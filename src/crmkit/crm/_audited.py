"""A unit of work that writes the audit trail of the contacts and deals it stores, and
the domain events of everything it writes.

The CRM's write use cases run in this unit: every add of a contact or deal records a
``created`` entry, every update one ``changed`` entry per changed field (read against the
stored version), in the same transaction as the change itself.

Every write of every repository (add, update, restore, delete; merges and erasures too)
is turned into its domain events (:mod:`crmkit.crm._outbox`), kept in memory, and
appended to the outbox just before the unit commits: an event is stored if and only if
its change is. A rollback forgets the events noted since the last commit.
"""

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar, cast
from uuid import UUID

from crmkit.automation import Event, current_cause
from crmkit.crm import _outbox
from crmkit.models import (
    Account,
    Activity,
    AuditAction,
    AuditEntry,
    Consent,
    Contact,
    Deal,
    DoNotContact,
    EmailAddress,
    Entity,
    Erasure,
    Lead,
    Segment,
    StageChange,
    Suppression,
    Task,
    Ticket,
)
from crmkit.models.rules import Reachable, ReachCheck, Rule
from crmkit.privacy import audit_changes, audit_event
from crmkit.quality import MergeRecord
from crmkit.storage import (
    AccountRepository,
    ActivityRepository,
    AuditRepository,
    ConsentRepository,
    ContactRepository,
    Cursor,
    DoNotContactRepository,
    MergeRepository,
    Order,
    OutboxRepository,
    Page,
    Repository,
    StageHistoryRepository,
    StepRepository,
    TaskRepository,
    UnitOfWork,
)

__all__ = ["AuditedUnit"]

_A = TypeVar("_A", bound=Contact | Deal)
_E = TypeVar("_E", bound=Entity)


class _Noted(Generic[_E]):
    """A repository whose writes note their domain events in the unit; reads (and
    every other method) go to the repository itself."""

    def __init__(self, inner: Any, unit: "AuditedUnit") -> None:
        self._inner = inner
        self._unit = unit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def add(self, item: _E, /) -> _E:
        stored: _E = self._inner.add(item)
        self._unit.note(_outbox.added(stored, self._unit.cause))
        return stored

    def append(self, item: _E, /) -> _E:
        stored: _E = self._inner.append(item)
        self._unit.note(_outbox.added(stored, self._unit.cause))
        return stored

    def add_many(self, items: Iterable[_E], /) -> int:
        events: list[Event] = []
        cause = self._unit.cause

        def noted() -> Iterator[_E]:
            for item in items:
                yield item
                if isinstance(item, Entity):
                    events.extend(_outbox.added(item, cause))

        count: int = self._inner.add_many(noted())
        self._unit.note(events)
        return count

    def _before(self, item: _E) -> _E | None:
        if not self._unit.recording or not isinstance(item, Entity):
            return None
        return cast(Mapping[UUID, _E], self._inner.get_many([item.id])).get(item.id)

    def update(self, item: _E, /) -> _E:
        before = self._before(item)
        stored: _E = self._inner.update(item)
        self._unit.note(_outbox.changed(before, stored, self._unit.cause))
        return stored

    def restore(self, item: _E, /, *, version: int) -> _E:
        before = self._before(item)
        stored: _E = self._inner.restore(item, version=version)
        self._unit.note(_outbox.changed(before, stored, self._unit.cause))
        return stored

    def delete(self, id: UUID, /, *, version: int | None = None) -> None:
        before = None
        if self._unit.recording and isinstance(id, UUID):
            before = self._inner.get_many([id]).get(id)
        self._inner.delete(id, version=version)
        if before is not None:
            self._unit.note(_outbox.deleted(before, self._unit.now(), self._unit.cause))


class _NotedMerges:
    """The merge records, noting the events of merges and of their undoing."""

    def __init__(self, inner: MergeRepository, unit: "AuditedUnit") -> None:
        self._inner = inner
        self._unit = unit

    def get(self, id: UUID, /) -> MergeRecord:
        return self._inner.get(id)

    def add(self, record: MergeRecord, /) -> MergeRecord:
        stored = self._inner.add(record)
        self._unit.note(_outbox.merged(stored, self._unit.cause))
        return stored

    def delete(self, id: UUID, /) -> None:
        before = self._inner.get(id) if self._unit.recording else None
        self._inner.delete(id)
        if before is not None:
            self._unit.note(_outbox.unmerged(before, self._unit.now(), self._unit.cause))

    def merging(self, merged_id: UUID, /) -> list[MergeRecord]:
        return self._inner.merging(merged_id)

    def with_email(self, email: EmailAddress, /) -> list[MergeRecord]:
        return self._inner.with_email(email)

    def involving(self, contact_id: UUID, /) -> list[MergeRecord]:
        return self._inner.involving(contact_id)

    def anonymise(self, record: MergeRecord, /) -> MergeRecord:
        # Erasure's own event (person.erased) says what happened; the anonymised
        # images are no change of their own.
        return self._inner.anonymise(record)


class _Audited(Generic[_A]):
    """A contacts or deals repository that records the audit trail of its writes (when
    its unit audits) and notes their events."""

    def __init__(self, inner: Repository[_A], unit: "AuditedUnit") -> None:
        self._inner: Repository[_A] = inner
        self._unit = unit

    @property
    def entity(self) -> type[_A]:
        return self._inner.entity

    def get(self, id: UUID, /) -> _A:
        return self._inner.get(id)

    def get_many(self, ids: Iterable[UUID], /) -> Mapping[UUID, _A]:
        return self._inner.get_many(ids)

    def add(self, item: _A, /) -> _A:
        stored = self._inner.add(item)
        self._unit.record([audit_event(stored, AuditAction.CREATED, **self._unit.stamp(stored))])
        self._unit.note(_outbox.added(stored, self._unit.cause))
        return stored

    def add_many(self, items: Iterable[_A], /) -> int:
        entries: list[AuditEntry] = []
        events: list[Event] = []
        cause = self._unit.cause

        def noted() -> Iterator[_A]:
            for item in items:
                yield item
                if self._unit.audits:
                    entries.append(audit_event(item, AuditAction.CREATED, **self._unit.stamp(item)))
                if self._unit.recording:
                    events.extend(_outbox.added(item, cause))

        count = self._inner.add_many(noted())
        self._unit.record(entries)
        self._unit.note(events)
        return count

    def update(self, item: _A, /) -> _A:
        before = self._inner.get_many([item.id]).get(item.id)
        stored = self._inner.update(item)
        if before is not None:
            self._unit.record(audit_changes(before, stored, **self._unit.stamp(stored)))
            self._unit.note(_outbox.changed(before, stored, self._unit.cause))
        return stored

    def restore(self, item: _A, /, *, version: int) -> _A:
        before = self._inner.get_many([item.id]).get(item.id)
        stored = self._inner.restore(item, version=version)
        if before is not None:
            self._unit.record(audit_changes(before, stored, **self._unit.stamp(stored)))
            self._unit.note(_outbox.changed(before, stored, self._unit.cause))
        return stored

    def delete(self, id: UUID, /, *, version: int | None = None) -> None:
        before = self._inner.get_many([id]).get(id) if isinstance(id, UUID) else None
        self._inner.delete(id, version=version)
        if before is not None:
            self._unit.note(_outbox.deleted(before, self._unit.now(), self._unit.cause))

    def referring(self, field: str, id: UUID, /) -> list[_A]:
        return self._inner.referring(field, id)

    def referring_documents(self, field: str, id: UUID, /) -> list[dict[str, Any]]:
        return self._inner.referring_documents(field, id)

    def erase_referring(
        self, field: str, id: UUID, values: Mapping[str, Any], /, *, at: datetime
    ) -> int:
        # Not audited field by field: that would copy the erased values into the trail.
        return self._inner.erase_referring(field, id, values, at=at)

    def find(
        self,
        rule: Rule | None = None,
        /,
        *,
        order: Order | None = None,
        limit: int | None = None,
        after: Cursor | None = None,
        now: datetime | None = None,
    ) -> Page[_A]:
        return self._inner.find(rule, order=order, limit=limit, after=after, now=now)

    def count(self, rule: Rule | None = None, /, *, now: datetime | None = None) -> int:
        return self._inner.count(rule, now=now)

    def count_by(
        self, field: str, rule: Rule | None = None, /, *, now: datetime | None = None
    ) -> dict[Any, int]:
        return self._inner.count_by(field, rule, now=now)

    def ids(self, rule: Rule | None = None, /, *, now: datetime | None = None) -> list[UUID]:
        return self._inner.ids(rule, now=now)

    def iterate(
        self, rule: Rule | None = None, /, *, batch_size: int = 1000, now: datetime | None = None
    ) -> Iterator[_A]:
        return self._inner.iterate(rule, batch_size=batch_size, now=now)


class _AuditedContacts(_Audited[Contact]):
    def __init__(self, inner: ContactRepository, unit: "AuditedUnit") -> None:
        super().__init__(inner, unit)
        self._contacts = inner

    def with_email(self, email: EmailAddress, /) -> list[Contact]:
        return self._contacts.with_email(email)

    def reach_counts(
        self, rule: Rule, reachable: Reachable, /, *, now: datetime | None = None
    ) -> dict[ReachCheck | None, int]:
        return self._contacts.reach_counts(rule, reachable, now=now)

    def with_match_keys(
        self, keys: Iterable[tuple[str, str]], /, *, limit: int | None = None
    ) -> list[Contact]:
        return self._contacts.with_match_keys(keys, limit=limit)


class AuditedUnit:
    """``unit`` with audited contacts and deals; ``by`` is who acts (``None``: not
    known), and every entry is stamped with the changed entity's ``updated_at``.

    ``audits=False`` writes no audit entries (merges and erasures keep their own
    records); ``events=False`` records no domain events (a private switch, for the
    benchmark of their cost); ``clock`` gives the time of deletions' events.
    """

    def __init__(
        self,
        unit: UnitOfWork,
        by: str | None,
        *,
        clock: Callable[[], datetime],
        audits: bool = True,
        events: bool = True,
    ) -> None:
        self.inner = unit
        self.by = by
        self.audits = audits
        self.recording = events
        self.cause = current_cause()
        self._clock = clock
        self._now: datetime | None = None
        self._events: list[Event] = []
        self.contacts = _AuditedContacts(unit.contacts, self)
        self.deals = _Audited(unit.deals, self)
        self._leads = _Noted[Lead](unit.leads, self)
        self._accounts = _Noted[Account](unit.accounts, self)
        self._tickets = _Noted[Ticket](unit.tickets, self)
        self._activities = _Noted[Activity](unit.activities, self)
        self._tasks = _Noted[Task](unit.tasks, self)
        self._segments = _Noted[Segment](unit.segments, self)
        self._consents = _Noted[Consent](unit.consents, self)
        self._blocks = _Noted[DoNotContact](unit.do_not_contact, self)
        self._history = _Noted[StageChange](unit.stage_history, self)
        self._erasures = _Noted[Erasure](unit.erasures, self)
        self._merges = _NotedMerges(unit.merges, self)

    def stamp(self, item: Contact | Deal) -> dict[str, Any]:
        return {"at": item.updated_at, "by": self.by}

    def record(self, entries: Iterable[AuditEntry]) -> None:
        if self.audits:
            items = list(entries)
            if len(items) == 1:
                self.inner.audit.add(items[0])
            elif items:  # one bulk write (an import audits every contact it creates)
                self.inner.audit.add_many(items)

    def note(self, events: Iterable[Event]) -> None:
        """Keep ``events`` for the outbox, appended when the unit commits."""
        if self.recording:
            self._events.extend(events)

    def now(self) -> datetime:
        """The time of events that no stored record dates (deletions): read once."""
        if self._now is None:
            self._now = self._clock()
        return self._now

    @property
    def accounts(self) -> AccountRepository:
        return cast(AccountRepository, self._accounts)

    @property
    def leads(self) -> Repository[Lead]:
        return cast(Repository[Lead], self._leads)

    @property
    def tickets(self) -> Repository[Ticket]:
        return cast(Repository[Ticket], self._tickets)

    @property
    def activities(self) -> ActivityRepository:
        return cast(ActivityRepository, self._activities)

    @property
    def tasks(self) -> TaskRepository:
        return cast(TaskRepository, self._tasks)

    @property
    def segments(self) -> Repository[Segment]:
        return cast(Repository[Segment], self._segments)

    @property
    def consents(self) -> ConsentRepository:
        return cast(ConsentRepository, self._consents)

    @property
    def do_not_contact(self) -> DoNotContactRepository:
        return cast(DoNotContactRepository, self._blocks)

    @property
    def merges(self) -> MergeRepository:
        return self._merges

    @property
    def stage_history(self) -> StageHistoryRepository:
        return cast(StageHistoryRepository, self._history)

    @property
    def suppressions(self) -> Repository[Suppression]:
        return self.inner.suppressions

    @property
    def erasures(self) -> Repository[Erasure]:
        return cast(Repository[Erasure], self._erasures)

    @property
    def audit(self) -> AuditRepository:
        return self.inner.audit

    @property
    def outbox(self) -> OutboxRepository:
        return self.inner.outbox

    @property
    def steps(self) -> StepRepository:
        return self.inner.steps

    def commit(self) -> None:
        if self._events:
            events, self._events = self._events, []
            self.inner.outbox.append(events)
        self.inner.commit()

    def rollback(self) -> None:
        self._events.clear()
        self.inner.rollback()
