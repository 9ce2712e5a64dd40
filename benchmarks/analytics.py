"""Do the funnel, win rate by owner and cohort retention run near hand-written SQL, in
bounded memory?

For each store (SQLite in a temporary file and, when ``CRMKIT_TEST_POSTGRES_URL`` is set,
PostgreSQL with tables of prefix ``bench_``) the script fills the store's tables in bulk
(``executemany`` on SQLite, ``COPY`` on PostgreSQL, 50,000 moves a batch, each row encoded
by the store's own codec, the first 200 of each kind also built as models, whose checks
accept them; then ``ANALYZE``, on PostgreSQL ``VACUUM ANALYZE``): N contacts (a tenth
imported at their stage without history, the rest with a creation move and up to three
forward moves, some skipping stages), 0.3 N deals of
0.01 N owners in EUR and USD (a creation move, up to two forward moves, then won or lost
for seven in ten), about 3 N stage changes in all. Then it times, ``--samples`` times
each (the median is reported):

* ``funnel``: ``CRM.funnel(times=False)``, the lifecycle funnel's reached-at-least
  counts, grouped by the store (``StageHistoryRepository.reach``);
* ``win rate by owner``: the deals closed since the start of the year, as of now, per
  owner: ``StageHistoryRepository.standing(since=...)`` and the KPI rows built from it,
  which is the closed-deal part of ``CRM.pipeline_kpis``;
* ``pipeline_kpis``: ``CRM.pipeline_kpis`` for the year by owner, which replays three
  times (closed, open at the end, open at the start);
* ``retention matrix``: the monthly cohort retention matrix of the customers by
  lifecycle: ``StageHistoryRepository.customer_spans`` (one row per customer, grouped
  by the database) and :func:`crmkit.analytics.retention_matrix` over them;

each next to a hand-written SQL query through the driver alone (``sqlite3``, psycopg) in
the same run, whose result is checked equal (the retention query groups by cohort and
churn month). Memory: the peak of Python allocations (``tracemalloc``) during one call,
and the process's peak RSS at the end.

Usage: ``python benchmarks/analytics.py [--n 1000000] [--samples 3]
[--stores sqlite,postgresql] [--skip pipeline_kpis] [--keep FILE] [--keep-postgres]
[--json]``. ``--keep FILE`` fills the SQLite file once and measures it as it is on
later runs (fill s is then 0; the file must have been filled with the same ``--n``);
``--keep-postgres`` likewise leaves the ``bench_`` tables in PostgreSQL after the run
and reuses them when they hold a complete fill of the same ``--n`` (a comment on the
stage-history table marks one).
"""

import argparse
import json
import os
import random
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import attrs
from _postgres import POSTGRES_ENV, PREFIX, postgres_dsn, reset_postgres

from crmkit._extras import import_extra
from crmkit.analytics import (
    Granularity,
    lifecycle_stages,
    period_of,
    periods,
    pipeline_rows,
    retention_matrix,
)
from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.crm._kpis import facts_of, stages_of
from crmkit.lifecycle import Pipeline, Stage, StageKind
from crmkit.models import (
    Contact,
    Deal,
    DealStatus,
    Entity,
    LifecycleStage,
    Money,
    StageChange,
    SubjectKind,
)
from crmkit.quality import match_keys
from crmkit.storage import Store
from crmkit.storage.sql import open_store, schema
from crmkit.storage.sql._codec import codec
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


def _defaults(cls: type[Entity]) -> dict[str, Any]:
    """Every field of ``cls`` with the value of a valid instance: what a generated row
    holds unless it sets the field."""
    templates: dict[type[Entity], Entity] = {
        Contact: Contact.new(),
        Deal: Deal.new(title="t", pipeline="sales", stage="discovery"),
        StageChange: StageChange.new(
            subject=SubjectKind.CONTACT, subject_id=UUID(int=1), to_stage="lead"
        ),
    }
    template = templates[cls]
    return {f.name: getattr(template, f.name) for f in attrs.fields(cls)}


