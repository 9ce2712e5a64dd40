"""How fast does the SQL store answer a segment rule, next to hand-written SQL?

Stores N generated contacts (with the store's own ``add_many``) in SQLite and, when
``CRMKIT_TEST_POSTGRES_URL`` is set, in PostgreSQL (tables with prefix ``bench_``,
dropped at the end), then evaluates one 4-condition contact rule at a fixed ``now``:

    lifecycle_stage == "customer" and country in ("DE", "SE")
    and custom.seats >= 5 and created_at within the last 365 days

and reports milliseconds per query for the store and for the same condition written by
hand against the table's columns and run through the driver alone (``sqlite3``,
psycopg), on the same database in the same run. The ratio is the store's time over the
hand-written query's (lower is better):

* (a) selection: the matching ids (``ids(rule)``) against ``SELECT id ... ORDER BY id``,
  and ``count(rule)`` against ``SELECT count(*)``
  (target: at most 1.2x);
* (b) typed objects: ``find(rule).items`` against the raw rows of ``SELECT *`` with the
  same condition and order (target: at most 3x);
* (c) counts per lifecycle stage: one ``count(rule)`` per stage against one
  hand-written ``GROUP BY`` (no target);
* for scale, every contact as objects (``find()``) against ``SELECT *``.

Every store query runs in its own unit of work, as an application would run it. The
hand-written queries return the same ids in the same order (``created_at``, then
``id``), which is checked before anything is timed. The best of ``--repeat`` runs
counts, the store's and the hand-written runs alternating.

Usage: ``python benchmarks/storage_query.py [--n 100000] [--repeat 5] [--json]``; with
``--json`` the last line is one JSON object with every number.
"""

import argparse
import json
import math
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import attrs
from _postgres import POSTGRES_ENV, PREFIX, postgres_dsn, reset_postgres

from crmkit._extras import import_extra
from crmkit.models import Contact, CountryCode, CustomFields, EmailAddress, LifecycleStage
from crmkit.models.rules import Rule
from crmkit.segmentation import contacts_where, custom, field
from crmkit.storage.sql import SqlStore, open_store, schema

NOW = datetime(2026, 11, 1, tzinfo=UTC)
TENANT = "bench"
STAGE = LifecycleStage.CUSTOMER
COUNTRIES = ("DE", "SE")
SEATS = 5
DAYS = 365
SELECT_TARGET = 1.2
OBJECTS_TARGET = 3.0


def generate(n: int, seed: int = 20261101) -> Iterator[Contact]:
    """N varied, valid contacts; customers are common, so the segment is not tiny."""
    rng = random.Random(seed)
    countries = [CountryCode(c) for c in ("DE", "SE", "GB", "US", "FR")]
    stages = list(LifecycleStage)
    weights = [4 if s is STAGE else 1 for s in stages]
    tag_sets = [frozenset(), frozenset({"newsletter"}), frozenset({"churned", "vip"})]
    plans = ("free", "pro", "enterprise")
    for i in range(n):
        created = NOW - timedelta(seconds=rng.randrange(730 * 86_400))
        seats: Any = rng.randrange(50) if i % 20 else "many"  # a string never compares
        yield Contact(
            id=UUID(int=rng.getrandbits(128), version=4),
            version=1,
            created_at=created,
            updated_at=created,
            first_name=f"First{i}",
            last_name=f"Last{i}",
            email=EmailAddress(f"person{i}@example.com"),
            country=rng.choice(countries) if i % 10 else None,
            lifecycle_stage=rng.choices(stages, weights)[0],
            tags=rng.choice(tag_sets),
            custom=CustomFields({"plan": rng.choice(plans), "seats": seats, "mrr": i % 97 / 4}),
        )


def segment(stage: LifecycleStage) -> Rule:
    return contacts_where(
        (field("lifecycle_stage") == stage.value)
        & field("country").is_in(*COUNTRIES)
        & (custom("seats") >= SEATS)
        & field("created_at").within_last(DAYS)
    )


