"""A unit of work that writes the audit trail of the contacts and deals it stores.

The CRM's write use cases run in this unit: every add of a contact or deal records a
``created`` entry, every update one ``changed`` entry per changed field (read against the
stored version), in the same transaction as the change itself.
"""

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from crmkit.models import (
    AuditAction,
    AuditEntry,
    Contact,
    Deal,
    EmailAddress,
    Erasure,
    Lead,
    Segment,
    Suppression,
    Ticket,
)
from crmkit.models.rules import Rule
from crmkit.privacy import audit_changes, audit_event
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
    Page,
    Repository,
    StageHistoryRepository,
    TaskRepository,
    UnitOfWork,
)

__all__ = ["AuditedUnit"]

_A = TypeVar("_A", bound=Contact | Deal)


class _Audited(Generic[_A]):
    """A contacts or deals repository that records the audit trail of its writes."""

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
        return stored

    def add_many(self, items: Iterable[_A], /) -> int:
        entries: list[AuditEntry] = []

        def noted() -> Iterator[_A]:
            for item in items:
                yield item
                entries.append(audit_event(item, AuditAction.CREATED, **self._unit.stamp(item)))

        count = self._inner.add_many(noted())
        self._unit.record(entries)
        return count

    def update(self, item: _A, /) -> _A:
        before = self._inner.get_many([item.id]).get(item.id)
        stored = self._inner.update(item)
        if before is not None:
            self._unit.record(audit_changes(before, stored, **self._unit.stamp(stored)))
        return stored

    def restore(self, item: _A, /, *, version: int) -> _A:
        before = self._inner.get_many([item.id]).get(item.id)
        stored = self._inner.restore(item, version=version)
        if before is not None:
            self._unit.record(audit_changes(before, stored, **self._unit.stamp(stored)))
        return stored

    def delete(self, id: UUID, /, *, version: int | None = None) -> None:
        self._inner.delete(id, version=version)

    def referring(self, field: str, id: UUID, /) -> list[_A]:
        return self._inner.referring(field, id)

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

    def with_match_keys(
        self, keys: Iterable[tuple[str, str]], /, *, limit: int | None = None
    ) -> list[Contact]:
        return self._contacts.with_match_keys(keys, limit=limit)


class AuditedUnit:
    """``unit`` with audited contacts and deals; ``by`` is who acts (``None``: not
    known), and every entry is stamped with the changed entity's ``updated_at``."""

    def __init__(self, unit: UnitOfWork, by: str | None) -> None:
        self.inner = unit
        self.by = by
        self.contacts = _AuditedContacts(unit.contacts, self)
        self.deals = _Audited(unit.deals, self)

    def stamp(self, item: Contact | Deal) -> dict[str, Any]:
        return {"at": item.updated_at, "by": self.by}

    def record(self, entries: Iterable[AuditEntry]) -> None:
        items = list(entries)
        if len(items) == 1:
            self.inner.audit.add(items[0])
        elif items:  # one bulk write (an import audits every contact it creates)
            self.inner.audit.add_many(items)

    @property
    def accounts(self) -> AccountRepository:
        return self.inner.accounts

    @property
    def leads(self) -> Repository[Lead]:
        return self.inner.leads

    @property
    def tickets(self) -> Repository[Ticket]:
        return self.inner.tickets

    @property
    def activities(self) -> ActivityRepository:
        return self.inner.activities

    @property
    def tasks(self) -> TaskRepository:
        return self.inner.tasks

    @property
    def segments(self) -> Repository[Segment]:
        return self.inner.segments

    @property
    def consents(self) -> ConsentRepository:
        return self.inner.consents

    @property
    def do_not_contact(self) -> DoNotContactRepository:
        return self.inner.do_not_contact

    @property
    def merges(self) -> MergeRepository:
        return self.inner.merges

    @property
    def stage_history(self) -> StageHistoryRepository:
        return self.inner.stage_history

    @property
    def suppressions(self) -> Repository[Suppression]:
        return self.inner.suppressions

    @property
    def erasures(self) -> Repository[Erasure]:
        return self.inner.erasures

    @property
    def audit(self) -> AuditRepository:
        return self.inner.audit

    def commit(self) -> None:
        self.inner.commit()

    def rollback(self) -> None:
        self.inner.rollback()
