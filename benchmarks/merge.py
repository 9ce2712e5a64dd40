"""How long does a contact merge take, next to the raw SQL of the same re-pointing?

Fills a SQLite store (``open_store``, prefix ``bench_``) with N contacts (default
100,000) and gives two of them ``--activities`` activities each (default 10,000). Then it
times, ``--samples`` times each (the median counts), in the same run:

* ``crmkit``: ``CRM.merge_contacts(survivor, [other])``: plan (every row that refers to
  the other contact, by index), re-point each row with its version check, delete the
  other, store the merge record with the before-images, commit; ``unmerge`` puts
  everything back between samples (untimed);
* ``raw SQL``: the same re-pointing through ``sqlite3`` alone in one transaction:
  ``UPDATE activities SET contact_id = ? , version = version + 1 WHERE tenant = ? AND
  contact_id = ?`` and the ``DELETE`` of the other contact (no merge record, no version
  checks, nothing to undo); it is reverted (untimed) between samples. Before each
  sample the write-ahead log is checkpointed (untimed), so no side pays for the other's
  writes.

It prints both times, their ratio and the rows re-pointed per second.

Usage: ``python benchmarks/merge.py [--n 100000] [--activities 10000] [--samples 3]``.
"""

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from _postgres import PREFIX

from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.models import Activity, ActivityKind, Contact, EmailAddress
from crmkit.storage.sql import open_store

NOW = datetime(2026, 11, 1, 9, tzinfo=UTC)
TENANT = "bench"


def _uuid(rng: random.Random) -> UUID:
    return UUID(int=rng.getrandbits(128), version=4)


def contacts(n: int, rng: random.Random) -> Iterator[Contact]:
    for i in range(n):
        at = NOW - timedelta(minutes=n - i)
        yield Contact(
            id=_uuid(rng),
            version=1,
            created_at=at,
            updated_at=at,
            email=EmailAddress(f"person{i}@example.org"),
            first_name=f"P{i}",
        )


def activities(contact: Contact, count: int, rng: random.Random) -> Iterator[Activity]:
    kinds = list(ActivityKind)
    for i in range(count):
        at = contact.created_at + timedelta(seconds=i + 1)
        yield Activity(
            id=_uuid(rng),
            version=1,
            created_at=at,
            updated_at=at,
            contact_id=contact.id,
            kind=kinds[i % len(kinds)],
            occurred_at=at,
        )


def _timed(call: Callable[[], Any], undo: Callable[[], Any], samples: int, path: Path) -> float:
    """The median time of ``call``; ``undo`` after each, then the write-ahead log is
    checkpointed, so that no sample pays for writing back what an earlier one wrote."""
    times = []
    for _ in range(samples):
        _checkpoint(path)
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
        undo()
    _checkpoint(path)
    return statistics.median(times)


def _checkpoint(path: Path) -> None:
    connection = sqlite3.connect(path, isolation_level=None, timeout=60)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def raw_sql(path: Path, survivor: Contact, other: Contact, rows: int, samples: int) -> float:
    """The median time of the same re-pointing through ``sqlite3`` alone."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=60)
    activities_table, contacts_table = f"{PREFIX}activities", f"{PREFIX}contacts"
    other_row = connection.execute(
        f"SELECT * FROM {contacts_table} WHERE tenant = ? AND id = ?",
        (TENANT, other.id.hex),
    ).fetchone()
    marks = ", ".join("?" * len(other_row))
    moved: list[str] = []

    def raw() -> None:
        connection.execute("BEGIN")
        moved[:] = [
            r[0]
            for r in connection.execute(
                f"SELECT id FROM {activities_table} WHERE tenant = ? AND contact_id = ?",
                (TENANT, other.id.hex),
            )
        ]
        changed = connection.execute(
            f"UPDATE {activities_table} SET contact_id = ?, version = version + 1 "
            "WHERE tenant = ? AND contact_id = ?",
            (survivor.id.hex, TENANT, other.id.hex),
        ).rowcount
        assert changed == rows
        connection.execute(
            f"DELETE FROM {contacts_table} WHERE tenant = ? AND id = ?",
            (TENANT, other.id.hex),
        )
        connection.execute("COMMIT")

    def revert() -> None:
        connection.execute("BEGIN")
        connection.execute(f"INSERT INTO {contacts_table} VALUES ({marks})", other_row)
        connection.executemany(
            f"UPDATE {activities_table} SET contact_id = ?, version = version - 1 "
            "WHERE tenant = ? AND id = ?",
            [(other.id.hex, TENANT, i) for i in moved],
        )
        connection.execute("COMMIT")

    theirs = _timed(raw, revert, samples, path)
    connection.close()
    return theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--activities", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=3)
    options = parser.parse_args()
    rng = random.Random(20261206)
    clock = FixedClock(NOW, step=timedelta(milliseconds=1))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "merge.db"
        store = open_store(f"sqlite:///{path}", tenant=TENANT, prefix=PREFIX, clock=clock)
        started = time.perf_counter()
        people = list(contacts(options.n, rng))
        with store.unit_of_work() as unit:
            unit.contacts.add_many(people)
            survivor, other = people[0], people[1]
            for person in (survivor, other):
                unit.activities.add_many(activities(person, options.activities, rng))
            unit.commit()
        filled = time.perf_counter() - started
        crm = CRM(store, clock=clock)
        merges: list[UUID] = []

        def merge() -> None:
            done = crm.merge_contacts(survivor.id, [other.id])
            assert len(done.repointed) == options.activities
            merges.append(done.merge_id)  # type: ignore[arg-type]

        def unmerge() -> None:
            crm.unmerge(merges.pop())

        ours = _timed(merge, unmerge, options.samples, path)

        theirs = raw_sql(path, survivor, other, options.activities, options.samples)
        store.close()
    rows = options.activities
    print(
        f"SQLite: {options.n:,} contacts, two with {rows:,} activities each "
        f"(filled in {filled:.0f} s); merging one into the other re-points {rows:,} rows"
    )
    print(f"  crmkit merge_contacts  {ours:7.3f} s  ({rows / ours:,.0f} rows/s)")
    print(f"  raw SQL UPDATE+DELETE  {theirs:7.3f} s  ({rows / theirs:,.0f} rows/s)")
    print(f"  ratio {ours / theirs:.1f}x")


if __name__ == "__main__":
    main()