@attrs.frozen
class Hand:
    """The rule written by hand for one database, and a way to run SQL there."""

    table: str
    mark: str
    rest: str
    """The three conditions besides the stage, over the table's columns."""
    rest_params: tuple[Any, ...]
    fetch: Callable[[str, tuple[Any, ...]], list[Any]]
    to_id: Callable[[Any], UUID]

    def where(self) -> tuple[str, tuple[Any, ...]]:
        m = self.mark
        sql = f"tenant = {m} AND lifecycle_stage = {m} AND {self.rest}"
        return sql, (TENANT, STAGE.value, *self.rest_params)

    def ids(self) -> list[UUID]:
        where, params = self.where()
        sql = f"SELECT id FROM {self.table} WHERE {where} ORDER BY id"
        return [self.to_id(row[0]) for row in self.fetch(sql, params)]

    def count(self) -> int:
        where, params = self.where()
        return int(self.fetch(f"SELECT count(*) FROM {self.table} WHERE {where}", params)[0][0])

    def rows(self) -> list[Any]:
        where, params = self.where()
        sql = f"SELECT * FROM {self.table} WHERE {where} ORDER BY created_at, id"
        return self.fetch(sql, params)

    def by_stage(self) -> dict[str, int]:
        sql = (
            f"SELECT lifecycle_stage, count(*) FROM {self.table} "
            f"WHERE tenant = {self.mark} AND {self.rest} GROUP BY lifecycle_stage"
        )
        return dict(self.fetch(sql, (TENANT, *self.rest_params)))

    def everything(self) -> list[Any]:
        sql = f"SELECT * FROM {self.table} WHERE tenant = {self.mark} ORDER BY created_at, id"
        return self.fetch(sql, (TENANT,))


def sqlite_text(value: datetime) -> str:
    """A timestamp as the SQLite store keeps it: UTC, ``YYYY-MM-DD HH:MM:SS.ffffff``."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def sqlite_hand(path: Path) -> tuple[Hand, sqlite3.Connection]:
    connection = sqlite3.connect(path)
    rest = (
        "country IN (?, ?) AND json_type(custom, '$.seats') IN ('integer', 'real') "
        "AND json_extract(custom, '$.seats') >= ? AND created_at >= ? AND created_at <= ?"
    )
    low, high = sqlite_text(NOW - timedelta(days=DAYS)), sqlite_text(NOW)
    hand = Hand(
        schema(PREFIX).table(Contact).name,
        "?",
        rest,
        (*COUNTRIES, SEATS, low, high),
        lambda sql, params: connection.execute(sql, params).fetchall(),
        lambda value: UUID(hex=value),
    )
    return hand, connection


def postgres_hand(url: str) -> tuple[Hand, Any]:
    psycopg = import_extra("psycopg", extra="postgres", feature="the PostgreSQL benchmark")
    dsn = postgres_dsn(url)
    connection = psycopg.connect(dsn, autocommit=True)
    table = schema(PREFIX).table(Contact).name
    # json or jsonb: whichever the schema made, with its own typeof function.
    column = "SELECT data_type FROM information_schema.columns WHERE table_name = %s AND "
    (json_type,) = connection.execute(column + "column_name = 'custom'", (table,)).fetchone()
    # A CASE, because PostgreSQL may cast before it tests the type ("many"::numeric fails).
    rest = (
        f"country IN (%s, %s) AND CASE WHEN {json_type}_typeof(custom -> 'seats') = 'number' "
        "THEN (custom ->> 'seats')::numeric >= %s END AND created_at >= %s AND created_at <= %s"
    )
    hand = Hand(
        table,
        "%s",
        rest,
        (*COUNTRIES, SEATS, NOW - timedelta(days=DAYS), NOW),
        lambda sql, params: connection.execute(sql, params).fetchall(),
        lambda value: value,
    )
    return hand, connection


def fill(store: SqlStore, n: int) -> None:
    with store.unit_of_work() as uow:
        uow.contacts.add_many(generate(n))
        uow.commit()


def adapter_queries(store: SqlStore) -> dict[str, Callable[[], Any]]:
    """The store's side of each comparison, each query in its own unit of work."""
    rule = segment(STAGE)

    def ids() -> list[UUID]:
        with store.unit_of_work() as uow:
            return uow.contacts.ids(rule, now=NOW)

    def count() -> int:
        with store.unit_of_work() as uow:
            return uow.contacts.count(rule, now=NOW)

    def objects() -> tuple[Contact, ...]:
        with store.unit_of_work() as uow:
            return uow.contacts.find(rule, now=NOW).items

    def by_stage() -> dict[str, int]:
        with store.unit_of_work() as uow:
            counts = {s.value: uow.contacts.count(segment(s), now=NOW) for s in LifecycleStage}
        return {stage: number for stage, number in counts.items() if number}

    def everything() -> tuple[Contact, ...]:
        with store.unit_of_work() as uow:
            return uow.contacts.find(now=NOW).items

    return {
        "ids": ids,
        "count": count,
        "objects": objects,
        "by_stage": by_stage,
        "everything": everything,
    }


def check(adapter: dict[str, Callable[[], Any]], hand: Hand) -> int:
    """Fail unless the store and the hand-written SQL select exactly the same contacts."""
    ids = adapter["ids"]()
    if not ids or ids != hand.ids():
        raise SystemExit("the store and the hand-written SQL select different ids")
    if adapter["count"]() != len(ids) or hand.count() != len(ids):
        raise SystemExit("the counts disagree with the ids")
    objects = [c.id for c in adapter["objects"]()]
    if objects != [hand.to_id(row[1]) for row in hand.rows()] or sorted(objects) != ids:
        raise SystemExit("the objects and the raw rows disagree")
    counts = adapter["by_stage"]()
    if counts != hand.by_stage() or counts[STAGE.value] != len(ids):
        raise SystemExit("the counts per stage disagree")
    everyone = [c.id for c in adapter["everything"]()]
    if everyone != [hand.to_id(row[1]) for row in hand.everything()]:
        raise SystemExit("the stores' contents disagree")
    return len(ids)


