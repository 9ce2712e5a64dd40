"""How fast does the dispatcher deliver outbox events, and what does recording them cost?

1. **Dispatch.** For each store (SQLite in a temporary file and, when
   ``CRMKIT_TEST_POSTGRES_URL`` is set, PostgreSQL with tables of prefix ``bench_``) the
   script appends ``--events`` events to the outbox of a fresh tenant, in the shape that
   ``capture_lead`` gives them (three events of a contact, one of its lead), subscribes a
   handler that does nothing and times ``CRM.dispatch(limit=--batch)`` until every event
   is delivered (the handler's lanes leased, the events read and decoded, handler calls,
   one recorded delivery per event, the lanes' cursors moved). The baseline, in the same
   run and on the same table, is the classic queue loop through the driver alone:
   ``SELECT position, body ... ORDER BY position LIMIT batch FOR UPDATE SKIP LOCKED``
   (SQLite: in a ``BEGIN IMMEDIATE`` transaction), ``json.loads`` of each body, a call of
   the same no-op handler, ``DELETE`` of the batch, ``COMMIT``, over as many events of
   another tenant. Target: crmkit at least 0.5x the loop's events per second. With
   ``--samples n`` both are measured n times, in alternating order, each time on new
   tenants, and the medians are compared.
2. **Recording.** ``capture_lead`` of a new person, ``--captures`` times, with events
   recorded and with the CRM's private switch ``_records_events = False``, in alternating
   rounds on the same store; the ratio of the medians is the cost of the four events a
   capture records. Target: at most 1.2x.

Usage: ``python benchmarks/automation.py [--events 20000] [--batch 500] [--captures 300]
[--samples 1] [--stores sqlite,postgresql] [--json]``. Small runs (a few thousand events)
measure mostly the first round's costs (statements prepared, readers built), which the
raw loop does not have.
"""

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

from _postgres import POSTGRES_ENV, PREFIX, postgres_dsn, reset_postgres

from crmkit._extras import import_extra
from crmkit.automation import (
    ActivityRecorded,
    ContactCreated,
    ContactStageChanged,
    Event,
    LeadCaptured,
)
from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.lifecycle import Touchpoint
from crmkit.models import ActivityKind, LeadChannel
from crmkit.storage import Store
from crmkit.storage.sql import SqlStore, open_store

NOW = datetime(2026, 11, 1, 9, tzinfo=UTC)
DISPATCH_TARGET = 0.5
RECORDING_TARGET = 1.2


def nothing(_: object, __: object) -> None:
    """The handler of both loops: it does nothing."""


def capture_events(count: int) -> list[Event]:
    """``count`` events, four per captured person as ``capture_lead`` records them."""
    found: list[Event] = []
    while len(found) < count:
        contact, lead, at = uuid4(), uuid4(), NOW
        base = {"occurred_at": at, "subject": "contact", "subject_id": contact}
        found += [
            ContactCreated(id=uuid4(), **base),
            LeadCaptured(
                id=uuid4(),
                occurred_at=at,
                subject="lead",
                subject_id=lead,
                contact_id=contact,
                channel=LeadChannel.FORM,
            ),
            ActivityRecorded(
                id=uuid4(), **base, activity_id=uuid4(), kind=ActivityKind.FORM_SUBMITTED
            ),
            ContactStageChanged(id=uuid4(), **base, from_stage="subscriber", to_stage="lead"),
        ]
    return found[:count]


def fill(store: Store, events: list[Event]) -> None:
    with store.unit_of_work() as unit:
        for start in range(0, len(events), 1000):
            unit.outbox.append(events[start : start + 1000])
        unit.commit()


def crmkit_rate(store: Store, count: int, batch: int) -> float:
    """Events per second that ``CRM.dispatch`` delivers to a no-op handler."""
    fill(store, capture_events(count))
    crm = CRM(store, clock=FixedClock(NOW))
    crm.subscribe("*", nothing, name="nothing")
    started = time.perf_counter()
    delivered = 0
    while True:
        report = crm.dispatch(limit=batch, now=NOW)
        if report.calls == 0:
            break
        delivered += report.delivered
    elapsed = time.perf_counter() - started
    assert delivered == count, (delivered, count)
    return count / elapsed


