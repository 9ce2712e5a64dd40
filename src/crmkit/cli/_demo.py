"""``crmkit demo``: a few contacts, a lead and a deal, made in memory and shown as tables."""

from collections.abc import Callable
from decimal import Decimal

from crmkit.cli._table import render_table
from crmkit.clock import Clock
from crmkit.models import (
    Account,
    Contact,
    Deal,
    Lead,
    LeadChannel,
    LeadStatus,
    LifecycleStage,
    Money,
)

__all__ = ["run_demo"]


def run_demo(clock: Clock, write: Callable[[str], object]) -> None:
    """Build the sample data with ``clock`` and write the tables through ``write``."""
    acme = Account.new(name="Acme Tools GmbH", domain="acme-tools.de", country="DE", clock=clock)
    ada = Contact.new(
        first_name="Ada",
        last_name="Lovelace",
        email="Ada.Lovelace@Example.COM",
        phone="+44 20 7946 0958",
        country="gb",
        language="en-gb",
        lifecycle_stage=LifecycleStage.LEAD,
        tags=["newsletter", "pricing-page"],
        clock=clock,
    )
    linus = Contact.new(
        first_name="Linus",
        last_name="Berg",
        email="linus.berg@acme-tools.de",
        phone="+49 30 901820",
        country="DE",
        language="de",
        account_id=acme.id,
        lifecycle_stage=LifecycleStage.OPPORTUNITY,
        custom={"plan": "team", "seats": 12},
        clock=clock,
    )
    sara = Contact.new(
        email="sara@kund.se",
        country="SE",
        language="sv",
        tags=["webinar"],
        clock=clock,
    )
    lead = Lead.new(
        contact_id=ada.id,
        source="pricing-page",
        channel=LeadChannel.FORM,
        status=LeadStatus.WORKING,
        score=42.0,
        clock=clock,
    )
    deal = Deal.new(
        title="Acme: 12 team seats",
        pipeline="sales",
        stage="proposal",
        amount=Money("14400.00", "EUR"),
        probability=Decimal("0.6"),
        contact_id=linus.id,
        account_id=acme.id,
        clock=clock,
    )
    names = {c.id: c.display_name for c in (ada, linus, sara)}

    write("crmkit demo: a few contacts, a lead and a deal, in memory\n")
    write("Contacts")
    write(
        render_table(
            ["name", "e-mail", "phone", "country", "language", "stage", "tags"],
            [
                [
                    c.display_name,
                    c.email or "",
                    c.phone or "",
                    c.country or "",
                    c.language or "",
                    c.lifecycle_stage,
                    ", ".join(sorted(c.tags)),
                ]
                for c in (ada, linus, sara)
            ],
        )
    )
    write("\nLeads")
    write(
        render_table(
            ["contact", "source", "channel", "status", "score"],
            [[names[lead.contact_id], lead.source, lead.channel, lead.status, f"{lead.score:g}"]],
        )
    )
    write("\nDeals")
    weighted = (deal.amount * deal.probability).rounded() if deal.amount else None
    write(
        render_table(
            ["title", "contact", "pipeline", "stage", "amount", "probability", "weighted"],
            [
                [
                    deal.title,
                    names[deal.contact_id] if deal.contact_id else "",
                    deal.pipeline,
                    deal.stage,
                    str(deal.amount) if deal.amount else "",
                    f"{deal.probability:.0%}",
                    str(weighted or ""),
                ]
            ],
        )
    )
