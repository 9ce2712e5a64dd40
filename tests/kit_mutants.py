"""Broken adapters: the memory store with one planted bug each.

The conformance kit must fail on every one of them (tests/test_kit_mutants.py runs it).
Each mutant is a :class:`MutantStore` (the memory adapter) whose units of work, or whose
repositories through a mixin, change one behaviour. :data:`MUTANTS` maps a mutant's name
to its store class and the kit tests that must fail on it.
"""

import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

import attrs

from crmkit.analytics import CUSTOMER_STAGES, replay_customer_spans, replay_standing
from crmkit.automation import (
    LANES,
    Delivery,
    DeliveryStatus,
    Event,
    Recorded,
    StepStatus,
    Taken,
    claim_step,
    is_claimable,
)
from crmkit.errors import ConcurrencyConflict, Duplicate, NotFound, StorageError
from crmkit.models import (
    Activity,
    ActivityKind,
    Consent,
    ConsentStatus,
    Entity,
    LifecycleStage,
    Money,
    Segment,
    StageChange,
    SubjectKind,
)
from crmkit.models.rules import (
    ActivityCondition,
    And,
    Compare,
    Condition,
    In,
    InSegment,
    Measure,
    Not,
    Op,
    Or,
    Rule,
    RuleEntity,
    TextMatch,
    TextOp,
)
from crmkit.segmentation import Context, evaluate
from crmkit.storage import REPOSITORIES, Cursor, MemoryStore, Order, Page
from crmkit.storage._base import (
    check_id,
    check_item,
    check_kinds,
    check_rule,
    check_window,
    iterate_pages,
    query_now,
)
from crmkit.storage._query import sort_key
from crmkit.storage.memory import MemoryUnitOfWork, _LaneCursor, _Merges, _Outbox, _Steps

_REPOSITORIES = tuple(REPOSITORIES.values())
_MIXED: dict[tuple[type, type], type] = {}
_OPS: dict[Op, Callable[[Any, Any], bool]] = {
    Op.EQ: operator.eq,
    Op.NE: operator.ne,
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.GT: operator.gt,
    Op.GE: operator.ge,
}


def _mixed(mixin: type, base: type) -> type:
    key = (mixin, base)
    if key not in _MIXED:
        _MIXED[key] = type(f"{mixin.__name__}{base.__name__}", (mixin, base), {})
    return _MIXED[key]


class MutantStore(MemoryStore):
    """The memory store, with ``unit_class`` for its units and ``mixin`` in its repositories."""

    unit_class: ClassVar[type[MemoryUnitOfWork]] = MemoryUnitOfWork
    mixin: ClassVar[type | None] = None

    def for_tenant(self, tenant: str, /) -> "MutantStore":
        return type(self)(tenant, clock=self.clock, _db=self._db)

    def _lock(self) -> AbstractContextManager[Any]:
        return self._db.lock

    @contextmanager
    def unit_of_work(self) -> Iterator[MemoryUnitOfWork]:
        if self._closed:
            raise StorageError("this store is closed")
        with self._lock():
            unit = self.unit_class(self)
            if self.mixin is not None:
                for name in _REPOSITORIES:
                    repository = getattr(unit, name)
                    mixed = _mixed(self.mixin, type(repository))
                    setattr(unit, name, mixed(unit, repository.entity))
            try:
                yield unit
            finally:
                unit.rollback()
                unit._open = False


def _all_tenants(repository: Any) -> Iterator[dict[UUID, Entity]]:
    """Every tenant's table of the repository's entity (what a bug reads by mistake)."""
    name = repository._entity.entity_name
    for (_tenant, entity), table in list(repository._unit._store._db.tables.items()):
        if entity == name:
            yield table


# ---------------------------------------------------------------------------- units of work


class NoIsolation(MutantStore):
    """Units of work do not wait for each other: others see uncommitted writes."""

    def _lock(self) -> AbstractContextManager[Any]:
        return nullcontext()


class SwallowsExceptions(MutantStore):
    """An exception inside the unit of work rolls back but does not propagate."""

    @contextmanager
    def unit_of_work(self) -> Iterator[MemoryUnitOfWork]:
        with super().unit_of_work() as unit, suppress(Exception):  # the planted bug
            yield unit


class _KeepsWrites(MemoryUnitOfWork):
    def rollback(self) -> None:
        self._undo.clear()


class RollbackKeepsWrites(MutantStore):
    """rollback() (and leaving the block) keeps what was not committed."""

    unit_class = _KeepsWrites


class _EndsOnCommit(MemoryUnitOfWork):
    def commit(self) -> None:
        super().commit()
        self._open = False


class CommitEndsTheUnit(MutantStore):
    """commit() ends the unit of work instead of keeping it open for more work."""

    unit_class = _EndsOnCommit


class _NoCheckTable:
    @property
    def _table(self) -> Any:
        return self._unit._store._table(self._entity)  # type: ignore[attr-defined]


class EndedUnitWrites(MutantStore):
    """A unit of work that has ended still reads and writes."""

    mixin = _NoCheckTable


class CloseDoesNothing(MutantStore):
    """close() does nothing."""

    def close(self) -> None:
        pass


class CloseClosesSiblings(MutantStore):
    """close() closes every store opened on the same data."""

    def close(self) -> None:
        self._db.closed = True  # type: ignore[attr-defined]

    @contextmanager
    def unit_of_work(self) -> Iterator[MemoryUnitOfWork]:
        if getattr(self._db, "closed", False):
            raise StorageError("closed")
        with super().unit_of_work() as unit:
            yield unit


class AnyTenantKey(MutantStore):
    """Any value is accepted as a tenant key."""

    def __init__(self, tenant: Any = "default", **options: Any) -> None:
        super().__init__("placeholder", **options)
        self._tenant = tenant


# ---------------------------------------------------------------------------- tenants


class _ContextOfEveryTenant(MemoryUnitOfWork):
    every_activity: ClassVar[bool] = False
    every_segment: ClassVar[bool] = False

    def _context(self, rule: Rule, now: datetime) -> Context:
        context = super()._context(rule, now)
        activities: dict[UUID, list[Activity]] = {k: list(v) for k, v in context.activities.items()}
        segments = dict(context.segments)
        for (tenant, entity), table in list(self._store._db.tables.items()):
            if tenant == self._store.tenant:
                continue
            if entity == "activity" and self.every_activity:
                for item in table.values():
                    assert isinstance(item, Activity)
                    activities.setdefault(item.contact_id, []).append(item)
            if entity == "segment" and self.every_segment:
                segments.update(table)  # type: ignore[arg-type]
        return Context(now, activities, segments)


class _EveryActivity(_ContextOfEveryTenant):
    every_activity = True


class _EverySegment(_ContextOfEveryTenant):
    every_segment = True


class RulesReadEveryTenantsActivities(MutantStore):
    """Activity conditions count the activities of every tenant."""

    unit_class = _EveryActivity


class RulesReadEveryTenantsSegments(MutantStore):
    """in_segment reads the segments of every tenant (another tenant's wins on an id)."""

    unit_class = _EverySegment


class _GetManyEveryTenant:
    def get_many(self, ids: Iterable[UUID], /) -> Mapping[UUID, Entity]:
        wanted = [check_id(i, f"ids[{n}]") for n, i in enumerate(ids)]
        found: dict[UUID, Entity] = {}
        for table in _all_tenants(self):
            found.update({i: table[i] for i in wanted if i in table})
        return found


class GetManyReadsEveryTenant(MutantStore):
    """get_many finds the ids in every tenant."""

    mixin = _GetManyEveryTenant


class _IdsEveryTenant:
    def ids(self, rule: Rule | None = None, /, *, now: datetime | None = None) -> list[UUID]:
        if rule is not None:
            return super().ids(rule, now=now)  # type: ignore[misc]
        return sorted({i for table in _all_tenants(self) for i in table})


class IdsReadsEveryTenant(MutantStore):
    """ids() without a rule lists the ids of every tenant."""

    mixin = _IdsEveryTenant


class _ForContactEveryTenant:
    def for_contact(
        self,
        contact_id: UUID,
        /,
        *,
        kinds: Iterable[ActivityKind] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Activity]:
        found = [
            a
            for table in _all_tenants(self)
            for a in table.values()
            if isinstance(a, Activity) and a.contact_id == contact_id
        ]
        return sorted(found, key=lambda a: (a.occurred_at, a.id))


class ForContactReadsEveryTenant(MutantStore):
    """activities.for_contact reads the activities of every tenant."""

    mixin = _ForContactEveryTenant


class _ForSubjectEveryTenant:
    def for_subject(self, subject: SubjectKind, subject_id: UUID, /) -> list[StageChange]:
        found = [
            c
            for table in _all_tenants(self)
            for c in table.values()
            if isinstance(c, StageChange) and c.subject is subject and c.subject_id == subject_id
        ]
        return sorted(found, key=lambda c: (c.at, c.id))


class ForSubjectReadsEveryTenant(MutantStore):
    """stage_history.for_subject reads the changes of every tenant."""

    mixin = _ForSubjectEveryTenant


# ---------------------------------------------------------------------------- writes


class _UpdateAnyType:
    def update(self, item: Any, /) -> Any:
        table = self._table  # type: ignore[attr-defined]
        stored = table.get(item.id)
        if stored is None:
            raise NotFound(self._entity.entity_name, item.id)  # type: ignore[attr-defined]
        if stored.version != item.version:
            raise ConcurrencyConflict("x", item.id, item.version, stored.version)
        new = attrs.evolve(item, version=item.version + 1)
        self._unit._write(table, item.id, new)  # type: ignore[attr-defined]
        return new


class UpdateAcceptsAnotherEntity(MutantStore):
    """update stores an entity of another kind (a deal among the contacts)."""

    mixin = _UpdateAnyType


class _UpdateNoBump:
    def update(self, item: Any, /) -> Any:
        stored = super().update(item)  # type: ignore[misc]
        self._unit._write(self._table, item.id, item)  # type: ignore[attr-defined]
        return stored


class UpdateKeepsTheVersion(MutantStore):
    """update returns version + 1 but stores the old version."""

    mixin = _UpdateNoBump


class _UpdateMissingConflict:
    def update(self, item: Any, /) -> Any:
        if item.id not in self._table:  # type: ignore[attr-defined]
            raise ConcurrencyConflict(item.entity_name, item.id, item.version, None)
        return super().update(item)  # type: ignore[misc]


class UpdateOfMissingIsConflict(MutantStore):
    """update of a missing id raises ConcurrencyConflict, not NotFound."""

    mixin = _UpdateMissingConflict


class _DeleteSwapped:
    def delete(self, id: UUID, /, *, version: int | None = None) -> None:
        try:
            super().delete(id, version=version)  # type: ignore[misc]
        except ConcurrencyConflict as error:
            raise ConcurrencyConflict(
                error.entity, error.id, error.actual_version or 0, error.expected_version
            ) from None


class DeleteConflictSwapsVersions(MutantStore):
    """delete's ConcurrencyConflict reports the expected and actual versions swapped."""

    mixin = _DeleteSwapped


class _DeleteMissingConflict:
    def delete(self, id: UUID, /, *, version: int | None = None) -> None:
        if version is not None and id not in self._table:  # type: ignore[attr-defined]
            raise ConcurrencyConflict("contact", id, version, None)
        super().delete(id, version=version)  # type: ignore[misc]


class DeleteOfMissingWithVersionIsConflict(MutantStore):
    """delete(id, version=n) of a missing id raises ConcurrencyConflict, not NotFound."""

    mixin = _DeleteMissingConflict


