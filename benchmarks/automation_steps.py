"""How fast do workers run due steps through :meth:`CRM.run_due`, next to a hand-written
queue loop on the same table?

Schedules N due steps (kind ``noop``, a runner that does nothing) in the steps table of
SQLite and, when ``CRMKIT_TEST_POSTGRES_URL`` is set, of PostgreSQL (tables with prefix
``bench_``, dropped at the end), and reports steps per second (best of ``--repeat``):

* ``run_due``: one worker calling ``crm.run_due(limit=L)`` until nothing is due: each
  call claims L steps under a lease in one unit of work (PostgreSQL ``FOR UPDATE SKIP
  LOCKED``), runs their runners outside it, and records the outcomes in a second unit
  of work, guarded by the lease;
* the baseline, a raw queue loop on the same table in the same run (other tenant rows):
  per batch one transaction of ``SELECT id ... WHERE status = 'pending' AND due_at <= now
  ORDER BY due_at, id LIMIT L [FOR UPDATE SKIP LOCKED]`` and ``UPDATE ... SET status =
  'done' WHERE id IN (...)`` through the DB-API driver (psycopg, sqlite3), no lease and
  no crmkit code: the least any queue on this table can do.

The ratio (run_due over the baseline, target: at least 0.5x) is the price of crmkit's
checks, leases and its second transaction per batch.

Usage: ``python benchmarks/automation_steps.py [--n 20000] [--limit 100] [--repeat 3]
[--json]``.
"""

import argparse
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

from _postgres import POSTGRES_ENV, PREFIX, postgres_dsn, reset_postgres

from crmkit.automation import new_step
from crmkit.crm import CRM
from crmkit.storage.sql import SqlStore, open_store
from crmkit.storage.sql.types import sqlite_timestamp

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)


def _fill(store: SqlStore, n: int) -> None:
    with store.unit_of_work() as unit:
        for i in range(n):
            due = NOW - timedelta(seconds=n - i)
            unit.steps.schedule(new_step("noop", {"n": i}, due_at=due, now=due))
        unit.commit()


def _through_run_due(store: SqlStore, limit: int) -> int:
    crm = CRM(store)
    crm.register_runner("noop", lambda crm, step: None)
    ran = 0
    while True:
        report = crm.run_due(NOW, limit)
        ran += len(report.done)
        if report.ran < limit:
            return ran


def _raw_sqlite(path: Path, tenant: str, limit: int) -> int:
    table = f"{PREFIX}steps"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    now, done = sqlite_timestamp(NOW), 0
    try:
        while True:
            connection.execute("BEGIN IMMEDIATE")
            ids = [
                row[0]
                for row in connection.execute(
                    f"SELECT id FROM {table} WHERE tenant = ? AND status = 'pending' "
                    "AND due_at <= ? ORDER BY due_at, id LIMIT ?",
                    (tenant, now, limit),
                )
            ]
            if ids:
                marks = ", ".join("?" * len(ids))
                connection.execute(
                    f"UPDATE {table} SET status = 'done', finished_at = ? "
                    f"WHERE tenant = ? AND id IN ({marks})",
                    (now, tenant, *ids),
                )
            connection.execute("COMMIT")
            done += len(ids)
            if len(ids) < limit:
                return done
    finally:
        connection.close()


def _raw_postgres(url: str, tenant: str, limit: int) -> int:
    import psycopg  # noqa: PLC0415 - the postgres extra

    table, done = f"{PREFIX}steps", 0
    with psycopg.connect(postgres_dsn(url)) as connection:
        while True:
            with connection.transaction():
                ids = [
                    row[0]
                    for row in connection.execute(
                        f"SELECT id FROM {table} WHERE tenant = %s AND status = 'pending' "
                        "AND due_at <= %s ORDER BY due_at, id LIMIT %s FOR UPDATE SKIP LOCKED",
                        (tenant, NOW, limit),
                    )
                ]
                if ids:
                    connection.execute(
                        f"UPDATE {table} SET status = 'done', finished_at = %s "
                        "WHERE tenant = %s AND id = ANY(%s)",
                        (NOW, tenant, ids),
                    )
            done += len(ids)
            if len(ids) < limit:
                return done


def _rate(
    open_tenant: Callable[[str], SqlStore], run: Callable[[SqlStore, str], int], n: int
) -> float:
    tenant = f"b{uuid4().hex[:10]}"
    store = open_tenant(tenant)
    try:
        _fill(store, n)
        started = time.perf_counter()
        ran = run(store, tenant)
        elapsed = time.perf_counter() - started
    finally:
        store.close()
    if ran != n:
        raise SystemExit(f"ran {ran} of {n} steps")
    return n / elapsed


def _measure(
    name: str, open_tenant: Callable[[str], SqlStore], raw: Callable[[str], int], args: Any
) -> dict[str, Any]:
    best_crm = best_raw = 0.0
    for _ in range(args.repeat):  # the two sides alternate
        best_crm = max(
            best_crm,
            _rate(open_tenant, lambda store, _t: _through_run_due(store, args.limit), args.n),
        )
        best_raw = max(best_raw, _rate(open_tenant, lambda _s, tenant: raw(tenant), args.n))
    return {
        "database": name,
        "steps": args.n,
        "limit": args.limit,
        "run_due_per_s": round(best_crm),
        "raw_per_s": round(best_raw),
        "ratio": round(best_crm / best_raw, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"

        def sqlite_tenant(tenant: str) -> SqlStore:
            return open_store(f"sqlite:///{path}", tenant=tenant, prefix=PREFIX)

        rows.append(
            _measure("sqlite", sqlite_tenant, lambda t: _raw_sqlite(path, t, args.limit), args)
        )
    url = os.environ.get(POSTGRES_ENV)
    if url:
        reset_postgres(url, drop_only=True)  # open_store creates the tables
        try:

            def postgres_tenant(tenant: str) -> SqlStore:
                return open_store(url, tenant=tenant, prefix=PREFIX)

            rows.append(
                _measure(
                    "postgresql", postgres_tenant, lambda t: _raw_postgres(url, t, args.limit), args
                )
            )
        finally:
            reset_postgres(url, drop_only=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'database':<12}{'steps':>8}{'limit':>7}{'run_due/s':>12}{'raw/s':>10}{'ratio':>8}")
    for row in rows:
        print(
            f"{row['database']:<12}{row['steps']:>8}{row['limit']:>7}"
            f"{row['run_due_per_s']:>12}{row['raw_per_s']:>10}{row['ratio']:>7.2f}x"
        )


if __name__ == "__main__":
    main()
