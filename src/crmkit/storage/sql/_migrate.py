"""Schema upgrades: Alembic operations from every released crmkit schema to this one.

The version lives in crmkit's own ``<prefix>meta`` table, not in ``alembic_version``,
so that a host's own Alembic history and crmkit's never collide. Each step is a function
of Alembic's :class:`~alembic.operations.Operations`; :func:`upgrade` runs the steps
from the database's version to :data:`~crmkit.storage.sql.SCHEMA_VERSION` in one
transaction (SQLite and PostgreSQL both roll DDL back), so a failed upgrade changes
nothing.
"""

import json
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final
from uuid import UUID

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from crmkit._extras import import_extra
from crmkit.errors import (
    DanglingReferences,
    DuplicateEmails,
    SchemaOutdated,
    StorageError,
    ValidationError,
)
from crmkit.models import (
    Account,
    Activity,
    AuditEntry,
    Consent,
    Contact,
    DoNotContact,
    Erasure,
    StageChange,
    Suppression,
)
from crmkit.quality import match_keys
from crmkit.storage._base import merge_from_json
from crmkit.storage.sql._codec import codec
from crmkit.storage.sql._schema import (
    DEFAULT_PREFIX,
    SCHEMA_VERSION,
    Schema,
    consent_states_v13,
    email_key,
    index_name,
    outbox_tables_v8,
    outbox_tables_v14,
    schema,
)
from crmkit.storage.sql._states import refill_consent_states
from crmkit.storage.sql._store import (
    IDENTITY_KEY,
    SHARED,
    UNIQUE,
    VERSION_KEY,
    analyze,
    database_version,
    engine_of,
    merge_key_names,
    plan_priors,
    read_columns,
)
from crmkit.storage.sql.types import Timestamp, UUIDType

__all__ = ["Upgrade", "upgrade"]

# The indexes of schema 1 (crmkit 0.1), as it created them: (table, columns).
_V1_INDEXES: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("accounts", ("created_at",)),
    ("accounts", ("domain",)),
    ("activities", ("contact_id", "kind", "occurred_at")),
    ("activities", ("occurred_at",)),
    ("consents", ("contact_id", "channel", "purpose")),
    ("contacts", ("account_id",)),
    ("contacts", ("country",)),
    ("contacts", ("created_at",)),
    ("contacts", ("email",)),
    ("contacts", ("lifecycle_stage",)),
    ("deals", ("contact_id",)),
    ("deals", ("created_at",)),
    ("deals", ("pipeline", "stage")),
    ("deals", ("status",)),
    ("leads", ("contact_id",)),
    ("leads", ("created_at",)),
    ("leads", ("score",)),
    ("leads", ("status", "score")),
    ("segments", ("name",)),
    ("stage_changes", ("subject", "subject_id", "at")),
    ("tasks", ("contact_id",)),
    ("tasks", ("status", "due_at")),
    ("tickets", ("contact_id",)),
    ("tickets", ("created_at",)),
    ("tickets", ("status", "priority")),
)


@attrs.frozen
class Upgrade:
    """What :func:`upgrade` did."""

    from_version: int
    to_version: int
    unique_emails: bool
    """The identity policy the database has now."""

    @property
    def changed(self) -> bool:
        """Whether the database was upgraded (``False``: it was current already)."""
        return self.from_version != self.to_version


