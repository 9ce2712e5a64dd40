"""The SQL adapter's consent decisions in force (``<prefix>consent_states``, schema 13)
never disagree with the consent ledger they are derived from.

After random ledger writes through the repository (add, bulk add, update that moves an
entry to another contact or changes its decision, restore, delete, the erasure of
contact points, and a refused bulk add), the table holds exactly one row per contact,
channel and purpose that has a decision, and that row is the entry
:func:`~crmkit.models.current_consent` picks from the stored ledger: on SQLite and
PostgreSQL, inside the unit of work and after its commit.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import attrs
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmkit.errors import Duplicate
from crmkit.models import ConsentStatus, Contact, EmailAddress, current_consent
from crmkit.storage.sql import SqlStore, SqlUnitOfWork
from crmkit.testing import strategies as cst
from tests.storage_support import postgres_store, sqlite_store

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
def sql(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        yield from sqlite_store(Path(tmp_path_factory.mktemp("states")) / "states.db")
    else:
        yield from postgres_store()


def stored_states(unit: SqlUnitOfWork) -> dict[tuple[UUID, str, str], tuple[Any, ...]]:
    """The tenant's rows of the states table, by (contact, channel, purpose)."""
    table = unit.store.schema.consent_states
    columns = ("consent_id", "status", "decided_at", "expires_at", "contact_point")
    rows = unit._conn().execute(
        sa.select(table.c.contact_id, table.c.channel, table.c.purpose, *table.c[columns]).where(
            table.c.tenant == unit.store.tenant
        )
    )
    return {(r[0], r[1], r[2]): tuple(r[3:]) for r in rows}


def derived_states(unit: SqlUnitOfWork) -> dict[tuple[UUID, str, str], tuple[Any, ...]]:
    """The decisions in force the stored ledger gives (the reference)."""
    ledger = list(unit.consents.iterate())
    keys = {(c.contact_id, c.channel, c.purpose) for c in ledger}
    found = {}
    for who, channel, purpose in keys:
        entry = current_consent([c for c in ledger if c.contact_id == who], channel, purpose)
        if entry is not None:
            found[who, channel.value, purpose] = (
                entry.id,
                entry.status.value,
                entry.decided_at,
                entry.expires_at,
                entry.contact_point,
            )
    return found


def agree(unit: SqlUnitOfWork, step: str) -> None:
    assert stored_states(unit) == derived_states(unit), f"states differ after {step}"


def people(n: int) -> list[Contact]:
    return [
        Contact.new(email=EmailAddress(f"p{i}-{uuid4().hex[:6]}@example.org")) for i in range(n)
    ]


OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["add", "add_many", "move", "decide", "restore", "delete", "erase"]),
        st.integers(0, 1000),
        st.integers(0, 1000),
    ),
    max_size=8,
)


def test_the_states_follow_every_ledger_write(sql: SqlStore) -> None:
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.data(), OPERATIONS)
    def check(data: st.DataObject, operations: list[tuple[str, int, int]]) -> None:
        crowd = people(3)
        drawn = data.draw(cst.ledgers(crowd, now=NOW)).consents
        first, rest = drawn[: len(drawn) // 2], drawn[len(drawn) // 2 :]
        store = sql.for_tenant(f"states-{uuid4().hex[:12]}")
        with store.unit_of_work() as unit:
            unit.contacts.add_many(crowd)
            unit.consents.add_many(first)
            agree(unit, "add_many")
            for operation, a, b in operations:
                stored = list(unit.consents.iterate())
                entry = stored[a % len(stored)] if stored else None
                match operation:
                    case "add" if rest:
                        unit.consents.add(rest.pop())
                    case "add_many" if rest:
                        unit.consents.add_many([rest.pop() for _ in range(min(2, len(rest)))])
                    case "move" if entry is not None:
                        to = crowd[b % len(crowd)].id
                        unit.consents.update(attrs.evolve(entry, contact_id=to))
                    case "decide" if entry is not None:
                        status = list(ConsentStatus)[b % len(ConsentStatus)]
                        later = entry.decided_at + timedelta(days=b % 3)
                        changed = attrs.evolve(
                            entry, status=status, decided_at=later, expires_at=None
                        )
                        unit.consents.update(changed)
                    case "restore" if entry is not None:
                        moved = attrs.evolve(entry, contact_id=crowd[b % len(crowd)].id)
                        unit.consents.restore(moved, version=entry.version)
                    case "delete" if entry is not None:
                        unit.consents.delete(entry.id)
                    case "erase":
                        who = crowd[a % len(crowd)].id
                        values = {"contact_point": None, "evidence_ip": None}
                        unit.consents.erase_referring("contact_id", who, values, at=NOW)
                    case _:
                        continue
                agree(unit, operation)
            if stored := list(unit.consents.iterate()):
                with pytest.raises(Duplicate):  # refused whole: the states stay
                    unit.consents.add_many([*rest[:1], stored[0]])
                agree(unit, "a refused add_many")
            unit.commit()
        with store.unit_of_work() as unit:
            agree(unit, "the commit")

    check()
