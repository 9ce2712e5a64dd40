"""The storage port: what crmkit needs of a store, as Protocols.

A :class:`Store` is opened for one tenant. Its :meth:`Store.unit_of_work` is a context
manager giving a :class:`UnitOfWork`: one transaction holding one repository per
entity. Nothing is written unless :meth:`UnitOfWork.commit` is called; leaving the
block rolls back whatever was not committed, and an exception always rolls back and
propagates unchanged. Once the block is left the unit has ended: every call on it or
its repositories (reads, writes, ``commit``) raises :class:`~crmkit.errors.StorageError`
and writes nothing.

:class:`UnitOfWork` says what isolation a unit gives, what concurrent and nested units
may do; :class:`Repository` which fields errors name.
:class:`crmkit.testing.storage.StoreContract` checks each of these promises.
"""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar
from uuid import UUID

from crmkit.analytics import (
    CUSTOMER_STAGES,
    CustomerSpan,
    Reach,
    Standing,
    StandingWindow,
    Transaction,
)
from crmkit.automation import (
    LANES,
    Delivery,
    DeliveryStatus,
    Event,
    Recorded,
    Step,
    StepStatus,
    Taken,
)
from crmkit.clock import Clock
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
from crmkit.quality import MergeRecord
from crmkit.storage._query import Cursor, Order, Page

__all__ = [
    "AccountRepository",
    "ActivityRepository",
    "AuditRepository",
    "ConsentRepository",
    "ContactRepository",
    "DoNotContactRepository",
    "MergeRepository",
    "OutboxRepository",
    "Repository",
    "StageHistoryRepository",
    "StepRepository",
    "Store",
    "TaskRepository",
    "UnitOfWork",
]

_E = TypeVar("_E", bound=Entity)


