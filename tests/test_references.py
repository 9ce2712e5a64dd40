"""References under concurrency: a delete and a new referrer racing on two connections.

The port refuses a delete that would orphan (it asks for referrers first) and a write
whose reference names nothing. Between the question and the write another connection
may commit; the foreign keys of the SQL tables close that gap, and the store names the
outcome with the same typed errors.
"""

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
import sqlalchemy as sa

from crmkit.errors import DanglingReference, StillReferenced
from crmkit.models import Contact, Lead, LeadChannel
from crmkit.storage.sql import SqlStore, open_store, schema
from tests.storage_support import postgres_url


@pytest.fixture(params=["sqlite", "postgresql"])
def two(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[SqlStore, SqlStore]]:
    """Two stores on one database and tenant: two connections, as two processes have."""
    url = f"sqlite:///{tmp_path / 'crm.db'}" if request.param == "sqlite" else postgres_url()
    tenant = f"race-{uuid4().hex[:12]}"
    first = open_store(url, tenant=tenant)
    second = open_store(url, tenant=tenant)
    yield first, second
    first.close()
    second.close()


def _lead(contact: Contact) -> Lead:
    return Lead.new(contact_id=contact.id, source="web", channel=LeadChannel.FORM)


def test_a_referrer_written_while_its_contact_is_deleted_is_refused(
    two: tuple[SqlStore, SqlStore],
) -> None:
    deleter, writer = two
    ada = Contact.new(first_name="Ada")
    with deleter.unit_of_work() as unit:
        unit.contacts.add(ada)
        unit.commit()
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            with writer.unit_of_work() as unit:
                unit.leads.add(_lead(ada))  # waits for the delete's transaction
                unit.commit()
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    with deleter.unit_of_work() as unit:
        unit.contacts.delete(ada.id)  # nothing refers to it yet
        thread = threading.Thread(target=write)
        thread.start()
        time.sleep(0.5)  # the writer is now waiting on the deleted row (or the lock)
        unit.commit()
    thread.join(30)
    assert len(outcome) == 1
    assert isinstance(outcome[0], DanglingReference)
    assert (outcome[0].field, outcome[0].value) == ("contact_id", ada.id)
    with writer.unit_of_work() as unit:
        assert unit.leads.count() == 0


def test_a_delete_while_a_referrer_is_written_is_refused(
    two: tuple[SqlStore, SqlStore],
) -> None:
    writer, deleter = two
    ada = Contact.new(first_name="Ada")
    lead = _lead(ada)
    with writer.unit_of_work() as unit:
        unit.contacts.add(ada)
        unit.commit()
    outcome: list[BaseException | None] = []

    def delete() -> None:
        try:
            with deleter.unit_of_work() as unit:
                unit.contacts.delete(ada.id)  # the new lead is not committed yet
                unit.commit()
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    with writer.unit_of_work() as unit:
        unit.leads.add(lead)
        thread = threading.Thread(target=delete)
        thread.start()
        time.sleep(0.5)
        unit.commit()
    thread.join(30)
    assert len(outcome) == 1
    assert isinstance(outcome[0], StillReferenced)
    assert outcome[0].referrers == (("lead", lead.id),)
    with deleter.unit_of_work() as unit:
        assert unit.contacts.get(ada.id) == ada
        assert unit.leads.get(lead.id) == lead


def test_sqlite_declares_every_foreign_key_after_postgresql_created_the_tables(
    tmp_path: Path,
) -> None:
    # PostgreSQL adds the keys of the leads-deals cycle with ALTER TABLE, which marks the
    # shared constraint objects as not to be declared inline; SQLite must still get them.
    prefix = f"fk{uuid4().hex[:8]}_"
    server = open_store(postgres_url(), tenant="order", prefix=prefix)
    server.close()
    embedded = open_store(f"sqlite:///{tmp_path / 'crm.db'}", tenant="order", prefix=prefix)
    try:
        assert embedded.engine is not None
        with embedded.engine.connect() as connection:
            declared = {
                (table, row[3])
                for table in (f"{prefix}leads", f"{prefix}contacts", f"{prefix}deals")
                for row in connection.exec_driver_sql(f"PRAGMA foreign_key_list({table})")
            }
        assert (f"{prefix}leads", "deal_id") in declared
        assert (f"{prefix}deals", "lead_id") in declared
        assert (f"{prefix}contacts", "account_id") in declared
    finally:
        embedded.close()
        engine = sa.create_engine(postgres_url())
        with engine.begin() as connection:
            for table in reversed(schema(prefix).metadata.sorted_tables):
                connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table.name} CASCADE")
        engine.dispose()
