"""The contracts of the consent and do-not-contact ledgers and of ``reachable`` rules.

The fixed table of :meth:`ReachabilityContract.test_reachable_follows_the_ledgers` holds
one contact per way of being (un)reachable: no address, marked do-not-contact, blocked,
a block lifted, no
decision, a pending request only, withdrawn, a withdrawal and a grant at the same time,
expired at exactly now, over the frequency cap, and reachable ones, so that an adapter
that gets any check wrong fails it on every run.
:class:`~crmkit.testing.storage.StoreContract` inherits them.
"""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID, uuid4

import attrs
from hypothesis import given
from hypothesis import strategies as st

from crmkit.errors import ValidationError
from crmkit.models import (
    Activity,
    ActivityKind,
    Consent,
    ConsentChannel,
    ConsentStatus,
    Contact,
    DoNotContact,
    DoNotContactReason,
)
from crmkit.models.rules import IsNull, Reachable, ReachCheck, Rule, RuleEntity
from crmkit.segmentation import Context, evaluate
from crmkit.storage import Store
from crmkit.testing import strategies as cst
from crmkit.testing._contract import _c, _raises
from crmkit.testing._referents import store_referents

__all__ = ["ReachabilityContract"]

_NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
_EMAIL = ConsentChannel.EMAIL


def _consent(
    who: Contact,
    status: ConsentStatus,
    *,
    days_ago: int = 10,
    expires_at: datetime | None = None,
    purpose: str = "newsletter",
    id: UUID | None = None,
    contact_point: str | None = None,
) -> Consent:
    entry = Consent.new(
        contact_id=who.id,
        channel=_EMAIL,
        purpose=purpose,
        status=status,
        source="form",
        decided_at=_NOW - timedelta(days=days_ago),
        expires_at=expires_at,
        contact_point=contact_point,
    )
    return entry if id is None else attrs.evolve(entry, id=id)


def _block(who: Contact, *, days_ago: int, lifted: bool = False) -> DoNotContact:
    return DoNotContact.new(
        contact_id=who.id,
        channel=_EMAIL,
        reason=DoNotContactReason.BOUNCED,
        source="bounces",
        decided_at=_NOW - timedelta(days=days_ago),
        lifted=lifted,
    )


def _sent(who: Contact, days_ago: int) -> Activity:
    return Activity.new(
        contact_id=who.id,
        kind=ActivityKind.EMAIL_SENT,
        occurred_at=_NOW - timedelta(days=days_ago),
    )


def _people(names: list[str]) -> dict[str, Contact]:
    return {name: Contact.new(email=f"{name}@example.org", first_name=name) for name in names}


_LOW, _HIGH = UUID(int=1), UUID(int=2**128 - 1)


