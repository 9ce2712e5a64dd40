"""Schema upgrades: Alembic operations from every released crmkit schema to this one.

The version lives in crmkit's own ``<prefix>meta`` table, not in ``alembic_version``,
so that a host's own Alembic history and crmkit's never collide. Each step is a function
of Alembic's :class:`~alembic.operations.Operations`; :func:`upgrade` runs the steps
from the database's version to :data:`~crmkit.storage.sql.SCHEMA_VERSION` in one
transaction (SQLite and PostgreSQL both roll DDL back), so a failed upgrade changes
nothing.
"""

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final
from uuid import UUID

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from crmkit._extras import import_extra
from crmkit.errors import DuplicateEmails, SchemaOutdated, StorageError, ValidationError
from crmkit.models import Activity, AuditEntry, Contact, Erasure, StageChange, Suppression
from crmkit.storage.sql._schema import (
    DEFAULT_PREFIX,
    SCHEMA_VERSION,
    Schema,
    email_key,
    index_name,
    schema,
)
from crmkit.storage.sql._store import (
    IDENTITY_KEY,
    SHARED,
    UNIQUE,
    VERSION_KEY,
    analyze,
    database_version,
    engine_of,
    plan_priors,
)

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


_Step = Callable[[Any, Connection, Schema, bool | None], bool]


def _to_2(ops: Any, connection: Connection, tables: Schema, unique_emails: bool | None) -> bool:
    """Schema 1 -> 2: indexes that find and order at once, the identity index, the
    meta table, activities' ``body`` and stage changes' ``expected_close``. Returns the
    identity policy it set (``True``: unique e-mail)."""
    prefix = tables.meta.name.removesuffix("meta")
    contacts = tables.table(Contact)
    shared = _shared_emails(connection, contacts)
    if shared and unique_emails is not False:
        raise DuplicateEmails(shared)
    unique = unique_emails is not False
    for name, cols in _V1_INDEXES:
        ops.drop_index(index_name(f"{prefix}{name}", cols), table_name=f"{prefix}{name}")
    present = set(sa.inspect(connection).get_table_names())
    for table in tables.tables.values():
        if table.name not in present:
            continue  # a table of a later schema: its own step creates it
        for index in table.indexes:  # as schema 2 declares them, partial ones included
            index.create(connection)
    tables.email_indexes[0 if unique else 1].create(connection)
    tables.meta.create(connection)
    for entity, name in ((Activity, "body"), (StageChange, "expected_close")):
        table = tables.table(entity)
        ops.add_column(table.name, sa.Column(name, table.c[name].type, nullable=True))
    return unique


def _to_3(ops: Any, connection: Connection, tables: Schema, unique_emails: bool | None) -> bool:
    """Schema 2 -> 3 (privacy): the new tables of suppressions, erasures and the audit
    trail, with their indexes, as this schema declares them; no existing table changes.
    Returns the identity policy the database records, which this step keeps (in a chain
    from schema 1, where no policy is recorded yet, the one ``_to_2`` chose)."""
    del ops  # the step only adds tables
    for entity in (Suppression, Erasure, AuditEntry):
        tables.table(entity).create(connection)  # with its indexes
    meta = tables.meta
    policy = connection.execute(
        sa.select(meta.c.value).where(meta.c.key == IDENTITY_KEY)
    ).scalar_one_or_none()
    connection.execute(sa.delete(meta).where(meta.c.key.in_([VERSION_KEY, IDENTITY_KEY])))
    if policy is None:
        return unique_emails is not False
    return bool(policy != SHARED)


_STEPS: Final[Mapping[int, _Step]] = MappingProxyType({1: _to_2, 2: _to_3})
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
    unique: bool | None = None
    for version in range(found, SCHEMA_VERSION):
        unique = _STEPS[version](ops, connection, tables, unique_emails)
    meta = tables.meta
    if unique is not None:
        connection.execute(
            sa.insert(meta),
            [
                {"key": VERSION_KEY, "value": str(SCHEMA_VERSION)},
                {"key": IDENTITY_KEY, "value": UNIQUE if unique else SHARED},
            ],
        )
    if unique is not None:
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