class Repository(Protocol[_E]):
    """The stored entities of one kind, in the store's tenant.

    A wrong argument raises :class:`~crmkit.errors.ValidationError` whose ``field`` is
    the parameter's name (``id``, ``item``, ``limit``, ``order``, ``after``, ``now``,
    ``batch_size``, ``contact_id``, ``kinds``, ``since``, ``until``, ``subject``,
    ``subject_id``, ``field``), or the position in a collection (``ids[3]`` for :meth:`get_many`,
    ``[3]`` for :meth:`add_many`), and changes nothing.
    """

    @property
    def entity(self) -> type[_E]:
        """The entity class this repository stores."""
        ...

    def get(self, id: UUID, /) -> _E:
        """The entity with this id; :class:`~crmkit.errors.NotFound` when there is none."""
        ...

    def get_many(self, ids: Iterable[UUID], /) -> Mapping[UUID, _E]:
        """The entities with these ids that exist, by id (missing ids are left out).

        An id that is not a UUID raises :class:`~crmkit.errors.ValidationError` naming
        its position (field ``ids[3]``).
        """
        ...

    def add(self, item: _E, /) -> _E:
        """Store a new entity; :class:`~crmkit.errors.Duplicate` when its id is taken.

        An item of another entity class raises :class:`~crmkit.errors.ValidationError`
        (field ``item``).
        """
        ...

    def add_many(self, items: Iterable[_E], /) -> int:
        """Store many new entities, all or none; returns how many.

        Reads ``items`` once, in bounded memory. A wrong item raises
        :class:`~crmkit.errors.ValidationError` naming its index (``[12]``, counted from
        0), a taken id, or an id given twice in the call, :class:`~crmkit.errors.Duplicate`
        with ``index`` set (the second occurrence's); either way nothing of this call is
        kept.
        """
        ...

    def update(self, item: _E, /) -> _E:
        """Replace the stored entity with ``item``, which must carry the stored version.

        Returns the stored entity, whose version is one higher (and :meth:`get` returns
        the same). Raises :class:`~crmkit.errors.ConcurrencyConflict` when the stored
        version differs (``expected_version`` the item's, ``actual_version`` the stored
        one), :class:`~crmkit.errors.NotFound` (naming the entity and id) when there is no
        such entity, and :class:`~crmkit.errors.ValidationError` (field ``item``) for an
        item of another entity class, even one with a stored id.
        """
        ...

    def restore(self, item: _E, /, *, version: int) -> _E:
        """Replace the stored entity with ``item`` exactly as it is, its version too,
        if the stored version is ``version``; returns ``item``.

        What an undo needs (see :meth:`crmkit.crm.CRM.unmerge`): the entity becomes what
        it was, version included, so that it equals its earlier self. Raises
        :class:`~crmkit.errors.ConcurrencyConflict` when the stored version is not
        ``version``, :class:`~crmkit.errors.NotFound` when there is no such entity,
        :class:`~crmkit.errors.ValidationError` (field ``item`` or ``version``) for an
        item of another class or a version that is not a positive int, and
        :class:`~crmkit.errors.Duplicate` for a unique key another entity holds.
        """
        ...

    def delete(self, id: UUID, /, *, version: int | None = None) -> None:
        """Delete the entity; with ``version``, only if that is the stored version.

        A missing id raises :class:`~crmkit.errors.NotFound`, with or without
        ``version``. Another stored version raises
        :class:`~crmkit.errors.ConcurrencyConflict` with ``expected_version`` the given
        ``version`` and ``actual_version`` the stored one. While other entities of the
        tenant refer to it (:data:`~crmkit.storage.REFERRERS` lists who refers to
        what), :class:`~crmkit.errors.StillReferenced` names a referrer of every kind
        that does, after those two checks; nothing is deleted then.
        """
        ...

    def referring(self, field: str, id: UUID, /) -> list[_E]:
        """The entities whose reference ``field`` holds ``id``, oldest first
        (``created_at``, then ``id``): a contact's leads are ``leads.referring("contact_id",
        contact.id)``.

        ``field`` is one of :func:`~crmkit.storage.references` of the entity (the fields
        :data:`~crmkit.storage.REFERRERS` lists); another raises
        :class:`~crmkit.errors.ValidationError` (field ``field``). The look-up is an
        index look-up: its cost follows the entities found, not the table.
        """
        ...

    def referring_documents(self, field: str, id: UUID, /) -> list[dict[str, Any]]:
        """What :meth:`referring` gives, as JSON documents: each equal to what
        :func:`crmkit.serialization.make_converter` unstructures the entity to, keys
        in the same order. What an export reads: an adapter may build them from its
        rows without building the entities (the SQL store does). Arguments and errors
        as in :meth:`referring`."""
        ...

    def erase_referring(
        self, field: str, id: UUID, values: Mapping[str, Any], /, *, at: datetime
    ) -> int:
        """Erasure's write: every entity whose reference ``field`` holds ``id`` and
        that differs from ``values`` (field name -> value) in one of them gets them,
        with its version one higher and ``updated_at`` the later of its own and ``at``
        (:func:`~crmkit.storage.erased`); returns how many changed. A database adapter
        does it in one statement, whatever the number of entities.

        ``values`` may set text, yes/no, tags and custom fields that are no reference
        (:func:`~crmkit.storage.check_erase_values`, else
        :class:`~crmkit.errors.ValidationError`, field ``values`` or
        ``values.<name>``); ``field`` and ``id`` as in :meth:`referring`, ``at`` must
        be aware (field ``at``). Nothing is changed on an error.
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

        ``order`` defaults to ``Order()`` (by ``created_at``), ties broken by id (see
        :class:`~crmkit.storage.Order`). ``limit`` (``None``: no limit) bounds the page; a
        page has a ``next`` cursor only when more items follow, and then holds exactly
        ``limit`` items, so the last page's ``next`` is ``None``. ``after`` continues from
        the ``next`` cursor of a previous page of the same query: every page applies the
        same ``rule``, and the pages together hold each selected entity once, also when
        entities are added between the calls (keyset paging). ``now`` (default: the
        store's clock) fixes relative dates and activity windows; a naive ``now`` is
        refused (field ``now``) with or without a rule. A rule sees the store's own tenant
        only: its activities and its segments.
        """
        ...

    def count(self, rule: Rule | None = None, /, *, now: datetime | None = None) -> int:
        """How many entities ``rule`` selects (all without a rule), at ``now`` as in
        :meth:`find`."""
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
        """The ids of the entities ``rule`` selects, in id order, without loading them;
        ``now`` as in :meth:`find`."""
        ...

    def iterate(
        self, rule: Rule | None = None, /, *, batch_size: int = 1000, now: datetime | None = None
    ) -> Iterator[_E]:
        """Every entity ``rule`` selects, in id order, fetched ``batch_size`` at a time.

        Every batch applies ``rule`` at the same ``now`` (the store's clock is read once).
        A ``batch_size`` that is not a positive int raises
        :class:`~crmkit.errors.ValidationError` (field ``batch_size``), at the latest when
        the first item is asked for.
        """
        ...