def raw_rate(store: SqlStore, count: int, batch: int) -> float:
    """Events per second of the driver-only SKIP LOCKED / DELETE loop on the outbox."""
    fill(store, capture_events(count))
    table = store.schema.outbox.name
    tenant = store.tenant
    if store.dialect == "sqlite":
        path = str(store.engine.url.database)  # type: ignore[union-attr]
        connection: Any = sqlite3.connect(path, isolation_level=None)
        select = f"SELECT position, body FROM {table} WHERE tenant = ? ORDER BY position LIMIT ?"
        delete = f"DELETE FROM {table} WHERE tenant = ? AND position IN ({{}})"
        mark = "?"

        def begin() -> None:
            connection.execute("BEGIN IMMEDIATE")

        def commit() -> None:
            connection.execute("COMMIT")

    else:
        psycopg = import_extra("psycopg", extra="postgres", feature="the PostgreSQL benchmark")
        connection = psycopg.connect(postgres_dsn(os.environ[POSTGRES_ENV]))
        select = (
            f"SELECT position, body FROM {table} WHERE tenant = %s ORDER BY position "
            "LIMIT %s FOR UPDATE SKIP LOCKED"
        )
        delete = f"DELETE FROM {table} WHERE tenant = %s AND position IN ({{}})"
        mark = "%s"

        def begin() -> None:
            pass  # psycopg opens the transaction with the first statement

        def commit() -> None:
            connection.commit()

    done = 0
    started = time.perf_counter()
    try:
        while True:
            begin()
            rows = connection.execute(select, (tenant, batch)).fetchall()
            if not rows:
                commit()
                break
            for _, body in rows:
                nothing(None, json.loads(body))
            positions = [row[0] for row in rows]
            connection.execute(
                delete.format(", ".join([mark] * len(positions))), (tenant, *positions)
            )
            commit()
            done += len(rows)
    finally:
        connection.close()
    elapsed = time.perf_counter() - started
    assert done == count, (done, count)
    return count / elapsed


def capture_times(store: Store, captures: int) -> tuple[float, float]:
    """Median milliseconds of ``capture_lead`` with events recorded and without."""
    clock = FixedClock(NOW, step=timedelta(milliseconds=1))
    recording, silent = CRM(store, clock=clock), CRM(store, clock=clock)
    silent._records_events = False
    times: dict[bool, list[float]] = {True: [], False: []}
    for number in range(captures):
        for on, crm in (
            ((True, recording), (False, silent))
            if number % 2
            else (
                (False, silent),
                (True, recording),
            )
        ):
            touch = Touchpoint(
                email=f"p{number}-{int(on)}@example.org",
                source="pricing-page",
                channel=LeadChannel.FORM,
                first_name="Ada",
            )
            started = time.perf_counter()
            crm.capture_lead(touch)
            times[on].append(time.perf_counter() - started)
    return statistics.median(times[True]) * 1000, statistics.median(times[False]) * 1000


def open_one(kind: str, folder: Path) -> Callable[[str], SqlStore]:
    if kind == "sqlite":
        url = f"sqlite:///{folder / 'automation.db'}"
        return lambda tenant: open_store(url, tenant=tenant, clock=FixedClock(NOW))
    reset_postgres(os.environ[POSTGRES_ENV], drop_only=True)  # open_store creates them
    url = os.environ[POSTGRES_ENV]
    return lambda tenant: open_store(url, tenant=tenant, prefix=PREFIX, clock=FixedClock(NOW))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--captures", type=int, default=300)
    parser.add_argument("--samples", type=int, default=1)
    default = "sqlite,postgresql" if os.environ.get(POSTGRES_ENV) else "sqlite"
    parser.add_argument("--stores", default=default)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for kind in options.stores.split(","):
            make = open_one(kind, Path(folder))
            rates: dict[str, list[float]] = {"crm": [], "raw": []}
            for sample in range(options.samples):
                order = ("crm", "raw") if sample % 2 == 0 else ("raw", "crm")
                for name in order:
                    store = make(f"bench-{name}-{uuid4().hex[:8]}")
                    try:
                        rate = crmkit_rate if name == "crm" else raw_rate
                        rates[name].append(rate(store, options.events, options.batch))
                    finally:
                        store.close()
            ours, raw = statistics.median(rates["crm"]), statistics.median(rates["raw"])
            store = make(f"bench-cap-{uuid4().hex[:8]}")
            try:
                with_events, without = capture_times(store, options.captures)
            finally:
                store.close()
            results[kind] = {
                "crmkit_events_per_s": ours,
                "raw_loop_events_per_s": raw,
                "dispatch_ratio": ours / raw,
                "capture_ms_with_events": with_events,
                "capture_ms_without_events": without,
                "recording_ratio": with_events / without,
            }
            if kind == "postgresql":
                reset_postgres(os.environ[POSTGRES_ENV], drop_only=True)
    print(
        f"events: {options.events}, batch: {options.batch}, captures: {options.captures}, "
        f"samples: {options.samples} (medians)"
    )
    print(
        f"{'store':<11} {'crmkit ev/s':>12} {'raw loop ev/s':>14} {'ratio':>6} "
        f"{'capture ms':>11} {'w/o events':>11} {'ratio':>6}"
    )
    verdict = True
    for kind, row in results.items():
        print(
            f"{kind:<11} {row['crmkit_events_per_s']:>12,.0f} "
            f"{row['raw_loop_events_per_s']:>14,.0f} {row['dispatch_ratio']:>6.2f} "
            f"{row['capture_ms_with_events']:>11.2f} {row['capture_ms_without_events']:>11.2f} "
            f"{row['recording_ratio']:>6.2f}"
        )
        verdict &= row["dispatch_ratio"] >= DISPATCH_TARGET
        verdict &= row["recording_ratio"] <= RECORDING_TARGET
    print(
        f"targets: dispatch >= {DISPATCH_TARGET}x the raw loop, recording <= "
        f"{RECORDING_TARGET}x: {'met' if verdict else 'NOT met'}"
    )
    if options.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
