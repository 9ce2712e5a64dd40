"""The tables: SQLAlchemy Core, one per entity, on a :class:`~sqlalchemy.MetaData`.

Every table starts with ``tenant`` and its primary key is ``(tenant, id)``. Fields map
to columns by their storage kind (:mod:`crmkit.storage._columns`), with extra columns
that let SQL answer rules exactly as Python does:

* ``<field>_fold``: the ``str.casefold()`` of a text field (of tags, of the string
  values of custom fields), stored only when it differs from the value, because SQL's
  ``lower()`` folds ASCII alone in SQLite and differs from ``casefold`` everywhere;
* money and decimals as exact text plus ``<field>_units`` (the floor) and
  ``<field>_nanos`` (the fraction in 10^-12), integers that compare and add exactly in
  every database; money also has ``<field>_currency``.
"""

import hashlib
import re
from collections.abc import Mapping
from functools import cache
from types import MappingProxyType
from typing import Any, Final

import attrs
import sqlalchemy as sa

from crmkit.errors import ValidationError
from crmkit.models import Activity, Contact, Entity, Segment
from crmkit.models.rules import ACTIVITY_FIELDS, FIELDS, FieldType, RuleEntity
from crmkit.storage._columns import ENTITIES, REFERENCES, REFERRERS, Kind, columns, memo
from crmkit.storage.sql.types import JSONText, TagList, Timestamp, UUIDType

__all__ = [
    "DEFAULT_PREFIX",
    "HISTORY_SNAPSHOT",
    "SCHEMA_VERSION",
    "Schema",
    "consent_states_v13",
    "email_key",
    "fold_fields",
    "index_name",
    "match_key_table",
    "metadata",
    "outbox_tables_v8",
    "outbox_tables_v14",
    "schema",
    "step_table",
]

SCHEMA_VERSION: Final = 16
"""The version of the tables this crmkit writes (recorded in ``<prefix>meta``).

1. crmkit 0.1: the first schema, without a version record.
2. Indexes that find and order in one (flat look-ups without statistics), the unique
   folded e-mail per tenant, partial indexes of references (for refused deletes), the
   ``<prefix>meta`` table, ``Activity.body`` and
   ``StageChange.expected_close``.
3. Foreign keys: every reference (:data:`~crmkit.storage.REFERENCES`) is declared as
   ``(tenant, <field>) -> (tenant, id)``.
4. The merge records of :meth:`~crmkit.crm.CRM.merge_contacts` and
   :meth:`~crmkit.crm.CRM.merge_accounts`: ``<prefix>merges`` and ``<prefix>merge_keys``.
5. The ``<prefix>match_keys`` table: the blocking keys of contacts and accounts
   (:func:`crmkit.quality.match_keys`), one row per key, so that duplicates of a new
   contact are found by index look-ups; the upgrade computes them for stored rows.
6. The consent ledger: ``Consent`` gains ``legal_basis``, ``contact_point`` and the
   evidence (``evidence_form``, ``evidence_text``, ``evidence_ip``); its index covers
   the decision in force (``contact_id, channel, purpose, decided_at, id, status,
   expires_at``); the ``<prefix>do_not_contact`` table (the do-not-contact ledger).
7. Privacy records: the tables ``<prefix>suppressions`` (keyed hashes of erased people's
   e-mail and phone), ``<prefix>erasures`` (who erased whom, when and why) and
   ``<prefix>audit_entries`` (field-level change history of contacts and deals, and
   the log of exports and erasures).
8. The outbox of domain events: ``<prefix>outbox`` (the events, by position per tenant,
   in commit order), ``<prefix>outbox_deliveries`` (one row per event and handler) and
   ``<prefix>outbox_cursors`` (how far each handler's deliveries were made).
9. Durable timers: the ``<prefix>steps`` table (:class:`~crmkit.automation.Step`), indexed
   by ``(tenant, status, due_at, id)`` for the claims of :meth:`~crmkit.crm.CRM.run_due`.
10. The per-deal forecast category: ``Deal.forecast_category`` (a nullable column of
    ``<prefix>deals``), and the index ``(tenant, kind, occurred_at)`` of
    ``<prefix>activities`` that finds the activities of some kinds in time order
    (``ActivityRepository.of_kinds``) without reading the others.
11. The consent index covers the contact point too (``..., status, expires_at,
    contact_point``): reachability reads whether the grant in force names the
    contact's current address without reading a row.
12. The stage-history index covers the KPI replays (``tenant, subject, subject_id, at,
    id, pipeline, from_stage, to_stage``): the funnel's grouping over every move, the
    standings and the customer spans read the index alone.
13. The decision in force per ``(contact, channel, purpose)``: ``<prefix>consent_states``
    (``consent_states_v13``), derived from the consent ledger and written in the same
    transaction as every change of it, so that reachability reads one slim row per
    contact instead of finding "the entry with no later one" in the ledger; the
    upgrade fills it from the stored ledgers.
14. Lanes of the outbox (``outbox_tables_v14``): each event stores its ``lane``
    (:func:`~crmkit.automation.lane_of` of its subject id), indexed ``(tenant, lane,
    position)``, and ``<prefix>outbox_lanes`` replaces ``<prefix>outbox_cursors``: per
    handler and lane a cursor and a lease, so that dispatchers take fresh events lane by
    lane and write one delivery row per event; the upgrade numbers the stored events'
    lanes and gives each handler's lanes its cursor.
15. On PostgreSQL the stage-history index also carries the snapshot of each move that
    the standings read (``INCLUDE (reason, amount_currency, amount_units,
    amount_nanos, expected_close)``, :data:`HISTORY_SNAPSHOT`): the ranking of the
    last moves reads the index alone, where it looked up each last move's row by id.
    SQLite's index is unchanged (it reads those rows by rowid, in table order).
16. A contact's merges are found by key: ``<prefix>merge_keys`` holds a row
    ``contact:<id>`` per contact a merge record involves, which ``merges.involving``
    (deleting or exporting a contact) reads instead of searching every record's text;
    the upgrade adds them for the stored records.
"""

