"""The SQL adapter beyond the port: opening, joining a host's transaction, the schema,
exact decimals and money, and writers in several processes."""

import multiprocessing
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import attrs
import pytest
import sqlalchemy as sa

from crmkit.clock import FixedClock
from crmkit.errors import ConcurrencyConflict, InvalidRule, StorageError, ValidationError
from crmkit.models import Activity, ActivityKind, Contact, Deal, DealStatus, Money, Segment
from crmkit.segmentation import (
    Context,
    activity,
    contacts_where,
    deals_where,
    evaluate,
    field,
    in_segment,
)
from crmkit.storage.sql import (
    SqlStore,
    configure_sqlite,
    create_schema,
    metadata,
    open_store,
    schema,
)
from tests.storage_support import postgres_store, postgres_url, sqlite_store

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    tenant = f"t{abs(hash(request.node.name)) % 10**9}"
    if request.param == "sqlite":
        yield from sqlite_store(tmp_path / "crm.db", tenant)
    else:
        made = postgres_store(tenant)
        store = next(made)
        with store.unit_of_work() as unit:  # a tenant of its own, emptied first
            for repository in (unit.contacts, unit.deals, unit.activities, unit.segments):
                for item in list(repository.iterate()):
                    repository.delete(item.id)
            unit.commit()
        yield store
        store.close()


# ---------------------------------------------------------------------------- opening


def test_open_store_rejects_what_it_cannot_open(tmp_path: Path) -> None:
    for target, reason in [
        (42, "expected a URL"),
        ("not a url", "not a database URL"),
        ("mysql://u@h/db", "SQLite or PostgreSQL"),
        ("postgresql+psycopg2://u@h/db", "psycopg 3"),
    ]:
        with pytest.raises(ValidationError, match=reason) as caught:
            open_store(target)  # type: ignore[arg-type]
        assert caught.value.field == "target"
    with pytest.raises(ValidationError) as bad_prefix:
        open_store(f"sqlite:///{tmp_path / 'x.db'}", prefix="Drop Table;")
    assert bad_prefix.value.field == "prefix"
    with pytest.raises(ValidationError) as bad_tenant:
        open_store(f"sqlite:///{tmp_path / 'x.db'}", tenant="")
    assert bad_tenant.value.field == "tenant"


def test_sqlite_is_opened_with_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'crm.db'}")
    assert store.engine is not None
    with store.engine.connect() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA foreign_keys").scalar() == 1
        assert pragma("PRAGMA busy_timeout").scalar() == 10_000
    store.close()


def test_configure_sqlite_is_idempotent_and_savepoints_work(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    assert configure_sqlite(configure_sqlite(engine)) is engine
    store = open_store(engine)
    kept, dropped = Contact.new(first_name="kept"), Contact.new(first_name="dropped")
    with store.unit_of_work() as unit:
        unit.contacts.add(kept)
        with pytest.raises(ConcurrencyConflict):  # a failing update undoes itself only
            unit.contacts.update(attrs.evolve(kept, version=5))
        unit.commit()
        unit.contacts.add(dropped)
    with store.unit_of_work() as unit:
        assert [c.id for c in unit.contacts.find()] == [kept.id]
    engine.dispose()


def test_missing_tables_are_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="holds no crmkit tables"):
        open_store(f"sqlite:///{tmp_path / 'empty.db'}", create=False)


def test_schema_names_tables_by_prefix_and_indexes_lead_with_the_tenant() -> None:
    assert schema() is schema("crm_") is schema(prefix="crm_")
    assert schema().metadata is metadata
    tables = schema("app_crm_").metadata.tables
    assert "app_crm_contacts" in tables
    assert "app_crm_segment_members" in tables
    for table in metadata.tables.values():
        if table is schema().meta:  # facts about the database, shared by every tenant
            assert table.primary_key.columns.keys() == ["key"]
            continue
        assert table.primary_key.columns.keys()[0] == "tenant"
        for index in table.indexes:
            assert next(iter(index.columns)).name == "tenant", index.name
    for index in schema().email_indexes:
        assert next(iter(index.columns)).name == "tenant", index.name
    contact_indexes = {tuple(c.name for c in i.columns) for i in tables["app_crm_contacts"].indexes}
    assert {("tenant", "lifecycle_stage"), ("tenant", "country"), ("tenant", "created_at")} <= (
        contact_indexes
    )
    assert ("tenant", "score") in {
        tuple(c.name for c in i.columns) for i in tables["app_crm_leads"].indexes
    }


