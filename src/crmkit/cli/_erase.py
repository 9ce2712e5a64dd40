"""``crmkit erase``: erase one person (right to be forgotten): anonymised everywhere, kept
as a tombstone, and suppressed so that an import does not bring them back."""

import argparse

from crmkit.cli._common import (
    EXIT_OK,
    UsageError,
    add_database_options,
    add_json_option,
    add_person_options,
    command_parser,
    dump_json,
    find_person,
    host_crm,
    opened_store,
)

__all__ = ["register", "run"]

_EXAMPLES = """\
  export CRMKIT_PRIVACY_SECRET=...      the host's secret key (16 bytes or more)
  crmkit erase --db crm.db --email ada@example.com --by dpo --reason "asked by e-mail" --yes
  crmkit erase --db crm.db --contact 0b7e...-... --by dpo --reason "GDPR art. 17" --yes --json"""


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``crmkit erase`` to the command line."""
    parser = command_parser(
        subparsers,
        "erase",
        summary="erase one person (right to be forgotten)",
        description="Erase one person, as crmkit.crm.CRM.erase_person does: their "
        "personal data is anonymised in every repository, the records stay as tombstones "
        "(deal amounts still count), and keyed hashes of their e-mail and phone go on the "
        "suppression list. Needs the host's secret key: $CRMKIT_PRIVACY_SECRET, or the "
        "privacy_secret of the CRM of --setup. It cannot be undone, hence --yes.",
        examples=_EXAMPLES,
    )
    add_database_options(parser)
    add_person_options(parser)
    parser.add_argument("--by", required=True, help="who erases (recorded)")
    parser.add_argument("--reason", required=True, help="why (recorded)")
    parser.add_argument("--approved-by", help="the second person, when erasures need four eyes")
    parser.add_argument("--yes", action="store_true", help="confirm: erasing cannot be undone")
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    """Carry out ``crmkit erase``."""
    if not args.yes:
        raise UsageError("erasing a person cannot be undone: add --yes to confirm")
    with opened_store(args) as store:
        crm = host_crm(args, store)
        if crm.privacy_secret is None:
            raise UsageError(
                "erasing needs the host's secret key: set CRMKIT_PRIVACY_SECRET (16 bytes or "
                "more), or use a --setup whose CRM has a privacy_secret"
            )
        person = find_person(crm, args)
        erasure = crm.erase_person(
            person.id, by=args.by, reason=args.reason, approved_by=args.approved_by
        )
    if args.json:
        dump_json(erasure)
    else:
        print(f"erased contact {erasure.contact_id}: {erasure.records} records anonymised, "
              "e-mail and phone suppressed")  # fmt: skip
    return EXIT_OK
