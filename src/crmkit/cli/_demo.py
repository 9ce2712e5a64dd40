"""``crmkit demo``: the five steps of the customer lifecycle on the embedded SQLite store.

A small story, told with the simulated clock of a :class:`~crmkit.clock.FixedClock` and
seeded random numbers so that every run prints the same: after a year of history
(:mod:`crmkit.cli._demo_history`), a segment's reachable audience gets a newsletter
whose two subject lines are A/B tested (step 1), people become leads (step 2), leads
are scored, qualified, converted and won or lost (step 3), a new customer is served
through a ticket with SLA timers (step 4), and customers are grouped by RFM, matched to
similar ones, scheduled for check-ins, valued (CLV) and offered an upsell (step 5); the
KPIs close it. Everything goes through :class:`crmkit.crm.CRM` into a SQLite file, and
the tables at the end are read back from it.
"""

import argparse
import random
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from crmkit.analytics import customer_lifetime_value, fit_bg_nbd, fit_gamma_gamma
from crmkit.cli._common import EXIT_OK, command_parser, writable, write_atomically
from crmkit.cli._demo_history import make_history
from crmkit.cli._table import render_table
from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.errors import MissingExtra, TransitionNotAllowed, ValidationError
from crmkit.lifecycle import (
    BusinessCalendar,
    Captured,
    CheckInPlan,
    Guards,
    Pipeline,
    SlaPolicy,
    Stage,
    StageKind,
    StageRequirements,
    Touchpoint,
)
from crmkit.models import (
    Activity,
    ActivityKind,
    ConsentChannel,
    Deal,
    EmailAddress,
    LeadChannel,
    Money,
    Segment,
    SubjectKind,
    Task,
    TicketChannel,
    TicketPriority,
    TicketStatus,
)
from crmkit.privacy import ConsentPolicy
from crmkit.scoring import Band, Criterion, Decay, DecayKind, Group, ScoringModel
from crmkit.segmentation import (
    activity,
    assign_variant,
    contacts_where,
    deals_where,
    field,
    leads_where,
    prop,
    rfm_scores,
    similar_contacts,
    two_proportion_test,
)
from crmkit.storage import Order
from crmkit.storage.sql import open_store

__all__ = ["DEMO_START", "register", "run", "run_demo"]

DEMO_START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
"""Monday morning, when the story begins."""
_HISTORY = 120
"""How many people the year before the story has."""

SALES = Pipeline(
    key="sales",
    label="New business",
    subject=SubjectKind.DEAL,
    stages=(
        Stage(key="discovery", label="Discovery", probability=Decimal("0.2")),
        Stage(
            key="proposal",
            label="Proposal",
            probability=Decimal("0.5"),
            requires=StageRequirements(required_fields={"amount"}),
        ),
        Stage(
            key="negotiation",
            label="Negotiation",
            probability=Decimal("0.8"),
            requires=StageRequirements(approval=True, guards=("discount_ok",)),
        ),
        Stage(key="won", label="Won", probability=Decimal(1), kind=StageKind.WON),
        Stage(key="lost", label="Lost", kind=StageKind.LOST),
    ),
)

SCORING = ScoringModel(
    name="Inbound leads",
    criteria=(
        Criterion("in DACH or Nordics", contacts_where(field("country").is_in("DE", "SE")), 20),
        Criterion("came via a form", leads_where(field("channel") == "form"), 10),
        Criterion(
            "viewed pricing",
            leads_where(
                activity(ActivityKind.PAGE_VIEW, where=prop("url").contains("/pricing")).count()
                >= 1
            ),
            30,
            Group.ENGAGEMENT,
        ),
        Criterion(
            "webinar sign-up",
            leads_where(activity(ActivityKind.EVENT_SIGNUP).exists()),
            20,
            Group.ENGAGEMENT,
        ),
    ),
    decay=Decay(DecayKind.HALF_LIFE, 14),
    bands=(Band("cold", 0), Band("warm", 30), Band("hot", 60)),
    mql_at=50,
)


def _discount_ok(deal: Deal, stage: Stage) -> str | None:
    discount = deal.custom.get("discount", 0)
    if isinstance(discount, int | float) and discount > 20:
        return f"a {discount}% discount is more than the 20% sales may give"
    return None


