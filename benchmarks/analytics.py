"""Do the funnel and win rate by owner run near hand-written SQL, in bounded memory?

For each store (SQLite in a temporary file and, when ``CRMKIT_TEST_POSTGRES_URL`` is set,
PostgreSQL with tables of prefix ``bench_``) the script fills a fresh store with its own
``add_many``: N contacts (a tenth imported at their stage without history, the rest with
a creation move and one or two forward moves, some skipping stages), 0.3 N deals of 0.01 N
owners in EUR and USD (a creation move, up to two forward moves, then won or lost for
seven in ten), so about 3 N stage changes in all. Then it times, ``--samples`` times each
(the median is reported):

* ``funnel``: ``CRM.funnel(times=False)``, the lifecycle funnel's reached-at-least
  counts, grouped by the store (``StageHistoryRepository.reach``);
* ``win rate by owner``: the deals closed since the start of the year, as of now, per
  owner: ``StageHistoryRepository.standing(since=...)`` and the KPI rows built from it,
  which is the closed-deal part of ``CRM.pipeline_kpis``;
* ``pipeline_kpis``: ``CRM.pipeline_kpis`` for the year by owner, which replays three
  times (closed, open at the end, open at the start);

each next to a hand-written SQL query through the driver alone (``sqlite3``, psycopg) in
the same run, whose result is checked equal. Memory: the peak of Python allocations
(``tracemalloc``) during one call, and the process's peak RSS at the end.

Usage: ``python benchmarks/analytics.py [--n 1000000] [--samples 3]
[--stores sqlite,postgresql] [--json]``.
"""

import argparse
import json
import os
import random
import resource
import sqlite3
import statistics
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from _postgres import POSTGRES_ENV, PREFIX, postgres_dsn, reset_postgres

from crmkit._extras import import_extra
from crmkit.analytics import Granularity, lifecycle_stages, period_of, pipeline_rows
from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.crm._kpis import facts_of, stages_of
from crmkit.lifecycle import Pipeline, Stage, StageKind
from crmkit.models import (
    Contact,
    Deal,
    DealStatus,
    LifecycleStage,
    Money,
    StageChange,
    SubjectKind,
)
from crmkit.storage import Store
from crmkit.storage.sql import open_store
from crmkit.storage.sql.types import sqlite_timestamp

NOW = datetime(2026, 11, 1, 9, tzinfo=UTC)
YEAR = period_of(NOW, Granularity.YEAR)
TENANT = "bench"
TARGET = 2.0
MEMORY_TARGET_MB = 300
SALES = Pipeline(
    key="sales",
    label="Sales",
    subject=SubjectKind.DEAL,
    stages=(
        Stage(key="discovery", label="Discovery", probability=Decimal("0.1")),
        Stage(key="proposal", label="Proposal", probability=Decimal("0.4")),
        Stage(key="negotiation", label="Negotiation", probability=Decimal("0.7")),
        Stage(key="won", label="Won", probability=Decimal(1), kind=StageKind.WON),
        Stage(key="lost", label="Lost", kind=StageKind.LOST),
    ),
)
LIFECYCLE = lifecycle_stages()
RANKS = {stage: rank for rank, stage in enumerate(LIFECYCLE)}
DEAL_STAGES = ("discovery", "proposal", "negotiation")


def _uuid(rng: random.Random) -> UUID:
    return UUID(int=rng.getrandbits(128), version=4)


