"""The memory adapter: the reference implementation of the storage port.

Everything lives in Python dictionaries; rules are evaluated with crmkit's Python
interpreter (:func:`crmkit.segmentation.compile_selector`). It is what other adapters are
compared with, and a fine store for tests and small tools. One lock serialises the units
of work of all threads, so it is thread-safe; a unit of work keeps an undo log and rolls
back by replaying it.
"""

import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast
from uuid import UUID

import attrs

from crmkit.analytics import (
    CUSTOMER_STAGES,
    REPLAYED,
    CustomerSpan,
    Reach,
    Standing,
    StandingWindow,
    Transaction,
    check_customer_stages,
    check_ranks,
    check_replay,
    check_stages,
    check_windows,
    replay_customer_spans,
    replay_reach,
    replay_standing,
    transactions_from_activities,
)
from crmkit.automation import (
    LANES,
    Delivery,
    DeliveryStatus,
    Event,
    Lane,
    Recorded,
    Step,
    StepStatus,
    Taken,
    claim_step,
    is_claimable,
    lane_of,
)
from crmkit.clock import SYSTEM_CLOCK, Clock, ensure_utc
from crmkit.errors import (
    ConcurrencyConflict,
    DanglingReference,
    Duplicate,
    NotFound,
    StillReferenced,
    StorageError,
    ValidationError,
)
from crmkit.models import (
    Account,
    Activity,
    ActivityKind,
    AuditEntry,
    Consent,
    Contact,
    Deal,
    DoNotContact,
    EmailAddress,
    Entity,
    Erasure,
    Lead,
    LifecycleStage,
    Segment,
    StageChange,
    SubjectKind,
    Suppression,
    Task,
    TaskKind,
    TaskStatus,
    Ticket,
)
from crmkit.models.rules import ActivityCondition, Reachable, ReachCheck, Rule
from crmkit.quality import MergeRecord, match_keys
from crmkit.segmentation import Context, compile_selector
from crmkit.serialization import make_converter
from crmkit.storage._base import (
    check_batch_size,
    check_email,
    check_erase_values,
    check_group_field,
    check_id,
    check_ids,
    check_item,
    check_kinds,
    check_limit,
    check_many,
    check_match_keys,
    check_merge_anonymised,
    check_merge_record,
    check_reference,
    check_rule,
    check_subject,
    check_tenant,
    check_version,
    check_window,
    erased,
    iterate_pages,
    merge_involves,
    page_of,
    query_now,
    reach_counts_by_steps,
    start_after,
    task_query,
)
from crmkit.storage._columns import REFERENCES, REFERRERS
from crmkit.storage._outbox import (
    check_claim,
    check_count,
    check_events,
    check_finish,
    check_handler,
    check_handlers,
    check_position,
    check_settled,
    check_settled_many,
    check_status,
    check_take,
    check_types,
    split_outcomes,
)
from crmkit.storage._port import Store, UnitOfWork
from crmkit.storage._query import Cursor, Order, Page, sort_key
from crmkit.storage._steps import (
    check_new_step,
    check_step_claim,
    check_steps_settled,
    settled,
    step_filter,
)

__all__ = ["MemoryStore", "MemoryUnitOfWork"]

_CONVERTER: Final = make_converter()

_E = TypeVar("_E", bound=Entity)
_H = TypeVar("_H", StageChange, AuditEntry)
_Table = dict[UUID, Any]
_ABSENT: Any = object()


class _Database:
    """The data of every tenant, shared by the stores opened on it."""

    def __init__(self, unique_emails: bool) -> None:
        self.lock = threading.RLock()
        self.active = threading.local()
        """Whether a unit of work on this data is open in the current thread."""
        self.tables: defaultdict[tuple[str, str], _Table] = defaultdict(dict)
        self.unique_emails = unique_emails
        # Per tenant: folded e-mail -> ids of the contacts with it (the identity index).
        self.emails: defaultdict[str, defaultdict[str, set[UUID]]] = defaultdict(
            lambda: defaultdict(set)
        )
        # Per tenant: (entity name, key name, value) -> ids (the match-key index).
        self.match_keys: defaultdict[str, defaultdict[tuple[str, str, str], set[UUID]]] = (
            defaultdict(lambda: defaultdict(set))
        )


