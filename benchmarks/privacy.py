"""What does enforcing consent cost an audience, next to the same segment without it?

Stores N generated contacts with their consent ledgers, do-not-contact blocks and sent
e-mails (with the store's own ``add_many``) in SQLite and, when
``CRMKIT_TEST_POSTGRES_URL`` is set, in PostgreSQL (tables with prefix ``bench_``,
dropped at the end). The segment is a rule that selects most contacts:

    country in ("DE", "SE", "GB") and lifecycle_stage != "other"

and the audience is the segment's contacts reachable by e-mail for the newsletter
(address, no do-not-contact, a grant in force for the current address that has not
expired, fewer than 3 e-mails in 7 days). Data: 70% of contacts granted (some of them
withdrew later, some grants expired; 5% of the entries name an address the contact had
before), 10% only a pending request, 2% blocked, a third with one to three e-mails sent
in the last two weeks.

Reported, in milliseconds per query (best of ``--repeat``, the two sides alternating),
each in its own unit of work, with the ratio of this process's CPU times besides (all
of SQLite's work, steadier than wall-clock on a shared machine; on PostgreSQL the
server's work is not in it):

* (a) the filter: ``ids(segment and reachable)`` against ``ids(segment)``, the same
  segment without it, on the same database in the same run (target: at most 1.3x);
* (b) the whole audience: :meth:`crmkit.crm.CRM.audience`, which also counts the
  exclusions per reason (five more counting queries), against ``ids(segment)`` (no
  target; reported so that the cost of the explanation is known).

Before timing, the audience's ids are checked against the Python interpreter on the
stored data (SQLite, N <= 200,000 only: it loads everything).

Usage: ``python benchmarks/privacy.py [--n 100000] [--repeat 5] [--keep FILE]
[--keep-postgres] [--stores sqlite,postgresql] [--json]``. ``--keep FILE`` fills the
SQLite file once and measures it as it is on later runs (its fill time is then 0; the
file must have been filled with the same ``--n``); ``--keep-postgres`` likewise leaves
the ``bench_`` tables in PostgreSQL after the run and reuses them when they hold
contacts.
"""

import argparse
import json
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from _postgres import POSTGRES_ENV, PREFIX, reset_postgres

from crmkit.crm import CRM
from crmkit.models import (
    Activity,
    ActivityKind,
    Consent,
    ConsentChannel,
    ConsentStatus,
    Contact,
    CountryCode,
    DoNotContact,
    DoNotContactReason,
    EmailAddress,
    LifecycleStage,
)
from crmkit.models.rules import And, Rule, RuleEntity
from crmkit.privacy import ConsentPolicy, FrequencyCap
from crmkit.segmentation import Context, contacts_where, evaluate, field
from crmkit.storage.sql import SqlStore, open_store

NOW = datetime(2026, 11, 1, tzinfo=UTC)
TENANT = "bench"
FILTER_TARGET = 1.3
POLICY = ConsentPolicy({"newsletter"}, caps={ConsentChannel.EMAIL: FrequencyCap(3, 7)})
SEGMENT = contacts_where(
    field("country").is_in("DE", "SE", "GB") & (field("lifecycle_stage") != "other")
)
_CHECK_LIMIT = 200_000


def _id(rng: random.Random) -> UUID:
    return UUID(int=rng.getrandbits(128), version=4)


def _stamp(rng: random.Random, at: datetime) -> dict[str, Any]:
    return {"id": _id(rng), "version": 1, "created_at": at, "updated_at": at}