DEFAULT_PREFIX: Final = "crm_"
"""The table name prefix of :func:`schema` and :func:`~crmkit.storage.sql.open_store`."""

_TABLE_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "contact": "contacts",
        "account": "accounts",
        "lead": "leads",
        "deal": "deals",
        "ticket": "tickets",
        "activity": "activities",
        "task": "tasks",
        "segment": "segments",
        "consent": "consents",
        "do_not_contact": "do_not_contact",
        "stage_change": "stage_changes",
        "suppression": "suppressions",
        "erasure": "erasures",
        "audit_entry": "audit_entries",
    }
)

# Indexes that serve the common queries and segment shapes; the tenant always leads.
# An index that serves an equality look-up (a contact's leads, a subject's history) ends
# with the order its query asks for (created_at or the event time, then id), so that it
# both finds and orders the rows: SQLite's planner then prefers it with or without
# statistics, instead of walking a time index of the whole tenant to avoid a sort.
_INDEXES: Final[Mapping[str, tuple[tuple[str, ...], ...]]] = MappingProxyType(
    {
        "contact": (
            ("lifecycle_stage",),
            ("country",),
            ("created_at",),
            ("email", "created_at", "id"),
            ("phone", "created_at", "id"),
            ("account_id", "created_at", "id"),
        ),
        "account": (("domain",), ("created_at",)),
        "lead": (
            ("status", "score"),
            ("score",),
            ("contact_id", "created_at", "id"),
            ("created_at",),
        ),
        "deal": (
            ("pipeline", "stage"),
            ("status",),
            ("contact_id", "created_at", "id"),
            ("account_id", "created_at", "id"),
            ("created_at",),
        ),
        "ticket": (
            ("status", "priority"),
            ("contact_id", "created_at", "id"),
            ("created_at",),
        ),
        "activity": (
            ("contact_id", "occurred_at", "id"),
            ("contact_id", "kind", "occurred_at"),
            ("kind", "occurred_at"),
            ("occurred_at",),
        ),
        "task": (
            ("status", "due_at", "id"),
            ("assignee", "status", "due_at", "id"),
            ("contact_id", "due_at", "id"),
        ),
        "segment": (("name",),),
        # The ledgers: covering indexes, so that "the entry in force" reads no table row.
        "consent": (
            (
                *("contact_id", "channel", "purpose", "decided_at", "id", "status"),
                *("expires_at", "contact_point"),
            ),
        ),
        "do_not_contact": (("contact_id", "channel", "decided_at", "id", "lifted"),),
        # Covers the KPI replays (reach, standing, customer spans): a funnel over millions
        # of moves reads the index alone.
        "stage_change": (
            ("subject", "subject_id", "at", "id", "pipeline", "from_stage", "to_stage"),
        ),
        "audit_entry": (("subject", "subject_id", "at", "id"),),
    }
)