class ContactRepository(Repository[Contact], Protocol):
    """Contacts, with the look-ups that identify a person."""

    def with_match_keys(
        self, keys: Iterable[tuple[str, str]], /, *, limit: int | None = None
    ) -> list[Contact]:
        """The contacts that have at least one of ``keys``, oldest first (``created_at``,
        then ``id``): for each key at most ``limit`` of them (``None``: all), those with
        the smallest ids (UUID order), so that one common key cannot crowd out the rest.

        A contact's keys are :func:`crmkit.quality.match_keys` of the stored contact:
        ``(name, value)`` pairs of the blocking keys :data:`crmkit.quality.CONTACT_KEYS`
        (the e-mail key, the phone, name keys). The store keeps them current through
        every add, update and delete, and the look-up is an index look-up: its cost
        follows the contacts found, not the table, and a ``limit`` bounds it however
        many contacts share a key. ``keys`` must be a collection of
        ``(str, str)`` pairs (else :class:`~crmkit.errors.ValidationError`, field
        ``keys[3]``, or ``keys`` for the collection); a ``limit`` that is not a positive
        int is refused (field ``limit``).
        """
        ...

    def reach_counts(
        self, rule: Rule, reachable: Reachable, /, *, now: datetime | None = None
    ) -> dict[ReachCheck | None, int]:
        """How many contacts ``rule`` selects, by the first check of ``reachable`` they
        fail (in the order of :class:`~crmkit.models.rules.ReachCheck`; the frequency
        cap only when the node has one), ``None`` for those that pass every check;
        checks no contact failed are left out. What an audience reports, in one call
        an adapter may answer with one grouped query;
        :func:`~crmkit.storage.reach_counts_by_steps` counts them step by step through
        :meth:`count` (what crmkit's stores do). ``now`` as in :meth:`find`;
        a ``rule`` that is no contact rule raises
        :class:`~crmkit.errors.ValidationError` (field ``rule``), a ``reachable`` that
        is no :class:`~crmkit.models.rules.Reachable` too (field ``reachable``)."""
        ...

    def with_email(self, email: EmailAddress, /) -> list[Contact]:
        """The contacts whose e-mail address equals ``email`` compared without case
        (``str.casefold`` of the whole address), oldest first (``created_at``, then
        ``id``).

        A store that keeps one contact per address (the default identity policy) gives
        at most one. The look-up is an index look-up: its cost does not grow with the
        number of contacts.
        """
        ...


