"""``crmkit import KIND FILE.csv --db URL``: the command over :func:`crmkit.crm.import_csv`."""

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crmkit._extras import import_extra
from crmkit.crm import CRM, ImportReport, import_csv, read_mapping
from crmkit.errors import (
    CrmkitError,
    ImportFileError,
    MissingExtra,
    StorageError,
    ValidationError,
)
from crmkit.quality import RecordKind
from crmkit.storage.sql import open_store

__all__ = ["register", "run"]

_OPTIONS: Final = frozenset({"batch_size", "encoding", "delimiter", "on_duplicate", "kind"})
OK: Final = 0
DATA: Final = 1
USAGE: Final = 2

_EXAMPLES: Final = """\
examples:
  crmkit import contacts people.csv --db sqlite:///crm.db
  crmkit import contacts leute.csv --db crm.db --on-duplicate merge --rejects bad.csv
  CRMKIT_DB=postgresql+psycopg://crm@localhost/crm crmkit import deals deals.csv --json
  crmkit import activities events.csv --db crm.db --mapping columns.json --encoding cp1252

A mapping file is a JSON object of "column header": "field" (null leaves a column out):
  {"Mail": "email", "Plan": "custom.plan", "Seats": "custom.seats:int", "Notes": null}

exit status: 0 every row stored or merged (skipped duplicates included), 1 some rows
rejected or the file or database failed, 2 wrong usage (options, a missing file).
Rejected and skipped rows go to --rejects (default FILE.rejects.csv next to FILE) with
their line and every problem. Each batch commits on its own: after an interruption, run
the same command again and it resumes (rows stored before count as already imported).
"""


def register(commands: Any) -> None:
    """Add the ``import`` command to the ``crmkit`` parser's subcommands."""
    parser = commands.add_parser(
        "import",
        help="import contacts, accounts, leads, deals or activities from a CSV file",
        description=(
            "Import a CSV file into a crmkit database: columns mapped from the header "
            "(English, German and Swedish names are known) or a mapping file, values "
            "normalised, duplicates of stored contacts and accounts skipped, merged or "
            "created, every row stored, merged or written to the rejects file."
        ),
        epilog=_EXAMPLES.rstrip()
        + "\n\nexit status: 0 ok, 1 a data problem, 2 a usage error; messages go to stderr.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", choices=[k.value for k in RecordKind], help="what the rows are")
    parser.add_argument("file", metavar="FILE.csv", help="the CSV file, with a header row")
    parser.add_argument(
        "--db",
        metavar="URL",
        default=os.environ.get("CRMKIT_DB"),
        help="the database: sqlite:///crm.db, postgresql+psycopg://..., or a SQLite file "
        "path (default: $CRMKIT_DB)",
    )
    parser.add_argument("--tenant", default="default", help="the tenant to import into")
    parser.add_argument(
        "--mapping", metavar="FILE.json", help="column header -> field, as a JSON object"
    )
    parser.add_argument(
        "--on-duplicate",
        choices=["skip", "merge", "create"],
        default="skip",
        help="what a row matching a stored contact or account does (default: skip)",
    )
    parser.add_argument(
        "--rejects", metavar="FILE", help="where rejected rows go (default: FILE.rejects.csv)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--encoding", default="utf-8", help="the file's encoding (utf-8)")
    parser.add_argument(
        "--delimiter",
        choices=[",", ";", "tab", "|"],
        metavar="SEP",
        help="the separator: , ; tab | (default: guessed from the header line)",
    )
    parser.add_argument(
        "--timezone", default="UTC", help="the zone of times without an offset (UTC)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=2000, metavar="N", help="rows per commit (2000)"
    )
    parser.add_argument("--by", help="who imports, for the audit trail")


def _database(value: str | None) -> str | None:
    if not value:
        return None
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).resolve()}"


def _fail(code: int, message: str) -> int:
    print(f"crmkit import: {message}", file=sys.stderr)
    return code


def _storage(error: CrmkitError) -> str:
    """The message of a failure of the database, with what it means for the import."""
    text = str(error)
    if "database is locked" in text:
        return (
            "the database is locked by another program (waited for it, in vain); "
            "nothing more was stored: run the same command again when it is free"
        )
    return text


