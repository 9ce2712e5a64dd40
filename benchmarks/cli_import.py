"""How fast is ``crmkit import contacts FILE.csv`` end to end, next to the store alone?

Writes a CSV file of N contacts (e-mail, first and last name, a country name or code,
a historical ``created_at``, tags, a phone number on every fifth row, a plan as a custom
field; 1 in 200 rows carries a problem, 1 in 100 repeats an earlier e-mail address) and,
in the same run, each in a fresh process and a fresh SQLite file:

* **import**: ``python -m crmkit import contacts FILE --db sqlite:///... --json``, the
  whole command: reading, mapping, normalising, duplicate matching against the store,
  the suppression check, batches committed with the audit trail of every contact
  created, and the rejects file;
* **baseline**: the contacts built beforehand (outside the clock) from the same rows;
  timed: ``csv.reader`` over the file, then the store's ``add_many`` of the pre-built
  contacts in one unit of work (no audit trail: the store alone).

Reports rows per second of both, their ratio (target: the import at least 0.5x the
baseline) and the import's peak resident memory (``VmHWM`` of its process; target: under
300 MB at N = 1,000,000), and checks that the import's counts add up to N.

Usage: ``nice -n 10 python benchmarks/cli_import.py [--n 100000] [--parallel] [--json]``;
the stated targets are for ``--n 1000000``.

Measured 2026-12-06 (commit c9a9624, N = 1,000,000, ``--parallel``, nice 10, on 2 cores
shared with other jobs at a load of 11 to 15): baseline 1,060 s (273.5 s CPU), import
2,073 s (548.8 s CPU); ratio 0.51x by wall time, 0.50x by CPU seconds; import peak RSS
145 MB; 985,000 created, 10,000 duplicates skipped, 5,000 rejected.
"""

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

RATIO_TARGET = 0.5
RSS_TARGET_MB = 300
COUNTRIES = ("Deutschland", "DE", "Sverige", "Schweden", "Germany", "AT", "Österreich", "UK")
HEADER = ["E-Mail", "Vorname", "Nachname", "Land", "Telefon", "Erstellt am", "Tags", "Plan"]


def write_csv(path: Path, n: int, seed: int = 20261206) -> None:
    rng = random.Random(seed)
    start = datetime(2019, 1, 1, tzinfo=UTC)
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, delimiter=";")
        writer.writerow(HEADER)
        for i in range(n):
            email = f"person{i}@example.com"
            if i % 100 == 99:
                email = f"PERSON{i - 50}@example.com"  # a duplicate of an earlier row
            country = rng.choice(COUNTRIES)
            if i % 200 == 150:
                country = "Atlantis"  # a problem: rejected
            created = start + timedelta(seconds=rng.randrange(5 * 365 * 86_400))
            writer.writerow(
                [
                    email,
                    f"First{i}",
                    f"Last{i}",
                    country,
                    f"+49 30 {1000000 + i}" if i % 5 == 0 else "",
                    created.strftime("%Y-%m-%d %H:%M:%S"),
                    rng.choice(["", "newsletter", "vip, newsletter"]),
                    rng.choice(["free", "pro", "enterprise"]),
                ]
            )


def baseline(path: Path, url: str) -> None:
    """Child process: pre-build the contacts, then time csv.reader + add_many."""
    from crmkit.clock import SYSTEM_CLOCK  # noqa: PLC0415
    from crmkit.models import Contact  # noqa: PLC0415
    from crmkit.quality import parse_country  # noqa: PLC0415
    from crmkit.storage.sql import open_store  # noqa: PLC0415

    contacts = []
    seen = set()
    with path.open(encoding="utf-8", newline="") as file:
        rows = csv.reader(file, delimiter=";")
        next(rows)
        for email, first, last, country, phone, created, tags, plan in rows:
            if country == "Atlantis" or email.casefold() in seen:
                continue
            seen.add(email.casefold())
            at = datetime.fromisoformat(created).replace(tzinfo=UTC)
            contact = Contact.new(
                email=email,
                first_name=first,
                last_name=last,
                country=parse_country(country),
                phone=phone or None,
                tags=[t.strip() for t in tags.split(",") if t.strip()],
                custom={"plan": plan},
                clock=SYSTEM_CLOCK,
            )
            contacts.append(Contact(**{**_fields(contact), "created_at": at}))
    store = open_store(url, tenant="bench")
    began, cpu = time.perf_counter(), time.process_time()
    with path.open(encoding="utf-8", newline="") as file:
        for _ in csv.reader(file, delimiter=";"):
            pass
    with store.unit_of_work() as unit:
        unit.contacts.add_many(contacts)
        unit.commit()
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    store.close()
    print(json.dumps({"seconds": seconds, "cpu": cpu, "stored": len(contacts)}))


def _fields(contact: object) -> dict[str, object]:
    import attrs  # noqa: PLC0415

    return attrs.asdict(contact, recurse=False)  # type: ignore[arg-type]