def _table() -> tuple[dict[str, Contact], list[Any], dict[str, set[ReachCheck]]]:
    """Contacts, their ledger entries and messages, and the checks each fails."""
    names = [
        "reachable",
        "no_address",
        "blocked",
        "lifted",
        "undecided",
        "pending",
        "withdrawn",
        "regranted",
        "tied",
        "expired",
        "capped",
        "other_purpose",
        "blocked_lifted_same_time",
        "marked",
        "moved",
        "asked_again",
    ]
    people = _people(names)
    people["marked"] = attrs.evolve(people["marked"], do_not_contact=True)
    people["no_address"] = attrs.evolve(people["no_address"], email=None)
    p = people
    granted, withdrawn = ConsentStatus.GRANTED, ConsentStatus.WITHDRAWN
    rows: list[Any] = [
        _consent(p["reachable"], granted, expires_at=_NOW + timedelta(seconds=1)),
        _consent(p["reachable"], ConsentStatus.PENDING, days_ago=1),  # no decision
        _consent(p["no_address"], granted),
        _consent(p["blocked"], granted),
        _block(p["blocked"], days_ago=5),
        _consent(p["lifted"], granted),
        _block(p["lifted"], days_ago=5),
        _block(p["lifted"], days_ago=2, lifted=True),
        _consent(p["pending"], ConsentStatus.PENDING),
        _consent(p["withdrawn"], granted, days_ago=20),
        _consent(p["withdrawn"], withdrawn, days_ago=5),
        _consent(p["regranted"], withdrawn, days_ago=20),
        _consent(p["regranted"], granted, days_ago=5),
        # At the same time a withdrawal wins, whichever id is greater.
        _consent(p["tied"], granted, id=_HIGH),
        _consent(p["tied"], withdrawn, id=_LOW),
        _consent(p["expired"], granted, expires_at=_NOW),
        _consent(p["capped"], granted),
        _sent(p["capped"], 1),
        _sent(p["capped"], 6),
        _sent(p["capped"], 8),  # outside the 7 days
        _consent(p["other_purpose"], granted, purpose="sales"),
        _consent(p["blocked_lifted_same_time"], granted),
        _consent(p["marked"], granted),
        # A grant for the address the contact had before is no consent for the new one.
        _consent(p["moved"], granted, contact_point="moved.before@example.org"),
        _consent(p["asked_again"], granted, days_ago=20, contact_point="before@example.org"),
        _consent(p["asked_again"], granted, days_ago=2, contact_point=str(p["asked_again"].email)),
        attrs.evolve(_block(p["blocked_lifted_same_time"], days_ago=3), id=_LOW),
        attrs.evolve(_block(p["blocked_lifted_same_time"], days_ago=3, lifted=True), id=_HIGH),
    ]
    fails = {
        "reachable": set(),
        "no_address": {ReachCheck.CONTACT_POINT},
        "blocked": {ReachCheck.DO_NOT_CONTACT},
        "lifted": set(),
        "undecided": {ReachCheck.CONSENT},
        "pending": {ReachCheck.CONSENT},
        "withdrawn": {ReachCheck.WITHDRAWN},
        "regranted": set(),
        "tied": {ReachCheck.WITHDRAWN},
        "expired": {ReachCheck.EXPIRED},
        "capped": {ReachCheck.FREQUENCY_CAP},
        "other_purpose": {ReachCheck.CONSENT},
        "blocked_lifted_same_time": {ReachCheck.DO_NOT_CONTACT},
        "marked": {ReachCheck.DO_NOT_CONTACT},
        "moved": {ReachCheck.CONSENT},
        "asked_again": set(),
    }
    return people, rows, fails


def _store_rows(unit: Any, rows: list[Any]) -> None:
    for row in rows:
        if isinstance(row, Consent):
            unit.consents.add(row)
        elif isinstance(row, DoNotContact):
            unit.do_not_contact.add(row)
        else:
            unit.activities.add(row)


