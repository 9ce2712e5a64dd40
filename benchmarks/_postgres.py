"""What the storage benchmarks share: their table prefix and the PostgreSQL they may use.

Imported by the benchmark scripts beside it (``python benchmarks/storage_import.py``
puts this folder on ``sys.path``).
"""

import sqlalchemy as sa

from crmkit.storage.sql import schema

PREFIX = "bench_"
"""The benchmarks' tables are ``bench_contacts`` and so on, apart from crmkit's own."""
POSTGRES_ENV = "CRMKIT_TEST_POSTGRES_URL"
"""The environment variable naming the PostgreSQL server; unset means SQLite only."""


def postgres_dsn(url: str) -> str:
    """A SQLAlchemy URL as the libpq connection string psycopg takes directly."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def reset_postgres(url: str, *, drop_only: bool = False, prefix: str = PREFIX) -> None:
    """Drop the benchmark's tables (prefix ``bench_`` unless told) and, unless told,
    create them anew."""
    engine = sa.create_engine(url)
    try:
        tables = schema(prefix).metadata
        tables.drop_all(engine)
        if not drop_only:
            tables.create_all(engine)
    finally:
        engine.dispose()
