"""``crmkit score``: rescore open leads with a rule scoring model, store the scores and
move the contacts that reach the MQL threshold, with each score's explanation."""

import argparse
from typing import Any, Final
from uuid import UUID

from crmkit.cli._common import (
    EXIT_OK,
    UsageError,
    add_database_options,
    add_json_option,
    command_parser,
    dump_json,
    host_crm,
    opened_store,
    read_json_file,
    structured,
)
from crmkit.cli._table import render_table
from crmkit.lifecycle import Qualified, closed_state
from crmkit.models import LeadStatus
from crmkit.scoring import ScoreCard, ScoringModel
from crmkit.segmentation import field, leads_where

__all__ = ["register", "run"]

_BATCH: Final = 500
_OPEN: Final = tuple(s.value for s in LeadStatus if s is not LeadStatus.DISQUALIFIED)
_EXAMPLES = """\
  crmkit score --db crm.db --model scoring.json
  crmkit score --db crm.db --model scoring.json --lead 0b7e...-... --json
  crmkit score --setup myapp.crm:setup            the host's CRM brings its model"""


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``crmkit score`` to the command line."""
    parser = command_parser(
        subparsers,
        "score",
        summary="rescore open leads and explain each score",
        description="Rescore the open leads (every one, or those of --lead) with a rule "
        "scoring model, as crmkit.crm.CRM.rescore_leads does: each score is stored, a "
        "contact whose lead reaches the model's MQL threshold becomes an MQL (with "
        "history), and every score comes with its contributions. The model is the JSON "
        "form of a crmkit.scoring.ScoringModel (--model), or the scoring model of the "
        "host's CRM (--setup).",
        examples=_EXAMPLES,
    )
    add_database_options(parser)
    parser.add_argument("--model", metavar="FILE", help="the scoring model as JSON ('-': stdin)")
    parser.add_argument(
        "--lead", metavar="ID", action="append", help="score only this lead (repeatable)"
    )
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    """Carry out ``crmkit score``."""
    model = None
    if args.model is not None:
        model = structured(
            read_json_file(args.model, "--model"), ScoringModel, f"--model {args.model!r}"
        )
    chosen = [_lead_id(text) for text in args.lead or []]
    with opened_store(args) as store:
        crm = host_crm(args, store)
        if model is not None:
            crm.scoring = model
        if crm.scoring is None:
            raise UsageError("no scoring model: pass --model FILE, or a --setup whose CRM has one")
        if chosen:
            ids = chosen
        else:
            unconverted = field("status").is_in(*_OPEN) & field("deal_id").is_null()
            with store.unit_of_work() as unit:
                ids = [
                    lead.id
                    for lead in unit.leads.iterate(leads_where(unconverted))
                    if closed_state(lead, crm.pipelines.get(lead.pipeline or "")) is None
                ]
        results: list[tuple[Qualified, ScoreCard]] = []
        for start in range(0, len(ids), _BATCH):
            results += crm.rescore_leads(ids[start : start + _BATCH])
    rows = [_row(qualified, card) for qualified, card in results]
    if args.json:
        dump_json({"model": crm.scoring.name, "scored": len(rows), "leads": rows})
        return EXIT_OK
    mqls = sum(1 for row in rows if row["became_mql"])
    print(f"{len(rows)} lead{'' if len(rows) == 1 else 's'} scored with {crm.scoring.name!r}; "
          f"{mqls} contact{'' if mqls == 1 else 's'} became MQL")  # fmt: skip
    if rows:
        print(
            render_table(
                ["lead", "score", "band", "became MQL", "why"],
                [
                    [r["lead"], f"{r['score']:.1f}", r["band"] or "", "yes" if r["became_mql"]
                     else "", "; ".join(f"{c['criterion']} {c['points']:+.1f}"
                                        for c in r["contributions"] if c["points"])]
                    for r in rows
                ],
            )
        )  # fmt: skip
    return EXIT_OK


def _lead_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise UsageError(f"--lead {text!r} is not a lead id (a UUID)") from None


def _row(qualified: Qualified, card: ScoreCard) -> dict[str, Any]:
    return {
        "lead": str(qualified.lead.id),
        "contact": str(qualified.lead.contact_id),
        "score": card.total,
        "band": card.band,
        "became_mql": qualified.contact is not None,
        "contributions": [
            {"criterion": c.criterion, "points": c.points} for c in card.contributions
        ],
    }