class MemoryStore:
    """A store in memory, for one tenant. ``for_tenant`` opens another on the same data."""

    def __init__(
        self,
        tenant: str = "default",
        *,
        clock: Clock = SYSTEM_CLOCK,
        unique_emails: bool = True,
        _db: _Database | None = None,
    ) -> None:
        self._tenant = check_tenant(tenant)
        self._clock = clock
        if not isinstance(unique_emails, bool):
            raise ValidationError("unique_emails", unique_emails, "expected True or False")
        self._db = _Database(unique_emails) if _db is None else _db
        self._closed = False

    @property
    def tenant(self) -> str:
        """The tenant whose rows this store reads and writes."""
        return self._tenant

    @property
    def clock(self) -> Clock:
        """The clock that gives ``now`` to queries that do not pass one."""
        return self._clock

    @property
    def unique_emails(self) -> bool:
        """The identity policy: one contact per folded e-mail address (the default)."""
        return self._db.unique_emails

    def for_tenant(self, tenant: str, /) -> "MemoryStore":
        """A store on the same data for another tenant."""
        return MemoryStore(tenant, clock=self._clock, _db=self._db)

    @contextmanager
    def unit_of_work(self) -> Iterator["MemoryUnitOfWork"]:
        """A unit of work: commit to keep its changes; leaving the block rolls back.

        Units of work do not nest, as on the SQL stores: opening one while another on
        the same data is open in the same thread raises
        :class:`~crmkit.errors.StorageError`.
        """
        if self._closed:
            raise StorageError("this store is closed")
        active = self._db.active
        if getattr(active, "open", False):
            raise StorageError(
                "a unit of work of this store is already open in this thread: units of "
                "work do not nest; finish the outer unit first, or do the work in it"
            )
        with self._db.lock:
            active.open = True
            unit = MemoryUnitOfWork(self)
            try:
                yield unit
            finally:
                active.open = False
                unit.rollback()
                unit._open = False

    def close(self) -> None:
        """Mark the store closed; its data stays with the other tenants' stores."""
        self._closed = True

    def _table(self, entity: type[Entity]) -> _Table:
        return self._db.tables[(self._tenant, entity.entity_name)]


