"""An erased person's tombstone takes no personal data again (host trial, issue 15): the
use cases that would write some raise ``Erased``; a capture that finds the tombstone by
an address kept for a merge raises ``Suppressed``; an old double opt-in link cannot grant
consent to it. And a pending double opt-in follows its contact into a merge."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crmkit.crm import CRM
from crmkit.errors import Erased, Suppressed
from crmkit.lifecycle import Touchpoint
from crmkit.models import (
    Activity,
    ActivityKind,
    ConsentChannel,
    ConsentStatus,
    Contact,
    LeadChannel,
    Task,
    TicketChannel,
)
from crmkit.privacy import ConsentPolicy
from crmkit.storage import Store
from tests.storage_support import STORES, stepping_store

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
SECRET = b"a-host-secret-of-32-bytes-or-more!"


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from stepping_store(request.param, tmp_path, T0, "tombstone")


@pytest.fixture
def crm(store: Store) -> CRM:
    return CRM(
        store,
        consent_policy=ConsentPolicy({"newsletter"}),
        token_secret=SECRET,
        privacy_secret=SECRET,
    )


def person(crm: CRM, email: str, **fields: object) -> Contact:
    return crm.create_contact(Contact.new(email=email, clock=crm.clock, **fields))  # type: ignore[arg-type]


def snapshot(crm: CRM, contact: Contact) -> tuple[object, ...]:
    with crm.store.unit_of_work() as unit:
        return (
            unit.contacts.get(contact.id),
            unit.consents.for_contact(contact.id),
            unit.tickets.count(),
            unit.activities.count(),
            unit.tasks.count(),
        )


def test_no_use_case_writes_personal_data_to_a_tombstone(crm: CRM) -> None:
    ada = person(crm, "ada@example.org", first_name="Ada")
    ticket = crm.open_ticket(ada.id, subject="Login", channel=TicketChannel.EMAIL)
    crm.erase_person(ada.id, by="dpo", reason="art. 17")
    before = snapshot(crm, ada)
    email, news = ConsentChannel.EMAIL, "newsletter"
    attempts = [
        lambda: crm.update_contact(ada.id, first_name="Zombie"),
        lambda: crm.record_consent(ada.id, email, news, source="form"),
        lambda: crm.request_consent(ada.id, email, news, source="form"),
        lambda: crm.open_ticket(ada.id, subject="hi", channel=TicketChannel.EMAIL),
        lambda: crm.reply_to_ticket(ticket.id, text="It's Ada again, call me", by=None),
        lambda: crm.record_activity(
            Activity.new(contact_id=ada.id, kind=ActivityKind.NOTE, body="x", clock=crm.clock)
        ),
        lambda: crm.create_task(
            Task.new(
                title="Call", due_at=T0 + timedelta(days=1), contact_id=ada.id, clock=crm.clock
            )
        ),
    ]
    for attempt in attempts:
        with pytest.raises(Erased) as caught:
            attempt()
        assert caught.value.id == ada.id
    assert snapshot(crm, ada) == before
    # Protective decisions stay possible: a withdrawal records no personal data.
    withdrawn = crm.withdraw_consent(ada.id, email, news, source="unsubscribe")
    assert withdrawn.status is ConsentStatus.WITHDRAWN


def test_an_old_confirmation_link_grants_nothing_after_erasure(crm: CRM) -> None:
    ada = person(crm, "ada@example.org")
    request = crm.request_consent(ada.id, ConsentChannel.EMAIL, "newsletter", source="footer")
    crm.erase_person(ada.id, by="dpo", reason="art. 17")
    with pytest.raises(Erased):
        crm.confirm_consent(request.token)
    assert [s.status for s in crm.consents(ada.id)] == [ConsentStatus.PENDING]


def test_merges_with_a_tombstone_are_refused(crm: CRM) -> None:
    ada = person(crm, "ada@example.org")
    other = person(crm, "ada.l@example.org")
    crm.erase_person(ada.id, by="dpo", reason="art. 17")
    for survivor, merged in ((ada.id, other.id), (other.id, ada.id)):
        with pytest.raises(Erased):
            crm.merge_contacts(survivor, [merged], dry_run=True)
        with pytest.raises(Erased):
            crm.merge_contacts(survivor, [merged])
    assert crm.merges_of(ada.id) == []
    assert crm.merges_of(other.id) == []


def test_a_capture_by_an_address_merged_into_an_erased_person_is_suppressed(crm: CRM) -> None:
    work = person(crm, "ada@work.example", last_name="Lovelace")
    private = person(crm, "ada.private@example.org", first_name="Ada", phone="+4915112345678")
    crm.merge_contacts(work.id, [private.id])
    crm.erase_person(work.id, by="dpo", reason="art. 17")
    before = snapshot(crm, work)
    touch = Touchpoint(
        email="ada.private@example.org", first_name="Ada", source="fair", channel=LeadChannel.EVENT
    )
    with pytest.raises(Suppressed):
        crm.capture_lead(touch)
    assert snapshot(crm, work) == before
    assert crm.is_suppressed(email="ada.private@example.org")  # merged in: the same person
    assert crm.is_suppressed(phone="+4915112345678")


def test_a_pending_opt_in_follows_its_contact_into_a_merge(crm: CRM) -> None:
    kept = person(crm, "ada@example.org")
    merged = person(crm, "ada.l@example.org")
    request = crm.request_consent(merged.id, ConsentChannel.EMAIL, "newsletter", source="footer")
    crm.merge_contacts(kept.id, [merged.id])
    grant = crm.confirm_consent(request.token)
    assert grant.contact_id == kept.id
    states = crm.consents(kept.id)
    assert [(s.purpose, s.status) for s in states] == [("newsletter", ConsentStatus.GRANTED)]


def test_after_an_unmerge_a_request_is_confirmed_for_its_own_contact(crm: CRM) -> None:
    ada = person(crm, "ada@example.org")
    bo = person(crm, "bo@example.org")
    mine = crm.request_consent(ada.id, ConsentChannel.EMAIL, "newsletter", source="footer")
    crm.request_consent(bo.id, ConsentChannel.EMAIL, "newsletter", source="footer")
    crm.merge_contacts(bo.id, [ada.id])
    crm.unmerge(crm.merges_of(ada.id)[0].id)  # back apart: the request is Ada's again
    grant = crm.confirm_consent(mine.token)
    assert grant.contact_id == ada.id
