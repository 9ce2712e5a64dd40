"""Does ``crmkit report`` render the report of a 1,000,000-contact store in under 30 s?

The script fills a fresh store with its own ``add_many`` (bulk inserts), in the shape of
a business-to-consumer company: the contacts of ``benchmarks/analytics.py`` (N
contacts, nine in ten with one to three lifecycle moves), 0.02 N deals with their moves
(the deals of that script), 0.01 N tickets (a tenth rated), the purchases of 0.02 N
customers (one to five each) and 0.005 N NPS answers. Then it times
:func:`crmkit.cli._report.build_report` (what ``crmkit report`` writes) once per
``--samples`` and reports the median, the seconds of each section, and the ratio to
the baseline measured in the same run: one full read of the contacts table through the
driver alone (``sqlite3``, psycopg), the least any report over every contact costs.

Usage: ``python benchmarks/report.py [--n 1000000] [--samples 1]
[--stores sqlite,postgresql] [--keep FILE] [--json]``; run it with ``nice -n 10``.
"""

import argparse
import itertools
import json
import os
import random
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from _postgres import POSTGRES_ENV, PREFIX, postgres_dsn, reset_postgres
from analytics import NOW, SALES, TENANT, Fill, _uuid

from crmkit._extras import import_extra
from crmkit.cli._report import build_report
from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.lifecycle import SlaPolicy
from crmkit.models import (
    Activity,
    ActivityKind,
    Money,
    Ticket,
    TicketChannel,
    TicketPriority,
    TicketStatus,
)
from crmkit.storage import Store
from crmkit.storage.sql import open_store

TARGET_SECONDS = 30.0
POLICIES = (
    SlaPolicy(name="standard", first_response=timedelta(hours=8), resolution=timedelta(days=3)),
)


