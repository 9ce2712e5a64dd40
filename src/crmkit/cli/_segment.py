"""``crmkit segment``: the contacts a rule selects, counted or listed, and saved as a
dynamic segment; the members of a stored segment; the stored segments."""

import argparse
from typing import Any

from crmkit import segmentation
from crmkit.cli._common import (
    EXIT_OK,
    UsageError,
    add_database_options,
    add_json_option,
    command_parser,
    contact_label,
    dump_json,
    host_crm,
    opened_store,
    parse_json,
    read_text_file,
    structured,
)
from crmkit.cli._table import render_table
from crmkit.crm import CRM
from crmkit.models import Contact, Segment, SegmentKind
from crmkit.models.rules import Rule, RuleEntity
from crmkit.storage import Order

__all__ = ["read_rule", "register", "run"]

_EXAMPLES = """\
  crmkit segment --db crm.db --rule '{"entity": "contact", "where": {"node": "in",
      "field": "country", "values": ["DE", "AT", "CH"], "negated": false}}' --count
  crmkit segment --db crm.db --rule-file dach.json --save "DACH"
  crmkit segment --db crm.db --name "DACH" --json
  crmkit segment --db crm.db --list"""


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``crmkit segment`` to the command line."""
    parser = command_parser(
        subparsers,
        "segment",
        summary="count, list or save the contacts a rule selects",
        description="Evaluate a contact rule in the store (compiled to SQL) and count or "
        "list the contacts it selects, optionally saving it as a dynamic segment; or list "
        "the members of a stored segment, or the stored segments. A rule is the JSON form "
        "crmkit.serialization writes for a crmkit.models.rules.Rule.",
        examples=_EXAMPLES,
    )
    add_database_options(parser)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--rule", metavar="RULE", help="the rule, as JSON text")
    what.add_argument("--rule-file", metavar="FILE", help="a file holding the rule ('-': stdin)")
    what.add_argument("--name", metavar="NAME", help="the stored segment called NAME")
    what.add_argument("--list", action="store_true", help="list the stored segments")
    parser.add_argument(
        "--save", metavar="NAME", help="store the rule as a dynamic segment called NAME"
    )
    parser.add_argument("--count", action="store_true", help="print how many, not who")
    parser.add_argument(
        "--limit", type=int, default=100, metavar="N", help="list at most N contacts (100)"
    )
    add_json_option(parser)


def read_rule(text: str, what: str) -> Rule:
    """A contact rule from the command line: JSON (``{...}``), or the text rule syntax
    once :mod:`crmkit.segmentation` has a ``parse_rule``."""
    if text.lstrip().startswith("{"):
        rule = structured(parse_json(text, what), Rule, what)
    else:
        parse = getattr(segmentation, "parse_rule", None)
        if parse is None:
            raise UsageError(f"{what}: expected the rule as JSON ({{...}})")
        rule = parse(text)
    if rule.entity is not RuleEntity.CONTACT:
        raise UsageError(f"{what}: a segment's rule selects contacts, not {rule.entity}s")
    return rule


def run(args: argparse.Namespace) -> int:
    """Carry out ``crmkit segment``."""
    if args.limit < 0:
        raise UsageError(f"--limit {args.limit}: expected 0 or more")
    if args.save is not None and args.rule is None and args.rule_file is None:
        raise UsageError("--save stores a rule: give --rule or --rule-file")
    rule: Rule | None = None
    if args.rule is not None:
        rule = read_rule(args.rule, "--rule")
    elif args.rule_file is not None:
        text = read_text_file(args.rule_file, "--rule-file")
        rule = read_rule(text, f"--rule-file {args.rule_file!r}")
    with opened_store(args) as store:
        crm = host_crm(args, store)
        if args.list:
            return _list(crm, args)
        saved = None
        if rule is None:
            segment = _named(crm, args.name)
        else:
            segment = Segment.new(name=args.save or "(rule)", rule=rule, clock=crm.clock)
            if args.save is not None:
                saved = _save(crm, segment)
        count, members = _members(crm, segment, 0 if args.count else args.limit)
    if args.json:
        out: dict[str, Any] = {"count": count}
        if not args.count:
            out["contacts"] = [_contact_row(c) for c in members]
        if saved is not None:
            out["saved"] = {"id": str(saved.id), "name": saved.name}
        dump_json(out)
    else:
        _print(args, saved, count, members)
    return EXIT_OK


def _save(crm: CRM, segment: Segment) -> Segment:
    if _stored(crm, segment.name) is not None:
        raise UsageError(f"--save {segment.name!r}: a segment of that name exists")
    with crm.store.unit_of_work() as unit:
        saved = unit.segments.add(segment)
        unit.commit()
    return saved


def _print(
    args: argparse.Namespace, saved: Segment | None, count: int, members: list[Contact]
) -> None:
    if saved is not None:
        print(f"saved the segment {saved.name!r} ({saved.id})")
    if args.count:
        print(count)
        return
    print(f"{count} contact{'' if count == 1 else 's'}")
    if members:
        print(
            render_table(
                ["contact", "id", "country", "lifecycle stage", "tags"],
                [
                    [contact_label(c), str(c.id), c.country or "", c.lifecycle_stage,
                     ", ".join(sorted(c.tags))]
                    for c in members
                ],
            )
        )  # fmt: skip
    if count > len(members):
        print(f"... and {count - len(members)} more (--limit, or --json for scripts)")


def _stored(crm: CRM, name: str) -> Segment | None:
    with crm.store.unit_of_work() as unit:
        return next((s for s in unit.segments.iterate() if s.name == name), None)


def _named(crm: CRM, name: str) -> Segment:
    segment = _stored(crm, name)
    if segment is None:
        raise UsageError(f"--name {name!r}: no stored segment is called that (see --list)")
    return segment


def _members(crm: CRM, segment: Segment, limit: int) -> tuple[int, list[Contact]]:
    with crm.store.unit_of_work() as unit:
        if segment.kind is SegmentKind.STATIC:
            found = unit.contacts.get_many(segment.members)
            ordered = sorted(found.values(), key=lambda c: (c.created_at, c.id))
            return len(ordered), ordered[:limit]
        assert segment.rule is not None  # a dynamic segment has its rule
        now = crm.clock.now()
        count = unit.contacts.count(segment.rule, now=now)
        if not limit:
            return count, []
        page = unit.contacts.find(segment.rule, order=Order("created_at"), limit=limit, now=now)
        return count, list(page.items)


def _list(crm: CRM, args: argparse.Namespace) -> int:
    with crm.store.unit_of_work() as unit:
        segments = sorted(unit.segments.iterate(), key=lambda s: s.name)
    rows = []
    for segment in segments:
        count, _ = _members(crm, segment, 0)
        rows.append((segment, count))
    if args.json:
        dump_json(
            [
                {"id": str(s.id), "name": s.name, "kind": s.kind.value, "contacts": n}
                for s, n in rows
            ]
        )
        return EXIT_OK
    if not rows:
        print("no stored segments")
        return EXIT_OK
    print(
        render_table(["segment", "kind", "contacts"], [[s.name, s.kind, str(n)] for s, n in rows])
    )
    return EXIT_OK


def _contact_row(contact: Contact) -> dict[str, Any]:
    return {
        "id": str(contact.id),
        "name": contact.display_name,
        "email": contact.email,
        "country": contact.country,
        "lifecycle_stage": contact.lifecycle_stage.value,
        "tags": sorted(contact.tags),
    }
