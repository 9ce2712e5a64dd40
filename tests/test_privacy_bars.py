"""The erasure bars: after erasing a person (and, on SQLite, ``SqlStore.scrub``), no
byte of the database files and no column of any crmkit table holds their values."""

from pathlib import Path
from uuid import uuid4

import sqlalchemy as sa

from crmkit.clock import FixedClock
from crmkit.models import Activity, ActivityKind, Contact
from crmkit.storage.sql import SqlStore, open_store, schema
from tests.storage_support import postgres_url
from tests.test_privacy import T0, crm_on, fill_person


def unique_person() -> tuple[str, str, str, str]:
    tag = uuid4().hex[:10]
    return f"zq.{tag}@example.org", f"Zebadiah{tag}", f"Quillon{tag}", "+4930901899"


def others(store: SqlStore, count: int) -> None:
    """``count`` other people with an activity each: a store of modest size."""
    clock = FixedClock(T0)
    people = [
        Contact.new(email=f"p{n}@example.com", first_name=f"P{n}", clock=clock)
        for n in range(count)
    ]
    with store.unit_of_work() as unit:
        unit.contacts.add_many(people)
        unit.activities.add_many(
            Activity.new(
                contact_id=p.id, kind=ActivityKind.PAGE_VIEW, subject="/pricing", clock=clock
            )
            for p in people
        )
        unit.commit()


def raw_bytes(path: Path) -> bytes:
    found = b""
    for name in (path, path.with_name(path.name + "-wal")):
        if name.exists():
            found += name.read_bytes()
    return found


def test_no_byte_of_a_sqlite_database_holds_an_erased_person(tmp_path: Path) -> None:
    path = tmp_path / "crm.db"
    store = open_store(f"sqlite:///{path}", tenant="bars", clock=FixedClock(T0))
    try:
        others(store, 2000)
        crm = crm_on(store)
        email, first, last, phone = unique_person()
        person = fill_person(crm, email, first, last, phone)
        values = [v.encode() for v in person.texts] + [v.casefold().encode() for v in person.texts]
        store.scrub()
        before = raw_bytes(path)
        assert all(v in before for v in values[:3])  # the test can see them ...

        crm.erase_person(person.contact.id, by="dpo", reason="asked to be forgotten")
        store.scrub()
        after = raw_bytes(path)
        assert [v for v in values if v in after] == []  # ... and they are gone
        assert b"p1999@example.com" in after  # everyone else stays
    finally:
        store.close()


def test_no_column_of_a_postgresql_table_holds_an_erased_person() -> None:
    store = open_store(postgres_url(), tenant=f"bars-{uuid4().hex[:8]}", clock=FixedClock(T0))
    try:
        crm = crm_on(store)
        email, first, last, phone = unique_person()
        person = fill_person(crm, email, first, last, phone)
        assert holding(store, person.texts)  # the query finds them ...

        crm.erase_person(person.contact.id, by="dpo", reason="asked to be forgotten")
        assert holding(store, person.texts) == []  # ... and they are gone
        store.scrub()  # VACUUM frees the old row versions
        assert holding(store, person.texts) == []
    finally:
        store.close()


def holding(store: SqlStore, values: tuple[str, ...]) -> list[str]:
    """``table.column`` of every crmkit column whose text holds one of ``values``."""
    found = []
    assert store.engine is not None
    with store.engine.connect() as connection:
        for table in schema().metadata.sorted_tables:
            for column in table.columns:
                text = sa.cast(column, sa.Text)
                hit = sa.or_(*(text.ilike(f"%{v}%") for v in values))
                count = connection.execute(
                    sa.select(sa.func.count()).select_from(table).where(hit)
                ).scalar_one()
                if count:
                    found.append(f"{table.name}.{column.name}")
    return found
