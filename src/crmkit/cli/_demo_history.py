"""The year before the demo's story: a small company's history, made through the CRM.

A seeded random generator makes the same year on every run: people are captured as
leads, a part of them become deals that move through the pipeline and are won or lost,
customers buy (their order history is imported in bulk), open tickets that are served
against the SLA policies and rated, answer an NPS survey, and some leave. Every
lifecycle step goes through :class:`crmkit.crm.CRM` with the clock set to its day, so
the stage history, the funnel and the forecasts have something to replay.
"""

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final
from uuid import UUID

from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.lifecycle import Touchpoint
from crmkit.models import (
    Activity,
    ActivityKind,
    ConsentChannel,
    LeadChannel,
    LifecycleStage,
    Money,
    TicketChannel,
    TicketPriority,
)

__all__ = ["PRODUCTS", "make_history"]

PRODUCTS: Final = ("starter", "team", "analytics", "support-plus", "training", "api")
_FIRST: Final = ("Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hugo", "Ines",
                 "Jonas", "Karin", "Lars", "Mia", "Nils", "Olga", "Paul", "Rosa", "Sven",
                 "Tara", "Ulf")  # fmt: skip
_LAST: Final = ("Berg", "Schmidt", "Lund", "Meyer", "Novak", "Dubois", "Klein", "Holm",
                "Fischer", "Weber", "Nyberg", "Costa", "Brandt", "Falk")  # fmt: skip
_COUNTRIES: Final = ("DE", "DE", "DE", "SE", "SE", "AT", "CH", "GB", "FR", "NL")
_SOURCES: Final = (
    ("pricing-page", LeadChannel.FORM),
    ("newsletter", LeadChannel.NEWSLETTER),
    ("webinar", LeadChannel.EVENT),
    ("support-chat", LeadChannel.CHAT),
)
_LOST: Final = ("price", "no budget this year", "chose a competitor", "no decision")
_OWNERS: Final = ("ben", "carla")


def _days(rnd: random.Random, low: float, high: float) -> timedelta:
    return timedelta(days=rnd.uniform(low, high))


def make_history(crm: CRM, clock: FixedClock, *, start: datetime, people: int = 160) -> None:
    """Make the year before ``start``: ``people`` contacts with their leads, deals,
    purchases, tickets and survey answers, all dated before ``start``."""
    rnd = random.Random(2026)
    first_day = start - timedelta(days=365)
    bulk: list[Activity] = []
    for index in range(people):
        clock.set(first_day + timedelta(days=340 * index / people, hours=rnd.uniform(0, 8)))
        bulk += _person(crm, clock, rnd, index, start)
    with crm.store.unit_of_work() as unit:
        unit.activities.add_many(sorted(bulk, key=lambda a: a.occurred_at))
        unit.commit()


def _person(
    crm: CRM, clock: FixedClock, rnd: random.Random, index: int, start: datetime
) -> Iterator[Activity]:
    first, last = rnd.choice(_FIRST), rnd.choice(_LAST)
    source, channel = rnd.choice(_SOURCES)
    captured = crm.capture_lead(
        Touchpoint(
            email=f"{first}.{last}.{index}@example.net".lower(),
            source=source,
            channel=channel,
            first_name=first,
            last_name=last,
            country=rnd.choice(_COUNTRIES),
        ),
        owner=rnd.choice(_OWNERS),
    )
    contact = captured.contact.id
    if rnd.random() < 0.75:
        crm.record_consent(contact, ConsentChannel.EMAIL, "newsletter", source=source)
    if rnd.random() < 0.45:
        return  # a lead that never went further
    owner = captured.lead.owner or "ben"
    clock.advance(_days(rnd, 1, 10))
    amount = Money(Decimal(rnd.choice((2400, 4800, 7200, 9600, 14400, 24000))), "EUR")
    close = (clock.now() + _days(rnd, 20, 75)).date()
    deal = crm.convert_lead(
        captured.lead.id,
        pipeline="sales",
        title=f"{last} {rnd.choice(PRODUCTS)}",
        amount=amount,
        expected_close=close,
        by=owner,
    ).deal
    if clock.now() + timedelta(days=20) > start:
        return  # still in discovery when the story begins
    clock.advance(_days(rnd, 5, 20))
    crm.move_deal(deal.id, "proposal", by=owner)
    fate = rnd.random()
    if clock.now() + timedelta(days=30) > start and fate < 0.6:
        return  # an open proposal
    if fate < 0.3:
        clock.advance(_days(rnd, 3, 25))
        crm.lose_deal(deal.id, by=owner, reason=rnd.choice(_LOST))
        return
    clock.advance(_days(rnd, 5, 20))
    other = "carla" if owner == "ben" else "ben"
    crm.move_deal(deal.id, "negotiation", by=owner, approved_by=other)
    if clock.now() + timedelta(days=25) > start:
        return  # an open negotiation
    clock.advance(_days(rnd, 3, 20))
    if rnd.random() < 0.25:
        crm.lose_deal(deal.id, by=owner, reason=rnd.choice(_LOST))
        return
    crm.win_deal(deal.id, by=owner)
    yield from _customer(crm, clock, rnd, contact, start)


