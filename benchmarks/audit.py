"""How long does the data-quality audit take, and does it stream?

Fills a SQLite store with N contacts (default 100,000; one in fifty with a digit in its
name, one in twenty without e-mail or phone, one in ten with a phone) and times
``CRM.audit()`` as a whole and its invalid-value check alone (every contact read a page
of 1,000 at a time through ``iterate``, checked by
:func:`crmkit.quality.invalid_values`, only the findings kept), next to a ``sqlite3``
read of the same columns of every contact (the floor of any check in Python) in the same
run. Memory: the peak of Python allocations (``tracemalloc``) during the audit, which
stays flat in N when the check streams.

Usage: ``python benchmarks/audit.py [--n 100000]``.
"""

import argparse
import random
import sqlite3
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

from _postgres import PREFIX

from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.models import Contact, EmailAddress
from crmkit.quality import invalid_values
from crmkit.storage.sql import open_store

NOW = datetime(2026, 11, 1, 9, tzinfo=UTC)
TENANT = "bench"


def contacts(n: int, rng: random.Random) -> Iterator[Contact]:
    for i in range(n):
        at = NOW - timedelta(days=400) + timedelta(seconds=i)
        yield Contact(
            id=UUID(int=rng.getrandbits(128), version=4),
            version=1,
            created_at=at,
            updated_at=at,
            first_name=f"Ann{i % 7}" if i % 50 == 0 else "Ann",
            last_name="Lee",
            email=None if i % 20 == 0 else EmailAddress(f"p{i}@example.org"),
            phone="+4930123456" if i % 10 == 1 else None,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    options = parser.parse_args()
    clock = FixedClock(NOW)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "audit.db"
        store = open_store(f"sqlite:///{path}", tenant=TENANT, prefix=PREFIX, clock=clock)
        with store.unit_of_work() as unit:
            unit.contacts.add_many(contacts(options.n, random.Random(7)))
            unit.commit()
        crm = CRM(store, clock=clock)
        started = time.perf_counter()
        report = crm.audit()
        whole = time.perf_counter() - started

        started = time.perf_counter()
        with store.unit_of_work() as unit:
            found = [f for c in unit.contacts.iterate(now=NOW) for f in invalid_values(c)]
        check = time.perf_counter() - started
        assert len(found) == len([f for f in report.invalid if f.entity == "contact"])

        tracemalloc.start()
        crm.audit()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()

        connection = sqlite3.connect(path)
        started = time.perf_counter()
        rows = connection.execute(
            f"SELECT id, first_name, last_name, phone FROM {PREFIX}contacts WHERE tenant = ?",
            (TENANT,),
        ).fetchall()
        floor = time.perf_counter() - started
        connection.close()
        store.close()
    n = options.n
    print(f"SQLite: {n:,} contacts, {len(found):,} invalid values found, {len(rows):,} rows read")
    print(f"  CRM.audit()              {whole:7.2f} s")
    print(f"  invalid-value check      {check:7.2f} s  ({n / check:,.0f} contacts/s)")
    print(f"  sqlite3 read of columns  {floor:7.2f} s  (ratio {check / floor:.0f}x)")
    print(f"  audit peak Python memory {peak:7.1f} MB")


if __name__ == "__main__":
    main()