class _AddManyAsItGoes:
    def add_many(self, items: Iterable[Any], /) -> int:
        table = self._table  # type: ignore[attr-defined]
        count = 0
        for index, item in enumerate(items):
            check_item(item, self._entity, f"[{index}]")  # type: ignore[attr-defined]
            if item.id in table:
                raise Duplicate(item.entity_name, item.id, index=index)
            self._unit._write(table, item.id, item)  # type: ignore[attr-defined]
            count += 1
        return count


class AddManyKeepsWhatCameBefore(MutantStore):
    """add_many writes item by item: a failure keeps the items before it."""

    mixin = _AddManyAsItGoes


class _AddManyIndexFromOne:
    def add_many(self, items: Iterable[Any], /) -> int:
        try:
            return super().add_many(items)  # type: ignore[misc]
        except Duplicate as error:
            raise Duplicate(error.entity, error.id, index=(error.index or 0) + 1) from None


class AddManyCountsFromOne(MutantStore):
    """add_many's Duplicate numbers the items from 1."""

    mixin = _AddManyIndexFromOne


class _AddManyLastWins:
    def add_many(self, items: Iterable[Any], /) -> int:
        unique = {getattr(item, "id", n): item for n, item in enumerate(items)}
        return super().add_many(list(unique.values()))  # type: ignore[misc]


class AddManyMissesRepeatedIds(MutantStore):
    """add_many keeps the last of an id given twice in one call."""

    mixin = _AddManyLastWins


# ---------------------------------------------------------------------------- queries


class _IgnoresNow:
    def find(self, rule: Rule | None = None, /, **options: Any) -> Page[Any]:
        return super().find(rule, **{**options, "now": None})  # type: ignore[misc]

    def count(self, rule: Rule | None = None, /, *, now: datetime | None = None) -> int:
        return super().count(rule)  # type: ignore[misc]

    def ids(self, rule: Rule | None = None, /, *, now: datetime | None = None) -> list[UUID]:
        return super().ids(rule)  # type: ignore[misc]


class QueriesIgnoreNow(MutantStore):
    """find, count and ids ignore now= and use the store's clock."""

    mixin = _IgnoresNow


class _FixedDefaultNow:
    def _select(self, rule: Rule | None, now: datetime | None) -> list[Any]:
        default = datetime(2000, 1, 1, tzinfo=UTC)
        return super()._select(rule, default if now is None else now)  # type: ignore[misc]


class DefaultNowIsNotTheClock(MutantStore):
    """A query without now= uses a fixed moment, not the store's clock."""

    mixin = _FixedDefaultNow


class _NowUncheckedWithoutRule:
    def _select(self, rule: Rule | None, now: datetime | None) -> list[Any]:
        if rule is None:
            return list(self._table.values())  # type: ignore[attr-defined]
        return super()._select(rule, now)  # type: ignore[misc]


class NaiveNowAcceptedWithoutRule(MutantStore):
    """A naive now= passes unchecked when the query has no rule (crmkit's own bug)."""

    mixin = _NowUncheckedWithoutRule


class _DropsRuleAfterFirstPage:
    def find(self, rule: Rule | None = None, /, **options: Any) -> Page[Any]:
        if options.get("after") is not None:
            rule = None
        return super().find(rule, **options)  # type: ignore[misc]


class RuleDroppedAfterFirstPage(MutantStore):
    """find(rule, after=cursor) forgets the rule on the second and later pages."""

    mixin = _DropsRuleAfterFirstPage


class _IterateIgnoresRule:
    def iterate(self, rule: Rule | None = None, /, **options: Any) -> Iterator[Any]:
        return super().iterate(None, **options)  # type: ignore[misc]


class IterateIgnoresTheRule(MutantStore):
    """iterate(rule) yields every entity."""

    mixin = _IterateIgnoresRule


class _IterateInCreatedOrder:
    def iterate(
        self, rule: Rule | None = None, /, *, batch_size: int = 1000, now: datetime | None = None
    ) -> Iterator[Any]:
        return iter(self.find(rule, now=now).items)  # type: ignore[attr-defined]


class IterateNotInIdOrder(MutantStore):
    """iterate yields in created_at order, not by id."""

    mixin = _IterateInCreatedOrder


class _BatchSizeUnchecked:
    def iterate(
        self, rule: Rule | None = None, /, *, batch_size: int = 1000, now: datetime | None = None
    ) -> Iterator[Any]:
        fixed = query_now(now, self._unit._store.clock)  # type: ignore[attr-defined]
        return iterate_pages(self.find, rule, batch_size, fixed)  # type: ignore[attr-defined]


class BatchSizeUnchecked(MutantStore):
    """iterate(batch_size=0) is not checked; the error names 'limit'."""

    mixin = _BatchSizeUnchecked


class _CursorAfterLast:
    def find(self, rule: Rule | None = None, /, **options: Any) -> Page[Any]:
        page = super().find(rule, **options)  # type: ignore[misc]
        limit = options.get("limit")
        if page.next is None and limit is not None and len(page) == limit:
            order = options.get("order") or Order()
            last = page.items[-1]
            return Page(page.items, Cursor(order, getattr(last, order.field), last.id))
        return page


class NextCursorAfterTheLastItem(MutantStore):
    """A full last page still has a next cursor (then an empty page follows)."""

    mixin = _CursorAfterLast


class _CursorStuck:
    def find(self, rule: Rule | None = None, /, **options: Any) -> Page[Any]:
        page = super().find(rule, **options)  # type: ignore[misc]
        after = options.get("after")
        if after is not None and page.next is not None:
            return Page(page.items, after)
        return page


class CursorNeverAdvances(MutantStore):
    """From the second page on, next is the cursor given: paging never ends."""

    mixin = _CursorStuck


class _OneTooMany:
    def find(self, rule: Rule | None = None, /, **options: Any) -> Page[Any]:
        limit = options.get("limit")
        if limit is None:
            return super().find(rule, **options)  # type: ignore[misc]
        page = super().find(rule, **{**options, "limit": limit + 1})  # type: ignore[misc]
        return Page(page.items, page.next)


class LimitPlusOne(MutantStore):
    """find(limit=n) returns n + 1 items."""

    mixin = _OneTooMany


class _SortBy:
    ties_ascending: ClassVar[bool] = False
    missing_first: ClassVar[bool] = False

    def find(self, rule: Rule | None = None, /, **options: Any) -> Page[Any]:
        order = options.get("order") or Order()
        page = super().find(rule, **options)  # type: ignore[misc]
        if options.get("limit") is not None or options.get("after") is not None:
            return page  # only whole results are re-sorted: enough to plant the bug
        key = sort_key(Order(order.field))

        def broken(item: Any) -> Any:
            missing, value, id_ = key(item)
            if self.missing_first:
                missing = not missing
            if self.ties_ascending and order.descending:
                return (missing, value, UUID(int=(1 << 128) - 1 - id_.int))
            return (missing, value, id_)

        items = sorted(page.items, key=broken, reverse=order.descending)
        return Page(tuple(items), page.next)


class _TiesAscending(_SortBy):
    ties_ascending = True


class _MissingFirst(_SortBy):
    missing_first = True


class DescendingTiesByAscendingId(MutantStore):
    """A descending order lists equal values by ascending id (ORDER BY f DESC, id)."""

    mixin = _TiesAscending


class MissingValuesFirst(MutantStore):
    """Missing values sort before every value ascending (NULLS FIRST)."""

    mixin = _MissingFirst


class _IdsUnsorted:
    def ids(self, rule: Rule | None = None, /, *, now: datetime | None = None) -> list[UUID]:
        return [item.id for item in self._select(rule, now)]  # type: ignore[attr-defined]


class IdsNotInIdOrder(MutantStore):
    """ids() lists in storage order, not by id."""

    mixin = _IdsUnsorted


class _CountIgnoresRule:
    def count(self, rule: Rule | None = None, /, *, now: datetime | None = None) -> int:
        return super().count(None, now=now)  # type: ignore[misc]


class CountIgnoresTheRule(MutantStore):
    """count(rule) counts everything."""

    mixin = _CountIgnoresRule


class _GetManyField:
    def get_many(self, ids: Iterable[UUID], /) -> Mapping[UUID, Any]:
        wanted = [check_id(i, "ids") for i in ids]
        return super().get_many(wanted)  # type: ignore[misc]


class GetManyErrorSaysIds(MutantStore):
    """get_many's ValidationError names 'ids', not 'ids[n]'."""

    mixin = _GetManyField


# ---------------------------------------------------------------------------- timelines


class _Timeline:
    kinds_if_truthy: ClassVar[bool] = False
    until_inclusive: ClassVar[bool] = False
    since_exclusive: ClassVar[bool] = False
    newest_first: ClassVar[bool] = False
    ties_by_insertion: ClassVar[bool] = False
    any_contact: ClassVar[bool] = False

    def for_contact(
        self,
        contact_id: UUID,
        /,
        *,
        kinds: Iterable[ActivityKind] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Activity]:
        check_id(contact_id, "contact_id")
        wanted = check_kinds(kinds)
        since, until = check_window(since, until)
        found = []
        for a in self._table.values():  # type: ignore[attr-defined]
            if a.contact_id != contact_id and not self.any_contact:
                continue
            if (wanted if self.kinds_if_truthy else wanted is not None) and a.kind not in wanted:
                continue
            if since is not None and (
                a.occurred_at <= since if self.since_exclusive else a.occurred_at < since
            ):
                continue
            if until is not None and (
                a.occurred_at > until if self.until_inclusive else a.occurred_at >= until
            ):
                continue
            found.append(a)
        if self.ties_by_insertion:
            return sorted(found, key=lambda a: a.occurred_at)
        return sorted(found, key=lambda a: (a.occurred_at, a.id), reverse=self.newest_first)


def _timeline(flag: str, doc: str) -> type[MutantStore]:
    mixin = type(f"_Timeline_{flag}", (_Timeline,), {flag: True})
    return type(f"Timeline_{flag}", (MutantStore,), {"mixin": mixin, "__doc__": doc})


class _OfKindsUntilInclusive:
    def of_kinds(
        self,
        kinds: Iterable[ActivityKind],
        /,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Activity]:
        found: list[Activity] = super().of_kinds(kinds, since=since)  # type: ignore[misc]
        return [a for a in found if until is None or a.occurred_at <= until]


class OfKindsUntilInclusive(MutantStore):
    """of_kinds keeps the activities at ``until`` (the window's end is inclusive)."""

    mixin = _OfKindsUntilInclusive


class _OfKindsEveryKind:
    def of_kinds(
        self,
        kinds: Iterable[ActivityKind],
        /,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Activity]:
        check_kinds(kinds)
        return super().of_kinds(list(ActivityKind), since=since, until=until)  # type: ignore[misc,no-any-return]


class OfKindsEveryKind(MutantStore):
    """of_kinds lists the activities of every kind."""

    mixin = _OfKindsEveryKind


class _PurchasesUntilInclusive:
    def purchases(self, *, since: datetime | None = None, until: datetime | None = None) -> Any:
        later = None if until is None else until + timedelta(microseconds=1)
        return super().purchases(since=since, until=later)  # type: ignore[misc]


class PurchasesUntilInclusive(MutantStore):
    """purchases keeps the purchases at ``until`` (the window's end is inclusive)."""

    mixin = _PurchasesUntilInclusive