class Fill:
    """The generated data of one size, as rows of plain values (a namespace per entity
    with every field), stored in bulk through the database driver in the store's own
    encoding (its codec); the first rows of each kind are also built as models, which
    check them."""

    CHECKED = 200

    def __init__(self, n: int, seed: int = 20261106) -> None:
        self.n = n
        self.seed = seed
        self.owners = max(1, n // 100)
        self.defaults = {cls: _defaults(cls) for cls in (Contact, Deal, StageChange)}
        self.checked: Counter[type[Entity]] = Counter()

    def _row(self, cls: type[Entity], **values: Any) -> SimpleNamespace:
        row = SimpleNamespace(**(self.defaults[cls] | values))
        if self.checked[cls] < self.CHECKED:  # the model's checks accept the row
            self.checked[cls] += 1
            model = cls(**vars(row))
            assert not isinstance(model, Contact) or not match_keys(model)
        return row

    def _created(self, rng: random.Random) -> datetime:
        return NOW - timedelta(seconds=rng.randrange(600 * 86_400))

    def _change(self, rng: random.Random, at: datetime, **values: Any) -> SimpleNamespace:
        return self._row(StageChange, id=_uuid(rng), created_at=at, updated_at=at, at=at, **values)

    def contacts(self) -> Iterator[tuple[SimpleNamespace, list[SimpleNamespace]]]:
        rng = random.Random(self.seed)
        for _ in range(self.n):
            created = self._created(rng)
            top = min(int(rng.expovariate(0.35)), len(LIFECYCLE) - 1)
            contact = self._row(
                Contact,
                id=_uuid(rng),
                created_at=created,
                updated_at=created,
                lifecycle_stage=LifecycleStage(LIFECYCLE[top]),
            )
            moves: list[SimpleNamespace] = []
            if rng.random() >= 0.1:  # a tenth imported at their stage, without history
                path = sorted({0, top, *rng.sample(range(top + 1), min(top, 3))})
                at, previous = created, None
                for rank in path:
                    moves.append(
                        self._change(
                            rng,
                            at,
                            subject=SubjectKind.CONTACT,
                            subject_id=contact.id,
                            from_stage=previous,
                            to_stage=LIFECYCLE[rank],
                        )
                    )
                    previous = LIFECYCLE[rank]
                    at += timedelta(hours=rng.randrange(1, 24 * 30))
            yield contact, moves

    def deals(self) -> Iterator[tuple[SimpleNamespace, list[SimpleNamespace]]]:
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
                    self._change(
                        rng,
                        at,
                        subject=SubjectKind.DEAL,
                        subject_id=deal_id,
                        pipeline="sales",
                        from_stage=previous,
                        to_stage=stage,
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
            deal = self._row(
                Deal,
                id=deal_id,
                created_at=created,
                updated_at=created,
                title=f"Deal {i}",
                stage=last,
                amount=money,
                probability=SALES.stage(last).probability,
                status=status,
                closed_at=closed,
                lost_reason="price" if status is DealStatus.LOST else None,
                owner=f"owner-{i % self.owners}",
            )
            yield deal, moves

    def fill(self, kind: str, path: Path) -> tuple[float, int]:
        """Store everything in bulk (``executemany`` on SQLite, ``COPY`` on PostgreSQL,
        50,000 moves a batch) in bounded memory; seconds taken and moves stored."""
        started = time.perf_counter()
        writer = _Writer(kind, path)
        moves_count = 0
        try:
            for cls, source in ((Contact, self.contacts), (Deal, self.deals)):
                entities: list[SimpleNamespace] = []
                moves: list[SimpleNamespace] = []
                for entity, history in source():
                    entities.append(entity)
                    moves.extend(history)
                    if len(moves) >= _BATCH:
                        writer.write(cls, entities)
                        moves_count += writer.write(StageChange, moves)
                writer.write(cls, entities)
                moves_count += writer.write(StageChange, moves)
            writer.analyze()
        finally:
            writer.close()
        return time.perf_counter() - started, moves_count


_BATCH = 50_000


class _Writer:
    """Rows into the benchmark's tables through the driver alone, encoded by the store's
    codec (the same values ``add_many`` writes)."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.tables = schema(PREFIX)
        if kind == "sqlite":
            self.connection: Any = sqlite3.connect(path, isolation_level=None)
        else:
            psycopg = import_extra("psycopg", extra="postgres", feature="the benchmark")
            self.connection = psycopg.connect(postgres_dsn(os.environ[POSTGRES_ENV]))

    def write(self, cls: type[Entity], rows: list[SimpleNamespace]) -> int:
        if not rows:
            return 0
        encoder = codec(cls, self.kind)
        name = self.tables.table(cls).name
        columns = ", ".join(encoder.names)
        encoded = [encoder.encode(TENANT, row) for row in rows]
        if self.kind == "sqlite":
            marks = ", ".join("?" * len(encoder.names))
            self.connection.execute("BEGIN")
            self.connection.executemany(
                f"INSERT INTO {name} ({columns}) VALUES ({marks})",
                encoded,
            )
            self.connection.execute("COMMIT")
        else:
            with (
                self.connection.cursor() as cursor,
                cursor.copy(f"COPY {name} ({columns}) FROM STDIN") as copy,
            ):
                for row in encoded:
                    copy.write_row(row)
            self.connection.commit()
        count = len(rows)
        rows.clear()
        return count

    def analyze(self) -> None:
        """Statistics for the planners; on PostgreSQL also the visibility map (``VACUUM``),
        as autovacuum leaves it on a table at rest, so that the index-only scans of both
        sides read no table page whenever the autovacuum ran (or not) during the fill."""
        if self.kind == "sqlite":
            self.connection.execute("ANALYZE")
        else:
            self.connection.commit()
            self.connection.autocommit = True
            self.connection.execute("VACUUM ANALYZE")

    def close(self) -> None:
        self.connection.close()


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


COHORTS = periods(
    period_of(NOW - timedelta(days=620), Granularity.MONTH).start, NOW, Granularity.MONTH
)
"""The monthly cohorts of the retention matrix: every month with customers."""


def crm_retention(store: Store) -> list[tuple[str, int, tuple[int, ...]]]:
    """The cohort retention matrix: the store's customer spans (one row per customer,
    grouped in the database) and crmkit's matrix of them."""
    with store.unit_of_work() as unit:
        spans = unit.stage_history.customer_spans()
    matrix = retention_matrix(
        spans, start=COHORTS[0].start, end=COHORTS[-1].end, granularity=Granularity.MONTH
    )
    return [(row.cohort, row.size, row.retained) for row in matrix.rows]


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


def retention_sql(mark: str, month: str) -> str:
    """Per cohort month (first move into customer or evangelist, or creation for those
    imported there) and churn month (the last move, if it left them), the customers."""
    inside = "('customer', 'evangelist')"
    start, end = month.format("s.start_at"), month.format("s.end_at")
    return f"""
        SELECT {start} AS cohort, {end} AS churn, count(*) FROM (
          SELECT f.first_in AS start_at,
                 CASE WHEN l.to_stage IN {inside} THEN NULL ELSE l.at END AS end_at
          FROM (SELECT subject_id, min(CASE WHEN to_stage IN {inside} THEN at END) AS first_in
                FROM {PREFIX}stage_changes WHERE tenant = {mark} AND subject = 'contact'
                GROUP BY subject_id) f
          JOIN (SELECT subject_id, to_stage, at, row_number() OVER (
                  PARTITION BY subject_id ORDER BY at DESC, id DESC) AS place
                FROM {PREFIX}stage_changes WHERE tenant = {mark} AND subject = 'contact') l
            ON l.subject_id = f.subject_id AND l.place = 1
          WHERE f.first_in IS NOT NULL
          UNION ALL
          SELECT k.created_at, NULL FROM {PREFIX}contacts k
          WHERE k.tenant = {mark} AND k.lifecycle_stage IN {inside}
            AND NOT EXISTS (SELECT 1 FROM {PREFIX}stage_changes c
                            WHERE c.tenant = {mark} AND c.subject = 'contact'
                              AND c.subject_id = k.id AND c.to_stage IN {inside})
        ) s GROUP BY cohort, churn"""


def _matrix_of(rows: list[tuple[str, str | None, int]]) -> list[tuple[str, int, tuple[int, ...]]]:
    labels = [p.label for p in COHORTS]
    found = []
    for index, label in enumerate(labels):
        members = [(churn, n) for cohort, churn, n in rows if cohort == label]
        if not members:
            continue
        retained = tuple(
            sum(n for churn, n in members if churn is None or churn > later)
            for later in labels[index:]
        )
        found.append((label, sum(n for _, n in members), retained))
    return found


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

    def retention(self) -> list[tuple[str, int, tuple[int, ...]]]:
        if self.kind == "sqlite":
            month = "substr({}, 1, 7)"
        else:
            month = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM')"
        statement = retention_sql(self.mark, month)
        params = (TENANT,) * 4
        return _matrix_of(self.connection.execute(statement, params).fetchall())

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


def _progress(line: str) -> None:
    """A line on stderr at once, so that a long run shows what it measured so far."""
    print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)