HISTORY_SNAPSHOT: Final = (
    "reason",
    "amount_currency",
    "amount_units",
    "amount_nanos",
    "expected_close",
)
"""The values a move snapshotted that the standings read of each subject's last move:
on PostgreSQL the stage-history index carries them (``INCLUDE``, schema 15), so that
the ranking of the moves reads no table row."""

_INCLUDED: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {"stage_change": HISTORY_SNAPSHOT}
)
"""Columns an entity's (only) index carries besides its keys, on PostgreSQL alone."""

_TEXTUAL: Final = frozenset({FieldType.TEXT, FieldType.EMAIL})


@memo
def fold_fields(entity: type[Entity]) -> tuple[str, ...]:
    """The text fields of ``entity`` that rules can match, which get a casefold shadow."""
    if entity is Activity:
        specs = ACTIVITY_FIELDS
    else:
        rule_entity = {e.value: e for e in RuleEntity}.get(entity.entity_name)
        if rule_entity is None:
            return ()
        specs = FIELDS[rule_entity]
    return tuple(name for name, spec in specs.items() if spec.kind in _TEXTUAL)


@attrs.frozen
class Schema:
    """crmkit's tables on one :class:`~sqlalchemy.MetaData`, by entity class."""

    metadata: sa.MetaData
    tables: Mapping[type[Entity], sa.Table]
    members: sa.Table
    """The table of static segments' members, keyed ``(tenant, segment_id, member_id)``."""
    meta: sa.Table
    """Facts about the database as a whole (``key``, ``value``): the schema version and
    the identity policy. It has no tenant: every tenant shares one schema."""
    match_keys: sa.Table
    """The match keys of contacts and accounts: ``(tenant, entity, key, value,
    subject_id)``, all of it the primary key, with an index by subject for updates."""
    email_indexes: tuple[sa.Index, sa.Index]
    """The index of contacts' folded e-mail per tenant: unique (one contact per
    address, the default identity policy) or not (shared addresses allowed). Neither is
    part of ``metadata``: :func:`~crmkit.storage.sql.create_schema` makes the one the
    database's policy asks for."""
    merges: sa.Table
    """The merge records (:class:`~crmkit.quality.MergeRecord`): the survivor, the time
    and the before- and after-images as JSON text (``body``)."""
    merge_keys: sa.Table
    """What finds a merge record: ``id:<hex>`` of each merged record and
    ``email:<folded address>`` of each address it took, keyed ``(tenant, key,
    merge_id)``."""
    outbox: sa.Table
    """The domain events, keyed ``(tenant, position)``: the event as JSON (``body``)
    and the columns that find it (``id``, ``type``, ``subject_id``)."""
    deliveries: sa.Table
    """The deliveries of events to handlers, keyed ``(tenant, handler, position)``."""
    outbox_lanes: sa.Table
    """Per handler and lane, the cursor (the last position delivered or recorded) and
    the lease of the dispatcher that holds the lane."""
    steps: sa.Table
    """The durable timers (:class:`~crmkit.automation.Step`), keyed ``(tenant, id)``,
    the payload as JSON text, indexed by ``(tenant, status, due_at, id)`` for claims."""
    consent_states: sa.Table
    """The consent decision in force per ``(tenant, contact_id, channel, purpose)``
    (``consent_states_v13``): derived from the consent ledger, never authoritative."""

    def table(self, entity: type[Entity]) -> sa.Table:
        """The table of ``entity``."""
        return self.tables[entity]


def _text(length: int | None = None) -> sa.types.TypeEngine[str]:
    """Text compared by code point everywhere, as Python compares ``str``: SQLite's
    default; on PostgreSQL the ``C`` collation."""
    plain = sa.String(length) if length else sa.Text()
    exact = sa.String(length, collation="C") if length else sa.Text(collation="C")
    return plain.with_variant(exact, "postgresql")