class _PurchasesWholeUnits:
    def purchases(self, **options: Any) -> Any:
        found = super().purchases(**options)  # type: ignore[misc]
        return [
            attrs.evolve(t, amount=Money(t.amount.amount.to_integral_value(), t.amount.currency))
            for t in found
        ]


class PurchasesWholeUnits(MutantStore):
    """purchases reads the amounts in whole units (the cents are lost)."""

    mixin = _PurchasesWholeUnits


class _ForContactsFirstOnly:
    def for_contacts(self, contact_ids: Iterable[UUID], /, **options: Any) -> list[Activity]:
        ids = list(contact_ids)
        return [] if not ids else super().for_contacts(ids[:1], **options)  # type: ignore[misc,no-any-return]


class ForContactsFirstOnly(MutantStore):
    """for_contacts lists the activities of the first contact only."""

    mixin = _ForContactsFirstOnly


class _ForContactsByContact:
    def for_contacts(self, contact_ids: Iterable[UUID], /, **options: Any) -> list[Activity]:
        found: list[Activity] = super().for_contacts(contact_ids, **options)  # type: ignore[misc]
        return sorted(found, key=lambda a: (a.contact_id, a.occurred_at, a.id))


class ForContactsByContact(MutantStore):
    """for_contacts lists one contact's activities after another's (not oldest first)."""

    mixin = _ForContactsByContact


class _ForSubjectBroken:
    any_kind: ClassVar[bool] = False
    newest_first: ClassVar[bool] = False
    ties_by_insertion: ClassVar[bool] = False

    def for_subject(self, subject: SubjectKind, subject_id: UUID, /) -> list[StageChange]:
        found = [
            c
            for c in self._table.values()  # type: ignore[attr-defined]
            if (self.any_kind or c.subject is subject) and c.subject_id == subject_id
        ]
        if self.ties_by_insertion:
            return sorted(found, key=lambda c: c.at)
        return sorted(found, key=lambda c: (c.at, c.id), reverse=self.newest_first)


def _history(flag: str, doc: str) -> type[MutantStore]:
    mixin = type(f"_History_{flag}", (_ForSubjectBroken,), {flag: True})
    return type(f"History_{flag}", (MutantStore,), {"mixin": mixin, "__doc__": doc})


# ---------------------------------------------------------------------------- rule logic


def _value(item: object, name: str) -> Any:
    attribute, _, key = name.partition(".")
    value = getattr(item, attribute)
    return value.get(key) if key else value


class _Evaluates:
    """Selects with a small evaluator of its own; a subclass plants a logic bug."""

    def _select(self, rule: Rule | None, now: datetime | None) -> list[Any]:
        rule = check_rule(rule, self._entity)  # type: ignore[attr-defined]
        fixed = query_now(now, self._unit._store.clock)  # type: ignore[attr-defined]
        items = list(self._table.values())  # type: ignore[attr-defined]
        if rule is None:
            return items
        context = self._unit._context(rule, fixed)  # type: ignore[attr-defined]
        return [i for i in items if self._truth(rule.entity, rule.where, i, context) is True]

    def _truth(
        self, entity: RuleEntity, node: Condition, item: object, context: Context
    ) -> bool | None:
        if isinstance(node, Not):
            inner = self._truth(entity, node.item, item, context)
            return None if inner is None else not inner
        if isinstance(node, And | Or):
            values = [self._truth(entity, i, item, context) for i in node.items]
            decisive = isinstance(node, Or)
            if decisive in values:
                return decisive
            return None if None in values else not decisive
        return evaluate(Rule(entity, node), item, context)


class _TwoValuedNot(_Evaluates):
    def _truth(
        self, entity: RuleEntity, node: Condition, item: object, context: Context
    ) -> bool | None:
        if isinstance(node, Not):
            return self._truth(entity, node.item, item, context) is not True
        return super()._truth(entity, node, item, context)


class _EqualityIgnoresCase(_Evaluates):
    def _truth(
        self, entity: RuleEntity, node: Condition, item: object, context: Context
    ) -> bool | None:
        if isinstance(node, Compare) and node.op is Op.EQ and isinstance(node.value, str):
            value = _value(item, node.field)
            if isinstance(value, str):
                return value.casefold() == node.value.casefold()
        return super()._truth(entity, node, item, context)


class _ContainsKeepsCase(_Evaluates):
    def _truth(
        self, entity: RuleEntity, node: Condition, item: object, context: Context
    ) -> bool | None:
        if isinstance(node, TextMatch) and node.op is TextOp.CONTAINS:
            value = _value(item, node.field)
            return None if not isinstance(value, str) else node.value in value
        return super()._truth(entity, node, item, context)


class _NotInSkipsNull(_Evaluates):
    def _truth(
        self, entity: RuleEntity, node: Condition, item: object, context: Context
    ) -> bool | None:
        if isinstance(node, In) and node.negated and None in node.values:
            values = tuple(v for v in node.values if v is not None)
            return super()._truth(entity, In(node.field, values, negated=True), item, context)
        return super()._truth(entity, node, item, context)


class _RuledSegmentsEmpty(_Evaluates):
    def _truth(
        self, entity: RuleEntity, node: Condition, item: object, context: Context
    ) -> bool | None:
        if isinstance(node, InSegment):
            segment = context.segments.get(node.segment_id)
            if isinstance(segment, Segment) and segment.rule is not None:
                return False
        return super()._truth(entity, node, item, context)


class NotIsTwoValued(MutantStore):
    """NOT UNKNOWN is TRUE (two-valued NOT)."""

    mixin = _TwoValuedNot


class EqualityIgnoresCase(MutantStore):
    """field == "Ada" also matches "ada"."""

    mixin = _EqualityIgnoresCase


class ContainsKeepsCase(MutantStore):
    """contains() compares case-sensitively."""

    mixin = _ContainsKeepsCase


class NotInIgnoresNull(MutantStore):
    """NOT IN (x, NULL) drops the NULL instead of never being TRUE."""

    mixin = _NotInSkipsNull


class RuledSegmentsSelectNobody(MutantStore):
    """in_segment of a segment defined by a rule selects nobody."""

    mixin = _RuledSegmentsEmpty


# ---------------------------------------------------------------------------- more


class _WrongEntity:
    @property
    def entity(self) -> type[Entity]:
        return Entity


class EntityPropertyWrong(MutantStore):
    """repository.entity is not the class the repository stores."""

    mixin = _WrongEntity


class _NotFoundPlural:
    def get(self, id: UUID, /) -> Any:
        try:
            return super().get(id)  # type: ignore[misc]
        except NotFound as error:
            raise NotFound(f"{error.entity}s", error.id) from None


class NotFoundNamesTheTable(MutantStore):
    """get's NotFound names the table ("contacts"), not the entity ("contact")."""

    mixin = _NotFoundPlural


class _GetManyWithMissing:
    def get_many(self, ids: Iterable[UUID], /) -> Mapping[UUID, Any]:
        wanted = list(ids)
        found = super().get_many(wanted)  # type: ignore[misc]
        return {i: found.get(i) for i in wanted}


class GetManyKeepsMissingIds(MutantStore):
    """get_many maps a missing id to None instead of leaving it out."""

    mixin = _GetManyWithMissing


class _AddOverwrites:
    def add(self, item: Any, /) -> Any:
        check_item(item, self._entity)  # type: ignore[attr-defined]
        self._unit._write(self._table, item.id, item)  # type: ignore[attr-defined]
        return item


class AddOverwrites(MutantStore):
    """add of a taken id replaces the stored entity."""

    mixin = _AddOverwrites


class _AppendOverwrites:
    def append(self, activity: Activity, /) -> Activity:
        self._unit._write(self._table, activity.id, activity)  # type: ignore[attr-defined]
        return activity


class AppendOverwrites(MutantStore):
    """activities.append of a taken id replaces the stored activity."""

    mixin = _AppendOverwrites


class _DefaultOrderById:
    def find(self, rule: Rule | None = None, /, **options: Any) -> Page[Any]:
        if options.get("order") is None:
            options["order"] = Order("id")
            if options.get("after") is not None:
                options["after"] = attrs.evolve(options["after"], order=Order("id"))
        return super().find(rule, **options)  # type: ignore[misc]


class DefaultOrderIsById(MutantStore):
    """find() without an order sorts by id, not by created_at."""

    mixin = _DefaultOrderById


class _DefaultLimit:
    def find(self, rule: Rule | None = None, /, **options: Any) -> Page[Any]:
        if options.get("limit") is None:
            options["limit"] = 10
        return super().find(rule, **options)  # type: ignore[misc]


class DefaultLimitOfTen(MutantStore):
    """find() without a limit returns the first 10 items (and a cursor)."""

    mixin = _DefaultLimit


class _OneTooFew:
    def find(self, rule: Rule | None = None, /, **options: Any) -> Page[Any]:
        limit = options.get("limit")
        if limit is not None and limit > 1:
            options["limit"] = limit - 1
        return super().find(rule, **options)  # type: ignore[misc]


class LimitMinusOne(MutantStore):
    """find(limit=n) returns n - 1 items and a cursor (off by one)."""

    mixin = _OneTooFew


class ForTenantOpensEmptyData(MutantStore):
    """for_tenant opens a store on new, empty data instead of the same data."""

    def for_tenant(self, tenant: str, /) -> "MutantStore":
        return type(self)(tenant, clock=self.clock)


class FailsWhenBusy(MutantStore):
    """A unit of work that finds another one open fails with StorageError at once."""

    @contextmanager
    def unit_of_work(self) -> Iterator[MemoryUnitOfWork]:
        if not self._db.lock.acquire(blocking=False):
            raise StorageError("the store is busy")
        try:
            with super().unit_of_work() as unit:
                yield unit
        finally:
            self._db.lock.release()


class WrapsExceptions(MutantStore):
    """An exception inside the unit of work comes out as StorageError."""

    @contextmanager
    def unit_of_work(self) -> Iterator[MemoryUnitOfWork]:
        with super().unit_of_work() as unit:
            try:
                yield unit
            except Exception as error:
                raise StorageError(f"failed: {error}") from error


class _CommitUnchecked(MemoryUnitOfWork):
    def commit(self) -> None:
        self._undo.clear()


class CommitAfterTheEnd(MutantStore):
    """commit() on a unit of work that has ended passes silently."""

    unit_class = _CommitUnchecked


class _ReadsUnchecked(_NoCheckTable):
    def add(self, item: Any, /) -> Any:
        self._unit._check_open()  # type: ignore[attr-defined]
        return super().add(item)  # type: ignore[misc]

    def add_many(self, items: Iterable[Any], /) -> int:
        self._unit._check_open()  # type: ignore[attr-defined]
        return super().add_many(items)  # type: ignore[misc]

    def update(self, item: Any, /) -> Any:
        self._unit._check_open()  # type: ignore[attr-defined]
        return super().update(item)  # type: ignore[misc]

    def delete(self, id: UUID, /, *, version: int | None = None) -> None:
        self._unit._check_open()  # type: ignore[attr-defined]
        super().delete(id, version=version)  # type: ignore[misc]


class EndedUnitReads(MutantStore):
    """A unit of work that has ended refuses writes but still reads."""

    mixin = _ReadsUnchecked


class _UpdateReturnsOld:
    def update(self, item: Any, /) -> Any:
        super().update(item)  # type: ignore[misc]
        return item


class UpdateReturnsTheOldVersion(MutantStore):
    """update stores version + 1 but returns the item as given."""

    mixin = _UpdateReturnsOld