class MemoryUnitOfWork:
    """A unit of work of :class:`MemoryStore`."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._undo: list[tuple[_Table, UUID, Any]] = []
        self._open = True
        self.contacts = _Contacts(self, Contact)
        self.accounts = _Accounts(self, Account)
        self.leads = _Repository(self, Lead)
        self.deals = _Repository(self, Deal)
        self.tickets = _Repository(self, Ticket)
        self.activities = _Activities(self, Activity)
        self.tasks = _Tasks(self, Task)
        self.segments = _Repository(self, Segment)
        self.consents = _Consents(self, Consent)
        self.do_not_contact = _Blocks(self, DoNotContact)
        self.stage_history = _StageHistory(self, StageChange)
        self.merges = _Merges(self)
        self.suppressions = _Repository(self, Suppression)
        self.erasures = _Repository(self, Erasure)
        self.audit = _History(self, AuditEntry)
        self.outbox = _Outbox(self)
        self.steps = _Steps(self)

    def commit(self) -> None:
        """Keep everything done so far."""
        self._check_open()
        self._undo.clear()

    def rollback(self) -> None:
        """Undo everything done since the last commit."""
        for table, key, before in reversed(self._undo):
            self._put(table, key, before)
        self._undo.clear()

    def _check_open(self) -> None:
        if not self._open:
            raise StorageError("this unit of work has ended")

    def _write(self, table: _Table, key: UUID, value: object) -> None:
        self._undo.append((table, key, table.get(key, _ABSENT)))
        self._put(table, key, _ABSENT if value is None else value)

    def _put(self, table: _Table, key: UUID, value: Any) -> None:
        """Set (or, for ``_ABSENT``, remove) one row, keeping the e-mail index."""
        before = table.get(key)
        if isinstance(before, Contact) and before.email is not None:
            self._emails()[before.email.casefold()].discard(key)
        if isinstance(before, Contact | Account):
            index = self._match_keys()
            for name, found in match_keys(before):
                index[(before.entity_name, name, found)].discard(key)
        if value is _ABSENT:
            table.pop(key, None)
            return
        table[key] = value
        if isinstance(value, Contact) and value.email is not None:
            self._emails()[value.email.casefold()].add(key)
        if isinstance(value, Contact | Account):
            index = self._match_keys()
            for name, found in match_keys(value):
                index[(value.entity_name, name, found)].add(key)

    def _match_keys(self) -> defaultdict[tuple[str, str, str], set[UUID]]:
        return self._store._db.match_keys[self._store.tenant]

    def _emails(self) -> defaultdict[str, set[UUID]]:
        return self._store._db.emails[self._store.tenant]

    def _context(self, rule: Rule, now: datetime) -> Context:
        activities: dict[UUID, list[Activity]] = {}
        consents: dict[UUID, list[Consent]] = {}
        blocks: dict[UUID, list[DoNotContact]] = {}
        nodes = list(_walk_all(rule, self))
        if any(isinstance(node, ActivityCondition | Reachable) for node in nodes):
            for activity in self._store._table(Activity).values():
                assert isinstance(activity, Activity)
                activities.setdefault(activity.contact_id, []).append(activity)
        if any(isinstance(node, Reachable) for node in nodes):
            for consent in self._store._table(Consent).values():
                assert isinstance(consent, Consent)
                consents.setdefault(consent.contact_id, []).append(consent)
            for block in self._store._table(DoNotContact).values():
                assert isinstance(block, DoNotContact)
                blocks.setdefault(block.contact_id, []).append(block)
        segments = cast(Mapping[UUID, Segment], self._store._table(Segment))
        contacts = cast(Mapping[UUID, Contact], self._store._table(Contact))
        return Context(now, activities, segments, contacts, consents, blocks)


def _walk_all(rule: Rule, unit: MemoryUnitOfWork) -> Iterator[Any]:
    """Every node of ``rule`` and of the segment rules it refers to."""
    segments = unit._store._table(Segment)
    seen: set[UUID] = set()
    pending = [rule]
    while pending:
        for node in pending.pop().walk():
            yield node
            segment_id = getattr(node, "segment_id", None)
            if segment_id is not None and segment_id not in seen:
                seen.add(segment_id)
                segment = segments.get(segment_id)
                if isinstance(segment, Segment) and segment.rule is not None:
                    pending.append(segment.rule)


class _Repository(Generic[_E]):
    def __init__(self, unit: MemoryUnitOfWork, entity: type[_E]) -> None:
        self._unit = unit
        self._entity = entity

    @property
    def entity(self) -> type[_E]:
        return self._entity

    @property
    def _table(self) -> _Table:
        self._unit._check_open()
        return self._unit._store._table(self._entity)

    def get(self, id: UUID, /) -> _E:
        found = self._table.get(check_id(id))
        if found is None:
            raise NotFound(self._entity.entity_name, id)
        return cast(_E, found)

    def get_many(self, ids: Iterable[UUID], /) -> Mapping[UUID, _E]:
        table = self._table
        wanted = check_ids(ids)
        return {i: cast(_E, table[i]) for i in wanted if i in table}

    def add(self, item: _E, /) -> _E:
        item = check_item(item, self._entity)
        table = self._table
        if item.id in table:
            raise Duplicate(self._entity.entity_name, item.id)
        self._check_keys([item], None)
        self._check_references([item], None)
        self._unit._write(table, item.id, item)
        return item

    def _check_references(self, items: list[_E], offset: int | None) -> None:
        """:class:`DanglingReference` for the first reference of ``items`` that names no
        entity of the tenant."""
        for number, item in enumerate(items):
            for field, target in REFERENCES.get(self._entity, ()):
                value = getattr(item, field)
                if value is not None and value not in self._unit._store._table(target):
                    where = field if offset is None else f"[{offset + number}].{field}"
                    raise DanglingReference(
                        where, value, f"no {target.entity_name} with this id is stored"
                    )

    def _check_keys(self, items: list[_E], offset: int | None) -> None:
        """Raise :class:`Duplicate` for a unique key besides the id that ``items`` take
        (none here; contacts have their e-mail)."""

    def add_many(self, items: Iterable[_E], /) -> int:
        check_many(items, "items")
        table = self._table
        staged: dict[UUID, _E] = {}
        for index, item in enumerate(items):
            check_item(item, self._entity, f"[{index}]")
            if item.id in table or item.id in staged:
                raise Duplicate(self._entity.entity_name, item.id, index=index)
            staged[item.id] = item
        self._check_keys(list(staged.values()), 0)
        self._check_references(list(staged.values()), 0)
        for key, item in staged.items():
            self._unit._write(table, key, item)
        return len(staged)

    def update(self, item: _E, /) -> _E:
        item = check_item(item, self._entity)
        table = self._table
        stored = table.get(item.id)
        if stored is None:
            raise NotFound(self._entity.entity_name, item.id)
        if stored.version != item.version:
            raise ConcurrencyConflict(
                self._entity.entity_name, item.id, item.version, stored.version
            )
        new = attrs.evolve(item, version=item.version + 1)
        self._check_keys([new], None)
        self._check_references([new], None)
        self._unit._write(table, item.id, new)
        return new

    def restore(self, item: _E, /, *, version: int) -> _E:
        item = check_item(item, self._entity)
        check_version(version)
        table = self._table
        stored = table.get(item.id)
        if stored is None:
            raise NotFound(self._entity.entity_name, item.id)
        if stored.version != version:
            raise ConcurrencyConflict(self._entity.entity_name, item.id, version, stored.version)
        self._check_keys([item], None)
        self._unit._write(table, item.id, item)
        return item

    def delete(self, id: UUID, /, *, version: int | None = None) -> None:
        table = self._table
        stored = table.get(check_id(id))
        if stored is None:
            raise NotFound(self._entity.entity_name, id)
        if version is not None and stored.version != version:
            raise ConcurrencyConflict(self._entity.entity_name, id, version, stored.version)
        name = self._entity.entity_name
        found = []
        for entity, field in REFERRERS.get(name, ()):
            first = next(
                (e for e in self._unit._store._table(entity).values() if getattr(e, field) == id),
                None,
            )
            if first is not None:
                found.append((entity.entity_name, first.id))
        if found:
            raise StillReferenced(name, id, found)
        self._unit._write(table, id, None)

    def referring(self, field: str, id: UUID, /) -> list[_E]:
        field = check_reference(field, self.entity)
        check_id(id)
        found = [e for e in self._table.values() if getattr(e, field) == id]
        return cast(list[_E], sorted(found, key=lambda e: (e.created_at, e.id)))

    def referring_documents(self, field: str, id: UUID, /) -> list[dict[str, Any]]:
        return [_CONVERTER.unstructure(e) for e in self.referring(field, id)]

    def erase_referring(
        self, field: str, id: UUID, values: Mapping[str, Any], /, *, at: datetime
    ) -> int:
        found = self.referring(field, id)
        values = check_erase_values(self._entity, values)
        at = ensure_utc(at, "at")
        count = 0
        for item in found:
            new = erased(item, values, at)
            if new is not None:
                self._check_keys([new], None)
                self._unit._write(self._table, new.id, new)
                count += 1
        return count

    def _select(self, rule: Rule | None, now: datetime | None) -> list[_E]:
        rule = check_rule(rule, self._entity)
        fixed = query_now(now, self._unit._store.clock)  # checked with or without a rule
        items = cast(list[_E], list(self._table.values()))
        if rule is None:
            return items
        context = self._unit._context(rule, fixed)
        return cast(list[_E], compile_selector(rule, context)(items))

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
        order = start_after(order, after, self._entity)
        limit = check_limit(limit)
        key = sort_key(order)
        found = self._select(rule, now)
        found.sort(key=key, reverse=order.descending)
        if after is not None:
            mark = key(_Marker(order.field, after.value, after.id))
            if order.descending:
                found = [e for e in found if key(e) < mark]
            else:
                found = [e for e in found if key(e) > mark]
        return page_of(found, order, limit)

    def count(self, rule: Rule | None = None, /, *, now: datetime | None = None) -> int:
        return len(self._select(rule, now))

    def ids(self, rule: Rule | None = None, /, *, now: datetime | None = None) -> list[UUID]:
        return sorted(item.id for item in self._select(rule, now))

    def count_by(
        self, field: str, rule: Rule | None = None, /, *, now: datetime | None = None
    ) -> dict[Any, int]:
        name = check_group_field(field, self._entity)
        return dict(Counter(getattr(item, name) for item in self._select(rule, now)))

    def iterate(
        self, rule: Rule | None = None, /, *, batch_size: int = 1000, now: datetime | None = None
    ) -> Iterator[_E]:
        batch_size = check_batch_size(batch_size)
        fixed = query_now(now, self._unit._store.clock)
        return iterate_pages(self.find, rule, batch_size, fixed)


class _Marker:
    """Stands for the last item of a page when comparing sort keys."""

    def __init__(self, field: str, value: Any, id: UUID) -> None:
        setattr(self, field, value)
        self.id = id


class _Keyed(_Repository[_E]):
    def with_match_keys(
        self, keys: Iterable[tuple[str, str]], /, *, limit: int | None = None
    ) -> list[_E]:
        wanted = check_match_keys(keys)
        limit = check_limit(limit)
        table = self._table
        index = self._unit._match_keys()
        name = self._entity.entity_name
        ids: set[UUID] = set()
        for key, value in wanted:
            ids.update(sorted(index.get((name, key, value), ()))[:limit])
        return sorted((cast(_E, table[i]) for i in ids), key=lambda e: (e.created_at, e.id))


class _Accounts(_Keyed[Account]):
    pass


class _Contacts(_Keyed[Contact]):
    def reach_counts(
        self, rule: Rule, reachable: Reachable, /, *, now: datetime | None = None
    ) -> dict[ReachCheck | None, int]:
        return reach_counts_by_steps(self, rule, reachable, now)

    def with_email(self, email: EmailAddress, /) -> list[Contact]:
        table = self._table
        ids = self._unit._emails().get(check_email(email).casefold(), ())
        return sorted((cast(Contact, table[i]) for i in ids), key=lambda c: (c.created_at, c.id))

    def _check_keys(self, items: list[Contact], offset: int | None) -> None:
        if not self._unit._store.unique_emails:
            return
        index = self._unit._emails()
        seen: set[str] = set()
        for number, item in enumerate(items):
            if item.email is None:
                continue
            key = item.email.casefold()
            if key in seen or index.get(key, set()) - {item.id}:
                at = None if offset is None else offset + number
                raise Duplicate("contact", str(item.email), index=at, field="email")
            seen.add(key)


class _Tasks(_Repository[Task]):
    def select(
        self,
        *,
        status: TaskStatus | None = None,
        kind: TaskKind | None = None,
        assignee: str | None = None,
        contact_id: UUID | None = None,
        deal_id: UUID | None = None,
        ticket_id: UUID | None = None,
        due_until: datetime | None = None,
    ) -> list[Task]:
        query = task_query(
            status=status,
            kind=kind,
            assignee=assignee,
            contact_id=contact_id,
            due_until=due_until,
            deal_id=deal_id,
            ticket_id=ticket_id,
        )
        found = [t for t in cast(Iterable[Task], self._table.values()) if query.matches(t)]
        return sorted(found, key=lambda t: (t.due_at, t.id))


class _Activities(_Repository[Activity]):
    def append(self, activity: Activity, /) -> Activity:
        return self.add(activity)

    def for_contact(
        self,
        contact_id: UUID,
        /,
        *,
        kinds: Iterable[ActivityKind] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Activity]:
        query = _activity_query(contact_id, kinds, since, until)
        found = [a for a in self._table.values() if query(cast(Activity, a))]
        return sorted(cast(list[Activity], found), key=lambda a: (a.occurred_at, a.id))

    def for_contacts(
        self,
        contact_ids: Iterable[UUID],
        /,
        *,
        kinds: Iterable[ActivityKind] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Activity]:
        owners = frozenset(check_ids(contact_ids, "contact_ids"))
        wanted = check_kinds(kinds)
        low, high = check_window(since, until)
        found = [
            a
            for a in cast(list[Activity], list(self._table.values()))
            if a.contact_id in owners
            and (wanted is None or a.kind in wanted)
            and (low is None or a.occurred_at >= low)
            and (high is None or a.occurred_at < high)
        ]
        return sorted(found, key=lambda a: (a.occurred_at, a.id))

    def of_kinds(
        self,
        kinds: Iterable[ActivityKind],
        /,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Activity]:
        check_many(kinds, "kinds")  # required: None is no collection
        wanted = check_kinds(kinds) or frozenset()
        low, high = check_window(since, until)
        found = [
            a
            for a in cast(list[Activity], list(self._table.values()))
            if a.kind in wanted
            and (low is None or a.occurred_at >= low)
            and (high is None or a.occurred_at < high)
        ]
        return sorted(found, key=lambda a: (a.occurred_at, a.id))

    def purchases(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[Transaction]:
        bought = self.of_kinds([ActivityKind.PURCHASE], since=since, until=until)
        return transactions_from_activities(bought)


def _activity_query(
    contact_id: UUID,
    kinds: Iterable[ActivityKind] | None,
    since: datetime | None,
    until: datetime | None,
) -> Any:
    check_id(contact_id, "contact_id")
    wanted = check_kinds(kinds)
    since, until = check_window(since, until)

    def matches(a: Activity) -> bool:
        if a.contact_id != contact_id:
            return False
        if wanted is not None and a.kind not in wanted:
            return False
        if since is not None and a.occurred_at < since:
            return False
        return until is None or a.occurred_at < until

    return matches


class _Consents(_Repository[Consent]):
    def for_contact(self, contact_id: UUID, /) -> list[Consent]:
        check_id(contact_id, "contact_id")
        found = cast(Iterable[Consent], self._table.values())
        mine = [c for c in found if c.contact_id == contact_id]
        return sorted(mine, key=lambda c: (c.decided_at, c.id))


class _Blocks(_Repository[DoNotContact]):
    def for_contact(self, contact_id: UUID, /) -> list[DoNotContact]:
        check_id(contact_id, "contact_id")
        found = cast(Iterable[DoNotContact], self._table.values())
        mine = [b for b in found if b.contact_id == contact_id]
        return sorted(mine, key=lambda b: (b.decided_at, b.id))


class _History(_Repository[_H]):
    """The records of what happened to subjects: stage changes, audit entries."""

    def for_subject(self, subject: SubjectKind, subject_id: UUID, /) -> list[_H]:
        subject = check_subject(subject)
        check_id(subject_id, "subject_id")
        found = [
            c
            for c in cast(Iterable[_H], self._table.values())
            if c.subject is subject and c.subject_id == subject_id
        ]
        return sorted(found, key=lambda c: (c.at, c.id))

    def for_subjects(self, subject: SubjectKind, subject_ids: Iterable[UUID], /) -> list[_H]:
        subject = check_subject(subject)
        wanted = set(check_ids(subject_ids, "subject_ids"))
        found = [
            c
            for c in cast(Iterable[_H], self._table.values())
            if c.subject is subject and c.subject_id in wanted
        ]
        return sorted(found, key=lambda c: (c.at, c.id))


class _Merges:
    """The merge records of the tenant, in the same undo log as every other row."""

    def __init__(self, unit: MemoryUnitOfWork) -> None:
        self._unit = unit

    @property
    def _table(self) -> _Table:
        self._unit._check_open()
        return self._unit._store._db.tables[(self._unit._store.tenant, "merge")]

    def get(self, id: UUID, /) -> MergeRecord:
        found = self._table.get(check_id(id))
        if found is None:
            raise NotFound("merge", id)
        return cast(MergeRecord, found)

    def add(self, record: MergeRecord, /) -> MergeRecord:
        record = check_merge_record(record)
        table = self._table
        if record.id in table:
            raise Duplicate("merge", record.id)
        self._unit._write(table, record.id, record)
        return record

    def delete(self, id: UUID, /) -> None:
        table = self._table
        if check_id(id) not in table:
            raise NotFound("merge", id)
        self._unit._write(table, id, None)

    def _sorted(self, found: Iterable[Any]) -> list[MergeRecord]:
        return sorted(cast(Iterable[MergeRecord], found), key=lambda m: (m.at, m.id))

    def merging(self, merged_id: UUID, /) -> list[MergeRecord]:
        check_id(merged_id, "merged_id")
        return self._sorted(m for m in self._table.values() if merged_id in m.merged_ids)

    def with_email(self, email: EmailAddress, /) -> list[MergeRecord]:
        key = check_email(email).casefold()
        return self._sorted(m for m in self._table.values() if key in m.merged_emails)

    def involving(self, contact_id: UUID, /) -> list[MergeRecord]:
        check_id(contact_id, "contact_id")
        return self._sorted(m for m in self._table.values() if merge_involves(m, contact_id))

    def anonymise(self, record: MergeRecord, /) -> MergeRecord:
        record = check_merge_record(record)
        record = check_merge_anonymised(self.get(record.id), record)
        self._unit._write(self._table, record.id, record)
        return record


class _Steps:
    """The steps of the tenant, in the same undo log as every other row. The memory
    store runs one unit of work at a time, so a claim is exclusive until it commits."""

    def __init__(self, unit: MemoryUnitOfWork) -> None:
        self._unit = unit

    @property
    def _table(self) -> _Table:
        self._unit._check_open()
        return self._unit._store._db.tables[(self._unit._store.tenant, "step")]

    def get(self, id: UUID, /) -> Step:
        found = self._table.get(check_id(id))
        if found is None:
            raise NotFound("step", id)
        return cast(Step, found)

    def schedule(self, step: Step, /) -> Step:
        step = check_new_step(step)
        table = self._table
        stored = table.get(step.id)
        if stored is not None:
            return cast(Step, stored)
        self._unit._write(table, step.id, step)
        return step

    def claim(
        self,
        now: datetime,
        /,
        *,
        lease: UUID,
        until: datetime,
        limit: int,
        kinds: Iterable[str] | None = None,
    ) -> list[Step]:
        at, end, wanted = check_step_claim(now, lease, until, limit, kinds)
        table = self._table
        due = sorted(
            (
                s
                for s in cast(Iterable[Step], table.values())
                if is_claimable(s, at) and (wanted is None or s.kind in wanted)
            ),
            key=lambda s: (s.due_at, s.id),
        )[:limit]
        claimed = [claim_step(s, lease=lease, until=end) for s in due]
        for step in claimed:
            self._unit._write(table, step.id, step)
        return claimed

    def settle(self, steps: Iterable[Step], /, *, lease: UUID) -> frozenset[UUID]:
        outcomes, lease = check_steps_settled(steps, lease)
        table = self._table
        done = set()
        for outcome in outcomes:
            stored = cast(Step | None, table.get(outcome.id))
            new = None if stored is None else settled(stored, outcome, lease)
            if new is not None:
                self._unit._write(table, new.id, new)
                done.add(new.id)
        return frozenset(done)

    def select(
        self,
        *,
        status: StepStatus | None = None,
        kind: str | None = None,
        subject_id: UUID | None = None,
        limit: int | None = None,
    ) -> list[Step]:
        wanted = step_filter(status, kind, subject_id, limit)
        found = sorted(
            (s for s in cast(Iterable[Step], self._table.values()) if wanted.matches(s)),
            key=lambda s: (s.due_at, s.id),
        )
        return found if wanted.limit is None else found[: wanted.limit]


class _StageHistory(_History[StageChange]):
    def _subjects(
        self, subject: SubjectKind, rule: Rule | None, until: datetime, group: str | None
    ) -> list[Entity]:
        entity = REPLAYED[subject]
        if group is not None:
            check_group_field(group, entity)
        repository: _Repository[Entity] = _Repository(self._unit, entity)
        return repository._select(rule, until)

    def reach(
        self,
        subject: SubjectKind,
        ranks: Mapping[str, int],
        /,
        *,
        until: datetime,
        pipeline: str | None = None,
        rule: Rule | None = None,
        group: str | None = None,
    ) -> list[Reach]:
        subject, until, pipeline, _, _ = check_replay(subject, until, pipeline)
        checked = check_ranks(ranks)
        subjects = self._subjects(subject, rule, until, group)
        changes = cast(Iterable[StageChange], self._table.values())
        return replay_reach(
            subjects, changes, subject, checked, until=until, pipeline=pipeline, group=group
        )

    def customer_spans(
        self, stages: Iterable[LifecycleStage] = CUSTOMER_STAGES, /
    ) -> list[CustomerSpan]:
        wanted = check_customer_stages(stages)
        contacts = _Repository(self._unit, Contact)._select(None, None)
        changes = cast(Iterable[StageChange], self._table.values())
        return replay_customer_spans(contacts, changes, wanted)

    def standing(
        self,
        subject: SubjectKind,
        /,
        *,
        until: datetime,
        since: datetime | None = None,
        then: datetime | None = None,
        pipeline: str | None = None,
        rule: Rule | None = None,
        group: str | None = None,
        stages: Iterable[str] | None = None,
    ) -> list[Standing]:
        subject, until, pipeline, since, then = check_replay(subject, until, pipeline, since, then)
        kept = check_stages(stages)
        subjects = self._subjects(subject, rule, until, group)
        changes = cast(Iterable[StageChange], self._table.values())
        return replay_standing(
            subjects,
            changes,
            subject,
            until=until,
            since=since,
            then=then,
            pipeline=pipeline,
            group=group,
            stages=kept,
        )

    def standings(
        self,
        subject: SubjectKind,
        windows: Sequence[StandingWindow],
        /,
        *,
        pipeline: str | None = None,
        rule: Rule | None = None,
        group: str | None = None,
    ) -> list[list[Standing]]:
        return [
            self.standing(
                subject,
                until=w.until,
                since=w.since,
                then=w.then,
                stages=w.stages,
                pipeline=pipeline,
                rule=rule,
                group=group,
            )
            for w in check_windows(windows)
        ]


@attrs.frozen
class _LaneCursor:
    """Where one lane of a handler stands: its cursor, and its lease while taken."""

    position: int
    claim: UUID | None = None
    leased_until: datetime | None = None


class _Outbox:
    """The outbox of the tenant: events by position, their ids, the deliveries by
    (handler, position) and each handler's lanes' cursors, all in the unit's undo log. The
    store's lock runs units one at a time, so positions follow commit order."""

    def __init__(self, unit: MemoryUnitOfWork) -> None:
        self._unit = unit

    def _named(self, name: str) -> dict[Any, Any]:
        self._unit._check_open()
        return self._unit._store._db.tables[(self._unit._store.tenant, name)]

    def _write(self, name: str, key: object, value: object) -> None:
        self._unit._write(self._named(name), cast(UUID, key), value)

    def append(self, events: Iterable[Event], /) -> int:
        found = check_events(events)
        stored, ids = self._named("outbox"), self._named("outbox_ids")
        position = len(stored)
        seen: set[UUID] = set()
        for event in found:
            if event.id in ids or event.id in seen:
                continue
            seen.add(event.id)
            position += 1
            self._write("outbox", position, Recorded(position, event))
            self._write("outbox_ids", event.id, position)
        return len(seen)

    def read(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        types: Iterable[str] | None = None,
        subject_id: UUID | None = None,
    ) -> list[Recorded]:
        start, most, kinds = check_position(after), check_count(limit), check_types(types)
        if subject_id is not None:
            check_id(subject_id, "subject_id")
        stored = self._named("outbox")
        found: list[Recorded] = []
        for position in range(start + 1, len(stored) + 1):
            recorded: Recorded = stored[position]
            event = recorded.event
            if kinds is not None and event.type not in kinds:
                continue
            if subject_id is not None and event.subject_id != subject_id:
                continue
            found.append(recorded)
            if len(found) == most:
                break
        return found

    def known(self, ids: Iterable[UUID], /) -> set[UUID]:
        wanted = check_ids(ids, "ids")
        stored = self._named("outbox_ids")
        return {i for i in wanted if i in stored}

    def _lanes(self, name: str, *, at_end: bool) -> list[_LaneCursor]:
        """The cursors of ``name``'s lanes, made (at 0, or at the last position stored)
        if it has none yet."""
        cursors = self._named("outbox_lanes")
        if (name, 0) not in cursors:
            at = len(self._named("outbox")) if at_end else 0
            for lane in range(LANES):
                self._write("outbox_lanes", (name, lane), _LaneCursor(at))
        return [cursors[(name, lane)] for lane in range(LANES)]

    def take(
        self,
        handler: str,
        types: Iterable[str] | None,
        /,
        *,
        now: datetime,
        lease: timedelta,
        limit: int,
        claim: UUID,
        lanes: int = LANES,
    ) -> Taken:
        name, kinds = check_handler(handler), check_types(types)
        at, span, most, token, width = check_take(now, lease, limit, claim, lanes)
        cursors = self._lanes(name, at_end=False)
        stored = self._named("outbox")
        last = len(stored)
        ahead: dict[int, list[Recorded]] = {lane: [] for lane in range(LANES)}
        low = min(c.position for c in cursors)
        for position in range(low + 1, last + 1):
            recorded: Recorded = stored[position]
            lane = lane_of(recorded.event.subject_id)
            if position > cursors[lane].position:
                ahead[lane].append(recorded)
        free = [
            lane
            for lane, cursor in enumerate(cursors)
            if ahead[lane] and (cursor.leased_until is None or cursor.leased_until <= at)
        ]
        free.sort(key=lambda lane: (cursors[lane].position, lane))
        chosen = free[:width]
        until = at + span
        wanted = sorted(
            (r for lane in chosen for r in ahead[lane] if kinds is None or r.event.type in kinds),
            key=lambda r: r.position,
        )
        events = wanted[:most]
        # Every event of the chosen lanes up to the last one given is in the take.
        reach = events[-1].position if len(wanted) > most else last
        taken_lanes: list[Lane] = []
        for lane in chosen:
            start = cursors[lane].position
            taken_lanes.append(Lane(lane=lane, start=start, end=max(start, reach)))
            self._write("outbox_lanes", (name, lane), _LaneCursor(start, token, until))
        subjects = {r.event.subject_id for r in events}
        waiting = {
            d.subject_id
            for d in self._named("outbox_deliveries").values()
            if d.handler == name and d.status is DeliveryStatus.PENDING and d.subject_id in subjects
        }
        return Taken(
            handler=name,
            claim=token,
            leased_until=until,
            lanes=tuple(taken_lanes),
            events=tuple(events),
            waiting=frozenset(waiting),
        )

    def finish(
        self, taken: Taken, /, *, at: datetime, failures: Iterable[Delivery] = ()
    ) -> frozenset[int]:
        took, when, failed = check_finish(taken, at, failures)
        cursors = self._named("outbox_lanes")
        kept: set[int] = set()
        for lane in took.lanes:
            cursor = cursors.get((took.handler, lane.lane))
            if cursor is not None and cursor.claim == took.claim:
                kept.add(lane.lane)
                self._write("outbox_lanes", (took.handler, lane.lane), _LaneCursor(lane.end))
        done, held, failures_kept = split_outcomes(took, failed, kept)
        for recorded, status in [(r, DeliveryStatus.DONE) for r in done] + [
            (r, DeliveryStatus.PENDING) for r in held
        ]:
            event = recorded.event
            delivery = Delivery(
                position=recorded.position,
                event_id=event.id,
                event_type=event.type,
                handler=took.handler,
                subject_id=event.subject_id,
                status=status,
                next_at=when if status is DeliveryStatus.PENDING else None,
                finished_at=when if status is DeliveryStatus.DONE else None,
            )
            self._write("outbox_deliveries", (took.handler, recorded.position), delivery)
        for delivery in failures_kept:
            self._write("outbox_deliveries", (took.handler, delivery.position), delivery)
        return frozenset(kept)

    def start_at_end(self, handler: str, /) -> int:
        name = check_handler(handler)
        return min(c.position for c in self._lanes(name, at_end=True))

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
        names = set(check_handlers(handlers))
        at, lease, most, token = check_claim(now, lease, limit, claim)
        deliveries = self._named("outbox_deliveries")
        lanes: dict[tuple[str, UUID], list[Delivery]] = {}
        for delivery in sorted(deliveries.values(), key=lambda d: d.position):
            if delivery.handler in names and delivery.status is DeliveryStatus.PENDING:
                lanes.setdefault((delivery.handler, delivery.subject_id), []).append(delivery)
        due: list[Delivery] = []
        for lane in lanes.values():
            for delivery in lane:  # the head of each lane, and the due ones right after it
                if delivery.next_at is None or delivery.next_at > at:
                    break
                if delivery.leased_until is not None and delivery.leased_until > at:
                    break
                due.append(delivery)
        due.sort(key=lambda d: (d.position, d.handler))
        stored = self._named("outbox")
        taken: list[tuple[Delivery, Event]] = []
        for delivery in due[:most]:
            leased = attrs.evolve(delivery, claim=token, leased_until=at + lease)
            self._write("outbox_deliveries", (delivery.handler, delivery.position), leased)
            taken.append((leased, stored[delivery.position].event))
        return taken

    def settle(self, delivery: Delivery, /) -> bool:
        outcome = check_settled(delivery)
        key = (outcome.handler, outcome.position)
        stored = self._named("outbox_deliveries").get(key)
        if stored is None or stored.claim != outcome.claim:
            return False
        self._write("outbox_deliveries", key, attrs.evolve(outcome, claim=None, leased_until=None))
        return True

    def settle_many(self, deliveries: Iterable[Delivery], /) -> list[bool]:
        return [self.settle(d) for d in check_settled_many(deliveries)]

    def deliveries(
        self,
        *,
        handler: str | None = None,
        status: DeliveryStatus | None = None,
        event_id: UUID | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        name = None if handler is None else check_handler(handler)
        wanted, most = check_status(status), check_count(limit)
        if event_id is not None:
            check_id(event_id, "event_id")
        found = [
            d
            for d in self._named("outbox_deliveries").values()
            if (name is None or d.handler == name)
            and (wanted is None or d.status is wanted)
            and (event_id is None or d.event_id == event_id)
        ]
        found.sort(key=lambda d: (d.position, d.handler))
        return found[:most]

    def retry(self, event_id: UUID, handler: str, /, *, at: datetime) -> Delivery:
        check_id(event_id, "event_id")
        name, when = check_handler(handler), ensure_utc(at, "at")
        position = self._named("outbox_ids").get(event_id)
        found: Delivery | None = (
            None if position is None else self._named("outbox_deliveries").get((name, position))
        )
        if found is None:
            raise NotFound("delivery", event_id)
        if found.status is not DeliveryStatus.DEAD:
            raise ValidationError("status", found.status, "only a dead delivery is retried")
        again = attrs.evolve(
            found,
            status=DeliveryStatus.PENDING,
            attempts=0,
            next_at=when,
            claim=None,
            leased_until=None,
            finished_at=None,
        )
        self._write("outbox_deliveries", (name, found.position), again)
        return again


if TYPE_CHECKING:  # mypy proves that the adapter implements the port

    def _is_a_store(store: MemoryStore, unit: MemoryUnitOfWork) -> tuple[Store, UnitOfWork]:
        return store, unit