def _columns_of(entity: type[Entity]) -> list[sa.Column[object]]:  # noqa: PLR0912
    made: list[sa.Column[object]] = [sa.Column("tenant", _text(64), primary_key=True)]
    folded = fold_fields(entity)
    for column in columns(entity).values():
        name, nullable = column.name, column.optional
        match column.kind:
            case Kind.UUID:
                made.append(
                    sa.Column(name, UUIDType(), primary_key=name == "id", nullable=nullable)
                )
            case Kind.INT:
                kind = sa.Integer() if name == "version" else sa.BigInteger()
                made.append(sa.Column(name, kind, nullable=nullable))
            case Kind.FLOAT:
                made.append(sa.Column(name, sa.Double(), nullable=nullable))
            case Kind.BOOL:
                made.append(sa.Column(name, sa.Boolean(create_constraint=False), nullable=nullable))
            case Kind.TEXT:
                made.append(sa.Column(name, _text(), nullable=nullable))
                if name in folded:
                    made.append(sa.Column(f"{name}_fold", _text(), nullable=True))
            case Kind.ENUM:
                made.append(sa.Column(name, _text(32), nullable=nullable))
            case Kind.DATETIME:
                made.append(sa.Column(name, Timestamp(), nullable=nullable))
            case Kind.DATE:
                made.append(sa.Column(name, sa.Date(), nullable=nullable))
            case Kind.DECIMAL | Kind.MONEY:
                made.append(sa.Column(name, sa.String(40), nullable=nullable))
                if column.kind is Kind.MONEY:
                    made.append(sa.Column(f"{name}_currency", sa.CHAR(3), nullable=nullable))
                made.append(sa.Column(f"{name}_units", sa.BigInteger(), nullable=nullable))
                made.append(sa.Column(f"{name}_nanos", sa.BigInteger(), nullable=nullable))
            case Kind.TAGS:
                made.append(sa.Column(name, TagList(), nullable=False))
                made.append(sa.Column(f"{name}_fold", TagList(), nullable=True))
            case Kind.JSON:
                made.append(sa.Column(name, JSONText(), nullable=False))
                made.append(sa.Column(f"{name}_fold", JSONText(), nullable=True))
            case Kind.RULE:
                made.append(sa.Column(name, JSONText(), nullable=nullable))
            case Kind.UUID_SET:
                pass  # rows of the members table
    return made


_PREFIX: Final = re.compile(r"[a-z][a-z0-9_]{0,30}\Z")


def schema(prefix: str = DEFAULT_PREFIX) -> Schema:
    """crmkit's tables, named ``<prefix><entity>s`` (``crm_contacts``), on a MetaData.

    The same prefix always gives the same :class:`Schema` object, so a host application
    can add ``schema(prefix).metadata`` to its Alembic ``target_metadata``. A prefix is
    1 to 31 lower-case ASCII letters, digits and ``_``, starting with a letter.
    """
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise ValidationError(
            "prefix", prefix, "a table prefix is lower-case ASCII letters, digits and '_'"
        )
    return _schema(prefix)


def _unindexed_references() -> list[tuple[type[Entity], str]]:
    """The references (see ``REFERRERS``) that no index of ``_INDEXES`` starts with: a
    delete asks whether one refers to the entity, so each gets a partial index of the
    rows that have one (most have none, and cost nothing)."""
    found = []
    for referrers in REFERRERS.values():
        for entity, column in referrers:
            led = {cols[0] for cols in _INDEXES.get(entity.entity_name, ())}
            if column not in led:
                found.append((entity, column))
    return found


_NAME_LIMIT: Final = 63  # PostgreSQL's identifier length


def index_name(table: str, columns: tuple[str, ...], *, kind: str = "ix") -> str:
    """The name of an index of ``table`` on ``columns``, short enough for PostgreSQL."""
    name = f"{kind}_{table}_{'_'.join(columns)}"
    if len(name) <= _NAME_LIMIT:
        return name
    digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{name[: _NAME_LIMIT - 9]}_{digest}"


def email_key(table: sa.Table) -> sa.ColumnElement[str]:
    """The folded e-mail of a contacts row: ``casefold()`` of the whole address, as the
    unique identity index stores it (the fold shadow, or the address when it is folded)."""
    return sa.func.coalesce(table.c.email_fold, table.c.email)