def run(args: argparse.Namespace) -> int:
    """Run ``crmkit import`` with parsed ``args``; returns the exit status."""
    url = _database(args.db)
    if url is None:
        return _fail(USAGE, "no database: give --db URL or set CRMKIT_DB")
    source = Path(args.file)
    if not source.is_file():
        what = "is not a file" if source.exists() else "does not exist"
        return _fail(USAGE, f"{source} {what}")
    try:
        zone = ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return _fail(USAGE, f"unknown --timezone {args.timezone!r} (an IANA name: Europe/Berlin)")
    mapping = None
    if args.mapping is not None:
        try:
            mapping = read_mapping(args.mapping)
        except ImportFileError as error:
            return _fail(USAGE, f"--mapping: {error}")
    rejects = Path(args.rejects) if args.rejects else source.with_suffix(".rejects.csv")
    delimiter = "\t" if args.delimiter == "tab" else args.delimiter
    secret = os.environ.get("CRMKIT_PRIVACY_SECRET")
    try:
        store = open_store(url, tenant=args.tenant)
    except CrmkitError as error:
        return _fail(DATA, f"cannot open the database: {_storage(error)}")
    try:
        crm = CRM(store, privacy_secret=secret.encode() if secret else None)
        with _Progress(show=not args.json) as progress:
            report = import_csv(
                crm,
                args.kind,
                source,
                mapping=mapping,
                on_duplicate=args.on_duplicate,
                rejects=rejects,
                batch_size=args.batch_size,
                encoding=args.encoding,
                delimiter=delimiter,
                zone=zone,
                by=args.by,
                progress=progress,
            )
    except ValidationError as error:
        wrong_option = error.field in _OPTIONS and not isinstance(error, ImportFileError)
        code = USAGE if wrong_option else DATA
        return _fail(code, str(error))
    except StorageError as error:
        return _fail(DATA, _storage(error))
    except CrmkitError as error:
        return _fail(DATA, str(error))
    finally:
        store.close()
    if args.json:
        print(json.dumps(report.summary(), indent=2))
    else:
        _print_summary(report, sys.stdout)
    return OK if report.ok else DATA


def _print_summary(report: ImportReport, out: TextIO) -> None:
    done = (
        f"{report.created} created, {report.merged} merged, {report.skipped} skipped, "
        f"{report.rejected} rejected"
    )
    if report.already_imported:
        done += f", {report.already_imported} already imported"
    print(f"{report.file}: {report.rows} rows: {done}", file=out)
    if report.rejects_file:
        print(
            f"rejected and skipped rows, with their line and problems: {report.rejects_file}",
            file=out,
        )


class _Plain:
    """Progress as a line every few seconds (and at the end), for logs and pipes."""

    def __init__(self, out: TextIO, every: float = 2.0) -> None:
        self.out = out
        self.every = every
        self.began = time.perf_counter()
        self.shown = self.began

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - self.shown < self.every and done < total:
            return
        self.shown = now
        rate = done / max(now - self.began, 1e-9)
        left = (total - done) / rate if rate else 0.0
        print(
            f"imported {done}/{total} rows ({rate:,.0f} rows/s, about {left:,.0f} s left)",
            file=self.out,
            flush=True,
        )


class _Progress:
    """A rich progress bar on a terminal, plain lines otherwise, nothing when not shown."""

    def __init__(self, *, show: bool) -> None:
        self.show = show
        self.bar: Any = None

    def __enter__(self) -> Callable[[int, int], None] | None:
        if not self.show:
            return None
        if sys.stdout.isatty():
            try:
                progress = import_extra("rich.progress", extra="cli", feature="the progress bar")
            except MissingExtra:
                return _Plain(sys.stdout)
            self.bar = progress.Progress(
                progress.TextColumn("importing"),
                progress.BarColumn(),
                progress.MofNCompleteColumn(),
                progress.TextColumn("rows"),
                progress.TaskProgressColumn(),
                _speed_column(progress),
                progress.TimeRemainingColumn(),
                transient=False,
            )
            self.bar.start()
            task = self.bar.add_task("import", total=None)

            def update(done: int, total: int) -> None:
                self.bar.update(task, completed=done, total=total)

            return update
        return _Plain(sys.stdout)

    def __exit__(self, *_: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _speed_column(progress: Any) -> Any:
    """A rich column that shows rows per second."""
    text = import_extra("rich.text", extra="cli", feature="the progress bar")

    class Speed(progress.ProgressColumn):  # type: ignore[misc]
        def render(self, task: Any) -> Any:
            speed = task.finished_speed or task.speed
            return text.Text("-- rows/s" if speed is None else f"{speed:,.0f} rows/s")

    return Speed()
