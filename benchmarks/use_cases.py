"""Do the per-entity use cases of ``CRM`` stay flat as the store grows?

For every size N of ``--sizes`` and every store (SQLite in a temporary file and, when
``CRMKIT_TEST_POSTGRES_URL`` is set, PostgreSQL with tables of prefix ``bench<N>_``), the
script fills a fresh store with the store's own ``add_many``:

* N contacts, a third of them at one big mail domain, a quarter with capitals in the local
  part of the address (``Ada.Lovelace@...``);
* N/5 leads, N/20 deals, N/20 tickets, N activities, N/10 tasks (one owner per 1,000
  contacts, most tasks done), N/5 stage changes, N/1,000 dynamic segments and N/100
  merge records (contact merges into the first contacts, each with its two images);

and then, without any ``ANALYZE`` of its own, runs every per-entity use case
``--samples`` times, each call its own unit of work as a host would make it, and reports
the median (p50) and 95th percentile (p95) latency in milliseconds, and the median CPU
time of the calling thread. The sizes are measured in turns (a round of every use case
on each store in turn), so a change of the machine's load weighs on every size alike.
The baseline is a primary-key look-up through the driver alone (``sqlite3``, psycopg) on
the same database in the same run. The verdict compares each use case's p50 at the
largest size with its p50 at the smallest (CPU time on SQLite, which runs in this
process; wall-clock time on PostgreSQL): the target is at most 1.5x (no scan anywhere),
and ``capture_lead``'s p50 on SQLite at 1M under 5 ms.

Usage: ``python benchmarks/use_cases.py [--sizes 10000,100000,1000000] [--samples 200]
[--stores sqlite,postgresql] [--json]``; with ``--json`` the last line is one JSON object
with every number.
"""

import argparse
import contextlib
import json
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from _postgres import POSTGRES_ENV, PREFIX, postgres_dsn, reset_postgres

from crmkit._extras import import_extra
from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.lifecycle import Pipeline, Stage, StageKind, Touchpoint
from crmkit.models import (
    Activity,
    ActivityKind,
    Contact,
    CountryCode,
    Deal,
    DealStatus,
    EmailAddress,
    Lead,
    LeadChannel,
    LifecycleStage,
    Money,
    Segment,
    SegmentKind,
    StageChange,
    SubjectKind,
    Task,
    TaskStatus,
    Ticket,
    TicketChannel,
)
from crmkit.quality import MergeKind, MergeRecord
from crmkit.scoring import Criterion, Group, ScoringModel
from crmkit.segmentation import activity, contacts_where, field, leads_where
from crmkit.storage import Store
from crmkit.storage.sql import open_store

NOW = datetime(2026, 11, 1, 9, tzinfo=UTC)
TENANT = "bench"
FLAT_TARGET = 1.5
CAPTURE_TARGET_MS = 5.0
BIG_DOMAIN = "mail.example"

SALES = Pipeline(
    key="sales",
    label="Sales",
    subject=SubjectKind.DEAL,
    stages=(
        Stage(key="discovery", label="Discovery", probability=Decimal("0.2")),
        Stage(key="proposal", label="Proposal", probability=Decimal("0.5")),
        Stage(key="won", label="Won", probability=Decimal(1), kind=StageKind.WON),
        Stage(key="lost", label="Lost", kind=StageKind.LOST),
    ),
)

SCORING = ScoringModel(
    name="bench",
    criteria=(
        Criterion("in DACH", contacts_where(field("country").is_in("DE", "AT", "CH")), 20),
        Criterion("came via a form", leads_where(field("channel") == "form"), 10),
        Criterion(
            "visits",
            leads_where(activity(ActivityKind.PAGE_VIEW).count() >= 2),
            30,
            Group.ENGAGEMENT,
        ),
    ),
    mql_at=50,
)


def _uuid(rng: random.Random) -> UUID:
    return UUID(int=rng.getrandbits(128), version=4)