def _enrich(email: EmailAddress) -> Mapping[str, Any]:
    """The host's enrichment hook: what the domain of an address says about a person."""
    known = {"kund.se": {"country": "SE", "language": "sv"}, "acme-tools.de": {"country": "DE"}}
    return known.get(email.domain, {})


SUPPORT = (
    SlaPolicy(
        name="priority",
        priorities=frozenset({TicketPriority.HIGH, TicketPriority.URGENT}),
        first_response=timedelta(hours=1),
        next_response=timedelta(hours=2),
        resolution=timedelta(hours=8),
        calendar=BusinessCalendar.workdays("Europe/Berlin", time(9), time(17)),
    ),
    SlaPolicy(
        name="standard",
        first_response=timedelta(hours=8),
        resolution=timedelta(days=3),
        calendar=BusinessCalendar.workdays("Europe/Berlin", time(9), time(17)),
    ),
)


_EXAMPLES = """\
  crmkit demo                                  tell the story in a temporary database
  crmkit demo --db demo.db                     keep the data (tenant 'demo') to look at
  crmkit demo --report demo.html               and write the report of the demo's data
  crmkit report --db demo.db --tenant demo --out again.html"""


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``crmkit demo`` to the command line."""
    parser = command_parser(
        subparsers,
        "demo",
        summary="tell the five steps of the customer lifecycle on SQLite",
        description="Run the customer lifecycle through crmkit.crm.CRM on the embedded "
        "SQLite store, with a simulated clock (every run prints the same): reach (a "
        "segment, an A/B test of two subject lines, consent respected), acquire leads, "
        "convert them, serve customers, grow (RFM groups, similar customers, a check-in, "
        "customer lifetime value, an upsell deal), then the KPIs.",
        examples=_EXAMPLES,
    )
    parser.add_argument(
        "--db",
        metavar="PATH",
        help="the SQLite file to keep the demo's data in (default: a temporary file)",
    )
    parser.add_argument(
        "--report",
        metavar="FILE",
        help="also write the HTML report of the demo's data (as crmkit report does)",
    )


def run(args: argparse.Namespace) -> int:
    """Carry out ``crmkit demo``."""
    report = None if args.report is None else writable(args.report, "--report")
    if args.db:
        run_demo(print, url=f"sqlite:///{Path(args.db).resolve()}", report=report)
        return EXIT_OK
    with tempfile.TemporaryDirectory(prefix="crmkit-demo-") as folder:
        run_demo(print, url=f"sqlite:///{Path(folder) / 'demo.db'}", report=report)
    return EXIT_OK


def run_demo(
    write: Callable[[str], object],
    *,
    url: str,
    start: datetime = DEMO_START,
    report: Path | None = None,
) -> None:
    """Tell the story into the store at ``url``, from ``start``, writing through ``write``;
    with ``report``, write the HTML report of the demo's data to that file."""
    # A second passes with every reading: each event has a time of its own, and the
    # timeline keeps the order in which things happened.
    clock = FixedClock(start, step=timedelta(seconds=1))
    store = open_store(url, tenant="demo", clock=clock)
    try:
        with store.unit_of_work() as unit:
            if unit.contacts.count():
                raise ValidationError(
                    "db", url, "already holds the demo's data: remove the file or name a new one"
                )
        crm = CRM(
            store,
            pipelines=[SALES],
            guards=Guards({"discount_ok": _discount_ok}),
            enrich=_enrich,
            scoring=SCORING,
            sla_policies=SUPPORT,
            consent_policy=ConsentPolicy({"newsletter"}),
        )
        _story(crm, clock, write, start)
        if report is not None:
            from crmkit.cli._report import build_report  # noqa: PLC0415 - only when asked

            written = write_atomically(str(report), build_report(crm), "--report")
            write(f"\nThe report of the demo's data: {written}")
    finally:
        store.close()