class AccountRepository(Repository[Account], Protocol):
    """Accounts, with the look-up of possible duplicates."""

    def with_match_keys(
        self, keys: Iterable[tuple[str, str]], /, *, limit: int | None = None
    ) -> list[Account]:
        """The accounts that have at least one of ``keys``, as
        :meth:`ContactRepository.with_match_keys` (the keys of
        :data:`crmkit.quality.ACCOUNT_KEYS`: domain, company name without legal form)."""
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
        deal_id: UUID | None = None,
        ticket_id: UUID | None = None,
        due_until: datetime | None = None,
    ) -> list[Task]:
        """The tasks that match every filter given (``None`` leaves one out), by
        ``due_at`` then ``id``; ``due_until`` keeps tasks due at or before it. Each
        filter is served by an index: the cost follows the tasks found, not the table."""
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
        of ``kinds`` (all when ``None``, none when empty), oldest first, ties by id.

        ``since`` and ``until`` must be aware datetimes; wrong arguments raise
        :class:`~crmkit.errors.ValidationError` naming ``contact_id``, ``kinds``,
        ``since`` or ``until``.
        """
        ...

    def for_contacts(
        self,
        contact_ids: Iterable[UUID],
        /,
        *,
        kinds: Iterable[ActivityKind] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Activity]:
        """The activities of many contacts in one query (a batch of ids at a time), as
        :meth:`for_contact` lists each contact's: from ``since`` (inclusive) to ``until``
        (exclusive), of ``kinds`` (all when ``None``, none when empty); oldest first,
        ties by id, whatever the order of ``contact_ids`` (an id given twice counts once).

        Wrong arguments raise :class:`~crmkit.errors.ValidationError` naming
        ``contact_ids[n]`` (or ``contact_ids``), ``kinds``, ``since`` or ``until``.
        """
        ...

    def of_kinds(
        self,
        kinds: Iterable[ActivityKind],
        /,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Activity]:
        """The activities of ``kinds`` (none when empty) of every contact of the tenant,
        from ``since`` (inclusive) to ``until`` (exclusive), oldest first, ties by id.

        The store filters them (the purchases behind revenue and lifetime value are read
        without the other activities). Wrong arguments raise
        :class:`~crmkit.errors.ValidationError` naming ``kinds``, ``since`` or ``until``.
        """
        ...

    def purchases(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[Transaction]:
        """The purchase activities of every contact of the tenant from ``since``
        (inclusive) to ``until`` (exclusive) as revenue and CLV transactions: what
        :func:`crmkit.analytics.transactions_from_activities` makes of
        ``of_kinds([ActivityKind.PURCHASE], since=since, until=until)``, in that order,
        read without the rest of each activity. A purchase without an amount raises its
        :class:`~crmkit.errors.ValidationError` (field ``activities[i].amount``); wrong
        arguments raise one naming ``since`` or ``until``.
        """
        ...


class ConsentRepository(Repository[Consent], Protocol):
    """The consent ledger: entries are added, never changed (crmkit's use cases only
    add; :func:`crmkit.models.current_consent` derives the state in force)."""

    def for_contact(self, contact_id: UUID, /) -> list[Consent]:
        """A contact's consent entries, oldest decision first (``decided_at``, then
        ``id``); an index look-up. A ``contact_id`` that is not a UUID raises
        :class:`~crmkit.errors.ValidationError` (field ``contact_id``)."""
        ...


class DoNotContactRepository(Repository[DoNotContact], Protocol):
    """The do-not-contact ledger: blocks per channel and their lifts, added, never
    changed (:func:`crmkit.models.current_block` derives the block in force)."""

    def for_contact(self, contact_id: UUID, /) -> list[DoNotContact]:
        """A contact's do-not-contact entries, oldest first (``decided_at``, then
        ``id``); an index look-up. A ``contact_id`` that is not a UUID raises
        :class:`~crmkit.errors.ValidationError` (field ``contact_id``)."""
        ...


class StageHistoryRepository(Repository[StageChange], Protocol):
    """Stage changes of contacts, leads, deals and tickets."""

    def for_subject(self, subject: SubjectKind, subject_id: UUID, /) -> list[StageChange]:
        """The stage changes of one entity (this kind of subject and this id), oldest
        first, ties by id."""
        ...

    def for_subjects(
        self, subject: SubjectKind, subject_ids: Iterable[UUID], /
    ) -> list[StageChange]:
        """The stage changes of many entities of one kind, in one query: oldest first
        (``at``, then ``id``), whatever the order of ``subject_ids``."""
        ...

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
        """How far the subjects of kind ``subject`` (contact, lead or deal) that ``rule``
        selects (a rule over that entity, read at ``until``) and that were created before
        ``until`` got in the stages of ``ranks`` before ``until``, grouped by the store.

        With ``pipeline``, only subjects now in that pipeline and their moves in it count.
        ``group`` is one of :func:`~crmkit.storage.groupable_fields` of the subject
        entity (``None``: one group, key ``None``). The rows hold each (group, reached,
        entered) once, in no order, as :func:`crmkit.analytics.replay_reach` defines
        them; subjects that reached no ranked stage are left out. Wrong arguments raise
        :class:`~crmkit.errors.ValidationError` naming ``subject``, ``ranks``,
        ``until``, ``pipeline``, ``rule`` or ``field`` (the group).
        """
        ...

    def customer_spans(
        self, stages: Iterable[LifecycleStage] = CUSTOMER_STAGES, /
    ) -> list[CustomerSpan]:
        """Each contact's time as a customer by lifecycle, computed by the store from
        the contact stage history (one row per customer, never one per change): from the
        first change into ``stages`` (default customer and evangelist) to the last
        change if that left them (``end`` ``None``: still inside); a contact now in
        ``stages`` that no change moved there (imported) from its creation. Rows in no
        order, as :func:`crmkit.analytics.replay_customer_spans` defines them; bad
        ``stages`` raise :class:`~crmkit.errors.ValidationError` naming ``stages``."""
        ...

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
        """Where the subjects that ``rule`` selects and that were created before
        ``until`` stood by their last move before ``until`` (ties by id), with the
        values it snapshotted, grouped by the store.

        ``since`` keeps subjects whose last move is at or after it (what closed in a
        period); ``stages`` keeps subjects whose last move went to one of them (what is
        won or lost, what is open); ``then`` (at or after ``until``) adds the stage each
        stood in by its last move before ``then`` (a backtest's outcome). Arguments and rows as in
        :meth:`reach` and :func:`crmkit.analytics.replay_standing`.
        """
        ...

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
        """Many :meth:`standing` questions of one kind of subject at once: for each of
        ``windows`` (in their order) the rows ``standing(subject, until=w.until,
        since=w.since, then=w.then, stages=w.stages, pipeline=pipeline, rule=rule,
        group=group)`` gives, so that a store reads and orders the history once for a
        whole series of periods instead of once per period. Wrong arguments raise
        :class:`~crmkit.errors.ValidationError` naming ``windows`` (or ``windows[n]``)
        or as :meth:`standing` does."""
        ...


class MergeRepository(Protocol):
    """The stored merges of contacts and accounts (see :class:`crmkit.quality.MergeRecord`).

    A merge record is written once and deleted when the merge is undone; it is never
    updated, except by erasure (:meth:`anonymise`). Wrong arguments raise
    :class:`~crmkit.errors.ValidationError` naming ``id``, ``record``, ``merged_id``,
    ``contact_id`` or ``email``.
    """

    def get(self, id: UUID, /) -> MergeRecord:
        """The merge with this id; :class:`~crmkit.errors.NotFound` (``merge``) when
        there is none."""
        ...

    def add(self, record: MergeRecord, /) -> MergeRecord:
        """Store a merge record, exactly (every before- and after-image comes back
        equal); :class:`~crmkit.errors.Duplicate` when its id is taken."""
        ...

    def delete(self, id: UUID, /) -> None:
        """Delete the merge record; :class:`~crmkit.errors.NotFound` when there is none."""
        ...

    def merging(self, merged_id: UUID, /) -> list[MergeRecord]:
        """The merges that removed the record ``merged_id`` (a contact or account),
        oldest first (``at``, then ``id``): an index look-up."""
        ...

    def with_email(self, email: EmailAddress, /) -> list[MergeRecord]:
        """The merges that removed a contact whose e-mail address equals ``email``
        compared without case (``str.casefold``), oldest first: an index look-up."""
        ...

    def involving(self, contact_id: UUID, /) -> list[MergeRecord]:
        """The merges that hold data of the contact ``contact_id``, oldest first (``at``,
        then ``id``): those :func:`~crmkit.storage.merge_involves` accepts (a contact
        merge that kept or removed it, an image of it or of a row that refers to it).
        What export and erasure read; its cost follows the tenant's merges."""
        ...

    def anonymise(self, record: MergeRecord, /) -> MergeRecord:
        """Replace the stored merge record ``record.id`` by ``record``, its form after
        an erasure: only values inside its images may differ, and taken addresses may
        go (:func:`~crmkit.storage.check_merge_anonymised`, else
        :class:`~crmkit.errors.ValidationError`, field ``record``); a taken address that
        goes no longer finds the merge in :meth:`with_email`, and no copy of it is
        kept. :class:`~crmkit.errors.NotFound` when there is no such record."""
        ...


class StepRepository(Protocol):
    """The durable timers (:class:`~crmkit.automation.Step`) of the tenant: scheduled
    once, claimed by workers under a lease, settled once run.

    Wrong arguments raise :class:`~crmkit.errors.ValidationError` naming ``id``,
    ``step``, ``now``, ``until``, ``lease``, ``limit``, ``status``, ``kind`` or
    ``subject_id``, and change nothing. A step's own fields are stored exactly: what
    :meth:`get` returns equals what was written.
    """

    def get(self, id: UUID, /) -> Step:
        """The step with this id; :class:`~crmkit.errors.NotFound` (``step``) when there
        is none."""
        ...

    def schedule(self, step: Step, /) -> Step:
        """Store a new pending step and return it; when a step with its id is stored
        already, store nothing and return the stored one (scheduling is idempotent by
        id: the same event handled twice schedules its step once). ``step`` must be
        pending with no attempts."""
        ...

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
        """Claim up to ``limit`` steps (of ``kinds``; ``None``: of every kind) claimable
        at ``now`` (see
        :func:`~crmkit.automation.is_claimable`), earliest ``due_at`` first (then
        ``id``), and return them claimed (:func:`~crmkit.automation.claim_step` under
        ``lease`` until ``until``, which lies after ``now``).

        Once the unit commits, no other claim gets these steps before ``until``, also
        from other units running at the same time in other threads or processes: the
        claim locks what it takes (PostgreSQL ``FOR UPDATE SKIP LOCKED``, so concurrent
        claims take different steps without waiting; SQLite and the memory store run one
        writer at a time). Done and dead steps are never claimed.
        """
        ...

    def settle(self, steps: Iterable[Step], /, *, lease: UUID) -> frozenset[UUID]:
        """Record the outcomes of runs (``steps``: done, failed or dead, as
        :func:`~crmkit.automation.step_done` and :func:`~crmkit.automation.step_failed`
        made them) of the steps claimed under ``lease``; return the ids recorded.

        A step is recorded only while the stored one is still running under ``lease``:
        its ``status``, ``due_at``, ``last_error`` and ``finished_at`` are written and
        its lease released; its other fields stay those of its claim. A missing id is
        one whose lease ran out and which another claim took (that claim's outcome
        counts); nothing of it is written.
        """
        ...

    def select(
        self,
        *,
        status: StepStatus | None = None,
        kind: str | None = None,
        subject_id: UUID | None = None,
        limit: int | None = None,
    ) -> list[Step]:
        """The steps that match every filter given (``None`` leaves one out), earliest
        ``due_at`` first, then ``id``; at most ``limit`` (``None``: all)."""
        ...


class AuditRepository(Repository[AuditEntry], Protocol):
    """The audit trail: field-level changes of contacts and deals, exports, erasures."""

    def for_subject(self, subject: SubjectKind, subject_id: UUID, /) -> list[AuditEntry]:
        """The audit entries of one entity, oldest first (``at``, then ``id``)."""
        ...

    def for_subjects(
        self, subject: SubjectKind, subject_ids: Iterable[UUID], /
    ) -> list[AuditEntry]:
        """The audit entries of many entities of one kind, in one query: oldest first
        (``at``, then ``id``), whatever the order of ``subject_ids``."""
        ...


class OutboxRepository(Protocol):
    """The outbox: the domain events of committed units of work, and their deliveries.

    Every event gets a *position*: 1, 2, 3 ... per tenant, without gaps, in the order
    the units that appended them committed (and in the order of :meth:`append` calls
    and items within a unit). A unit that has appended holds the outbox of its tenant
    until it ends, so that a later position is never committed before an earlier one:
    a reader that has seen position ``p`` will never see a new event at or below
    ``p``. Events of a unit that rolls back are gone with it, positions included.

    Handlers are named (``handler``). Fresh events reach a handler through its lanes
    (:func:`~crmkit.automation.lane_of`: all events of one subject id share a lane):
    :meth:`take` leases some lanes to one dispatcher with their events after the lanes'
    cursors, and :meth:`finish` records one :class:`~crmkit.automation.Delivery` per
    event (done, or how it failed) and moves the cursors on. A failed delivery, and the
    later events of its subject, stay pending: :meth:`claim` leases due pending
    deliveries, from the first pending one of each (handler, subject) on, and
    :meth:`settle` records how the call ended. So a handler gets the events of one
    subject in commit order, and two dispatchers never hold the same delivery at once.
    Wrong arguments raise :class:`~crmkit.errors.ValidationError` naming the parameter.
    """

    def append(self, events: Iterable[Event], /) -> int:
        """Append ``events`` after every event stored; returns how many were new.

        An event whose id the outbox holds already is skipped (so a sweep that records
        events with deterministic ids records each once). An item that is not an
        :class:`~crmkit.automation.Event` raises :class:`~crmkit.errors.ValidationError`
        (field ``events[3]``) and appends nothing.
        """
        ...

    def read(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        types: Iterable[str] | None = None,
        subject_id: UUID | None = None,
    ) -> list[Recorded]:
        """The events after position ``after``, by position, at most ``limit`` (a
        positive int), of ``types`` only (all when ``None``) and of one subject id when
        given."""
        ...

    def known(self, ids: Iterable[UUID], /) -> set[UUID]:
        """Which of these event ids the outbox holds."""
        ...

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
        """Lease fresh events of ``handler`` to the claim ``claim``: its lanes' events
        after their cursors, of ``types`` (all when ``None``).

        A handler not seen before gets its :data:`~crmkit.automation.LANES` cursors at 0
        (every stored event is fresh to it). Up to ``lanes`` (1 to 16) of its lanes that
        hold an event after their cursor and are not leased past ``now`` are leased until
        ``now + lease`` (the lanes furthest behind first; another claim skips a leased
        lane, and one that a unit taking at the same time holds). The take holds
        their events of ``types`` after their cursors, by position, the first ``limit``
        (a positive int) of them; each lane's ``end`` is the position of the last event
        given when there were more, else the last position stored (so every event of
        the lane up to ``end`` is in the take or not of ``types``). With every lane, one
        dispatcher gets a handler's events in commit order. ``waiting`` names the
        subject ids of the events given that have a pending delivery to ``handler``.
        """
        ...

    def finish(
        self, taken: Taken, /, *, at: datetime, failures: Iterable[Delivery] = ()
    ) -> frozenset[int]:
        """Record how the handler's calls for the events of ``taken`` ended, for the
        lanes the claim still holds, and return those lanes.

        For each such lane: each event of ``taken`` in it becomes a delivery to the
        handler, ``done`` at ``at``; except a delivery given in ``failures`` (as
        :meth:`take`'s claim made it: pending with ``attempts`` and ``next_at``, or dead
        with ``finished_at``), recorded as given; and except an event whose subject is in
        ``taken.waiting`` or has an earlier event in ``failures``, recorded pending, due
        at ``at``, with no attempt counted (it waits in its subject's order). Then the
        lane's cursor moves to its ``end`` and its lease ends. A lane whose lease ran out
        and was taken by another claim records nothing. A failure that names no event
        of ``taken`` raises :class:`~crmkit.errors.ValidationError` (``failures[i]``)
        and records nothing.
        """
        ...

    def start_at_end(self, handler: str, /) -> int:
        """Give ``handler``, if it has no cursors yet, its lanes' cursors at the last
        position stored, so that :meth:`take` gives it the events appended from now on
        (not the ones stored); a handler that has cursors keeps them, moved neither back
        nor forward. Returns the lowest of the handler's cursors."""
        ...

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
        """Lease up to ``limit`` due deliveries of ``handlers`` to the claim ``claim``,
        by position, with their events.

        The pending deliveries of one handler and one subject id form a lane, by
        position. A delivery is claimed when it and every pending delivery before it in
        its lane are due: their ``next_at`` has come and no lease on them runs past
        ``now``. So a lane is claimed from its head, and a run of it at once; a delivery
        waits while an earlier one of its lane is leased or waits for a retry. The
        returned deliveries carry ``claim`` and ``leased_until = now + lease``; the store
        keeps them leased (another claim skips them, without waiting on a unit that
        claims at the same time) until :meth:`settle` or the lease ends. A dispatcher
        that fails on a delivery settles the rest of its run unchanged (releasing them),
        so the lane keeps its order.
        """
        ...

    def settle(self, delivery: Delivery, /) -> bool:
        """Record the outcome ``delivery`` (as :meth:`claim` returned it, with a new
        status, attempts, ``next_at``, error, ``finished_at``) and end its lease, if its
        claim still holds it; returns whether it did (``False``: the lease ran out and
        another claim took the delivery, nothing is written)."""
        ...

    def settle_many(self, deliveries: Iterable[Delivery], /) -> list[bool]:
        """:meth:`settle` of each delivery, in one go: whether each was recorded."""
        ...

    def deliveries(
        self,
        *,
        handler: str | None = None,
        status: DeliveryStatus | None = None,
        event_id: UUID | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        """The deliveries that match every filter given, by position then handler."""
        ...

    def retry(self, event_id: UUID, handler: str, /, *, at: datetime) -> Delivery:
        """Make the dead delivery of ``event_id`` to ``handler`` pending again, due at
        ``at``, with no attempts counted; :class:`~crmkit.errors.NotFound` when there is
        no such delivery, :class:`~crmkit.errors.ValidationError` (field ``status``)
        when it is not dead."""
        ...


class UnitOfWork(Protocol):
    """One transaction over every repository of a store, one repository per entity.

    Once the ``with`` block of :meth:`Store.unit_of_work` is left, the unit has ended:
    every call on it or its repositories (reads, writes, :meth:`commit`) raises
    :class:`~crmkit.errors.StorageError` and writes nothing. What every adapter must
    give, and what it may choose:

    * **Isolation.** At least *read committed*: a unit of work never sees another
      unit's uncommitted writes, and sees what other units committed before it began.
      Whether a unit sees commits made while it runs is the adapter's choice (the memory
      store and SQLite run writers one at a time; PostgreSQL reads at read committed).
      Lost updates are prevented by versions, not by isolation: see
      :meth:`Repository.update`.
    * **Concurrent units** (several threads or processes): a store may make a unit wait
      for another (a lock, a busy timeout), but within its timeout the waiting unit
      succeeds; an optimistic race is lost with
      :class:`~crmkit.errors.ConcurrencyConflict`, never with
      :class:`~crmkit.errors.StorageError`, which means that the database failed (a
      timeout ran out, the connection broke).
    * **Nested units** of one store in one thread are not portable: a store may refuse a
      nested unit of work with :class:`~crmkit.errors.StorageError` (SQLite), or give one
      that is not isolated from the outer unit (memory). Use one unit for one piece of
      work.
    """

    @property
    def contacts(self) -> ContactRepository: ...
    @property
    def accounts(self) -> AccountRepository: ...
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
    def consents(self) -> ConsentRepository: ...
    @property
    def do_not_contact(self) -> DoNotContactRepository: ...
    @property
    def stage_history(self) -> StageHistoryRepository: ...
    @property
    def merges(self) -> MergeRepository: ...
    @property
    def suppressions(self) -> Repository[Suppression]:
        """The keyed hashes of erased people's identifiers (see
        :class:`~crmkit.models.Suppression`)."""
        ...

    @property
    def erasures(self) -> Repository[Erasure]:
        """The erasure records, by the erased contact's id."""
        ...

    @property
    def audit(self) -> AuditRepository:
        """The audit trail."""
        ...

    @property
    def outbox(self) -> OutboxRepository:
        """The domain events of committed units and their deliveries to handlers."""
        ...

    @property
    def steps(self) -> StepRepository:
        """The durable timers (scheduled steps)."""
        ...

    def commit(self) -> None:
        """Make everything done so far permanent; the unit stays open for more work.

        Raises :class:`~crmkit.errors.StorageError` once the unit has ended.
        """
        ...

    def rollback(self) -> None:
        """Discard everything done since the last commit."""
        ...


class Store(Protocol):
    """A place where one tenant's CRM data lives."""

    @property
    def tenant(self) -> str:
        """The tenant whose rows this store reads and writes, and no other.

        Two tenants may hold entities with the same id; each store sees its own.
        """
        ...

    @property
    def clock(self) -> Clock:
        """The clock that gives ``now`` to queries that do not pass one."""
        ...

    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]:
        """A new unit of work (see the module documentation for isolation, concurrent
        and nested units). A closed store raises :class:`~crmkit.errors.StorageError`."""
        ...

    def for_tenant(self, tenant: str, /) -> "Store":
        """A store on the same data for another tenant.

        The key must pass :func:`crmkit.storage.validate_tenant` (1 to 64 ASCII letters,
        digits, ``_ . : -``, starting with a letter or digit); any other raises
        :class:`~crmkit.errors.ValidationError` (field ``tenant``), as the adapter's own
        constructor does.
        """
        ...

    def close(self) -> None:
        """Release what the store holds (connections); it cannot be used afterwards.

        Afterwards :meth:`unit_of_work` raises :class:`~crmkit.errors.StorageError`;
        closing again does nothing. It closes this store alone: the stores made from it
        with :meth:`for_tenant`, or that it was made from, stay open, and the data stays.
        Resources the stores share (an engine the first store opened) are released when
        the store that opened them is closed, so close that one last.
        """
        ...
