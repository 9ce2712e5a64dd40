"""Stores for the tests: memory, a SQLite file, and the PostgreSQL of scripts/test."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmkit.storage.sql import SqlStore, open_store

POSTGRES_URL = os.environ.get("CRMKIT_TEST_POSTGRES_URL")
POSTGRES_REQUIRED = os.environ.get("CRMKIT_REQUIRE_POSTGRES") == "1"
POSTGRES_OFF = os.environ.get("CRMKIT_POSTGRES") == "none"


def postgres_url() -> str:
    """The test server's URL; skips only when CRMKIT_POSTGRES=none says there is none."""
    if POSTGRES_URL:
        return POSTGRES_URL
    if POSTGRES_OFF and not POSTGRES_REQUIRED:
        pytest.skip("CRMKIT_POSTGRES=none: no PostgreSQL server for this run")
    pytest.fail(
        "no PostgreSQL server: run the suite with `bash scripts/test` (it starts one), set "
        "CRMKIT_TEST_POSTGRES_URL, or set CRMKIT_POSTGRES=none to skip these tests"
    )


def sqlite_store(path: Path, tenant: str = "tests") -> Iterator[SqlStore]:
    store = open_store(f"sqlite:///{path}", tenant=tenant)
    yield store
    store.close()


def postgres_store(tenant: str = "tests") -> Iterator[SqlStore]:
    store = open_store(postgres_url(), tenant=tenant)
    yield store
    store.close()
