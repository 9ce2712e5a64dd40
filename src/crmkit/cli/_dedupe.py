"""``crmkit dedupe``: the likely duplicate contacts (or accounts) of the store, scored and
explained, for a person to review (nothing is merged)."""

import argparse
from typing import Any

from crmkit.cli._common import (
    EXIT_OK,
    UsageError,
    add_database_options,
    add_json_option,
    command_parser,
    dump_json,
    host_crm,
    opened_store,
)
from crmkit.cli._table import render_table
from crmkit.models import Account, Contact
from crmkit.quality import ACCOUNT_WEIGHTS, CONTACT_WEIGHTS, BatchResult, DuplicatePair

__all__ = ["register", "run"]

_EXAMPLES = """\
  crmkit dedupe --db crm.db
  crmkit dedupe --db crm.db --accounts --limit 20
  crmkit dedupe --db crm.db --estimate --json > pairs.json"""


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``crmkit dedupe`` to the command line."""
    parser = command_parser(
        subparsers,
        "dedupe",
        summary="list likely duplicate contacts or accounts, with the reasons",
        description="Find the pairs of stored contacts (or accounts) that may be one "
        "person (organisation), as crmkit.crm.CRM.duplicate_pairs does: blocking, "
        "field comparisons and Fellegi-Sunter match weights. Each pair says its "
        "probability, its verdict (duplicate or review) and what each comparison added. "
        "Nothing is changed: merge with crmkit.crm.CRM.merge_contacts.",
        examples=_EXAMPLES,
    )
    add_database_options(parser)
    parser.add_argument("--accounts", action="store_true", help="accounts instead of contacts")
    parser.add_argument(
        "--estimate",
        action="store_true",
        help="estimate the match weights from the data by EM (default: crmkit's weights)",
    )
    parser.add_argument(
        "--limit", type=int, default=50, metavar="N", help="show at most N pairs (50)"
    )
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    """Carry out ``crmkit dedupe``."""
    if args.limit < 0:
        raise UsageError(f"--limit {args.limit}: expected 0 or more")
    entity: type[Contact] | type[Account] = Account if args.accounts else Contact
    weights = None if args.estimate else (ACCOUNT_WEIGHTS if args.accounts else CONTACT_WEIGHTS)
    with opened_store(args) as store:
        crm = host_crm(args, store)
        found = crm.duplicate_pairs(entity, weights=weights)
        shown = found.pairs[: args.limit]
        with store.unit_of_work() as unit:
            repository = unit.accounts if args.accounts else unit.contacts
            ids = {p.left for p in shown} | {p.right for p in shown}
            names = {i: _label(r) for i, r in repository.get_many(ids).items()}
    if args.json:
        dump_json(_document(found, shown, names))
        return EXIT_OK
    kind = "account" if args.accounts else "contact"
    print(f"{len(found.pairs)} likely duplicate {kind} pair{'' if len(found.pairs) == 1 else 's'}"
          f" among {found.compared} compared")  # fmt: skip
    if shown:
        print(
            render_table(
                ["left", "right", "probability", "verdict", "why"],
                [
                    [names.get(p.left, str(p.left)), names.get(p.right, str(p.right)),
                     f"{p.probability:.3f}", p.verdict, _why(p)]
                    for p in shown
                ],
            )
        )  # fmt: skip
    if len(found.pairs) > len(shown):
        print(f"... and {len(found.pairs) - len(shown)} more (--limit, or --json)")
    return EXIT_OK


def _label(record: Contact | Account) -> str:
    if isinstance(record, Account):
        return record.name
    name = record.display_name
    return f"{name} <{record.email}>" if record.email and name != record.email else name


def _why(pair: DuplicatePair) -> str:
    return ", ".join(f"{c.comparison}: {c.label}" for c in pair.contributions if c.weight > 0)


def _document(
    found: BatchResult, shown: tuple[DuplicatePair, ...], names: dict[Any, str]
) -> dict[str, Any]:
    return {
        "compared": found.compared,
        "pairs": len(found.pairs),
        "shown": [
            {
                "left": str(p.left),
                "right": str(p.right),
                "left_label": names.get(p.left),
                "right_label": names.get(p.right),
                "probability": p.probability,
                "weight": p.weight,
                "verdict": p.verdict.value,
                "contributions": [
                    {"comparison": c.comparison, "level": c.level, "label": c.label,
                     "weight": c.weight}
                    for c in p.contributions
                ],
            }
            for p in shown
        ],
    }  # fmt: skip