def _customer(
    crm: CRM, clock: FixedClock, rnd: random.Random, contact: UUID, start: datetime
) -> Iterator[Activity]:
    """A customer's purchases, tickets, survey answer and perhaps their leaving."""
    rate = rnd.uniform(0.02, 0.08)  # purchases per day
    spend = rnd.uniform(60, 400)
    leaves = clock.now() + _days(rnd, 60, 300) if rnd.random() < 0.3 else None
    when = clock.now() + _days(rnd, 0, 5)
    end = min(start, leaves) if leaves is not None else start
    while when < end:
        yield Activity.new(
            contact_id=contact,
            kind=ActivityKind.PURCHASE,
            occurred_at=when,
            amount=Money(Decimal(f"{rnd.gammavariate(4, spend / 4):.2f}"), "EUR"),
            properties={"product": rnd.choice(PRODUCTS)},
            clock=clock,
        )
        when += timedelta(days=rnd.expovariate(rate))
    if rnd.random() < 0.8:
        yield Activity.new(
            contact_id=contact,
            kind=ActivityKind.FORM_SUBMITTED,
            occurred_at=min(start, clock.now() + _days(rnd, 20, 90)) - timedelta(hours=1),
            subject="NPS survey",
            properties={"nps": rnd.choice((10, 10, 9, 9, 9, 8, 8, 7, 6, 4))},
            clock=clock,
        )
    if rnd.random() < 0.6:
        _ticket(crm, clock, rnd, contact, start)
    if leaves is not None and leaves < start:
        clock.set(max(clock.now(), leaves))
        crm.reset_contact(contact, LifecycleStage.OTHER, by="carla", reason="cancelled")


def _ticket(
    crm: CRM, clock: FixedClock, rnd: random.Random, contact: UUID, start: datetime
) -> None:
    """A ticket answered after a while, solved and (often) rated."""
    opened = clock.now() + _days(rnd, 5, 60)
    if opened + timedelta(days=4) > start:
        return
    clock.set(opened)
    ticket = crm.open_ticket(
        contact,
        subject=rnd.choice(("Invoice question", "Cannot log in", "Export fails", "New user")),
        channel=rnd.choice(tuple(TicketChannel)),
        priority=rnd.choice((TicketPriority.NORMAL, TicketPriority.NORMAL, TicketPriority.HIGH)),
    )
    agent = rnd.choice(("sam", "kim"))
    clock.advance(timedelta(minutes=rnd.choice((20, 45, 90, 240, 600, 1500))))
    crm.reply_to_ticket(ticket.id, by=agent, text="Thanks, we are on it.")
    clock.advance(timedelta(hours=rnd.choice((1, 3, 6, 20, 50))))
    crm.solve_ticket(ticket.id, by=agent)
    if rnd.random() < 0.75:
        clock.advance(timedelta(hours=2))
        crm.record_csat(ticket.id, rnd.choice((5, 5, 5, 4, 4, 3, 2)))