@cache
def _schema(prefix: str) -> Schema:
    meta = sa.MetaData()
    tables: dict[type[Entity], sa.Table] = {}
    for entity in ENTITIES:
        name = f"{prefix}{_TABLE_NAMES[entity.entity_name]}"
        included = _INCLUDED.get(entity.entity_name, ())
        options: dict[str, Any] = {"postgresql_include": list(included)} if included else {}
        indexes = [
            sa.Index(index_name(name, cols), "tenant", *cols, **options)
            for cols in _INDEXES.get(entity.entity_name, ())
        ]
        tables[entity] = sa.Table(name, meta, *_columns_of(entity), *indexes)
    for entity, references in REFERENCES.items():
        table = tables[entity]
        for column, target in references:
            parent = tables[target]
            table.append_constraint(
                sa.ForeignKeyConstraint(
                    ["tenant", column],
                    [parent.c.tenant, parent.c.id],
                    name=index_name(table.name, (column,), kind="fk"),
                    # Leads and deals refer to each other: one of the two is added
                    # after both tables exist (SQLite declares it in CREATE TABLE).
                    use_alter=(
                        ENTITIES.index(target) > ENTITIES.index(entity)
                        and any(t is entity for _, t in REFERENCES.get(target, ()))
                    ),
                )
            )
    for referrer, column in _unindexed_references():
        table = tables[referrer]
        present = table.c[column].is_not(None)
        sa.Index(
            index_name(table.name, (column,)),
            table.c.tenant,
            table.c[column],
            sqlite_where=present,
            postgresql_where=present,
        )
    contacts = tables[Contact]
    email_indexes = (
        sa.Index(
            index_name(contacts.name, ("email_key",), kind="ux"),
            contacts.c.tenant,
            email_key(contacts),
            unique=True,
        ),
        sa.Index(index_name(contacts.name, ("email_key",)), contacts.c.tenant, email_key(contacts)),
    )
    for index in email_indexes:
        contacts.indexes.discard(index)
    segments = tables[Segment]
    members = sa.Table(
        f"{prefix}segment_members",
        meta,
        sa.Column("tenant", _text(64), primary_key=True),
        sa.Column("segment_id", UUIDType(), primary_key=True),
        sa.Column("member_id", UUIDType(), primary_key=True),
        sa.ForeignKeyConstraint(
            ["tenant", "segment_id"],
            [segments.c.tenant, segments.c.id],
            ondelete="CASCADE",
        ),
    )
    facts = sa.Table(
        f"{prefix}meta",
        meta,
        sa.Column("key", _text(64), primary_key=True),
        sa.Column("value", _text(), nullable=False),
    )
    merges, merge_keys = merge_tables(meta, prefix)
    keys = match_key_table(meta, prefix)
    outbox, deliveries, cursors = outbox_tables_v14(meta, prefix)
    return Schema(
        meta,
        MappingProxyType(tables),
        members,
        facts,
        keys,
        email_indexes,
        merges,
        merge_keys,
        outbox,
        deliveries,
        cursors,
        step_table(meta, prefix),
        consent_states_v13(meta, prefix),
    )


def consent_states_v13(meta: sa.MetaData, prefix: str) -> sa.Table:
    """The table of consent decisions in force (schema 13) on ``meta``: one row per
    ``(tenant, contact_id, channel, purpose)`` that has a decision (an entry granted or
    withdrawn, :func:`~crmkit.models.current_consent`), with the entry's ``status``,
    ``expires_at`` and ``contact_point`` (what reachability compares with the time and
    the contact's address) and its ``consent_id`` and ``decided_at``.

    It is derived: the consent ledger stays the record, and the SQL adapter rewrites a
    contact's rows from the ledger in the same transaction as every write of the
    contact's entries. SQLite keeps it ``WITHOUT ROWID``: the key's b-tree holds the
    row, so a contact's decision is one look-up. Frozen as schema 13 made it (the
    upgrade to 12 creates it from here): a later schema that changes it defines its
    own function and an upgrade step."""
    return sa.Table(
        f"{prefix}consent_states",
        meta,
        sa.Column("tenant", _text(64), primary_key=True),
        sa.Column("contact_id", UUIDType(), primary_key=True),
        sa.Column("channel", _text(32), primary_key=True),
        sa.Column("purpose", _text(), primary_key=True),
        sa.Column("status", _text(32), nullable=False),
        sa.Column("expires_at", Timestamp(), nullable=True),
        sa.Column("contact_point", _text(), nullable=True),
        sa.Column("consent_id", UUIDType(), nullable=False),
        sa.Column("decided_at", Timestamp(), nullable=False),
        sqlite_with_rowid=False,
    )