class _TextIgnoresCase(_SortBy):
    def find(self, rule: Rule | None = None, /, **options: Any) -> Page[Any]:
        order = options.get("order") or Order()
        page = super().find(rule, **options)
        if options.get("limit") is not None or order.field != "first_name":
            return page

        def folded(item: Any) -> Any:
            value = item.first_name
            return (value is None, "" if value is None else value.casefold(), item.id)

        return Page(tuple(sorted(page.items, key=folded, reverse=order.descending)), page.next)


class TextOrderIgnoresCase(MutantStore):
    """Text orders by a case-insensitive collation, not by code point."""

    mixin = _TextIgnoresCase


class _OffsetPaging:
    offsets: ClassVar[dict[UUID, int]] = {}

    def find(self, rule: Rule | None = None, /, **options: Any) -> Page[Any]:
        limit, after = options.pop("limit", None), options.pop("after", None)
        whole = super().find(rule, **options)  # type: ignore[misc]
        if limit is None:
            return whole
        start = 0 if after is None else self.offsets.get(after.id, 0)
        items = whole.items[start : start + limit]
        if start + limit >= len(whole.items):
            return Page(items, None)
        order = options.get("order") or Order()
        last = items[-1]
        self.offsets[last.id] = start + limit
        return Page(items, Cursor(order, getattr(last, order.field), last.id))


class OffsetCursors(MutantStore):
    """Cursors count the items seen (OFFSET) instead of continuing after (value, id)."""

    mixin = _OffsetPaging


class _EnumsByDeclaration:
    def find(self, rule: Rule | None = None, /, **options: Any) -> Page[Any]:
        order = options.get("order") or Order()
        page = super().find(rule, **options)  # type: ignore[misc]
        if options.get("limit") is not None or order.field != "lifecycle_stage":
            return page
        declared = list(LifecycleStage)

        def key(item: Any) -> Any:
            return (declared.index(item.lifecycle_stage), item.id)

        return Page(tuple(sorted(page.items, key=key, reverse=order.descending)), page.next)


class EnumsInDeclarationOrder(MutantStore):
    """Enumerations order by declaration (a native SQL enum), not by value."""

    mixin = _EnumsByDeclaration


class _TrueFirst:
    def find(self, rule: Rule | None = None, /, **options: Any) -> Page[Any]:
        order = options.get("order") or Order()
        page = super().find(rule, **options)  # type: ignore[misc]
        if options.get("limit") is not None or order.field != "do_not_contact":
            return page

        def key(item: Any) -> Any:
            return (not item.do_not_contact, item.id)

        return Page(tuple(sorted(page.items, key=key, reverse=order.descending)), page.next)


class BooleansTrueFirst(MutantStore):
    """Booleans order True before False."""

    mixin = _TrueFirst


class _MoneyIgnoresCurrency(_Evaluates):
    def _truth(
        self, entity: RuleEntity, node: Condition, item: object, context: Context
    ) -> bool | None:
        if isinstance(node, Compare) and isinstance(node.value, Money):
            value = _value(item, node.field)
            if value is None:
                return None
            return bool(_OPS[node.op](value.amount, node.value.amount))
        return super()._truth(entity, node, item, context)


class MoneyIgnoresCurrency(MutantStore):
    """Money compares amounts whatever the currency."""

    mixin = _MoneyIgnoresCurrency


class _SumEveryCurrency(_Evaluates):
    def _truth(
        self, entity: RuleEntity, node: Condition, item: object, context: Context
    ) -> bool | None:
        if isinstance(node, ActivityCondition) and node.measure is Measure.SUM:
            assert isinstance(node.value, Money)
            total = sum(
                (
                    a.amount.amount
                    for a in context.activities.get(item.id, ())  # type: ignore[attr-defined]
                    if a.kind is node.kind and a.amount is not None and a.occurred_at <= context.now
                ),
                Decimal(0),
            )
            return bool(_OPS[node.op](total, node.value.amount))
        return super()._truth(entity, node, item, context)


class SumAddsEveryCurrency(MutantStore):
    """An activity sum adds the amounts of every currency."""

    mixin = _SumEveryCurrency


class _CountIgnoresFilter(_Evaluates):
    def _truth(
        self, entity: RuleEntity, node: Condition, item: object, context: Context
    ) -> bool | None:
        if isinstance(node, ActivityCondition) and node.where is not None:
            node = attrs.evolve(node, where=None)
        return super()._truth(entity, node, item, context)


class CountIgnoresTheFilter(MutantStore):
    """An activity count ignores the condition's where filter."""

    mixin = _CountIgnoresFilter


class _EndsOnRollback(MemoryUnitOfWork):
    def rollback(self) -> None:
        super().rollback()
        self._open = False


class RollbackEndsTheUnit(MutantStore):
    """rollback() ends the unit of work instead of keeping it open for more work."""

    unit_class = _EndsOnRollback


class _AddReturnsNothing:
    def add(self, item: Any, /) -> Any:
        super().add(item)  # type: ignore[misc]


class AddReturnsNothing(MutantStore):
    """add returns None instead of the stored entity."""

    mixin = _AddReturnsNothing


# ---------------------------------------------------------------------------- the list

MUTANTS: dict[str, tuple[type[MutantStore], tuple[str, ...]]] = {
    "uncommitted writes visible to other units": (
        NoIsolation,
        ("test_uncommitted_writes_stay_invisible_to_other_units",),
    ),
    "an exception does not propagate": (
        SwallowsExceptions,
        ("test_an_exception_rolls_back_and_propagates",),
    ),
    "rollback keeps writes": (RollbackKeepsWrites, ("test_nothing_is_kept_without_commit",)),
    "commit ends the unit": (
        CommitEndsTheUnit,
        ("test_rollback_discards_since_the_last_commit",),
    ),
    "writes through an ended unit of work": (
        EndedUnitWrites,
        ("test_an_ended_unit_refuses_every_call",),
    ),
    "close() does nothing": (CloseDoesNothing, ("test_close_ends_this_store_alone",)),
    "close() closes every sibling": (CloseClosesSiblings, ("test_close_ends_this_store_alone",)),
    "any string accepted as a tenant key": (AnyTenantKey, ("test_tenant_keys_follow_one_rule",)),
    "rules read every tenant's activities": (
        RulesReadEveryTenantsActivities,
        ("test_the_same_ids_in_two_tenants_stay_apart",),
    ),
    "rules read every tenant's segments": (
        RulesReadEveryTenantsSegments,
        ("test_the_same_ids_in_two_tenants_stay_apart",),
    ),
    "get_many reads every tenant": (
        GetManyReadsEveryTenant,
        ("test_the_same_ids_in_two_tenants_stay_apart",),
    ),
    "ids() reads every tenant": (
        IdsReadsEveryTenant,
        ("test_the_same_ids_in_two_tenants_stay_apart",),
    ),
    "activities.for_contact reads every tenant": (
        ForContactReadsEveryTenant,
        ("test_the_same_ids_in_two_tenants_stay_apart",),
    ),
    "stage_history.for_subject reads every tenant": (
        ForSubjectReadsEveryTenant,
        ("test_the_same_ids_in_two_tenants_stay_apart",),
    ),
    "update accepts an entity of another type": (
        UpdateAcceptsAnotherEntity,
        ("test_update_refuses_an_entity_of_another_kind",),
    ),
    "update stores the old version": (
        UpdateKeepsTheVersion,
        ("test_update_and_delete_name_entity_id_and_versions",),
    ),
    "update of a missing id is a conflict": (
        UpdateOfMissingIsConflict,
        ("test_update_and_delete_name_entity_id_and_versions",),
    ),
    "delete's conflict swaps the versions": (
        DeleteConflictSwapsVersions,
        ("test_update_and_delete_name_entity_id_and_versions",),
    ),
    "delete(id, version=n) of a missing id is a conflict": (
        DeleteOfMissingWithVersionIsConflict,
        ("test_update_and_delete_name_entity_id_and_versions",),
    ),
    "add_many keeps the items before a failure": (
        AddManyKeepsWhatCameBefore,
        ("test_add_many_is_all_or_nothing",),
    ),
    "add_many's index counts from 1": (AddManyCountsFromOne, ("test_add_many_is_all_or_nothing",)),
    "add_many keeps the last of a repeated id": (
        AddManyMissesRepeatedIds,
        ("test_add_many_is_all_or_nothing",),
    ),
    "find/count/ids ignore now=": (QueriesIgnoreNow, ("test_relative_dates_follow_now",)),
    "without now=, a fixed moment instead of the clock": (
        DefaultNowIsNotTheClock,
        ("test_without_now_a_query_uses_the_store_clock",),
    ),
    "a naive now= passes without a rule": (
        NaiveNowAcceptedWithoutRule,
        ("test_errors_name_the_field",),
    ),
    "find(rule, after=cursor) drops the rule": (
        RuleDroppedAfterFirstPage,
        ("test_every_page_keeps_the_rule_and_the_order",),
    ),
    "iterate(rule) ignores the rule": (
        IterateIgnoresTheRule,
        ("test_every_page_keeps_the_rule_and_the_order", "test_relative_dates_follow_now"),
    ),
    "iterate is not in id order": (
        IterateNotInIdOrder,
        ("test_every_page_keeps_the_rule_and_the_order",),
    ),
    "iterate's batch_size is not checked": (BatchSizeUnchecked, ("test_errors_name_the_field",)),
    "a next cursor after the last item": (
        NextCursorAfterTheLastItem,
        ("test_every_page_keeps_the_rule_and_the_order",),
    ),
    "a cursor that never advances": (
        CursorNeverAdvances,
        ("test_every_page_keeps_the_rule_and_the_order",),
    ),
    "find(limit=n) returns n + 1 items": (
        LimitPlusOne,
        ("test_every_page_keeps_the_rule_and_the_order",),
    ),
    "descending ties by ascending id": (
        DescendingTiesByAscendingId,
        ("test_ties_break_by_id_and_missing_values_sort_last",),
    ),
    "missing values first": (
        MissingValuesFirst,
        ("test_ties_break_by_id_and_missing_values_sort_last",),
    ),
    "ids() not in id order": (IdsNotInIdOrder, ("test_every_page_keeps_the_rule_and_the_order",)),
    "count(rule) ignores the rule": (CountIgnoresTheRule, ("test_three_valued_logic_table",)),
    "get_many's error names 'ids'": (GetManyErrorSaysIds, ("test_errors_name_the_field",)),
    "for_contact(kinds=[]) lists every kind": (
        _timeline("kinds_if_truthy", "for_contact(kinds=[]) lists every kind."),
        ("test_timelines_are_exact",),
    ),
    "for_contact's until is inclusive": (
        _timeline("until_inclusive", "for_contact includes until."),
        ("test_timelines_are_exact",),
    ),
    "for_contact's since is exclusive": (
        _timeline("since_exclusive", "for_contact excludes since."),
        ("test_timelines_are_exact",),
    ),
    "for_contact newest first": (
        _timeline("newest_first", "for_contact lists newest first."),
        ("test_timelines_are_exact",),
    ),
    "for_subject ignores the subject kind": (
        _history("any_kind", "for_subject lists changes of every subject kind with that id."),
        ("test_timelines_are_exact",),
    ),
    "for_subject newest first": (
        _history("newest_first", "for_subject lists newest first."),
        ("test_timelines_are_exact",),
    ),
    "three-valued NOT treated as two-valued": (NotIsTwoValued, ("test_three_valued_logic_table",)),
    "NOT IN with a NULL ignores the NULL": (NotInIgnoresNull, ("test_three_valued_logic_table",)),
    'field == "Ada" also matches "ada"': (EqualityIgnoresCase, ("test_text_case_table",)),
    "contains() keeps case": (ContainsKeepsCase, ("test_text_case_table",)),
    "ruled segments select nobody": (
        RuledSegmentsSelectNobody,
        ("test_the_same_ids_in_two_tenants_stay_apart",),
    ),
    "repository.entity is another class": (EntityPropertyWrong, ("test_errors_name_the_field",)),
    "NotFound names the table": (
        NotFoundNamesTheTable,
        ("test_get_of_a_missing_id_is_not_found",),
    ),
    "get_many maps missing ids to None": (
        GetManyKeepsMissingIds,
        ("test_get_of_a_missing_id_is_not_found",),
    ),
    "add of a taken id overwrites": (AddOverwrites, ("test_add_of_a_taken_id_is_a_duplicate",)),
    "append of a taken id overwrites": (AppendOverwrites, ("test_timelines_are_exact",)),
    "find() without an order sorts by id": (
        DefaultOrderIsById,
        ("test_every_page_keeps_the_rule_and_the_order",),
    ),
    "find() without a limit returns 10": (
        DefaultLimitOfTen,
        ("test_every_page_keeps_the_rule_and_the_order",),
    ),
    "find(limit=n) returns n - 1 items": (
        LimitMinusOne,
        ("test_every_page_keeps_the_rule_and_the_order",),
    ),
    "for_tenant opens empty data": (ForTenantOpensEmptyData, ("test_close_ends_this_store_alone",)),
    "a busy store fails at once with StorageError": (
        FailsWhenBusy,
        ("test_uncommitted_writes_stay_invisible_to_other_units",),
    ),
    "an exception comes out as StorageError": (
        WrapsExceptions,
        ("test_an_exception_rolls_back_and_propagates",),
    ),
    "commit() after the end passes": (
        CommitAfterTheEnd,
        ("test_an_ended_unit_refuses_every_call",),
    ),
    "an ended unit still reads": (
        EndedUnitReads,
        ("test_an_ended_unit_refuses_every_call", "test_a_finished_unit_cannot_be_used"),
    ),
    "update returns the old version": (
        UpdateReturnsTheOldVersion,
        (
            "test_update_and_delete_name_entity_id_and_versions",
            "test_update_checks_and_increments_the_version",
        ),
    ),
    "text orders ignore case": (
        TextOrderIgnoresCase,
        ("test_ties_break_by_id_and_missing_values_sort_last",),
    ),
    "enumerations in declaration order": (
        EnumsInDeclarationOrder,
        ("test_ties_break_by_id_and_missing_values_sort_last",),
    ),
    "booleans True first": (
        BooleansTrueFirst,
        ("test_ties_break_by_id_and_missing_values_sort_last",),
    ),
    "money compares across currencies": (
        MoneyIgnoresCurrency,
        ("test_money_and_activity_measures_table",),
    ),
    "activity sums add every currency": (
        SumAddsEveryCurrency,
        ("test_money_and_activity_measures_table",),
    ),
    "activity counts ignore the filter": (
        CountIgnoresTheFilter,
        ("test_money_and_activity_measures_table",),
    ),
    "rollback() ends the unit": (
        RollbackEndsTheUnit,
        ("test_rollback_discards_since_the_last_commit",),
    ),
    "add returns None": (AddReturnsNothing, ("test_add_of_a_taken_id_is_a_duplicate",)),
    "cursors are offsets": (
        OffsetCursors,
        ("test_pages_stay_right_when_entities_are_added_between_them",),
    ),
    "for_contact ties in storage order": (
        _timeline("ties_by_insertion", "for_contact breaks ties by storage order, not id."),
        ("test_timelines_are_exact",),
    ),
    "for_contact lists every contact's activities": (
        _timeline("any_contact", "for_contact ignores the contact id."),
        ("test_timelines_are_exact", "test_activities_of_a_contact_in_a_window"),
    ),
    "of_kinds includes until": (
        OfKindsUntilInclusive,
        ("test_activities_of_kinds_across_contacts",),
    ),
    "of_kinds ignores the kinds": (
        OfKindsEveryKind,
        ("test_activities_of_kinds_across_contacts",),
    ),
    "purchases includes until": (
        PurchasesUntilInclusive,
        ("test_purchases_as_transactions",),
    ),
    "purchases in whole units": (PurchasesWholeUnits, ("test_purchases_as_transactions",)),
    "for_contacts reads the first contact only": (
        ForContactsFirstOnly,
        ("test_activities_of_many_contacts",),
    ),
    "for_contacts orders by contact": (
        ForContactsByContact,
        ("test_activities_of_many_contacts",),
    ),
    "for_subject ties in storage order": (
        _history("ties_by_insertion", "for_subject breaks ties by storage order, not id."),
        ("test_timelines_are_exact",),
    ),
}
"""Each mutant's name: its store class and the kit tests that must fail on it."""