class Fill:
    """The generated data of one size."""

    def __init__(self, n: int, seed: int = 20261106) -> None:
        self.n = n
        self.seed = seed
        self.owners = max(1, n // 100)

    def _created(self, rng: random.Random) -> datetime:
        return NOW - timedelta(seconds=rng.randrange(600 * 86_400))

    def contacts(self) -> Iterator[tuple[Contact, list[StageChange]]]:
        rng = random.Random(self.seed)
        for _ in range(self.n):
            created = self._created(rng)
            top = min(int(rng.expovariate(0.7)), len(LIFECYCLE) - 1)
            contact = Contact(
                id=_uuid(rng),
                version=1,
                created_at=created,
                updated_at=created,
                lifecycle_stage=LifecycleStage(LIFECYCLE[top]),
            )
            moves: list[StageChange] = []
            if rng.random() >= 0.1:  # a tenth imported at their stage, without history
                path = sorted({0, top, *rng.sample(range(top + 1), min(top, 1))})
                at, previous = created, None
                for rank in path:
                    moves.append(
                        StageChange(
                            id=_uuid(rng),
                            version=1,
                            created_at=at,
                            updated_at=at,
                            subject=SubjectKind.CONTACT,
                            subject_id=contact.id,
                            from_stage=previous,
                            to_stage=LIFECYCLE[rank],
                            at=at,
                        )
                    )
                    previous = LIFECYCLE[rank]
                    at += timedelta(hours=rng.randrange(1, 24 * 30))
            yield contact, moves

    def deals(self) -> Iterator[tuple[Deal, list[StageChange]]]:
        rng = random.Random(self.seed + 1)
        for i in range(self.n * 3 // 10):
            created = self._created(rng)
            money = Money(Decimal(rng.randrange(100, 50_000)), "EUR" if i % 3 else "USD")
            stages = ["discovery", *DEAL_STAGES[1 : 1 + rng.randrange(3)]]
            end = rng.random()
            if end < 0.4:
                stages.append("won")
            elif end < 0.7:
                stages.append("lost")
            at, previous, moves = created, None, []
            deal_id = _uuid(rng)
            for stage in stages:
                moves.append(
                    StageChange(
                        id=_uuid(rng),
                        version=1,
                        created_at=at,
                        updated_at=at,
                        subject=SubjectKind.DEAL,
                        subject_id=deal_id,
                        pipeline="sales",
                        from_stage=previous,
                        to_stage=stage,
                        at=at,
                        reason="price" if stage == "lost" else None,
                        amount=money,
                        probability=SALES.stage(stage).probability,
                    )
                )
                previous = stage
                at += timedelta(days=rng.randrange(1, 40))
            last = stages[-1]
            status = {"won": DealStatus.WON, "lost": DealStatus.LOST}.get(last, DealStatus.OPEN)
            closed = None if status is DealStatus.OPEN else moves[-1].at
            deal = Deal(
                id=deal_id,
                version=1,
                created_at=created,
                updated_at=created,
                title=f"Deal {i}",
                pipeline="sales",
                stage=last,
                amount=money,
                status=status,
                closed_at=closed,
                lost_reason="price" if status is DealStatus.LOST else None,
                owner=f"owner-{i % self.owners}",
            )
            yield deal, moves

    def fill(self, store: Store) -> tuple[float, int]:
        """Store everything with ``add_many`` in bounded memory (the entities first, then
        their moves, generated again from the same seed); seconds taken and moves stored."""
        started = time.perf_counter()
        count = 0
        for name, source in (("contacts", self.contacts), ("deals", self.deals)):
            with store.unit_of_work() as unit:
                getattr(unit, name).add_many(entity for entity, _ in source())
                unit.commit()
            batch: list[StageChange] = []
            for _, moves in source():
                batch.extend(moves)
                if len(batch) >= 100_000:
                    count += self._store_moves(store, batch)
            count += self._store_moves(store, batch)
        return time.perf_counter() - started, count

    @staticmethod
    def _store_moves(store: Store, batch: list[StageChange]) -> int:
        with store.unit_of_work() as unit:
            stored = unit.stage_history.add_many(batch)
            unit.commit()
        batch.clear()
        return stored


# ---------------------------------------------------------------------------- crmkit


def crm_funnel(crm: CRM) -> list[int]:
    found = crm.funnel(times=False, at=NOW)
    return [row.reached for row in found.rows]


def crm_win_rate(store: Store) -> dict[str, tuple[int, int]]:
    until = NOW + timedelta(microseconds=1)
    facts = facts_of([SALES])
    with store.unit_of_work() as unit:
        closed = unit.stage_history.standing(
            SubjectKind.DEAL,
            until=until,
            since=YEAR.start,
            pipeline="sales",
            group="owner",
            stages=stages_of(facts, DealStatus.WON, DealStatus.LOST),
        )
    rows = pipeline_rows(YEAR, closed, (), (), facts)
    return _per_owner((r.group, r.won, r.lost) for r in rows)


def crm_kpis(crm: CRM) -> dict[str, tuple[int, int]]:
    kpis = crm.pipeline_kpis("sales", periods=[YEAR], by="owner", at=NOW)
    return _per_owner((r.group, r.won, r.lost) for r in kpis.rows)


def _per_owner(rows: Any) -> dict[str, tuple[int, int]]:
    won: Counter[str] = Counter()
    lost: Counter[str] = Counter()
    for owner, w, l_ in rows:
        if w or l_:
            won[owner] += w
            lost[owner] += l_
    return {o: (won[o], lost[o]) for o in sorted(set(won) | set(lost))}


# ---------------------------------------------------------------------------- hand SQL


def _case(column: str, ranks: dict[str, int], mark: str) -> str:
    return "CASE " + " ".join(f"WHEN {column} = '{k}' THEN {v}" for k, v in ranks.items()) + " END"


def funnel_sql(mark: str, greatest: str) -> str:
    """Reached-at-least per stage as of now: each contact's highest stage entered or
    left, or its own stage without history, counted per stage."""
    to, from_ = _case("c.to_stage", RANKS, mark), _case("c.from_stage", RANKS, mark)
    own = _case("k.lifecycle_stage", RANKS, mark)
    return f"""
        SELECT reached, count(*) FROM (
          SELECT {greatest}(coalesce(h.entered, -1), coalesce(h.passed, -1),
                            CASE WHEN h.subject_id IS NULL THEN coalesce({own}, -1) ELSE -1 END)
                 AS reached
          FROM {PREFIX}contacts k
          LEFT JOIN (SELECT c.subject_id, max({to}) AS entered, max({from_}) AS passed
                     FROM {PREFIX}stage_changes c
                     WHERE c.tenant = {mark} AND c.subject = 'contact' AND c.at < {mark}
                     GROUP BY c.subject_id) h ON h.subject_id = k.id
          WHERE k.tenant = {mark} AND k.created_at < {mark}
        ) per GROUP BY reached"""


def win_rate_sql(mark: str) -> str:
    return f"""
        SELECT d.owner, c.to_stage, count(*) FROM (
          SELECT subject_id, to_stage, at, row_number() OVER (
                   PARTITION BY subject_id ORDER BY at DESC, id DESC) AS place
          FROM {PREFIX}stage_changes
          WHERE tenant = {mark} AND subject = 'deal' AND at < {mark}) c
        JOIN {PREFIX}deals d ON d.tenant = {mark} AND d.id = c.subject_id
        WHERE c.place = 1 AND c.at >= {mark} AND c.to_stage IN ('won', 'lost')
          AND d.created_at < {mark}
        GROUP BY d.owner, c.to_stage"""


def _funnel_of(rows: list[tuple[Any, int]]) -> list[int]:
    counts = dict(rows)
    return [sum(n for reached, n in counts.items() if reached >= k) for k in range(len(LIFECYCLE))]


def _win_of(rows: list[tuple[str, str, int]]) -> dict[str, tuple[int, int]]:
    return _per_owner(
        (owner, n if s == "won" else 0, n if s == "lost" else 0) for owner, s, n in rows
    )


class Baseline:
    """The hand-written queries through the driver alone."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        until = NOW + timedelta(microseconds=1)
        if kind == "sqlite":
            self.connection: Any = sqlite3.connect(path)
            self.mark = "?"
            self.greatest = "max"
            self.until, self.since = sqlite_timestamp(until), sqlite_timestamp(YEAR.start)
        else:
            psycopg = import_extra("psycopg", extra="postgres", feature="the benchmark")
            self.connection = psycopg.connect(
                postgres_dsn(os.environ[POSTGRES_ENV]), autocommit=True
            )
            self.mark = "%s"
            self.greatest = "greatest"
            self.until, self.since = until, YEAR.start

    def funnel(self) -> list[int]:
        statement = funnel_sql(self.mark, self.greatest)
        params = (TENANT, self.until, TENANT, self.until)
        return _funnel_of(self.connection.execute(statement, params).fetchall())

    def win_rate(self) -> dict[str, tuple[int, int]]:
        statement = win_rate_sql(self.mark)
        params = (TENANT, self.until, TENANT, self.since, self.until)
        return _win_of(self.connection.execute(statement, params).fetchall())

    def close(self) -> None:
        self.connection.close()


# ---------------------------------------------------------------------------- the run


def _timed(call: Callable[[], Any], samples: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(samples):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def _peak_mb(call: Callable[[], Any]) -> float:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def measure(kind: str, n: int, samples: int) -> dict[str, Any]:
    fill = Fill(n)
    clock = FixedClock(NOW)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        if kind == "sqlite":
            store = open_store(f"sqlite:///{path}", tenant=TENANT, prefix=PREFIX, clock=clock)
        else:
            reset_postgres(os.environ[POSTGRES_ENV], drop_only=True)
            store = open_store(os.environ[POSTGRES_ENV], tenant=TENANT, prefix=PREFIX, clock=clock)
        baseline = None
        try:
            seconds, changes = fill.fill(store)
            baseline = Baseline(kind, path)
            if kind == "postgresql":
                baseline.connection.execute(f"ANALYZE {PREFIX}stage_changes")
            else:
                baseline.connection.execute("ANALYZE")
            crm = CRM(store, pipelines=[SALES], clock=clock)
            cases: dict[str, Any] = {}
            for name, ours, theirs in (
                ("funnel", lambda: crm_funnel(crm), baseline.funnel),
                ("win rate by owner", lambda: crm_win_rate(store), baseline.win_rate),
                ("pipeline_kpis", lambda: crm_kpis(crm), baseline.win_rate),
            ):
                mine, found = _timed(ours, samples)
                base, expected = _timed(theirs, samples)
                cases[name] = {
                    "crmkit_s": mine,
                    "sql_s": base,
                    "ratio": mine / base,
                    "equal": found == expected,
                    "peak_python_mb": _peak_mb(ours),
                }
        finally:
            if baseline is not None:
                baseline.close()
            store.close()
            if kind == "postgresql":
                reset_postgres(os.environ[POSTGRES_ENV], drop_only=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"fill_seconds": seconds, "stage_changes": changes, "cases": cases, "peak_rss_mb": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    kinds = [
        k for k in options.stores.split(",") if k != "postgresql" or POSTGRES_ENV in os.environ
    ]
    results: dict[str, Any] = {}
    ok = True
    for kind in kinds:
        result = measure(kind, options.n, options.samples)
        results[kind] = result
        print(
            f"{kind}: {options.n:,} contacts, {options.n * 3 // 10:,} deals, "
            f"{result['stage_changes']:,} stage changes "
            f"(filled in {result['fill_seconds']:.0f} s); peak RSS {result['peak_rss_mb']:.0f} MB"
        )
        for name, case in result["cases"].items():
            verdict = case["equal"] and case["peak_python_mb"] < MEMORY_TARGET_MB
            if name != "pipeline_kpis":
                verdict = verdict and case["ratio"] <= TARGET
                ok = ok and verdict
            print(
                f"  {name:18} crmkit {case['crmkit_s']:7.3f} s  SQL {case['sql_s']:7.3f} s  "
                f"ratio {case['ratio']:5.2f}  equal {case['equal']}  "
                f"python peak {case['peak_python_mb']:6.1f} MB  {'ok' if verdict else 'MISSED'}"
            )
    verdict = "met" if ok else "missed"
    print(f"target: at most {TARGET}x the SQL and under {MEMORY_TARGET_MB} MB: {verdict}")
    if options.json:
        print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