def _story(crm: CRM, clock: FixedClock, write: Callable[[str], object], start: datetime) -> None:
    def say(text: str) -> None:
        write(f"{clock.now():%a %d %b %H:%M}  {text}")

    write(f"crmkit demo: the five steps of the customer lifecycle, on SQLite ({crm.store.tenant})")
    write(f"\nThe year before: {_HISTORY} people, their leads, deals, purchases and tickets")
    make_history(crm, clock, start=start, people=_HISTORY)
    with crm.store.unit_of_work() as unit:
        counts = [unit.contacts.count(), unit.deals.count(), unit.tickets.count()]
    write(f"  {counts[0]} contacts, {counts[1]} deals and {counts[2]} tickets stored")
    clock.set(start - timedelta(days=3))
    _reach(crm, clock, say, write)
    clock.set(start)
    ada, linus, sara, again = _acquire(crm, clock, say, write)
    _convert(crm, clock, say, write, (ada, linus, sara, again))
    _serve(crm, clock, say, write, ada.contact.id)
    _grow(crm, clock, say, write, ada.contact.id)
    _kpis(crm, write)
    _tables(crm, write, ada.contact.id, (ada.contact.id, linus.contact.id, sara.contact.id))


def _reach(
    crm: CRM, clock: FixedClock, say: Callable[[str], None], write: Callable[[str], object]
) -> None:
    write("\nStep 1: reach the audience")
    segment = Segment.new(
        name="DACH and Nordics",
        rule=contacts_where(field("country").is_in("DE", "AT", "CH", "SE")),
        clock=clock,
    )
    with crm.store.unit_of_work() as unit:
        unit.segments.add(segment)
        unit.commit()
    audience = crm.audience(segment.id, ConsentChannel.EMAIL, "newsletter")
    excluded = ", ".join(f"{n} {check}" for check, n in audience.excluded.items() if n)
    say(f"segment '{segment.name}': {audience.segment_size} contacts; {audience.size} may get "
        f"the newsletter by e-mail (left out: {excluded or 'nobody'})")  # fmt: skip
    lines = {"A": "Our March news", "B": "3 ways to close deals faster in March"}
    rnd = random.Random(1)
    sent: dict[str, list[bool]] = {"A": [], "B": []}
    activities: list[Activity] = []
    with crm.store.unit_of_work() as unit:
        reached = unit.contacts.get_many(audience.contact_ids)
    # Ids are random: the variant is drawn from a stable id of the e-mail address, so that
    # every run of the demo tells the same test (a host passes its contacts' ids).
    for email, contact_id in sorted((c.email or "", c.id) for c in reached.values()):
        stable = uuid5(NAMESPACE_URL, f"mailto:{email}")
        variant = assign_variant("march-newsletter", stable, {"A": 1, "B": 1})
        opened = rnd.random() < (0.25 if variant == "A" else 0.6)
        sent[variant].append(opened)
        activities.extend(
            Activity.new(
                contact_id=contact_id,
                kind=kind,
                subject=lines[variant],
                properties={"campaign": "march-newsletter", "variant": variant},
                clock=clock,
            )
            for kind in (ActivityKind.EMAIL_SENT, *([ActivityKind.EMAIL_OPENED] * opened))
        )
    with crm.store.unit_of_work() as unit:
        unit.activities.add_many(activities)
        unit.commit()
    say("A/B test of two subject lines, each contact assigned by a stable hash:")
    write(
        render_table(
            ["variant", "subject line", "sent", "opened", "open rate"],
            [
                [v, lines[v], str(len(o)), str(sum(o)), f"{sum(o) / len(o):.0%}"]
                for v, o in sent.items()
            ],
        )
    )
    test = two_proportion_test(sum(sent["A"]), len(sent["A"]), sum(sent["B"]), len(sent["B"]))
    verdict = (
        "significant at 95%: B goes to the rest of the list"
        if test.significant
        else "not significant at 95%: keep testing before choosing"
    )
    write(f"  B's open rate is {abs(100 * test.difference):.0f} points "
          f"{'higher' if test.difference >= 0 else 'lower'} (95% interval "
          f"{100 * test.ci_low:+.0f} to {100 * test.ci_high:+.0f}), p = {test.p_value:.3f}: "
          f"{verdict}")  # fmt: skip


