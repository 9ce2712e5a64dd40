"""E-mail identity: one contact per folded address and tenant, under concurrency too;
long replies; deal snapshots in the stage history."""

import multiprocessing
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from uuid import uuid4

import attrs
import pytest

from crmkit.clock import FixedClock
from crmkit.crm import CRM, REPLY_LIMIT
from crmkit.errors import Duplicate, ValidationError
from crmkit.lifecycle import Pipeline, Stage, StageKind, Touchpoint
from crmkit.models import (
    Contact,
    EmailAddress,
    LeadChannel,
    Money,
    SubjectKind,
    TicketChannel,
)
from crmkit.storage import MemoryStore, Store
from crmkit.storage.sql import open_store
from tests.storage_support import STORES, postgres_url, stepping_store

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
SALES = Pipeline(
    key="sales",
    label="Sales",
    subject=SubjectKind.DEAL,
    stages=(
        Stage(key="new", label="New", probability=Decimal("0.1")),
        Stage(key="offer", label="Offer", probability=Decimal("0.6")),
        Stage(key="won", label="Won", probability=Decimal(1), kind=StageKind.WON),
        Stage(key="lost", label="Lost", kind=StageKind.LOST),
    ),
)


def _url(kind: str, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'crm.db'}" if kind == "sqlite" else postgres_url()


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from stepping_store(request.param, tmp_path, NOW, "id")


def touch(email: str, source: str = "web") -> Touchpoint:
    return Touchpoint(email=email, source=source, channel=LeadChannel.FORM)


def test_one_contact_per_address_whatever_its_case(store: Store) -> None:
    crm = CRM(store)
    first = crm.capture_lead(touch("Grace.Hopper@Navy.example"))
    again = crm.capture_lead(touch("grace.HOPPER@navy.example", "newsletter"))
    assert again.contact.id == first.contact.id
    assert not again.contact_created
    assert crm.find_contact("GRACE.hopper@NAVY.example") == again.contact
    with store.unit_of_work() as unit:
        assert unit.contacts.count() == 1
        with pytest.raises(Duplicate) as taken:
            unit.contacts.add(Contact.new(email="GRACE.HOPPER@navy.example"))
        assert taken.value.field == "email"
        assert taken.value.index is None  # a single write has no index
        assert "grace" in str(taken.value).casefold()
        other = Contact.new(email="other@navy.example")
        unit.contacts.add(other)
        with pytest.raises(Duplicate):  # an update cannot take the address either
            unit.contacts.update(
                attrs.evolve(other, email=EmailAddress("Grace.Hopper@navy.example"))
            )
        with pytest.raises(Duplicate) as batch:
            unit.contacts.add_many(
                [Contact.new(email="a@b.example"), Contact.new(email="A@b.example")]
            )
        assert batch.value.index == 1


def test_a_store_may_let_contacts_share_an_address(tmp_path: Path) -> None:
    for store in (
        MemoryStore(unique_emails=False),
        open_store(f"sqlite:///{tmp_path / 'shared.db'}", unique_emails=False),
    ):
        older = Contact.new(email="desk@shop.example", clock=FixedClock(NOW))
        newer = Contact.new(email="Desk@shop.example", clock=FixedClock(NOW + timedelta(1)))
        with store.unit_of_work() as unit:
            unit.contacts.add_many([newer, older])
            unit.commit()
        with store.unit_of_work() as unit:
            assert unit.contacts.with_email(EmailAddress("DESK@shop.example")) == [older, newer]
        assert CRM(store).capture_lead(touch("desk@shop.example")).contact.id == older.id
        store.close()


def _capture_all(url: str, tenant: str, addresses: list[str], seed: int) -> None:
    """One process of the race: capture every address, in an order of its own."""
    store = open_store(url, tenant=tenant)
    crm = CRM(store)
    order = list(addresses)
    random.Random(seed).shuffle(order)
    for address in order:
        crm.capture_lead(touch(address))
    store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_concurrent_captures_of_a_new_address_make_one_contact(kind: str, tmp_path: Path) -> None:
    url, tenant = _url(kind, tmp_path), f"race-{uuid4().hex[:12]}"
    open_store(url, tenant=tenant).close()  # the tables exist before the race
    addresses = [f"racer.{n}@example.org" for n in range(30)]
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_capture_all, args=(url, tenant, addresses, seed))
        for seed in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    store = open_store(url, tenant=tenant)
    with store.unit_of_work() as unit:
        assert unit.contacts.count() == len(addresses)
        assert unit.leads.count() == len(addresses)  # repeat touches attach to the lead
        assert unit.activities.count() == 4 * len(addresses)
        for address in addresses:
            assert len(unit.contacts.with_email(EmailAddress(address))) == 1
    store.close()


def test_a_long_reply_is_the_body_and_its_first_line_the_subject(store: Store) -> None:
    crm = CRM(store)
    contact = crm.capture_lead(touch("kim@example.org")).contact
    ticket = crm.open_ticket(contact.id, subject="Broken", channel=TicketChannel.EMAIL)
    text = "Hello Kim,\n\n" + "We looked into it. " * 100
    _, reply = crm.reply_to_ticket(ticket.id, by="bo", text=text)
    assert reply.body == text.strip()
    assert reply.subject == "Hello Kim,"
    long_line = "x" * 600
    _, reply = crm.reply_to_ticket(ticket.id, by="bo", text=long_line)
    assert reply.subject is not None
    assert len(reply.subject) == 200
    assert reply.subject.endswith("\u2026")
    with pytest.raises(ValidationError) as refused:
        crm.reply_to_ticket(ticket.id, by="bo", text="y" * (REPLY_LIMIT + 1))
    assert refused.value.field == "text"
    with pytest.raises(ValidationError) as blank:
        crm.reply_to_ticket(ticket.id, by="bo", text="  \n ")
    assert blank.value.field == "text"


def test_the_history_keeps_what_a_deal_moved_with(store: Store) -> None:
    crm = CRM(store, pipelines=[SALES])
    lead = crm.capture_lead(touch("lin@example.org")).lead
    deal = crm.convert_lead(
        lead.id,
        pipeline="sales",
        title="Seats",
        amount=Money(Decimal(50_000), "EUR"),
        expected_close=date(2027, 1, 31),
    ).deal
    crm.update_deal(deal.id, amount=Money(Decimal(40_000), "EUR"), expected_close=date(2027, 3, 1))
    crm.move_deal(deal.id, "offer", by="ann")
    crm.update_deal(deal.id, amount=Money(Decimal(1), "EUR"))
    history = crm.history(SubjectKind.DEAL, deal.id)
    moves = [c for c in history if c.reason != "updated"]
    assert [(c.to_stage, c.amount, c.expected_close) for c in moves] == [
        ("new", Money(Decimal(50_000), "EUR"), date(2027, 1, 31)),
        ("offer", Money(Decimal(40_000), "EUR"), date(2027, 3, 1)),
    ]
    # An update is recorded in its stage, with the values it set (the as-of replay of
    # the forecast reads them), and changes no earlier entry.
    updates = [c for c in history if c.reason == "updated"]
    assert [(c.from_stage, c.to_stage, c.amount) for c in updates] == [
        ("new", "new", Money(Decimal(40_000), "EUR")),
        ("offer", "offer", Money(Decimal(1), "EUR")),
    ]
