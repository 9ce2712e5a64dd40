"""The SQLAlchemy adapter: a store on SQLite (embedded default) or PostgreSQL."""

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import islice
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast
from uuid import UUID

import attrs
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.pool import StaticPool

from crmkit._extras import import_extra
from crmkit.clock import SYSTEM_CLOCK, Clock
from crmkit.errors import (
    ConcurrencyConflict,
    CrmkitError,
    Duplicate,
    NotFound,
    StorageError,
    ValidationError,
)
from crmkit.models import (
    Account,
    Activity,
    ActivityKind,
    Consent,
    Contact,
    Deal,
    Entity,
    Lead,
    Segment,
    StageChange,
    SubjectKind,
    Task,
    Ticket,
)
from crmkit.models.rules import Rule
from crmkit.storage._base import (
    check_batch_size,
    check_id,
    check_item,
    check_kinds,
    check_limit,
    check_many,
    check_rule,
    check_subject,
    check_tenant,
    check_window,
    iterate_pages,
    page_of,
    query_now,
    start_after,
)
from crmkit.storage._columns import columns, memo
from crmkit.storage._port import Store, UnitOfWork
from crmkit.storage._query import Cursor, Order, Page
from crmkit.storage.sql._codec import Codec, check_table, codec
from crmkit.storage.sql._rules import RuleCompiler
from crmkit.storage.sql._schema import DEFAULT_PREFIX, Schema, schema

__all__ = ["SqlStore", "SqlUnitOfWork", "configure_sqlite", "create_schema", "open_store"]

_E = TypeVar("_E", bound=Entity)
_CHUNK: Final = 5000
_ID_CHUNK: Final = 500
_DIALECTS: Final = ("sqlite", "postgresql")


# ---------------------------------------------------------------------------- engines


_CONFIGURED: Final["weakref.WeakSet[Engine]"] = weakref.WeakSet()


def configure_sqlite(engine: Engine, *, busy_timeout_ms: int = 10_000) -> Engine:
    """Make a SQLite engine behave: WAL, foreign keys, a busy timeout, real transactions.

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


def create_schema(bind: Engine | Connection, *, prefix: str = DEFAULT_PREFIX) -> None:
    """Create crmkit's tables and indexes where they are missing."""
    if not isinstance(bind, Engine | Connection):
        raise ValidationError("bind", bind, "expected a SQLAlchemy engine or connection")
    schema(prefix).metadata.create_all(bind, checkfirst=True)


