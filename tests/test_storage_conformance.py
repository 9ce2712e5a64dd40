"""crmkit runs its own conformance kit against its three stores."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmkit.storage import MemoryStore, Store
from crmkit.testing.storage import Capabilities, StoreContract
from tests.storage_support import postgres_store, sqlite_store

# More examples in CI (and on demand, to hunt for disagreements between SQL and Python).
EXAMPLES = int(os.environ.get("CRMKIT_KIT_EXAMPLES", "100" if os.environ.get("CI") else "25"))


class TestMemoryStore(StoreContract):
    capabilities = Capabilities(examples=EXAMPLES)

    @pytest.fixture
    def store(self) -> Store:
        return MemoryStore(tenant="kit")


class TestSqliteStore(StoreContract):
    capabilities = Capabilities(examples=EXAMPLES)

    @pytest.fixture(scope="class")
    @classmethod
    def store(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
        yield from sqlite_store(tmp_path_factory.mktemp("kit") / "crm.db")


class TestPostgresStore(StoreContract):
    capabilities = Capabilities(examples=EXAMPLES)

    @pytest.fixture(scope="class")
    @classmethod
    def store(cls) -> Iterator[Store]:
        yield from postgres_store()


def test_the_contract_demands_a_store_fixture(tmp_path: Path) -> None:
    with pytest.raises(NotImplementedError, match="store"):
        StoreContract.store.__wrapped__(StoreContract())  # type: ignore[attr-defined]
