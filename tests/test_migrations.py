"""Schema versions and upgrades, from the tables crmkit 0.1 created, with data in them.

``tests/schemas/v<N>.<dialect>.sql`` is the DDL that schema N ran, frozen (1: crmkit 0.1;
2: the first versioned schema, with its ``<prefix>meta`` rows): the tests build such a
database, fill it, and upgrade it in place. A change of the schema adds the frozen DDL of
the version it replaces and keeps every older one.
"""

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import attrs
import pytest
import sqlalchemy as sa

from crmkit.automation import LANES, ContactCreated, DeliveryStatus, event_to_json, lane_of
from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.errors import (
    DanglingReference,
    DanglingReferences,
    Duplicate,
    DuplicateEmails,
    SchemaOutdated,
    StorageError,
)
from crmkit.models import (
    AuditAction,
    AuditEntry,
    Consent,
    ConsentChannel,
    ConsentStatus,
    Contact,
    Deal,
    EmailAddress,
    Erasure,
    Lead,
    LeadChannel,
    Money,
    StageChange,
    SubjectKind,
)
from crmkit.models.rules import IsNull, Rule, RuleEntity
from crmkit.privacy import ConsentPolicy
from crmkit.quality import MergeKind, MergeRecord
from crmkit.storage._base import merge_to_json
from crmkit.storage.sql import (
    SCHEMA_VERSION,
    Upgrade,
    open_store,
    schema,
    upgrade,
)
from crmkit.storage.sql._codec import codec
from crmkit.storage.sql._schema import HISTORY_SNAPSHOT, index_name, outbox_tables_v8
from crmkit.storage.sql.types import Timestamp, UUIDType
from tests.storage_support import postgres_url

