"""The SQLAlchemy adapter: a store on SQLite (embedded default) or PostgreSQL."""

import hashlib
import json
import re
import threading
import weakref
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext, suppress
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast
from uuid import UUID

import attrs
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.pool import StaticPool

from crmkit._extras import import_extra
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
    event_from_json,
    event_to_json,
    lane_of,
    payload_from_json,
    payload_to_json,
)
from crmkit.clock import SYSTEM_CLOCK, Clock, ensure_utc
from crmkit.errors import (
    ConcurrencyConflict,
    CrmkitError,
    DanglingReference,
    Duplicate,
    NotFound,
    SchemaOutdated,
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
    Money,
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
    merge_contacts,
    merge_from_json,
    merge_involves,
    merge_to_json,
    page_of,
    query_now,
    reach_counts_by_steps,
    start_after,
    task_query,
)
from crmkit.storage._columns import REFERENCES, REFERRERS, Kind, columns, memo
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
from crmkit.storage._query import Cursor, Order, Page
from crmkit.storage._steps import (
    check_new_step,
    check_step_claim,
    check_steps_settled,
    step_filter,
)
from crmkit.storage.sql._codec import Codec, check_table, codec, erase_columns
from crmkit.storage.sql._replay import (
    customer_spans_queries,
    reach_query,
    read_reach,
    read_standing,
    standing_query,
    standing_reader,
    standings_query,
)
from crmkit.storage.sql._rules import RuleCompiler
from crmkit.storage.sql._schema import (
    DEFAULT_PREFIX,
    SCHEMA_VERSION,
    Schema,
    email_key,
    schema,
)
from crmkit.storage.sql._states import settle_consent_states
from crmkit.storage.sql.types import Timestamp, UUIDType

__all__ = ["SqlStore", "SqlUnitOfWork", "configure_sqlite", "create_schema", "open_store"]

_E = TypeVar("_E", bound=Entity)
_H = TypeVar("_H", StageChange, AuditEntry)
_CHUNK: Final = 5000
ANALYZE_AFTER: Final = 10_000
"""An ``add_many`` of this many rows or more analyses its table when its unit commits."""
_PRIOR_ROWS: Final = 1_000_000
_ANALYSIS_LIMIT: Final = 2000
_ID_CHUNK: Final = 500
_KEY_STATEMENTS: dict[tuple[sa.Table, int, bool], Any] = {}
"""The look-ups of ``with_match_keys`` by match-key table, number of keys and limit."""
_DIALECTS: Final = ("sqlite", "postgresql")
_NESTED: Final = (
    "a unit of work of this store is already open in this thread: units of work do not "
    "nest (on SQLite the inner one would wait for the outer one until the busy timeout; "
    "on PostgreSQL it would be a second transaction that cannot see the outer one's "
    "changes and may wait for its locks forever); finish the outer unit first, or do "
    "the work in it"
)


# ---------------------------------------------------------------------------- engines


_CONFIGURED: Final["weakref.WeakSet[Engine]"] = weakref.WeakSet()