# ---------------------------------------------------------------------------- look-ups


class _WithEmailExact:
    """``with_email`` compares the address as stored, with case."""

    def with_email(self, email: Any, /) -> list[Any]:
        found = [c for c in self._table.values() if c.email == email]  # type: ignore[attr-defined]
        return sorted(found, key=lambda c: (c.created_at, c.id))


class _WithEmailEveryTenant:
    """``with_email`` reads the contacts of every tenant."""

    def with_email(self, email: Any, /) -> list[Any]:
        tables = self._unit._store._db.tables  # type: ignore[attr-defined]
        found = [
            c
            for (_, name), table in list(tables.items())
            if name == "contact"
            for c in table.values()
            if c.email is not None and c.email.casefold() == email.casefold()
        ]
        return sorted(found, key=lambda c: (c.created_at, c.id))


class _SharedAddresses:
    """Contacts may share a folded e-mail address although the policy says one each."""

    def _check_keys(self, items: Any, offset: int | None) -> None:
        return None


class _TaskSelectBroken:
    exclusive: ClassVar[bool] = False
    no_assignee: ClassVar[bool] = False

    def select(self, **given: Any) -> list[Any]:
        due_until = given.pop("due_until", None)
        if self.no_assignee:
            given.pop("assignee", None)
        found = [
            t
            for t in self._table.values()  # type: ignore[attr-defined]
            if all(getattr(t, k) == v for k, v in given.items() if v is not None)
            and (
                due_until is None
                or (t.due_at < due_until if self.exclusive else t.due_at <= due_until)
            )
        ]
        return sorted(found, key=lambda t: (t.due_at, t.id))


class _CountByIgnoresTheRule:
    def count_by(self, field: str, rule: Any = None, /, *, now: Any = None) -> dict[Any, int]:
        counts: dict[Any, int] = {}
        for item in self._table.values():  # type: ignore[attr-defined]
            counts[getattr(item, field)] = counts.get(getattr(item, field), 0) + 1
        return counts


class _ForSubjectsAnyKind:
    def for_subjects(self, subject: Any, subject_ids: Any, /) -> list[Any]:
        wanted = set(subject_ids)
        found = [c for c in self._table.values() if c.subject_id in wanted]  # type: ignore[attr-defined]
        return sorted(found, key=lambda c: (c.at, c.id))


class _ReachUntilInclusive:
    """``reach`` counts a move made exactly at ``until``."""

    def reach(self, subject: Any, ranks: Any, /, *, until: Any, **options: Any) -> list[Any]:
        later = until + timedelta(microseconds=1)
        return super().reach(subject, ranks, until=later, **options)  # type: ignore[misc, no-any-return]


class _StandingFirstOfTies:
    """``standing`` breaks a tie of ``at`` by the lower id (the first move, not the last)."""

    def standing(self, subject: Any, /, *, until: Any, **options: Any) -> list[Any]:
        changes = list(self._table.values())  # type: ignore[attr-defined]
        lowest: dict[Any, UUID] = {}
        for c in changes:
            lowest[(c.subject_id, c.at)] = min(lowest.get((c.subject_id, c.at), c.id), c.id)
        tick = timedelta(microseconds=1)
        shifted = [
            c if c.id == lowest[(c.subject_id, c.at)] else attrs.evolve(c, at=c.at - tick)
            for c in changes
        ]
        rule = options.pop("rule", None)
        subjects = self._unit.deals._select(rule, until)  # type: ignore[attr-defined]
        return replay_standing(subjects, shifted, subject, until=until, **options)


class _StandingIgnoresStages:
    """``standing`` keeps every subject, whatever ``stages`` says."""

    def standing(self, subject: Any, /, **options: Any) -> list[Any]:
        options.pop("stages", None)
        return super().standing(subject, **options)  # type: ignore[misc, no-any-return]


class _StandingsUnionOfStages:
    """``standings`` keeps, in every window, the subjects in any window's ``stages`` (the
    union a single query filters by), not the window's own."""

    def standings(self, subject: Any, windows: Any, /, **options: Any) -> list[Any]:
        wanted = [w.stages for w in windows]
        every = None if None in wanted else frozenset().union(*wanted)
        return [
            self.standing(  # type: ignore[attr-defined]
                subject, until=w.until, since=w.since, then=w.then, stages=every, **options
            )
            for w in windows
        ]


class _DeleteOrphans:
    """``delete`` removes an entity that others still refer to."""

    def delete(self, id: UUID, /, *, version: int | None = None) -> None:
        table = self._table  # type: ignore[attr-defined]
        stored = table.get(check_id(id))
        if stored is None:
            raise NotFound(self._entity.entity_name, id)  # type: ignore[attr-defined]
        if version is not None and stored.version != version:
            raise ConcurrencyConflict(self._entity.entity_name, id, version, stored.version)  # type: ignore[attr-defined]
        self._unit._write(table, id, None)  # type: ignore[attr-defined]


class _DanglingWrites:
    """Writes store references that name nothing."""

    def _check_references(self, items: Any, offset: int | None) -> None:
        pass


class _DanglingBulk:
    """``add_many`` stores references that name nothing (``add`` and ``update`` check)."""

    def add_many(self, items: Iterable[Any], /) -> int:
        check = self._check_references  # type: ignore[attr-defined]
        self._check_references = lambda items, offset: None  # type: ignore[method-assign]
        try:
            return super().add_many(items)  # type: ignore[misc, no-any-return]
        finally:
            self._check_references = check  # type: ignore[method-assign]


class _MatchKeysBroken:
    """``with_match_keys`` of the memory store with one bug, chosen by a flag."""

    every_tenant = False
    no_limit = False
    stale = False

    def with_match_keys(self, keys: Any, /, *, limit: int | None = None) -> list[Any]:
        from crmkit.quality import match_keys  # noqa: PLC0415

        if self.stale:
            return _StaleKeys.found(self, keys, limit)
        tables = _all_tenants(self) if self.every_tenant else [self._table]  # type: ignore[attr-defined]
        entities = sorted((e for t in tables for e in t.values()), key=lambda e: e.id)
        found = {}
        for key in set(keys):
            having = [e for e in entities if key in match_keys(e)]
            found.update((e.id, e) for e in having[: None if self.no_limit else limit])
        return sorted(found.values(), key=lambda e: (e.created_at, e.id))


class _StaleKeys:
    """Keys are written on add and never removed (updates and deletes leave them)."""

    @staticmethod
    def found(repository: Any, keys: Any, limit: int | None) -> list[Any]:
        from crmkit.quality import match_keys  # noqa: PLC0415

        seen = repository._unit.__dict__.setdefault("_stale_keys", {})
        for item in repository._table.values():
            for key in match_keys(item):
                seen.setdefault(key, set()).add(item.id)
        table = repository._table
        found = {}
        for key in set(keys):
            ids = sorted(i for i in seen.get(key, ()) if i in table)[:limit]
            found.update((i, table[i]) for i in ids)
        return sorted(found.values(), key=lambda e: (e.created_at, e.id))