def open_store(
    target: str | sa.URL | Engine | Connection,
    *,
    tenant: str = "default",
    prefix: str = DEFAULT_PREFIX,
    clock: Clock = SYSTEM_CLOCK,
    create: bool = True,
) -> "SqlStore":
    """Open a store on a database URL, an engine or a host's connection.

    * ``"sqlite:///crm.db"`` (the embedded default) or
      ``"postgresql+psycopg://user@host/db"`` (extra ``postgres``): the store owns the
      engine and :meth:`SqlStore.close` disposes of it;
    * an :class:`~sqlalchemy.engine.Engine`: the store uses it and leaves it open;
    * a :class:`~sqlalchemy.engine.Connection`: the store *joins* it. Each unit of work
      is a SAVEPOINT inside the host's transaction, so crmkit's writes commit or roll
      back with the host's.

    ``create`` creates missing tables (pass ``False`` when migrations own the schema).
    """
    tenant = check_tenant(tenant)
    tables = schema(prefix)
    if not callable(getattr(clock, "now", None)):
        raise ValidationError("clock", clock, "expected a Clock (an object with now())")
    if isinstance(target, Connection):
        if target.dialect.name == "sqlite" and target.engine not in _CONFIGURED:
            raise StorageError(
                "call configure_sqlite(engine) before its first connection, then join one"
            )
        store = SqlStore(tables, tenant, clock, engine=None, connection=target, owned=False)
    elif isinstance(target, Engine):
        if target.dialect.name == "sqlite":
            configure_sqlite(target)
        store = SqlStore(tables, tenant, clock, engine=target, connection=None, owned=False)
    elif isinstance(target, str | sa.URL):
        store = SqlStore(tables, tenant, clock, engine=_engine(target), connection=None, owned=True)
    else:
        raise ValidationError("target", target, "expected a URL, an Engine or a Connection")
    if create:
        with store._errors():
            if isinstance(target, Connection):
                create_schema(target, prefix=prefix)
            else:
                assert store.engine is not None
                with store.engine.begin() as connection:
                    create_schema(connection, prefix=prefix)
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
        self._closed = False

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
        return other

    @contextmanager
    def unit_of_work(self) -> Iterator["SqlUnitOfWork"]:
        """A unit of work: commit to keep its changes; leaving the block rolls back."""
        if self._closed:
            raise StorageError("this store is closed")
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
        self.contacts = _Repository(self, Contact)
        self.accounts = _Repository(self, Account)
        self.leads = _Repository(self, Lead)
        self.deals = _Repository(self, Deal)
        self.tickets = _Repository(self, Ticket)
        self.activities = _Activities(self, Activity)
        self.tasks = _Repository(self, Task)
        self.segments = _Repository(self, Segment)
        self.consents = _Repository(self, Consent)
        self.stage_history = _StageHistory(self, StageChange)

    def commit(self) -> None:
        """Make everything done so far permanent (when joined: part of the host's)."""
        self._check_open()
        if self._transaction is not None and self._transaction.is_active:
            with self.store._errors():
                self._transaction.commit()
        self._transaction = None

    def rollback(self) -> None:
        """Discard everything done since the last commit."""
        self._check_open()
        self._rollback()

    def _rollback(self) -> None:
        if self._transaction is not None and self._transaction.is_active:
            self._transaction.rollback()
        self._transaction = None

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
def _read_columns(table: sa.Table, codec: Codec) -> tuple[sa.ColumnElement[Any], ...]:
    """The columns ``codec.decode`` reads, without SQLAlchemy's result processing."""
    return tuple(sa.type_coerce(table.c[name], sa.types.NullType()) for name in codec.read_names)


def _fetch(connection: Connection, statement: sa.Select[Any]) -> list[Any]:
    """Every row of ``statement`` as the driver's tuples (no per-row work in SQLAlchemy)."""
    result = connection.execute(statement)
    try:
        return cast(list[Any], result.cursor.fetchall())
    finally:
        result.close()


def _same(value: UUID) -> UUID:
    return value