# ---------------------------------------------------------------------------- joining


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_joined_store_commits_and_rolls_back_with_the_host(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        engine = configure_sqlite(sa.create_engine(f"sqlite:///{tmp_path / 'host.db'}"))
    else:
        engine = sa.create_engine(postgres_url())
    host = sa.MetaData()
    orders = sa.Table(f"orders_{backend}", host, sa.Column("id", sa.Integer, primary_key=True))
    with engine.begin() as connection:
        host.drop_all(connection)
        host.create_all(connection)
        create_schema(connection)
    tenant = f"join-{uuid4().hex}"
    ada, bo = Contact.new(first_name="Ada"), Contact.new(first_name="Bo")
    with engine.connect() as connection, connection.begin() as transaction:
        connection.execute(sa.insert(orders).values(id=1))
        crm = open_store(connection, tenant=tenant, create=False)
        with crm.unit_of_work() as unit:
            unit.contacts.add(ada)
            unit.commit()
        transaction.commit()
    with engine.connect() as connection:
        transaction = connection.begin()
        connection.execute(sa.insert(orders).values(id=2))
        crm = open_store(connection, tenant=tenant, create=False)
        with crm.unit_of_work() as unit:
            unit.contacts.add(bo)
            unit.commit()  # kept in the host's transaction, which then rolls back
        transaction.rollback()
    with engine.connect() as connection:
        assert connection.execute(sa.select(orders.c.id)).scalars().all() == [1]
    with open_store(engine, tenant=tenant).unit_of_work() as unit:
        assert [c.id for c in unit.contacts.find()] == [ada.id]
    with engine.begin() as connection:
        host.drop_all(connection)
    engine.dispose()


def test_joining_an_unconfigured_sqlite_engine_is_refused(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    with engine.connect() as connection, pytest.raises(StorageError, match="configure_sqlite"):
        open_store(connection)
    engine.dispose()


# ---------------------------------------------------------------------------- exact values


def _deal(probability: str, amount: str | None = None, currency: str = "EUR") -> Deal:
    return Deal.new(
        title="d",
        pipeline="sales",
        stage="new",
        probability=Decimal(probability),
        amount=None if amount is None else Money(amount, currency),
    )


def test_decimals_and_money_compare_exactly_at_every_edge(store: SqlStore) -> None:
    deals = [
        _deal("0.5", "999999999999999999.999999999999"),
        _deal("0.500000000001", "123456789012345678.000000000001"),
        _deal("0.499999999999", "0.000000000001"),
        _deal("1", "10.50", "USD"),
        _deal("0", None),
    ]
    literals: list[Any] = [
        Decimal("0.5"),
        Decimal("0.5000000000005"),  # more places than can be stored
        Decimal("0.4999999999995"),
        Decimal("1E+30"),  # beyond every storable value
        Decimal("-1E+30"),
        0.5,
    ]
    money_literals = [
        Money("10.5", "USD"),
        Money("0.000000000001", "EUR"),
        Money("-999999999999999999.999999999999", "EUR"),
    ]
    with store.unit_of_work() as unit:
        unit.deals.add_many(deals)
        context = Context(now=NOW)
        for op in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"):
            for value in literals:
                rule = deals_where(getattr(field("probability"), op)(value))
                expected = {d.id for d in deals if evaluate(rule, d, context) is True}
                assert {d.id for d in unit.deals.find(rule, now=NOW)} == expected, (op, value)
            for money in money_literals:
                rule = deals_where(getattr(field("amount"), op)(money))
                expected = {d.id for d in deals if evaluate(rule, d, context) is True}
                assert {d.id for d in unit.deals.find(rule, now=NOW)} == expected, (op, money)
        assert unit.deals.get(deals[0].id) == deals[0]


def test_money_sums_are_exact_over_many_activities(store: SqlStore) -> None:
    buyer = Contact.new(first_name="Ada")
    purchases = [
        Activity.new(
            contact_id=buyer.id,
            kind=ActivityKind.PURCHASE,
            occurred_at=NOW - timedelta(days=1),
            amount=Money("0.1", "EUR"),
        )
        for _ in range(30)
    ]
    with store.unit_of_work() as unit:
        unit.contacts.add(buyer)
        unit.activities.add_many(purchases)
        spent = activity(ActivityKind.PURCHASE).total()
        assert unit.contacts.count(contacts_where(spent == Money("3.0", "EUR")), now=NOW) == 1
        assert unit.contacts.count(contacts_where(spent > Money("2.9", "EUR")), now=NOW) == 1
        assert unit.contacts.count(contacts_where(spent < Money("3", "EUR")), now=NOW) == 0
        assert unit.contacts.count(contacts_where(spent == Money("0", "USD")), now=NOW) == 1


def test_a_sum_beyond_64_bits_fails_loudly_on_sqlite(tmp_path: Path) -> None:
    store = next(sqlite_store(tmp_path / "crm.db"))
    buyer = Contact.new(first_name="Ada")
    huge = [
        Activity.new(
            contact_id=buyer.id,
            kind=ActivityKind.PURCHASE,
            occurred_at=NOW - timedelta(days=1),
            amount=Money("900000000000000000", "EUR"),
        )
        for _ in range(11)
    ]
    with store.unit_of_work() as unit:
        unit.contacts.add(buyer)
        unit.activities.add_many(huge)
        rule = contacts_where(activity(ActivityKind.PURCHASE).total() > Money("1", "EUR"))
        with pytest.raises(StorageError, match="overflow"):
            unit.contacts.count(rule, now=NOW)


def test_segments_of_the_store_are_found_by_rules(store: SqlStore) -> None:
    people = [Contact.new(first_name=n, country="DE") for n in ("a", "b", "c")]
    listed = Segment.new(name="listed", members=[people[0].id, people[2].id])
    ruled = Segment.new(name="ruled", rule=contacts_where(field("first_name") == "b"))
    loop = Segment.new(name="loop", rule=contacts_where(field("country") == "DE"))
    loop = attrs.evolve(loop, rule=contacts_where(in_segment(loop.id)))
    with store.unit_of_work() as unit:
        unit.contacts.add_many(people)
        unit.segments.add_many([listed, ruled, loop])
        either = contacts_where(in_segment(listed) | in_segment(ruled))
        assert unit.contacts.count(either) == 3
        assert unit.contacts.count(contacts_where(~in_segment(listed))) == 1
        with pytest.raises(InvalidRule, match="refer to each other"):
            unit.contacts.count(contacts_where(in_segment(loop)))
        with pytest.raises(InvalidRule, match="no such segment"):
            unit.contacts.count(contacts_where(in_segment(Segment.new(name="gone", members=[]))))
        updated = unit.segments.update(attrs.evolve(listed, members=frozenset([people[1].id])))
        assert unit.segments.get(listed.id) == updated
        assert unit.contacts.count(contacts_where(in_segment(listed))) == 1


def test_a_segment_whose_rule_is_unknown_holds_nobody(store: SqlStore) -> None:
    # NOT IN with a NULL in its list is never TRUE; a segment of that rule is empty, also
    # where the rule is negated inside it (PostgreSQL read "NOT x IS true" as NOT (x IS
    # true), so the segment held everyone whose rule was UNKNOWN).
    nobody = Contact.new(first_name=None)
    ada = Contact.new(first_name="ada")
    odd = Segment.new(name="odd", rule=contacts_where(~field("first_name").is_in(None, "ada")))
    with store.unit_of_work() as unit:
        unit.contacts.add_many([nobody, ada])
        unit.segments.add(odd)
        assert unit.contacts.count(contacts_where(in_segment(odd))) == 0
        assert unit.contacts.count(contacts_where(~in_segment(odd))) == 2


def test_deal_status_and_dates_round_trip(store: SqlStore) -> None:
    won = attrs.evolve(
        _deal("1", "12.50"),
        status=DealStatus.WON,
        closed_at=NOW,
        expected_close=NOW.date(),
    )
    with store.unit_of_work() as unit:
        unit.deals.add(won)
        assert unit.deals.get(won.id) == won
        assert str(unit.deals.get(won.id).amount.amount) == "12.50"  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- processes


def test_rows_changed_behind_the_store_are_checked_when_read(store: SqlStore) -> None:
    ada = Contact.new(email="ada@example.com", clock=FixedClock(NOW))
    with store.unit_of_work() as unit:
        unit.contacts.add(ada)
        unit.commit()
    table = store.schema.table(Contact)
    assert store.engine is not None
    with store.engine.begin() as connection:  # another program writes a bad address
        connection.execute(
            sa.update(table).where(table.c.id == ada.id).values(email="ada at example")
        )
    with store.unit_of_work() as unit, pytest.raises(ValidationError) as caught:
        unit.contacts.get(ada.id)
    assert [(p.field, p.value) for p in caught.value.problems] == [("email", "ada at example")]
    if store.dialect == "sqlite":  # text where a timestamp belongs: no model can be made
        with store.engine.begin() as connection:
            connection.exec_driver_sql(
                f"UPDATE {table.name} SET email = NULL, created_at = 'yesterday'"
            )
        with store.unit_of_work() as unit, pytest.raises(StorageError, match="contact"):
            unit.contacts.find()


def _increment(url: str, contact_id: str, rounds: int) -> tuple[int, int]:

    store = open_store(url, tenant="race")
    done = conflicts = 0
    for _ in range(rounds):
        try:
            with store.unit_of_work() as unit:
                current = unit.contacts.get(UUID(contact_id))
                n = current.custom["n"]
                assert isinstance(n, int)
                unit.contacts.update(attrs.evolve(current, custom={"n": n + 1}))
                unit.commit()
                done += 1
        except ConcurrencyConflict:
            conflicts += 1
    store.close()
    return done, conflicts


def test_writers_in_several_processes_lose_no_update(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    counter = Contact.new(first_name="counter", custom={"n": 0})
    with open_store(url, tenant="race").unit_of_work() as unit:
        unit.contacts.add(counter)
        unit.commit()
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        results = pool.starmap(_increment, [(url, str(counter.id), 15)] * 3)
    with open_store(url, tenant="race").unit_of_work() as unit:
        final = unit.contacts.get(counter.id)
    done = sum(d for d, _ in results)
    assert done + sum(c for _, c in results) == 45
    assert final.custom["n"] == done == final.version - 1


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_in_list_value_with_more_places_than_a_decimal_column_holds(
    backend: str, tmp_path: Path
) -> None:
    # 1e-261 has no (units, nanos) form: it equals no stored probability, and once made
    # the decimal arithmetic raise Inexact instead of leaving it out of the list.
    stores = sqlite_store(tmp_path / "in.db") if backend == "sqlite" else postgres_store()
    store = next(stores)
    deal = Deal.new(title="Seats", pipeline="sales", stage="new", probability=Decimal("0.25"))
    with store.unit_of_work() as unit:
        unit.deals.add(deal)
        rule = deals_where(field("probability").is_in(-2.946384618371879e-261, 0.25))
        assert unit.deals.ids(rule) == [deal.id]
        tiny_only = deals_where(field("probability").is_in(-2.946384618371879e-261))
        assert unit.deals.count(tiny_only) == 0
    store.close()