def configure_sqlite(
    engine: Engine, *, busy_timeout_ms: int = 10_000, cache_mb: int = 64
) -> Engine:
    """Make a SQLite engine behave: WAL, foreign keys, a busy timeout, real transactions,
    a page cache of ``cache_mb`` MiB per connection (SQLite's default is 2 MiB, which makes
    every write to a large database read its index pages from disk again).

    Python's ``sqlite3`` module opens transactions on its own terms, which breaks
    SAVEPOINTs; this hands transaction control to SQLAlchemy and starts every
    transaction with ``BEGIN IMMEDIATE``, so that two writers queue on the busy timeout
    instead of failing when one upgrades a read lock. :func:`open_store` calls it for the
    engines it is given; call it yourself on an engine of your own before its first
    connection if you join its connections. Calling it again changes nothing.
    """
    if not isinstance(engine, Engine) or engine.dialect.name != "sqlite":
        raise ValidationError("engine", engine, "expected a SQLAlchemy engine for SQLite")
    if type(busy_timeout_ms) is not int or busy_timeout_ms < 0:
        raise ValidationError("busy_timeout_ms", busy_timeout_ms, "expected an int >= 0")
    if type(cache_mb) is not int or not 1 <= cache_mb <= 1 << 20:
        raise ValidationError("cache_mb", cache_mb, "expected an int from 1 to 1048576")
    if engine in _CONFIGURED:
        return engine
    _CONFIGURED.add(engine)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms:d}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute(f"PRAGMA cache_size = {-1024 * cache_mb:d}")
        cursor.execute(f"PRAGMA analysis_limit = {_ANALYSIS_LIMIT:d}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _engine(url: str | sa.URL) -> Engine:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ValidationError("target", url, "not a database URL") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.drivername not in ("postgresql", "postgresql+psycopg"):
            raise ValidationError(
                "target", str(parsed), "crmkit speaks to PostgreSQL through psycopg 3"
            )
        import_extra("psycopg", extra="postgres", feature="the PostgreSQL store")
        parsed = parsed.set(drivername="postgresql+psycopg")
        return sa.create_engine(parsed, pool_pre_ping=True)
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            engine = sa.create_engine(
                parsed, poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        else:
            engine = sa.create_engine(parsed)
        return configure_sqlite(engine)
    raise ValidationError("target", str(parsed), "crmkit stores in SQLite or PostgreSQL")


VERSION_KEY: Final = "schema_version"
IDENTITY_KEY: Final = "email_identity"
UNIQUE: Final = "unique"
SHARED: Final = "shared"


def create_schema(
    bind: Engine | Connection, *, prefix: str = DEFAULT_PREFIX, unique_emails: bool = True
) -> None:
    """Create crmkit's tables and indexes where they are missing, and record the schema
    version and the identity policy (``unique_emails``: one contact per folded e-mail
    address and tenant, the default; ``False`` lets contacts share an address).

    A database that holds crmkit tables of an older schema is left alone:
    :class:`~crmkit.errors.SchemaOutdated` names the upgrade.
    """
    if not isinstance(bind, Engine | Connection):
        raise ValidationError("bind", bind, "expected a SQLAlchemy engine or connection")
    if not isinstance(unique_emails, bool):
        raise ValidationError("unique_emails", unique_emails, "expected True or False")
    if isinstance(bind, Engine):
        with bind.begin() as connection:
            _create(connection, schema(prefix), unique_emails)
    else:
        _create(bind, schema(prefix), unique_emails)


def _declare_inline(tables: Schema) -> None:
    """Let SQLite declare every foreign key in its ``CREATE TABLE``.

    The foreign keys of a cycle (leads and deals) are ``use_alter`` ones: on PostgreSQL
    ``create_all`` adds them with ``ALTER TABLE ... ADD CONSTRAINT`` after the tables,
    and SQLAlchemy then marks each such constraint object as never to be declared
    inline again. The constraint objects belong to the process-wide :func:`schema`, so
    a SQLite database created afterwards in the same process would lose those keys;
    SQLite cannot add them later, so they are made inline-able again first.
    """
    for table in tables.metadata.tables.values():
        for key in table.foreign_key_constraints:
            if key.use_alter:
                key._create_rule = None


def _create(connection: Connection, tables: Schema, unique_emails: bool) -> dict[str, str]:
    """Create the tables unless they are there (of this schema); the meta facts."""
    facts = _recorded(connection, tables, str(connection.engine.url))
    if facts is not None:
        return facts
    if not connection.dialect.supports_alter:
        _declare_inline(tables)
    tables.metadata.create_all(connection, checkfirst=True)
    index = tables.email_indexes[0 if unique_emails else 1]
    index.create(connection, checkfirst=True)
    plan_priors(connection, tables)
    facts = {VERSION_KEY: str(SCHEMA_VERSION), IDENTITY_KEY: UNIQUE if unique_emails else SHARED}
    connection.execute(sa.insert(tables.meta), [{"key": k, "value": v} for k, v in facts.items()])
    return facts


def analyze(connection: Connection, names: Sequence[str]) -> None:
    """Refresh the planner's statistics of the tables ``names`` (SQLite reads at most
    ``analysis_limit`` rows per index, so this stays quick on large tables)."""
    quote = connection.dialect.identifier_preparer.quote
    for name in names:
        connection.exec_driver_sql(f"ANALYZE {quote(name)}")


def plan_priors(connection: Connection, tables: Schema) -> None:
    """On SQLite, give the query planner statistics before ``ANALYZE`` has any.

    Without statistics SQLite guesses that an equality on an index's first column keeps
    about ten rows, and every index here starts with ``tenant``, which is one value for
    most databases. So it would walk ``(tenant, id)`` to avoid sorting a contact's three
    leads, reading the whole table. These rows of ``sqlite_stat1`` say what is true of
    any crmkit database: ``tenant`` selects (nearly) everything, a status or stage a
    tenth, any other key a few rows. SQLite documents this use of ``sqlite_stat1`` for
    stable plans; ``ANALYZE`` (run after bulk imports) replaces them with measured ones.
    Tables that have statistics already keep them.
    """
    if connection.dialect.name != "sqlite":
        return
    connection.exec_driver_sql("ANALYZE sqlite_schema")  # makes sqlite_stat1 if missing
    known = {row[0] for row in connection.exec_driver_sql("SELECT tbl FROM sqlite_stat1")}
    rows: list[tuple[str, str, str]] = []
    for table in [*tables.tables.values(), tables.members, tables.match_keys]:
        if table.name in known:
            continue
        keys = [None] * (len(table.primary_key.columns) - 1)
        rows.append((table.name, f"sqlite_autoindex_{table.name}_1", _prior(keys, unique=True)))
        indexes = [*table.indexes]
        if table is tables.table(Contact):
            indexes.extend(tables.email_indexes)
        for index in indexes:
            after_tenant = [_enum_column(table, e) for e in list(index.expressions)[1:]]
            rows.append((table.name, str(index.name), _prior(after_tenant, index.unique)))
    connection.exec_driver_sql("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)", rows)
    connection.exec_driver_sql("ANALYZE sqlite_schema")  # loads them


def _prior(columns: Sequence[bool | None], unique: bool) -> str:
    """The ``sqlite_stat1`` row of an index on ``tenant`` and ``columns`` (``True``: an
    enum column, which keeps a tenth of the rows; otherwise ten rows, then fewer)."""
    n = _PRIOR_ROWS
    stats = [n, n]
    for position, few in enumerate(columns):
        stats.append((n // 10 if few else 10) if position == 0 else max(1, stats[-1] // 10))
    if unique:
        stats[-1] = 1
    return " ".join(map(str, stats))


def _enum_column(table: sa.Table, expression: object) -> bool:
    """Whether an index expression is a column of few values (an enum: a status, a
    stage), stored as ``String(32)``."""
    name = getattr(expression, "name", None)
    if not isinstance(name, str) or name not in table.c:
        return False
    kind = table.c[name].type
    return isinstance(kind, sa.String) and kind.length == 32


def _meta(connection: Connection, tables: Schema) -> tuple[int | None, dict[str, str]]:
    """The crmkit schema version of the database (``1`` for crmkit 0.1's tables, which
    record none; ``None`` when it holds no crmkit tables) and the rows of its meta table,
    read once."""
    inspector = sa.inspect(connection)
    if not inspector.has_table(tables.meta.name):
        return (1 if inspector.has_table(tables.table(Contact).name) else None), {}
    rows = connection.execute(sa.select(tables.meta.c.key, tables.meta.c.value)).all()
    facts = {str(row[0]): str(row[1]) for row in rows}
    version = facts.get(VERSION_KEY)
    if version is None or not version.isdigit():
        raise StorageError(f"the table {tables.meta.name} records no schema version")
    return int(version), facts


def database_version(connection: Connection, tables: Schema) -> int | None:
    """The crmkit schema version of the database (see :func:`_meta`)."""
    return _meta(connection, tables)[0]


def _recorded(connection: Connection, tables: Schema, target: str) -> dict[str, str] | None:
    """The meta facts of a database of this crmkit's schema; ``None`` for a database
    without crmkit tables; :class:`SchemaOutdated` for any other version."""
    version, facts = _meta(connection, tables)
    if version is None:
        return None
    if version != SCHEMA_VERSION:
        raise SchemaOutdated(version, SCHEMA_VERSION, target)
    return facts


def engine_of(target: object) -> tuple[Engine | None, bool]:
    """The engine to use for ``target`` and whether it was made here (then dispose of it):
    ``None`` for a connection."""
    if isinstance(target, Connection):
        return None, False
    if isinstance(target, Engine):
        if target.dialect.name == "sqlite":
            configure_sqlite(target)
        return target, False
    if isinstance(target, str | sa.URL):
        return _engine(target), True
    raise ValidationError("target", target, "expected a URL, an Engine or a Connection")


def open_store(
    target: str | sa.URL | Engine | Connection,
    *,
    tenant: str = "default",
    prefix: str = DEFAULT_PREFIX,
    clock: Clock = SYSTEM_CLOCK,
    create: bool = True,
    unique_emails: bool | None = None,
) -> "SqlStore":
    """Open a store on a database URL, an engine or a host's connection.

    * ``"sqlite:///crm.db"`` (the embedded default) or
      ``"postgresql+psycopg://user@host/db"`` (extra ``postgres``): the store owns the
      engine and :meth:`SqlStore.close` disposes of it;
    * an :class:`~sqlalchemy.engine.Engine`: the store uses it and leaves it open;
    * a :class:`~sqlalchemy.engine.Connection`: the store *joins* it. Each unit of work
      is a SAVEPOINT inside the host's transaction, so crmkit's writes commit or roll
      back with the host's.

    ``create`` creates the tables in a database without them (pass ``False`` when
    migrations own the schema). A database of an older crmkit schema raises
    :class:`~crmkit.errors.SchemaOutdated` naming the upgrade (:func:`upgrade`).

    ``unique_emails`` is the identity policy of a new database: ``True`` (the default)
    keeps one contact per folded e-mail address and tenant, enforced by a unique index;
    ``False`` lets contacts share an address (as Salesforce does). An existing database
    keeps the policy it was created with; naming the other one raises
    :class:`~crmkit.errors.StorageError`.
    """
    if unique_emails is not None and not isinstance(unique_emails, bool):
        raise ValidationError("unique_emails", unique_emails, "expected True, False or None")
    tenant = check_tenant(tenant)
    tables = schema(prefix)
    if not callable(getattr(clock, "now", None)):
        raise ValidationError("clock", clock, "expected a Clock (an object with now())")
    engine, owned = engine_of(target)
    if engine is None:  # a host's connection, whose transaction the store joins
        assert isinstance(target, Connection)
        if target.dialect.name == "sqlite" and target.engine not in _CONFIGURED:
            raise StorageError(
                "call configure_sqlite(engine) before its first connection, then join one"
            )
        store = SqlStore(tables, tenant, clock, engine=None, connection=target, owned=False)
    else:
        store = SqlStore(tables, tenant, clock, engine=engine, connection=None, owned=owned)
    described = str(target.engine.url if isinstance(target, Connection) else store._url())
    try:
        with store._errors():
            if isinstance(target, Connection):
                store._open(target, create, unique_emails, described)
            else:
                assert store.engine is not None
                with store.engine.begin() as connection:
                    store._open(connection, create, unique_emails, described)
    except BaseException:
        store.close()
        raise
    return store


# ---------------------------------------------------------------------------- the store


class SqlStore:
    """A store on a SQL database, for one tenant (open it with :func:`open_store`)."""

    def __init__(
        self,
        tables: Schema,
        tenant: str,
        clock: Clock,
        *,
        engine: Engine | None,
        connection: Connection | None,
        owned: bool,
    ) -> None:
        self.schema = tables
        self._tenant = tenant
        self._clock = clock
        self.engine = engine
        self.connection = connection
        self._owned = owned
        bind = engine if engine is not None else connection
        assert bind is not None
        self.sql_dialect = bind.dialect
        self.dialect = bind.dialect.name
        if self.dialect not in _DIALECTS:
            raise StorageError(f"crmkit stores in SQLite or PostgreSQL, not {self.dialect}")
        single = engine is not None and isinstance(engine.pool, StaticPool)
        self._lock: threading.RLock | None = threading.RLock() if single else None
        self._active = threading.local()
        """Whether a unit of work of this store (or of its ``for_tenant`` siblings, which
        share the engine) is open in the current thread."""
        self._closed = False
        self.unique_emails = True
        """The database's identity policy: one contact per folded e-mail address."""

    def _url(self) -> str:
        assert self.engine is not None
        return self.engine.url.render_as_string(hide_password=True)

    def _open(
        self, connection: Connection, create: bool, unique_emails: bool | None, target: str
    ) -> None:
        """Check (or create) the schema and read the identity policy."""
        facts = _recorded(connection, self.schema, target)
        if facts is None:
            if not create:
                raise StorageError(
                    f"{target} holds no crmkit tables: open it with create=True "
                    "or call create_schema"
                )
            facts = _create(connection, self.schema, unique_emails is not False)
        self.unique_emails = facts.get(IDENTITY_KEY, UNIQUE) == UNIQUE
        if unique_emails is not None and unique_emails != self.unique_emails:
            raise StorageError(
                f"unique_emails={unique_emails} differs from the database's identity policy "
                f"({facts.get(IDENTITY_KEY)}): open it with unique_emails=None"
            )

    @property
    def tenant(self) -> str:
        """The tenant whose rows this store reads and writes."""
        return self._tenant

    @property
    def clock(self) -> Clock:
        """The clock that gives ``now`` to queries that do not pass one."""
        return self._clock

    def for_tenant(self, tenant: str, /) -> "SqlStore":
        """A store on the same database (and engine or connection) for another tenant."""
        other = SqlStore(
            self.schema,
            check_tenant(tenant),
            self._clock,
            engine=self.engine,
            connection=self.connection,
            owned=False,
        )
        other._lock = self._lock
        other.unique_emails = self.unique_emails
        other._active = self._active
        return other

    @contextmanager
    def unit_of_work(self) -> Iterator["SqlUnitOfWork"]:
        """A unit of work: commit to keep its changes; leaving the block rolls back.

        Units of work do not nest: opening one while another of this store (or of a
        store ``for_tenant`` made from it) is open in the same thread raises
        :class:`~crmkit.errors.StorageError` at once.
        """
        if self._closed:
            raise StorageError("this store is closed")
        if getattr(self._active, "open", False):
            raise StorageError(_NESTED)
        self._active.open = True
        if self._lock is not None:
            self._lock.acquire()
        try:
            with self._errors():
                if self.connection is not None:
                    connection, owned = self.connection, False
                else:
                    assert self.engine is not None
                    connection, owned = self.engine.connect(), True
            unit = SqlUnitOfWork(self, connection)
            try:
                yield unit
            finally:
                with self._errors():
                    unit._end()
                    if owned:
                        connection.close()
        finally:
            if self._lock is not None:
                self._lock.release()
            self._active.open = False

    def scrub(self) -> None:
        """Remove overwritten data from the database's files, after an erasure.

        An erasure overwrites a person's values, but a database keeps the old bytes in
        free pages and its log until they are reused. On SQLite this checkpoints the
        write-ahead log, rebuilds the file (``VACUUM``) and truncates the log to zero
        bytes: afterwards neither file holds an erased value. On PostgreSQL it runs
        ``VACUUM`` on crmkit's tables, so that the old row versions are freed. It needs
        no unit of work open on the database, and a store opened on an engine (not on
        a joined connection). Failures raise :class:`~crmkit.errors.StorageError`.
        """
        if self._closed:
            raise StorageError("this store is closed")
        if self.engine is None:
            raise StorageError("scrub needs a store opened on an engine, not a connection")
        with self._errors():
            if self.dialect == "sqlite":
                raw = self.engine.raw_connection()
                try:
                    cursor = raw.cursor()
                    cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    cursor.execute("VACUUM")
                    cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    cursor.close()
                finally:
                    raw.close()
                return
            options = {"isolation_level": "AUTOCOMMIT"}
            with self.engine.connect().execution_options(**options) as connection:
                for table in self.schema.metadata.sorted_tables:
                    connection.exec_driver_sql(f"VACUUM {table.name}")

    def close(self) -> None:
        """Dispose of the engine if the store opened it; the store cannot be used after."""
        self._closed = True
        if self._owned and self.engine is not None:
            self.engine.dispose()

    def _is_integrity_error(self, error: BaseException) -> bool:
        """Whether ``error`` is a constraint violation, from SQLAlchemy or the driver."""
        dbapi = self.sql_dialect.loaded_dbapi
        return isinstance(error, sa.exc.IntegrityError | dbapi.IntegrityError)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Database failures as :class:`~crmkit.errors.StorageError`."""
        try:
            yield
        except CrmkitError:
            raise
        except sa.exc.SQLAlchemyError as error:
            raise StorageError(f"{type(error).__name__}: {error}") from error
        except self.sql_dialect.loaded_dbapi.Error as error:
            raise StorageError(f"{type(error).__name__}: {error}") from error
        except OverflowError as error:
            raise StorageError(f"a sum or value overflows the database: {error}") from error


class SqlUnitOfWork:
    """A unit of work of :class:`SqlStore`: one transaction (a SAVEPOINT when joined)."""

    def __init__(self, store: SqlStore, connection: Connection) -> None:
        self.store = store
        self.connection = connection
        self._transaction: sa.engine.Transaction | None = None
        self._open = True
        self._bulk: set[str] = set()  # tables filled by a bulk import, analysed on commit
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
        """Make everything done so far permanent (when joined: part of the host's).

        After a bulk import (``add_many`` of :data:`ANALYZE_AFTER` rows or more) the
        tables it filled are analysed first, as SQLite and PostgreSQL recommend, so
        the query planner's statistics follow the data.
        """
        self._check_open()
        if self._transaction is not None and self._transaction.is_active:
            with self.store._errors():
                if self._bulk:
                    analyze(self.connection, sorted(self._bulk))
                self._transaction.commit()
        self._transaction = None
        self._bulk.clear()

    def rollback(self) -> None:
        """Discard everything done since the last commit."""
        self._check_open()
        self._rollback()

    def _rollback(self) -> None:
        if self._transaction is not None and self._transaction.is_active:
            self._transaction.rollback()
        self._transaction = None
        self._bulk.clear()

    def _end(self) -> None:
        self._open = False
        self._rollback()

    def _check_open(self) -> None:
        if not self._open:
            raise StorageError("this unit of work has ended")

    def _conn(self) -> Connection:
        """The connection, inside this unit's transaction (begun on first use)."""
        self._check_open()
        if self._transaction is None or not self._transaction.is_active:
            with self.store._errors():
                joined = self.store.connection is not None
                self._transaction = (
                    self.connection.begin_nested() if joined else self.connection.begin()
                )
        return self.connection

    @contextmanager
    def _savepoint(self) -> Iterator[Connection]:
        """A SAVEPOINT inside the transaction: what fails in it is undone alone."""
        connection = self._conn()
        nested = connection.begin_nested()
        try:
            yield connection
        except BaseException:
            if nested.is_active:
                nested.rollback()
            raise
        else:
            nested.commit()

    def _compiler(self, now: datetime) -> RuleCompiler:
        def segment(segment_id: UUID) -> Segment | None:
            return self.segments._find_one(segment_id)

        store = self.store
        return RuleCompiler(store.schema, store.dialect, store.tenant, now, segment)


# ---------------------------------------------------------------------------- repositories


@attrs.frozen
class _Statements:
    """The driver-level SQL one repository writes with."""

    insert: str
    update: str
    copy: str


@memo
def _statements(table: sa.Table, codec: Codec, dialect: Dialect) -> _Statements:
    """Written once per table and dialect, not for every unit of work."""
    check_table(table, codec.names)
    quote = dialect.identifier_preparer.quote
    mark = "?" if dialect.name == "sqlite" else "%s"
    names = codec.names
    name = quote(table.name)
    cols = ", ".join(quote(n) for n in names)
    sets = ", ".join(f"{quote(n)} = {mark}" for n in names[2:])
    key = f"tenant = {mark} AND id = {mark} AND version = {mark}"
    return _Statements(
        insert=f"INSERT INTO {name} ({cols}) VALUES ({', '.join([mark] * len(names))})",
        update=f"UPDATE {name} SET {sets} WHERE {key}",
        copy=f"COPY {name} ({cols}) FROM STDIN",
    )


@memo
def read_columns(table: sa.Table, codec: Codec) -> tuple[sa.ColumnElement[Any], ...]:
    """The columns ``codec.decode`` reads, without SQLAlchemy's result processing."""
    return tuple(sa.type_coerce(table.c[name], sa.types.NullType()) for name in codec.read_names)


def _fetch(
    connection: Connection, statement: sa.Select[Any], params: Mapping[str, Any] | None = None
) -> list[Any]:
    """Every row of ``statement`` as the driver's tuples (no per-row work in SQLAlchemy)."""
    result = connection.execute(statement, params)
    try:
        return cast(list[Any], result.cursor.fetchall())
    finally:
        result.close()


def _same(value: UUID) -> UUID:
    return value


def _uuid_of_hex(value: str) -> UUID:
    return UUID(hex=value)


_KEY: Final = re.compile(r"\)=\([^,]*, ([^)]*)\)")
"""The referred id in PostgreSQL's detail of a foreign key violation."""


def _dangling(
    field: str, value: UUID, target: type[Entity], offset: int | None, number: int
) -> DanglingReference:
    where = field if offset is None else f"[{offset + number}].{field}"
    return DanglingReference(where, value, f"no {target.entity_name} with this id is stored")


class _Packed:
    """Optional strings packed in one buffer (a bulk import's unique keys, in bounded
    memory: their UTF-8 bytes and an offset each)."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._ends = array("Q")
        self._none = array("b")

    def append(self, value: str | None) -> None:
        if value is not None:
            self._data += value.encode()
        self._ends.append(len(self._data))
        self._none.append(value is None)

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index: int) -> str | None:
        if self._none[index]:
            return None
        start = self._ends[index - 1] if index else 0
        return self._data[start : self._ends[index]].decode()


class _Repository(Generic[_E]):
    def __init__(self, unit: SqlUnitOfWork, entity: type[_E]) -> None:
        self._unit = unit
        self._entity = entity
        store = unit.store
        self._table = store.schema.table(entity)
        self._codec: Codec = codec(entity, store.dialect)
        self._tenant = store.tenant
        self._name = entity.entity_name
        self._sql = _statements(self._table, self._codec, store.sql_dialect)
        # Read as the driver gives them (the codec converts), so that SQLAlchemy's
        # per-value result processing is skipped.
        self._read = read_columns(self._table, self._codec)
        self._read_id: Callable[[Any], UUID] = (
            _same if store.dialect == "postgresql" else _uuid_of_hex
        )

    @property
    def entity(self) -> type[_E]:
        return self._entity

    # ------------------------------------------------------------------ reading

    def _base(self) -> sa.Select[Any]:
        return sa.select(*self._read).where(self._table.c.tenant == self._tenant)

    def _load(
        self,
        statement: sa.Select[Any],
        params: Mapping[str, Any] | None = None,
        *,
        decode: Callable[..., Any] | None = None,
    ) -> list[Any]:
        """The entities (or what ``decode``, the codec's ``document``, makes) of the rows."""
        unit = self._unit
        decode = self._codec.decode if decode is None else decode
        with unit.store._errors():
            rows = _fetch(unit._conn(), statement, params)
            try:
                if self._codec.members_field is None:
                    return [cast(_E, decode(row)) for row in rows]
                ids = [self._read_id(row[0]) for row in rows]
                members = self._members(ids)
                return [
                    cast(_E, decode(row, members.get(id, frozenset())))
                    for id, row in zip(ids, rows, strict=True)
                ]
            except CrmkitError:
                raise
            except (TypeError, ValueError) as error:
                raise StorageError(f"a stored {self._name} cannot be read: {error}") from error

    def _members(self, ids: Sequence[UUID]) -> dict[UUID, frozenset[UUID]]:
        table = self._unit.store.schema.members
        found: dict[UUID, set[UUID]] = {}
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = ids[start : start + _ID_CHUNK]
            statement = sa.select(table.c.segment_id, table.c.member_id).where(
                table.c.tenant == self._tenant, table.c.segment_id.in_(chunk)
            )
            for segment_id, member_id in self._unit._conn().execute(statement):
                found.setdefault(segment_id, set()).add(member_id)
        return {k: frozenset(v) for k, v in found.items()}

    def _find_one(self, id: UUID) -> _E | None:
        found = self._load(self._base().where(self._table.c.id == id))
        return found[0] if found else None

    def referring(self, field: str, id: UUID, /) -> list[_E]:
        field = check_reference(field, self._entity)
        table = self._table
        statement = self._base().where(table.c[field] == check_id(id))
        return self._load(statement.order_by(table.c.created_at, table.c.id))

    def referring_documents(self, field: str, id: UUID, /) -> list[dict[str, Any]]:
        field = check_reference(field, self._entity)
        table = self._table
        statement = self._base().where(table.c[field] == check_id(id))
        statement = statement.order_by(table.c.created_at, table.c.id)
        return self._load(statement, decode=self._codec.document)

    def erase_referring(
        self, field: str, id: UUID, values: Mapping[str, Any], /, *, at: datetime
    ) -> int:
        field = check_reference(field, self._entity)
        id = check_id(id)
        values = check_erase_values(self._entity, values)
        at = ensure_utc(at, "at")
        if self._keyed:  # keys beside the rows: written as update writes them
            changed = [erased(item, values, at) for item in self.referring(field, id)]
            for new in changed:
                if new is not None:
                    self._replace(new, new.version - 1)
            return sum(new is not None for new in changed)
        table = self._table
        sets: dict[str, Any] = {}
        differs = []
        for name, value in values.items():
            column = columns(self._entity)[name]
            written = erase_columns(self._entity, column, value)
            sets.update(written)
            if column.kind in (Kind.TAGS, Kind.JSON):  # JSON: compared as its text
                differs.append(sa.cast(table.c[name], sa.Text) != written[name])
            else:
                differs.append(table.c[name].is_distinct_from(written[name]))
        stamp = sa.bindparam("erased_at", at, type_=table.c.updated_at.type)
        sets["version"] = table.c.version + 1
        sets["updated_at"] = sa.case((table.c.updated_at < stamp, stamp), else_=table.c.updated_at)
        statement = (
            sa.update(table)
            .where(table.c.tenant == self._tenant, table.c[field] == id, sa.or_(*differs))
            .values(sets)
        )
        with self._unit.store._errors(), self._unit._savepoint() as connection:
            return int(connection.execute(statement).rowcount)

    def get(self, id: UUID, /) -> _E:
        found = self._find_one(check_id(id))
        if found is None:
            raise NotFound(self._name, id)
        return found

    def get_many(self, ids: Iterable[UUID], /) -> Mapping[UUID, _E]:
        wanted = check_ids(ids)
        found: dict[UUID, _E] = {}
        for start in range(0, len(wanted), _ID_CHUNK):
            chunk = wanted[start : start + _ID_CHUNK]
            for item in self._load(self._base().where(self._table.c.id.in_(chunk))):
                found[item.id] = item
        return {i: found[i] for i in wanted if i in found}

    # ------------------------------------------------------------------ writing

    def _raw(self, connection: Connection) -> Any:
        return connection.connection.driver_connection

    def _write_rows(self, connection: Connection, rows: list[tuple[Any, ...]]) -> None:
        if self._unit.store.dialect == "postgresql":
            with self._raw(connection).cursor() as cursor, cursor.copy(self._sql.copy) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            self._raw(connection).executemany(self._sql.insert, rows)

    def _write_members(self, connection: Connection, items: Sequence[Entity]) -> None:
        if self._codec.members_field is None:
            return
        table = self._unit.store.schema.members
        rows = [
            {"tenant": self._tenant, "segment_id": item.id, "member_id": member}
            for item in items
            for member in getattr(item, self._codec.members_field)
        ]
        if rows:
            connection.execute(sa.insert(table), rows)

    _keyed = False
    """Whether the store keeps match keys of this entity (contacts and accounts)."""

    def _key_rows(self, items: Iterable[Entity]) -> list[dict[str, Any]]:
        tenant, name = self._tenant, self._name
        return [
            {"tenant": tenant, "entity": name, "key": key, "value": value, "subject_id": item.id}
            for item in items
            for key, value in match_keys(item)
        ]

    def _write_keys(self, connection: Connection, items: Sequence[Entity]) -> None:
        if not self._keyed:
            return
        rows = self._key_rows(items)
        if rows:
            connection.execute(sa.insert(self._unit.store.schema.match_keys), rows)

    def _delete_keys(self, connection: Connection, id: UUID) -> None:
        if not self._keyed:
            return
        table = self._unit.store.schema.match_keys
        connection.execute(
            sa.delete(table).where(table.c.tenant == self._tenant, table.c.subject_id == id)
        )

    def _delete_members(self, connection: Connection, id: UUID) -> None:
        if self._codec.members_field is None:
            return
        table = self._unit.store.schema.members
        connection.execute(
            sa.delete(table).where(table.c.tenant == self._tenant, table.c.segment_id == id)
        )

    def add(self, item: _E, /) -> _E:
        item = check_item(item, self._entity)
        row = self._codec.encode(self._tenant, item)
        with self._unit.store._errors():
            try:
                with self._unit._savepoint() as connection:
                    self._write_rows(connection, [row])
                    self._write_members(connection, [item])
                    self._write_keys(connection, [item])
            except Exception as error:
                if not self._unit.store._is_integrity_error(error):
                    raise
                if self._find_one(item.id) is not None:
                    raise Duplicate(self._name, item.id) from None
                taken = self._taken_key([item], None) or self._dangling([item], None)
                if taken is not None:
                    raise taken from None
                raise
        return item

    def _dangling(self, items: Sequence[_E], offset: int | None) -> DanglingReference | None:
        """The first reference of ``items`` that names no stored entity of the tenant
        (read after the refused write's savepoint rolled back)."""
        connection = self._unit._conn()
        for field, target in REFERENCES.get(self._entity, ()):
            wanted = list({v for v in (getattr(i, field) for i in items) if v is not None})
            parent = self._unit.store.schema.table(target)
            stored: set[UUID] = set()
            for start in range(0, len(wanted), _ID_CHUNK):
                statement = sa.select(parent.c.id).where(
                    parent.c.tenant == self._tenant,
                    parent.c.id.in_(wanted[start : start + _ID_CHUNK]),
                )
                stored.update(connection.execute(statement).scalars())
            for number, item in enumerate(items):
                value = getattr(item, field)
                if value is not None and value not in stored:
                    return _dangling(field, value, target, offset, number)
        return None

    def _taken_key(self, items: Sequence[_E], offset: int | None) -> Duplicate | None:
        """A unique key other than the id that one of ``items`` repeats (none here)."""
        return None

    def add_many(self, items: Iterable[_E], /) -> int:
        check_many(items, "items")
        unit = self._unit
        if unit.store.dialect == "postgresql" and self._codec.members_field is None:
            return self._copy_many(items)
        total = 0
        with unit.store._errors(), unit._savepoint() as connection:
            iterator = iter(items)
            while chunk := list(islice(iterator, _CHUNK)):
                rows = []
                for offset, item in enumerate(chunk):
                    check_item(item, self._entity, f"[{total + offset}]")
                    rows.append(self._codec.encode(self._tenant, item))
                try:
                    with unit._savepoint():
                        self._write_rows(connection, rows)
                        self._write_members(connection, chunk)
                        self._write_keys(connection, chunk)
                except Exception as error:
                    if unit.store._is_integrity_error(error):
                        raise self._duplicate(chunk, total) from None
                    raise
                total += len(chunk)
        self._bulk_done(total)
        return total

    def _bulk_done(self, rows: int) -> None:
        if rows >= ANALYZE_AFTER:
            self._unit._bulk.add(self._table.name)

    def _copy_many(self, items: Iterable[_E]) -> int:
        """``add_many`` on PostgreSQL: one ``COPY`` for the whole call, streamed.

        Only the ids are kept (16 bytes each), and the unique keys besides (contacts'
        folded e-mail, packed), to name the first taken one if the database refuses the
        rows.
        """
        unit, entity, tenant, encode = self._unit, self._entity, self._tenant, self._codec.encode
        ids = bytearray()
        keys = _Packed()
        key_of = self._key_of
        match_rows: list[tuple[str, str, str, str, UUID]] = []
        keyed, name = self._keyed, self._name
        total = 0
        with unit.store._errors():
            try:
                with unit._savepoint() as connection:
                    with (
                        self._raw(connection).cursor() as cursor,
                        cursor.copy(self._sql.copy) as copy,
                    ):
                        for index, item in enumerate(items):
                            check_item(item, entity, f"[{index}]")
                            ids += item.id.bytes
                            keys.append(key_of(item))
                            copy.write_row(encode(tenant, item))
                            if keyed:
                                match_rows.extend(
                                    (tenant, name, k, v, item.id) for k, v in match_keys(item)
                                )
                            total = index + 1
                    if match_rows:
                        self._copy_keys(connection, match_rows)
                self._bulk_done(total)
            except Exception as error:
                if unit.store._is_integrity_error(error):
                    refused = self._copy_refused(error)
                    raise (refused or self._first_taken(ids, keys)) from None
                raise
        return total

    def _copy_refused(self, error: Exception) -> DanglingReference | None:
        """The reference that made PostgreSQL refuse a ``COPY``, read from the driver's
        diagnostics (the constraint and the key), since the streamed items are gone by
        then: it names the field and the id, not the item's position (PostgreSQL checks
        foreign keys after the last row). ``None`` when no foreign key refused it."""
        diag = getattr(getattr(error, "orig", error), "diag", None)
        name = getattr(diag, "constraint_name", None)
        fields = {c.name: c.column_keys[1] for c in self._table.foreign_key_constraints}
        if name not in fields:
            return None
        field = fields[name]
        target = dict(REFERENCES[self._entity])[field]
        key = _KEY.search(getattr(diag, "message_detail", None) or "")
        value: object = key.group(1) if key else None
        with suppress(ValueError):
            value = UUID(str(value))
        return DanglingReference(field, value, f"no {target.entity_name} with this id is stored")

    def _copy_keys(
        self, connection: Connection, rows: list[tuple[str, str, str, str, UUID]]
    ) -> None:
        """Write match-key rows with one ``COPY`` (PostgreSQL)."""
        table = self._unit.store.schema.match_keys
        columns = ", ".join(c.name for c in table.columns)
        statement = f"COPY {table.name} ({columns}) FROM STDIN"
        with self._raw(connection).cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def _key_of(self, item: _E) -> str | None:
        """The unique key of ``item`` besides its id, if its table has one."""
        return None

    def _stored_keys(self, keys: list[str]) -> set[str]:
        """Which of ``keys`` (see :meth:`_key_of`) stored rows have."""
        return set()

    def _first_taken(self, ids: bytearray, keys: "_Packed") -> Exception:
        """The first of ``ids`` (16 bytes each) already stored or repeated, else the first
        unique key of ``keys`` taken, as Duplicate."""
        seen: set[bytes] = set()
        id_ = self._table.c.id
        for start in range(0, len(ids), 16 * _ID_CHUNK):
            chunk = [
                UUID(bytes=bytes(ids[i : i + 16]))
                for i in range(start, min(start + 16 * _ID_CHUNK, len(ids)), 16)
            ]
            statement = sa.select(self._read[0]).where(
                self._table.c.tenant == self._tenant, id_.in_(chunk)
            )
            stored = {self._read_id(row[0]) for row in _fetch(self._unit._conn(), statement)}
            for offset, item_id in enumerate(chunk):
                if item_id.bytes in seen or item_id in stored:
                    return Duplicate(self._name, item_id, index=start // 16 + offset)
                seen.add(item_id.bytes)
        seen_keys: set[str] = set()
        for start in range(0, len(keys), _ID_CHUNK):
            chunk_keys = [keys[i] for i in range(start, min(start + _ID_CHUNK, len(keys)))]
            taken = self._stored_keys([k for k in chunk_keys if k is not None])
            for offset, key in enumerate(chunk_keys):
                if key is not None and (key in seen_keys or key in taken):
                    return Duplicate(self._name, key, index=start + offset, field=self._key_name)
                if key is not None:
                    seen_keys.add(key)
        return StorageError(f"a {self._name} row violates a constraint")  # pragma: no cover

    _key_name: str = "key"

    def _duplicate(self, chunk: Sequence[_E], offset: int) -> Exception:
        """The first item of ``chunk`` whose id is taken, as a :class:`Duplicate`."""
        seen: set[UUID] = set()
        stored = set(self.get_many([item.id for item in chunk]))
        for index, item in enumerate(chunk):
            if item.id in seen or item.id in stored:
                return Duplicate(self._name, item.id, index=offset + index)
            seen.add(item.id)
        taken = self._taken_key(chunk, offset) or self._dangling(chunk, offset)
        if taken is not None:
            return taken
        return StorageError(f"a {self._name} row violates a constraint")  # pragma: no cover

    def _stored_version(self, id: UUID) -> int | None:
        statement = sa.select(self._table.c.version).where(
            self._table.c.tenant == self._tenant, self._table.c.id == id
        )
        return self._unit._conn().execute(statement).scalar_one_or_none()

    def update(self, item: _E, /) -> _E:
        item = check_item(item, self._entity)
        return self._replace(attrs.evolve(item, version=item.version + 1), item.version)

    def restore(self, item: _E, /, *, version: int) -> _E:
        item = check_item(item, self._entity)
        return self._replace(item, check_version(version))

    def _replace(self, new: _E, version: int) -> _E:
        """Write ``new`` over the stored row if that is at ``version``.

        A row of several statements (match keys, segment members) is written in a
        SAVEPOINT, so that a refused statement undoes the others; a lone UPDATE on SQLite
        needs none (SQLite backs out a failed statement alone and the transaction goes
        on), which makes re-pointing many rows (a merge) several times faster."""
        row = self._codec.encode(self._tenant, new)
        params = (*row[2:], row[0], row[1], version)
        alone = (
            self._unit.store.dialect == "sqlite"
            and not self._keyed
            and self._codec.members_field is None
        )
        with self._unit.store._errors():
            try:
                with (
                    nullcontext(self._unit._conn()) if alone else self._unit._savepoint() as (
                        connection
                    )
                ):
                    cursor = self._raw(connection).execute(self._sql.update, params)
                    if cursor.rowcount != 1:
                        actual = self._stored_version(new.id)
                        if actual is None:
                            raise NotFound(self._name, new.id)
                        raise ConcurrencyConflict(self._name, new.id, version, actual)
                    if self._codec.members_field is not None:
                        self._delete_members(connection, new.id)
                        self._write_members(connection, [new])
                    self._delete_keys(connection, new.id)
                    self._write_keys(connection, [new])
            except Exception as error:
                # Read what the row collides with once its savepoint has rolled back
                # (PostgreSQL refuses every query in a failed transaction until then).
                taken: Exception | None = None
                if self._unit.store._is_integrity_error(error):
                    item = attrs.evolve(new, version=version)  # what the error names
                    taken = self._taken_key([item], None) or self._dangling([item], None)
                if taken is not None:
                    raise taken from None
                raise
        return new

    def delete(self, id: UUID, /, *, version: int | None = None) -> None:
        check_id(id)
        table = self._table
        statement = sa.delete(table).where(table.c.tenant == self._tenant, table.c.id == id)
        if version is not None:
            statement = statement.where(table.c.version == version)
        with self._unit.store._errors():
            try:
                with self._unit._savepoint() as connection:
                    self._refuse_referenced(connection, id, version)
                    self._delete_members(connection, id)
                    self._delete_keys(connection, id)
                    if connection.execute(statement).rowcount != 1:
                        actual = self._stored_version(id)
                        if actual is None:
                            raise NotFound(self._name, id)
                        raise ConcurrencyConflict(self._name, id, cast(int, version), actual)
            except Exception as error:
                # A referrer committed by another transaction between the check and
                # the delete: the foreign key refused it; name it.
                if self._unit.store._is_integrity_error(error):
                    self._refuse_referenced(self._unit._conn(), id, version)
                raise

    def _refuse_referenced(self, connection: Connection, id: UUID, version: int | None) -> None:
        """:class:`StillReferenced` when other entities of the tenant refer to ``id``
        (after NotFound and ConcurrencyConflict, which take precedence)."""
        referrers = REFERRERS.get(self._name, ())
        if not referrers:
            return
        stored = self._stored_version(id)
        if stored is None:
            raise NotFound(self._name, id)
        if version is not None and stored != version:
            raise ConcurrencyConflict(self._name, id, version, stored)
        found = []
        for entity, name in referrers:
            table = self._unit.store.schema.table(entity)
            probe = (
                sa.select(table.c.id)
                .where(table.c.tenant == self._tenant, table.c[name] == id)
                .limit(1)
            )
            first = connection.execute(probe).scalar_one_or_none()
            if first is not None:
                found.append((entity.entity_name, first))
        if found:
            raise StillReferenced(self._name, id, found)

    # ------------------------------------------------------------------ queries

    def _where(self, rule: Rule | None, now: datetime | None) -> list[Any]:
        rule = check_rule(rule, self._entity)
        fixed = query_now(now, self._unit.store.clock)  # checked with or without a rule
        conditions: list[Any] = [self._table.c.tenant == self._tenant]
        if rule is not None:
            conditions.append(self._unit._compiler(fixed).where(rule, self._table))
        return conditions

    def _after(self, order: Order, after: Cursor) -> Any:
        column = self._table.c[order.field]
        id_ = self._table.c.id
        # Bound with the column's type: SQLAlchemy refuses ``column > True`` written plainly.
        value = None if after.value is None else sa.literal(after.value, column.type)
        nullable = columns(self._entity)[order.field].optional
        if not order.descending:
            if value is None:
                return sa.and_(column.is_(None), id_ > after.id)
            later = sa.or_(column > value, sa.and_(column == value, id_ > after.id))
            return sa.or_(later, column.is_(None)) if nullable else later
        if value is None:
            return sa.or_(sa.and_(column.is_(None), id_ < after.id), column.is_not(None))
        return sa.or_(column < value, sa.and_(column == value, id_ < after.id))

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
        conditions = self._where(rule, now)
        if after is not None:
            conditions.append(self._after(order, after))
        column = self._table.c[order.field]
        nullable = columns(self._entity)[order.field].optional
        id_ = self._table.c.id
        if order.descending:
            keys = [column.desc().nulls_first() if nullable else column.desc(), id_.desc()]
        else:
            keys = [column.asc().nulls_last() if nullable else column.asc(), id_.asc()]
        if order.field == "id":  # the tie-breaker is the order itself
            keys = keys[:1]
        statement = sa.select(*self._read).where(*conditions).order_by(*keys)
        if limit is not None:
            statement = statement.limit(limit + 1)
        found = self._load(statement)
        return page_of(found, order, limit)

    def count(self, rule: Rule | None = None, /, *, now: datetime | None = None) -> int:
        statement = sa.select(sa.func.count()).select_from(self._table)
        statement = statement.where(*self._where(rule, now))
        with self._unit.store._errors():
            return int(self._unit._conn().execute(statement).scalar_one())

    def count_by(
        self, field: str, rule: Rule | None = None, /, *, now: datetime | None = None
    ) -> dict[Any, int]:
        name = check_group_field(field, self._entity)
        column = self._table.c[name]
        statement = (
            sa.select(column, sa.func.count()).where(*self._where(rule, now)).group_by(column)
        )
        enum = columns(self._entity)[name].enum
        with self._unit.store._errors():
            rows = self._unit._conn().execute(statement).all()
        if enum is None:
            return {value: int(count) for value, count in rows}
        return {None if v is None else enum(v): int(count) for v, count in rows}

    def ids(self, rule: Rule | None = None, /, *, now: datetime | None = None) -> list[UUID]:
        id_ = self._table.c.id
        statement = sa.select(self._read[0]).where(*self._where(rule, now)).order_by(id_)
        with self._unit.store._errors():
            rows = _fetch(self._unit._conn(), statement)
            return [self._read_id(row[0]) for row in rows]

    def iterate(
        self, rule: Rule | None = None, /, *, batch_size: int = 1000, now: datetime | None = None
    ) -> Iterator[_E]:
        batch_size = check_batch_size(batch_size)
        fixed = query_now(now, self._unit.store.clock)
        return iterate_pages(self.find, rule, batch_size, fixed)


class _Keyed(_Repository[_E]):
    _keyed = True

    def with_match_keys(
        self, keys: Iterable[tuple[str, str]], /, *, limit: int | None = None
    ) -> list[_E]:
        wanted = sorted(set(check_match_keys(keys)))
        limit = check_limit(limit)
        found: dict[UUID, _E] = {}
        step = 50  # keys per statement: one range of the primary key each
        for start in range(0, len(wanted), step):
            chunk = wanted[start : start + step]
            params: dict[str, Any] = {"tenant": self._tenant, "entity": self._name}
            for n, (key, value) in enumerate(chunk):
                params[f"k{n}"], params[f"v{n}"] = key, value
            if limit is not None:
                params["limit"] = limit
            statement = self._keys_statement(len(chunk), limit is not None)
            found.update((e.id, e) for e in self._load(statement, params))
        return sorted(found.values(), key=lambda e: (e.created_at, e.id))

    def _keys_statement(self, count: int, limited: bool) -> Any:
        """The entities with any of ``count`` keys (bound parameters ``tenant, entity,
        k0, v0, ...``, ``limit``), each key a range of the match-key primary key, in one
        statement built once per shape: SQLAlchemy then finds its compiled form in its
        cache."""
        shape = (self._table, count, limited)
        cached = _KEY_STATEMENTS.get(shape)
        if cached is not None:
            return cached
        index, table = self._unit.store.schema.match_keys, self._table
        selects = []
        for n in range(count):
            select = (
                sa.select(index.c.subject_id)
                .where(
                    index.c.tenant == sa.bindparam("tenant"),
                    index.c.entity == sa.bindparam("entity"),
                    index.c.key == sa.bindparam(f"k{n}"),
                    index.c.value == sa.bindparam(f"v{n}"),
                )
                .order_by(index.c.subject_id)
            )
            if limited:
                select = select.limit(sa.bindparam("limit", type_=sa.Integer()))
            selects.append(select.subquery().select())
        ids = sa.union_all(*selects) if count > 1 else selects[0]
        statement = sa.select(*self._read).where(
            table.c.tenant == sa.bindparam("tenant"), table.c.id.in_(ids)
        )
        _KEY_STATEMENTS[shape] = statement
        return statement


class _Accounts(_Keyed[Account]):
    pass


class _Contacts(_Keyed[Contact]):
    _key_name = "email"

    def reach_counts(
        self, rule: Rule, reachable: Reachable, /, *, now: datetime | None = None
    ) -> dict[ReachCheck | None, int]:
        # Step by step: one grouped query (CASE of the checks, GROUP BY) was measured
        # far slower (SQLite evaluates the IN subqueries inside CASE row by row).
        fixed = query_now(now, self._unit.store.clock)
        return reach_counts_by_steps(self, rule, reachable, fixed)

    def _key_of(self, item: Contact) -> str | None:
        if item.email is None or not self._unit.store.unique_emails:
            return None
        return item.email.casefold()

    def _stored_keys(self, keys: list[str]) -> set[str]:
        if not keys:
            return set()
        key = email_key(self._table)
        statement = sa.select(key).where(self._table.c.tenant == self._tenant, key.in_(keys))
        return {str(row[0]) for row in _fetch(self._unit._conn(), statement)}

    def with_email(self, email: EmailAddress, /) -> list[Contact]:
        wanted = check_email(email).casefold()
        table = self._table
        statement = self._base().where(email_key(table) == wanted)
        return self._load(statement.order_by(table.c.created_at, table.c.id))

    def _taken_key(self, items: Sequence[Contact], offset: int | None) -> Duplicate | None:
        """The first of ``items`` whose folded e-mail another contact has, stored or
        earlier in ``items`` (``offset``: the index of the first item in a bulk call,
        ``None`` for a single write)."""
        if not self._unit.store.unique_emails:
            return None
        seen: set[str] = set()
        for index, item in enumerate(items):
            if item.email is None:
                continue
            key = item.email.casefold()
            others = [c for c in self.with_email(item.email) if c.id != item.id]
            if key in seen or others:
                at = None if offset is None else offset + index
                return Duplicate(self._name, str(item.email), index=at, field="email")
            seen.add(key)
        return None


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
        table = self._table
        statement = self._base()
        if query.status is not None:
            statement = statement.where(table.c.status == query.status.value)
        if query.kind is not None:
            statement = statement.where(table.c.kind == query.kind.value)
        if query.assignee is not None:
            statement = statement.where(table.c.assignee == query.assignee)
        if query.contact_id is not None:
            statement = statement.where(table.c.contact_id == query.contact_id)
        if query.deal_id is not None:
            statement = statement.where(table.c.deal_id == query.deal_id)
        if query.ticket_id is not None:
            statement = statement.where(table.c.ticket_id == query.ticket_id)
        if query.due_until is not None:
            statement = statement.where(table.c.due_at <= query.due_until)
        return self._load(statement.order_by(table.c.due_at, table.c.id))


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
        check_id(contact_id, "contact_id")
        wanted = check_kinds(kinds)
        low, high = check_window(since, until)
        table = self._table
        statement = self._narrowed(table.c.contact_id == contact_id, wanted, low, high)
        return self._load(statement.order_by(table.c.occurred_at, table.c.id))

    def _narrowed(
        self,
        owner: sa.ColumnElement[bool],
        kinds: frozenset[ActivityKind] | None,
        low: datetime | None,
        high: datetime | None,
    ) -> sa.Select[Any]:
        """The activities ``owner`` selects, of ``kinds`` (``None``: all), in
        ``[low, high)`` (an open bound where ``None``)."""
        table = self._table
        statement = self._base().where(owner)
        if kinds is not None:
            statement = statement.where(table.c.kind.in_(sorted(k.value for k in kinds)))
        if low is not None:
            statement = statement.where(table.c.occurred_at >= low)
        if high is not None:
            statement = statement.where(table.c.occurred_at < high)
        return statement

    def for_contacts(
        self,
        contact_ids: Iterable[UUID],
        /,
        *,
        kinds: Iterable[ActivityKind] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Activity]:
        wanted_ids = sorted(set(check_ids(contact_ids, "contact_ids")))
        wanted = check_kinds(kinds)
        low, high = check_window(since, until)
        if wanted is not None and not wanted:
            return []
        table = self._table
        found: list[Activity] = []
        for start in range(0, len(wanted_ids), _ID_CHUNK):
            chunk = table.c.contact_id.in_(wanted_ids[start : start + _ID_CHUNK])
            found.extend(self._load(self._narrowed(chunk, wanted, low, high)))
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
        if not wanted:
            return []
        table = self._table
        statement = self._base().where(table.c.kind.in_(sorted(k.value for k in wanted)))
        if low is not None:
            statement = statement.where(table.c.occurred_at >= low)
        if high is not None:
            statement = statement.where(table.c.occurred_at < high)
        return self._load(statement.order_by(table.c.occurred_at, table.c.id))

    def purchases(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[Transaction]:
        low, high = check_window(since, until)
        table = self._table
        statement = sa.select(
            table.c.contact_id, table.c.occurred_at, table.c.amount, table.c.amount_currency
        ).where(table.c.tenant == self._tenant, table.c.kind == ActivityKind.PURCHASE.value)
        if low is not None:
            statement = statement.where(table.c.occurred_at >= low)
        if high is not None:
            statement = statement.where(table.c.occurred_at < high)
        statement = statement.order_by(table.c.occurred_at, table.c.id)
        sqlite = self._unit.store.dialect != "postgresql"
        with self._unit.store._errors():
            rows = _fetch(self._unit._conn(), statement)
            if any(row[2] is None for row in rows):  # refused as the activities refuse it
                return transactions_from_activities(
                    self.of_kinds([ActivityKind.PURCHASE], since=since, until=until)
                )
            try:
                return [
                    Transaction(
                        self._read_id(owner),
                        datetime.fromisoformat(at).replace(tzinfo=UTC) if sqlite else at,
                        Money(Decimal(amount), currency),
                    )
                    for owner, at, amount, currency in rows
                ]
            except CrmkitError:
                raise
            except (TypeError, ValueError) as error:
                raise StorageError(f"a stored {self._name} cannot be read: {error}") from error


class _Consents(_Repository[Consent]):
    """The consent ledger. Every write also rewrites the decisions in force
    (``<prefix>consent_states``, :mod:`crmkit.storage.sql._states`) of the contacts whose
    entries it touched, from their ledger, in one savepoint with the write: the states
    never disagree with the ledger."""

    def for_contact(self, contact_id: UUID, /) -> list[Consent]:
        check_id(contact_id, "contact_id")
        table = self._table
        statement = self._base().where(table.c.contact_id == contact_id)
        return self._load(statement.order_by(table.c.decided_at, table.c.id))

    def _settle(self, contact_ids: Iterable[UUID]) -> None:
        states = self._unit.store.schema.consent_states
        connection = self._unit._conn()
        settle_consent_states(connection, self._table, states, self._tenant, contact_ids)

    def _owners(self, condition: Any) -> list[UUID]:
        """The contacts of the stored entries that meet ``condition``."""
        table = self._table
        statement = (
            sa.select(table.c.contact_id)
            .where(table.c.tenant == self._tenant, condition)
            .distinct()
        )
        return list(self._unit._conn().execute(statement).scalars())

    def add(self, item: Consent, /) -> Consent:
        with self._unit.store._errors(), self._unit._savepoint():
            added = super().add(item)
            self._settle([added.contact_id])
        return added

    def add_many(self, items: Iterable[Consent], /) -> int:
        check_many(items, "items")
        owners: set[UUID] = set()

        def noted() -> Iterator[Consent]:
            for item in items:
                if isinstance(item, Consent):  # anything else is refused by add_many
                    owners.add(item.contact_id)
                yield item

        with self._unit.store._errors(), self._unit._savepoint():
            total = super().add_many(noted())
            self._settle(owners)
        return total

    def _replace(self, new: Consent, version: int) -> Consent:
        with self._unit.store._errors(), self._unit._savepoint():
            before = self._owners(self._table.c.id == new.id)
            replaced = super()._replace(new, version)
            self._settle([*before, replaced.contact_id])
        return replaced

    def delete(self, id: UUID, /, *, version: int | None = None) -> None:
        check_id(id)
        with self._unit.store._errors(), self._unit._savepoint():
            before = self._owners(self._table.c.id == id)
            super().delete(id, version=version)
            self._settle(before)

    def erase_referring(
        self, field: str, id: UUID, values: Mapping[str, Any], /, *, at: datetime
    ) -> int:
        with self._unit.store._errors(), self._unit._savepoint():
            changed = super().erase_referring(field, id, values, at=at)
            if changed:
                self._settle(self._owners(self._table.c[field] == id))
        return changed


class _Blocks(_Repository[DoNotContact]):
    def for_contact(self, contact_id: UUID, /) -> list[DoNotContact]:
        check_id(contact_id, "contact_id")
        table = self._table
        statement = self._base().where(table.c.contact_id == contact_id)
        return self._load(statement.order_by(table.c.decided_at, table.c.id))


class _History(_Repository[_H]):
    """The records of what happened to subjects: stage changes, audit entries."""

    def for_subject(self, subject: SubjectKind, subject_id: UUID, /) -> list[_H]:
        subject = check_subject(subject)
        check_id(subject_id, "subject_id")
        table = self._table
        statement = self._base().where(
            table.c.subject == subject.value, table.c.subject_id == subject_id
        )
        return self._load(statement.order_by(table.c.at, table.c.id))

    def for_subjects(self, subject: SubjectKind, subject_ids: Iterable[UUID], /) -> list[_H]:
        subject = check_subject(subject)
        wanted = sorted(set(check_ids(subject_ids, "subject_ids")))
        table = self._table
        found: list[_H] = []
        for start in range(0, len(wanted), _ID_CHUNK):
            chunk = wanted[start : start + _ID_CHUNK]
            statement = self._base().where(
                table.c.subject == subject.value, table.c.subject_id.in_(chunk)
            )
            found.extend(self._load(statement))
        return sorted(found, key=lambda c: (c.at, c.id))


def merge_key_names(record: MergeRecord) -> set[str]:
    """The look-up keys of ``record``: one per merged id, taken e-mail address and
    involved contact (:func:`~crmkit.storage.merge_contacts`)."""
    keys = {f"id:{i.hex}" for i in record.merged_ids}
    keys.update(f"email:{e}" for e in record.merged_emails)
    keys.update(f"contact:{c.hex}" for c in merge_contacts(record))
    return keys


class _Merges:
    """The merge records: one row each (the images as JSON text) and one key row per
    merged id, taken e-mail address and involved contact, which the look-ups use."""

    def __init__(self, unit: SqlUnitOfWork) -> None:
        self._unit = unit
        self._tenant = unit.store.tenant
        self._table = unit.store.schema.merges
        self._keys = unit.store.schema.merge_keys

    def _load(self, statement: sa.Select[Any]) -> list[MergeRecord]:
        with self._unit.store._errors():
            rows = self._unit._conn().execute(statement).scalars().all()
            try:
                return [merge_from_json(json.loads(body)) for body in rows]
            except CrmkitError as error:
                raise StorageError(f"a stored merge cannot be read: {error}") from error

    def get(self, id: UUID, /) -> MergeRecord:
        table = self._table
        found = self._load(
            sa.select(table.c.body).where(
                table.c.tenant == self._tenant, table.c.id == check_id(id)
            )
        )
        if not found:
            raise NotFound("merge", id)
        return found[0]

    def add(self, record: MergeRecord, /) -> MergeRecord:
        record = check_merge_record(record)
        body = json.dumps(merge_to_json(record), separators=(",", ":"))
        keys = merge_key_names(record)
        with self._unit.store._errors():
            try:
                with self._unit._savepoint() as connection:
                    connection.execute(
                        sa.insert(self._table),
                        {
                            "tenant": self._tenant,
                            "id": record.id,
                            "kind": record.kind.value,
                            "survivor_id": record.survivor_id,
                            "at": record.at,
                            "body": body,
                        },
                    )
                    connection.execute(
                        sa.insert(self._keys),
                        [
                            {"tenant": self._tenant, "key": k, "merge_id": record.id}
                            for k in sorted(keys)
                        ],
                    )
            except Exception as error:
                if self._unit.store._is_integrity_error(error):
                    raise Duplicate("merge", record.id) from None
                raise
        return record

    def delete(self, id: UUID, /) -> None:
        check_id(id)
        keys, table = self._keys, self._table
        with self._unit.store._errors(), self._unit._savepoint() as connection:
            connection.execute(
                sa.delete(keys).where(keys.c.tenant == self._tenant, keys.c.merge_id == id)
            )
            gone = connection.execute(
                sa.delete(table).where(table.c.tenant == self._tenant, table.c.id == id)
            )
            if gone.rowcount != 1:
                raise NotFound("merge", id)

    def _by_key(self, key: str) -> list[MergeRecord]:
        table, keys = self._table, self._keys
        statement = (
            sa.select(table.c.body)
            .join(keys, (keys.c.tenant == table.c.tenant) & (keys.c.merge_id == table.c.id))
            .where(keys.c.tenant == self._tenant, keys.c.key == key)
            .order_by(table.c.at, table.c.id)
        )
        return self._load(statement)

    def merging(self, merged_id: UUID, /) -> list[MergeRecord]:
        return self._by_key(f"id:{check_id(merged_id, 'merged_id').hex}")

    def with_email(self, email: EmailAddress, /) -> list[MergeRecord]:
        return self._by_key(f"email:{check_email(email).casefold()}")

    def involving(self, contact_id: UUID, /) -> list[MergeRecord]:
        # By its key row (schema 16: one per contact the record involves).
        contact_id = check_id(contact_id, "contact_id")
        found = self._by_key(f"contact:{contact_id.hex}")
        return [m for m in found if merge_involves(m, contact_id)]

    def anonymise(self, record: MergeRecord, /) -> MergeRecord:
        record = check_merge_anonymised(self.get(check_merge_record(record).id), record)
        body = json.dumps(merge_to_json(record), separators=(",", ":"))
        table, keys = self._table, self._keys
        with self._unit.store._errors(), self._unit._savepoint() as connection:
            connection.execute(
                sa.update(table)
                .where(table.c.tenant == self._tenant, table.c.id == record.id)
                .values(body=body)
            )
            mine = (keys.c.tenant == self._tenant) & (keys.c.merge_id == record.id)
            stored = set(connection.execute(sa.select(keys.c.key).where(mine)).scalars())
            wanted = merge_key_names(record)
            if stored - wanted:
                connection.execute(sa.delete(keys).where(mine, keys.c.key.in_(stored - wanted)))
            if wanted - stored:
                connection.execute(
                    sa.insert(keys),
                    [
                        {"tenant": self._tenant, "key": k, "merge_id": record.id}
                        for k in sorted(wanted - stored)
                    ],
                )
        return record


_STEP_FIELDS: Final = (
    "id",
    "kind",
    "payload",
    "due_at",
    "created_at",
    "subject",
    "subject_id",
    "attempts",
    "status",
    "lease",
    "leased_until",
    "last_error",
    "finished_at",
)


_STEP_INSERTS: dict[tuple[sa.Table, str], Any] = {}


class _Steps:
    """The steps: one row each, the payload as JSON text. A claim selects due rows
    ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (concurrent claims take different rows and
    do not wait); on SQLite every unit of work begins ``IMMEDIATE``, so one claim runs
    at a time. Outcomes are written by one ``UPDATE`` per kind of outcome, guarded by
    the lease."""

    def __init__(self, unit: SqlUnitOfWork) -> None:
        self._unit = unit
        self._tenant = unit.store.tenant
        self._table = unit.store.schema.steps
        self._columns = tuple(self._table.c[name] for name in _STEP_FIELDS)

    def _load(self, statement: sa.Select[Any]) -> list[Step]:
        rows = self._unit._conn().execute(statement).all()
        try:
            return [self._decode(row) for row in rows]
        except CrmkitError as error:
            raise StorageError(f"a stored step cannot be read: {error}") from error

    @staticmethod
    def _decode(row: Sequence[Any]) -> Step:
        values = dict(zip(_STEP_FIELDS, row, strict=True))
        values["payload"] = payload_from_json(values["payload"])
        values["status"] = StepStatus(values["status"])
        return Step(**values)

    @staticmethod
    def _claimed(row: Sequence[Any], lease: UUID, until: datetime) -> Step:
        """The step of a claimable ``row`` as :func:`~crmkit.automation.claim_step`
        makes it, built once (the row's own step is never needed)."""
        values = dict(zip(_STEP_FIELDS, row, strict=True))
        try:
            values["payload"] = payload_from_json(values["payload"])
            values.update(
                status=StepStatus.RUNNING,
                attempts=values["attempts"] + 1,
                lease=lease,
                leased_until=until,
            )
            return Step(**values)
        except CrmkitError as error:
            raise StorageError(f"a stored step cannot be read: {error}") from error

    @staticmethod
    def _encode(step: Step, tenant: str) -> dict[str, Any]:
        values = {name: getattr(step, name) for name in _STEP_FIELDS}
        values["payload"] = payload_to_json(step.payload)
        values["status"] = step.status.value
        values["tenant"] = tenant
        return values

    def _select(self) -> sa.Select[Any]:
        return sa.select(*self._columns).where(self._table.c.tenant == self._tenant)

    def _insert(self) -> Any:
        """``INSERT ... ON CONFLICT DO NOTHING RETURNING id``, built once per table and
        dialect (its compiled form is cached)."""
        key = (self._table, self._unit.store.dialect)
        found = _STEP_INSERTS.get(key)
        if found is None:
            dialect = postgresql if key[1] == "postgresql" else sqlite
            insert: Any = dialect.insert(self._table)
            found = insert.on_conflict_do_nothing().returning(self._table.c.id)
            _STEP_INSERTS[key] = found
        return found

    def get(self, id: UUID, /) -> Step:
        check_id(id)
        with self._unit.store._errors():
            found = self._load(self._select().where(self._table.c.id == id))
        if not found:
            raise NotFound("step", id)
        return found[0]

    def schedule(self, step: Step, /) -> Step:
        step = check_new_step(step)
        table = self._table
        with self._unit.store._errors():
            connection = self._unit._conn()
            added = connection.execute(self._insert(), self._encode(step, self._tenant))
            if added.first() is not None:
                return step
            found = self._load(self._select().where(table.c.id == step.id))
        return found[0]

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
        at, until, wanted = check_step_claim(now, lease, until, limit, kinds)
        table = self._table
        if wanted is not None and not wanted:
            return []
        locking = self._unit.store.dialect == "postgresql"
        queries = (
            (StepStatus.RUNNING, table.c.leased_until <= at),
            (StepStatus.FAILED, table.c.due_at <= at),
            (StepStatus.PENDING, table.c.due_at <= at),
        )
        found: list[Any] = []
        with self._unit.store._errors():
            for status, due in queries:
                statement = (
                    self._select()
                    .where(table.c.status == status.value, due)
                    .where(sa.true() if wanted is None else table.c.kind.in_(sorted(wanted)))
                    .order_by(table.c.due_at, table.c.id)
                    .limit(limit)
                )
                if locking:
                    statement = statement.with_for_update(skip_locked=True)
                found.extend(self._unit._conn().execute(statement).all())
            found.sort(key=lambda row: (row[3], row[0]))  # due_at, id
            claimed = [self._claimed(row, lease, until) for row in found[:limit]]
            if claimed:
                self._unit._conn().execute(
                    sa.update(table)
                    .where(table.c.tenant == self._tenant, table.c.id.in_([s.id for s in claimed]))
                    .values(
                        status=StepStatus.RUNNING.value,
                        attempts=table.c.attempts + 1,
                        lease=lease,
                        leased_until=until,
                    )
                )
        return claimed

    def settle(self, steps: Iterable[Step], /, *, lease: UUID) -> frozenset[UUID]:
        outcomes, lease = check_steps_settled(steps, lease)
        table = self._table
        groups: dict[tuple[Any, ...], list[UUID]] = {}
        for step in outcomes:
            if step.status is StepStatus.DONE:  # due_at and last_error stay the claim's
                key: tuple[Any, ...] = (step.status.value, step.finished_at)
            else:
                key = (step.status.value, step.finished_at, step.due_at, step.last_error)
            groups.setdefault(key, []).append(step.id)
        recorded: set[UUID] = set()
        with self._unit.store._errors():
            connection = self._unit._conn()
            for key, ids in groups.items():
                values: dict[str, Any] = {
                    "status": key[0],
                    "finished_at": key[1],
                    "lease": None,
                    "leased_until": None,
                }
                if len(key) > 2:
                    values.update(due_at=key[2], last_error=key[3])
                for start in range(0, len(ids), _ID_CHUNK):
                    statement = (
                        sa.update(table)
                        .where(
                            table.c.tenant == self._tenant,
                            table.c.id.in_(ids[start : start + _ID_CHUNK]),
                            table.c.status == StepStatus.RUNNING.value,
                            table.c.lease == lease,
                        )
                        .values(**values)
                        .returning(table.c.id)
                    )
                    recorded.update(connection.execute(statement).scalars())
        return frozenset(recorded)

    def select(
        self,
        *,
        status: StepStatus | None = None,
        kind: str | None = None,
        subject_id: UUID | None = None,
        limit: int | None = None,
    ) -> list[Step]:
        wanted = step_filter(status, kind, subject_id, limit)
        table = self._table
        statement = self._select().order_by(table.c.due_at, table.c.id)
        if wanted.status is not None:
            statement = statement.where(table.c.status == wanted.status.value)
        if wanted.kind is not None:
            statement = statement.where(table.c.kind == wanted.kind)
        if wanted.subject_id is not None:
            statement = statement.where(table.c.subject_id == wanted.subject_id)
        if wanted.limit is not None:
            statement = statement.limit(wanted.limit)
        with self._unit.store._errors():
            return self._load(statement)


class _StageHistory(_History[StageChange]):
    def _subject_where(
        self, subject: SubjectKind, rule: Rule | None, until: datetime, group: str | None
    ) -> list[Any]:
        entity = REPLAYED[subject]
        if group is not None:
            check_group_field(group, entity)
        rule = check_rule(rule, entity)
        table = self._unit.store.schema.table(entity)
        conditions: list[Any] = [table.c.tenant == self._tenant]
        if rule is not None:
            conditions.append(self._unit._compiler(until).where(rule, table))
        return conditions

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
        where = self._subject_where(subject, rule, until, group)
        store = self._unit.store
        statement = reach_query(
            store.schema,
            store.dialect,
            self._tenant,
            subject=subject,
            ranks=checked,
            until=until,
            pipeline=pipeline,
            where=where,
            group=group,
        )
        with store._errors():
            rows = self._unit._conn().execute(statement).all()
        return read_reach(rows, subject, group)

    def customer_spans(
        self, stages: Iterable[LifecycleStage] = CUSTOMER_STAGES, /
    ) -> list[CustomerSpan]:
        wanted = frozenset(s.value for s in check_customer_stages(stages))
        store = self._unit.store
        moved, imported = customer_spans_queries(store.schema, self._tenant, wanted)
        with store._errors():
            connection = self._unit._conn()
            found = [CustomerSpan(i, s, e) for i, s, e in connection.execute(moved)]
            found += [CustomerSpan(i, at) for i, at in connection.execute(imported)]
        return found

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
        where = self._subject_where(subject, rule, until, group)
        store = self._unit.store
        statement = standing_query(
            store.schema,
            store.dialect,
            self._tenant,
            subject=subject,
            until=until,
            since=since,
            then=then,
            pipeline=pipeline,
            where=where,
            group=group,
            stages=kept,
        )
        with store._errors():
            rows = self._unit._conn().execute(statement).all()
        return read_standing(rows, subject, group)

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
        chosen = check_windows(windows)
        if rule is not None or len(chosen) < 2:
            # a rule is read at each window's until: one query per window
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
                for w in chosen
            ]
        subject, _, pipeline, _, _ = check_replay(subject, chosen[0].until, pipeline)
        where = self._subject_where(subject, None, chosen[0].until, group)
        wanted = [w.stages for w in chosen]
        store = self._unit.store
        statement = standings_query(
            store.schema,
            store.dialect,
            self._tenant,
            subject=subject,
            windows=[(w.until, w.since, w.then) for w in chosen],
            pipeline=pipeline,
            where=where,
            group=group,
            stages=None if None in wanted else frozenset().union(*wanted),  # type: ignore[arg-type]
        )
        read = standing_reader(subject, group)
        by_window: list[list[Standing]] = [[] for _ in chosen]
        with store._errors():
            # each row a standing as it is fetched: the rows of every window (hundreds
            # of thousands of groups by owner at 1M deals) are never all held at once
            for index, *row in self._unit._conn().execute(statement):
                found = read(row)
                keep = wanted[index]
                if keep is None or found.stage in keep:
                    by_window[index].append(found)
        return by_window


_PENDING: Final = DeliveryStatus.PENDING.value
_OUTBOX_STATEMENTS: dict[tuple[sa.Table, str, bool], Any] = {}
_APPENDED: Final = (
    "id",
    "type",
    "subject",
    "subject_id",
    "lane",
    "occurred_at",
    "caused_by",
    "body",
)
"""Statements of the outbox built once per table (building one costs more than running it)."""
_PENDING_SQL: Final[sa.ColumnClause[str]] = sa.literal_column(f"'{_PENDING}'")
_TEXT: Final = sa.Text()


class _Outbox:
    """The outbox: events by position per tenant, their deliveries and the handlers'
    cursors. Appending takes the tenant's outbox lock until the transaction ends (a
    transaction-level advisory lock on PostgreSQL; SQLite runs one writer at a time),
    so positions are given in commit order; claims use ``FOR UPDATE SKIP LOCKED`` on
    PostgreSQL."""

    def __init__(self, unit: SqlUnitOfWork) -> None:
        self._unit = unit
        store = unit.store
        self._tenant = store.tenant
        self._events = store.schema.outbox
        self._deliveries = store.schema.deliveries
        self._lanes = store.schema.outbox_lanes
        self._postgres = store.dialect == "postgresql"
        digest = hashlib.blake2b(
            f"{self._events.name}:{self._tenant}".encode(), digest_size=8
        ).digest()
        self._lock_key = int.from_bytes(digest, "big", signed=True)

    def _run(self, statement: Any, params: Any = None) -> Any:
        with self._unit.store._errors():
            return self._unit._conn().execute(statement, params)

    def _among(self, column: str, name: str, kind: str) -> str:
        """SQL that ``column`` is one of the list bound as ``:name`` (:meth:`_listed`):
        an array of ``kind`` on PostgreSQL, a JSON array on SQLite."""
        if self._postgres:
            return f"{column} = ANY(CAST(:{name} AS {kind}[]))"
        return f"{column} IN (SELECT value FROM json_each(:{name}))"

    def _listed(self, values: list[Any]) -> Any:
        """``values`` as :meth:`_among` binds them."""
        return values if self._postgres else json.dumps(values)

    def _decode(self, body: str) -> Event:
        try:
            return event_from_json(json.loads(body))
        except (CrmkitError, ValueError) as error:
            raise StorageError(f"a stored event cannot be read: {error}") from error

    def append(self, events: Iterable[Event], /) -> int:
        found = check_events(events)
        if not found:
            return 0
        if self._postgres:
            self._run(sa.select(sa.func.pg_advisory_xact_lock(self._lock_key)))
        rows = [
            {
                "tenant": self._tenant,
                "id": item.id,
                "type": item.type,
                "subject": item.subject,
                "subject_id": item.subject_id,
                "lane": lane_of(item.subject_id),
                "occurred_at": item.occurred_at,
                "caused_by": item.caused_by,
                "body": json.dumps(event_to_json(item), separators=(",", ":")),
            }
            for item in found
        ]
        # One statement per event, each numbered after the rows before it; an id the
        # outbox holds is skipped without using up a position.
        if not self._postgres:  # SQLite counts the rows of executemany
            return int(self._run(self._append_statement(), rows).rowcount)
        fresh = list({row["id"]: row for row in reversed(rows)}.values())[::-1]
        arrays: dict[str, Any] = {name: [row[name] for row in fresh] for name in _APPENDED}
        arrays["ord"] = list(range(len(fresh)))
        return len(self._run(self._append_arrays(), {"tenant": self._tenant, **arrays}).all())

    def _append_arrays(self) -> Any:
        """PostgreSQL: the events as arrays, one statement: the ids the outbox holds are
        left out, the others numbered after the last position, in order."""
        name = self._events.name  # crmkit's own table name (a checked prefix)
        return sa.text(
            f"INSERT INTO {name} (tenant, position, id, type, subject, subject_id, lane, "
            "occurred_at, caused_by, body) "
            f"SELECT CAST(:tenant AS text), (SELECT coalesce(max(position), 0) FROM {name} "
            "WHERE tenant = CAST(:tenant AS text)) + row_number() OVER (ORDER BY e.ord), "
            "e.id, e.type, e.subject, e.subject_id, e.lane, e.occurred_at, e.caused_by, e.body "
            "FROM unnest(CAST(:ord AS integer[]), CAST(:id AS uuid[]), CAST(:type AS text[]), "
            "CAST(:subject AS text[]), CAST(:subject_id AS uuid[]), CAST(:lane AS smallint[]), "
            "CAST(:occurred_at AS timestamptz[]), CAST(:caused_by AS uuid[]), "
            "CAST(:body AS text[])) "
            "AS e (ord, id, type, subject, subject_id, lane, occurred_at, caused_by, body) "
            f"WHERE NOT EXISTS (SELECT 1 FROM {name} AS o WHERE o.tenant = CAST(:tenant AS text) "
            "AND o.id = e.id) ORDER BY e.ord RETURNING position"
        )

    def _last(self) -> int:
        table = self._events
        return int(
            self._run(
                sa.select(sa.func.coalesce(sa.func.max(table.c.position), 0)).where(
                    table.c.tenant == self._tenant
                )
            ).scalar_one()
        )

    def _append_statement(self) -> Any:
        table = self._events
        key = (table, "append", self._postgres)  # one table may serve both dialects
        found = _OUTBOX_STATEMENTS.get(key)
        if found is None:
            found = _OUTBOX_STATEMENTS[key] = self._build_append()
        return found

    def _build_append(self) -> Any:
        table = self._events
        after = (
            sa.select(sa.func.coalesce(sa.func.max(table.c.position), 0) + 1)
            .where(table.c.tenant == sa.bindparam("tenant"))
            .scalar_subquery()
        )
        insert = (pg_insert if self._postgres else sqlite_insert)(table).values(
            tenant=sa.bindparam("tenant"),
            position=after,
            id=sa.bindparam("id"),
            type=sa.bindparam("type"),
            subject=sa.bindparam("subject"),
            subject_id=sa.bindparam("subject_id"),
            lane=sa.bindparam("lane"),
            occurred_at=sa.bindparam("occurred_at"),
            caused_by=sa.bindparam("caused_by"),
            body=sa.bindparam("body"),
        )
        return insert.on_conflict_do_nothing(index_elements=["tenant", "id"])

    def read(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        types: Iterable[str] | None = None,
        subject_id: UUID | None = None,
    ) -> list[Recorded]:
        start, most, kinds = check_position(after), check_count(limit), check_types(types)
        table = self._events
        statement = sa.select(table.c.position, table.c.body).where(
            table.c.tenant == self._tenant, table.c.position > start
        )
        if kinds is not None:
            statement = statement.where(table.c.type.in_(sorted(kinds)))
        if subject_id is not None:
            statement = statement.where(table.c.subject_id == check_id(subject_id, "subject_id"))
        rows = self._run(statement.order_by(table.c.position).limit(most)).all()
        return [Recorded(row[0], self._decode(row[1])) for row in rows]

    def known(self, ids: Iterable[UUID], /) -> set[UUID]:
        wanted = list(dict.fromkeys(check_ids(ids, "ids")))
        table = self._events
        found: set[UUID] = set()
        for start in range(0, len(wanted), _ID_CHUNK):
            chunk = wanted[start : start + _ID_CHUNK]
            found.update(
                self._run(
                    sa.select(table.c.id).where(
                        table.c.tenant == self._tenant, table.c.id.in_(chunk)
                    )
                ).scalars()
            )
        return found

    def _make_lanes(self, name: str, at_end: bool) -> None:
        """Give ``name`` its lanes' cursors (at 0, or at the last position stored) if it
        has none yet."""
        lanes = self._lanes
        mine = (lanes.c.tenant == self._tenant) & (lanes.c.handler == name)
        if self._run(sa.select(lanes.c.lane).where(mine, lanes.c.lane == 0)).first():
            return
        start = self._last() if at_end else 0
        insert = (pg_insert if self._postgres else sqlite_insert)(lanes)
        self._run(
            insert.values(
                [
                    {"tenant": self._tenant, "handler": name, "lane": lane, "position": start}
                    for lane in range(LANES)
                ]
            ).on_conflict_do_nothing()
        )

    def start_at_end(self, handler: str, /) -> int:
        name = check_handler(handler)
        self._make_lanes(name, at_end=True)
        lanes = self._lanes
        return int(
            self._run(
                sa.select(sa.func.min(lanes.c.position)).where(
                    lanes.c.tenant == self._tenant, lanes.c.handler == name
                )
            ).scalar_one()
        )

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
        until = at + span
        self._make_lanes(name, at_end=False)
        last = self._last()  # first: every event up to it is committed and visible
        chosen = self._run(
            self._statement("free lanes", self._build_free_lanes),
            {
                "tenant": self._tenant,
                "handler": name,
                "at": at,
                "last": last,
                "most": width,
            },
        ).all()
        if not chosen:
            return Taken(handler=name, claim=token, leased_until=until, lanes=(), events=())
        numbers = [row[0] for row in chosen]
        self._run(
            self._statement("lease lanes", self._build_lease_lanes),
            {
                "tenant": self._tenant,
                "handler": name,
                "lanes": self._listed(numbers),
                "claim": token,
                "until": until,
            },
        )
        # Unchosen lanes start at the last position: none of their events is read.
        starts = [last] * LANES
        for lane, start in chosen:
            starts[lane] = start
        every = kinds is None
        params: dict[str, Any] = {
            "tenant": self._tenant,
            "low": min(starts),
            "last": last,
            "most": most + 1,  # one more: whether the lanes hold more than the take
        }
        if self._postgres:
            params["starts"] = starts
        else:
            params.update({f"s{lane}": start for lane, start in enumerate(starts)})
        if kinds is not None:
            params["kinds"] = self._listed(sorted(kinds))
        rows = self._run(
            self._statement(f"lane events {every}", lambda: self._build_lane_events(every)),
            params,
        ).all()
        # Every event of the chosen lanes up to the last one given is in the take.
        rows = rows[:most] if (more := len(rows) > most) else rows
        reach = rows[-1][0] if more else last
        taken = [Lane(lane=lane, start=start, end=max(start, reach)) for lane, start in chosen]
        events = tuple(Recorded(position, self._decode(body)) for position, body in rows)
        return Taken(
            handler=name,
            claim=token,
            leased_until=until,
            lanes=tuple(taken),
            events=events,
            waiting=self._waiting(name, {r.event.subject_id for r in events}),
        )

    def _waiting(self, name: str, subjects: set[UUID]) -> frozenset[UUID]:
        """Which of ``subjects`` have a pending delivery to ``name``."""
        table = self._deliveries
        if not subjects or not self._any_pending([name]):
            return frozenset()
        wanted = sorted(subjects)
        found: set[UUID] = set()
        for begin in range(0, len(wanted), _ID_CHUNK):
            found.update(
                self._run(
                    sa.select(table.c.subject_id)
                    .where(
                        table.c.tenant == self._tenant,
                        table.c.handler == name,
                        table.c.status == _PENDING_SQL,
                        table.c.subject_id.in_(wanted[begin : begin + _ID_CHUNK]),
                    )
                    .distinct()
                ).scalars()
            )
        return frozenset(found)

    def _any_pending(self, names: list[str]) -> bool:
        """Whether any of the handlers ``names`` has a pending delivery (a probe of the
        partial index of the pending ones)."""
        table = self._deliveries
        return (
            self._run(
                sa.select(sa.literal(1))
                .where(
                    table.c.tenant == self._tenant,
                    table.c.handler.in_(names),
                    table.c.status == _PENDING_SQL,
                )
                .limit(1)
            ).first()
            is not None
        )

    def _build_free_lanes(self) -> Any:
        lanes, events = self._lanes.name, self._events.name  # crmkit's own (checked) names
        # The lanes not leased that hold an event after their cursor (an index probe
        # each), the furthest behind first; PostgreSQL skips lanes another unit locks.
        lock = " FOR UPDATE OF l SKIP LOCKED" if self._postgres else ""
        return sa.text(
            f"SELECT l.lane, l.position FROM {lanes} AS l "
            "WHERE l.tenant = :tenant AND l.handler = :handler AND l.position < :last "
            "AND (l.leased_until IS NULL OR l.leased_until <= :at) "
            f"AND EXISTS (SELECT 1 FROM {events} AS e WHERE e.tenant = l.tenant "
            "AND e.lane = l.lane AND e.position > l.position AND e.position <= :last) "
            f"ORDER BY l.position, l.lane LIMIT :most{lock}"
        ).bindparams(sa.bindparam("at", type_=Timestamp()))

    def _build_lease_lanes(self) -> Any:
        chosen = self._among("lane", "lanes", "smallint")
        return sa.text(
            f"UPDATE {self._lanes.name} SET claim = :claim, leased_until = :until "
            f"WHERE tenant = :tenant AND handler = :handler AND {chosen}"
        ).bindparams(
            sa.bindparam("claim", type_=UUIDType()), sa.bindparam("until", type_=Timestamp())
        )

    def _build_lane_events(self, every: bool) -> Any:
        # In position order over the key (tenant, position), each lane from its own
        # cursor: the first `most` events of the chosen lanes, read in one range.
        if self._postgres:
            after = "(CAST(:starts AS bigint[]))[lane + 1]"
        else:
            cases = " ".join(f"WHEN {n} THEN :s{n}" for n in range(LANES))
            after = f"CASE lane {cases} END"
        kinds = "" if every else f" AND {self._among('type', 'kinds', 'text')}"
        return sa.text(
            f"SELECT position, body FROM {self._events.name} "
            "WHERE tenant = :tenant AND position > :low AND position <= :last "
            f"AND position > {after}{kinds} ORDER BY position LIMIT :most"
        )

    def finish(
        self, taken: Taken, /, *, at: datetime, failures: Iterable[Delivery] = ()
    ) -> frozenset[int]:
        took, when, failed = check_finish(taken, at, failures)
        ends = [0] * LANES
        for lane in took.lanes:
            ends[lane.lane] = lane.end
        numbers = [lane.lane for lane in took.lanes]
        kept: set[int] = set()
        if numbers:
            kept.update(
                self._run(
                    self._statement("move lanes", self._build_move_lanes),
                    {
                        "tenant": self._tenant,
                        "handler": took.handler,
                        "lanes": self._listed(numbers),
                        "ends": self._listed(ends),
                        "claim": took.claim,
                    },
                ).scalars()
            )
        done, held, failures_kept = split_outcomes(took, failed, kept)
        copy = self._statement("record", self._build_record)
        for recorded, status in ((done, "done"), (held, _PENDING)):
            if not recorded:
                continue
            positions = [r.position for r in recorded]
            self._run(
                copy,
                {
                    "tenant": self._tenant,
                    "handler": took.handler,
                    "positions": self._listed(positions),
                    "status": status,
                    "next_at": None if status == "done" else when,
                    "finished_at": when if status == "done" else None,
                },
            )
        if failures_kept:
            self._run(
                sa.insert(self._deliveries),
                [
                    {
                        "tenant": self._tenant,
                        "handler": d.handler,
                        "position": d.position,
                        "event_id": d.event_id,
                        "event_type": d.event_type,
                        "subject_id": d.subject_id,
                        "status": d.status.value,
                        "attempts": d.attempts,
                        "next_at": d.next_at,
                        "error": d.error,
                        "finished_at": d.finished_at,
                    }
                    for d in failures_kept
                ],
            )
        return frozenset(kept)

    def _build_move_lanes(self) -> Any:
        # The lanes the claim still holds move to their ends (one per lane, by number).
        if self._postgres:
            end = "(CAST(:ends AS bigint[]))[lane + 1]"
        else:
            end = "json_extract(:ends, '$[' || lane || ']')"
        chosen = self._among("lane", "lanes", "smallint")
        return sa.text(
            f"UPDATE {self._lanes.name} SET position = {end}, claim = NULL, "
            "leased_until = NULL WHERE tenant = :tenant AND handler = :handler "
            f"AND claim = :claim AND {chosen} RETURNING lane"
        ).bindparams(sa.bindparam("claim", type_=UUIDType()))

    def _build_record(self) -> Any:
        d, e = self._deliveries.name, self._events.name  # crmkit's own (checked) names
        chosen = self._among("e.position", "positions", "bigint")
        # The deliveries of these events, copied from the outbox's rows by position.
        return sa.text(
            f"INSERT INTO {d} (tenant, handler, position, event_id, event_type, subject_id, "
            "status, attempts, next_at, finished_at) "
            "SELECT e.tenant, :handler, e.position, e.id, e.type, e.subject_id, :status, 0, "
            f":next_at, :finished_at FROM {e} AS e WHERE e.tenant = :tenant AND {chosen}"
        ).bindparams(
            sa.bindparam("next_at", type_=Timestamp()),
            sa.bindparam("finished_at", type_=Timestamp()),
        )

    def _delivery(self, row: Any) -> Delivery:
        return Delivery(
            position=row.position,
            event_id=row.event_id,
            event_type=row.event_type,
            handler=row.handler,
            subject_id=row.subject_id,
            status=DeliveryStatus(row.status),
            attempts=row.attempts,
            next_at=row.next_at,
            claim=row.claim,
            leased_until=row.leased_until,
            error=row.error,
            finished_at=row.finished_at,
        )

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
        names = check_handlers(handlers)
        at, lease, most, token = check_claim(now, lease, limit, claim)
        if not names or not self._any_pending(names):
            return []
        until = at + lease
        params: dict[str, Any] = {"tenant": self._tenant, "at": at, "most": most}
        if self._postgres:
            # One statement: lock the heads of the lanes (SKIP LOCKED), lease the due
            # runs behind them, return them with their events' bodies.
            many = len(names) > 1
            # A plan for these values: once the driver prepares the statement, a generic
            # plan (made for any tenant and time) may sort every pending delivery.
            self._run(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))
            rows = self._run(
                self._statement(f"claim{many}", lambda: self._build_claim_postgres(many)),
                {**params, "names": names, "claim": token, "until": until},
            ).all()
        else:
            # SQLite runs one writer at a time (every unit begins IMMEDIATE): choose,
            # then lease what was chosen, one statement per handler.
            rows = self._run(
                self._statement("claim", self._build_claim_sqlite),
                {**params, "names": json.dumps(names)},
            ).all()
            chosen: dict[str, list[int]] = {}
            for row in rows:
                chosen.setdefault(row[0], []).append(row[1])
            lease_rows = self._statement("lease", self._build_lease_sqlite)
            for name, positions in chosen.items():
                self._run(
                    lease_rows,
                    {
                        "tenant": self._tenant,
                        "handler": name,
                        "positions": json.dumps(positions),
                        "claim": token,
                        "until": until,
                    },
                )
        # The event's id, type and subject id are the delivery's (finish copies them);
        # the due times of a batch are mostly one, read once.
        decoded: dict[int, Event] = {}
        times: dict[Any, datetime] = {}
        read_time = Timestamp().process_result_value
        dialect = self._unit._conn().dialect
        found: list[tuple[Delivery, Event]] = []
        for handler, position, tries, due, error, body in rows:
            event = decoded.get(position)
            if event is None:
                event = decoded[position] = self._decode(body)
            next_at = times.get(due)
            if next_at is None:
                next_at = times[due] = cast(datetime, read_time(due, dialect))
            delivery = Delivery(
                position=position,
                event_id=event.id,
                event_type=event.type,
                handler=handler,
                subject_id=event.subject_id,
                attempts=tries,
                next_at=next_at,
                claim=token,
                leased_until=until,
                error=error,
            )
            found.append((delivery, event))
        return found

    def _statement(self, kind: str, build: Callable[[], Any]) -> Any:
        key = (self._deliveries, kind, self._postgres)  # one table may serve both dialects
        found = _OUTBOX_STATEMENTS.get(key)
        if found is None:
            found = _OUTBOX_STATEMENTS[key] = build()
        return found

    # A pending delivery blocks the ones after it in its lane (handler, subject id)
    # while it waits for a retry or is leased (SQL shared by both dialects).
    _BLOCKED = (
        "NOT EXISTS (SELECT 1 FROM {d} AS x WHERE x.tenant = d.tenant "
        "AND x.handler = d.handler AND x.subject_id = d.subject_id "
        "AND x.status = 'pending' AND x.position < d.position "
        "AND (x.next_at IS NULL OR x.next_at > :at "
        "OR (x.leased_until IS NOT NULL AND x.leased_until > :at)))"
    )
    _DUE = (
        "d.tenant = :tenant AND d.status = 'pending' AND d.next_at <= :at "
        "AND (d.leased_until IS NULL OR d.leased_until <= :at)"
    )

    def _build_claim_sqlite(self) -> Any:
        d, e = self._deliveries.name, self._events.name  # crmkit's own (checked) names
        return sa.text(
            "SELECT d.handler, d.position, d.attempts, d.next_at, d.error, e.body "
            f"FROM {d} AS d "
            f"JOIN {e} AS e ON e.tenant = d.tenant AND e.position = d.position "
            f"WHERE {self._DUE} AND d.handler IN (SELECT value FROM json_each(:names)) "
            f"AND {self._BLOCKED.format(d=d)} "
            "ORDER BY d.position, d.handler LIMIT :most"
        ).bindparams(sa.bindparam("at", type_=Timestamp()))

    def _build_lease_sqlite(self) -> Any:
        return sa.text(
            f"UPDATE {self._deliveries.name} SET claim = :claim, leased_until = :until "
            "WHERE tenant = :tenant AND handler = :handler "
            "AND position IN (SELECT value FROM json_each(:positions))"
        ).bindparams(
            sa.bindparam("claim", type_=UUIDType()), sa.bindparam("until", type_=Timestamp())
        )

    def _build_claim_postgres(self, many: bool) -> Any:
        d, e = self._deliveries.name, self._events.name  # crmkit's own (checked) names
        # The head of a lane is its first pending delivery (a correlated look-up of the
        # partial index); locking the heads keeps other claims off the whole lane.
        return sa.text(
            "WITH heads AS (SELECT d.handler, d.subject_id, d.position "
            f"FROM {d} AS d WHERE {self._DUE} AND d.handler = ANY(CAST(:names AS text[])) "
            f"AND d.position = (SELECT min(x.position) FROM {d} AS x "
            "WHERE x.tenant = d.tenant AND x.handler = d.handler "
            "AND x.subject_id = d.subject_id AND x.status = 'pending') "
            # By position alone: the order of the (tenant, status, position) index, so
            # the scan stops after the first heads instead of sorting every pending row.
            "ORDER BY d.position LIMIT :most FOR UPDATE OF d SKIP LOCKED), "
            # Behind each head, its lane by position up to the first delivery that
            # waits (for a retry, or leased): a probe of the partial index per head.
            "runs AS (SELECT r.handler, r.position FROM heads AS h CROSS JOIN LATERAL "
            "(SELECT w.handler, w.position FROM (SELECT d.handler, d.position, "
            "bool_or(d.next_at IS NULL OR d.next_at > :at OR (d.leased_until IS NOT NULL "
            "AND d.leased_until > :at)) OVER (ORDER BY d.position) AS stop "
            f"FROM {d} AS d WHERE d.tenant = :tenant AND d.handler = h.handler "
            "AND d.subject_id = h.subject_id AND d.status = 'pending' "
            "AND d.position >= h.position ORDER BY d.position LIMIT :most) AS w "
            "WHERE NOT w.stop) AS r ORDER BY r.position, r.handler LIMIT :most), "
            # The primary key's probes whatever the planner's statistics say (with one
            # handler, its positions name the runs; with more, they are filtered).
            f"leased AS (UPDATE {d} AS d SET claim = :claim, leased_until = :until "
            "WHERE d.tenant = :tenant AND d.handler = ANY(CAST(:names AS text[])) "
            "AND d.position = ANY(ARRAY(SELECT position FROM runs)) "
            f"{'AND (d.handler, d.position) IN (SELECT handler, position FROM runs) ' * many}"
            "RETURNING d.handler, d.position, d.attempts, d.next_at, d.error) "
            "SELECT l.handler, l.position, l.attempts, l.next_at, l.error, e.body "
            f"FROM leased AS l JOIN {e} AS e "
            "ON e.tenant = :tenant AND e.position = l.position "
            "ORDER BY l.position, l.handler"
        ).bindparams(
            sa.bindparam("at", type_=Timestamp()),
            sa.bindparam("until", type_=Timestamp()),
            sa.bindparam("claim", type_=UUIDType()),
        )

    def settle(self, delivery: Delivery, /) -> bool:
        return self.settle_many([check_settled(delivery)])[0]

    def settle_many(self, deliveries: Iterable[Delivery], /) -> list[bool]:
        outcomes = check_settled_many(deliveries)
        # The outcomes that write the same values (a claim's successes, mostly) are one
        # statement: those rows of the handler that the claim still holds change, and
        # their positions come back.
        groups: dict[tuple[Any, ...], list[int]] = {}
        for o in outcomes:
            key = (o.handler, o.claim, o.status, o.attempts, o.next_at, o.error, o.finished_at)
            groups.setdefault(key, []).append(o.position)
        statement = self._statement("settle", self._build_settle)
        done: set[tuple[str, int]] = set()
        for (handler, token, status, tries, due, error, finished), positions in groups.items():
            rows = self._run(
                statement,
                {
                    "tenant": self._tenant,
                    "handler": handler,
                    "claim": token,
                    "positions": self._listed(positions),
                    "status": status.value,
                    "attempts": tries,
                    "next_at": due,
                    "error": error,
                    "finished_at": finished,
                },
            ).all()
            done.update((handler, row[0]) for row in rows)
        return [(o.handler, o.position) in done for o in outcomes]

    def _build_settle(self) -> Any:
        chosen = self._among("position", "positions", "bigint")
        return sa.text(
            f"UPDATE {self._deliveries.name} SET status = :status, attempts = :attempts, "
            "next_at = :next_at, error = :error, finished_at = :finished_at, claim = NULL, "
            "leased_until = NULL WHERE tenant = :tenant AND handler = :handler "
            f"AND claim = :claim AND {chosen} RETURNING position"
        ).bindparams(
            sa.bindparam("claim", type_=UUIDType()),
            sa.bindparam("next_at", type_=Timestamp()),
            sa.bindparam("finished_at", type_=Timestamp()),
        )

    def deliveries(
        self,
        *,
        handler: str | None = None,
        status: DeliveryStatus | None = None,
        event_id: UUID | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        wanted, most = check_status(status), check_count(limit)
        table = self._deliveries
        statement = sa.select(table).where(table.c.tenant == self._tenant)
        if handler is not None:
            statement = statement.where(table.c.handler == check_handler(handler))
        if wanted is not None:
            # As a literal: SQLite uses a partial index only for a value it can see.
            statement = statement.where(table.c.status == sa.literal_column(f"'{wanted.value}'"))
        if event_id is not None:
            wanted_id = check_id(event_id, "event_id")
            events = self._events
            # By the event's position (the deliveries' key), found by the event id.
            at = (
                sa.select(events.c.position)
                .where(events.c.tenant == self._tenant, events.c.id == wanted_id)
                .scalar_subquery()
            )
            statement = statement.where(table.c.position == at, table.c.event_id == wanted_id)
        rows = self._run(statement.order_by(table.c.position, table.c.handler).limit(most))
        return [self._delivery(row) for row in rows.all()]

    def retry(self, event_id: UUID, handler: str, /, *, at: datetime) -> Delivery:
        check_id(event_id, "event_id")
        name, when = check_handler(handler), ensure_utc(at, "at")
        found = self.deliveries(handler=name, event_id=event_id, limit=1)
        if not found:
            raise NotFound("delivery", event_id)
        if found[0].status is not DeliveryStatus.DEAD:
            raise ValidationError("status", found[0].status, "only a dead delivery is retried")
        table = self._deliveries
        self._run(
            sa.update(table)
            .where(
                table.c.tenant == self._tenant,
                table.c.handler == name,
                table.c.position == found[0].position,
            )
            .values(
                status=_PENDING,
                attempts=0,
                next_at=when,
                claim=None,
                leased_until=None,
                finished_at=None,
            )
        )
        return attrs.evolve(
            found[0],
            status=DeliveryStatus.PENDING,
            attempts=0,
            next_at=when,
            claim=None,
            leased_until=None,
            finished_at=None,
        )


if TYPE_CHECKING:  # mypy proves that the adapter implements the port

    def _is_a_store(store: SqlStore, unit: SqlUnitOfWork) -> tuple[Store, UnitOfWork]:
        return store, unit