class _ReferringEveryTenant:
    def referring(self, field: str, id: UUID, /) -> list[Any]:
        found = [e for t in _all_tenants(self) for e in t.values() if getattr(e, field) == id]
        return sorted(found, key=lambda e: (e.created_at, e.id))


class _ReferringSkipsConsents:
    def referring(self, field: str, id: UUID, /) -> list[Any]:
        if self._entity is Consent:  # type: ignore[attr-defined]
            return []  # an adapter that forgot a repository: the export misses it
        return super().referring(field, id)  # type: ignore[misc, no-any-return]


def _mixing(name: str, mixin: type, doc: str, **flags: bool) -> type[MutantStore]:
    mixed = type(f"_{name}", (mixin,), flags) if flags else mixin
    return type(name, (MutantStore,), {"mixin": mixed, "__doc__": doc})


LOOK_UP_MUTANTS: dict[str, tuple[type[MutantStore], tuple[str, ...]]] = {
    "with_match_keys reads every tenant": (
        _mixing("MatchKeysEveryTenant", _MatchKeysBroken, "all tenants.", every_tenant=True),
        ("test_match_keys_follow_every_write",),
    ),
    "with_match_keys ignores the limit": (
        _mixing("MatchKeysNoLimit", _MatchKeysBroken, "no limit.", no_limit=True),
        ("test_match_keys_follow_every_write",),
    ),
    "match keys outlive updates and deletes": (
        _mixing("MatchKeysStale", _MatchKeysBroken, "stale keys.", stale=True),
        ("test_match_keys_follow_every_write",),
    ),
    "with_email compares with case": (
        _mixing("WithEmailExact", _WithEmailExact, "with_email compares with case."),
        ("test_with_email_compares_without_case_oldest_first",),
    ),
    "with_email reads every tenant": (
        _mixing("WithEmailEveryTenant", _WithEmailEveryTenant, "with_email reads all tenants."),
        ("test_with_email_compares_without_case_oldest_first",),
    ),
    "contacts share an address": (
        _mixing("SharedAddresses", _SharedAddresses, "one contact per address is not kept."),
        ("test_one_contact_per_address_by_default",),
    ),
    "tasks.select due_until exclusive": (
        _mixing("DueUntilExclusive", _TaskSelectBroken, "due_until is exclusive.", exclusive=True),
        ("test_task_select_filters_and_orders",),
    ),
    "tasks.select ignores the assignee": (
        _mixing("NoAssignee", _TaskSelectBroken, "assignee is ignored.", no_assignee=True),
        ("test_task_select_filters_and_orders",),
    ),
    "count_by ignores the rule": (
        _mixing("CountByAll", _CountByIgnoresTheRule, "count_by counts every entity."),
        ("test_count_by_counts_per_value_in_the_store",),
    ),
    "for_subjects ignores the kind": (
        _mixing("ForSubjectsAnyKind", _ForSubjectsAnyKind, "for_subjects ignores the kind."),
        ("test_stage_history_of_many_subjects",),
    ),
    "reach counts a move at until": (
        _mixing("ReachUntilInclusive", _ReachUntilInclusive, "reach's until is inclusive."),
        ("test_stage_history_replays_for_the_kpis",),
    ),
    "standing keeps the first move of a tie": (
        _mixing("StandingFirstOfTies", _StandingFirstOfTies, "standing breaks ties wrongly."),
        ("test_stage_history_replays_for_the_kpis",),
    ),
    "referring reads every tenant": (
        _mixing("ReferringEveryTenant", _ReferringEveryTenant, "referring reads all tenants."),
        ("test_referring_finds_every_referrer_in_the_tenant_only",),
    ),
    "referring misses a repository": (
        _mixing("ReferringSkipsConsents", _ReferringSkipsConsents, "consents are not found."),
        ("test_an_export_misses_no_repository",),
    ),
    "standing ignores stages": (
        _mixing("StandingAnyStage", _StandingIgnoresStages, "standing ignores stages."),
        ("test_stage_history_replays_for_the_kpis",),
    ),
    "standings filters by every window's stages": (
        _mixing("StandingsUnion", _StandingsUnionOfStages, "standings mixes the stages."),
        ("test_stage_history_replays_for_the_kpis",),
    ),
    "delete orphans what refers to it": (
        _mixing("DeleteOrphans", _DeleteOrphans, "delete ignores references."),
        ("test_a_delete_that_would_orphan_is_refused",),
    ),
    "writes store dangling references": (
        _mixing("DanglingWrites", _DanglingWrites, "add and update ignore references."),
        ("test_a_write_that_would_dangle_is_refused",),
    ),
    "add_many stores dangling references": (
        _mixing("DanglingBulk", _DanglingBulk, "add_many ignores references."),
        ("test_a_write_that_would_dangle_is_refused",),
    ),
}

MUTANTS.update(LOOK_UP_MUTANTS)


# ---------------------------------------------------------------------------- merges


class _RestoreAsUpdate:
    """``restore`` writes as ``update`` does: the version goes up, not back."""

    def restore(self, item: Any, /, *, version: int) -> Any:
        return super().update(attrs.evolve(item, version=version))  # type: ignore[misc]


class _RestoreAnyVersion:
    """``restore`` overwrites whatever version is stored."""

    def restore(self, item: Any, /, *, version: int) -> Any:
        self._unit._write(self._table, item.id, item)  # type: ignore[attr-defined]
        return item


class _MergesWithoutAfter(_Merges):
    def add(self, record: Any, /) -> Any:
        super().add(attrs.evolve(record, after=()))
        return record


class _MergesWithCase(_Merges):
    def with_email(self, email: Any, /) -> list[Any]:
        found = [m for m in self._table.values() if str(email) in m.merged_emails]
        return sorted(found, key=lambda m: (m.at, m.id))


class _MergesOfEveryTenant(_Merges):
    @property
    def _table(self) -> dict[UUID, Any]:
        self._unit._check_open()
        return self._unit._store._db.tables[("*", "merge")]


class _MergesDeleteNothing(_Merges):
    def delete(self, id: UUID, /) -> None:
        self.get(id)


class _MergesInvolveNoOne(_Merges):
    def involving(self, contact_id: UUID, /) -> list[Any]:
        return []


class _MergesAnonymiseKeepsAddresses(_Merges):
    def anonymise(self, record: Any, /) -> Any:
        kept = attrs.evolve(record, merged_emails=self.get(record.id).merged_emails)
        self._unit._write(self._table, record.id, kept)
        return record


def _merges_unit(name: str, merges: type[_Merges], doc: str) -> type[MutantStore]:
    def init(self: MemoryUnitOfWork, store: MemoryStore) -> None:
        MemoryUnitOfWork.__init__(self, store)
        self.merges = merges(self)

    unit = type(f"_{name}Unit", (MemoryUnitOfWork,), {"__init__": init})
    return type(name, (MutantStore,), {"unit_class": unit, "__doc__": doc})


_RESTORE = "test_restore_writes_the_item_exactly_with_its_version"
_RECORDS = "test_merge_records_come_back_equal_and_are_found"
_UNDO = "test_a_merge_and_its_undo_leave_every_repository_as_it_was"
_INVOLVING = "test_merges_involving_a_contact_and_their_anonymisation"

MERGE_MUTANTS: dict[str, tuple[type[MutantStore], tuple[str, ...]]] = {
    "restore bumps the version": (
        _mixing("RestoreAsUpdate", _RestoreAsUpdate, "restore writes a new version."),
        (_RESTORE, _UNDO),
    ),
    "restore ignores the version": (
        _mixing("RestoreAnyVersion", _RestoreAnyVersion, "restore checks no version."),
        (_RESTORE,),
    ),
    "merge records lose their after-images": (
        _merges_unit("MergesWithoutAfter", _MergesWithoutAfter, "merges keep no after-images."),
        (_RECORDS,),
    ),
    "merges.with_email compares with case": (
        _merges_unit("MergesWithCase", _MergesWithCase, "merges.with_email compares with case."),
        (_RECORDS, _UNDO),
    ),
    "merge records of every tenant": (
        _merges_unit("MergesOfEveryTenant", _MergesOfEveryTenant, "merges ignore the tenant."),
        (_RECORDS,),
    ),
    "merges.involving finds no merge": (
        _merges_unit("MergesInvolveNoOne", _MergesInvolveNoOne, "merges.involving finds none."),
        (_INVOLVING, "test_an_export_and_an_erasure_cover_the_person_s_merges"),
    ),
    "merges.anonymise keeps the taken addresses": (
        _merges_unit(
            "MergesAnonymiseKeeps", _MergesAnonymiseKeepsAddresses, "anonymise keeps addresses."
        ),
        (_INVOLVING, "test_an_export_and_an_erasure_cover_the_person_s_merges"),
    ),
    "merges.delete keeps the record": (
        _merges_unit("MergesDeleteNothing", _MergesDeleteNothing, "merges.delete deletes nothing."),
        (_RECORDS,),
    ),
}

MUTANTS.update(MERGE_MUTANTS)
# ---------------------------------------------------------------------------- consent


class _NoBlocks(MemoryUnitOfWork):
    def _context(self, rule: Rule, now: datetime) -> Context:
        return attrs.evolve(super()._context(rule, now), blocks={})


class _FirstDecisionOnly(MemoryUnitOfWork):
    def _context(self, rule: Rule, now: datetime) -> Context:
        context = super()._context(rule, now)
        kept: dict[UUID, list[Consent]] = {}
        for contact_id, entries in context.consents.items():
            seen: set[tuple[object, str]] = set()
            for entry in sorted(entries, key=lambda e: (e.decided_at, e.id)):
                key = (entry.channel, entry.purpose)
                if entry.status is ConsentStatus.PENDING or key not in seen:
                    kept.setdefault(contact_id, []).append(entry)
                if entry.status is not ConsentStatus.PENDING:
                    seen.add(key)
        return attrs.evolve(context, consents=kept)


class _AnyAddress(MemoryUnitOfWork):
    def _context(self, rule: Rule, now: datetime) -> Context:
        context = super()._context(rule, now)
        consents = {
            contact_id: [attrs.evolve(e, contact_point=None) for e in entries]
            for contact_id, entries in context.consents.items()
        }
        return attrs.evolve(context, consents=consents)


class _LedgerOfEveryTenant:
    def for_contact(self, contact_id: UUID, /, **_: Any) -> list[Any]:
        found = [
            e
            for table in _all_tenants(self)
            for e in table.values()
            if getattr(e, "contact_id", None) == contact_id
        ]
        return sorted(found, key=lambda e: (e.decided_at, e.id))


class _LedgerNewestFirst:
    def for_contact(self, contact_id: UUID, /, **options: Any) -> list[Any]:
        return list(reversed(super().for_contact(contact_id, **options)))  # type: ignore[misc]