_FILLED = "crmkit benchmarks/analytics.py filled n={}"
"""The comment a complete PostgreSQL fill leaves on its stage-history table (``--keep``):
a kept store without it (or of another ``n``) is dropped and filled anew."""


def _kept_postgres(n: int) -> bool:
    """Whether the PostgreSQL benchmark tables hold a complete fill of size ``n``."""
    psycopg = import_extra("psycopg", extra="postgres", feature="the benchmark")
    with psycopg.connect(postgres_dsn(os.environ[POSTGRES_ENV])) as connection:
        found = connection.execute(
            "SELECT obj_description(to_regclass(%s), 'pg_class')", (f"{PREFIX}stage_changes",)
        ).fetchone()
    return found is not None and found[0] == _FILLED.format(n)


def _mark_postgres(n: int) -> None:
    psycopg = import_extra("psycopg", extra="postgres", feature="the benchmark")
    with psycopg.connect(postgres_dsn(os.environ[POSTGRES_ENV]), autocommit=True) as connection:
        connection.execute(f"COMMENT ON TABLE {PREFIX}stage_changes IS '{_FILLED.format(n)}'")


def measure(
    kind: str,
    n: int,
    samples: int,
    skip: frozenset[str] = frozenset(),
    *,
    keep: Path | None = None,
    keep_postgres: bool = False,
) -> dict[str, Any]:
    """Fill a store of size ``n`` (or reuse the kept one: the SQLite file ``keep``, or
    with ``keep_postgres`` the benchmark tables of a complete fill) and time the cases."""
    with tempfile.TemporaryDirectory() as folder:
        if kind == "sqlite":
            path = keep if keep is not None else Path(folder) / "bench.db"
            reused = keep is not None and keep.exists()
            if keep is not None and not reused:  # filled under another name: never half kept
                partial = keep.with_name(keep.name + ".partial")
                partial.unlink(missing_ok=True)
                result = _measure(kind, n, samples, skip, path=partial, reused=False)
                partial.rename(keep)
                return result
            return _measure(kind, n, samples, skip, path=path, reused=reused)
        reused = keep_postgres and _kept_postgres(n)
        if not reused:
            reset_postgres(os.environ[POSTGRES_ENV], drop_only=True)
        try:
            result = _measure(kind, n, samples, skip, path=Path(folder) / "unused", reused=reused)
            if keep_postgres and not reused:
                _mark_postgres(n)
            return result
        finally:
            if not keep_postgres:
                reset_postgres(os.environ[POSTGRES_ENV], drop_only=True)


