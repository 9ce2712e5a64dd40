"""Per-entity look-ups are index searches on SQLite, before any ANALYZE has run.

Every index starts with ``tenant``, which is one value in most databases; without
statistics SQLite's planner would walk the ``(tenant, id)`` key to avoid a sort and read
the whole tenant. The store writes priors into ``sqlite_stat1`` when it creates the
tables; these tests read the plans of the statements each look-up runs.
"""

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from crmkit.clock import FixedClock
from crmkit.models import (
    Contact,
    EmailAddress,
    Lead,
    LeadChannel,
    SubjectKind,
    TaskStatus,
)
from crmkit.segmentation import deals_where, field, leads_where, tickets_where
from crmkit.storage.sql import SqlStore, SqlUnitOfWork, open_store

CLOCK = FixedClock(datetime(2026, 12, 1, tzinfo=UTC))
# A scan of a table; "SCAN anon_1" reads the rows of a subquery (a co-routine), not a table.
WHOLE_TENANT = re.compile(r"\((tenant=\?)\)$|^SCAN (?!anon_\d+$)")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'plans.db'}", clock=CLOCK)
    ada = Contact.new(email="ada@example.org", clock=CLOCK)
    with opened.unit_of_work() as unit:
        unit.contacts.add(ada)
        unit.leads.add(
            Lead.new(contact_id=ada.id, source="web", channel=LeadChannel.FORM, clock=CLOCK)
        )
        unit.commit()
    yield opened
    opened.close()


def plans(store: SqlStore, look_up: Callable[[SqlUnitOfWork], Any]) -> list[str]:
    """The query plan lines of every SELECT that ``look_up`` runs."""
    assert store.engine is not None
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        with store.unit_of_work() as unit:
            look_up(unit)
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    assert seen, "the look-up ran no query"
    lines = []
    with store.engine.connect() as connection:
        for statement, parameters in seen:
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            lines.extend(row[3] for row in plan)
    return lines


SOMEONE = Contact.new(email="x@example.org", clock=CLOCK).id

LOOK_UPS: dict[str, Callable[[SqlUnitOfWork], Any]] = {
    "contact by e-mail": lambda u: u.contacts.with_email(EmailAddress("ADA@example.org")),
    "leads of a contact (iterate)": lambda u: list(
        u.leads.iterate(leads_where(field("contact_id") == SOMEONE))
    ),
    "leads of a contact (find)": lambda u: u.leads.find(
        leads_where(field("contact_id") == SOMEONE), limit=10
    ),
    "deals of a contact": lambda u: list(
        u.deals.iterate(deals_where(field("contact_id") == SOMEONE))
    ),
    "tickets of a contact": lambda u: list(
        u.tickets.iterate(tickets_where(field("contact_id") == SOMEONE))
    ),
    "activities of a contact": lambda u: u.activities.for_contact(SOMEONE),
    "history of a subject": lambda u: u.stage_history.for_subject(SubjectKind.LEAD, SOMEONE),
    "history of subjects": lambda u: u.stage_history.for_subjects(SubjectKind.DEAL, [SOMEONE]),
    "open tasks of one owner": lambda u: u.tasks.select(
        status=TaskStatus.OPEN, assignee="ann", due_until=CLOCK.now()
    ),
    "tasks of a contact": lambda u: u.tasks.select(contact_id=SOMEONE),
    "possible duplicates of a contact (one key)": lambda u: u.contacts.with_match_keys(
        [("email", "ada@example.org")], limit=20
    ),
    "possible duplicates of a contact (many keys)": lambda u: u.contacts.with_match_keys(
        [("email", "ada@example.org"), ("name", "ada|lovelace"), ("name3", "ada|lov")], limit=20
    ),
    "possible duplicates of an account": lambda u: u.accounts.with_match_keys(
        [("company", "acme"), ("domain", "acme.example")]
    ),
}


@pytest.mark.parametrize("name", sorted(LOOK_UPS))
def test_a_look_up_searches_an_index_without_statistics(store: SqlStore, name: str) -> None:
    lines = plans(store, LOOK_UPS[name])
    assert not [line for line in lines if WHOLE_TENANT.search(line)], lines
