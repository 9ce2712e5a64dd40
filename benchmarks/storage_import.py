"""How fast does the SQL store import contacts, next to the database driver alone?

Imports N generated contacts with ``add_many`` in one unit of work and reports rows per
second for, in the same run and on the same contacts:

* SQLite: the store (``open_store("sqlite:///...")``) against the baseline of one
  ``sqlite3`` ``executemany`` of the very rows the store writes, rendered by its codec
  before the clock starts, into a fresh file with the same tables and indexes
  (``create_schema``) and pragmas (WAL, ``synchronous = NORMAL``), in one transaction
  (target: at least 0.4x the baseline); for context, SQLAlchemy Core's
  ``conn.execute(insert(table), dicts)`` on the same table with the same values;
* PostgreSQL, when ``CRMKIT_TEST_POSTGRES_URL`` is set: the store against psycopg's
  ``COPY ... FROM STDIN`` with ``write_row`` of the same pre-rendered rows (target: at
  least 0.6x), each into tables created afresh for the run (prefix ``bench_``, dropped
  at the end);
* the peak resident memory (``VmHWM``, else ``ru_maxrss``) of a fresh process that
  imports N contacts generated on the fly, i.e. whether the store streams (target:
  under 300 MB at N = 1,000,000); the process's size before the import is shown too.

The store's time includes checking and encoding each contact (its own work); building
the Contact objects is outside every clock and reported for scale, as is the codec's
encoding alone. Each file or table is new for every run; the best of ``--repeat`` runs
counts, and the runs of the different importers alternate so that noise hits all alike.

Usage: ``python benchmarks/storage_import.py [--n 100000] [--repeat 3] [--json]``; the
stated target is for ``--n 1000000``. With ``--json`` the last line is one JSON object
with every number.
"""

import argparse
import json
import math
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from _postgres import POSTGRES_ENV, PREFIX, postgres_dsn, reset_postgres

from crmkit._extras import import_extra
from crmkit.models import Contact, CountryCode, CustomFields, EmailAddress, LifecycleStage
from crmkit.storage.sql import configure_sqlite, create_schema, open_store, schema
from crmkit.storage.sql._codec import codec

NOW = datetime(2026, 11, 1, tzinfo=UTC)
TENANT = "bench"
SQLITE_TARGET = 0.40
POSTGRES_TARGET = 0.60
RSS_TARGET_MB = 300

Step = Callable[[], object]
Prepare = Callable[[], tuple[Step, Step]]
"""Makes a fresh target (untimed); returns the timed import and the (untimed) clean-up."""


def generate(n: int, seed: int = 20261101) -> Iterator[Contact]:
    """N varied, valid contacts, one at a time (so that an import can stream them)."""
    rng = random.Random(seed)
    countries = [CountryCode(c) for c in ("DE", "SE", "GB", "US", "FR")]
    stages = list(LifecycleStage)
    tag_sets = [frozenset(), frozenset({"newsletter"}), frozenset({"churned", "vip"})]
    plans = ("free", "pro", "enterprise")
    for i in range(n):
        created = NOW - timedelta(seconds=rng.randrange(730 * 86_400))
        seats: Any = rng.randrange(50) if i % 20 else "many"
        yield Contact(
            id=UUID(int=rng.getrandbits(128), version=4),
            version=1,
            created_at=created,
            updated_at=created,
            first_name=f"First{i}",
            last_name=f"Last{i}",
            email=EmailAddress(f"person{i}@example.com"),
            country=rng.choice(countries) if i % 10 else None,
            lifecycle_stage=rng.choice(stages),
            tags=rng.choice(tag_sets),
            custom=CustomFields({"plan": rng.choice(plans), "seats": seats, "mrr": i % 97 / 4}),
        )


def race(repeat: int, runs: dict[str, Prepare]) -> dict[str, float]:
    """The best of ``repeat`` timed runs of each importer, alternating importers."""
    best = dict.fromkeys(runs, math.inf)
    for _ in range(repeat):
        for name, prepare in runs.items():
            step, clean_up = prepare()
            try:
                began = time.perf_counter()
                step()
                best[name] = min(best[name], time.perf_counter() - began)
            finally:
                clean_up()
    return best


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def store_import(url: str, contacts: list[Contact], *, create: bool = True) -> Prepare:
    """The store's import: one unit of work, ``add_many``, commit."""

    def prepare() -> tuple[Step, Step]:
        store = open_store(url, tenant=TENANT, prefix=PREFIX, create=create)

        def step() -> None:
            with store.unit_of_work() as uow:
                uow.contacts.add_many(contacts)
                uow.commit()

        return step, store.close

    return prepare