_V2_INDEXES: Final[tuple[tuple[str, tuple[str, ...], bool], ...]] = (
    ("accounts", ("created_at",), False),
    ("accounts", ("domain",), False),
    ("activities", ("contact_id", "kind", "occurred_at"), False),
    ("activities", ("contact_id", "occurred_at", "id"), False),
    ("activities", ("deal_id",), True),
    ("activities", ("occurred_at",), False),
    ("activities", ("ticket_id",), True),
    ("consents", ("contact_id", "channel", "purpose"), False),
    ("contacts", ("account_id", "created_at", "id"), False),
    ("contacts", ("country",), False),
    ("contacts", ("created_at",), False),
    ("contacts", ("email", "created_at", "id"), False),
    ("contacts", ("lifecycle_stage",), False),
    ("contacts", ("phone", "created_at", "id"), False),
    ("deals", ("account_id", "created_at", "id"), False),
    ("deals", ("contact_id", "created_at", "id"), False),
    ("deals", ("created_at",), False),
    ("deals", ("lead_id",), True),
    ("deals", ("pipeline", "stage"), False),
    ("deals", ("status",), False),
    ("leads", ("contact_id", "created_at", "id"), False),
    ("leads", ("created_at",), False),
    ("leads", ("deal_id",), True),
    ("leads", ("score",), False),
    ("leads", ("status", "score"), False),
    ("segments", ("name",), False),
    ("stage_changes", ("subject", "subject_id", "at", "id"), False),
    ("tasks", ("assignee", "status", "due_at", "id"), False),
    ("tasks", ("contact_id", "due_at", "id"), False),
    ("tasks", ("deal_id",), True),
    ("tasks", ("status", "due_at", "id"), False),
    ("tasks", ("ticket_id",), True),
    ("tickets", ("account_id",), True),
    ("tickets", ("contact_id", "created_at", "id"), False),
    ("tickets", ("created_at",), False),
    ("tickets", ("status", "priority"), False),
)
"""The indexes of schema 2 besides the e-mail one: (table, columns after ``tenant``,
partial: only rows whose single column is not null), as ``_to_2`` creates them."""


_Step = Callable[[Any, Connection, Schema, bool | None], None]
"""An upgrade from one version to the next: Alembic's operations, the connection, the
tables as this crmkit declares them and the requested identity policy (which only the
step to schema 2 sets)."""


def _to_2(ops: Any, connection: Connection, tables: Schema, unique_emails: bool | None) -> None:
    """Schema 1 -> 2: indexes that find and order at once, the identity index, the
    meta table (with the identity policy: unique e-mail unless ``unique_emails`` is
    ``False``), activities' ``body`` and stage changes' ``expected_close``."""
    prefix = tables.meta.name.removesuffix("meta")
    contacts = tables.table(Contact)
    shared = _shared_emails(connection, contacts)
    if shared and unique_emails is not False:
        raise DuplicateEmails(shared)
    unique = unique_emails is not False
    for name, cols in _V1_INDEXES:
        ops.drop_index(index_name(f"{prefix}{name}", cols), table_name=f"{prefix}{name}")
    for name, cols, partial in _V2_INDEXES:
        indexed = f"{prefix}{name}"
        where = f" WHERE {cols[0]} IS NOT NULL" if partial else ""
        connection.exec_driver_sql(
            f"CREATE INDEX {index_name(indexed, cols)} ON {indexed} "
            f"(tenant, {', '.join(cols)}){where}"
        )
    tables.email_indexes[0 if unique else 1].create(connection)
    tables.meta.create(connection)
    for entity, name in ((Activity, "body"), (StageChange, "expected_close")):
        table = tables.table(entity)
        ops.add_column(table.name, sa.Column(name, table.c[name].type, nullable=True))
    connection.execute(
        sa.insert(tables.meta),
        [
            {"key": VERSION_KEY, "value": "2"},
            {"key": IDENTITY_KEY, "value": UNIQUE if unique else SHARED},
        ],
    )


_V3_FOREIGN_KEYS: Final[tuple[tuple[str, str, str], ...]] = (
    ("contacts", "account_id", "accounts"),
    ("leads", "contact_id", "contacts"),
    ("leads", "deal_id", "deals"),
    ("deals", "contact_id", "contacts"),
    ("deals", "account_id", "accounts"),
    ("deals", "lead_id", "leads"),
    ("tickets", "contact_id", "contacts"),
    ("tickets", "account_id", "accounts"),
    ("activities", "contact_id", "contacts"),
    ("activities", "deal_id", "deals"),
    ("activities", "ticket_id", "tickets"),
    ("tasks", "contact_id", "contacts"),
    ("tasks", "deal_id", "deals"),
    ("tasks", "ticket_id", "tickets"),
    ("consents", "contact_id", "contacts"),
)
"""The references that schema 3 declares as foreign keys: (table, field, referred table),
with the table prefix left out."""

_ENTITY_NAMES: Final = {
    "contacts": "contact",
    "leads": "lead",
    "deals": "deal",
    "tickets": "ticket",
    "activities": "activity",
    "tasks": "task",
    "consents": "consent",
}