SCHEMAS = Path(__file__).parent / "schemas"
CLOCK = FixedClock(datetime(2026, 12, 1, 9, tzinfo=UTC))


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A database URL and a table prefix of its own, holding no tables yet."""
    prefix = f"m{uuid.uuid4().hex[:8]}_"
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}", prefix
        return
    url = postgres_url()
    yield url, prefix
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for table in reversed(schema(prefix).metadata.sorted_tables):
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table.name} CASCADE"))
    engine.dispose()


def make_old(url: str, prefix: str, items: list[Any], version: int = 1) -> None:
    """A database as schema ``version`` left it: its DDL, and ``items`` stored as it
    stored them (columns added since are left out, and must be empty)."""
    engine = sa.create_engine(url)
    dialect = engine.dialect.name
    ddl = (SCHEMAS / f"v{version}.{dialect}.sql").read_text().replace("crm_", prefix)
    tables = schema(prefix)
    with engine.begin() as connection:
        for statement in ddl.split(";"):
            if statement.strip():
                connection.exec_driver_sql(statement)
        mark = "?" if dialect == "sqlite" else "%s"
        for item in items:
            encoder = codec(type(item), dialect)
            name = tables.table(type(item)).name
            old = {c["name"] for c in sa.inspect(connection).get_columns(name)}
            row = dict(zip(encoder.names, encoder.encode("tests", item), strict=True))
            # Columns added since are empty in old rows.
            assert all(row[n] is None for n in row if n not in old)
            kept = [n for n in encoder.names if n in old]
            insert = (
                f"INSERT INTO {name} ({', '.join(kept)}) VALUES ({', '.join([mark] * len(kept))})"
            )
            connection.exec_driver_sql(insert, tuple(row[n] for n in kept))
    engine.dispose()


def index_names(url: str, table: str) -> set[str]:
    """The indexes of ``table`` (read from the catalogue: SQLAlchemy's reflection skips
    expression indexes with a warning)."""
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t"
    else:
        query = "SELECT indexname FROM pg_indexes WHERE tablename = :t"
    with engine.connect() as connection:
        found = set(connection.execute(sa.text(query), {"t": table}).scalars())
    engine.dispose()
    return found


def person(email: str, minute: int = 0) -> Contact:
    at = datetime(2026, 1, 1, 9, minute, tzinfo=UTC)
    return Contact.new(email=email, clock=FixedClock(at))


def test_an_old_database_is_refused_until_upgraded_and_keeps_its_data(
    target: tuple[str, str],
) -> None:
    url, prefix = target
    ada = person("Ada.Lovelace@Example.org")
    lead = Lead.new(contact_id=ada.id, source="import", channel=LeadChannel.IMPORT, clock=CLOCK)
    moved = StageChange.new(
        subject=SubjectKind.CONTACT, subject_id=ada.id, to_stage="lead", clock=CLOCK
    )
    make_old(url, prefix, [ada, lead, moved])

    with pytest.raises(SchemaOutdated) as refused:
        open_store(url, tenant="tests", prefix=prefix)
    assert (refused.value.found, refused.value.expected) == (1, SCHEMA_VERSION)
    assert "upgrade" in str(refused.value)

    assert upgrade(url, prefix=prefix) == Upgrade(1, SCHEMA_VERSION, unique_emails=True)
    store = open_store(url, tenant="tests", prefix=prefix)
    try:
        with store.unit_of_work() as unit:
            assert unit.contacts.get(ada.id) == ada
            assert unit.leads.get(lead.id) == lead
            assert unit.contacts.with_email(EmailAddress("ada.lovelace@EXAMPLE.org")) == [ada]
            assert unit.stage_history.for_subjects(SubjectKind.CONTACT, [ada.id]) == [moved]
            with pytest.raises(Duplicate) as taken:
                unit.contacts.add(person("ADA.lovelace@example.org"))
            assert taken.value.field == "email"
    finally:
        store.close()

    indexes = index_names(url, f"{prefix}contacts")
    assert f"ix_{prefix}contacts_email" not in indexes  # schema 1's, replaced
    assert f"ix_{prefix}contacts_email_created_at_id" in indexes
    assert f"ux_{prefix}contacts_email_key" in indexes
    assert upgrade(url, prefix=prefix).changed is False  # current: nothing to do
    with pytest.raises(StorageError, match="unique_emails"):  # nor a policy change
        upgrade(url, prefix=prefix, unique_emails=False)


def test_shared_addresses_stop_the_upgrade_until_the_host_decides(
    target: tuple[str, str],
) -> None:
    url, prefix = target
    first, second = person("Bo@x.example", 1), person("bo@X.example", 2)
    make_old(url, prefix, [first, second, person("cy@x.example")])

    with pytest.raises(DuplicateEmails) as shared:
        upgrade(url, prefix=prefix)
    assert shared.value.groups == (("tests", "bo@x.example", (first.id, second.id)),)
    with pytest.raises(SchemaOutdated):  # nothing was changed
        open_store(url, tenant="tests", prefix=prefix)

    assert upgrade(url, prefix=prefix, unique_emails=False).unique_emails is False
    store = open_store(url, tenant="tests", prefix=prefix)
    try:
        assert store.unique_emails is False
        with store.unit_of_work() as unit:
            assert unit.contacts.with_email(EmailAddress("BO@x.example")) == [first, second]
            unit.contacts.add(person("bO@x.example", 3))  # sharing stays allowed
            unit.commit()
    finally:
        store.close()
    with pytest.raises(StorageError, match="unique_emails"):
        open_store(url, tenant="tests", prefix=prefix, unique_emails=True)


def test_a_new_database_records_its_version_and_policy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    with pytest.raises(StorageError, match="no crmkit tables"):
        open_store(url, create=False)
    open_store(url, unique_emails=False).close()
    store = open_store(url)
    assert store.unique_emails is False
    store.close()
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.update(schema().meta)
            .where(schema().meta.c.key == "schema_version")
            .values(value=str(SCHEMA_VERSION + 1))
        )
    engine.dispose()
    with pytest.raises(SchemaOutdated, match="newer crmkit"):
        open_store(url)


@pytest.mark.parametrize("version", range(2, SCHEMA_VERSION))
def test_every_versioned_schema_upgrades_with_its_data(
    target: tuple[str, str], version: int
) -> None:
    url, prefix = target
    ada = person("Ada@Example.org")
    lead = Lead.new(contact_id=ada.id, source="web", channel=LeadChannel.FORM, clock=CLOCK)
    moved = StageChange.new(
        subject=SubjectKind.LEAD, subject_id=lead.id, to_stage="new", clock=CLOCK
    )
    make_old(url, prefix, [ada, lead, moved], version)

    done = upgrade(url, prefix=prefix)
    assert done == Upgrade(version, SCHEMA_VERSION, unique_emails=True)
    store = open_store(url, tenant="tests", prefix=prefix)
    try:
        with store.unit_of_work() as unit:
            assert unit.contacts.get(ada.id) == ada
            assert unit.leads.get(lead.id) == lead
            assert unit.stage_history.for_subjects(SubjectKind.LEAD, [lead.id]) == [moved]
            # The privacy tables (schema 7) exist and work.
            erased = Erasure.new(contact_id=ada.id, by="dpo", reason="asked", clock=CLOCK)
            unit.erasures.add(erased)
            entry = AuditEntry.new(
                subject=SubjectKind.CONTACT,
                subject_id=ada.id,
                action=AuditAction.ERASED,
                clock=CLOCK,
            )
            unit.audit.add(entry)
            unit.commit()
        with store.unit_of_work() as unit:
            assert unit.erasures.get(ada.id) == erased
            assert unit.audit.for_subject(SubjectKind.CONTACT, ada.id) == [entry]
    finally:
        store.close()


def test_references_that_name_nothing_stop_the_upgrade_to_foreign_keys(
    target: tuple[str, str],
) -> None:
    url, prefix = target
    ada = person("ada@example.org")
    kept = Lead.new(contact_id=ada.id, source="web", channel=LeadChannel.FORM, clock=CLOCK)
    gone = uuid.uuid4()  # a contact that schema 2 let a host delete under its lead
    orphan = Lead.new(contact_id=gone, source="web", channel=LeadChannel.FORM, clock=CLOCK)
    make_old(url, prefix, [ada, kept, orphan], 2)

    with pytest.raises(DanglingReferences) as dangling:
        upgrade(url, prefix=prefix)
    assert dangling.value.rows == (("tests", "lead", orphan.id, "contact_id", gone),)
    with pytest.raises(SchemaOutdated):  # nothing was changed
        open_store(url, tenant="tests", prefix=prefix)

    engine = sa.create_engine(url)
    with engine.begin() as connection:  # the host repairs its data
        leads = schema(prefix).table(Lead)
        connection.execute(sa.delete(leads).where(leads.c.contact_id == gone))
    engine.dispose()
    assert upgrade(url, prefix=prefix).to_version == SCHEMA_VERSION
    store = open_store(url, tenant="tests", prefix=prefix)
    try:
        with store.unit_of_work() as unit:
            assert unit.leads.get(kept.id) == kept
            with pytest.raises(DanglingReference) as refused:  # the foreign key holds
                unit.leads.add(orphan)
            assert (refused.value.field, refused.value.value) == ("contact_id", gone)
    finally:
        store.close()


def test_schema_2_upgrades_to_keep_merge_records(target: tuple[str, str]) -> None:
    """The step to the merge records (schema 3 -> 4) leaves the data as it was, and the
    upgraded database merges and undoes a merge exactly."""
    url, prefix = target
    ada, twin = person("ada@example.org"), person("Ada.L@example.org", 1)
    lead = Lead.new(contact_id=twin.id, source="web", channel=LeadChannel.FORM, clock=CLOCK)
    make_old(url, prefix, [ada, twin, lead], version=2)

    done = upgrade(url, prefix=prefix)

    assert (done.from_version, done.to_version) == (2, SCHEMA_VERSION)
    engine = sa.create_engine(url)
    names = {name.removeprefix(prefix) for name in sa.inspect(engine).get_table_names()}
    engine.dispose()
    assert {"merges", "merge_keys"} <= names
    store = open_store(url, tenant="tests", prefix=prefix)
    try:
        crm = CRM(store)
        merged = crm.merge_contacts(ada.id, [twin.id])
        assert crm.find_contact("ada.l@example.org") == merged.survivor
        with store.unit_of_work() as unit:
            assert unit.leads.get(lead.id).contact_id == ada.id
        crm.unmerge(cast(UUID, merged.merge_id))
        with store.unit_of_work() as unit:
            assert unit.contacts.get_many([ada.id, twin.id]) == {ada.id: ada, twin.id: twin}
            assert unit.leads.get(lead.id) == lead
    finally:
        store.close()
    assert upgrade(url, prefix=prefix).changed is False


def test_schema_7_upgrades_to_the_outbox(target: tuple[str, str]) -> None:
    """The step to the outbox (schema 7 -> 8) keeps every row, adds the outbox, its
    deliveries and the handlers' cursors, empty, with their indexes; the upgraded
    database records the events of use cases and delivers them."""
    url, prefix = target
    ada = person("ada@example.org")
    lead = Lead.new(contact_id=ada.id, source="web", channel=LeadChannel.FORM, clock=CLOCK)
    entry = AuditEntry.new(
        subject=SubjectKind.CONTACT, subject_id=ada.id, action=AuditAction.EXPORTED, clock=CLOCK
    )
    make_old(url, prefix, [ada, lead, entry], version=7)

    done = upgrade(url, prefix=prefix)

    assert (done.from_version, done.to_version) == (7, SCHEMA_VERSION)
    assert {
        f"ux_{prefix}outbox_id",
        f"ix_{prefix}outbox_subject_id_position",
    } <= index_names(url, f"{prefix}outbox")
    assert f"ix_{prefix}outbox_deliveries_handler_subject_id_position" in index_names(
        url, f"{prefix}outbox_deliveries"
    )
    store = open_store(url, tenant="tests", prefix=prefix, clock=CLOCK)
    try:
        with store.unit_of_work() as unit:
            assert unit.contacts.get(ada.id) == ada
            assert unit.leads.get(lead.id) == lead
            assert unit.audit.for_subject(SubjectKind.CONTACT, ada.id) == [entry]
            assert unit.outbox.read() == []  # no events are made up for old rows
        crm = CRM(store)
        seen: list[str] = []
        crm.subscribe("*", lambda _, event: seen.append(event.type), name="all")
        crm.update_contact(ada.id, first_name="Ada")
        assert [r.event.type for r in crm.events()] == ["contact.changed"]
        assert crm.dispatch().delivered == 1
        assert seen == ["contact.changed"]
    finally:
        store.close()
    assert upgrade(url, prefix=prefix).changed is False


def test_the_match_key_step_fills_the_keys_of_stored_contacts_and_accounts(
    target: tuple[str, str],
) -> None:
    """Schema 2 had no match keys: the upgrade computes them for every stored contact
    and account (of every tenant, in batches), so duplicates are found at once."""
    from crmkit.models import Account  # noqa: PLC0415
    from crmkit.quality import match_keys  # noqa: PLC0415

    url, prefix = target
    people = [
        Contact.new(
            email=f"p{n}@example.org", first_name="Ada", last_name=f"Lovelace{n}", clock=CLOCK
        )
        for n in range(3)
    ]
    acme = Account.new(name="ACME GmbH", domain="acme.example", clock=CLOCK)
    make_old(url, prefix, [*people, acme], 2)

    assert upgrade(url, prefix=prefix).changed
    store = open_store(url, tenant="tests", prefix=prefix)
    try:
        with store.unit_of_work() as unit:
            for contact in people:
                own = [k for k in match_keys(contact) if k[0] in ("email", "name")]
                assert unit.contacts.with_match_keys(own) == [contact]
            oldest_first = sorted(people, key=lambda c: (c.created_at, c.id))
            assert unit.contacts.with_match_keys([("name3", "ada|lov")]) == oldest_first
            assert unit.accounts.with_match_keys([("company", "acme")]) == [acme]
    finally:
        store.close()


def test_schema_8_upgrades_to_durable_timers_with_its_data(target: tuple[str, str]) -> None:
    """The step to the steps table (schema 8 -> 9) keeps every row and creates an empty
    ``<prefix>steps`` with its claim index, on which steps are scheduled and claimed."""
    from datetime import timedelta  # noqa: PLC0415

    from crmkit.automation import StepStatus, new_step  # noqa: PLC0415

    url, prefix = target
    ada = person("ada@example.org")
    lead = Lead.new(contact_id=ada.id, source="web", channel=LeadChannel.FORM, clock=CLOCK)
    erased = Erasure.new(contact_id=ada.id, by="dpo", reason="asked", clock=CLOCK)
    make_old(url, prefix, [ada, lead, erased], version=8)
    with pytest.raises(SchemaOutdated):
        open_store(url, tenant="tests", prefix=prefix)

    assert upgrade(url, prefix=prefix) == Upgrade(8, SCHEMA_VERSION, unique_emails=True)
    assert f"ix_{prefix}steps_status_due_at_id" in index_names(url, f"{prefix}steps")
    store = open_store(url, tenant="tests", prefix=prefix)
    try:
        now = CLOCK.now()
        step = new_step("follow-up", {"lead": str(lead.id)}, due_at=now, now=now)
        with store.unit_of_work() as unit:
            assert unit.contacts.get(ada.id) == ada
            assert unit.leads.get(lead.id) == lead
            assert unit.erasures.get(ada.id) == erased
            assert unit.steps.select() == []
            unit.steps.schedule(step)
            unit.commit()
        with store.unit_of_work() as unit:
            [claimed] = unit.steps.claim(
                now, lease=uuid.uuid4(), until=now + timedelta(minutes=1), limit=5
            )
            assert (claimed.id, claimed.status) == (step.id, StepStatus.RUNNING)
    finally:
        store.close()
    assert upgrade(url, prefix=prefix).changed is False


def test_schema_7_upgrades_to_per_deal_forecast_categories(target: tuple[str, str]) -> None:
    """Schema 7 had no ``forecast_category``: stored deals keep their stage's category
    (the column is empty), a category set afterwards is stored, and the activities gain
    the ``(tenant, kind, occurred_at)`` index that ``of_kinds`` reads."""
    from crmkit.models import Activity, ActivityKind, Deal, ForecastCategory  # noqa: PLC0415

    url, prefix = target
    ada = person("ada@example.org")
    deals = [
        Deal.new(title=f"Deal {n}", pipeline="sales", stage="proposal", clock=CLOCK)
        for n in range(3)
    ]
    bought = Activity.new(contact_id=ada.id, kind=ActivityKind.PURCHASE, clock=CLOCK)
    make_old(url, prefix, [ada, *deals, bought], 7)
    assert f"ix_{prefix}activities_kind_occurred_at" not in index_names(url, f"{prefix}activities")

    assert upgrade(url, prefix=prefix) == Upgrade(7, SCHEMA_VERSION, unique_emails=True)
    assert f"ix_{prefix}activities_kind_occurred_at" in index_names(url, f"{prefix}activities")
    store = open_store(url, tenant="tests", prefix=prefix)
    try:
        with store.unit_of_work() as unit:
            assert unit.deals.get_many([d.id for d in deals]) == {d.id: d for d in deals}
            assert all(unit.deals.get(d.id).forecast_category is None for d in deals)
            assert unit.activities.of_kinds([ActivityKind.PURCHASE]) == [bought]
            committed = unit.deals.update(
                attrs.evolve(deals[0], forecast_category=ForecastCategory.COMMIT)
            )
            unit.commit()
        with store.unit_of_work() as unit:
            assert unit.deals.get(deals[0].id) == committed
            assert unit.deals.get(deals[0].id).forecast_category is ForecastCategory.COMMIT
    finally:
        store.close()
    assert upgrade(url, prefix=prefix).changed is False


def test_schema_7_upgrades_to_a_consent_index_that_covers_the_contact_point(
    target: tuple[str, str],
) -> None:
    url, prefix = target
    ada = person("ada@example.org")
    moved = person("bo@example.org", minute=1)
    granted = [
        Consent.new(
            contact_id=who.id,
            channel=ConsentChannel.EMAIL,
            purpose="newsletter",
            status=ConsentStatus.GRANTED,
            source="form",
            contact_point=point,
            clock=CLOCK,
        )
        for who, point in ((ada, "ada@example.org"), (moved, "bo@old.example"))
    ]
    make_old(url, prefix, [ada, moved, *granted], 7)
    table = f"{prefix}consents"
    before = index_names(url, table)

    assert upgrade(url, prefix=prefix) == Upgrade(7, SCHEMA_VERSION, unique_emails=True)

    after = index_names(url, table)
    assert after - before == {schema_index(prefix)}
    assert len(before - after) == 1  # schema 7's index, without the contact point
    store = open_store(url, tenant="tests", prefix=prefix)
    try:
        with store.unit_of_work() as unit:
            assert unit.consents.for_contact(ada.id) == [granted[0]]
        crm = CRM(store, consent_policy=ConsentPolicy({"newsletter"}))
        everyone = Rule(RuleEntity.CONTACT, IsNull("email", negated=True))
        audience = crm.audience(everyone, ConsentChannel.EMAIL, "newsletter")
        assert audience.contact_ids == (ada.id,)  # Bo's grant names an old address
    finally:
        store.close()


def schema_index(prefix: str) -> str:
    columns = ("contact_id", "channel", "purpose", "decided_at", "id", "status", "expires_at")
    return index_name(f"{prefix}consents", (*columns, "contact_point"))


def test_schema_11_upgrades_to_a_stage_history_index_that_covers_the_replays(
    target: tuple[str, str],
) -> None:
    url, prefix = target
    ada = person("ada@example.org")
    clock = FixedClock(datetime(2026, 1, 1, 9, tzinfo=UTC))
    moves = [
        StageChange.new(
            subject=SubjectKind.CONTACT,
            subject_id=ada.id,
            from_stage=before,
            to_stage=after,
            at=datetime(2026, 1, day, tzinfo=UTC),
            clock=clock,
        )
        for day, (before, after) in enumerate(
            ((None, "lead"), ("lead", "customer"), ("customer", "other")), start=2
        )
    ]
    make_old(url, prefix, [ada, *moves], 11)
    table = f"{prefix}stage_changes"
    before = index_names(url, table)

    assert upgrade(url, prefix=prefix) == Upgrade(11, SCHEMA_VERSION, unique_emails=True)

    after = index_names(url, table)
    columns = ("subject", "subject_id", "at", "id")
    assert before - after == {index_name(table, columns)}
    assert after - before == {index_name(table, (*columns, "pipeline", "from_stage", "to_stage"))}
    store = open_store(url, tenant="tests", prefix=prefix)
    try:
        with store.unit_of_work() as unit:
            history = unit.stage_history
            assert history.for_subject(SubjectKind.CONTACT, ada.id) == moves
            (span,) = history.customer_spans()
            assert (span.start, span.end) == (moves[1].at, moves[2].at)
            ranks = {"lead": 0, "customer": 1}
            (reach,) = history.reach(SubjectKind.CONTACT, ranks, until=moves[2].at)
            assert (reach.reached, reach.count) == (1, 1)
    finally:
        store.close()


def test_schema_14_upgrades_to_a_stage_history_index_that_carries_the_snapshots(
    target: tuple[str, str],
) -> None:
    url, prefix = target
    ada = person("ada@example.org")
    deal = Deal.new(title="Big", pipeline="sales", stage="discovery", clock=CLOCK)
    amount = Money(Decimal("1200.50"), "EUR")
    moves = [
        StageChange.new(
            subject=SubjectKind.DEAL,
            subject_id=deal.id,
            pipeline="sales",
            from_stage=before,
            to_stage=after,
            at=datetime(2026, 1, day, tzinfo=UTC),
            reason=reason,
            amount=amount,
            expected_close=date(2026, 3, 1),
            clock=CLOCK,
        )
        for day, (before, after, reason) in enumerate(
            ((None, "discovery", None), ("discovery", "lost", "price")), start=2
        )
    ]
    make_old(url, prefix, [ada, deal, *moves], 14)
    table = f"{prefix}stage_changes"
    keys = ("subject", "subject_id", "at", "id", "pipeline", "from_stage", "to_stage")

    assert upgrade(url, prefix=prefix) == Upgrade(14, SCHEMA_VERSION, unique_emails=True)

    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            (index,) = [
                i
                for i in sa.inspect(connection).get_indexes(table)
                if i["column_names"][1:3] == ["subject", "subject_id"]
            ]
    finally:
        engine.dispose()
    assert index["column_names"] == ["tenant", *keys]
    carried = index.get("dialect_options", {}).get("postgresql_include", [])
    assert carried == ([] if url.startswith("sqlite") else list(HISTORY_SNAPSHOT))
    store = open_store(url, tenant="tests", prefix=prefix)
    try:
        with store.unit_of_work() as unit:
            history = unit.stage_history
            assert history.for_subject(SubjectKind.DEAL, deal.id) == moves
            (closed,) = history.standing(
                SubjectKind.DEAL, until=datetime(2026, 12, 2, tzinfo=UTC), group="owner"
            )
            assert (closed.stage, closed.reason, closed.count) == ("lost", "price", 1)
            assert (closed.currency, closed.amount) == ("EUR", Decimal("1200.50"))
            assert closed.expected_close == date(2026, 3, 1)
    finally:
        store.close()


def test_schema_12_upgrades_to_consent_states_filled_from_the_ledgers(
    target: tuple[str, str],
) -> None:
    url, prefix = target
    ada, bo, cy, di = (person(f"{n}@example.org", minute=i) for i, n in enumerate("abcd"))
    at = datetime(2026, 3, 1, 9, tzinfo=UTC)

    def entry(
        who: Contact,
        status: ConsentStatus,
        minute: int,
        *,
        purpose: str = "newsletter",
        point: str | None = None,
        expires: datetime | None = None,
    ) -> Consent:
        return Consent.new(
            contact_id=who.id,
            channel=ConsentChannel.EMAIL,
            purpose=purpose,
            status=status,
            source="form",
            decided_at=at.replace(minute=minute),
            expires_at=expires,
            contact_point=point,
            clock=CLOCK,
        )

    granted, withdrawn, pending = (
        ConsentStatus.GRANTED,
        ConsentStatus.WITHDRAWN,
        ConsentStatus.PENDING,
    )
    ledger = [
        entry(ada, granted, 1, point="a@example.org"),  # in force
        entry(ada, pending, 2),  # a request is no decision
        entry(ada, withdrawn, 3, purpose="offers"),  # another purpose: its own state
        entry(bo, granted, 1),
        entry(bo, withdrawn, 2),  # in force: later
        entry(cy, granted, 5),
        entry(cy, withdrawn, 5),  # in force: the same time, a withdrawal over a grant
        entry(di, granted, 1, point="old@example.org"),  # in force, for another address
        entry(di, granted, 0, expires=at.replace(minute=30)),
    ]
    make_old(url, prefix, [ada, bo, cy, di, *ledger], 12)

    assert upgrade(url, prefix=prefix) == Upgrade(12, SCHEMA_VERSION, unique_emails=True)

    engine = sa.create_engine(url)
    states = schema(prefix).consent_states
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(states.c.contact_id, states.c.purpose, states.c.consent_id)
        )
        stored = {(r.contact_id, r.purpose): r.consent_id for r in rows}
    engine.dispose()
    assert stored == {
        (ada.id, "newsletter"): ledger[0].id,
        (ada.id, "offers"): ledger[2].id,
        (bo.id, "newsletter"): ledger[4].id,
        (cy.id, "newsletter"): ledger[6].id,
        (di.id, "newsletter"): ledger[7].id,
    }
    store = open_store(url, tenant="tests", prefix=prefix)
    try:
        crm = CRM(store, consent_policy=ConsentPolicy({"newsletter", "offers"}))
        everyone = Rule(RuleEntity.CONTACT, IsNull("email", negated=True))
        audience = crm.audience(everyone, ConsentChannel.EMAIL, "newsletter", now=at)
        assert audience.contact_ids == (ada.id,)  # Di's grant names an old address
        # Later ledger writes keep the states: Bo grants again and is in.
        crm.record_consent(bo.id, ConsentChannel.EMAIL, "newsletter", source="form")
        later = crm.audience(everyone, ConsentChannel.EMAIL, "newsletter")
        assert set(later.contact_ids) == {ada.id, bo.id}
    finally:
        store.close()


def test_schema_13_upgrades_to_outbox_lanes_and_dispatch_goes_on(
    target: tuple[str, str],
) -> None:
    url, prefix = target
    make_old(url, prefix, [], 13)
    at = datetime(2026, 3, 1, 9, tzinfo=UTC)
    ada, bo = uuid.uuid4(), uuid.uuid4()
    events = [
        ContactCreated(id=uuid.uuid4(), occurred_at=at, subject="contact", subject_id=who)
        for who in (ada, bo, ada, ada, bo, ada)
    ]
    outbox, deliveries, cursors = outbox_tables_v8(sa.MetaData(), prefix)
    engine = sa.create_engine(url)
    with engine.begin() as connection:  # schema 13's outbox: fanned out up to 4
        connection.execute(
            outbox.insert(),
            [
                {
                    "tenant": "tests",
                    "position": position,
                    "id": e.id,
                    "type": e.type,
                    "subject": e.subject,
                    "subject_id": e.subject_id,
                    "occurred_at": e.occurred_at,
                    "caused_by": None,
                    "body": json.dumps(event_to_json(e)),
                }
                for position, e in enumerate(events, start=1)
            ],
        )
        connection.execute(cursors.insert(), [{"tenant": "tests", "handler": "h", "position": 4}])
        base = {"tenant": "tests", "handler": "h", "event_type": "contact.created"}
        connection.execute(
            deliveries.insert(),
            [
                {
                    **base,
                    "position": position,
                    "event_id": events[position - 1].id,
                    "subject_id": events[position - 1].subject_id,
                    "status": status,
                    "attempts": tries,
                    "next_at": None if status == "done" else at,
                    "finished_at": at if status == "done" else None,
                }
                for position, status, tries in (
                    (1, "done", 0),
                    (2, "done", 0),
                    (3, "pending", 1),  # failed once, due again
                    (4, "pending", 0),  # waits behind it
                )
            ],
        )

    assert upgrade(url, prefix=prefix) == Upgrade(13, SCHEMA_VERSION, unique_emails=True)

    with engine.connect() as connection:
        lanes = dict(
            connection.execute(sa.text(f"SELECT position, lane FROM {prefix}outbox")).all()
        )
        cursors_now = connection.execute(
            sa.text(f"SELECT handler, lane, position FROM {prefix}outbox_lanes ORDER BY lane")
        ).all()
        names = set(sa.inspect(connection).get_table_names())
    engine.dispose()
    assert lanes == {p: lane_of(e.subject_id) for p, e in enumerate(events, start=1)}
    assert [tuple(row) for row in cursors_now] == [("h", lane, 4) for lane in range(LANES)]
    assert f"{prefix}outbox_cursors" not in names
    lane_index = index_name(f"{prefix}outbox", ("lane", "position"))
    assert lane_index in index_names(url, f"{prefix}outbox")
    store = open_store(url, tenant="tests", prefix=prefix)
    try:
        crm = CRM(store, clock=CLOCK)
        calls: list[UUID] = []
        crm.subscribe("*", lambda _, event: calls.append(event.id), name="h")
        report = crm.dispatch(now=at)
        assert report.delivered == 4  # the two pending ones and the two after the cursor
        assert calls.index(events[2].id) < calls.index(events[3].id) < calls.index(events[5].id)
        assert set(calls) == {e.id for e in events[2:]}
        done = crm.deliveries(handler="h", status=DeliveryStatus.DONE)
        assert [d.position for d in done] == [1, 2, 3, 4, 5, 6]
        assert crm.dispatch(now=at).calls == 0
    finally:
        store.close()


def test_schema_15_upgrades_to_find_a_contacts_merges_by_key(
    target: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, prefix = target
    ada, twin, bo = person("ada@example.org"), person("ada.l@example.org", 1), person("bo@x.org")
    moved = attrs.evolve(bo, version=2, account_id=uuid.uuid4())
    at = datetime(2026, 2, 1, 9, tzinfo=UTC)
    contacts = MergeRecord(
        id=uuid.uuid4(),
        kind=MergeKind.CONTACT,
        survivor_id=ada.id,
        merged_ids=(twin.id,),
        at=at,
        before=(ada, twin),
        after=(attrs.evolve(ada, version=2),),
        merged_emails=("ada.l@example.org",),
    )
    accounts = MergeRecord(
        id=uuid.uuid4(),
        kind=MergeKind.ACCOUNT,
        survivor_id=cast(UUID, moved.account_id),
        merged_ids=(uuid.uuid4(),),
        at=at,
        before=(bo,),
        after=(moved,),
    )
    other = attrs.evolve(accounts, id=uuid.uuid4(), merged_ids=(uuid.uuid4(),))
    make_old(url, prefix, [ada, bo], 15)
    engine = sa.create_engine(url)
    merges = sa.table(
        f"{prefix}merges",
        sa.column("tenant"),
        sa.column("id", UUIDType()),
        sa.column("kind"),
        sa.column("survivor_id", UUIDType()),
        sa.column("at", Timestamp()),
        sa.column("body"),
    )
    keys = sa.table(
        f"{prefix}merge_keys",
        sa.column("tenant"),
        sa.column("key"),
        sa.column("merge_id", UUIDType()),
    )
    with engine.begin() as connection:  # as schema 15 stored them: no contact keys
        for record in (contacts, accounts, other):
            connection.execute(
                merges.insert(),
                {
                    "tenant": "tests",
                    "id": record.id,
                    "kind": record.kind.value,
                    "survivor_id": record.survivor_id,
                    "at": record.at,
                    "body": json.dumps(merge_to_json(record)),
                },
            )
            old_keys = [f"id:{i.hex}" for i in record.merged_ids]
            old_keys += [f"email:{e}" for e in record.merged_emails]
            connection.execute(
                keys.insert(),
                [{"tenant": "tests", "key": k, "merge_id": record.id} for k in old_keys],
            )
    engine.dispose()
    monkeypatch.setattr("crmkit.storage.sql._migrate._BACKFILL_BATCH", 2)  # two pages

    assert upgrade(url, prefix=prefix) == Upgrade(15, SCHEMA_VERSION, unique_emails=True)

    store = open_store(url, tenant="tests", prefix=prefix)
    try:
        with store.unit_of_work() as unit:
            assert unit.merges.involving(ada.id) == [contacts]
            assert unit.merges.involving(twin.id) == [contacts]
            assert {m.id for m in unit.merges.involving(bo.id)} == {accounts.id, other.id}
            assert unit.merges.involving(uuid.uuid4()) == []
            assert unit.merges.merging(twin.id) == [contacts]
    finally:
        store.close()
