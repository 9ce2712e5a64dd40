"""Units of work do not nest: a second one of the same store in the same thread fails at
once with a clear error, instead of waiting for the busy timeout (issue 11)."""

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crmkit.crm import CRM
from crmkit.errors import StorageError
from crmkit.models import Contact
from crmkit.storage import Store
from tests.storage_support import STORES, stepping_store

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from stepping_store(request.param, tmp_path, NOW, "nest")


def test_a_crm_call_inside_an_open_unit_fails_at_once(store: Store) -> None:
    crm = CRM(store)
    ada = Contact.new(email="ada@example.com", clock=store.clock)
    with store.unit_of_work() as unit:
        unit.contacts.add(ada)
        started = time.monotonic()
        with pytest.raises(StorageError, match="do not nest"):
            crm.find_contact("ada@example.com")
        other = store.for_tenant("another-tenant").unit_of_work()
        with pytest.raises(StorageError, match="do not nest"):
            other.__enter__()
        assert time.monotonic() - started < 1  # not the 10 s busy timeout
        unit.commit()  # the outer unit is unharmed
    assert crm.find_contact("ada@example.com") == ada  # and the store works afterwards
    with store.unit_of_work() as unit:  # units one after another are fine
        assert unit.contacts.count() == 1


def test_other_threads_still_get_their_own_units(store: Store) -> None:
    found: list[int] = []
    failures: list[BaseException] = []

    def count() -> None:
        try:
            with store.unit_of_work() as unit:
                found.append(unit.contacts.count())
        except BaseException as error:  # pragma: no cover - reported below
            failures.append(error)

    worker = threading.Thread(target=count)
    with store.unit_of_work() as unit:
        unit.contacts.add(Contact.new(email="bo@example.com", clock=store.clock))
        unit.commit()
        worker.start()  # another thread's unit is not nested: it waits or runs alongside
    worker.join()
    assert (failures, found) == ([], [1])