def _to_3(ops: Any, connection: Connection, tables: Schema, unique_emails: bool | None) -> None:
    """Schema 2 -> 3: every reference (:data:`~crmkit.storage.REFERENCES`) becomes a
    foreign key ``(tenant, <field>) -> (tenant, id)``. Stops with
    :class:`~crmkit.errors.DanglingReferences`, changing nothing, when stored rows
    refer to entities that are gone."""
    prefix = tables.meta.name.removesuffix("meta")
    dangling = _dangling(connection, prefix)
    if dangling:
        raise DanglingReferences(dangling)
    if connection.dialect.name == "sqlite":
        _rebuild_sqlite(connection, prefix)
        return
    for name, field, target in _V3_FOREIGN_KEYS:
        table = f"{prefix}{name}"
        ops.create_foreign_key(
            index_name(table, (field,), kind="fk"),
            table,
            f"{prefix}{target}",
            ["tenant", field],
            ["tenant", "id"],
        )


def _dangling(connection: Connection, prefix: str) -> tuple[tuple[str, str, UUID, str, UUID], ...]:
    """Every stored reference that names no entity of its tenant (at most 1000)."""
    found: list[tuple[str, str, UUID, str, UUID]] = []
    for name, field, target in _V3_FOREIGN_KEYS:
        table = sa.table(
            f"{prefix}{name}",
            sa.column("tenant"),
            sa.column("id", UUIDType()),
            sa.column(field, UUIDType()),
        )
        parent = sa.table(f"{prefix}{target}", sa.column("tenant"), sa.column("id")).alias("p")
        orphan = (
            sa.select(table.c.tenant, table.c.id, table.c[field])
            .outerjoin(
                parent, sa.and_(parent.c.tenant == table.c.tenant, parent.c.id == table.c[field])
            )
            .where(table.c[field].is_not(None), parent.c.id.is_(None))
            .order_by(table.c.tenant, table.c.id)
            .limit(1000 - len(found))
        )
        found.extend(
            (tenant, _ENTITY_NAMES[name], id, field, missing)
            for tenant, id, missing in connection.execute(orphan)
        )
        if len(found) >= 1000:
            break
    return tuple(found)


def _rebuild_sqlite(connection: Connection, prefix: str) -> None:
    """Give the referring tables their foreign keys the way SQLite documents (it cannot
    add one to a table): keep each table's own ``CREATE`` statement and indexes from
    ``sqlite_master``, rename the table aside, create it again with the constraints
    added, copy the rows, drop the old one and create its indexes again. The tables
    keep their columns exactly as the database has them."""
    connection.exec_driver_sql("PRAGMA defer_foreign_keys = ON")  # checked at commit
    wanted: dict[str, list[str]] = {}
    for name, field, target in _V3_FOREIGN_KEYS:
        table = f"{prefix}{name}"
        wanted.setdefault(table, []).append(
            f"CONSTRAINT {index_name(table, (field,), kind='fk')} FOREIGN KEY(tenant, {field}) "
            f"REFERENCES {prefix}{target} (tenant, id)"
        )
    kept: dict[str, tuple[str, list[str]]] = {}
    for table in wanted:
        create = connection.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).scalar_one()
        indexes = connection.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
            "AND sql IS NOT NULL",
            (table,),
        ).scalars()
        kept[table] = (create, list(indexes))
    for table in wanted:  # before any new table refers to the name
        connection.exec_driver_sql(f"ALTER TABLE {table} RENAME TO {table}_old")
    for table, constraints in wanted.items():
        create = kept[table][0].rstrip()
        assert create.endswith(")"), create
        body = ",\n\t".join(constraints)
        connection.exec_driver_sql(f"{create[:-1].rstrip()},\n\t{body}\n)")
    for table in wanted:
        connection.exec_driver_sql(f"INSERT INTO {table} SELECT * FROM {table}_old")
    for table in wanted:
        connection.exec_driver_sql(f"DROP TABLE {table}_old")
        for index in kept[table][1]:
            connection.exec_driver_sql(index)
    if connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
        raise StorageError("the rebuilt tables break a foreign key")  # pragma: no cover


def _to_4(ops: Any, connection: Connection, tables: Schema, unique_emails: bool | None) -> None:
    """Schema 3 -> 4: the merge records (``<prefix>merges``) and their look-up keys
    (``<prefix>merge_keys``), both empty; no other table changes."""
    del ops, unique_emails  # the new tables are made as this crmkit declares them
    tables.merges.create(connection)
    tables.merge_keys.create(connection)