def sqlite_runs(folder: Path, contacts: list[Contact]) -> dict[str, Prepare]:
    table = schema(PREFIX).table(Contact)
    sqlite_codec = codec(Contact, "sqlite")
    rows = [sqlite_codec.encode(TENANT, c) for c in contacts]
    # The same values in Python's types, for Core to bind through the table's types.
    python_codec = codec(Contact, "postgresql")
    names = python_codec.names
    dicts = [dict(zip(names, python_codec.encode(TENANT, c), strict=True)) for c in contacts]
    columns = ", ".join(sqlite_codec.names)
    marks = ", ".join("?" * len(sqlite_codec.names))
    insert = f"INSERT INTO {table.name} ({columns}) VALUES ({marks})"

    def fresh(name: str) -> tuple[Path, sa.Engine]:
        path = folder / f"{name}.db"
        remove_sqlite(path)
        engine = configure_sqlite(sa.create_engine(f"sqlite:///{path}"))
        create_schema(engine, prefix=PREFIX)
        return path, engine

    def executemany() -> tuple[Step, Step]:
        path, engine = fresh("executemany")
        engine.dispose()
        connection = sqlite3.connect(path, isolation_level=None)
        for pragma in ("foreign_keys = ON", "journal_mode = WAL", "synchronous = NORMAL"):
            connection.execute(f"PRAGMA {pragma}")

        def step() -> None:
            connection.execute("BEGIN")
            connection.executemany(insert, rows)
            connection.execute("COMMIT")

        return step, lambda: (connection.close(), remove_sqlite(path))

    def core() -> tuple[Step, Step]:
        path, engine = fresh("core")

        def step() -> None:
            with engine.begin() as connection:
                connection.execute(sa.insert(table), dicts)

        return step, lambda: (engine.dispose(), remove_sqlite(path))

    def store() -> tuple[Step, Step]:
        path = folder / "store.db"
        remove_sqlite(path)
        step, close = store_import(f"sqlite:///{path}", contacts)()
        return step, lambda: (close(), remove_sqlite(path))

    return {"sqlite_executemany": executemany, "sqlite_store": store, "sqlite_core": core}


def postgres_runs(url: str, contacts: list[Contact]) -> dict[str, Prepare]:
    psycopg = import_extra("psycopg", extra="postgres", feature="the PostgreSQL benchmark")
    table = schema(PREFIX).table(Contact)
    pg_codec = codec(Contact, "postgresql")
    rows = [pg_codec.encode(TENANT, c) for c in contacts]
    copy_sql = f"COPY {table.name} ({', '.join(pg_codec.names)}) FROM STDIN"
    store = store_import(url, contacts, create=False)

    def copy() -> tuple[Step, Step]:
        reset_postgres(url)
        connection = psycopg.connect(postgres_dsn(url))

        def step() -> None:
            with (
                connection.transaction(),
                connection.cursor() as cursor,
                cursor.copy(copy_sql) as writer,
            ):
                for row in rows:
                    writer.write_row(row)

        return step, connection.close

    def store_run() -> tuple[Step, Step]:
        reset_postgres(url)
        return store()

    return {"postgres_copy": copy, "postgres_store": store_run}


