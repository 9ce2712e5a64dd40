"""``crmkit export``: everything stored about one person, as JSON (or CSV files), with an
``exported`` entry in their audit trail."""

import argparse
from pathlib import Path

from crmkit.cli._common import (
    EXIT_OK,
    add_database_options,
    add_person_options,
    command_parser,
    find_person,
    host_crm,
    opened_store,
    writable,
    write_atomically,
)

__all__ = ["register", "run"]

_EXAMPLES = """\
  crmkit export --db crm.db --email ada@example.com --by dpo > ada.json
  crmkit export --db crm.db --contact 0b7e...-... --by dpo --out ada.json
  crmkit export --db crm.db --email ada@example.com --by dpo --csv ada-export/"""


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``crmkit export`` to the command line."""
    parser = command_parser(
        subparsers,
        "export",
        summary="export everything stored about one person (right of access)",
        description="Export everything stored about one person, as "
        "crmkit.crm.CRM.export_person does: one JSON document (a manifest and one "
        "section per repository) on stdout or in --out, or one CSV file per section in "
        "the folder --csv. The export is recorded in the person's audit trail.",
        examples=_EXAMPLES,
    )
    add_database_options(parser)
    add_person_options(parser)
    parser.add_argument("--by", required=True, help="who exports (recorded in the audit trail)")
    parser.add_argument("--approved-by", help="the second person, when exports need four eyes")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="FILE", help="write the JSON document to FILE")
    where.add_argument("--csv", metavar="FOLDER", help="write CSV files into FOLDER (made)")
    parser.add_argument(
        "--json", action="store_true", help="the export is one JSON document already (default)"
    )


def run(args: argparse.Namespace) -> int:
    """Carry out ``crmkit export``."""
    if args.out is not None:
        writable(args.out, "--out")
    folder = None
    if args.csv is not None:
        folder = Path(args.csv)
        writable(str(folder / "manifest.json") if folder.is_dir() else args.csv, "--csv")
    with opened_store(args) as store:
        crm = host_crm(args, store)
        person = find_person(crm, args)
        bundle = crm.export_person(person.id, by=args.by, approved_by=args.approved_by)
    if folder is not None:
        folder.mkdir(exist_ok=True)
        for name, text in bundle.to_csv().items():
            write_atomically(str(folder / name), text, "--csv")
        print(f"wrote {len(bundle.to_csv())} files into {folder}")
    elif args.out is not None:
        target = write_atomically(args.out, bundle.to_json() + "\n", "--out")
        print(f"wrote the export of {person.id} to {target}")
    else:
        print(bundle.to_json())
    return EXIT_OK