def generate(n: int, seed: int = 20261101) -> Iterator[tuple[str, Any]]:
    """(kind, entity) pairs: each contact followed by its ledger entries and e-mails."""
    rng = random.Random(seed)
    countries = [CountryCode(c) for c in ("DE", "SE", "GB", "US", "FR")]
    stages = list(LifecycleStage)
    for i in range(n):
        created = NOW - timedelta(seconds=rng.randrange(2, 730 * 86_400))
        contact = Contact(
            **_stamp(rng, created),
            email=None if i % 50 == 0 else EmailAddress(f"person{i}@example.org"),
            country=countries[i % len(countries)],
            lifecycle_stage=stages[rng.randrange(len(stages))],
        )
        yield "contact", contact
        roll = rng.random()
        decided = created + (NOW - created) * rng.random() / 2
        # As record_consent stores them: the address the entry covers; 5% name an
        # address the contact had before (no consent for the current one).
        point = None if contact.email is None else str(contact.email)
        if point is not None and rng.random() < 0.05:
            point = f"before{i}@example.org"

        def entry(
            status: ConsentStatus,
            at: datetime,
            expires: datetime | None = None,
            who: UUID = contact.id,
            point: str | None = point,
        ) -> Consent:
            return Consent(
                **_stamp(rng, at),
                contact_id=who,
                channel=ConsentChannel.EMAIL,
                purpose="newsletter",
                status=status,
                source="form",
                decided_at=at,
                expires_at=expires,
                contact_point=point,
            )

        if roll < 0.7:
            expiry = decided + timedelta(days=365) if rng.random() < 0.2 else None
            yield "consent", entry(ConsentStatus.GRANTED, decided, expiry)
            if rng.random() < 0.1:
                yield "consent", entry(ConsentStatus.WITHDRAWN, decided + (NOW - decided) / 2)
        elif roll < 0.8:
            yield "consent", entry(ConsentStatus.PENDING, decided)
        if rng.random() < 0.02:
            yield (
                "block",
                DoNotContact(
                    **_stamp(rng, decided),
                    contact_id=contact.id,
                    channel=ConsentChannel.EMAIL,
                    reason=DoNotContactReason.BOUNCED,
                    source="bounces",
                    decided_at=decided,
                ),
            )
        if rng.random() < 1 / 3:
            for _ in range(rng.randrange(1, 4)):
                sent = NOW - timedelta(seconds=rng.randrange(1, 14 * 86_400))
                yield (
                    "activity",
                    Activity(
                        **_stamp(rng, sent),
                        contact_id=contact.id,
                        kind=ActivityKind.EMAIL_SENT,
                        occurred_at=sent,
                    ),
                )


def fill(store: SqlStore, n: int) -> None:
    """Store the generated data in chunks (every entity after its contact)."""
    chunk: dict[str, list[Any]] = {"contact": [], "consent": [], "block": [], "activity": []}

    def flush() -> None:
        with store.unit_of_work() as unit:
            unit.contacts.add_many(chunk["contact"])
            unit.consents.add_many(chunk["consent"])
            unit.do_not_contact.add_many(chunk["block"])
            unit.activities.add_many(chunk["activity"])
            unit.commit()
        for items in chunk.values():
            items.clear()

    for kind, item in generate(n):
        chunk[kind].append(item)
        if len(chunk["contact"]) >= 50_000 and kind == "contact":
            flush()
    flush()


def check(store: SqlStore, crm: CRM, n: int) -> int:
    """The audience's ids are those the Python interpreter selects (small N only)."""
    audience = crm.audience(SEGMENT, ConsentChannel.EMAIL, "newsletter", now=NOW)
    if n <= _CHECK_LIMIT:
        with store.unit_of_work() as unit:
            people = list(unit.contacts.iterate())
            consents: dict[UUID, list[Consent]] = {}
            for c in unit.consents.iterate():
                consents.setdefault(c.contact_id, []).append(c)
            blocks: dict[UUID, list[DoNotContact]] = {}
            for b in unit.do_not_contact.iterate():
                blocks.setdefault(b.contact_id, []).append(b)
            sent: dict[UUID, list[Activity]] = {}
            for a in unit.activities.iterate():
                sent.setdefault(a.contact_id, []).append(a)
        context = Context(now=NOW, activities=sent, consents=consents, blocks=blocks)
        reach = POLICY.reachable(ConsentChannel.EMAIL, "newsletter")
        rule = Rule(RuleEntity.CONTACT, And((SEGMENT.where, reach)))
        expected = sorted(p.id for p in people if evaluate(rule, p, context) is True)
        if list(audience.contact_ids) != expected:
            raise SystemExit("the store's audience differs from the Python interpreter's")
    if not audience.contact_ids or audience.excluded_total == 0:
        raise SystemExit("the generated data should give a mixed audience")
    return audience.size