def peak_rss(n: int, url: str) -> dict[str, float]:
    """Import N contacts generated on the fly in a fresh process: its memory and time."""
    command = [sys.executable, __file__, "--n", str(n), "--memory-child", url]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def high_water_mb() -> float:
    """This process's peak resident memory so far, in MB.

    Linux's ``VmHWM`` when there is one: ``ru_maxrss`` survives ``exec`` and so counts
    the pages of the (large) parent that forked this process.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def memory_child(n: int, url: str) -> None:
    """In the fresh process: stream N generated contacts into the store at ``url``."""
    store = open_store(url, tenant=TENANT, prefix=PREFIX)
    start = high_water_mb()
    began = time.perf_counter()
    with store.unit_of_work() as uow:
        imported = uow.contacts.add_many(generate(n))
        uow.commit()
    seconds = time.perf_counter() - began
    peak = high_water_mb()
    store.close()
    assert imported == n
    print(json.dumps({"start_mb": start, "peak_mb": peak, "per_s": n / seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--memory-child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = args.n
    if args.memory_child:
        memory_child(n, args.memory_child)
        return
    postgres_url = os.environ.get(POSTGRES_ENV)
    results: dict[str, Any] = {"n": n}
    with tempfile.TemporaryDirectory(prefix="crmkit-bench-") as folder:
        # First, while this process is small: the child is forked from it.
        memory = peak_rss(n, f"sqlite:///{Path(folder) / 'memory.db'}")
        results |= {f"sqlite_memory_{k}": v for k, v in memory.items()}
        if postgres_url:
            try:
                reset_postgres(postgres_url)
                memory = peak_rss(n, postgres_url)
            finally:
                reset_postgres(postgres_url, drop_only=True)
            results |= {f"postgres_memory_{k}": v for k, v in memory.items()}

        began = time.perf_counter()
        contacts = list(generate(n))
        results["build_contacts_per_s"] = n / (time.perf_counter() - began)
        encode = codec(Contact, "sqlite").encode
        began = time.perf_counter()
        for contact in contacts:
            encode(TENANT, contact)
        results["codec_encode_per_s"] = n / (time.perf_counter() - began)

        seconds = race(args.repeat, sqlite_runs(Path(folder), contacts))
        if postgres_url:
            try:
                seconds |= race(args.repeat, postgres_runs(postgres_url, contacts))
            finally:
                reset_postgres(postgres_url, drop_only=True)
        results |= {f"{name}_per_s": n / s for name, s in seconds.items()}
    report(results, postgres=bool(postgres_url))
    if args.json:
        print(
            json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()})
        )


def report(results: dict[str, Any], *, postgres: bool) -> None:
    """Print the table of rates and ratios, and the verdicts on the targets."""
    rows = [
        ("sqlite", "sqlite3 executemany, pre-rendered", "sqlite_executemany", "sqlite_executemany"),
        ("sqlite", "store add_many", "sqlite_store", "sqlite_executemany"),
        ("sqlite", "SQLAlchemy Core insert(), dicts", "sqlite_core", "sqlite_executemany"),
    ]
    if postgres:
        rows += [
            ("postgresql", "psycopg COPY, pre-rendered", "postgres_copy", "postgres_copy"),
            ("postgresql", "store add_many", "postgres_store", "postgres_copy"),
        ]
    rows += [
        ("(scale)", "build Contact objects", "build_contacts", None),
        ("(scale)", "codec encode (sqlite), alone", "codec_encode", None),
    ]
    print(f"crmkit storage import benchmark, N = {results['n']:,} contacts")
    print(f"{'backend':11} {'import':36} {'rows/s':>12} {'ratio':>7}")
    for backend, label, key, base in rows:
        value = results[f"{key}_per_s"]
        ratio = "" if base is None else f"{value / results[f'{base}_per_s']:7.3f}"
        if base is not None:
            results[f"{key}_ratio"] = value / results[f"{base}_per_s"]
        print(f"{backend:11} {label:36} {value:12,.0f} {ratio:>7}")
    backends = ["sqlite", "postgres"] if postgres else ["sqlite"]
    for backend in backends:
        start, peak = results[f"{backend}_memory_start_mb"], results[f"{backend}_memory_peak_mb"]
        rate = results[f"{backend}_memory_per_s"]
        print(
            f"{backend} peak RSS, fresh process streaming N generated contacts: {peak:,.0f} MB "
            f"(at start {start:,.0f} MB; {rate:,.0f} contacts/s built and imported)"
        )
    targets = [("sqlite store >= 0.40x executemany", results["sqlite_store_ratio"], SQLITE_TARGET)]
    if postgres:
        targets.append(
            ("postgresql store >= 0.60x COPY", results["postgres_store_ratio"], POSTGRES_TARGET)
        )
    for label, value, wanted in targets:
        print(f"target: {label}: {'meets' if value >= wanted else 'MISSES'} ({value:.3f})")
    for backend in backends:
        peak = results[f"{backend}_memory_peak_mb"]
        verdict = "meets" if peak < RSS_TARGET_MB else "MISSES"
        label = f"{backend} peak RSS < {RSS_TARGET_MB} MB (stated at N = 1,000,000)"
        print(f"target: {label}: {verdict} ({peak:,.0f} MB)")


if __name__ == "__main__":
    main()