def start_baseline(source: Path, folder: Path) -> "subprocess.Popen[str]":
    """The baseline in a child process of its own, on a database of its own."""
    url = f"sqlite:///{folder / 'base.db'}"
    return subprocess.Popen(
        [sys.executable, __file__, "--child", str(source), url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def main() -> None:  # noqa: PLR0915 - one run, told step by step
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--parallel", action="store_true", help="run the baseline and the import at once"
    )
    parser.add_argument("--child", nargs=2, metavar=("FILE", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        baseline(Path(args.child[0]), args.child[1])
        return
    with tempfile.TemporaryDirectory(prefix="crmkit-bench-import-") as folder:
        base = Path(folder)
        source = base / "contacts.csv"
        began = time.perf_counter()
        write_csv(source, args.n)
        written = time.perf_counter() - began
        size_mb = source.stat().st_size / 1e6
        print(f"wrote {args.n:,} rows ({size_mb:.1f} MB) in {written:.1f} s", flush=True)
        env = dict(os.environ)
        # The import: the command, measured from outside (wall time) and its peak RSS
        # through a wrapper that reads VmHWM just before the process ends.
        wrapper = (
            "import runpy, sys, atexit, json\n"
            "from pathlib import Path\n"
            "def peak():\n"
            "    for line in Path('/proc/self/status').read_text().splitlines():\n"
            "        if line.startswith('VmHWM:'):\n"
            "            peak = int(line.split()[1]) / 1024\n"
            "            print(json.dumps({'peak_mb': peak}), file=sys.stderr)\n"
            "atexit.register(peak)\n"
            "sys.argv = ['crmkit', *sys.argv[1:]]\n"
            "runpy.run_module('crmkit', run_name='__main__')\n"
        )
        db = base / f"import-{uuid4().hex[:8]}.db"
        baseline_child = None
        if args.parallel:  # on a crowded machine: both at once, so that both finish
            baseline_child = start_baseline(source, base)
        out_file, err_file = base / "import.out", base / "import.err"
        began = time.perf_counter()
        with out_file.open("wb") as out, err_file.open("wb") as err:
            child = subprocess.Popen(
                [sys.executable, "-c", wrapper, "import", "contacts", str(source),
                 "--db", f"sqlite:///{db}", "--json", "--rejects", str(base / "rejects.csv")],
                stdout=out, stderr=err, env=env,
            )  # fmt: skip
            _, status, usage = os.wait4(child.pid, 0)
        import_seconds = time.perf_counter() - began
        import_cpu = usage.ru_utime + usage.ru_stime
        if os.waitstatus_to_exitcode(status) not in (0, 1):
            raise SystemExit(err_file.read_text()[-3000:])
        summary = json.loads(out_file.read_text())
        peak = json.loads(err_file.read_text().strip().splitlines()[-1])["peak_mb"]
        print(
            f"import: {import_seconds:.1f} s ({import_cpu:.1f} s CPU), "
            f"{args.n / import_seconds:,.0f} rows/s, peak RSS {peak:.0f} MB",
            flush=True,
        )
        # The baseline: a fresh process and database (after the import, whose numbers
        # are the ones a long run must not lose, unless --parallel).
        if baseline_child is None:
            baseline_child = start_baseline(source, base)
        out_text, err_text = baseline_child.communicate()
        if baseline_child.returncode != 0:
            raise SystemExit(f"the baseline failed: {err_text[-2000:]}")
        base_result = json.loads(out_text.strip().splitlines()[-1])
    counted = sum(
        summary[k] for k in ("created", "merged", "skipped", "rejected", "already_imported")
    )
    assert counted == summary["rows"] == args.n, summary
    base_rate = args.n / base_result["seconds"]
    import_rate = args.n / import_seconds
    ratio = import_rate / base_rate
    cpu_ratio = base_result["cpu"] / import_cpu
    results = {
        "n": args.n,
        "csv_mb": round(size_mb, 1),
        "csv_written_s": round(written, 2),
        "baseline_s": round(base_result["seconds"], 2),
        "baseline_rows_per_s": round(base_rate),
        "baseline_stored": base_result["stored"],
        "import_s": round(import_seconds, 2),
        "import_rows_per_s": round(import_rate),
        "ratio": round(ratio, 3),
        "baseline_cpu_s": round(base_result["cpu"], 2),
        "import_cpu_s": round(import_cpu, 2),
        "cpu_ratio": round(cpu_ratio, 3),
        "parallel": args.parallel,
        "ratio_target": RATIO_TARGET,
        "import_peak_mb": round(peak, 1),
        "rss_target_mb": RSS_TARGET_MB,
        "created": summary["created"],
        "skipped": summary["skipped"],
        "rejected": summary["rejected"],
    }
    print(f"crmkit import contacts, {args.n:,} rows ({size_mb:.1f} MB CSV), SQLite")
    print(f"{'':28}{'seconds':>10}{'rows/s':>12}")
    print(f"{'csv.reader + add_many':28}{results['baseline_s']:>10}{base_rate:>12,.0f}")
    print(f"{'crmkit import (command)':28}{results['import_s']:>10}{import_rate:>12,.0f}")
    verdict = "meets" if ratio >= RATIO_TARGET else "MISSES"
    print(f"ratio {ratio:.2f}x ({verdict} the {RATIO_TARGET}x target)")
    print(
        f"CPU seconds: baseline {base_result['cpu']:.1f}, import {import_cpu:.1f} (the whole "
        f"process): ratio {cpu_ratio:.2f}x (what a machine shared with others shows best)"
    )
    verdict = "meets" if peak < RSS_TARGET_MB else "MISSES"
    print(f"import peak RSS {peak:.0f} MB ({verdict} the {RSS_TARGET_MB} MB target)")
    print(
        f"created {summary['created']:,}, skipped {summary['skipped']:,} duplicates, "
        f"rejected {summary['rejected']:,}; counts add up to {counted:,}"
    )
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