def race(repeat: int, pairs: dict[str, tuple[Callable[[], Any], Callable[[], Any]]]) -> dict:
    """Best-of-``repeat`` seconds of each (store, hand-written) pair, alternating."""
    best = {name: [math.inf, math.inf] for name in pairs}
    for _ in range(repeat):
        for name, runs in pairs.items():
            for side, run in enumerate(runs):
                began = time.perf_counter()
                run()
                best[name][side] = min(best[name][side], time.perf_counter() - began)
    return best


def measure(backend: str, store: SqlStore, hand: Hand, repeat: int) -> dict[str, Any]:
    adapter = adapter_queries(store)
    selected = check(adapter, hand)
    pairs = {
        "ids": (adapter["ids"], hand.ids),
        "count": (adapter["count"], hand.count),
        "objects": (adapter["objects"], hand.rows),
        "by_stage": (adapter["by_stage"], hand.by_stage),
        "everything": (adapter["everything"], hand.everything),
    }
    results: dict[str, Any] = {f"{backend}_selected": selected}
    for name, (store_s, hand_s) in race(repeat, pairs).items():
        results[f"{backend}_{name}_store_ms"] = store_s * 1000
        results[f"{backend}_{name}_hand_ms"] = hand_s * 1000
        results[f"{backend}_{name}_ratio"] = store_s / hand_s
    return results


def run_sqlite(folder: Path, n: int, repeat: int) -> dict[str, Any]:
    path = folder / "query.db"
    store = open_store(f"sqlite:///{path}", tenant=TENANT, prefix=PREFIX)
    hand, connection = sqlite_hand(path)
    try:
        fill(store, n)
        return measure("sqlite", store, hand, repeat)
    finally:
        connection.close()
        store.close()


def run_postgres(url: str, n: int, repeat: int) -> dict[str, Any]:
    reset_postgres(url)
    store = open_store(url, tenant=TENANT, prefix=PREFIX, create=False)
    hand, connection = postgres_hand(url)
    try:
        fill(store, n)
        connection.execute(f"ANALYZE {hand.table}")  # autovacuum may not have run yet
        return measure("postgres", store, hand, repeat)
    finally:
        connection.close()
        store.close()
        reset_postgres(url, drop_only=True)


ROWS = (
    ("(a) ids(rule) | SELECT id", "ids", SELECT_TARGET),
    ("(a) count(rule) | SELECT count(*)", "count", SELECT_TARGET),
    ("(b) find(rule).items | SELECT * rows", "objects", OBJECTS_TARGET),
    ("(c) count(rule) per stage | GROUP BY", "by_stage", None),
    ("(scale) find() all N | SELECT * all N", "everything", None),
)


def report(results: dict[str, Any], backends: list[str]) -> None:
    """Print the table of times and ratios, and the verdicts on the targets."""
    print(f"crmkit storage query benchmark, N = {results['n']:,} contacts")
    print(f"{'backend':9} {'store | hand-written':40} {'store ms':>9} {'hand ms':>9} {'ratio':>7}")
    for backend in backends:
        for label, key, _ in ROWS:
            store_ms = results[f"{backend}_{key}_store_ms"]
            hand_ms = results[f"{backend}_{key}_hand_ms"]
            ratio = results[f"{backend}_{key}_ratio"]
            print(f"{backend:9} {label:40} {store_ms:9.2f} {hand_ms:9.2f} {ratio:7.2f}")
    for backend in backends:
        print(f"{backend}: the rule selects {results[f'{backend}_selected']:,} contacts")
    for backend in backends:
        for label, key, target in ROWS:
            if target is None:
                continue
            ratio = results[f"{backend}_{key}_ratio"]
            verdict = "meets" if ratio <= target else "MISSES"
            print(f"target: {backend} {label.split(' |')[0]} <= {target}x: {verdict} ({ratio:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    postgres_url = os.environ.get(POSTGRES_ENV)
    results: dict[str, Any] = {"n": args.n}
    backends = ["sqlite"]
    with tempfile.TemporaryDirectory(prefix="crmkit-bench-") as folder:
        results |= run_sqlite(Path(folder), args.n, args.repeat)
    if postgres_url:
        results |= run_postgres(postgres_url, args.n, args.repeat)
        backends.append("postgres")
    report(results, backends)
    if args.json:
        print(
            json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()})
        )


if __name__ == "__main__":
    main()