def _grow(
    crm: CRM,
    clock: FixedClock,
    say: Callable[[str], None],
    write: Callable[[str], object],
    ada: UUID,
) -> None:
    write("\nStep 5: grow and upsell")
    clock.set(datetime(2026, 3, 16, 9, 0, tzinfo=UTC))
    crm.record_activity(
        Activity.new(
            contact_id=ada,
            kind=ActivityKind.PURCHASE,
            amount=Money("1200.00", "EUR"),
            properties={"product": "analytics"},
            clock=clock,
        )
    )
    crm.record_activity(
        Activity.new(
            contact_id=ada,
            kind=ActivityKind.PURCHASE,
            amount=Money("450.00", "EUR"),
            properties={"product": "training"},
            clock=clock,
        )
    )
    say("Ada buys the analytics module and a training")
    with crm.store.unit_of_work() as unit:
        bought = unit.activities.of_kinds([ActivityKind.PURCHASE], until=clock.now())
        names = {c.id: c.display_name for c in unit.contacts.iterate()}
    scores = rfm_scores(bought, as_of=clock.now(), currency="EUR")
    groups = Counter(s.group for s in scores.values())
    say(f"RFM groups of the {len(scores)} customers who bought (recency, frequency, money):")
    write(render_table(["RFM group", "customers"],
                       [[g, str(n)] for g, n in groups.most_common()]))  # fmt: skip
    similar = similar_contacts(bought, to=ada, k=3)
    say("customers whose purchases are most like Ada's: "
        + ", ".join(f"{names[s.contact_id]} ({s.score:.2f})"
                    for s in sorted(similar, key=lambda s: (-s.score, names[s.contact_id])))
    )  # fmt: skip
    tasks = crm.schedule_check_ins(
        CheckInPlan(every=timedelta(days=90), title="Quarterly check-in", assignee="carla")
    )
    mine = next((t for t in tasks if t.contact_id == ada), None)
    due = f", Ada's due {mine.due_at:%a %d %b}" if mine is not None else ""
    say(f"check-ins every 90 days: {len(tasks)} tasks for Carla{due}")
    say(_clv_line(crm, ada, names))
    upsell = crm.capture_lead(
        Touchpoint(email="ada.lovelace@example.com", source="upsell", channel=LeadChannel.OTHER)
    )
    deal = crm.convert_lead(
        upsell.lead.id,
        pipeline="sales",
        title="Lovelace Analytics: 15 more seats",
        amount=Money("9000.00", "EUR"),
        expected_close=(clock.now() + timedelta(days=30)).date(),
        by="ben",
    ).deal
    say(f"Ben opens the upsell deal '{deal.title}' ({deal.amount}) in stage {deal.stage}")


