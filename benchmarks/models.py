"""How much do validation and strict serialisation cost per contact?

Measures, in one run and on the same N contacts, records per second for:

* building a ``Contact`` (every field check and invariant) against the baseline of
  building a frozen, slotted attrs class with the same fields and no validation;
* ``converter.unstructure`` and ``converter.structure`` against the baseline of
  ``dict`` copies of the same data (what an unchecked loader does at the least).

Usage: ``python benchmarks/models.py [--n 100000] [--json]``; with ``--json`` the last
line is one JSON object with every number.
"""

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import attrs

from crmkit.models import Contact, CountryCode, CustomFields, EmailAddress, LifecycleStage
from crmkit.serialization import make_converter


@attrs.frozen(kw_only=True)
class PlainContact:
    """The same fields as Contact, without converters or checks: the baseline."""

    id: Any
    version: int
    created_at: datetime
    updated_at: datetime
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    country: str | None = None
    language: str | None = None
    account_id: Any = None
    lifecycle_stage: str = "subscriber"
    owner: str | None = None
    do_not_contact: bool = False
    tags: frozenset[str] = frozenset()
    custom: Any = None


def fields(n: int) -> list[dict[str, Any]]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    stages = list(LifecycleStage)
    return [
        {
            "id": uuid4(),
            "version": 1,
            "created_at": start + timedelta(seconds=i),
            "updated_at": start + timedelta(seconds=i),
            "first_name": f"First{i}",
            "last_name": f"Last{i}",
            "email": EmailAddress(f"person{i}@example.com"),
            "country": CountryCode("DE" if i % 2 else "SE"),
            "lifecycle_stage": stages[i % len(stages)],
            "tags": frozenset({"newsletter"} if i % 3 else ()),
            "custom": CustomFields({"plan": "pro", "seats": i % 50, "mrr": float(i % 7)}),
        }
        for i in range(n)
    ]


def rate(n: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - began)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n = args.n
    data = fields(n)
    converter = make_converter()
    contacts = [Contact(**d) for d in data]
    plain = [converter.unstructure(c) for c in contacts]

    results = {
        "n": n,
        "construct_plain_per_s": rate(n, lambda: [PlainContact(**d) for d in data]),
        "construct_contact_per_s": rate(n, lambda: [Contact(**d) for d in data]),
        "dict_copy_per_s": rate(n, lambda: [dict(p) for p in plain]),
        "unstructure_per_s": rate(n, lambda: [converter.unstructure(c) for c in contacts]),
        "structure_per_s": rate(n, lambda: [converter.structure(p, Contact) for p in plain]),
    }
    rows = [
        ("construct Contact (validated)", "construct_contact_per_s", "construct_plain_per_s"),
        ("unstructure to JSON data", "unstructure_per_s", "dict_copy_per_s"),
        ("structure from JSON data", "structure_per_s", "dict_copy_per_s"),
    ]
    print(f"crmkit models benchmark, N = {n:,}")
    print(f"{'operation':32} {'records/s':>12} {'baseline/s':>12} {'ratio':>7}")
    for label, key, base in rows:
        ratio = results[key] / results[base]
        results[f"{key}_ratio"] = ratio
        print(f"{label:32} {results[key]:12,.0f} {results[base]:12,.0f} {ratio:7.3f}")
    print("baselines: an unvalidated frozen attrs class; dict() copies of the same data")
    if args.json:
        print(
            json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()})
        )


if __name__ == "__main__":
    main()
