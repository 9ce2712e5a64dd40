"""Export and erasure of one person on SQLite, in a store of ``--contacts`` contacts.

The script fills a SQLite file with N contacts (one page view each) and one person with
``--activities`` activities (notes with text), then measures:

* ``export_person`` of that person (the median of ``--samples`` runs; target: under
  1 s for 10,000 activities), against the baseline of reading the same person's
  activity rows through ``sqlite3`` alone (``SELECT *``) in the same run, and the
  time to build the activities section from entities (``referring`` and the
  converter, what the export did before it read documents), checked equal;
* ``erase_person`` and ``SqlStore.scrub`` once, and then checks the bar: no byte of the
  database file and its WAL holds the person's e-mail, names or phone.

Usage: ``python benchmarks/privacy_export.py [--contacts 100000] [--activities 10000]
[--samples 5] [--json]``.
"""

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.models import Activity, ActivityKind, Contact
from crmkit.privacy import Bundle, bundle_of
from crmkit.storage.sql import SqlStore, open_store

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
SECRET = b"benchmark-secret-0123456789"


def _fill(url: str, contacts: int, activities: int) -> tuple[Contact, list[bytes]]:
    store = open_store(url, tenant="bench", clock=FixedClock(T0))
    clock = FixedClock(T0)
    try:
        batch = 20_000
        for start in range(0, contacts, batch):
            people = [
                Contact.new(email=f"p{n}@example.com", first_name=f"P{n}", clock=clock)
                for n in range(start, min(start + batch, contacts))
            ]
            with store.unit_of_work() as unit:
                unit.contacts.add_many(people)
                unit.activities.add_many(
                    Activity.new(contact_id=p.id, kind=ActivityKind.PAGE_VIEW, clock=clock)
                    for p in people
                )
                unit.commit()
        person = Contact.new(
            email="zq.target@example.org",
            first_name="Zebadiah",
            last_name="Quillonby",
            phone="+4930901899",
            clock=clock,
        )
        with store.unit_of_work() as unit:
            unit.contacts.add(person)
            unit.activities.add_many(
                Activity.new(
                    contact_id=person.id,
                    kind=ActivityKind.NOTE,
                    occurred_at=T0 - timedelta(minutes=n),
                    subject=f"Call {n} with Zebadiah",
                    body="Zebadiah Quillonby called about the invoice",
                    clock=clock,
                )
                for n in range(activities)
            )
            unit.commit()
    finally:
        store.close()
    values = [b"zq.target@example.org", b"Zebadiah", b"Quillonby", b"+4930901899"]
    return person, values


def _from_entities(store: SqlStore, person: Contact, bundle: Bundle) -> tuple[float, bool]:
    """The time to build the activities section from entities (what the export did
    before it read documents), and whether it equals the export's."""
    began = time.perf_counter()
    with store.unit_of_work() as unit:
        entities = unit.activities.referring("contact_id", person.id)
    from_entities = bundle_of(
        tenant="bench",
        contact_id=person.id,
        records={"activities": entities},
        segments=(),
        at=bundle.manifest.exported_at,
    )
    elapsed = time.perf_counter() - began
    same = from_entities.sections["activities"] == bundle.sections["activities"]
    assert same, "the export's activities differ from the entities'"
    return elapsed, same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--activities", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        url = f"sqlite:///{path}"
        started = time.perf_counter()
        person, values = _fill(url, args.contacts, args.activities)
        filled = time.perf_counter() - started

        raw = sqlite3.connect(path)
        baseline = []
        for _ in range(args.samples):
            began = time.perf_counter()
            rows = raw.execute(
                "SELECT * FROM crm_activities WHERE tenant = ? AND contact_id = ?",
                ("bench", person.id.hex),
            ).fetchall()
            baseline.append(time.perf_counter() - began)
        raw.close()

        store = open_store(url, tenant="bench", clock=FixedClock(T0))
        crm = CRM(store, privacy_secret=SECRET)
        exports = []
        for _ in range(args.samples):
            began = time.perf_counter()
            bundle = crm.export_person(person.id, by="bench")
            exports.append(time.perf_counter() - began)
        assert bundle.manifest.counts["activities"] == args.activities
        entities_s, same = _from_entities(store, person, bundle)
        began = time.perf_counter()
        crm.erase_person(person.id, by="bench", reason="benchmark")
        erased = time.perf_counter() - began
        began = time.perf_counter()
        store.scrub()
        scrubbed = time.perf_counter() - began
        store.close()
        found = b""
        for name in (path, path.with_name(path.name + "-wal")):
            if name.exists():
                found += name.read_bytes()
        left = [v.decode() for v in values if v in found]
        size_mb = path.stat().st_size / 2**20

    export_s = statistics.median(exports)
    base_s = statistics.median(baseline)
    result = {
        "contacts": args.contacts,
        "activities": args.activities,
        "baseline_rows": len(rows),
        "fill_s": round(filled, 1),
        "export_s": round(export_s, 3),
        "baseline_s": round(base_s, 4),
        "ratio": round(export_s / base_s, 1),
        "entities_section_s": round(entities_s, 3),
        "same_bundle": same,
        "erase_s": round(erased, 3),
        "scrub_s": round(scrubbed, 2),
        "db_mb": round(size_mb, 1),
        "left_after_scrub": left,
        "export_under_1s": export_s < 1.0,
    }
    print(
        f"{args.contacts:,} contacts, a person with {args.activities:,} activities "
        f"(filled in {filled:.0f} s, {size_mb:.0f} MB)"
    )
    print(
        f"export_person p50 {export_s * 1000:.0f} ms vs sqlite3 SELECT of the rows "
        f"{base_s * 1000:.1f} ms: {export_s / base_s:.1f}x; target under 1 s: "
        f"{'met' if export_s < 1.0 else 'MISSED'}"
    )
    print(
        f"the activities section built from entities (referring + converter) instead: "
        f"{entities_s * 1000:.0f} ms; same section: {same}"
    )
    print(f"erase_person {erased * 1000:.0f} ms, scrub (VACUUM) {scrubbed:.1f} s")
    print(f"personal values left in the file and WAL after scrub: {left or 'none'}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
