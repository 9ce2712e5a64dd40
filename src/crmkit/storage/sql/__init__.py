"""The SQLAlchemy adapter: SQLite as the embedded default, PostgreSQL as the server.

* :func:`open_store` opens a store on a URL (``"sqlite:///crm.db"``,
  ``"postgresql+psycopg://..."`` with the extra ``postgres``), an engine, or a host's
  connection, whose transaction crmkit's units of work then join;
* :func:`schema` and :data:`metadata` give crmkit's Core tables, for a host's Alembic
  migrations; :func:`create_schema` creates them, and :func:`upgrade` brings the tables
  of an older crmkit to this one's :data:`SCHEMA_VERSION` (extra ``migrate``);
* rules compile to SQL that selects exactly what the Python interpreter selects.
"""

from crmkit.storage.sql._migrate import Upgrade, upgrade
from crmkit.storage.sql._schema import DEFAULT_PREFIX, SCHEMA_VERSION, Schema, metadata, schema
from crmkit.storage.sql._store import (
    SqlStore,
    SqlUnitOfWork,
    configure_sqlite,
    create_schema,
    open_store,
)

__all__ = [
    "DEFAULT_PREFIX",
    "SCHEMA_VERSION",
    "Schema",
    "SqlStore",
    "SqlUnitOfWork",
    "Upgrade",
    "configure_sqlite",
    "create_schema",
    "metadata",
    "open_store",
    "schema",
    "upgrade",
]
