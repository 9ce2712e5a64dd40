"""Consent as a ledger, double opt-in, do-not-contact and audiences that respect them,
through the CRM on memory, SQLite and PostgreSQL."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.errors import (
    InvalidRule,
    InvalidToken,
    NotFound,
    TokenExpired,
    UndeclaredPurpose,
    ValidationError,
)
from crmkit.models import (
    Activity,
    ActivityKind,
    Consent,
    ConsentChannel,
    ConsentStatus,
    Contact,
    DoNotContactReason,
    LegalBasis,
    Segment,
)
from crmkit.models.rules import Reachable, ReachCheck, Rule, RuleEntity
from crmkit.privacy import (
    ConsentPolicy,
    Evidence,
    FrequencyCap,
    consent_states,
    issue_token,
    verify_token,
)
from crmkit.segmentation import contacts_where, field, reachable
from crmkit.serialization import make_converter
from crmkit.storage import Store
from tests.storage_support import STORES, stepping_store

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
SECRET = b"s" * 32
POLICY = ConsentPolicy(
    {"newsletter", "sales"}, caps={ConsentChannel.EMAIL: FrequencyCap(max_messages=2, days=7)}
)
EMAIL, SMS = ConsentChannel.EMAIL, ConsentChannel.SMS


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from stepping_store(request.param, tmp_path, NOW, "consent")


@pytest.fixture
def crm(store: Store) -> CRM:
    return CRM(store, consent_policy=POLICY, token_secret=SECRET)


def person(crm: CRM, name: str, **fields: object) -> Contact:
    made = Contact.new(email=f"{name}@example.org", first_name=name, clock=crm.clock, **fields)  # type: ignore[arg-type]
    return crm.create_contact(made)


def all_consents(crm: CRM) -> list[Consent]:
    with crm.store.unit_of_work() as unit:
        return list(unit.consents.iterate())


# ---------------------------------------------------------------------------- the ledger


def test_the_ledger_keeps_every_decision_and_derives_the_one_in_force(crm: CRM) -> None:
    ada = person(crm, "ada")
    evidence = Evidence(form="signup", text="newsletter-v3", ip="203.0.113.7")
    granted = crm.record_consent(ada.id, EMAIL, "newsletter", source="form", evidence=evidence)
    assert (granted.contact_point, granted.evidence_ip, granted.legal_basis) == (
        "ada@example.org",
        "203.0.113.7",
        LegalBasis.CONSENT,
    )
    crm.record_consent(ada.id, SMS, "sales", source="contract", legal_basis=LegalBasis.CONTRACT)
    withdrawn = crm.withdraw_consent(ada.id, EMAIL, "newsletter", source="unsubscribe-link")

    history = crm.consent_history(ada.id)
    assert [c.status for c in history] == [
        ConsentStatus.GRANTED,
        ConsentStatus.GRANTED,
        ConsentStatus.WITHDRAWN,
    ]
    assert history[0] == granted  # never overwritten
    states = {(s.channel, s.purpose): s for s in crm.consents(ada.id)}
    assert states[EMAIL, "newsletter"].decision == withdrawn
    assert not states[EMAIL, "newsletter"].granted
    assert states[SMS, "sales"].granted


def test_an_expired_grant_is_no_longer_granted(crm: CRM) -> None:
    ada = person(crm, "ada")
    crm.record_consent(
        ada.id, EMAIL, "newsletter", source="form", expires_at=NOW + timedelta(days=30)
    )
    (state,) = crm.consents(ada.id, now=NOW + timedelta(days=29))
    assert state.granted
    (state,) = crm.consents(ada.id, now=NOW + timedelta(days=30))
    assert state.expired
    assert not state.granted


@pytest.mark.parametrize(
    ("channel", "purpose", "error", "field_name"),
    [
        ("fax", "newsletter", ValidationError, "channel"),
        (EMAIL, "ads", UndeclaredPurpose, "purpose"),
        (EMAIL, "Newsletter", UndeclaredPurpose, "purpose"),
        (EMAIL, None, UndeclaredPurpose, "purpose"),
    ],
)
def test_unknown_channels_and_undeclared_purposes_change_nothing(
    crm: CRM, channel: object, purpose: object, error: type[Exception], field_name: str
) -> None:
    ada = person(crm, "ada")
    for call in (crm.record_consent, crm.withdraw_consent, crm.request_consent):
        with pytest.raises(error) as caught:
            call(ada.id, channel, purpose, source="form")  # type: ignore[operator]
        assert caught.value.field == field_name  # type: ignore[attr-defined]
    with pytest.raises(error):
        crm.audience(contacts_where(field("email").is_not_null()), channel, purpose)  # type: ignore[arg-type]
    assert all_consents(crm) == []


def test_a_decision_cannot_be_dated_in_the_future(crm: CRM) -> None:
    ada = person(crm, "ada")
    with pytest.raises(ValidationError) as caught:
        crm.withdraw_consent(
            ada.id, EMAIL, "newsletter", source="import", decided_at=NOW + timedelta(days=9)
        )
    assert caught.value.field == "decided_at"
    assert all_consents(crm) == []


def test_consent_of_an_unknown_contact_is_not_found(crm: CRM) -> None:
    with pytest.raises(NotFound):
        crm.record_consent(uuid4(), EMAIL, "newsletter", source="form")
    assert all_consents(crm) == []


def test_the_use_cases_need_declared_purposes(store: Store) -> None:
    bare = CRM(store)
    ada = bare.create_contact(Contact.new(email="ada@example.org", clock=bare.clock))
    with pytest.raises(ValidationError) as caught:
        bare.record_consent(ada.id, EMAIL, "newsletter", source="form")
    assert caught.value.field == "consent_policy"
    with pytest.raises(ValidationError) as caught:
        CRM(store, consent_policy=POLICY, token_secret=b"short")
    assert caught.value.field == "token_secret"


# ---------------------------------------------------------------------------- double opt-in


def test_double_opt_in_grants_on_confirmation_only(crm: CRM) -> None:
    ada = person(crm, "ada")
    evidence = Evidence(form="footer", text="v1", ip="2001:db8::1")
    request = crm.request_consent(ada.id, EMAIL, "newsletter", source="footer", evidence=evidence)
    assert request.consent.status is ConsentStatus.PENDING
    assert request.expires_at == request.consent.created_at + timedelta(days=2)
    (state,) = crm.consents(ada.id)
    assert state.status is ConsentStatus.PENDING
    assert not state.granted
    everyone = Rule(RuleEntity.CONTACT, field("email").is_not_null())
    assert crm.audience(everyone, EMAIL, "newsletter").contact_ids == ()

    grant = crm.confirm_consent(request.token)
    assert (grant.status, grant.source, grant.evidence_ip) == (
        ConsentStatus.GRANTED,
        "double_opt_in",
        "2001:db8::1",
    )
    assert [c.status for c in crm.consent_history(ada.id)] == [
        ConsentStatus.PENDING,
        ConsentStatus.GRANTED,
    ]
    with pytest.raises(InvalidToken, match="decided since"):  # used once
        crm.confirm_consent(request.token)


def test_an_old_link_cannot_undo_a_withdrawal(crm: CRM) -> None:
    ada = person(crm, "ada")
    request = crm.request_consent(ada.id, EMAIL, "newsletter", source="footer")
    crm.confirm_consent(request.token)
    crm.withdraw_consent(ada.id, EMAIL, "newsletter", source="unsubscribe")
    before = crm.consent_history(ada.id)
    with pytest.raises(InvalidToken):
        crm.confirm_consent(request.token)
    assert crm.consent_history(ada.id) == before
    (state,) = crm.consents(ada.id)
    assert state.status is ConsentStatus.WITHDRAWN


def test_expired_and_tampered_tokens_are_refused_and_change_nothing(store: Store) -> None:
    clock = FixedClock(NOW)
    crm = CRM(store, consent_policy=POLICY, token_secret=SECRET, clock=clock)
    ada = crm.create_contact(Contact.new(email="ada@example.org", clock=clock))
    request = crm.request_consent(
        ada.id, EMAIL, "newsletter", source="footer", valid_for=timedelta(hours=1)
    )
    before = all_consents(crm)
    body, signature = request.token.split(".")
    flipped = "A" if signature[0] != "A" else "B"
    forged = issue_token(request.consent, secret=b"x" * 32, expires_at=NOW + timedelta(days=9))
    respelled = (f"{body[:2]}\x00{body[2:]}.{signature}", f"{body}.{signature}=")  # same bytes
    tampered = (f"{body}.{flipped}{signature[1:]}", f"{body}x.{signature}", forged, "", "a.b")
    for bad in (*tampered, *respelled):
        with pytest.raises(InvalidToken) as caught:
            crm.confirm_consent(bad)
        assert caught.value.field == "token"
        assert not isinstance(caught.value, TokenExpired)
    clock.set(NOW + timedelta(hours=1))
    with pytest.raises(TokenExpired):
        crm.confirm_consent(request.token)
    assert all_consents(crm) == before


def test_a_request_needs_an_address_for_the_channel(crm: CRM) -> None:
    ada = person(crm, "ada")
    with pytest.raises(ValidationError) as caught:
        crm.request_consent(ada.id, SMS, "newsletter", source="form")
    assert caught.value.field == "contact_id"
    assert all_consents(crm) == []


@given(st.binary(min_size=1, max_size=80), st.integers(0, 200))
def test_a_token_changed_in_any_byte_is_refused(noise: bytes, position: int) -> None:
    request = Consent.new(
        contact_id=uuid4(),
        channel=EMAIL,
        purpose="newsletter",
        status=ConsentStatus.PENDING,
        source="form",
        clock=FixedClock(NOW),
    )
    token = issue_token(request, secret=SECRET, expires_at=NOW + timedelta(days=1))
    claims = verify_token(token, secret=SECRET, now=NOW)
    assert (claims.consent_id, claims.contact_id) == (request.id, request.contact_id)
    assert claims.expires_at == NOW + timedelta(days=1)
    at = position % len(token)
    changed = token[:at] + noise.decode("latin-1") + token[at + 1 :]
    if changed != token:
        with pytest.raises(InvalidToken):
            verify_token(changed, secret=SECRET, now=NOW)


# ---------------------------------------------------------------------------- do not contact


def test_do_not_contact_blocks_one_channel_until_lifted(crm: CRM) -> None:
    ada = person(crm, "ada", phone="+4930901820")
    for channel in (EMAIL, SMS):
        crm.record_consent(ada.id, channel, "newsletter", source="form")
    crm.set_do_not_contact(ada.id, EMAIL, DoNotContactReason.BOUNCED, source="bounces")
    everyone = contacts_where(field("email").is_not_null())
    email = crm.audience(everyone, EMAIL, "newsletter")
    assert email.contact_ids == ()
    assert email.excluded[ReachCheck.DO_NOT_CONTACT] == 1
    assert crm.audience(everyone, SMS, "newsletter").contact_ids == (ada.id,)
    crm.lift_do_not_contact(ada.id, EMAIL, source="agent")
    assert crm.audience(everyone, EMAIL, "newsletter").contact_ids == (ada.id,)
    assert [b.lifted for b in crm.do_not_contact_history(ada.id)] == [False, True]


def test_a_contact_with_ledgers_is_deleted_only_with_them(crm: CRM) -> None:
    ada = person(crm, "ada")
    crm.record_consent(ada.id, EMAIL, "newsletter", source="form")
    crm.set_do_not_contact(ada.id, SMS, DoNotContactReason.ASKED, source="call")
    crm.delete_contact(ada.id, cascade=True)
    with crm.store.unit_of_work() as unit:
        assert unit.consents.count() == 0
        assert unit.do_not_contact.count() == 0


# ---------------------------------------------------------------------------- audiences


def test_the_audience_leaves_out_the_unreachable_and_says_why(crm: CRM) -> None:
    names = ["ok", "no_email", "blocked", "never", "withdrawn", "expired", "capped", "marked"]
    people = {n: person(crm, n) for n in names}
    people["no_email"] = crm.update_contact(people["no_email"].id, email=None)
    people["marked"] = crm.update_contact(people["marked"].id, do_not_contact=True)
    for name, who in people.items():
        if name == "never":
            continue
        expires = NOW + timedelta(minutes=1) if name == "expired" else None
        crm.record_consent(who.id, EMAIL, "newsletter", source="form", expires_at=expires)
    crm.withdraw_consent(people["withdrawn"].id, EMAIL, "newsletter", source="link")
    crm.set_do_not_contact(people["blocked"].id, EMAIL, DoNotContactReason.COMPLAINED, source="x")
    for days in (1, 3):
        crm.record_activity(
            Activity.new(
                contact_id=people["capped"].id,
                kind=ActivityKind.EMAIL_SENT,
                occurred_at=NOW - timedelta(days=days),
            )
        )
    segment = Segment.new(name="everyone", members=[p.id for p in people.values()])
    with crm.store.unit_of_work() as unit:
        unit.segments.add(segment)
        unit.commit()

    at = NOW + timedelta(hours=1)
    audience = crm.audience(segment.id, EMAIL, "newsletter", now=at)
    assert audience.contact_ids == (people["ok"].id,)
    assert audience.segment_size == len(people)
    assert dict(audience.excluded) == {
        ReachCheck.CONTACT_POINT: 1,
        ReachCheck.DO_NOT_CONTACT: 2,
        ReachCheck.CONSENT: 1,
        ReachCheck.WITHDRAWN: 1,
        ReachCheck.EXPIRED: 1,
        ReachCheck.FREQUENCY_CAP: 1,
    }
    assert audience.excluded_total + audience.size == audience.segment_size
    # The same segment by object; a week later the cap no longer holds "capped" back.
    later = crm.audience(segment, EMAIL, "newsletter", now=NOW + timedelta(days=8))
    assert set(later.contact_ids) == {people["ok"].id, people["capped"].id}


def test_a_withdrawal_takes_effect_for_every_audience_built_after_it(crm: CRM) -> None:
    ada, bo = person(crm, "ada"), person(crm, "bo")
    for who in (ada, bo):
        crm.record_consent(who.id, EMAIL, "newsletter", source="form")
    everyone = contacts_where(field("email").is_not_null())
    assert set(crm.audience(everyone, EMAIL, "newsletter").contact_ids) == {ada.id, bo.id}
    crm.withdraw_consent(ada.id, EMAIL, "newsletter", source="link")
    audience = crm.audience(everyone, EMAIL, "newsletter")
    assert audience.contact_ids == (bo.id,)
    assert audience.excluded[ReachCheck.WITHDRAWN] == 1
    # Another purpose is another consent.
    assert crm.audience(everyone, EMAIL, "sales").contact_ids == ()


def test_audiences_need_a_contact_segment(crm: CRM) -> None:
    with pytest.raises(ValidationError) as caught:
        crm.audience("everyone", EMAIL, "newsletter")  # type: ignore[arg-type]
    assert caught.value.field == "segment"


# ---------------------------------------------------------------------------- the rule node


def test_reachable_is_a_contact_condition_that_round_trips() -> None:
    node = reachable(EMAIL, "newsletter", max_messages=3, within_days=7)
    rule = contacts_where(node & (field("country") == "DE"))
    converter = make_converter()
    assert converter.structure(converter.unstructure(rule), Rule) == rule
    partial = attrs.evolve(node, checks=frozenset({ReachCheck.CONSENT}))
    written = converter.unstructure(contacts_where(partial))
    assert converter.structure(written, Rule).where == partial
    with pytest.raises(InvalidRule) as caught:
        Rule(RuleEntity.LEAD, node)
    assert caught.value.field == "channel"


@pytest.mark.parametrize(
    ("build", "field_name"),
    [
        (lambda: Reachable("fax", "newsletter"), "channel"),  # type: ignore[arg-type]
        (lambda: Reachable(EMAIL, "News Letter"), "purpose"),
        (lambda: Reachable(EMAIL, "newsletter", 3), "within_days"),
        (lambda: Reachable(EMAIL, "newsletter", None, 7), "within_days"),
        (lambda: Reachable(EMAIL, "newsletter", 0, 7), "max_messages"),
        (lambda: Reachable(EMAIL, "newsletter", checks=frozenset({"x"})), "checks"),  # type: ignore[arg-type]
    ],
)
def test_malformed_reachable_nodes_are_invalid_rules(build: object, field_name: str) -> None:
    with pytest.raises(InvalidRule) as caught:
        build()  # type: ignore[operator]
    assert caught.value.field == field_name


def test_consent_states_prefer_the_withdrawal_at_the_same_time() -> None:
    who = uuid4()

    def entry(status: ConsentStatus) -> Consent:
        return Consent.new(
            contact_id=who,
            channel=EMAIL,
            purpose="newsletter",
            status=status,
            source="import",
            clock=FixedClock(NOW),
        )

    for order in ((ConsentStatus.GRANTED, ConsentStatus.WITHDRAWN),) * 5:
        entries = [entry(status) for status in order]
        (state,) = consent_states(entries, NOW)
        assert state.status is ConsentStatus.WITHDRAWN
        (state,) = consent_states(reversed(entries), NOW)
        assert state.status is ConsentStatus.WITHDRAWN


def test_policies_check_what_they_declare() -> None:
    with pytest.raises(ValidationError) as caught:
        ConsentPolicy(set())
    assert caught.value.field == "purposes"
    with pytest.raises(ValidationError) as caught:
        ConsentPolicy({"Ads!"})
    assert caught.value.field == "purposes"
    with pytest.raises(ValidationError) as caught:
        ConsentPolicy({"ads"}, caps={"fax": FrequencyCap(1, 1)})
    assert caught.value.field == "caps.channel"
    with pytest.raises(ValidationError) as caught:
        FrequencyCap(0, 7)
    assert caught.value.field == "max_messages"
    assert POLICY.reachable(EMAIL, "newsletter") == Reachable(EMAIL, "newsletter", 2, 7)
    assert POLICY.reachable(SMS, "sales") == Reachable(SMS, "sales")
