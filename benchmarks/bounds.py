"""How long do rules and pipelines at their size bounds take, next to a baseline?

Measures, in one run:

* pipeline validation: building a pipeline of ``--stages`` stages (forward, any and
  explicit modes), next to building its stages alone (the baseline: the pipeline's own
  checks should cost about as much as the stages');
* rule scoring: compiling a scoring model whose one criterion is an OR of ``--terms``
  terms and scoring 1,000 leads, next to the interpreter on the same leads;
* a large IN list on SQLite (and on PostgreSQL when ``CRMKIT_BENCH_POSTGRES_URL`` is
  set): ``count(field IN (MAX_IN_VALUES values))`` over ``--rows`` contacts, next to
  the same query written by hand with ``json_each`` on the raw ``sqlite3`` connection.

Usage: ``python benchmarks/bounds.py [--stages 1000] [--terms 4000] [--rows 10000]
[--json]``; with ``--json`` the last line is one JSON object with every number.
"""

import argparse
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4

from crmkit.lifecycle import Pipeline, Stage, StageKind, TransitionMode
from crmkit.models import Contact, Lead, LeadChannel, SubjectKind
from crmkit.models.rules import MAX_IN_VALUES
from crmkit.scoring import Criterion, ScoringModel
from crmkit.segmentation import Context, contacts_where, custom, evaluate, field, leads_where
from crmkit.storage.sql import open_store

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def timed(work: Callable[[], Any]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def pipelines(size: int) -> dict[str, float]:
    keys = [f"s{i}" for i in range(size - 2)]

    def stages() -> list[Stage]:
        made = [Stage(key=key, label=key) for key in keys]
        made.append(Stage(key="won", label="Won", probability=Decimal(1), kind=StageKind.WON))
        made.append(Stage(key="lost", label="Lost", kind=StageKind.LOST))
        return made

    pairs = list(zip(keys, [*keys[1:], "won"], strict=True)) + [(k, "lost") for k in keys]
    built = stages()
    found = {"stages_only_s": timed(stages)}
    for mode in TransitionMode:
        transitions = pairs if mode is TransitionMode.EXPLICIT else []
        found[f"pipeline_{mode.value}_s"] = timed(
            lambda mode=mode, transitions=transitions: Pipeline(
                key="big",
                label="Big",
                subject=SubjectKind.DEAL,
                stages=built,
                mode=mode,
                transitions=transitions,
            )
        )
    return found


def scoring(terms: int) -> dict[str, float]:
    contact = Contact.new(first_name="Ada")
    leads = [
        Lead.new(contact_id=contact.id, source=f"s{i % (2 * terms)}", channel=LeadChannel.FORM)
        for i in range(1000)
    ]
    where = field("source") == "s0"
    for i in range(1, terms):
        where = where | (field("source") == f"s{i}")
    rule = leads_where(where)
    model = ScoringModel(name="wide", criteria=(Criterion("wide", rule, 10),))
    context = Context(now=NOW)
    compiled: list[Any] = []
    found = {"compile_s": timed(lambda: compiled.append(model.compile(context)))}
    found["totals_1000_s"] = timed(lambda: compiled[0].totals(leads))
    found["interpreter_1000_s"] = timed(lambda: [evaluate(rule, lead, context) for lead in leads])
    return found


def big_in(url: str, rows: int, *, raw_sqlite: Path | None) -> dict[str, float]:
    tenant = f"bench-bounds-{uuid4().hex[:8]}"  # a fresh tenant: runs never meet
    store = open_store(url, tenant=tenant)
    people = [Contact.new(first_name=f"n{i}", custom={"n": i}) for i in range(rows)]
    names = [f"n{i}" for i in range(0, 2 * MAX_IN_VALUES, 2)]
    found: dict[str, float] = {}
    try:
        with store.unit_of_work() as unit:
            unit.contacts.add_many(people)
            unit.commit()
        by_name = contacts_where(field("first_name").is_in(*names))
        by_custom = contacts_where(custom("n").is_in(*range(0, 2 * MAX_IN_VALUES, 2)))
        with store.unit_of_work() as unit:
            found["in_text_s"] = timed(lambda: unit.contacts.count(by_name))
            found["in_custom_s"] = timed(lambda: unit.contacts.count(by_custom))
    finally:
        store.close()
    if raw_sqlite is not None:
        connection = sqlite3.connect(raw_sqlite)
        sql = (
            "SELECT count(*) FROM crm_contacts WHERE tenant = ? AND first_name IN "
            "(SELECT value FROM json_each(?))"
        )
        found["baseline_raw_sqlite_in_text_s"] = timed(
            lambda: connection.execute(sql, (tenant, json.dumps(names))).fetchall()
        )
        connection.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=1000)
    parser.add_argument("--terms", type=int, default=4000)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    results: dict[str, Any] = {"pipelines": pipelines(arguments.stages)}
    results["scoring"] = scoring(arguments.terms)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        results["sqlite"] = big_in(f"sqlite:///{path}", arguments.rows, raw_sqlite=path)
    postgres = os.environ.get("CRMKIT_BENCH_POSTGRES_URL")
    if postgres:
        results["postgresql"] = big_in(postgres, arguments.rows, raw_sqlite=None)
    for section, numbers in results.items():
        print(section)
        for name, value in numbers.items():
            print(f"  {name:34} {value:10.4f}")
    if arguments.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
