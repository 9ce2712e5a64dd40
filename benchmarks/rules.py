"""How fast does a compiled rule select contacts, next to hand-written Python?

Evaluates one 4-condition contact rule over N in-memory contacts:

    country == "DE" and lifecycle_stage in (customer, evangelist)
    and created_at within the last 365 days and not has_tag("churned")

and reports records per second for, in the same run and on the same contacts:

* the hand-written comprehension of the same condition (the baseline),
* the rule compiled once with ``compile_selector`` (what ``select`` uses; target: at
  least 0.5x the baseline) and with ``compile_rule``, called once per contact,
* the reference interpreter ``evaluate`` (for scale; it walks the tree per contact).

Usage: ``python benchmarks/rules.py [--n 1000000] [--json]``; with ``--json`` the last
line is one JSON object with every number.
"""

import argparse
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

from crmkit.models import Contact, CountryCode, CustomFields, LifecycleStage
from crmkit.segmentation import (
    Context,
    compile_rule,
    compile_selector,
    contacts_where,
    evaluate,
    field,
    has_tag,
)

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def make_contacts(n: int) -> list[Contact]:
    rng = random.Random(20261101)
    countries = [CountryCode(c) for c in ("DE", "SE", "GB", "US", "FR")]
    stages = list(LifecycleStage)
    tag_sets = [frozenset(), frozenset({"newsletter"}), frozenset({"churned"}), frozenset()]
    empty = CustomFields()
    contacts = []
    for i in range(n):
        created = NOW - timedelta(days=rng.randrange(0, 900))
        contacts.append(
            Contact(
                id=UUID(int=rng.getrandbits(128), version=4),
                version=1,
                created_at=created,
                updated_at=created,
                country=rng.choice(countries) if i % 10 else None,
                lifecycle_stage=rng.choice(stages),
                tags=rng.choice(tag_sets),
                custom=empty,
            )
        )
    return contacts


def rate(n: int, run: Callable[[], object], repeat: int = 3) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        began = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - began)
    return n / best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n = args.n
    contacts = make_contacts(n)
    context = Context(now=NOW)

    rule = contacts_where(
        (field("country") == "DE")
        & field("lifecycle_stage").is_in("customer", "evangelist")
        & field("created_at").within_last(365)
        & ~has_tag("churned")
    )
    matches = compile_rule(rule, context)
    selector = compile_selector(rule, context)

    cutoff = NOW - timedelta(days=365)
    stages = {LifecycleStage.CUSTOMER, LifecycleStage.EVANGELIST}

    def hand_written() -> list[Contact]:
        return [
            c
            for c in contacts
            if c.country == "DE"
            and c.lifecycle_stage in stages
            and cutoff <= c.created_at <= NOW
            and "churned" not in c.tags
        ]

    baseline, expected = rate(n, hand_written)
    compiled, found = rate(n, lambda: selector(contacts))
    predicate, by_predicate = rate(n, lambda: [c for c in contacts if matches(c)])
    sample = contacts[: max(1, n // 20)]  # the interpreter is slow: a twentieth is enough
    interpreted, _ = rate(len(sample), lambda: [c for c in sample if evaluate(rule, c, context)], 1)
    if found != expected or by_predicate != expected:
        raise SystemExit("the compiled rule and the hand-written condition disagree")

    results = {
        "n": n,
        "selected": len(found),  # type: ignore[arg-type]
        "hand_written_per_s": round(baseline),
        "compiled_per_s": round(compiled),
        "predicate_per_s": round(predicate),
        "interpreted_per_s": round(interpreted),
        "compiled_ratio": round(compiled / baseline, 3),
        "predicate_ratio": round(predicate / baseline, 3),
        "interpreted_ratio": round(interpreted / baseline, 3),
        "target_ratio": 0.5,
    }
    print(f"crmkit rules benchmark, N = {n:,}, {results['selected']:,} selected")
    print(f"{'evaluation':36} {'records/s':>12} {'ratio':>7}")
    for label, value in (
        ("hand-written comprehension", baseline),
        ("compiled rule (compile_selector)", compiled),
        ("compiled predicate, called per item", predicate),
        ("reference interpreter (evaluate)", interpreted),
    ):
        print(f"{label:36} {value:12,.0f} {value / baseline:7.3f}")
    verdict = "meets" if compiled / baseline >= 0.5 else "MISSES"
    print(f"target: compiled >= 0.5x hand-written: {verdict}")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