def _uuid_of_hex(value: str) -> UUID:
    return UUID(hex=value)


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
        self._read = _read_columns(self._table, self._codec)
        self._read_id: Callable[[Any], UUID] = (
            _same if store.dialect == "postgresql" else _uuid_of_hex
        )

    @property
    def entity(self) -> type[_E]:
        return self._entity

    # ------------------------------------------------------------------ reading

    def _base(self) -> sa.Select[Any]:
        return sa.select(*self._read).where(self._table.c.tenant == self._tenant)

    def _load(self, statement: sa.Select[Any]) -> list[_E]:
        unit = self._unit
        decode = self._codec.decode
        with unit.store._errors():
            rows = _fetch(unit._conn(), statement)
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

    def get(self, id: UUID, /) -> _E:
        found = self._find_one(check_id(id))
        if found is None:
            raise NotFound(self._name, id)
        return found

    def get_many(self, ids: Iterable[UUID], /) -> Mapping[UUID, _E]:
        wanted = [check_id(i, f"ids[{n}]") for n, i in enumerate(check_many(ids, "ids"))]
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
            except Exception as error:
                if not self._unit.store._is_integrity_error(error):
                    raise
                if self._find_one(item.id) is not None:
                    raise Duplicate(self._name, item.id) from None
                raise
        return item

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
                except Exception as error:
                    if unit.store._is_integrity_error(error):
                        raise self._duplicate(chunk, total) from None
                    raise
                total += len(chunk)
        return total

    def _copy_many(self, items: Iterable[_E]) -> int:
        """``add_many`` on PostgreSQL: one ``COPY`` for the whole call, streamed.

        Only the ids are kept (16 bytes each), to name the first taken id if the
        database refuses the rows.
        """
        unit, entity, tenant, encode = self._unit, self._entity, self._tenant, self._codec.encode
        ids = bytearray()
        total = 0
        with unit.store._errors():
            try:
                with (
                    unit._savepoint() as connection,
                    self._raw(connection).cursor() as cursor,
                    cursor.copy(self._sql.copy) as copy,
                ):
                    for index, item in enumerate(items):
                        check_item(item, entity, f"[{index}]")
                        ids += item.id.bytes
                        copy.write_row(encode(tenant, item))
                        total = index + 1
            except Exception as error:
                if unit.store._is_integrity_error(error):
                    raise self._first_taken(ids) from None
                raise
        return total

    def _first_taken(self, ids: bytearray) -> Exception:
        """The first of ``ids`` (16 bytes each) already stored or repeated, as Duplicate."""
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
        return StorageError(f"a {self._name} row violates a constraint")  # pragma: no cover

    def _duplicate(self, chunk: Sequence[_E], offset: int) -> Exception:
        """The first item of ``chunk`` whose id is taken, as a :class:`Duplicate`."""
        seen: set[UUID] = set()
        stored = set(self.get_many([item.id for item in chunk]))
        for index, item in enumerate(chunk):
            if item.id in seen or item.id in stored:
                return Duplicate(self._name, item.id, index=offset + index)
            seen.add(item.id)
        return StorageError(f"a {self._name} row violates a constraint")  # pragma: no cover

    def _stored_version(self, id: UUID) -> int | None:
        statement = sa.select(self._table.c.version).where(
            self._table.c.tenant == self._tenant, self._table.c.id == id
        )
        return self._unit._conn().execute(statement).scalar_one_or_none()

    def update(self, item: _E, /) -> _E:
        item = check_item(item, self._entity)
        new = attrs.evolve(item, version=item.version + 1)
        row = self._codec.encode(self._tenant, new)
        with self._unit.store._errors(), self._unit._savepoint() as connection:
            params = (*row[2:], row[0], row[1], item.version)
            cursor = self._raw(connection).execute(self._sql.update, params)
            if cursor.rowcount != 1:
                actual = self._stored_version(item.id)
                if actual is None:
                    raise NotFound(self._name, item.id)
                raise ConcurrencyConflict(self._name, item.id, item.version, actual)
            if self._codec.members_field is not None:
                self._delete_members(connection, item.id)
                self._write_members(connection, [new])
        return new

    def delete(self, id: UUID, /, *, version: int | None = None) -> None:
        check_id(id)
        table = self._table
        statement = sa.delete(table).where(table.c.tenant == self._tenant, table.c.id == id)
        if version is not None:
            statement = statement.where(table.c.version == version)
        with self._unit.store._errors(), self._unit._savepoint() as connection:
            self._delete_members(connection, id)
            if connection.execute(statement).rowcount != 1:
                actual = self._stored_version(id)
                if actual is None:
                    raise NotFound(self._name, id)
                raise ConcurrencyConflict(self._name, id, cast(int, version), actual)

    # ------------------------------------------------------------------ queries

    def _where(self, rule: Rule | None, now: datetime | None) -> list[Any]:
        rule = check_rule(rule, self._entity)
        conditions: list[Any] = [self._table.c.tenant == self._tenant]
        if rule is not None:
            fixed = query_now(now, self._unit.store.clock)
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
        statement = self._base().where(table.c.contact_id == contact_id)
        if wanted is not None:
            statement = statement.where(table.c.kind.in_(sorted(k.value for k in wanted)))
        if low is not None:
            statement = statement.where(table.c.occurred_at >= low)
        if high is not None:
            statement = statement.where(table.c.occurred_at < high)
        return self._load(statement.order_by(table.c.occurred_at, table.c.id))


class _StageHistory(_Repository[StageChange]):
    def for_subject(self, subject: SubjectKind, subject_id: UUID, /) -> list[StageChange]:
        subject = check_subject(subject)
        check_id(subject_id, "subject_id")
        table = self._table
        statement = self._base().where(
            table.c.subject == subject.value, table.c.subject_id == subject_id
        )
        return self._load(statement.order_by(table.c.at, table.c.id))


if TYPE_CHECKING:  # mypy proves that the adapter implements the port

    def _is_a_store(store: SqlStore, unit: SqlUnitOfWork) -> tuple[Store, UnitOfWork]:
        return store, unit