def _clv_line(crm: CRM, ada: UUID, names: Mapping[UUID, str]) -> str:
    """Ada's customer lifetime value, or why it cannot be predicted here."""
    try:
        summary = crm.clv_summary(currency="EUR")
        values = customer_lifetime_value(summary, fit_bg_nbd(summary), fit_gamma_gamma(summary))
    except MissingExtra as missing:
        return f"customer lifetime value: {missing}"
    rows = {row.customer: row for row in values.rows}
    amounts = sorted(row.clv.amount for row in values.rows)
    median = amounts[len(amounts) // 2]
    row = rows.get(str(ada))
    ada_text = f"Ada's is {row.clv} (P(alive) {row.p_alive:.0%}); " if row is not None else ""
    top = values.rows[0]
    return (
        f"customer lifetime value over 12 months (BG/NBD and Gamma-Gamma): {ada_text}"
        f"median {median} EUR, highest {names.get(UUID(top.customer), top.customer)} {top.clv}"
    )


def _kpis(crm: CRM, write: Callable[[str], object]) -> None:
    from crmkit.cli._report import kpi_sections  # noqa: PLC0415 - the report's tables

    write("\nThe KPIs")
    for section in kpi_sections(crm):
        write(f"\n{section.title}")
        write(render_table(section.headers, [list(r) for r in section.rows]))


def _acquire(
    crm: CRM, clock: FixedClock, say: Callable[[str], None], write: Callable[[str], object]
) -> tuple[Captured, Captured, Captured, Captured]:
    write("\nStep 2: acquire leads")
    ada = crm.capture_lead(
        Touchpoint(
            email="Ada.Lovelace@Example.COM",
            source="pricing-page",
            channel=LeadChannel.FORM,
            first_name="Ada",
            last_name="Lovelace",
        )
    )
    say(f"{ada.contact.display_name} fills in the pricing form: new contact, lead captured")
    clock.advance(timedelta(hours=2))
    linus = crm.capture_lead(
        Touchpoint(
            email="linus.berg@acme-tools.de",
            source="newsletter",
            channel=LeadChannel.NEWSLETTER,
            first_name="Linus",
            last_name="Berg",
        )
    )
    say(f"{linus.contact.display_name} subscribes to the newsletter (enriched: country "
        f"{linus.contact.country})")  # fmt: skip
    clock.advance(timedelta(hours=3))
    sara = crm.capture_lead(
        Touchpoint(email="sara@kund.se", source="support-chat", channel=LeadChannel.CHAT)
    )
    say(f"{sara.contact.display_name} asks a question in the chat (enriched: "
        f"{sara.contact.country}, {sara.contact.language})")  # fmt: skip
    clock.advance(timedelta(days=1))
    again = crm.capture_lead(
        Touchpoint(
            email="Ada.Lovelace@example.com",
            source="webinar-march",
            channel=LeadChannel.EVENT,
            country="DE",
        )
    )
    same = "the same contact" if again.contact.id == ada.contact.id else "a NEW contact"
    say(f"Ada signs up for the webinar: matched to {same}, country filled in")
    return ada, linus, sara, again


def _convert(
    crm: CRM,
    clock: FixedClock,
    say: Callable[[str], None],
    write: Callable[[str], object],
    leads: tuple[Captured, Captured, Captured, Captured],
) -> None:
    ada, linus, sara, again = leads
    write("\nStep 3: convert leads")
    clock.advance(timedelta(days=1))
    crm.record_activity(
        Activity.new(
            contact_id=ada.contact.id,
            kind=ActivityKind.PAGE_VIEW,
            subject="/pricing",
            properties={"url": "https://example.com/pricing"},
            clock=clock,
        )
    )
    say("Ada views the pricing page again")
    clock.advance(timedelta(hours=1))
    rows = []
    cards = {}
    for captured in (ada, linus, sara, again):
        outcome, card = crm.rescore_lead(captured.lead.id)
        cards[captured.lead.id] = card
        rows.append(
            [
                captured.contact.display_name,
                captured.lead.source,
                f"{card.total:.1f}",
                card.band or "",
                "yes" if outcome.contact is not None else "",
            ]
        )
    say("every lead is scored with the rule model")
    write(render_table(["contact", "source", "score", "band", "contact became MQL"], rows))
    why = cards[again.lead.id]
    parts = ", ".join(f"{c.criterion} {c.points:+.1f}" for c in why.contributions)
    write(f"  why Ada's webinar lead scores {why.total:.1f}: {parts}")
    clock.advance(timedelta(hours=2))
    crm.accept_lead(again.lead.id, by="ben")
    say("Ben (sales) accepts Ada's lead: she is a sales-qualified lead")
    deal = crm.convert_lead(
        again.lead.id, pipeline="sales", title="Lovelace Analytics: 10 seats", by="ben"
    ).deal
    say(f"the lead becomes the deal '{deal.title}' in stage {deal.stage}")
    try:
        crm.move_deal(deal.id, "proposal", by="ben")
    except TransitionNotAllowed as refused:
        say(f"moving to proposal is refused: {'; '.join(refused.unmet)}")
    crm.update_deal(deal.id, amount=Money("12000.00", "EUR"), custom={"discount": 25})
    say("Ben adds the amount, 12,000.00 EUR, with a 25% discount")
    crm.move_deal(deal.id, "proposal", by="ben")
    say("the deal moves to proposal (probability 50%)")
    clock.advance(timedelta(days=2))
    try:
        crm.move_deal(deal.id, "negotiation", by="ben", approved_by="ben")
    except TransitionNotAllowed as refused:
        say(f"negotiation is refused: {'; '.join(refused.unmet)}")
    crm.update_deal(deal.id, amount=Money("13500.00", "EUR"), custom={"discount": 10})
    crm.move_deal(deal.id, "negotiation", by="ben", approved_by="carla")
    say("with a 10% discount and Carla's approval, the deal moves to negotiation")
    clock.advance(timedelta(days=3))
    crm.win_deal(deal.id, by="ben")
    say("the deal is won: Ada is a customer")
    lost = crm.convert_lead(linus.lead.id, pipeline="sales", title="Acme Tools pilot").deal
    clock.advance(timedelta(hours=4))
    crm.lose_deal(lost.id, by="ben", reason="no budget this year")
    say("Acme Tools' pilot is lost: no budget this year")
    crm.create_task(
        Task.new(
            title="Call Sara about her chat question",
            due_at=clock.now() + timedelta(hours=20),
            assignee="ben",
            contact_id=sara.contact.id,
            clock=clock,
        )
    )
    crm.create_task(
        Task.new(
            title="Ask Linus again after the budget round",
            due_at=clock.now() - timedelta(hours=1),
            assignee="ben",
            contact_id=linus.contact.id,
            clock=clock,
        )
    )
    board = crm.follow_ups(within=timedelta(days=1), assignee="ben")
    say(f"Ben's follow-ups: {len(board.overdue)} overdue, {len(board.due_soon)} due today")


def _serve(
    crm: CRM,
    clock: FixedClock,
    say: Callable[[str], None],
    write: Callable[[str], object],
    customer: UUID,
) -> None:
    write("\nStep 4: serve customers")
    clock.set(datetime(2026, 3, 12, 14, 30, tzinfo=UTC))  # Thursday afternoon
    ticket = crm.open_ticket(
        customer,
        subject="The invoice shows the wrong VAT number",
        channel=TicketChannel.EMAIL,
        priority=TicketPriority.HIGH,
    )
    say("Ada e-mails support: the invoice shows the wrong VAT number (priority high)")
    clock.advance(timedelta(minutes=40))
    crm.reply_to_ticket(ticket.id, by="sam", text="Which VAT number should it show?")
    say("Sam replies within 40 minutes: first response met; the ticket is open")
    crm.move_ticket(ticket.id, TicketStatus.PENDING, by="sam", reason="asked the customer")
    clock.set(datetime(2026, 3, 13, 8, 15, tzinfo=UTC))
    crm.reply_to_ticket(ticket.id, by=None, text="DE811907980, please")
    say("Ada answers the next morning: the ticket is open again, the next response is due")
    clock.advance(timedelta(minutes=95))
    report = crm.sla_status(ticket.id)
    say(f"SLA report, policy '{report.policy}' (09:00-17:00 Europe/Berlin; times in UTC):")
    write(
        render_table(
            ["target", "limit", "business time used", "state", "due"],
            [
                [t.metric, _hours(t.target), _hours(t.elapsed), t.state,
                 f"{t.due_at:%a %d %b %H:%M}" if t.due_at else ""]
                for t in report.timers
            ],
        )
    )  # fmt: skip
    clock.advance(timedelta(minutes=10))
    crm.reply_to_ticket(ticket.id, by="sam", text="Corrected invoice attached.")
    crm.solve_ticket(ticket.id, by="sam")
    timers = crm.sla_status(ticket.id).timers
    met = ", ".join(f"{t.metric} {t.state}" for t in timers)
    say(f"Sam sends the corrected invoice and solves the ticket: {met}")
    clock.advance(timedelta(hours=3))
    crm.record_csat(ticket.id, 5)
    say("Ada rates the support 5 of 5")


def _hours(delta: timedelta) -> str:
    minutes = round(delta.total_seconds() / 60)
    return f"{minutes // 60}h{minutes % 60:02d}"


def _tables(crm: CRM, write: Callable[[str], object], person: UUID, people: Sequence[UUID]) -> None:
    with crm.store.unit_of_work() as unit:
        found = unit.contacts.get_many(people)
        contacts = [found[p] for p in people]
        deals = unit.deals.find(
            deals_where(field("contact_id").is_in(*people)), order=Order("created_at")
        ).items
    names = {c.id: c.display_name for c in contacts}
    write("\nContacts (read back from the store)")
    write(
        render_table(
            ["name", "e-mail", "country", "lifecycle stage", "tags"],
            [
                [c.display_name, c.email or "", c.country or "", c.lifecycle_stage,
                 ", ".join(sorted(c.tags))]
                for c in contacts
            ],
        )
    )  # fmt: skip
    write("\nDeals")
    write(
        render_table(
            ["title", "contact", "stage", "status", "amount", "probability", "reason"],
            [
                [d.title, names.get(d.contact_id, "") if d.contact_id else "", d.stage, d.status,
                 str(d.amount) if d.amount else "", f"{d.probability:.0%}", d.lost_reason or ""]
                for d in deals
            ],
        )
    )  # fmt: skip
    write(f"\nTimeline of {names[person]}")
    for entry in crm.timeline(person):
        write(f"{entry.at:%a %d %b %H:%M}  {entry.text}")