def step_table(meta: sa.MetaData, prefix: str) -> sa.Table:
    """The table of steps (schema 9) on ``meta``: a row per step, the claim's lease in
    ``lease`` and ``leased_until``, indexed for the claim's look-up of due steps."""
    name = f"{prefix}steps"
    return sa.Table(
        name,
        meta,
        sa.Column("tenant", _text(64), primary_key=True),
        sa.Column("id", UUIDType(), primary_key=True),
        sa.Column("kind", _text(100), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("due_at", Timestamp(), nullable=False),
        sa.Column("created_at", Timestamp(), nullable=False),
        sa.Column("subject", _text(32), nullable=True),
        sa.Column("subject_id", UUIDType(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", _text(16), nullable=False),
        sa.Column("lease", UUIDType(), nullable=True),
        sa.Column("leased_until", Timestamp(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("finished_at", Timestamp(), nullable=True),
        sa.Index(index_name(name, ("status", "due_at", "id")), "tenant", "status", "due_at", "id"),
    )


def merge_tables(meta: sa.MetaData, prefix: str) -> tuple[sa.Table, sa.Table]:
    """The tables of merge records and of their look-up keys, on ``meta`` (schema 4)."""
    merges = sa.Table(
        f"{prefix}merges",
        meta,
        sa.Column("tenant", _text(64), primary_key=True),
        sa.Column("id", UUIDType(), primary_key=True),
        sa.Column("kind", _text(32), nullable=False),
        sa.Column("survivor_id", UUIDType(), nullable=False),
        sa.Column("at", Timestamp(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
    )
    keys = sa.Table(
        f"{prefix}merge_keys",
        meta,
        sa.Column("tenant", _text(64), primary_key=True),
        sa.Column("key", _text(), primary_key=True),
        sa.Column("merge_id", UUIDType(), primary_key=True),
        sa.ForeignKeyConstraint(
            ["tenant", "merge_id"], [merges.c.tenant, merges.c.id], ondelete="CASCADE"
        ),
    )
    return merges, keys


def match_key_table(meta: sa.MetaData, prefix: str) -> sa.Table:
    """The match-key table (schema 5) on ``meta``."""
    name = f"{prefix}match_keys"
    return sa.Table(
        name,
        meta,
        sa.Column("tenant", _text(64), primary_key=True),
        sa.Column("entity", _text(32), primary_key=True),
        sa.Column("key", _text(64), primary_key=True),
        sa.Column("value", _text(), primary_key=True),
        sa.Column("subject_id", UUIDType(), primary_key=True),
        sa.Index(index_name(name, ("subject_id",)), "tenant", "subject_id"),
    )


def outbox_tables_v8(meta: sa.MetaData, prefix: str) -> tuple[sa.Table, sa.Table, sa.Table]:
    """The outbox, its deliveries and the handlers' cursors on ``meta``, frozen as schema
    8 made them: the upgrade to 8 creates them from here. Never change this function; a
    later schema that changes these tables defines its own and an upgrade step."""
    name = f"{prefix}outbox"
    outbox = sa.Table(
        name,
        meta,
        sa.Column("tenant", _text(64), primary_key=True),
        sa.Column("position", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("id", UUIDType(), nullable=False),
        sa.Column("type", _text(64), nullable=False),
        sa.Column("subject", _text(32), nullable=False),
        sa.Column("subject_id", UUIDType(), nullable=False),
        sa.Column("occurred_at", Timestamp(), nullable=False),
        sa.Column("caused_by", UUIDType(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Index(index_name(name, ("id",), kind="ux"), "tenant", "id", unique=True),
        sa.Index(index_name(name, ("subject_id", "position")), "tenant", "subject_id", "position"),
    )
    name = f"{prefix}outbox_deliveries"
    deliveries = sa.Table(
        name,
        meta,
        sa.Column("tenant", _text(64), primary_key=True),
        sa.Column("handler", _text(200), primary_key=True),
        sa.Column("position", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("event_id", UUIDType(), nullable=False),
        sa.Column("event_type", _text(64), nullable=False),
        sa.Column("subject_id", UUIDType(), nullable=False),
        sa.Column("status", _text(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", Timestamp(), nullable=True),
        sa.Column("claim", UUIDType(), nullable=True),
        sa.Column("leased_until", Timestamp(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("finished_at", Timestamp(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant", "position"],
            [outbox.c.tenant, outbox.c.position],
            name=index_name(name, ("position",), kind="fk"),
            ondelete="CASCADE",
        ),
        sa.Index(index_name(name, ("status", "position")), "tenant", "status", "position"),
        sa.Index(index_name(name, ("event_id",)), "tenant", "event_id"),
    )
    pending = deliveries.c.status == "pending"
    sa.Index(
        index_name(name, ("handler", "subject_id", "position")),
        deliveries.c.tenant,
        deliveries.c.handler,
        deliveries.c.subject_id,
        deliveries.c.position,
        sqlite_where=pending,
        postgresql_where=pending,
    )
    cursors = sa.Table(
        f"{prefix}outbox_cursors",
        meta,
        sa.Column("tenant", _text(64), primary_key=True),
        sa.Column("handler", _text(200), primary_key=True),
        sa.Column("position", sa.BigInteger(), nullable=False),
    )
    return outbox, deliveries, cursors


def outbox_tables_v14(meta: sa.MetaData, prefix: str) -> tuple[sa.Table, sa.Table, sa.Table]:
    """The outbox, its deliveries and the handlers' lanes on ``meta``, frozen as schema
    14 made them. The events gain ``lane`` (0 to 15, :func:`~crmkit.automation.lane_of`
    of the subject id) and the index ``(tenant, lane, position)``. The deliveries (one
    row per event and handler, written once when the handler's call ended) keep the
    columns of schema 8, keyed ``(tenant, position, handler)`` (rows are written in
    about position order, and an event's deliveries are found by its position), with
    no foreign key to the events (nothing ever deletes an event; the check cost a
    look-up per row), no index of the event id, and in place of ``(tenant, status,
    position)`` two partial indexes ``(tenant, position)`` of the pending and of the
    dead ones (the done ones, nearly all rows, need none); the partial index of the
    pending ones by ``(tenant, handler, subject_id, position)`` stays. ``<prefix>outbox_lanes``
    holds per ``(tenant, handler, lane)`` the cursor ``position`` and the lease
    (``claim``, ``leased_until``). Never change this function; a later schema that
    changes these tables defines its own."""
    old_outbox, _, _ = outbox_tables_v8(sa.MetaData(), prefix)
    outbox = old_outbox.to_metadata(meta)
    lane = sa.Column("lane", sa.SmallInteger(), nullable=False)
    outbox.append_column(lane)
    sa.Index(
        index_name(outbox.name, ("lane", "position")), outbox.c.tenant, lane, outbox.c.position
    )
    name = f"{prefix}outbox_deliveries"
    deliveries = sa.Table(
        name,
        meta,
        sa.Column("tenant", _text(64), nullable=False),
        sa.Column("handler", _text(200), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("event_id", UUIDType(), nullable=False),
        sa.Column("event_type", _text(64), nullable=False),
        sa.Column("subject_id", UUIDType(), nullable=False),
        sa.Column("status", _text(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", Timestamp(), nullable=True),
        sa.Column("claim", UUIDType(), nullable=True),
        sa.Column("leased_until", Timestamp(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("finished_at", Timestamp(), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "position", "handler"),
    )
    for status in ("pending", "dead"):
        only = deliveries.c.status == status
        sa.Index(
            index_name(name, (status, "position")),
            deliveries.c.tenant,
            deliveries.c.position,
            sqlite_where=only,
            postgresql_where=only,
        )
    pending = deliveries.c.status == "pending"
    sa.Index(
        index_name(name, ("handler", "subject_id", "position")),
        deliveries.c.tenant,
        deliveries.c.handler,
        deliveries.c.subject_id,
        deliveries.c.position,
        sqlite_where=pending,
        postgresql_where=pending,
    )
    lanes = sa.Table(
        f"{prefix}outbox_lanes",
        meta,
        sa.Column("tenant", _text(64), primary_key=True),
        sa.Column("handler", _text(200), primary_key=True),
        sa.Column("lane", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("claim", UUIDType(), nullable=True),
        sa.Column("leased_until", Timestamp(), nullable=True),
    )
    return outbox, deliveries, lanes


metadata: Final = schema().metadata
"""The MetaData of crmkit's tables with the default prefix ``crm_``."""