def _to_5(ops: Any, connection: Connection, tables: Schema, unique_emails: bool | None) -> None:
    """Schema 4 -> 5: the ``<prefix>match_keys`` table of contacts' and accounts'
    blocking keys (:func:`crmkit.quality.match_keys`), filled for every stored contact and
    account of every tenant, read a batch at a time."""
    keys = tables.match_keys
    keys.create(connection)
    for entity in (Contact, Account):
        table = tables.table(entity)
        entity_codec = codec(entity, connection.dialect.name)
        decode = entity_codec.decode
        read = read_columns(table, entity_codec)
        last: tuple[str, UUID] | None = None
        while True:
            statement = sa.select(table.c.tenant, *read).order_by(table.c.tenant, table.c.id)
            if last is not None:
                statement = statement.where(sa.tuple_(table.c.tenant, table.c.id) > last)
            rows = connection.execute(statement.limit(_BACKFILL_BATCH)).all()
            if not rows:
                break
            found: list[dict[str, Any]] = []
            item: Any = None
            for row in rows:
                item = decode(tuple(row[1:]))
                found.extend(
                    {
                        "tenant": row[0],
                        "entity": entity.entity_name,
                        "key": key,
                        "value": value,
                        "subject_id": item.id,
                    }
                    for key, value in match_keys(item)
                )
            if found:
                connection.execute(sa.insert(keys), found)
            last = (rows[-1][0], item.id)


_BACKFILL_BATCH: Final = 5000

_V2_CONSENT_INDEX: Final = ("contact_id", "channel", "purpose")
_V7_CONSENT_INDEX: Final = (
    "contact_id",
    "channel",
    "purpose",
    "decided_at",
    "id",
    "status",
    "expires_at",
)
_CONSENT_COLUMNS: Final = (
    "legal_basis",
    "contact_point",
    "evidence_form",
    "evidence_text",
    "evidence_ip",
)


def _to_6(ops: Any, connection: Connection, tables: Schema, unique_emails: bool | None) -> None:
    """Schema 5 -> 6, the consent ledger: consents gain ``legal_basis``,
    ``contact_point`` and the evidence columns; their index ends with ``decided_at, id``;
    the do-not-contact ledger table is created. Every stored consent becomes a ledger
    entry as it is (its status and ``decided_at`` are the decision), with the legal
    basis ``consent`` (the only one schema 2 knew) and no contact point or evidence
    (schema 2 recorded none). On SQLite ``legal_basis`` keeps the column default
    ``'consent'`` (SQLite cannot drop a default in place; crmkit always writes the
    column)."""
    consents = tables.table(Consent)
    prefix = tables.meta.name.removesuffix("meta")
    ops.drop_index(index_name(f"{prefix}consents", _V2_CONSENT_INDEX), table_name=consents.name)
    for name in _CONSENT_COLUMNS:
        column = consents.c[name]
        if name == "legal_basis":
            added = sa.Column(name, column.type, nullable=False, server_default="consent")
            ops.add_column(consents.name, added)
            if connection.dialect.name == "postgresql":
                ops.alter_column(consents.name, name, server_default=None)
        else:
            ops.add_column(consents.name, sa.Column(name, column.type, nullable=True))
    columns = ["tenant", *_V7_CONSENT_INDEX]  # schema 6's index (frozen: 11 changed it)
    ops.create_index(index_name(consents.name, _V7_CONSENT_INDEX), consents.name, columns)
    blocks = tables.table(DoNotContact)
    blocks.create(connection)  # with its indexes


def _to_7(ops: Any, connection: Connection, tables: Schema, unique_emails: bool | None) -> None:
    """Schema 6 -> 7, the privacy records: the tables of suppressions, erasures and the
    audit trail, with their indexes; no existing table changes."""
    for entity in (Suppression, Erasure, AuditEntry):
        tables.table(entity).create(connection)  # with its indexes


def _to_8(ops: Any, connection: Connection, tables: Schema, unique_emails: bool | None) -> None:
    """Schema 7 -> 8, the outbox of domain events: the tables ``<prefix>outbox``,
    ``<prefix>outbox_deliveries`` and ``<prefix>outbox_cursors``, empty (the events of
    what a database held before are not made up); no existing table changes."""
    del ops, unique_emails
    prefix = tables.meta.name.removesuffix("meta")
    for table in outbox_tables_v8(sa.MetaData(), prefix):
        table.create(connection)  # with its indexes