CONSENT_MUTANTS: dict[str, tuple[type[MutantStore], tuple[str, ...]]] = {
    "reachable ignores do-not-contact blocks": (
        type(
            "ReachableIgnoresBlocks",
            (MutantStore,),
            {"unit_class": _NoBlocks, "__doc__": "reachable ignores do-not-contact blocks."},
        ),
        ("test_reachable_follows_the_ledgers",),
    ),
    "reachable keeps the first decision": (
        type(
            "ReachableFirstDecision",
            (MutantStore,),
            {"unit_class": _FirstDecisionOnly, "__doc__": "a later decision changes nothing."},
        ),
        ("test_reachable_follows_the_ledgers",),
    ),
    "a grant covers any address": (
        type(
            "ReachableAnyAddress",
            (MutantStore,),
            {"unit_class": _AnyAddress, "__doc__": "a grant covers every address."},
        ),
        ("test_reachable_follows_the_ledgers",),
    ),
    "ledgers read every tenant": (
        _mixing("LedgersEveryTenant", _LedgerOfEveryTenant, "for_contact reads every tenant."),
        ("test_ledgers_list_a_contact_s_entries_oldest_first",),
    ),
    "ledgers list the newest first": (
        _mixing("LedgersNewestFirst", _LedgerNewestFirst, "for_contact lists newest first."),
        ("test_ledgers_list_a_contact_s_entries_oldest_first",),
    ),
}

MUTANTS.update(CONSENT_MUTANTS)


# ---------------------------------------------------------------------------- the outbox


def _outbox_unit(outbox: type[_Outbox]) -> type[MemoryUnitOfWork]:
    class _Unit(MemoryUnitOfWork):
        def __init__(self, store: MemoryStore) -> None:
            super().__init__(store)
            self.outbox = outbox(self)

    return _Unit


def _outbox_mutant(name: str, outbox: type[_Outbox], doc: str) -> type[MutantStore]:
    return type(name, (MutantStore,), {"unit_class": _outbox_unit(outbox), "__doc__": doc})


class _OutboxOutsideTheUndoLog(_Outbox):
    def _write(self, name: str, key: object, value: object) -> None:
        self._named(name)[key] = value  # not undone by a rollback


class _OutboxReversed(_Outbox):
    def append(self, events: Iterable[Event], /) -> int:
        return super().append(list(reversed(list(events))))


class _OutboxKeepsDuplicates(_Outbox):
    def append(self, events: Iterable[Event], /) -> int:
        found = list(events)
        stored = self._named("outbox")
        for event in found:
            position = len(stored) + 1
            self._write("outbox", position, Recorded(position, event))
            self._write("outbox_ids", event.id, position)
        return len(found)


class _OutboxIgnoresLeases(_Outbox):
    def claim(self, handlers: Iterable[str], /, **options: Any) -> list[tuple[Delivery, Event]]:
        table = self._named("outbox_deliveries")
        for key, delivery in list(table.items()):
            table[key] = attrs.evolve(delivery, leased_until=None)  # forgets every lease
        return super().claim(handlers, **options)


class _OutboxEverySubject(_Outbox):
    def claim(
        self,
        handlers: Iterable[str],
        /,
        *,
        now: datetime,
        lease: timedelta,
        limit: int,
        claim: UUID,
    ) -> list[tuple[Delivery, Event]]:
        names, stored = set(handlers), self._named("outbox")
        taken: list[tuple[Delivery, Event]] = []
        for delivery in sorted(self._named("outbox_deliveries").values(), key=lambda d: d.position):
            if (
                delivery.handler in names
                and delivery.status is DeliveryStatus.PENDING
                and delivery.next_at <= now
                and (delivery.leased_until is None or delivery.leased_until <= now)
                and len(taken) < limit
            ):  # every due delivery, not the first of each subject
                leased = attrs.evolve(delivery, claim=claim, leased_until=now + lease)
                self._write("outbox_deliveries", (delivery.handler, delivery.position), leased)
                taken.append((leased, stored[delivery.position].event))
        return taken


class _OutboxSettlesAnyClaim(_Outbox):
    def settle(self, delivery: Delivery, /) -> bool:
        stored = self._named("outbox_deliveries").get((delivery.handler, delivery.position))
        if stored is not None:
            delivery = attrs.evolve(delivery, claim=stored.claim)
        return super().settle(delivery)


class _OutboxFinishKeepsCursors(_Outbox):
    def finish(self, taken: Taken, /, **options: Any) -> frozenset[int]:
        lanes = self._named("outbox_lanes")
        before = {key: value for key, value in lanes.items() if key[0] == taken.handler}
        kept = super().finish(taken, **options)
        for key, value in before.items():  # the cursors never move
            lanes[key] = attrs.evolve(value, claim=None, leased_until=None)
        return kept


class _OutboxTakeIgnoresTypes(_Outbox):
    def take(self, handler: str, types: Any, /, **options: Any) -> Taken:
        return super().take(handler, None, **options)


class _OutboxTakeIgnoresShare(_Outbox):
    def take(self, handler: str, types: Any, /, **options: Any) -> Taken:
        return super().take(handler, types, **{**options, "limit": 10_000})


class _OutboxTakeFewLanes(_Outbox):
    def take(self, handler: str, types: Any, /, **options: Any) -> Taken:
        lanes = min(options.get("lanes", LANES), options["limit"])  # lanes by number
        return super().take(handler, types, **{**options, "lanes": lanes})


class _OutboxTakeIgnoresLeases(_Outbox):
    def take(self, handler: str, types: Any, /, **options: Any) -> Taken:
        lanes = self._named("outbox_lanes")
        for key, value in list(lanes.items()):
            lanes[key] = attrs.evolve(value, leased_until=None)  # forgets every lease
        return super().take(handler, types, **options)


class _OutboxFinishAnyClaim(_Outbox):
    def finish(self, taken: Taken, /, **options: Any) -> frozenset[int]:
        lanes = self._named("outbox_lanes")
        for lane in taken.lanes:
            key = (taken.handler, lane.lane)
            if key in lanes:  # as if the claim still held every lane
                lanes[key] = attrs.evolve(lanes[key], claim=taken.claim)
        return super().finish(taken, **options)


class _OutboxNobodyWaits(_Outbox):
    def take(self, handler: str, types: Any, /, **options: Any) -> Taken:
        return attrs.evolve(super().take(handler, types, **options), waiting=frozenset())


class _OutboxFailuresHoldNothing(_Outbox):
    def finish(
        self, taken: Taken, /, *, at: datetime, failures: Iterable[Delivery] = ()
    ) -> frozenset[int]:
        found = list(failures)
        failed = {f.position for f in found}
        kept = super().finish(taken, at=at, failures=found)
        table = self._named("outbox_deliveries")
        for recorded in taken.events:  # a later event of a failed subject: done anyway
            key = (taken.handler, recorded.position)
            stored = table.get(key)
            if (
                stored is not None
                and recorded.position not in failed
                and stored.attempts == 0
                and recorded.event.subject_id not in taken.waiting
            ):
                table[key] = attrs.evolve(
                    stored, status=DeliveryStatus.DONE, next_at=None, finished_at=at
                )
        return kept


class _OutboxStartMovesCursors(_Outbox):
    def start_at_end(self, handler: str, /) -> int:
        end = len(self._named("outbox"))
        for lane in range(LANES):  # even a known one
            self._write("outbox_lanes", (handler, lane), _LaneCursor(end))
        return end


class _OutboxStartsAtTheBeginning(_Outbox):
    def start_at_end(self, handler: str, /) -> int:
        return 0  # writes nothing


class _OutboxNoNextAt(_Outbox):
    def claim(self, handlers: Iterable[str], /, **options: Any) -> list[tuple[Delivery, Event]]:
        table = self._named("outbox_deliveries")
        for key, delivery in list(table.items()):
            if delivery.status is DeliveryStatus.PENDING:
                table[key] = attrs.evolve(delivery, next_at=_EPOCH)
        return super().claim(handlers, **options)


class _OutboxReadsEveryTenant(_Outbox):
    def _named(self, name: str) -> dict[Any, Any]:
        self._unit._check_open()
        return self._unit._store._db.tables[("kit", name)]  # the kit's own tenant


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class _Unlocked(MutantStore):
    """Units run at once: a unit that appended does not hold the outbox."""

    def _lock(self) -> AbstractContextManager[Any]:
        return nullcontext()


OUTBOX_MUTANTS: dict[str, tuple[type[MutantStore], tuple[str, ...]]] = {
    "the outbox keeps rolled-back events": (
        _outbox_mutant("OutboxKeepsRollback", _OutboxOutsideTheUndoLog, "appends are kept."),
        ("test_the_outbox_keeps_nothing_of_a_rolled_back_unit",),
    ),
    "the outbox appends in reverse": (
        _outbox_mutant("OutboxReversed", _OutboxReversed, "append reverses its events."),
        ("test_the_outbox_appends_in_order",),
    ),
    "the outbox keeps duplicate ids": (
        _outbox_mutant("OutboxDuplicates", _OutboxKeepsDuplicates, "ids appended twice."),
        ("test_the_outbox_appends_in_order",),
    ),
    "claims ignore leases": (
        _outbox_mutant("ClaimsIgnoreLeases", _OutboxIgnoresLeases, "leases are forgotten."),
        ("test_claims_follow_subjects_and_leases",),
    ),
    "claims ignore the subject order": (
        _outbox_mutant("ClaimsEverySubject", _OutboxEverySubject, "not one per subject."),
        ("test_claims_follow_subjects_and_leases",),
    ),
    "settle ignores the claim": (
        _outbox_mutant("SettleAnyClaim", _OutboxSettlesAnyClaim, "a lost lease settles."),
        ("test_claims_follow_subjects_and_leases",),
    ),
    "finish leaves the cursors where they were": (
        _outbox_mutant("FinishKeepsCursors", _OutboxFinishKeepsCursors, "events come again."),
        ("test_takes_give_fresh_events_per_handler_and_type",),
    ),
    "take ignores the handler's types": (
        _outbox_mutant("TakeAllTypes", _OutboxTakeIgnoresTypes, "every event taken."),
        ("test_takes_give_fresh_events_per_handler_and_type",),
    ),
    "take ignores its limit": (
        _outbox_mutant("TakeNoShare", _OutboxTakeIgnoresShare, "every fresh event at once."),
        ("test_takes_give_fresh_events_per_handler_and_type",),
    ),
    "take leases as few lanes as its limit": (
        _outbox_mutant("TakeFewLanes", _OutboxTakeFewLanes, "lanes by number, not order."),
        ("test_a_take_of_every_lane_follows_commit_order",),
    ),
    "take ignores the lanes' leases": (
        _outbox_mutant("TakeIgnoresLeases", _OutboxTakeIgnoresLeases, "a lane taken twice."),
        ("test_lanes_are_leased_to_one_claim",),
    ),
    "finish ignores the claim": (
        _outbox_mutant("FinishAnyClaim", _OutboxFinishAnyClaim, "a lost lane records."),
        ("test_lanes_are_leased_to_one_claim",),
    ),
    "take says no subject waits": (
        _outbox_mutant("NobodyWaits", _OutboxNobodyWaits, "events jump a retry."),
        ("test_finish_keeps_each_subjects_order",),
    ),
    "a failure does not hold its subject's later events": (
        _outbox_mutant("FailuresHoldNothing", _OutboxFailuresHoldNothing, "order broken."),
        ("test_finish_keeps_each_subjects_order",),
    ),
    "start_at_end moves a cursor it should keep": (
        _outbox_mutant("StartMovesCursors", _OutboxStartMovesCursors, "cursors jump ahead."),
        ("test_a_handler_can_start_at_the_end",),
    ),
    "start_at_end starts at the beginning": (
        _outbox_mutant("StartsAtBeginning", _OutboxStartsAtTheBeginning, "history replayed."),
        ("test_a_handler_can_start_at_the_end",),
    ),
    "claims ignore next_at": (
        _outbox_mutant("ClaimsIgnoreNextAt", _OutboxNoNextAt, "a retry is due at once."),
        ("test_failed_deliveries_wait_and_dead_ones_are_retried",),
    ),
    "the outbox reads another tenant's": (
        _outbox_mutant("OutboxOneTenant", _OutboxReadsEveryTenant, "one outbox for all."),
        ("test_the_outbox_appends_in_order",),
    ),
    "appends do not wait for each other": (
        _Unlocked,
        ("test_positions_follow_commit_order",),
    ),
}