def email_of(i: int) -> str:
    """Contact ``i``'s address as stored: a third at one big domain, capitals in some."""
    local = f"Person.{i}" if i % 4 == 0 else f"person.{i}"
    domain = BIG_DOMAIN if i % 3 == 0 else f"d{i % 5000}.example"
    return f"{local}@{domain}"


def owner_of(i: int, n: int) -> str:
    return f"owner-{i % max(1, n // 1000)}"


class Fill:
    """The generated data of one size, and the ids the use cases start from."""

    def __init__(self, n: int, seed: int = 20261101) -> None:
        self.n = n
        rng = random.Random(seed)
        self.contact_ids = [_uuid(rng) for _ in range(n)]
        self.lead_ids = [_uuid(rng) for _ in range(n // 5)]
        self.rng = rng

    def _stamp(self, i: int) -> dict[str, Any]:
        created = NOW - timedelta(days=700) + timedelta(seconds=i * 37 % (600 * 86_400))
        return {"version": 1, "created_at": created, "updated_at": created}

    def contacts(self) -> Iterator[Contact]:
        countries = [CountryCode(c) for c in ("DE", "SE", "GB", "US", "FR", "AT")]
        for i, id in enumerate(self.contact_ids):
            yield Contact(
                id=id,
                **self._stamp(i),
                first_name="Person",
                last_name=str(i),
                email=EmailAddress(email_of(i)),
                country=countries[i % len(countries)],
                lifecycle_stage=LifecycleStage.LEAD if i % 7 else LifecycleStage.CUSTOMER,
                owner=owner_of(i, self.n),
            )

    def leads(self) -> Iterator[Lead]:
        for i, id in enumerate(self.lead_ids):
            yield Lead(
                id=id,
                **self._stamp(i),
                contact_id=self.contact_ids[i * 5],
                source="import",
                channel=LeadChannel.FORM if i % 2 else LeadChannel.IMPORT,
                owner=owner_of(i * 5, self.n),
            )

    def deals(self) -> Iterator[Deal]:
        rng = random.Random(1)
        for i in range(self.n // 20):
            yield Deal(
                id=_uuid(rng),
                **self._stamp(i),
                title=f"Deal {i}",
                pipeline="sales",
                stage="discovery",
                probability=Decimal("0.2"),
                status=DealStatus.OPEN,
                amount=Money(Decimal(1000 + i % 5000), "EUR"),
                contact_id=self.contact_ids[(i * 20 + 1) % self.n],
            )

    def tickets(self) -> Iterator[Ticket]:
        rng = random.Random(2)
        for i in range(self.n // 20):
            yield Ticket(
                id=_uuid(rng),
                **self._stamp(i),
                subject=f"Ticket {i}",
                contact_id=self.contact_ids[(i * 20 + 2) % self.n],
                channel=TicketChannel.EMAIL,
            )

    def activities(self) -> Iterator[Activity]:
        rng = random.Random(3)
        for i in range(self.n):
            stamp = self._stamp(i)
            yield Activity(
                id=_uuid(rng),
                **stamp,
                contact_id=self.contact_ids[i * 7919 % self.n],
                kind=ActivityKind.PAGE_VIEW if i % 3 else ActivityKind.EMAIL_OPENED,
                occurred_at=stamp["created_at"],
            )

    def tasks(self) -> Iterator[Task]:
        rng = random.Random(4)
        for i in range(self.n // 10):
            done = i % 10 != 0
            due = NOW - timedelta(days=300) + timedelta(minutes=i * 97 % (600 * 1440))
            yield Task(
                id=_uuid(rng),
                **self._stamp(i),
                title=f"Follow up {i}",
                due_at=due,
                status=TaskStatus.DONE if done else TaskStatus.OPEN,
                completed_at=due if done else None,
                assignee=owner_of(i * 10, self.n),
                contact_id=self.contact_ids[i * 10 % self.n],
            )

    def stage_changes(self) -> Iterator[StageChange]:
        rng = random.Random(5)
        for i in range(self.n // 5):
            stamp = self._stamp(i)
            yield StageChange(
                id=_uuid(rng),
                **stamp,
                subject=SubjectKind.CONTACT,
                subject_id=self.contact_ids[i * 5],
                from_stage="subscriber",
                to_stage="lead",
                at=stamp["created_at"],
            )

    def segments(self) -> Iterator[Segment]:
        rng = random.Random(6)
        for i in range(max(1, self.n // 1000)):
            yield Segment(
                id=_uuid(rng),
                **self._stamp(i),
                name=f"Segment {i}",
                kind=SegmentKind.DYNAMIC,
                rule=contacts_where(field("country") == "DE"),
            )

    def merges(self) -> Iterator[MergeRecord]:
        rng = random.Random(8)
        germany = CountryCode("DE")
        for i in range(max(1, self.n // 100)):
            stamp = self._stamp(i)
            survivor = Contact(
                id=self.contact_ids[i], **stamp, email=EmailAddress(email_of(i)), country=germany
            )
            twin = Contact(id=_uuid(rng), **stamp, email=EmailAddress(f"twin.{i}@example.net"))
            yield MergeRecord(
                id=_uuid(rng),
                kind=MergeKind.CONTACT,
                survivor_id=survivor.id,
                merged_ids=(twin.id,),
                at=stamp["created_at"],
                before=(survivor, twin),
                after=(survivor,),
                merged_emails=(twin.email.casefold(),),  # type: ignore[union-attr]
            )

    def fill(self, store: Store) -> float:
        """Store everything with ``add_many``, one unit of work per entity; seconds taken."""
        started = time.perf_counter()
        with store.unit_of_work() as unit:
            for record in self.merges():
                unit.merges.add(record)
            unit.commit()
        for name, items in (
            ("contacts", self.contacts()),
            ("leads", self.leads()),
            ("deals", self.deals()),
            ("tickets", self.tickets()),
            ("activities", self.activities()),
            ("tasks", self.tasks()),
            ("stage_history", self.stage_changes()),
            ("segments", self.segments()),
        ):
            with store.unit_of_work() as unit:
                getattr(unit, name).add_many(items)
                unit.commit()
        return time.perf_counter() - started


Timing = tuple[float, float]
"""One call's wall-clock and CPU time (this thread: user plus system), in ms."""


def _timed(call: Callable[[], object]) -> Timing:
    wall, cpu = time.perf_counter(), time.thread_time()
    call()
    return (time.perf_counter() - wall) * 1000, (time.thread_time() - cpu) * 1000


def run_cases(crm: CRM, fill: Fill, samples: int) -> Iterator[dict[str, Timing]]:
    """Every use case ``samples`` times, on entities spread over the store: one round
    (every use case once) per item."""
    n = fill.n
    picks = random.Random(7).sample(range(n // 5), samples)

    for k, i in enumerate(picks):
        times: dict[str, Timing] = {}

        def time_it(
            name: str, call: Callable[[], object], times: dict[str, Timing] = times
        ) -> None:
            times[name] = _timed(call)

        contact = i * 5  # contact with a lead, stage history and (some) activities
        fresh: list[Any] = []
        time_it(
            "capture new",
            lambda k=k, fresh=fresh: fresh.append(
                crm.capture_lead(
                    Touchpoint(
                        email=f"new.{k}@{BIG_DOMAIN}", source="web", channel=LeadChannel.FORM
                    )
                )
            ),
        )
        time_it(
            "capture repeat",
            lambda c=contact: crm.capture_lead(
                Touchpoint(email=email_of(c), source="web", channel=LeadChannel.FORM)
            ),
        )
        time_it(
            "capture case variant",
            lambda c=contact: crm.capture_lead(
                Touchpoint(email=email_of(c).swapcase(), source="web", channel=LeadChannel.CHAT)
            ),
        )
        time_it("find_contact", lambda c=contact: crm.find_contact(email_of(c).upper()))
        lead = fill.lead_ids[i]
        time_it("rescore_lead", lambda lead=lead: crm.rescore_lead(lead))
        time_it("accept_lead", lambda lead=lead: crm.accept_lead(lead, by="ann"))
        converted: list[Any] = []
        time_it(
            "convert_lead",
            lambda lead=lead, converted=converted: converted.append(
                crm.convert_lead(
                    lead, pipeline="sales", title="Upsell", amount=Money(Decimal(900), "EUR")
                )
            ),
        )
        deal = converted[0].deal.id
        time_it("move_deal", lambda d=deal: crm.move_deal(d, "proposal", by="ann"))
        time_it("win_deal", lambda d=deal: crm.win_deal(d, by="ann"))
        contact_id = fill.contact_ids[contact]
        opened: list[Any] = []
        time_it(
            "open_ticket",
            lambda c=contact_id, opened=opened: opened.append(
                crm.open_ticket(c, subject="Help", channel=TicketChannel.EMAIL)
            ),
        )
        ticket = opened[0].id
        time_it("reply_to_ticket", lambda t=ticket: crm.reply_to_ticket(t, by="bo", text="On it"))
        time_it("solve_ticket", lambda t=ticket: crm.solve_ticket(t, by="bo"))
        time_it("timeline", lambda c=contact_id: crm.timeline(c))
        time_it(
            "follow_ups of one owner",
            lambda c=contact: crm.follow_ups(assignee=owner_of(c, n), within=timedelta(days=1)),
        )
        time_it(
            "delete_contact (cascade)",
            lambda new=fresh[0].contact.id: crm.delete_contact(new, cascade=True),
        )
        yield times


def baseline_sqlite(path: Path, fill: Fill, samples: int) -> Iterator[Timing]:
    """A primary-key look-up of a contact through ``sqlite3`` alone, per call."""
    connection = sqlite3.connect(path)
    try:
        ids = random.Random(8).sample(fill.contact_ids, samples)
        statement = f"SELECT * FROM {PREFIX}contacts WHERE tenant = ? AND id = ?"
        for i in ids:
            yield _timed(lambda i=i: connection.execute(statement, (TENANT, i.hex)).fetchall())
    finally:
        connection.close()


def baseline_postgres(url: str, prefix: str, fill: Fill, samples: int) -> Iterator[Timing]:
    """A primary-key look-up of a contact through psycopg alone, per call."""
    psycopg = import_extra("psycopg", extra="postgres", feature="the PostgreSQL benchmark")
    with psycopg.connect(postgres_dsn(url), autocommit=True) as connection:
        ids = random.Random(8).sample(fill.contact_ids, samples)
        statement = f"SELECT * FROM {prefix}contacts WHERE tenant = %s AND id = %s"
        for i in ids:
            yield _timed(lambda i=i: connection.execute(statement, (TENANT, i)).fetchall())


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


BASELINE = "baseline: pk look-up (driver)"


def measure(kind: str, sizes: list[int], samples: int) -> dict[int, dict[str, Any]]:
    """Fill one store per size, then time every use case on all of them in turns.

    The sizes are measured interleaved (a round of every use case on the smallest store,
    then on the next, ...), so that a change in the machine's load during the run (a
    shared machine) weighs on every size alike instead of on whichever came last.
    """
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        runs: dict[int, Iterator[dict[str, Timing]]] = {}
        bases: dict[int, Iterator[Timing]] = {}
        fills: dict[int, float] = {}
        for n in sizes:
            fill = Fill(n)
            clock = FixedClock(NOW, step=timedelta(milliseconds=1))
            if kind == "sqlite":
                path = folder / f"bench{n}.db"
                store = open_store(f"sqlite:///{path}", tenant=TENANT, prefix=PREFIX, clock=clock)
            else:
                url, prefix = os.environ[POSTGRES_ENV], f"bench{n}_"
                reset_postgres(url, drop_only=True, prefix=prefix)
                stack.callback(reset_postgres, url, drop_only=True, prefix=prefix)
                store = open_store(url, tenant=TENANT, prefix=prefix, clock=clock)
            stack.callback(store.close)
            fills[n] = fill.fill(store)
            crm = CRM(store, pipelines=[SALES], scoring=SCORING, clock=clock)
            runs[n] = run_cases(crm, fill, samples)
            bases[n] = (
                baseline_sqlite(path, fill, samples)
                if kind == "sqlite"
                else baseline_postgres(url, prefix, fill, samples)
            )
        times: dict[int, dict[str, list[Timing]]] = {n: {} for n in sizes}
        for _ in range(samples):
            for n in sizes:
                for name, timing in next(runs[n]).items():
                    times[n].setdefault(name, []).append(timing)
                times[n].setdefault(BASELINE, []).append(next(bases[n]))
        for n in sizes:  # let the generators close their connections
            runs[n].close()
            bases[n].close()
    return {
        n: {
            "fill_seconds": fills[n],
            "cases": {
                name: {
                    "p50": statistics.median(t[0] for t in v),
                    "p95": _p([t[0] for t in v], 0.95),
                    "cpu_p50": statistics.median(t[1] for t in v),
                }
                for name, v in times[n].items()
            },
        }
        for n in sizes
    }


def report(kind: str, sizes: list[int], results: dict[int, dict[str, Any]]) -> bool:
    """Print one store's table; whether every target is met.

    SQLite runs in this process, so its CPU time is the whole work of a call, and what
    is judged: it does not count the time a call waits for a core on a loaded machine.
    PostgreSQL works in its own processes, so it is judged on wall-clock time.
    """
    small, big = sizes[0], sizes[-1]
    judged = "cpu_p50" if kind == "sqlite" else "p50"
    print(
        f"\n{kind}: wall p50 / p95 and CPU p50 in ms; ratio = {judged} at {big:,} over "
        f"{judged} at {small:,} (measured in turns)"
    )
    for n in sizes:
        print(f"  filled {n:,} contacts (and the rest) in {results[n]['fill_seconds']:.1f} s")
    header = f"{'use case':<30}" + "".join(f"{n:>26,}" for n in sizes) + f"{'ratio':>8}  verdict"
    print(header)
    ok = True
    for name in results[small]["cases"]:
        cells = "".join(
            "{p50:>10.2f} /{p95:>7.2f} /{cpu_p50:>7.2f}".format(**results[n]["cases"][name])
            for n in sizes
        )
        ratio = results[big]["cases"][name][judged] / results[small]["cases"][name][judged]
        good = ratio <= FLAT_TARGET or name.startswith("baseline")
        verdict = "flat" if ratio <= FLAT_TARGET else ("-" if good else "GROWS")
        if kind == "sqlite" and name.startswith("capture") and big >= 1_000_000:
            p50 = results[big]["cases"][name][judged]
            if p50 >= CAPTURE_TARGET_MS:
                good, verdict = False, f"{verdict}, p50 >= {CAPTURE_TARGET_MS} ms"
        ok &= good
        print(f"{name:<30}{cells}{ratio:>8.2f}  {verdict}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if sizes[0] // 5 < args.samples:
        parser.error("--samples must be at most a fifth of the smallest size")
    kinds = [k for k in args.stores.split(",") if k]
    if "postgresql" in kinds and not os.environ.get(POSTGRES_ENV):
        print(f"{POSTGRES_ENV} is not set: PostgreSQL is left out")
        kinds.remove("postgresql")
    everything: dict[str, Any] = {}
    ok = True
    for kind in kinds:
        results = measure(kind, sizes, args.samples)
        everything[kind] = results
        ok &= report(kind, sizes, results)
    print("\nverdict:", "every target met" if ok else "a target is missed")
    if args.json:
        print(json.dumps(everything))


if __name__ == "__main__":
    main()