def _measure(
    kind: str, n: int, samples: int, skip: frozenset[str], *, path: Path, reused: bool
) -> dict[str, Any]:
    fill = Fill(n)
    clock = FixedClock(NOW)
    if kind == "sqlite":
        store = open_store(f"sqlite:///{path}", tenant=TENANT, prefix=PREFIX, clock=clock)
    else:
        store = open_store(os.environ[POSTGRES_ENV], tenant=TENANT, prefix=PREFIX, clock=clock)
    baseline = None
    seconds, changes = 0.0, 0
    try:
        if reused:
            changes = _count_changes(kind, path)
            _progress(f"{kind}: reusing the kept store of {changes:,} stage changes")
        else:
            seconds, changes = fill.fill(kind, path)
            _progress(f"{kind}: filled {changes:,} stage changes in {seconds:.0f} s")
        baseline = Baseline(kind, path)
        crm = CRM(store, pipelines=[SALES], clock=clock)
        cases: dict[str, Any] = {}
        for name, ours, theirs in (
            ("funnel", lambda: crm_funnel(crm), baseline.funnel),
            ("win rate by owner", lambda: crm_win_rate(store), baseline.win_rate),
            ("pipeline_kpis", lambda: crm_kpis(crm), baseline.win_rate),
            ("retention matrix", lambda: crm_retention(store), baseline.retention),
        ):
            if name in skip:
                continue
            mine, found = _timed(ours, samples)
            base, expected = _timed(theirs, samples)
            cases[name] = {
                "crmkit_s": mine,
                "sql_s": base,
                "ratio": mine / base,
                "equal": found == expected,
                "peak_python_mb": _peak_mb(ours),
            }
            _progress(f"{kind}: {name}: {cases[name]}")
    finally:
        if baseline is not None:
            baseline.close()
        store.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"fill_seconds": seconds, "stage_changes": changes, "cases": cases, "peak_rss_mb": rss}


def _count_changes(kind: str, path: Path) -> int:
    statement = f"SELECT count(*) FROM {PREFIX}stage_changes"
    if kind == "sqlite":
        with sqlite3.connect(path) as connection:
            return int(connection.execute(statement).fetchone()[0])
    psycopg = import_extra("psycopg", extra="postgres", feature="the benchmark")
    with psycopg.connect(postgres_dsn(os.environ[POSTGRES_ENV])) as connection:
        found = connection.execute(statement).fetchone()
        return int(found[0]) if found is not None else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--skip", default="", help="cases to leave out, comma-separated")
    parser.add_argument(
        "--keep",
        type=Path,
        help="SQLite file to fill once and keep; when it exists it is measured as it is"
        " (fill s is then 0; it must have been filled with the same --n)",
    )
    parser.add_argument(
        "--keep-postgres",
        action="store_true",
        help="leave the bench_ tables in PostgreSQL after the run and reuse them when they"
        " hold a complete fill of the same --n",
    )
    options = parser.parse_args()
    kinds = [
        k for k in options.stores.split(",") if k != "postgresql" or POSTGRES_ENV in os.environ
    ]
    results: dict[str, Any] = {}
    ok = True
    for kind in kinds:
        skip = frozenset(s for s in options.skip.split(",") if s)
        result = measure(
            kind,
            options.n,
            options.samples,
            skip,
            keep=options.keep,
            keep_postgres=options.keep_postgres,
        )
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
