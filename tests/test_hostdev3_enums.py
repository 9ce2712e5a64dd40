"""Regression test for finding #13 of the hostdev3 evaluation: every enum parameter of
the CRM API (and the enum fields of the models it takes) accepts the member and its
value alike, and refuses an unknown string with a ValidationError naming the field."""

import enum
import inspect
import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.errors import ValidationError
from crmkit.lifecycle import Touchpoint
from crmkit.models import Contact, Deal, LifecycleStage, Ticket, TicketChannel, TicketPriority
from crmkit.privacy import ConsentPolicy
from crmkit.segmentation import contacts_where, field
from crmkit.storage import MemoryStore

START = datetime(2026, 1, 5, 9, tzinfo=UTC)
JAN, FEB = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)


def _crm() -> tuple[CRM, Any]:
    clock = FixedClock(START, step=timedelta(seconds=1))
    crm = CRM(
        MemoryStore(clock=clock),
        clock=clock,
        token_secret=b"t" * 32,
        consent_policy=ConsentPolicy({"news"}),
    )
    contact = crm.create_contact(Contact.new(email="a@x.org", clock=clock))
    return crm, contact.id


def _ticket(crm: CRM, cid: Any) -> Any:
    return crm.open_ticket(cid, subject="s", channel=TicketChannel.EMAIL).id


def _deal(crm: CRM, cid: Any) -> Any:
    deal = Deal.new(title="t", pipeline="sales", stage="new", contact_id=cid, clock=crm.clock)
    with crm.store.unit_of_work() as unit:
        unit.deals.add(deal)
        unit.commit()
    return deal.id


_ANYONE = contacts_where(field("email").is_not_null())

# (method, parameter) -> a call with the value, or None for the default value
CALLS: dict[tuple[str, str], tuple[str, Callable[[CRM, Any, Any], object]]] = {
    ("advance_contact", "event"): ("lead_captured", lambda c, i, v: c.advance_contact(i, v)),
    ("audience", "channel"): ("email", lambda c, i, v: c.audience(_ANYONE, v, "news")),
    ("audit_trail", "subject"): ("contact", lambda c, i, v: c.audit_trail(v, i)),
    ("history", "subject"): ("contact", lambda c, i, v: c.history(v, i)),
    ("customer_report", "granularity"): (
        "month",
        lambda c, i, v: c.customer_report(start=JAN, end=FEB, granularity=v),
    ),
    ("service_report", "granularity"): (
        "month",
        lambda c, i, v: c.service_report(start=JAN, end=FEB, granularity=v),
    ),
    ("set_forecast_category", "category"): (
        "commit",
        lambda c, i, v: c.set_forecast_category(_deal(c, i), v),
    ),
    ("deliveries", "status"): ("dead", lambda c, i, v: c.deliveries(status=v)),
    ("subscribe", "start"): ("now", lambda c, i, v: c.subscribe("*", print, name="h", start=v)),
    ("steps", "status"): ("pending", lambda c, i, v: c.steps(status=v)),
    ("set_do_not_contact", "channel"): (
        "email",
        lambda c, i, v: c.set_do_not_contact(i, v, "asked", source="x"),
    ),
    ("set_do_not_contact", "reason"): (
        "asked",
        lambda c, i, v: c.set_do_not_contact(i, "phone", v, source="x"),
    ),
    ("lift_do_not_contact", "channel"): (
        "email",
        lambda c, i, v: c.lift_do_not_contact(i, v, source="x"),
    ),
    ("lift_do_not_contact", "reason"): (
        "asked",
        lambda c, i, v: c.lift_do_not_contact(i, "email", reason=v, source="x"),
    ),
    ("move_ticket", "to"): ("open", lambda c, i, v: c.move_ticket(_ticket(c, i), v, by="a")),
    ("open_ticket", "channel"): (
        "email",
        lambda c, i, v: c.open_ticket(i, subject="s", channel=v),
    ),
    ("open_ticket", "priority"): (
        "high",
        lambda c, i, v: c.open_ticket(i, subject="s", channel="email", priority=v),
    ),
    ("record_consent", "channel"): (
        "email",
        lambda c, i, v: c.record_consent(i, v, "news", source="x"),
    ),
    ("record_consent", "legal_basis"): (
        "consent",
        lambda c, i, v: c.record_consent(i, "email", "news", source="x", legal_basis=v),
    ),
    ("reply_to_ticket", "kind"): (
        "email_sent",
        lambda c, i, v: c.reply_to_ticket(_ticket(c, i), by="a", text="hi", kind=v),
    ),
    ("request_consent", "channel"): (
        "email",
        lambda c, i, v: c.request_consent(i, v, "news", source="x"),
    ),
    ("reset_contact", "to"): (
        "customer",
        lambda c, i, v: c.reset_contact(i, v, by="a", reason="r"),
    ),
    ("withdraw_consent", "channel"): (
        "email",
        lambda c, i, v: c.withdraw_consent(i, v, "news", source="x"),
    ),
}


def _enum_parameters() -> set[tuple[str, str]]:
    found = set()
    for name, function in inspect.getmembers(CRM, inspect.isfunction):
        if name.startswith("_"):
            continue
        for parameter, hint in typing.get_type_hints(function, localns={"CRM": CRM}).items():
            for kind in typing.get_args(hint) or (hint,):
                if isinstance(kind, type) and issubclass(kind, enum.Enum):
                    found.add((name, parameter))
    return found


def test_every_enum_parameter_of_the_crm_is_covered() -> None:
    assert _enum_parameters() <= set(CALLS), "a new enum parameter: add it to CALLS"


@pytest.mark.parametrize("key", sorted(CALLS), ids=".".join)
def test_an_enum_parameter_takes_the_member_or_its_value(key: tuple[str, str]) -> None:
    value, call = CALLS[key]
    crm, cid = _crm()
    call(crm, cid, value)  # the value, as JSON or a form would give it
    crm, cid = _crm()
    hint = typing.get_type_hints(getattr(CRM, key[0]), localns={"CRM": CRM})[key[1]]
    kind = next(k for k in (typing.get_args(hint) or (hint,)) if isinstance(k, type))
    call(crm, cid, kind(value))  # the member
    crm, cid = _crm()
    with pytest.raises(ValidationError) as refused:
        call(crm, cid, "bogus")
    assert key[1] in {p.field for p in refused.value.problems}


def test_models_and_touchpoints_read_enum_values() -> None:
    ticket = Ticket.new(subject="s", contact_id=uuid4(), channel="email", priority="high")  # type: ignore[arg-type]
    assert (ticket.channel, ticket.priority) == (TicketChannel.EMAIL, TicketPriority.HIGH)
    assert Contact.new(email="b@x.org", lifecycle_stage="customer").lifecycle_stage is (  # type: ignore[arg-type]
        LifecycleStage.CUSTOMER
    )
    touch = Touchpoint(email="z@x.org", source="web", channel="form")  # type: ignore[arg-type]
    assert touch.channel.value == "form"
    with pytest.raises(ValidationError) as wrong:
        Ticket.new(subject="s", contact_id=uuid4(), channel="fax")  # type: ignore[arg-type]
    assert wrong.value.field == "channel"