def race(
    repeat: int, pairs: dict[str, tuple[Callable[[], Any], Callable[[], Any]]]
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Best-of-``repeat`` seconds of each (with, without) pair, alternating: wall-clock
    and this process's CPU time (all of SQLite's work; on a shared machine it is the
    steadier measure)."""
    best = {name: [math.inf, math.inf] for name in pairs}
    cpu = {name: [math.inf, math.inf] for name in pairs}
    for _ in range(repeat):
        for name, runs in pairs.items():
            for side, run in enumerate(runs):
                began, used = time.perf_counter(), time.process_time()
                run()
                best[name][side] = min(best[name][side], time.perf_counter() - began)
                cpu[name][side] = min(cpu[name][side], time.process_time() - used)
    return best, cpu


def measure(backend: str, store: SqlStore, n: int, repeat: int) -> dict[str, Any]:
    crm = CRM(store, consent_policy=POLICY)
    size = check(store, crm, n)
    reach = POLICY.reachable(ConsentChannel.EMAIL, "newsletter")
    filtered = Rule(RuleEntity.CONTACT, And((SEGMENT.where, reach)))

    def segment_ids() -> list[UUID]:
        with store.unit_of_work() as unit:
            return unit.contacts.ids(SEGMENT, now=NOW)

    def reachable_ids() -> list[UUID]:
        with store.unit_of_work() as unit:
            return unit.contacts.ids(filtered, now=NOW)

    def audience() -> Any:
        return crm.audience(SEGMENT, ConsentChannel.EMAIL, "newsletter", now=NOW)

    segment_size = len(segment_ids())
    pairs = {"filter": (reachable_ids, segment_ids), "audience": (audience, segment_ids)}
    results: dict[str, Any] = {
        f"{backend}_segment": segment_size,
        f"{backend}_audience": size,
    }
    wall, cpu = race(repeat, pairs)
    for name, (with_s, without_s) in wall.items():
        results[f"{backend}_{name}_with_ms"] = with_s * 1000
        results[f"{backend}_{name}_without_ms"] = without_s * 1000
        results[f"{backend}_{name}_ratio"] = with_s / without_s
        with_cpu, without_cpu = cpu[name]
        results[f"{backend}_{name}_cpu_ratio"] = with_cpu / without_cpu
    return results


def _filled(store: SqlStore) -> bool:
    """Whether the store already holds the tenant's contacts (a kept store)."""
    with store.unit_of_work() as unit:
        return unit.contacts.count() > 0


def run_sqlite(path: Path, n: int, repeat: int) -> dict[str, Any]:
    store = open_store(f"sqlite:///{path}", tenant=TENANT, prefix=PREFIX)
    try:
        began = time.perf_counter()
        if not _filled(store):
            fill(store, n)
        loaded = time.perf_counter() - began
        return {"sqlite_fill_s": loaded, **measure("sqlite", store, n, repeat)}
    finally:
        store.close()


def run_postgres(url: str, n: int, repeat: int, keep: bool = False) -> dict[str, Any]:
    if not keep:
        reset_postgres(url, drop_only=True)
    store = open_store(url, tenant=TENANT, prefix=PREFIX)
    try:
        began = time.perf_counter()
        if not _filled(store):
            fill(store, n)
        loaded = time.perf_counter() - began
        return {"postgres_fill_s": loaded, **measure("postgres", store, n, repeat)}
    finally:
        store.close()
        if not keep:
            reset_postgres(url, drop_only=True)


ROWS = (
    ("(a) ids(segment & reachable) | ids(segment)", "filter", FILTER_TARGET),
    ("(b) CRM.audience (with reasons) | ids(segment)", "audience", None),
)


def report(results: dict[str, Any], backends: list[str]) -> None:
    print(f"crmkit privacy benchmark, N = {results['n']:,} contacts")
    print(
        f"{'backend':9} {'with | without':48} {'with ms':>9} {'w/o ms':>9} {'ratio':>7}"
        f" {'cpu ratio':>9}"
    )
    for backend in backends:
        for label, key, _ in ROWS:
            with_ms = results[f"{backend}_{key}_with_ms"]
            without_ms = results[f"{backend}_{key}_without_ms"]
            ratio = results[f"{backend}_{key}_ratio"]
            cpu = results[f"{backend}_{key}_cpu_ratio"]
            print(
                f"{backend:9} {label:48} {with_ms:9.1f} {without_ms:9.1f} {ratio:7.2f} {cpu:9.2f}"
            )
    for backend in backends:
        segment, audience = results[f"{backend}_segment"], results[f"{backend}_audience"]
        print(f"{backend}: segment {segment:,} contacts, audience {audience:,}")
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
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument(
        "--keep",
        type=Path,
        help="SQLite file to fill once and keep; when it holds contacts it is measured as"
        " it is (fill s is then 0)",
    )
    parser.add_argument(
        "--keep-postgres",
        action="store_true",
        help="leave the bench_ tables in PostgreSQL and reuse them when they hold contacts",
    )
    args = parser.parse_args()
    postgres_url = os.environ.get(POSTGRES_ENV)
    results: dict[str, Any] = {"n": args.n}
    stores = args.stores.split(",")
    backends = []
    if "sqlite" in stores:
        backends.append("sqlite")
        if args.keep is not None:
            results.update(run_sqlite(args.keep, args.n, args.repeat))
        else:
            with tempfile.TemporaryDirectory(prefix="crmkit-bench-") as folder:
                results.update(run_sqlite(Path(folder) / "privacy.db", args.n, args.repeat))
        report(results, backends)  # SQLite's numbers, before PostgreSQL's run
    if postgres_url and "postgresql" in stores:
        backends.append("postgres")
        results.update(run_postgres(postgres_url, args.n, args.repeat, args.keep_postgres))
        report(results, backends)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