def _v9_steps(prefix: str) -> sa.Table:
    """The steps table as schema 9 made it, frozen (never the current metadata)."""

    def text(length: int) -> sa.types.TypeEngine[str]:
        return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")

    name = f"{prefix}steps"
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("tenant", text(64), primary_key=True),
        sa.Column("id", UUIDType(), primary_key=True),
        sa.Column("kind", text(100), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("due_at", Timestamp(), nullable=False),
        sa.Column("created_at", Timestamp(), nullable=False),
        sa.Column("subject", text(32), nullable=True),
        sa.Column("subject_id", UUIDType(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", text(16), nullable=False),
        sa.Column("lease", UUIDType(), nullable=True),
        sa.Column("leased_until", Timestamp(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("finished_at", Timestamp(), nullable=True),
        sa.Index(index_name(name, ("status", "due_at", "id")), "tenant", "status", "due_at", "id"),
    )


def _to_9(ops: Any, connection: Connection, tables: Schema, unique_emails: bool | None) -> None:
    """Schema 8 -> 9, durable timers: the empty ``<prefix>steps`` table with its index
    ``(tenant, status, due_at, id)``; no existing table changes."""
    del ops, unique_emails
    prefix = tables.meta.name.removesuffix("meta")
    _v9_steps(prefix).create(connection)  # with its index


def _to_10(ops: Any, connection: Connection, tables: Schema, unique_emails: bool | None) -> None:
    """Schema 9 -> 10: deals gain the nullable ``forecast_category`` (empty: every stored
    deal keeps the category of its stage), and activities the index
    ``(tenant, kind, occurred_at)``. Frozen definitions: the column and index as
    schema 10 declares them."""
    del connection, unique_emails
    prefix = tables.meta.name.removesuffix("meta")
    text = sa.String(32).with_variant(sa.String(32, collation="C"), "postgresql")
    ops.add_column(f"{prefix}deals", sa.Column("forecast_category", text, nullable=True))
    activities = f"{prefix}activities"
    columns = ("kind", "occurred_at")
    ops.create_index(index_name(activities, columns), activities, ["tenant", *columns])


def _to_11(ops: Any, connection: Connection, tables: Schema, unique_emails: bool | None) -> None:
    """Schema 10 -> 11, the consent index covers the contact point: the index of schemas 6
    to 10 is dropped and the new one, which ends with ``contact_point``, created (so that
    reachability, which checks that a grant names the contact's current address,
    reads no consent row); no data changes."""
    consents = tables.table(Consent)
    old = ["tenant", *_V7_CONSENT_INDEX]
    for index in sa.inspect(connection).get_indexes(consents.name):
        if list(index["column_names"]) == old:  # by its columns: a long name is hashed
            ops.drop_index(index["name"], table_name=consents.name)
    columns = [*old, "contact_point"]
    ops.create_index(index_name(consents.name, tuple(columns[1:])), consents.name, columns)


_V11_HISTORY_INDEX: Final = ("subject", "subject_id", "at", "id")
_V12_HISTORY_INDEX: Final = (*_V11_HISTORY_INDEX, "pipeline", "from_stage", "to_stage")


def _to_12_covering_history_index(
    ops: Any, connection: Connection, tables: Schema, unique_emails: bool | None
) -> None:
    """Schema 11 -> 12, the stage-history index covers the KPI replays: the index
    ``(tenant, subject, subject_id, at, id)`` of schemas 2 to 11 is dropped and one that
    also holds ``pipeline, from_stage, to_stage`` created in its place (it serves every
    look-up the old one did), so that the funnel's grouping over every move, the
    standings and the customer spans read no table row; no data changes. Frozen
    definitions: the columns as schema 12 declares them."""
    del unique_emails
    changes = f"{tables.meta.name.removesuffix('meta')}stage_changes"
    old = ["tenant", *_V11_HISTORY_INDEX]
    for index in sa.inspect(connection).get_indexes(changes):
        if list(index["column_names"]) == old:  # by its columns, as _to_11 does
            ops.drop_index(index["name"], table_name=changes)
    columns = ["tenant", *_V12_HISTORY_INDEX]
    ops.create_index(index_name(changes, _V12_HISTORY_INDEX), changes, columns)


def _to_consent_states(
    ops: Any, connection: Connection, tables: Schema, unique_emails: bool | None
) -> None:
    """Schema 12 -> 13, the consent decisions in force: the table
    ``<prefix>consent_states`` (as ``consent_states_v13`` declares it), filled
    from every tenant's stored consent ledger (the decision in force of each contact,
    channel and purpose that has one); the ledger does not change. Frozen definitions:
    the table as schema 13 declares it and the ledger's columns as schema 12 has them."""
    del ops, unique_emails
    prefix = tables.meta.name.removesuffix("meta")
    states = consent_states_v13(sa.MetaData(), prefix)
    states.create(connection)
    ledger = sa.table(
        f"{prefix}consents",
        *(sa.column(name, states.c[name].type) for name in _V13_LEDGER_COLUMNS),
        sa.column("id", UUIDType()),
    )
    refill_consent_states(connection, ledger, states)


_V13_LEDGER_COLUMNS: Final = (
    "tenant",
    "contact_id",
    "channel",
    "purpose",
    "status",
    "expires_at",
    "contact_point",
    "decided_at",
)


def _to_outbox_lanes(
    ops: Any, connection: Connection, tables: Schema, unique_emails: bool | None
) -> None:
    """Schema 13 -> 14, lanes of the outbox: the events gain ``lane`` (the last hex
    digit of the subject id, which is :func:`~crmkit.automation.lane_of`: the stored
    events are numbered in one statement; on SQLite, which cannot drop it, the column
    keeps the default of 0 it was added with, which crmkit never relies on) and the
    index ``(tenant, lane, position)``; the table
    ``<prefix>outbox_lanes`` is created and gives each handler's 16 lanes the cursor it
    had in ``<prefix>outbox_cursors``, which is dropped (the pending deliveries made so
    far stay, and are claimed as before); the deliveries lose their foreign key to the
    events and get partial indexes (``_deliveries_v14``). Frozen definitions: the tables
    as schema 14 declares them (``outbox_tables_v14``)."""
    del unique_emails
    prefix = tables.meta.name.removesuffix("meta")
    meta = sa.MetaData()
    outbox, deliveries, lanes = outbox_tables_v14(meta, prefix)
    ops.add_column(
        outbox.name,
        sa.Column("lane", sa.SmallInteger(), nullable=False, server_default=sa.text("0")),
    )
    digits = "'0123456789abcdef'"
    if connection.dialect.name == "postgresql":
        lane = f"strpos({digits}, right(CAST(subject_id AS text), 1)) - 1"
    else:  # 32 lowercase hex digits
        lane = f"instr({digits}, substr(subject_id, 32, 1)) - 1"
    connection.execute(sa.text(f"UPDATE {outbox.name} SET lane = {lane}"))
    if connection.dialect.name == "postgresql":  # SQLite cannot drop a column default
        ops.alter_column(outbox.name, "lane", server_default=None)
    (index,) = [i for i in outbox.indexes if [c.name for c in i.columns] == _V14_LANE_INDEX]
    index.create(connection)
    lanes.create(connection)
    numbers = " UNION ALL ".join(f"SELECT {n} AS lane" for n in range(_V14_LANES))
    connection.execute(
        sa.text(
            f"INSERT INTO {lanes.name} (tenant, handler, lane, position) "
            f"SELECT c.tenant, c.handler, n.lane, c.position FROM {prefix}outbox_cursors AS c "
            f"CROSS JOIN ({numbers}) AS n"
        )
    )
    ops.drop_table(f"{prefix}outbox_cursors")
    _deliveries_v14(ops, connection, deliveries)


def _deliveries_v14(ops: Any, connection: Connection, deliveries: sa.Table) -> None:
    """The deliveries as schema 14 declares them: keyed ``(tenant, position, handler)``,
    no foreign key to the events, no index of the event id, partial indexes of the
    pending and the dead ones in place of ``(tenant, status, position)``. PostgreSQL
    alters the table; SQLite, which cannot change a key, copies it into a new one."""
    name = deliveries.name
    inspector = sa.inspect(connection)
    if connection.dialect.name == "postgresql":
        for key in inspector.get_foreign_keys(name):
            ops.drop_constraint(key["name"], name, type_="foreignkey")
        for found in inspector.get_indexes(name):
            if list(found["column_names"]) in _V13_DELIVERY_INDEXES:
                ops.drop_index(found["name"], table_name=name)
        primary = inspector.get_pk_constraint(name)["name"]
        ops.drop_constraint(primary, name, type_="primary")
        ops.create_primary_key(primary, name, ["tenant", "position", "handler"])
        for index in deliveries.indexes:
            if str(index.name).endswith(("_pending_position", "_dead_position")):
                index.create(connection)
        return
    old = f"{name}_v13"
    for reflected in inspector.get_indexes(name):
        ops.drop_index(reflected["name"], table_name=name)
    ops.rename_table(name, old)
    deliveries.create(connection)  # with its indexes
    columns = ", ".join(c.name for c in deliveries.columns)
    connection.execute(sa.text(f"INSERT INTO {name} ({columns}) SELECT {columns} FROM {old}"))
    ops.drop_table(old)


_V13_DELIVERY_INDEXES: Final = [["tenant", "status", "position"], ["tenant", "event_id"]]
"""The indexes of the deliveries that schema 14 drops (by their columns)."""


_V14_LANE_INDEX: Final = ["tenant", "lane", "position"]
_V14_LANES: Final = 16
"""The number of lanes of schema 14 (``crmkit.automation.LANES``, frozen here)."""


_V15_HISTORY_SNAPSHOT: Final = (
    "reason",
    "amount_currency",
    "amount_units",
    "amount_nanos",
    "expected_close",
)


def _to_15_history_index_carries_snapshots(
    ops: Any, connection: Connection, tables: Schema, unique_emails: bool | None
) -> None:
    """Schema 14 -> 15, on PostgreSQL the stage-history index carries the snapshot the
    standings read of each last move: the index ``(tenant, subject, subject_id, at, id,
    pipeline, from_stage, to_stage)`` of schemas 12 and 13 is dropped and made again
    with the same keys and name, ``INCLUDE (reason, amount_currency, amount_units,
    amount_nanos, expected_close)``; no data changes. SQLite keeps its index (nothing
    to do). Frozen definitions: the columns as schema 15 declares them."""
    del unique_emails
    if connection.dialect.name != "postgresql":
        return
    changes = f"{tables.meta.name.removesuffix('meta')}stage_changes"
    keys = ["tenant", *_V12_HISTORY_INDEX]
    name = index_name(changes, _V12_HISTORY_INDEX)
    for index in sa.inspect(connection).get_indexes(changes):
        if list(index["column_names"]) == keys:  # by its keys, as _to_12 does
            ops.drop_index(index["name"], table_name=changes)
    ops.create_index(name, changes, keys, postgresql_include=list(_V15_HISTORY_SNAPSHOT))


def _to_16_contact_merge_keys(
    ops: Any, connection: Connection, tables: Schema, unique_emails: bool | None
) -> None:
    """Schema 15 -> 16, a contact's merges are found by key: every stored merge record
    gets a key row ``contact:<id>`` in ``<prefix>merge_keys`` per contact it involves
    (:func:`~crmkit.storage.merge_contacts`), so that ``merges.involving`` reads those
    rows instead of searching every record's text; no table changes. Frozen definitions:
    the two tables' columns as schema 4 made them."""
    del ops, unique_emails
    prefix = tables.meta.name.removesuffix("meta")
    merges = sa.table(
        f"{prefix}merges",
        sa.column("tenant", sa.String()),
        sa.column("id", UUIDType()),
        sa.column("body", sa.Text()),
    )
    keys = sa.table(
        f"{prefix}merge_keys",
        sa.column("tenant", sa.String()),
        sa.column("key", sa.String()),
        sa.column("merge_id", UUIDType()),
    )
    after: tuple[str, Any] | None = None
    while True:  # in key order, a page at a time (never every record in memory)
        page = sa.select(merges.c.tenant, merges.c.id, merges.c.body)
        if after is not None:
            last = sa.tuple_(sa.literal(after[0], sa.String()), sa.literal(after[1], UUIDType()))
            page = page.where(sa.tuple_(merges.c.tenant, merges.c.id) > last)
        batch = connection.execute(
            page.order_by(merges.c.tenant, merges.c.id).limit(_BACKFILL_BATCH)
        ).all()
        if not batch:
            return
        after = (batch[-1][0], batch[-1][1])
        made = [
            {"tenant": tenant, "key": key, "merge_id": id}
            for tenant, id, body in batch
            for key in sorted(merge_key_names(merge_from_json(json.loads(body))))
            if key.startswith("contact:")
        ]
        if made:
            connection.execute(sa.insert(keys), made)


_STEPS: Final[Mapping[int, _Step]] = MappingProxyType(
    {
        1: _to_2,
        2: _to_3,
        3: _to_4,
        4: _to_5,
        5: _to_6,
        6: _to_7,
        7: _to_8,
        8: _to_9,
        9: _to_10,
        10: _to_11,
        11: _to_12_covering_history_index,
        12: _to_consent_states,
        13: _to_outbox_lanes,
        14: _to_15_history_index_carries_snapshots,
        15: _to_16_contact_merge_keys,
    }
)
"""The step that upgrades a database of each version to the next."""


def _shared_emails(
    connection: Connection, contacts: sa.Table
) -> tuple[tuple[str, str, tuple[UUID, ...]], ...]:
    """Every folded e-mail address that more than one contact of a tenant has."""
    key = email_key(contacts).label("key")
    groups = (
        sa.select(contacts.c.tenant, key)
        .where(contacts.c.email.is_not(None))
        .group_by(contacts.c.tenant, key)
        .having(sa.func.count() > 1)
        .order_by(contacts.c.tenant, key)
    )
    found = []
    for tenant, address in connection.execute(groups).all():
        ids = connection.execute(
            sa.select(contacts.c.id)
            .where(contacts.c.tenant == tenant, email_key(contacts) == address)
            .order_by(contacts.c.created_at, contacts.c.id)
        ).scalars()
        found.append((tenant, address, tuple(ids)))
    return tuple(found)


def upgrade(
    target: str | sa.URL | Engine | Connection,
    *,
    prefix: str = DEFAULT_PREFIX,
    unique_emails: bool | None = None,
) -> Upgrade:
    """Upgrade crmkit's tables in ``target`` (a URL, an engine or a connection) to this
    crmkit's schema, in place and in one transaction; needs the extra ``migrate``.

    ``unique_emails`` chooses the identity policy when a database of schema 1 (which had
    none) is upgraded: ``None`` or ``True`` enforce one contact per folded e-mail
    address and raise :class:`DuplicateEmails`, changing nothing, when contacts already
    share one; ``False`` lets them share. A current database is left as it is.
    """
    import_extra("alembic", extra="migrate", feature="crmkit.storage.sql.upgrade")
    from alembic.operations import Operations  # noqa: PLC0415 - the extra is lazy
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415

    if unique_emails is not None and not isinstance(unique_emails, bool):
        raise ValidationError("unique_emails", unique_emails, "expected True, False or None")
    tables = schema(prefix)
    engine, owned = engine_of(target)
    try:
        if isinstance(target, Connection):
            return _upgrade(target, tables, unique_emails, Operations, MigrationContext)
        assert engine is not None
        with engine.begin() as connection:
            return _upgrade(connection, tables, unique_emails, Operations, MigrationContext)
    except sa.exc.SQLAlchemyError as error:
        raise StorageError(f"the upgrade failed, nothing was changed: {error}") from error
    finally:
        if owned and engine is not None:
            engine.dispose()


def _upgrade(
    connection: Connection,
    tables: Schema,
    unique_emails: bool | None,
    operations: Any,
    context: Any,
) -> Upgrade:
    found = database_version(connection, tables)
    if found is None:
        raise StorageError("the database holds no crmkit tables: open_store creates them")
    if found > SCHEMA_VERSION:
        raise SchemaOutdated(found, SCHEMA_VERSION, str(connection.engine.url))
    ops = operations(context.configure(connection))
    for version in range(found, SCHEMA_VERSION):
        _STEPS[version](ops, connection, tables, unique_emails)
    meta = tables.meta
    if found != SCHEMA_VERSION:
        connection.execute(
            sa.update(meta).where(meta.c.key == VERSION_KEY).values(value=str(SCHEMA_VERSION))
        )
        # New indexes: measured statistics where there are rows, priors elsewhere.
        analyze(connection, [t.name for t in tables.metadata.sorted_tables])
        plan_priors(connection, tables)
    policy = connection.execute(
        sa.select(meta.c.value).where(meta.c.key == IDENTITY_KEY)
    ).scalar_one_or_none()
    unique_now = policy != SHARED
    if unique_emails is not None and unique_emails != unique_now:
        raise StorageError(
            f"unique_emails={unique_emails} differs from the database's identity policy "
            f"({policy}): an upgrade chooses the policy of a schema 1 database only"
        )
    return Upgrade(found, SCHEMA_VERSION, unique_now)