class Shop(Fill):
    """The analytics benchmark's data with fewer deals: 0.02 N."""

    def deals(self) -> Iterator[tuple[Any, Any]]:
        return itertools.islice(super().deals(), self.n // 50)


def extras(fill: Fill, ids: list[Any]) -> Iterator[tuple[str, list[Any]]]:
    """Tickets, purchases and NPS answers of the contacts ``ids`` (by the fill's seed)."""
    rng = random.Random(fill.seed + 7)
    tickets = []
    for i in range(fill.n // 100):
        opened = NOW - timedelta(seconds=rng.randrange(360 * 86_400))
        solved = rng.random() < 0.8
        tickets.append(
            Ticket(
                id=_uuid(rng),
                version=1,
                created_at=opened,
                updated_at=opened + timedelta(hours=rng.randrange(1, 72)),
                subject=f"Ticket {i}",
                contact_id=rng.choice(ids),
                channel=TicketChannel.EMAIL,
                status=TicketStatus.SOLVED if solved else TicketStatus.OPEN,
                priority=TicketPriority.NORMAL,
                csat=rng.randrange(1, 6) if solved and rng.random() < 0.1 else None,
            )
        )
    yield "tickets", tickets
    activities = []
    for contact in rng.sample(ids, fill.n // 50):
        first = NOW - timedelta(seconds=rng.randrange(600 * 86_400))
        for k in range(rng.randrange(1, 6)):
            at = min(NOW, first + timedelta(days=40 * k + rng.randrange(30)))
            activities.append(
                Activity(
                    id=_uuid(rng),
                    version=1,
                    created_at=at,
                    updated_at=at,
                    contact_id=contact,
                    kind=ActivityKind.PURCHASE,
                    occurred_at=at,
                    amount=Money(Decimal(rng.randrange(20, 400)), "EUR"),
                    properties={"product": f"p{rng.randrange(20)}"},
                )
            )
    for contact in rng.sample(ids, fill.n // 200):
        at = NOW - timedelta(seconds=rng.randrange(300 * 86_400))
        activities.append(
            Activity(
                id=_uuid(rng),
                version=1,
                created_at=at,
                updated_at=at,
                contact_id=contact,
                kind=ActivityKind.FORM_SUBMITTED,
                occurred_at=at,
                properties={"nps": rng.randrange(11)},
            )
        )
    yield "activities", activities


def fill_store(store: Store, fill: Fill, kind: str, path: Path | None) -> float:
    """Contacts, deals and their moves in bulk through the driver (the analytics
    benchmark's writer, in the store's own encoding), then tickets and activities with
    the store's ``add_many``."""
    started = time.perf_counter()
    fill.fill(kind, path)  # type: ignore[arg-type]  # PostgreSQL takes no path
    for name, items in extras(fill, _contact_ids(store)):
        with store.unit_of_work() as unit:
            getattr(unit, name).add_many(items)
            unit.commit()
    return time.perf_counter() - started


def _contact_ids(store: Store) -> list[Any]:
    with store.unit_of_work() as unit:
        return unit.contacts.ids()


def baseline_sqlite(path: Path) -> float:
    started = time.perf_counter()
    with sqlite3.connect(path) as connection:
        rows = connection.execute(f"SELECT * FROM {PREFIX}contacts WHERE tenant = ?", (TENANT,))
        count = sum(1 for _ in rows)
    assert count > 0
    return time.perf_counter() - started


def baseline_postgres() -> float:
    psycopg = import_extra("psycopg", extra="postgres", feature="this benchmark")
    started = time.perf_counter()
    with psycopg.connect(postgres_dsn(os.environ[POSTGRES_ENV])) as connection:
        rows = connection.execute(
            f"SELECT * FROM {PREFIX}contacts WHERE tenant = %s", (TENANT,)
        ).fetchall()
    assert rows
    return time.perf_counter() - started


def measure(store: Store, samples: int, baseline: float, filled: float) -> dict[str, Any]:
    crm = CRM(store, pipelines=[SALES], sla_policies=POLICIES)
    runs = []
    cpu = []
    sections: dict[str, float] = {}
    size = 0
    for _ in range(samples):
        sections = {}
        started, used = time.perf_counter(), time.process_time()
        page = build_report(crm, timings=sections)
        runs.append(time.perf_counter() - started)
        cpu.append(time.process_time() - used)
        size = len(page.encode())
    seconds = statistics.median(runs)
    return {
        "fill_s": round(filled, 1),
        "report_s": round(seconds, 2),
        "report_cpu_s": round(statistics.median(cpu), 2),
        "baseline_s": round(baseline, 2),
        "ratio": round(seconds / baseline, 1),
        "target_s": TARGET_SECONDS,
        "met": seconds < TARGET_SECONDS,
        "html_kib": size // 1024,
        "sections_s": {key: round(value, 2) for key, value in sections.items()},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def _measure_sqlite(
    path: Path, fill: Shop, clock: FixedClock, samples: int, reuse: bool
) -> dict[str, Any]:
    store = open_store(f"sqlite:///{path}", tenant=TENANT, prefix=PREFIX, clock=clock)
    try:
        filled = 0.0 if reuse else fill_store(store, fill, "sqlite", path)
        return measure(store, samples, baseline_sqlite(path), filled)
    finally:
        store.close()


def run(n: int, samples: int, stores: list[str], keep: Path | None = None) -> dict[str, Any]:
    fill = Shop(n)
    clock = FixedClock(NOW)
    results: dict[str, Any] = {"n": n}
    if "sqlite" in stores:
        if keep is not None:  # fill once, then measure the kept file again and again
            if not keep.exists():  # filled under another name: a broken fill is never kept
                partial = keep.with_name(keep.name + ".partial")
                partial.unlink(missing_ok=True)
                results["sqlite"] = _measure_sqlite(partial, fill, clock, samples, False)
                partial.rename(keep)
            else:
                results["sqlite"] = _measure_sqlite(keep, fill, clock, samples, True)
        else:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "report.db"
                results["sqlite"] = _measure_sqlite(path, fill, clock, samples, False)
    if "postgresql" in stores and os.environ.get(POSTGRES_ENV):
        reset_postgres(os.environ[POSTGRES_ENV], drop_only=True)
        store = open_store(os.environ[POSTGRES_ENV], tenant=TENANT, prefix=PREFIX, clock=clock)
        try:
            filled = fill_store(store, fill, "postgresql", None)
            results["postgresql"] = measure(store, samples, baseline_postgres(), filled)
        finally:
            store.close()
            reset_postgres(os.environ[POSTGRES_ENV], drop_only=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--keep",
        type=Path,
        help="SQLite file to fill once and keep; when it exists it is measured as it is"
        " (fill s is then 0)",
    )
    args = parser.parse_args()
    results = run(args.n, args.samples, args.stores.split(","), args.keep)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"report of {args.n:,} contacts (target: under {TARGET_SECONDS:.0f} s)")
    print(f"{'store':<11} {'fill s':>8} {'report s':>9} {'cpu s':>6} {'scan s':>7} {'ratio':>6}"
          "  met  slowest sections (s)")  # fmt: skip
    for store in ("sqlite", "postgresql"):
        if store in results:
            r = results[store]
            slow = sorted(r["sections_s"].items(), key=lambda kv: -kv[1])[:4]
            print(f"{store:<11} {r['fill_s']:>8} {r['report_s']:>9} {r['report_cpu_s']:>6} "
                  f"{r['baseline_s']:>7} "
                  f"{r['ratio']:>6}  {'yes' if r['met'] else 'NO ':<4} "
                  + ", ".join(f"{k} {v}" for k, v in slow))  # fmt: skip
    sys.stdout.flush()


if __name__ == "__main__":
    main()
