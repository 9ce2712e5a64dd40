"""``crmkit demo``: steps 2 to 4 of the customer lifecycle on the embedded SQLite store.

A small story, told with the simulated clock of a :class:`~crmkit.clock.FixedClock` so
that every run prints the same dates: people are reached and become leads (step 2),
leads are scored, qualified, converted and won or lost (step 3), and a new customer is
served through a ticket with SLA timers (step 4). Everything goes through
:class:`crmkit.crm.CRM` into a SQLite file, and the tables at the end are read back
from it.
"""

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from crmkit.cli._table import render_table
from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.errors import TransitionNotAllowed, ValidationError
from crmkit.lifecycle import (
    BusinessCalendar,
    Captured,
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
    Deal,
    EmailAddress,
    LeadChannel,
    Money,
    SubjectKind,
    Task,
    TicketChannel,
    TicketPriority,
    TicketStatus,
)
from crmkit.scoring import Band, Criterion, Decay, DecayKind, Group, ScoringModel
from crmkit.segmentation import activity, contacts_where, field, leads_where, prop
from crmkit.storage import Order
from crmkit.storage.sql import open_store

__all__ = ["DEMO_START", "run_demo"]

DEMO_START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
"""Monday morning, when the story begins."""

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


def run_demo(write: Callable[[str], object], *, url: str, start: datetime = DEMO_START) -> None:
    """Tell the story into the store at ``url``, from ``start``, writing through ``write``."""
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
        )
        _story(crm, clock, write)
    finally:
        store.close()


def _story(crm: CRM, clock: FixedClock, write: Callable[[str], object]) -> None:
    def say(text: str) -> None:
        write(f"{clock.now():%a %d %b %H:%M}  {text}")

    write(f"crmkit demo: steps 2 to 4 of the customer lifecycle, on SQLite ({crm.store.tenant})")
    ada, linus, sara, again = _acquire(crm, clock, say, write)
    _convert(crm, clock, say, write, (ada, linus, sara, again))
    _serve(crm, clock, say, write, ada.contact.id)
    _tables(crm, write, ada.contact.id)


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


def _tables(crm: CRM, write: Callable[[str], object], person: UUID) -> None:
    with crm.store.unit_of_work() as unit:
        contacts = unit.contacts.find(order=Order("created_at")).items
        deals = unit.deals.find(order=Order("created_at")).items
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
