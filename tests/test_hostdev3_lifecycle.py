"""Regression tests for the lifecycle findings of the hostdev3 evaluation, on memory,
SQLite and PostgreSQL: a merge that demoted a customer (#7), a won deal reopened and
lost (#10)."""

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from crmkit.crm import CRM
from crmkit.errors import Duplicate, ValidationError
from crmkit.lifecycle import Pipeline, Stage, StageKind, Touchpoint
from crmkit.models import Contact, LeadChannel, LifecycleStage, Money, SubjectKind
from crmkit.quality import MergePolicy, Strategy
from crmkit.storage import Store
from tests.storage_support import STORES, stepping_store

START = datetime(2026, 1, 5, 9, tzinfo=UTC)
SALES = Pipeline(
    key="sales",
    label="Sales",
    subject=SubjectKind.DEAL,
    stages=(
        Stage(key="discovery", label="D", probability=Decimal("0.2")),
        Stage(key="proposal", label="P", probability=Decimal("0.5")),
        Stage(key="won", label="W", probability=Decimal(1), kind=StageKind.WON),
        Stage(key="lost", label="L", kind=StageKind.LOST),
    ),
)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from stepping_store(request.param, tmp_path, START, "hostdev3l")


def _won_customer(crm: CRM, email: str) -> tuple[object, object]:
    touch = Touchpoint(email=email, first_name="Ada", source="web", channel=LeadChannel.FORM)
    lead = crm.capture_lead(touch).lead
    deal = crm.convert_lead(lead.id, pipeline="sales", title="a", amount=Money("1000", "EUR")).deal
    crm.win_deal(deal.id, by="ann")
    return lead.contact_id, deal.id


def test_a_merge_keeps_the_furthest_lifecycle_stage(store: Store) -> None:
    """#7: merging a customer into a subscriber leaves a customer, by default."""
    crm = CRM(store, pipelines=[SALES])
    buyer, _deal = _won_customer(crm, "buyer@x.org")
    sub = crm.create_contact(Contact.new(email="ada@home.org", first_name="Ada", clock=store.clock))
    assert sub.lifecycle_stage is LifecycleStage.SUBSCRIBER
    plan = crm.merge_contacts(sub.id, [buyer], dry_run=True)
    assert ("lifecycle_stage", LifecycleStage.SUBSCRIBER, LifecycleStage.CUSTOMER) in [
        (c.field, c.before, c.after) for c in plan.changes
    ]
    done = crm.merge_contacts(sub.id, [buyer])
    assert done.survivor.lifecycle_stage is LifecycleStage.CUSTOMER
    assert [c.id for c in crm.customers()] == [sub.id]
    keep = MergePolicy.of(Contact, {"lifecycle_stage": "survivor"})
    assert keep.fields["lifecycle_stage"] is Strategy.SURVIVOR
    with pytest.raises(ValidationError) as wrong:
        MergePolicy.of(Contact, {"phone": "furthest"})
    assert wrong.value.field == "policies.phone"


REOPENABLE = Pipeline(
    key="sales",
    label="Sales",
    subject=SubjectKind.DEAL,
    stages=SALES.stages,
    reopen=True,
)


def test_a_won_deal_reopened_is_no_purchase_any_more(store: Store) -> None:
    """#10: won, reopened and lost: the contact is no customer; a contact with another
    won deal stays one."""
    crm = CRM(store, pipelines=[REOPENABLE])
    one, deal = _won_customer(crm, "one@x.org")
    two, first = _won_customer(crm, "two@x.org")
    touch = Touchpoint(email="two@x.org", source="web", channel=LeadChannel.FORM)
    lead = crm.capture_lead(touch).lead
    second = crm.convert_lead(lead.id, pipeline="sales", title="b").deal.id
    crm.win_deal(second, by="ann")
    assert {c.id for c in crm.customers()} == {one, two}
    crm.reopen_deal(deal, to="proposal", by="ann", reason="customer cancelled")
    crm.lose_deal(deal, by="ann", reason="cancelled")
    crm.reopen_deal(first, to="proposal", by="ann", reason="customer cancelled")
    assert {c.id for c in crm.customers()} == {two}
    with store.unit_of_work() as unit:
        assert unit.contacts.get(one).lifecycle_stage is LifecycleStage.OPPORTUNITY
    last = crm.history(SubjectKind.CONTACT, one)[-1]
    assert (last.from_stage, last.to_stage) == ("customer", "opportunity")
    assert last.reason == "deal reopened: customer cancelled"


def test_a_plus_tag_signup_finds_the_contact_of_its_mailbox(store: Store) -> None:
    """#18: ``AdaLovelace+news@gmail.com`` is ``ada.lovelace@gmail.com``'s mailbox."""
    crm = CRM(store)
    ada = crm.create_contact(
        Contact.new(email="ada.lovelace@gmail.com", first_name="Ada", clock=store.clock)
    )
    touch = Touchpoint(
        email="AdaLovelace+news@gmail.com", source="newsletter", channel=LeadChannel.FORM
    )
    captured = crm.capture_lead(touch)
    assert captured.contact.id == ada.id
    assert not captured.contact_created
    assert captured.contact.email == "ada.lovelace@gmail.com"
    other = Touchpoint(email="grace+x@gmail.com", source="newsletter", channel=LeadChannel.FORM)
    assert crm.capture_lead(other).contact_created


def test_an_import_names_both_items_of_one_address(store: Store) -> None:
    """#18: two spellings of one address in a batch: the error names both items."""
    crm = CRM(store)
    people = [Contact.new(email=f"p{n}@x.org", clock=store.clock) for n in range(3)] + [
        Contact.new(email="ÅSA.ROSSI@gmail.com", clock=store.clock)
    ]
    people.insert(1, Contact.new(email="åsa.rossi@gmail.com", clock=store.clock))
    with pytest.raises(Duplicate) as clash:
        crm.import_contacts(people)
    assert (clash.value.field, clash.value.index, clash.value.other_index) == ("email", 4, 1)
    assert "item [4] has the address of item [1]" in str(clash.value)
    with store.unit_of_work() as unit:
        assert unit.contacts.count() == 0, "nothing was stored"