MUTANTS.update(OUTBOX_MUTANTS)
# ---------------------------------------------------------------------------- steps


class _StepsClaimUndue(_Steps):
    def claim(
        self, now: datetime, /, *, lease: UUID, until: datetime, limit: int, kinds: Any = None
    ) -> list[Any]:
        table = self._table
        due = sorted(
            (s for s in table.values() if is_claimable(attrs.evolve(s, due_at=now), now)),
            key=lambda s: (s.due_at, s.id),
        )[:limit]
        claimed = [claim_step(s, lease=lease, until=until) for s in due]
        for step in claimed:
            self._unit._write(table, step.id, step)
        return claimed


class _StepsClaimLeased(_Steps):
    def claim(
        self, now: datetime, /, *, lease: UUID, until: datetime, limit: int, kinds: Any = None
    ) -> list[Any]:
        table = self._table
        due = sorted(
            (s for s in table.values() if s.due_at <= now and s.status in _OPEN),
            key=lambda s: (s.due_at, s.id),
        )[:limit]
        claimed = [claim_step(s, lease=lease, until=until) for s in due]
        for step in claimed:
            self._unit._write(table, step.id, step)
        return claimed


class _StepsLeaseForever(_Steps):
    def claim(self, now: datetime, /, **options: Any) -> list[Any]:
        table = self._table
        held = {i: s for i, s in table.items() if s.status is StepStatus.RUNNING}
        for id in held:  # hidden from the claim, put back unchanged
            del table[id]
        try:
            return super().claim(now, **options)
        finally:
            table.update(held)


class _StepsClaimDone(_Steps):
    def claim(self, now: datetime, /, **options: Any) -> list[Any]:
        table = self._table
        for key, step in list(table.items()):
            if step.status in (StepStatus.DONE, StepStatus.DEAD):
                table[key] = attrs.evolve(step, status=StepStatus.PENDING, finished_at=None)
        return super().claim(now, **options)


class _StepsClaimUnrecorded(_Steps):
    def claim(self, now: datetime, /, **options: Any) -> list[Any]:
        claimed = super().claim(now, **options)
        self._unit.rollback()  # the claim is returned but not kept
        return claimed


class _StepsScheduleOverwrites(_Steps):
    def schedule(self, step: Any, /) -> Any:
        self._unit._write(self._table, step.id, step)
        return step


class _StepsSettleAnyLease(_Steps):
    def settle(self, steps: Any, /, *, lease: UUID) -> frozenset[UUID]:
        done = set()
        for step in steps:
            self._unit._write(self._table, step.id, step)
            done.add(step.id)
        return frozenset(done)


class _StepsOfEveryTenant(_Steps):
    @property
    def _table(self) -> dict[UUID, Any]:
        self._unit._check_open()
        return self._unit._store._db.tables[("*", "step")]


_OPEN = (StepStatus.PENDING, StepStatus.FAILED, StepStatus.RUNNING)


def _steps_unit(name: str, steps: type[_Steps], doc: str) -> type[MutantStore]:
    def init(self: MemoryUnitOfWork, store: MemoryStore) -> None:
        MemoryUnitOfWork.__init__(self, store)
        self.steps = steps(self)

    unit = type(f"_{name}Unit", (MemoryUnitOfWork,), {"__init__": init})
    return type(name, (MutantStore,), {"unit_class": unit, "__doc__": doc})


_SCHEDULED = "test_steps_are_scheduled_once_and_come_back_equal"
_DUE = "test_a_claim_takes_only_due_steps_earliest_first"
_LEASED = "test_a_lease_that_runs_out_makes_the_step_claimable_again"
_RETRIED = "test_failed_steps_are_due_again_and_dead_ones_never"
_CONCURRENT = "test_concurrent_claims_never_take_the_same_step"

STEP_MUTANTS: dict[str, tuple[type[MutantStore], tuple[str, ...]]] = {
    "claims take steps not due yet": (
        _steps_unit("StepsClaimUndue", _StepsClaimUndue, "claim ignores due_at."),
        (_DUE, _RETRIED),
    ),
    "claims take leased steps": (
        _steps_unit("StepsClaimLeased", _StepsClaimLeased, "claim ignores leases."),
        (_DUE, _LEASED),
    ),
    "leases never run out": (
        _steps_unit("StepsLeaseForever", _StepsLeaseForever, "a killed worker's step is lost."),
        (_LEASED,),
    ),
    "done and dead steps are claimed again": (
        _steps_unit("StepsClaimDone", _StepsClaimDone, "done steps are rerun."),
        (_LEASED, _RETRIED),
    ),
    "claims are not recorded": (
        _steps_unit("StepsClaimUnrecorded", _StepsClaimUnrecorded, "claims are not kept."),
        (_DUE, _CONCURRENT),
    ),
    "schedule overwrites a stored step": (
        _steps_unit("StepsScheduleOverwrites", _StepsScheduleOverwrites, "not idempotent."),
        (_SCHEDULED,),
    ),
    "settle ignores the lease": (
        _steps_unit("StepsSettleAnyLease", _StepsSettleAnyLease, "settle checks no lease."),
        (_LEASED,),
    ),
    "steps of every tenant": (
        _steps_unit("StepsOfEveryTenant", _StepsOfEveryTenant, "steps ignore the tenant."),
        (_SCHEDULED,),
    ),
}

MUTANTS.update(STEP_MUTANTS)


class _ForgetsForecastCategory:
    def update(self, item: Any, /) -> Any:
        if getattr(item, "forecast_category", None) is not None:
            item = attrs.evolve(item, forecast_category=None)
        return super().update(item)  # type: ignore[misc]


class _CategoryAsText:
    def count_by(self, field: str, rule: Any = None, /, *, now: Any = None) -> Any:
        found = super().count_by(field, rule, now=now)  # type: ignore[misc]
        if field != "forecast_category":
            return found
        return {None if k is None else str(k.value): n for k, n in found.items()}


MUTANTS.update(
    {
        "update forgets a deal's forecast category": (
            _mixing(
                "ForgetsForecastCategory",
                _ForgetsForecastCategory,
                "update stores every deal without its forecast category.",
            ),
            ("test_a_deal_s_forecast_category_round_trips",),
        ),
        "count_by gives categories as text": (
            _mixing(
                "CategoryAsText",
                _CategoryAsText,
                "count_by('forecast_category') keys are strings, not ForecastCategory.",
            ),
            ("test_a_deal_s_forecast_category_round_trips",),
        ),
    }
)


class _SpansWithoutChurn(MemoryUnitOfWork):
    def __init__(self, store: Any) -> None:
        super().__init__(store)
        history = self.stage_history
        spans = history.customer_spans

        def without_churn(stages: Any = CUSTOMER_STAGES, /) -> Any:
            return [attrs.evolve(s, end=None) for s in spans(stages)]

        history.customer_spans = without_churn  # type: ignore[method-assign]


class _SpansOfEveryMove(MemoryUnitOfWork):
    def __init__(self, store: Any) -> None:
        super().__init__(store)
        history = self.stage_history

        def every_subject(stages: Any = CUSTOMER_STAGES, /) -> Any:
            changes = [
                attrs.evolve(c, subject=SubjectKind.CONTACT) for c in history._table.values()
            ]
            contacts = list(self.contacts._table.values())
            return replay_customer_spans(contacts, changes, stages)

        history.customer_spans = every_subject  # type: ignore[method-assign]


MUTANTS.update(
    {
        "customer spans forget churn": (
            type(
                "SpansWithoutChurn",
                (MutantStore,),
                {"unit_class": _SpansWithoutChurn, "__doc__": "a customer never churns."},
            ),
            ("test_customer_spans_follow_the_contact_history",),
        ),
        "customer spans count deal moves": (
            type(
                "SpansOfEveryMove",
                (MutantStore,),
                {"unit_class": _SpansOfEveryMove, "__doc__": "deal moves make customers."},
            ),
            ("test_customer_spans_follow_the_contact_history",),
        ),
    }
)


# ---------------------------------------------------------------------------- export, erasure


class _DocumentsWithoutVersion:
    def referring_documents(self, field: str, id: UUID, /) -> list[Any]:
        found = super().referring_documents(field, id)  # type: ignore[misc]
        return [{k: v for k, v in d.items() if k != "version"} for d in found]


class _EraseEverything:
    """erase_referring rewrites and counts the entities that hold the values already."""

    def erase_referring(self, field: str, id: UUID, values: Any, /, *, at: datetime) -> int:
        found = self.referring(field, id)  # type: ignore[attr-defined]
        super().erase_referring(field, id, values, at=at)  # type: ignore[misc]
        for item in found:
            stored = self.get(item.id)  # type: ignore[attr-defined]
            if stored == item:
                self.update(attrs.evolve(item, **values))  # type: ignore[attr-defined]
        return len(found)


class _EraseWithoutVersion:
    def erase_referring(self, field: str, id: UUID, values: Any, /, *, at: datetime) -> int:
        count = 0
        for item in self.referring(field, id):  # type: ignore[attr-defined]
            changes = {k: v for k, v in values.items() if getattr(item, k) != v}
            if changes:
                new = attrs.evolve(item, **changes, updated_at=max(at, item.updated_at))
                self._unit._write(self._table, item.id, new)  # type: ignore[attr-defined]
                count += 1
        return count


_ERASE = "test_erase_referring_writes_the_values_in_one_go"

PRIVACY_MUTANTS: dict[str, tuple[type[MutantStore], tuple[str, ...]]] = {
    "referring_documents drop a field": (
        _mixing("DocumentsWithoutVersion", _DocumentsWithoutVersion, "documents lack version."),
        ("test_referring_documents_are_the_entities_as_json",),
    ),
    "erase_referring rewrites what holds the values": (
        _mixing("EraseEverything", _EraseEverything, "erase_referring writes every entity."),
        (_ERASE,),
    ),
    "erase_referring keeps the version": (
        _mixing("EraseWithoutVersion", _EraseWithoutVersion, "erase_referring keeps versions."),
        (_ERASE,),
    ),
}

MUTANTS.update(PRIVACY_MUTANTS)


class _ReachCountsWithoutTheReachable:
    def reach_counts(self, rule: Any, reachable: Any, /, *, now: Any = None) -> Any:
        found = super().reach_counts(rule, reachable, now=now)  # type: ignore[misc]
        return {k: v for k, v in found.items() if k is not None}


class _ReachCountsEveryoneReachable:
    def reach_counts(self, rule: Any, reachable: Any, /, *, now: Any = None) -> Any:
        return {None: self.count(rule, now=now)}  # type: ignore[attr-defined]


_REACH_COUNTS = "test_reach_counts_count_each_contact_by_its_first_failed_check"

MUTANTS.update(
    {
        "reach_counts leave out the reachable": (
            _mixing("ReachCountsNoNone", _ReachCountsWithoutTheReachable, "no None key."),
            (_REACH_COUNTS,),
        ),
        "reach_counts check nothing": (
            _mixing("ReachCountsNothing", _ReachCountsEveryoneReachable, "no check counted."),
            (_REACH_COUNTS,),
        ),
    }
)
