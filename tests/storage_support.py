"""Stores for the tests: memory, a SQLite file, and the PostgreSQL of scripts/test."""

import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from uuid import uuid4

import pytest
import sqlalchemy as sa

from crmkit.clock import FixedClock
from crmkit.storage import MemoryStore, Store
from crmkit.storage.sql import SqlStore, open_store

STORES = ["memory", "sqlite", "postgresql"]
"""The stores a use-case test runs on (the ``params`` of its ``store`` fixture)."""

POSTGRES_URL = os.environ.get("CRMKIT_TEST_POSTGRES_URL")
POSTGRES_REQUIRED = os.environ.get("CRMKIT_REQUIRE_POSTGRES") == "1"
POSTGRES_OFF = os.environ.get("CRMKIT_POSTGRES") == "none"


WORKER = os.environ.get("PYTEST_XDIST_WORKER")
"""The pytest-xdist worker running this process (``gw0``, ...), or ``None``."""


def postgres_url() -> str:
    """The test server's URL; skips only when CRMKIT_POSTGRES=none says there is none.

    Under pytest-xdist each worker gets a database of its own on that server, made
    afresh for the run (``<database>_<worker>``), so that workers never race to create
    the same tables and a run never meets tables an older crmkit left behind.
    """
    if POSTGRES_URL:
        return POSTGRES_URL if WORKER is None else _worker_database(POSTGRES_URL, WORKER)
    if POSTGRES_OFF and not POSTGRES_REQUIRED:
        pytest.skip("CRMKIT_POSTGRES=none: no PostgreSQL server for this run")
    pytest.fail(
        "no PostgreSQL server: run the suite with `bash scripts/test` (it starts one), set "
        "CRMKIT_TEST_POSTGRES_URL, or set CRMKIT_POSTGRES=none to skip these tests"
    )


@cache
def _worker_database(url: str, worker: str) -> str:
    given = sa.engine.make_url(url)
    name = f"{given.database}_{worker}"
    engine = sa.create_engine(given, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return given.set(database=name).render_as_string(hide_password=False)


def sqlite_store(path: Path, tenant: str = "tests") -> Iterator[SqlStore]:
    store = open_store(f"sqlite:///{path}", tenant=tenant)
    yield store
    store.close()


def postgres_store(tenant: str = "tests") -> Iterator[SqlStore]:
    store = open_store(postgres_url(), tenant=tenant)
    yield store
    store.close()


def stepping_store(kind: str, tmp_path: Path, now: datetime, name: str) -> Iterator[Store]:
    """A store of ``kind`` (one of :data:`STORES`) for one test: a tenant of its own
    (the PostgreSQL server is shared), and a clock that starts at ``now`` and steps one
    second per reading, so that every event has its own time."""
    clock = FixedClock(now, step=timedelta(seconds=1))
    tenant = f"{name}-{uuid4().hex[:12]}"
    if kind == "memory":
        yield MemoryStore(tenant, clock=clock)
        return
    url = f"sqlite:///{tmp_path / 'crm.db'}" if kind == "sqlite" else postgres_url()
    made = open_store(url, tenant=tenant, clock=clock)
    yield made
    made.close()
