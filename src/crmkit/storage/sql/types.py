"""Column types of crmkit's tables, whose database form is fixed by crmkit.

Public so that migrations a host generates (Alembic autogenerate writes
``crmkit.storage.sql.types.UUIDType()``) can import them.

SQLite has no UUID, timestamp or JSON type, so crmkit fixes their text forms: UUIDs as
32 hex digits, timestamps as ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC (so that text order
is time order), JSON as text. PostgreSQL uses ``uuid``, ``timestamptz`` and ``jsonb``.
The functions here are the single definition of those forms: the types use them for
bound values and results, the bulk writer for the rows it renders itself.
"""

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

__all__ = ["JSONText", "TagList", "Timestamp", "UUIDType", "sqlite_timestamp"]


def sqlite_timestamp(value: datetime) -> str:
    """The SQLite text form of an aware datetime: UTC, microseconds, fixed width."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


def _read_sqlite_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class UUIDType(sa.types.TypeDecorator[UUID]):
    """A UUID: native ``uuid`` on PostgreSQL, 32 hex digits elsewhere."""

    impl = sa.CHAR(32)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.UUID(as_uuid=True))
        return dialect.type_descriptor(sa.CHAR(32))

    def process_bind_param(self, value: UUID | None, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return value.hex

    def process_result_value(self, value: Any, dialect: Dialect) -> UUID | None:
        if value is None or isinstance(value, UUID):
            return value
        return UUID(hex=value)

    def __repr__(self) -> str:
        return "UUIDType()"


class Timestamp(sa.types.TypeDecorator[datetime]):
    """An aware UTC datetime: ``timestamptz`` on PostgreSQL, fixed-width text elsewhere."""

    impl = sa.String(26)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.TIMESTAMP(timezone=True))
        return dialect.type_descriptor(sa.String(26))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return sqlite_timestamp(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        return _read_sqlite_timestamp(value)

    def __repr__(self) -> str:
        return "Timestamp()"


class JSONText(sa.types.TypeDecorator[Any]):
    """JSON: text in SQLite, ``json`` on PostgreSQL, which keeps the text as written
    (``jsonb`` would turn the float ``1e+16`` into an integer). Bound as JSON text."""

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSON(none_as_null=True))
        return dialect.type_descriptor(sa.Text())

    def bind_processor(self, dialect: Dialect) -> Any:
        # Already JSON text (the codec renders it); PostgreSQL casts text to json.
        return None

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if isinstance(value, str):
            return json.loads(value)
        return value

    def __repr__(self) -> str:
        return "JSONText()"


class TagList(JSONText):
    """A JSON array of strings: text in SQLite, ``jsonb`` on PostgreSQL (for its ``?``)."""

    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB(none_as_null=True))
        return dialect.type_descriptor(sa.Text())

    def __repr__(self) -> str:
        return "TagList()"