class ReachabilityContract:
    """The ledgers and ``reachable`` (mixed into ``StoreContract``)."""

    capabilities: ClassVar[Any]

    def _settings(self) -> Callable[[Any], Any]:  # pragma: no cover - StoreContract's
        raise NotImplementedError

    def test_ledgers_list_a_contact_s_entries_oldest_first(self, fresh: Store) -> None:
        people, rows, _ = _table()
        with fresh.unit_of_work() as unit:
            unit.contacts.add_many(people.values())
            _store_rows(unit, rows)
            unit.commit()
        twin = fresh.for_tenant(f"kit-{uuid4().hex[:12]}")
        lifted = people["lifted"]
        with twin.unit_of_work() as unit:  # the same contact id in another tenant
            unit.contacts.add(lifted)
            unit.do_not_contact.add(attrs.evolve(_block(lifted, days_ago=1), id=uuid4()))
            unit.consents.add(_consent(lifted, ConsentStatus.WITHDRAWN, days_ago=1))
            unit.commit()
        with fresh.unit_of_work() as unit:
            for person in people.values():
                mine = [r for r in rows if isinstance(r, Consent) and r.contact_id == person.id]
                expected = sorted(mine, key=lambda c: (c.decided_at, c.id))
                assert unit.consents.for_contact(person.id) == expected, _c(
                    "consents.for_contact lists one contact's entries of the tenant, "
                    "oldest decision first (decided_at, then id)"
                )
            blocks = [r for r in rows if isinstance(r, DoNotContact) and r.contact_id == lifted.id]
            assert unit.do_not_contact.for_contact(lifted.id) == blocks, _c(
                "do_not_contact.for_contact lists one contact's entries of the tenant, oldest first"
            )
            assert unit.consents.for_contact(uuid4()) == [], _c("no entries: an empty list")
            with _raises(ValidationError, "for_contact refuses an id that is not a UUID") as bad:
                unit.consents.for_contact("nope")  # type: ignore[arg-type]
            assert bad.value.field == "contact_id", _c("for_contact's error names contact_id")
            with _raises(ValidationError, "for_contact refuses an id that is not a UUID") as bad:
                unit.do_not_contact.for_contact(7)  # type: ignore[arg-type]
            assert bad.value.field == "contact_id", _c("for_contact's error names contact_id")

    def test_reachable_follows_the_ledgers(self, fresh: Store) -> None:
        if not self.capabilities.rules:
            return
        people, rows, fails = _table()
        with fresh.unit_of_work() as unit:
            unit.contacts.add_many(people.values())
            _store_rows(unit, rows)
            unit.commit()
        ids = {person.id: name for name, person in people.items()}
        with fresh.unit_of_work() as unit:
            for check in [None, *ReachCheck]:
                checks = frozenset(ReachCheck) if check is None else frozenset({check})
                node = Reachable(_EMAIL, "newsletter", 2, 7, checks)
                rule = Rule(RuleEntity.CONTACT, node)
                expected = sorted(n for n, failed in fails.items() if not failed & checks)
                found = sorted(ids[i] for i in unit.contacts.ids(rule, now=_NOW))
                what = "every check" if check is None else f"the check {check.value}"
                assert found == expected, _c(
                    f"reachable with {what} selects the contacts whose ledgers pass it"
                )
                negated = Rule(RuleEntity.CONTACT, ~node)
                assert unit.contacts.count(negated, now=_NOW) == len(people) - len(expected), _c(
                    "reachable is TRUE or FALSE, never UNKNOWN: NOT reachable selects the rest"
                )

    def test_reach_counts_count_each_contact_by_its_first_failed_check(self, fresh: Store) -> None:
        if not self.capabilities.rules:
            return
        people, rows, fails = _table()
        with fresh.unit_of_work() as unit:
            unit.contacts.add_many(people.values())
            _store_rows(unit, rows)
            unit.commit()
        everyone = Rule(RuleEntity.CONTACT, IsNull("first_name", negated=True))
        node = Reachable(_EMAIL, "newsletter", 2, 7)
        expected: dict[ReachCheck | None, int] = {}
        for failed in fails.values():
            first = next((check for check in ReachCheck if check in failed), None)
            expected[first] = expected.get(first, 0) + 1
        with fresh.unit_of_work() as unit:
            assert unit.contacts.reach_counts(everyone, node, now=_NOW) == expected, _c(
                "reach_counts counts each contact once, by the first check it fails (None: "
                "it passes every check)"
            )
            alone = attrs.evolve(node, checks=frozenset({ReachCheck.CONSENT}))
            undecided = sum(ReachCheck.CONSENT in failed for failed in fails.values())
            assert unit.contacts.reach_counts(everyone, alone, now=_NOW) == {
                ReachCheck.CONSENT: undecided,
                None: len(people) - undecided,
            }, _c("reach_counts counts the checks the node has, no other")
            with _raises(ValidationError, "reach_counts needs a Reachable") as wrong:
                unit.contacts.reach_counts(everyone, "reachable")  # type: ignore[arg-type]
            assert wrong.value.field == "reachable", _c("reach_counts names 'reachable'")

    def test_reachable_selects_what_the_interpreter_selects(self, store: Store) -> None:
        if not self.capabilities.rules:
            return

        @self._settings()
        @given(st.data())
        def check(data: st.DataObject) -> None:
            people = data.draw(st.lists(cst.rule_contacts(), max_size=6, unique_by=_unique))
            drawn = data.draw(cst.ledgers(people, now=_NOW))
            rule = data.draw(cst.rules(RuleEntity.CONTACT, max_leaves=3, reachability=True))
            context = Context(
                now=_NOW,
                activities=_by_contact(drawn.messages),
                consents=_by_contact(drawn.consents),
                blocks=_by_contact(drawn.blocks),
            )
            expected = sorted(p.id for p in people if evaluate(rule, p, context) is True)
            tenant = store.for_tenant(f"kit-{uuid4().hex[:12]}")
            with tenant.unit_of_work() as unit:
                store_referents(unit, people)
                unit.contacts.add_many(people)
                unit.consents.add_many(drawn.consents)
                unit.do_not_contact.add_many(drawn.blocks)
                unit.activities.add_many(drawn.messages)
                unit.commit()
                assert unit.contacts.ids(rule, now=_NOW) == expected, _c(
                    "rule parity: reachable selects what evaluate() says is TRUE"
                )

        check()


def _unique(item: Contact) -> object:
    return item.id if item.email is None else item.email.casefold()


def _by_contact(items: list[Any]) -> dict[UUID, list[Any]]:
    found: dict[UUID, list[Any]] = {}
    for item in items:
        found.setdefault(item.contact_id, []).append(item)
    return found
