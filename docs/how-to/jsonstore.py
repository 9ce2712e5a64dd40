"""JsonStore: an example storage adapter that keeps entities as JSON documents.

Each tenant's entities are JSON strings in dictionaries, written and read with crmkit's
converter. Rules are evaluated in Python with crmkit.segmentation. One lock lets one unit
of work run at a time, so the store is thread-safe. The how-to "Write a storage adapter"
walks through this module and runs crmkit's conformance kit on it.
"""

import json
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast
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
    event_from_json,
    event_to_json,
    is_claimable,
    lane_of,
)
from crmkit.clock import SYSTEM_CLOCK, Clock
from crmkit.errors import (
    ConcurrencyConflict,
    DanglingReference,
    Duplicate,
    InvalidRule,
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
from crmkit.models.rules import Reachable, ReachCheck, Rule
from crmkit.quality import MergeRecord, match_keys
from crmkit.segmentation import Context, compile_selector
from crmkit.serialization import make_converter
from crmkit.storage import (
    REFERENCES,
    REFERRERS,
    Cursor,
    Order,
    Page,
    Store,
    UnitOfWork,
    check_erase_values,
    check_merge_anonymised,
    erased,
    groupable_fields,
    merge_from_json,
    merge_involves,
    merge_to_json,
    reach_counts_by_steps,
    references,
    sortable_fields,
    validate_tenant,
)

E = TypeVar("E", bound=Entity)
Table = dict[UUID, str]  # entity id -> the entity as a JSON document

converter = make_converter()


class JsonStore:
    """A store for one tenant; ``for_tenant`` opens another on the same documents."""

    def __init__(self, tenant: str = "default", *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.tenant = validate_tenant(tenant)
        self.clock = clock
        self.tables: dict[tuple[str, str], Table] = {}  # by (tenant, entity name)
        self.lock = threading.RLock()
        self._closed = False

    def for_tenant(self, tenant: str, /) -> "JsonStore":
        other = JsonStore(tenant, clock=self.clock)
        other.tables, other.lock = self.tables, self.lock  # the same data and lock
        return other

    @contextmanager
    def unit_of_work(self) -> Iterator["JsonUnitOfWork"]:
        if self._closed:
            raise StorageError("this store is closed")
        with self.lock:
            unit = JsonUnitOfWork(self)
            try:
                yield unit
            finally:
                unit.rollback()
                unit.open = False

    def close(self) -> None:
        self._closed = True


class JsonUnitOfWork:
    """Works on copies of the tables it touches; commit makes the copies the tables."""

    def __init__(self, store: JsonStore) -> None:
        self.store = store
        self.open = True
        self._copies: dict[tuple[str, str], Table] = {}
        self.contacts = JsonContacts(self, Contact)
        self.accounts = JsonAccounts(self, Account)
        self.leads = JsonRepository(self, Lead)
        self.deals = JsonRepository(self, Deal)
        self.tickets = JsonRepository(self, Ticket)
        self.activities = JsonActivities(self, Activity)
        self.tasks = JsonTasks(self, Task)
        self.segments = JsonRepository(self, Segment)
        self.consents = JsonConsents(self, Consent)
        self.do_not_contact = JsonDoNotContact(self, DoNotContact)
        self.stage_history = JsonStageHistory(self, StageChange)
        self.merges = JsonMerges(self)
        self.suppressions = JsonRepository(self, Suppression)
        self.erasures = JsonRepository(self, Erasure)
        self.audit = JsonHistory(self, AuditEntry)
        self.outbox = JsonOutbox(self)
        self.steps = JsonSteps(self)

    def table(self, entity: type[Entity]) -> Table:
        """This unit's copy of the tenant's table of ``entity``."""
        return self.table_named(entity.entity_name)

    def table_named(self, name: str) -> Table:
        """This unit's copy of the tenant's table called ``name``."""
        if not self.open:
            raise StorageError("this unit of work has ended")
        key = (self.store.tenant, name)
        if key not in self._copies:
            self._copies[key] = dict(self.store.tables.get(key, {}))
        return self._copies[key]

    def commit(self) -> None:
        if not self.open:
            raise StorageError("this unit of work has ended")
        self.store.tables.update(self._copies)
        self._copies = {}

    def rollback(self) -> None:
        self._copies = {}


class JsonRepository(Generic[E]):
    def __init__(self, unit: JsonUnitOfWork, entity: type[E]) -> None:
        self.unit = unit
        self._entity = entity
        self._name = entity.entity_name

    @property
    def entity(self) -> type[E]:
        return self._entity

    def _load(self, document: str) -> E:
        return converter.structure(json.loads(document), self._entity)

    def _dump(self, item: E) -> str:
        return json.dumps(converter.unstructure(item))

    def get(self, id: UUID, /) -> E:
        document = self.unit.table(self._entity).get(check_id(id))
        if document is None:
            raise NotFound(self._name, id)
        return self._load(document)

    def get_many(self, ids: Iterable[UUID], /) -> Mapping[UUID, E]:
        table = self.unit.table(self._entity)
        wanted = [check_id(id, f"ids[{n}]") for n, id in enumerate(ids)]
        return {id: self._load(table[id]) for id in wanted if id in table}

    def add(self, item: E, /) -> E:
        table = self.unit.table(self._entity)
        if check_item(item, self._entity).id in table:
            raise Duplicate(self._name, item.id)
        self._check_unique([item], bulk=False)
        self._check_references([item], bulk=False)
        table[item.id] = self._dump(item)
        return item

    def _check_references(self, items: list[E], *, bulk: bool) -> None:
        """Raise DanglingReference for a reference that names nothing stored."""
        for index, item in enumerate(items):
            for field, target in REFERENCES.get(self._entity, ()):
                value = getattr(item, field)
                if value is not None and value not in self.unit.table(target):
                    where = f"[{index}].{field}" if bulk else field
                    raise DanglingReference(where, value, f"no {target.entity_name} is stored")

    def _check_unique(self, items: list[E], *, bulk: bool) -> None:
        """Raise Duplicate for a unique key besides the id (contacts: their e-mail);
        ``bulk``: name the item's index, as add_many does."""

    def add_many(self, items: Iterable[E], /) -> int:
        table = self.unit.table(self._entity)
        staged: Table = {}
        for index, item in enumerate(items):
            if check_item(item, self._entity, f"[{index}]").id in table or item.id in staged:
                raise Duplicate(self._name, item.id, index=index)
            staged[item.id] = self._dump(item)
        loaded = [self._load(document) for document in staged.values()]
        self._check_unique(loaded, bulk=True)
        self._check_references(loaded, bulk=True)
        table.update(staged)
        return len(staged)

    def update(self, item: E, /) -> E:
        stored = self.get(check_item(item, self._entity).id)
        if stored.version != item.version:
            raise ConcurrencyConflict(self._name, item.id, item.version, stored.version)
        new = attrs.evolve(item, version=item.version + 1)
        self._check_unique([new], bulk=False)
        self._check_references([new], bulk=False)
        self.unit.table(self._entity)[item.id] = self._dump(new)
        return new

    def restore(self, item: E, /, *, version: int) -> E:
        stored = self.get(check_item(item, self._entity).id)
        if type(version) is not int or version < 1:
            raise ValidationError("version", version, "a version is a positive int")
        if stored.version != version:
            raise ConcurrencyConflict(self._name, item.id, version, stored.version)
        self._check_unique([item], bulk=False)
        self.unit.table(self._entity)[item.id] = self._dump(item)
        return item

    def delete(self, id: UUID, /, *, version: int | None = None) -> None:
        stored = self.get(id)
        if version is not None and stored.version != version:
            raise ConcurrencyConflict(self._name, id, version, stored.version)
        referrers = []
        for entity, field in REFERRERS.get(self._name, ()):
            table = self.unit.table(entity)
            for document in table.values():
                other = converter.structure(json.loads(document), entity)
                if getattr(other, field) == id:
                    referrers.append((entity.entity_name, other.id))
                    break
        if referrers:
            raise StillReferenced(self._name, id, referrers)
        del self.unit.table(self._entity)[id]

    def all(self) -> list[E]:
        return [self._load(document) for document in self.unit.table(self._entity).values()]

    def referring(self, field: str, id: UUID, /) -> list[E]:
        if field not in references(self._entity):
            raise ValidationError("field", field, "expected one of the entity's references")
        check_id(id)
        found = [item for item in self.all() if getattr(item, field) == id]
        return sorted(found, key=lambda item: (item.created_at, item.id))

    def referring_documents(self, field: str, id: UUID, /) -> list[dict[str, Any]]:
        return [converter.unstructure(item) for item in self.referring(field, id)]

    def erase_referring(
        self, field: str, id: UUID, values: Mapping[str, Any], /, *, at: datetime
    ) -> int:
        found = self.referring(field, id)
        values = check_erase_values(self._entity, values)
        changed = [erased(item, values, check_time(at, "at")) for item in found]
        for new in changed:
            if new is not None:  # erased() counted the version up; update counts it again
                self.update(attrs.evolve(new, version=new.version - 1))
        return sum(new is not None for new in changed)

    def _select(self, rule: Rule | None, now: datetime | None) -> list[E]:
        """The entities ``rule`` selects, evaluated by crmkit's rule interpreter."""
        now = self.unit.store.clock.now() if now is None else check_time(now, "now")
        if rule is None:
            return self.all()
        if not isinstance(rule, Rule) or rule.entity != self._name:
            raise InvalidRule("rule", rule, f"not a rule over {self._name}s")
        context = Context(
            now=now,
            activities=by_contact(self.unit.activities.all()),
            segments={segment.id: segment for segment in self.unit.segments.all()},
            consents=by_contact(self.unit.consents.all()),
            blocks=by_contact(self.unit.do_not_contact.all()),
        )
        return compile_selector(rule, context)(self.all())

    def find(
        self,
        rule: Rule | None = None,
        /,
        *,
        order: Order | None = None,
        limit: int | None = None,
        after: Cursor | None = None,
        now: datetime | None = None,
    ) -> Page[E]:
        order = Order() if order is None else order
        if not isinstance(order, Order) or order.field not in sortable_fields(self._entity):
            raise ValidationError("order", order, "cannot order by this field")
        if limit is not None and (type(limit) is not int or limit < 1):
            raise ValidationError("limit", limit, "a limit is a positive int (or None)")
        if after is not None and (not isinstance(after, Cursor) or after.order != order):
            raise ValidationError("after", after, "not a cursor of this order")

        def key(item: Any) -> tuple[Any, ...]:
            return sort_key(getattr(item, order.field), item.id)

        found = sorted(self._select(rule, now), key=key, reverse=order.descending)
        if after is not None:
            mark = sort_key(after.value, after.id)
            found = [e for e in found if (key(e) < mark if order.descending else key(e) > mark)]
        if limit is None or len(found) <= limit:
            return Page(tuple(found), None)
        last = found[limit - 1]
        return Page(tuple(found[:limit]), Cursor(order, getattr(last, order.field), last.id))

    def count(self, rule: Rule | None = None, /, *, now: datetime | None = None) -> int:
        return len(self._select(rule, now))

    def count_by(
        self, field: str, rule: Rule | None = None, /, *, now: datetime | None = None
    ) -> dict[Any, int]:
        if not isinstance(field, str) or field not in groupable_fields(self._entity):
            raise ValidationError("field", field, f"{self._name}s cannot be counted by it")
        return dict(Counter(getattr(item, field) for item in self._select(rule, now)))

    def ids(self, rule: Rule | None = None, /, *, now: datetime | None = None) -> list[UUID]:
        return sorted(item.id for item in self._select(rule, now))

    def iterate(
        self, rule: Rule | None = None, /, *, batch_size: int = 1000, now: datetime | None = None
    ) -> Iterator[E]:
        if type(batch_size) is not int or batch_size < 1:
            raise ValidationError("batch_size", batch_size, "a batch size is a positive int")
        now = self.unit.store.clock.now() if now is None else now  # one now for every page
        return self._pages(rule, batch_size, now)

    def _pages(self, rule: Rule | None, batch_size: int, now: datetime) -> Iterator[E]:
        page = self.find(rule, order=Order("id"), limit=batch_size, now=now)
        yield from page
        while page.next is not None:
            page = self.find(rule, order=Order("id"), limit=batch_size, after=page.next, now=now)
            yield from page


class JsonKeyed(JsonRepository[E]):
    """Contacts and accounts: the look-up of possible duplicates by match keys.

    A scan computes every entity's keys (fine for a small example store; an adapter for
    many entities keeps an index of them, written with each add, update and delete)."""

    def with_match_keys(
        self, keys: Iterable[tuple[str, str]], /, *, limit: int | None = None
    ) -> list[E]:
        if isinstance(keys, str | bytes | Mapping) or not isinstance(keys, Iterable):
            raise ValidationError("keys", keys, "expected a collection of (name, value) pairs")
        wanted = set()
        for index, pair in enumerate(keys):
            if not (
                isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
            ):
                raise ValidationError(f"keys[{index}]", pair, "expected a (name, value) pair")
            wanted.add(pair)
        if limit is not None and (type(limit) is not int or limit < 1):
            raise ValidationError("limit", limit, "a limit is a positive int (or None)")
        keyed = sorted((e.id, e, match_keys(e)) for e in self.all())
        chosen: dict[UUID, E] = {}
        for key in wanted:  # at most `limit` per key: those with the smallest ids
            having = [(id, e) for id, e, keys in keyed if key in keys]
            chosen.update(having[:limit])
        return sorted(chosen.values(), key=lambda e: (e.created_at, e.id))


class JsonAccounts(JsonKeyed[Account]):
    pass


class JsonContacts(JsonKeyed[Contact]):
    def reach_counts(
        self, rule: Rule, reachable: Reachable, /, *, now: datetime | None = None
    ) -> dict[ReachCheck | None, int]:
        return reach_counts_by_steps(self, rule, reachable, now)  # one count per check

    def with_email(self, email: EmailAddress, /) -> list[Contact]:
        if not isinstance(email, EmailAddress):
            raise ValidationError("email", email, "expected an EmailAddress")
        wanted = email.casefold()
        found = [c for c in self.all() if c.email is not None and c.email.casefold() == wanted]
        return sorted(found, key=lambda c: (c.created_at, c.id))

    def _check_unique(self, items: list[Contact], *, bulk: bool) -> None:
        """One contact per folded e-mail address (the default identity policy)."""
        seen: dict[str, UUID] = {
            c.email.casefold(): c.id for c in self.all() if c.email is not None
        }
        for index, item in enumerate(items):
            if item.email is None:
                continue
            key = item.email.casefold()
            if seen.get(key, item.id) != item.id:
                at = index if bulk else None
                raise Duplicate("contact", str(item.email), index=at, field="email")
            seen[key] = item.id


class JsonTasks(JsonRepository[Task]):
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
        if status is not None and not isinstance(status, TaskStatus):
            raise ValidationError("status", status, "expected a TaskStatus or None")
        if kind is not None and not isinstance(kind, TaskKind):
            raise ValidationError("kind", kind, "expected a TaskKind or None")
        if assignee is not None and not isinstance(assignee, str):
            raise ValidationError("assignee", assignee, "expected a str or None")
        for name, value in (
            ("contact_id", contact_id),
            ("deal_id", deal_id),
            ("ticket_id", ticket_id),
        ):
            if value is not None:
                check_id(value, name)
        if due_until is not None:
            check_time(due_until, "due_until")
        found = [
            t
            for t in self.all()
            if (status is None or t.status is status)
            and (kind is None or t.kind is kind)
            and (assignee is None or t.assignee == assignee)
            and (contact_id is None or t.contact_id == contact_id)
            and (deal_id is None or t.deal_id == deal_id)
            and (ticket_id is None or t.ticket_id == ticket_id)
            and (due_until is None or t.due_at <= due_until)
        ]
        return sorted(found, key=lambda t: (t.due_at, t.id))


class JsonActivities(JsonRepository[Activity]):
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
        check_id(contact_id, "contact_id")
        if isinstance(kinds, str):
            raise ValidationError("kinds", kinds, "expected a collection of ActivityKind")
        wanted = None if kinds is None else frozenset(kinds)
        for kind in wanted or ():
            if not isinstance(kind, ActivityKind):
                raise ValidationError("kinds", kind, "expected an ActivityKind")
        since = None if since is None else check_time(since, "since")
        until = None if until is None else check_time(until, "until")
        found = [
            a
            for a in self.all()
            if a.contact_id == contact_id
            and (wanted is None or a.kind in wanted)
            and (since is None or a.occurred_at >= since)
            and (until is None or a.occurred_at < until)
        ]
        return sorted(found, key=lambda a: (a.occurred_at, a.id))

    def for_contacts(
        self,
        contact_ids: Iterable[UUID],
        /,
        *,
        kinds: Iterable[ActivityKind] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Activity]:
        if isinstance(contact_ids, str | bytes | Mapping) or not isinstance(contact_ids, Iterable):
            raise ValidationError("contact_ids", contact_ids, "expected a collection of UUIDs")
        owners = {check_id(i, f"contact_ids[{n}]") for n, i in enumerate(contact_ids)}
        if isinstance(kinds, str):
            raise ValidationError("kinds", kinds, "expected a collection of ActivityKind")
        wanted = None if kinds is None else frozenset(kinds)
        for kind in wanted or ():
            if not isinstance(kind, ActivityKind):
                raise ValidationError("kinds", kind, "expected an ActivityKind")
        since = None if since is None else check_time(since, "since")
        until = None if until is None else check_time(until, "until")
        found = [
            a
            for a in self.all()
            if a.contact_id in owners
            and (wanted is None or a.kind in wanted)
            and (since is None or a.occurred_at >= since)
            and (until is None or a.occurred_at < until)
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
        if isinstance(kinds, str | bytes | Mapping) or not isinstance(kinds, Iterable):
            raise ValidationError("kinds", kinds, "expected a collection of ActivityKind")
        wanted = frozenset(kinds)
        for kind in wanted:
            if not isinstance(kind, ActivityKind):
                raise ValidationError("kinds", kind, "expected an ActivityKind")
        since = None if since is None else check_time(since, "since")
        until = None if until is None else check_time(until, "until")
        found = [
            a
            for a in self.all()
            if a.kind in wanted
            and (since is None or a.occurred_at >= since)
            and (until is None or a.occurred_at < until)
        ]
        return sorted(found, key=lambda a: (a.occurred_at, a.id))

    def purchases(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[Transaction]:
        bought = self.of_kinds([ActivityKind.PURCHASE], since=since, until=until)
        return transactions_from_activities(bought)


class JsonConsents(JsonRepository[Consent]):
    def for_contact(self, contact_id: UUID, /) -> list[Consent]:
        check_id(contact_id, "contact_id")
        found = [c for c in self.all() if c.contact_id == contact_id]
        return sorted(found, key=lambda c: (c.decided_at, c.id))


class JsonDoNotContact(JsonRepository[DoNotContact]):
    def for_contact(self, contact_id: UUID, /) -> list[DoNotContact]:
        check_id(contact_id, "contact_id")
        found = [b for b in self.all() if b.contact_id == contact_id]
        return sorted(found, key=lambda b: (b.decided_at, b.id))


def by_contact(items: Iterable[Any]) -> dict[UUID, list[Any]]:
    """``items`` (activities, ledger entries) grouped by their ``contact_id``."""
    found: dict[UUID, list[Any]] = {}
    for item in items:
        found.setdefault(item.contact_id, []).append(item)
    return found


H = TypeVar("H", StageChange, AuditEntry)


class JsonHistory(JsonRepository[H]):
    def for_subject(self, subject: SubjectKind, subject_id: UUID, /) -> list[H]:
        if not isinstance(subject, SubjectKind):
            raise ValidationError("subject", subject, "expected a SubjectKind")
        check_id(subject_id, "subject_id")
        found = [c for c in self.all() if c.subject is subject and c.subject_id == subject_id]
        return sorted(found, key=lambda c: (c.at, c.id))

    def for_subjects(self, subject: SubjectKind, subject_ids: Iterable[UUID], /) -> list[H]:
        if not isinstance(subject, SubjectKind):
            raise ValidationError("subject", subject, "expected a SubjectKind")
        given: object = subject_ids
        if isinstance(given, str | bytes) or not isinstance(given, Iterable):
            raise ValidationError("subject_ids", given, "expected a collection of UUIDs")
        wanted = {check_id(i, f"subject_ids[{n}]") for n, i in enumerate(subject_ids)}
        found = [c for c in self.all() if c.subject is subject and c.subject_id in wanted]
        return sorted(found, key=lambda c: (c.at, c.id))


class JsonStageHistory(JsonHistory[StageChange]):
    def _subjects(
        self, subject: SubjectKind, rule: Rule | None, until: datetime, group: str | None
    ) -> list[Entity]:
        """The subjects ``rule`` selects, for the KPI replays below."""
        entity = REPLAYED[subject]
        if group is not None and group not in groupable_fields(entity):
            raise ValidationError("field", group, f"{entity.entity_name}s cannot be grouped by it")
        repository: JsonRepository[Entity] = getattr(self.unit, f"{entity.entity_name}s")
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
        """crmkit's reference replay over every document; a database groups instead."""
        subject, until, pipeline, _, _ = check_replay(subject, until, pipeline)
        checked = check_ranks(ranks)
        subjects = self._subjects(subject, rule, until, group)
        return replay_reach(
            subjects, self.all(), subject, checked, until=until, pipeline=pipeline, group=group
        )

    def customer_spans(
        self, stages: Iterable[LifecycleStage] = CUSTOMER_STAGES, /
    ) -> list[CustomerSpan]:
        """crmkit's reference replay over every document."""
        contacts: list[Contact] = self.unit.contacts.all()
        return replay_customer_spans(contacts, self.all(), check_customer_stages(stages))

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
        return replay_standing(
            subjects,
            self.all(),
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
        """One :meth:`standing` per window; a database orders the history once for all."""
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


class JsonMerges:
    """Merge records as JSON documents, written and read by crmkit's own functions."""

    def __init__(self, unit: JsonUnitOfWork) -> None:
        self.unit = unit

    def _table(self) -> Table:
        return self.unit.table_named("merge")

    def get(self, id: UUID, /) -> MergeRecord:
        document = self._table().get(check_id(id))
        if document is None:
            raise NotFound("merge", id)
        return merge_from_json(json.loads(document))

    def add(self, record: MergeRecord, /) -> MergeRecord:
        if not isinstance(record, MergeRecord):
            raise ValidationError("record", record, "expected a MergeRecord")
        table = self._table()
        if record.id in table:
            raise Duplicate("merge", record.id)
        table[record.id] = json.dumps(merge_to_json(record))
        return record

    def delete(self, id: UUID, /) -> None:
        self.get(id)
        del self._table()[id]

    def _all(self) -> list[MergeRecord]:
        found = [merge_from_json(json.loads(d)) for d in self._table().values()]
        return sorted(found, key=lambda m: (m.at, m.id))

    def merging(self, merged_id: UUID, /) -> list[MergeRecord]:
        check_id(merged_id, "merged_id")
        return [m for m in self._all() if merged_id in m.merged_ids]

    def with_email(self, email: EmailAddress, /) -> list[MergeRecord]:
        if not isinstance(email, EmailAddress):
            raise ValidationError("email", email, "expected an EmailAddress")
        return [m for m in self._all() if email.casefold() in m.merged_emails]

    def involving(self, contact_id: UUID, /) -> list[MergeRecord]:
        check_id(contact_id, "contact_id")
        return [m for m in self._all() if merge_involves(m, contact_id)]

    def anonymise(self, record: MergeRecord, /) -> MergeRecord:
        if not isinstance(record, MergeRecord):
            raise ValidationError("record", record, "expected a MergeRecord")
        record = check_merge_anonymised(self.get(record.id), record)
        self._table()[record.id] = json.dumps(merge_to_json(record))
        return record


class JsonOutbox:
    """The outbox: events by position (1, 2, 3 ... per tenant), deliveries by handler and
    position, the cursor and lease of each handler's lanes. One unit of work runs at a
    time, so positions follow commit order; a rollback drops the unit's copies, events
    included."""

    def __init__(self, unit: JsonUnitOfWork) -> None:
        self.unit = unit

    def _table(self, name: str) -> dict[Any, str]:
        return cast(dict[Any, str], self.unit.table_named(name))

    def _event(self, position: int) -> Event:
        return event_from_json(json.loads(self._table("outbox")[position]))

    def _delivery(self, document: str) -> Delivery:
        return converter.structure(json.loads(document), Delivery)

    def _put(self, delivery: Delivery) -> None:
        key = f"{delivery.handler}\n{delivery.position}"
        self._table("outbox_deliveries")[key] = json.dumps(converter.unstructure(delivery))

    def append(self, events: Iterable[Event], /) -> int:
        found = list(events)
        for index, event in enumerate(found):
            if not isinstance(event, Event):
                raise ValidationError(f"events[{index}]", event, "expected an Event")
        table, ids = self._table("outbox"), self._table("outbox_ids")
        made = 0
        for event in found:
            if event.id not in ids:
                position = len(table) + 1
                table[position] = json.dumps(event_to_json(event))
                ids[event.id] = str(position)
                made += 1
        return made

    def read(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        types: Iterable[str] | None = None,
        subject_id: UUID | None = None,
    ) -> list[Recorded]:
        check_count(after, "after", least=0)
        check_count(limit, "limit")
        kinds = None if types is None else set(types)
        found: list[Recorded] = []
        for position in range(after + 1, len(self._table("outbox")) + 1):
            event = self._event(position)
            if (kinds is None or event.type in kinds) and subject_id in (None, event.subject_id):
                found.append(Recorded(position, event))
                if len(found) == limit:
                    break
        return found

    def known(self, ids: Iterable[UUID], /) -> set[UUID]:
        stored = self._table("outbox_ids")
        return {check_id(i, "ids") for i in ids if i in stored}

    def _lanes(self, handler: str, start: int) -> list[dict[str, Any]]:
        """The cursors of ``handler``'s lanes (made at ``start`` if it has none)."""
        table = self._table("outbox_lanes")
        for lane in range(LANES):
            table.setdefault(f"{handler}\n{lane}", json.dumps({"position": start}))
        return [json.loads(table[f"{handler}\n{lane}"]) for lane in range(LANES)]

    def _put_lane(self, handler: str, lane: int, cursor: dict[str, Any]) -> None:
        self._table("outbox_lanes")[f"{handler}\n{lane}"] = json.dumps(cursor)

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
        check_handler(handler)
        if not isinstance(lease, timedelta) or lease <= timedelta(0):
            raise ValidationError("lease", lease, "expected a positive timedelta")
        now, most = check_time(now, "now"), check_count(limit, "limit")
        if type(lanes) is not int or not 1 <= lanes <= LANES:
            raise ValidationError("lanes", lanes, f"expected an int from 1 to {LANES}")
        kinds = None if types is None else set(types)
        cursors, last = self._lanes(handler, 0), len(self._table("outbox"))
        fresh: dict[int, list[Recorded]] = {lane: [] for lane in range(LANES)}
        for position in range(min(c["position"] for c in cursors) + 1, last + 1):
            event = self._event(position)
            if position > cursors[lane_of(event.subject_id)]["position"]:
                fresh[lane_of(event.subject_id)].append(Recorded(position, event))
        free = [
            lane
            for lane, cursor in enumerate(cursors)
            if fresh[lane]
            and (cursor.get("until") is None or datetime.fromisoformat(cursor["until"]) <= now)
        ]
        chosen = sorted(free, key=lambda lane: (cursors[lane]["position"], lane))[:lanes]
        wanted = sorted(
            (r for lane in chosen for r in fresh[lane] if kinds is None or r.event.type in kinds),
            key=lambda r: r.position,
        )
        events, until = wanted[:most], now + lease
        reach = events[-1].position if len(wanted) > most else last  # all up to it are in
        taken = []
        for lane in chosen:
            start = cursors[lane]["position"]
            taken.append(Lane(lane=lane, start=start, end=max(start, reach)))
            leased = {"claim": str(claim), "until": until.isoformat()}
            self._put_lane(handler, lane, {"position": start, **leased})
        subjects = {r.event.subject_id for r in events}
        pending = self.deliveries(handler=handler, status=DeliveryStatus.PENDING, limit=2**62)
        return Taken(
            handler=handler,
            claim=claim,
            leased_until=until,
            lanes=tuple(taken),
            events=tuple(events),
            waiting=frozenset(d.subject_id for d in pending if d.subject_id in subjects),
        )

    def finish(
        self, taken: Taken, /, *, at: datetime, failures: Iterable[Delivery] = ()
    ) -> frozenset[int]:
        if not isinstance(taken, Taken):
            raise ValidationError("taken", taken, "expected a Taken")
        at, failed = check_time(at, "at"), {}
        ours = {r.position: r.event.id for r in taken.events}
        for index, failure in enumerate(failures):
            if (
                not isinstance(failure, Delivery)
                or ours.get(failure.position) != failure.event_id
                or (failure.handler, failure.claim) != (taken.handler, taken.claim)
            ):
                raise ValidationError(f"failures[{index}]", failure, "not an event of the take")
            if failure.status is DeliveryStatus.DONE or (
                failure.status is DeliveryStatus.PENDING and failure.next_at is None
            ):
                raise ValidationError(f"failures[{index}]", failure, "pending with next_at or dead")
            failed[failure.position] = failure
        kept = set()
        cursors = self._table("outbox_lanes")
        for lane in taken.lanes:
            cursor = json.loads(cursors.get(f"{taken.handler}\n{lane.lane}", "{}"))
            if cursor.get("claim") == str(taken.claim):  # else the lease ran out: lost
                kept.add(lane.lane)
                self._put_lane(taken.handler, lane.lane, {"position": lane.end})
        held = set(taken.waiting)  # subjects whose later events wait
        for recorded in taken.events:
            event = recorded.event
            if lane_of(event.subject_id) not in kept:
                continue
            if recorded.position in failed:
                held.add(event.subject_id)
                outcome = failed[recorded.position]
                self._put(attrs.evolve(outcome, claim=None, leased_until=None))
                continue
            delivery = Delivery(
                position=recorded.position,
                event_id=event.id,
                event_type=event.type,
                handler=taken.handler,
                subject_id=event.subject_id,
            )
            if event.subject_id in held:
                self._put(attrs.evolve(delivery, next_at=at))
            else:
                self._put(attrs.evolve(delivery, status=DeliveryStatus.DONE, finished_at=at))
        return frozenset(kept)

    def start_at_end(self, handler: str, /) -> int:
        check_handler(handler)
        return min(c["position"] for c in self._lanes(handler, len(self._table("outbox"))))

    def deliveries(
        self,
        *,
        handler: str | None = None,
        status: DeliveryStatus | None = None,
        event_id: UUID | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        check_count(limit, "limit")
        found = [
            d
            for d in map(self._delivery, self._table("outbox_deliveries").values())
            if handler in (None, d.handler)
            and status in (None, d.status)
            and event_id in (None, d.event_id)
        ]
        return sorted(found, key=lambda d: (d.position, d.handler))[:limit]

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
        if not isinstance(lease, timedelta) or lease <= timedelta(0):
            raise ValidationError("lease", lease, "expected a positive timedelta")
        names, now = set(handlers), check_time(now, "now")
        check_count(limit, "limit")
        stopped: set[tuple[str, UUID]] = set()  # lanes: (handler, subject id)
        taken: list[tuple[Delivery, Event]] = []
        for delivery in self.deliveries(status=DeliveryStatus.PENDING, limit=2**62):
            lane = (delivery.handler, delivery.subject_id)
            if delivery.handler not in names or lane in stopped or len(taken) == limit:
                continue
            leased = delivery.leased_until is not None and delivery.leased_until > now
            if leased or cast(datetime, delivery.next_at) > now:
                stopped.add(lane)  # the rest of its lane waits behind it
                continue
            mine = attrs.evolve(delivery, claim=claim, leased_until=now + lease)
            self._put(mine)
            taken.append((mine, self._event(delivery.position)))
        return taken

    def settle(self, delivery: Delivery, /) -> bool:
        if not isinstance(delivery, Delivery):
            raise ValidationError("delivery", delivery, "expected a Delivery")
        stored = self._table("outbox_deliveries").get(f"{delivery.handler}\n{delivery.position}")
        if stored is None or self._delivery(stored).claim != delivery.claim:
            return False  # another claim took it over after the lease ran out
        self._put(attrs.evolve(delivery, claim=None, leased_until=None))
        return True

    def settle_many(self, deliveries: Iterable[Delivery], /) -> list[bool]:
        return [self.settle(delivery) for delivery in deliveries]

    def retry(self, event_id: UUID, handler: str, /, *, at: datetime) -> Delivery:
        found = self.deliveries(handler=check_handler(handler), event_id=event_id, limit=1)
        if not found:
            raise NotFound("delivery", event_id)
        if found[0].status is not DeliveryStatus.DEAD:
            raise ValidationError("status", found[0].status, "only a dead delivery is retried")
        again = attrs.evolve(
            found[0], status=DeliveryStatus.PENDING, attempts=0, next_at=at, finished_at=None
        )
        self._put(again)
        return again


def check_count(value: object, field: str, least: int = 1) -> int:
    if type(value) is not int or value < least:
        raise ValidationError(field, value, f"expected an int >= {least}")
    return value


def check_handler(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("handler", value, "expected a handler name")
    return value


class JsonSteps:
    """Durable timers as JSON documents. The store runs one unit of work at a time (its
    lock), so a claim is exclusive until it commits; a database adapter locks the rows
    it claims instead (``SELECT ... FOR UPDATE SKIP LOCKED``)."""

    def __init__(self, unit: JsonUnitOfWork) -> None:
        self.unit = unit

    def _all(self) -> dict[UUID, Step]:
        table = self.unit.table_named("step")
        return {id: converter.structure(json.loads(d), Step) for id, d in table.items()}

    def _put(self, step: Step) -> None:
        self.unit.table_named("step")[step.id] = json.dumps(converter.unstructure(step))

    def get(self, id: UUID, /) -> Step:
        document = self.unit.table_named("step").get(check_id(id))
        if document is None:
            raise NotFound("step", id)
        return converter.structure(json.loads(document), Step)

    def schedule(self, step: Step, /) -> Step:
        if not isinstance(step, Step) or step.status is not StepStatus.PENDING or step.attempts:
            raise ValidationError("step", step, "expected a pending Step with no attempts")
        stored = self._all().get(step.id)
        if stored is not None:
            return stored  # idempotent by id
        self._put(step)
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
        now, until = check_time(now, "now"), check_time(until, "until")
        check_id(lease, "lease")
        if until <= now:
            raise ValidationError("until", until, "a lease ends after now")
        if type(limit) is not int or limit < 1:
            raise ValidationError("limit", limit, "expected a positive int")
        wanted = None if kinds is None else set(kinds)
        due = sorted(
            (
                s
                for s in self._all().values()
                if is_claimable(s, now) and (wanted is None or s.kind in wanted)
            ),
            key=lambda s: (s.due_at, s.id),
        )
        claimed = [claim_step(s, lease=lease, until=until) for s in due[:limit]]
        for step in claimed:
            self._put(step)
        return claimed

    def settle(self, steps: Iterable[Step], /, *, lease: UUID) -> frozenset[UUID]:
        stored, recorded = self._all(), set()
        for outcome in steps:
            if not isinstance(outcome, Step) or outcome.status not in _OUTCOMES:
                raise ValidationError("steps", outcome, "expected a done, failed or dead Step")
            held = stored.get(outcome.id)
            if held is None or held.status is not StepStatus.RUNNING or held.lease != lease:
                continue  # the lease ran out and another claim took the step
            self._put(
                attrs.evolve(
                    held,
                    status=outcome.status,
                    due_at=outcome.due_at,
                    last_error=outcome.last_error,
                    finished_at=outcome.finished_at,
                    lease=None,
                    leased_until=None,
                )
            )
            recorded.add(outcome.id)
        return frozenset(recorded)

    def select(
        self,
        *,
        status: StepStatus | None = None,
        kind: str | None = None,
        subject_id: UUID | None = None,
        limit: int | None = None,
    ) -> list[Step]:
        found = sorted(
            (
                s
                for s in self._all().values()
                if (status is None or s.status is status)
                and (kind is None or s.kind == kind)
                and (subject_id is None or s.subject_id == subject_id)
            ),
            key=lambda s: (s.due_at, s.id),
        )
        return found if limit is None else found[:limit]


_OUTCOMES = (StepStatus.DONE, StepStatus.FAILED, StepStatus.DEAD)


def sort_key(value: Any, id: UUID) -> tuple[Any, ...]:
    """Ascending order: missing values after every value, ties by id."""
    return (True, 0, id) if value is None else (False, value, id)


def check_item(item: object, entity: type[E], field: str = "item") -> E:
    if not isinstance(item, entity):
        raise ValidationError(field, item, f"expected a {entity.__name__}")
    return item


def check_id(value: object, field: str = "id") -> UUID:
    if not isinstance(value, UUID):
        raise ValidationError(field, value, "expected a UUID")
    return value


def check_time(value: datetime, field: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValidationError(field, value, "expected a timezone-aware datetime")
    return value


if TYPE_CHECKING:  # mypy --strict proves that the adapter implements the port

    def _implements_the_port(store: JsonStore, unit: JsonUnitOfWork) -> tuple[Store, UnitOfWork]:
        return store, unit
