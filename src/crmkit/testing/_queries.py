"""The contracts of the port's look-ups: contacts by e-mail (and the identity policy),
tasks by status, kind, assignee, contact and due time, counts per value of a field,
stage history of many subjects.

Each check uses fixed tables chosen to tell a right adapter from a wrong one: the same
ids in two tenants, addresses that differ only in case, a task due exactly at the bound.
:class:`~crmkit.testing.storage.StoreContract` inherits them.
"""

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import product
from typing import Any
from uuid import UUID, uuid4

import attrs

from crmkit.analytics import Standing, StandingWindow
from crmkit.clock import FixedClock
from crmkit.errors import (
    DanglingReference,
    Duplicate,
    NotFound,
    StillReferenced,
    ValidationError,
)
from crmkit.models import (
    Account,
    Activity,
    ActivityKind,
    Consent,
    ConsentChannel,
    ConsentStatus,
    Contact,
    CountryCode,
    Deal,
    DoNotContact,
    DoNotContactReason,
    EmailAddress,
    Entity,
    Lead,
    LeadChannel,
    LifecycleStage,
    Money,
    StageChange,
    SubjectKind,
    Task,
    TaskKind,
    TaskStatus,
    Ticket,
    TicketChannel,
)
from crmkit.segmentation import contacts_where, field
from crmkit.storage import ENTITIES, REFERENCES, REFERRERS, Store
from crmkit.testing._contract import _c, _raises
from crmkit.testing._referents import repository_of, store_referents

__all__ = ["QueryContract"]

_T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def _contact(email: str, minutes: int = 0) -> Contact:
    return Contact.new(email=email, clock=FixedClock(_T0 + timedelta(minutes=minutes)))


def _other(store: Store) -> Store:
    return store.for_tenant(f"kit-{uuid4().hex[:12]}")


class QueryContract:
    """Look-ups that per-entity use cases rely on (mixed into ``StoreContract``)."""

    # ------------------------------------------------------------------ contacts by e-mail

    def test_with_email_compares_without_case_oldest_first(self, fresh: Store) -> None:
        ada = _contact("Ada.Lovelace@Example.org", 5)
        bo = _contact("bo@example.org", 1)
        with fresh.unit_of_work() as unit:
            unit.contacts.add_many([ada, bo, _contact("ada.lovelace@example.net")])
            unit.commit()
        twin = _other(fresh)  # the same contact, ids and all, in another tenant
        with twin.unit_of_work() as unit:
            unit.contacts.add(ada)
            unit.commit()
        with fresh.unit_of_work() as unit:
            for spelling in ("ada.lovelace@example.org", "ADA.LOVELACE@EXAMPLE.ORG"):
                found = unit.contacts.with_email(EmailAddress(spelling))
                assert found == [ada], "contract: with_email matches the casefolded address"
            assert unit.contacts.with_email(EmailAddress("lovelace@example.org")) == [], (
                "contract: with_email matches the whole address, not a part of it"
            )
            with _raises(ValidationError, "with_email takes an EmailAddress") as wrong:
                unit.contacts.with_email("ada.lovelace@example.org")  # type: ignore[arg-type]
            assert wrong.value.field == "email", _c("with_email's error names field email")
        with twin.unit_of_work() as unit:
            assert unit.contacts.with_email(EmailAddress("bo@example.org")) == [], (
                "contract: with_email reads the store's tenant only"
            )

    def test_one_contact_per_address_by_default(self, fresh: Store) -> None:
        ada = _contact("Ada@example.org")
        with fresh.unit_of_work() as unit:
            unit.contacts.add(ada)
            unit.commit()
        with fresh.unit_of_work() as unit:
            with _raises(Duplicate, "add refuses a second contact with a folded address") as taken:
                unit.contacts.add(_contact("ADA@example.org"))
            assert taken.value.index is None, _c("Duplicate of a single add names no index")
            assert taken.value.field == "email", (
                "contract: a second contact with a folded address raises Duplicate(field='email')"
            )
            with _raises(Duplicate, "add_many refuses a repeated folded address") as batch:
                unit.contacts.add_many([_contact("x@example.org"), _contact("X@Example.org")])
            assert (batch.value.field, batch.value.index) == ("email", 1), (
                "contract: add_many names the index of the item that repeats an address"
            )
            other = unit.contacts.add(_contact("other@example.org"))
            with _raises(Duplicate, "update refuses an address another contact has"):
                unit.contacts.update(attrs.evolve(other, email=EmailAddress("ada@EXAMPLE.org")))
            unit.commit()
        twin = _other(fresh)
        with twin.unit_of_work() as unit:
            unit.contacts.add(_contact("ada@example.org"))  # another tenant, another person
            unit.commit()
        with fresh.unit_of_work() as unit:
            assert unit.contacts.count() == 2, "contract: a refused write keeps nothing"
            unit.contacts.delete(ada.id)
            unit.contacts.add(_contact("ada@example.org"))  # a deleted contact frees it
            renamed = unit.contacts.update(attrs.evolve(other, email=EmailAddress("o@x.org")))
            unit.contacts.add(_contact("other@example.org"))  # and so does a change of address
            unit.rollback()
        with fresh.unit_of_work() as unit:
            found = unit.contacts.with_email(EmailAddress("ada@example.org"))
            assert found == [ada], "contract: a rollback restores the address index"
            assert unit.contacts.with_email(EmailAddress("o@x.org")) == [], _c(
                "a rollback forgets the addresses the unit gave"
            )
            assert renamed.email == EmailAddress("o@x.org")

    # ------------------------------------------------------------------ match keys

    def test_match_keys_follow_every_write(self, fresh: Store) -> None:
        """``with_match_keys`` finds contacts and accounts by the keys of what is stored
        now: after an add, an update, a delete and a rollback, in the store's tenant."""
        at = FixedClock(_T0)
        ada = Contact.new(
            email="ada.lovelace@gmail.com", first_name="Ada", last_name="Lovelace", clock=at
        )
        ann = Contact.new(
            first_name="Ann", last_name="Lovell", country=CountryCode("GB"),
            clock=FixedClock(_T0 + timedelta(minutes=1)),
        )  # fmt: skip
        anne = Contact.new(
            first_name="Anne", last_name="Lovelock", clock=FixedClock(_T0 + timedelta(minutes=2))
        )
        acme = Account.new(name="ACME GmbH", domain="acme.example", clock=at)
        with fresh.unit_of_work() as unit:
            unit.contacts.add(ann)
            unit.contacts.add_many([ada, anne])
            unit.accounts.add(acme)
            unit.commit()
        twin = _other(fresh)
        with twin.unit_of_work() as unit:
            unit.contacts.add(ada)
            unit.commit()
        by_mail = [("email", "adalovelace@gmail.com")]  # the key of ada.lovelace+x@gmail.com
        with fresh.unit_of_work() as unit:
            contacts = unit.contacts
            assert contacts.with_match_keys(by_mail) == [ada], _c(
                "with_match_keys finds a contact by the key of its e-mail address"
            )
            both = [*by_mail, ("name3", "ann|lov")]
            assert contacts.with_match_keys(both) == [ada, ann, anne], _c(
                "with_match_keys finds any of the keys, oldest first"
            )
            first = min(ann, anne, key=lambda c: c.id)
            assert contacts.with_match_keys(both, limit=1) == [ada, first], _c(
                "with_match_keys keeps at most limit contacts per key, the smallest ids"
            )
            assert contacts.with_match_keys([("name", "ada|lovelace king")]) == [], _c(
                "with_match_keys compares whole keys"
            )
            assert unit.accounts.with_match_keys([("company", "acme")]) == [acme], _c(
                "accounts are found by the company name without its legal form"
            )
            renamed = contacts.update(attrs.evolve(ada, last_name="King"))
            assert contacts.with_match_keys([("name", "ada|lovelace")]) == [], _c(
                "an update removes the keys of the values it replaced"
            )
            assert contacts.with_match_keys([("name", "ada|king")]) == [renamed], _c(
                "an update adds the keys of the new values"
            )
            contacts.delete(ann.id)
            assert contacts.with_match_keys([("name3", "ann|lov")]) == [anne], _c(
                "a delete removes the contact's keys"
            )
            unit.rollback()
            assert contacts.with_match_keys([("name", "ada|lovelace")]) == [ada], _c(
                "a rollback restores the keys"
            )
            assert contacts.with_match_keys([("name3", "ann|lov")]) == [ann, anne], _c(
                "a rollback restores the keys of a deleted contact"
            )
            assert contacts.with_match_keys([]) == [], _c("no keys find nothing")
            for wrong, name in (("email", "keys"), ([("email",)], "keys[0]"), ([1], "keys[0]")):
                with _raises(ValidationError, "with_match_keys checks its keys") as caught:
                    contacts.with_match_keys(wrong)  # type: ignore[arg-type]
                assert caught.value.field == name, _c(f"a wrong key names field {name}")
            with _raises(ValidationError, "with_match_keys checks its limit") as caught:
                contacts.with_match_keys(by_mail, limit=0)
            assert caught.value.field == "limit", _c("a wrong limit names field limit")
        with twin.unit_of_work() as unit:
            assert unit.contacts.with_match_keys([("name3", "ann|lov")]) == [], _c(
                "with_match_keys reads the store's tenant only"
            )

    # ------------------------------------------------------------------ tasks

    def test_task_select_filters_and_orders(self, fresh: Store) -> None:
        contacts = [uuid4(), uuid4()]
        deals = [uuid4(), uuid4(), uuid4()]
        tickets = [uuid4(), uuid4()]
        tasks = []
        combinations = product(TaskStatus, (TaskKind.FOLLOW_UP, TaskKind.CALL), ("ann", None))
        for n, (status, kind, assignee) in enumerate(combinations):
            due = _T0 + timedelta(hours=(n * 7) % 11)  # ties on due_at, broken by id
            task = Task.new(
                title=f"task {n}",
                due_at=due,
                kind=kind,
                assignee=assignee,
                contact_id=contacts[n % 2],
                deal_id=deals[n % 3] if n % 3 else None,
                ticket_id=tickets[n % 2] if n % 4 else None,
                clock=FixedClock(_T0 - timedelta(days=1)),
            )
            done = _T0 if status is TaskStatus.DONE else None
            tasks.append(attrs.evolve(task, status=status, completed_at=done))
        with fresh.unit_of_work() as unit:
            store_referents(unit, tasks)
            unit.tasks.add_many(tasks)
            unit.commit()
        twin = _other(fresh)
        with twin.unit_of_work() as unit:
            store_referents(unit, tasks)
            unit.tasks.add_many(tasks)  # the same ids in another tenant
            unit.tasks.add(attrs.evolve(tasks[0], id=uuid4(), assignee="zed"))
            unit.commit()
        bound = _T0 + timedelta(hours=5)
        filters: list[dict[str, object]] = [
            {},
            {"status": TaskStatus.OPEN},
            {"kind": TaskKind.CALL},
            {"assignee": "ann"},
            {"assignee": "zed"},
            {"contact_id": contacts[1]},
            {"deal_id": deals[1]},
            {"ticket_id": tickets[0]},
            {"deal_id": deals[2], "ticket_id": tickets[1]},
            {"due_until": bound},
            {"status": TaskStatus.OPEN, "assignee": "ann", "due_until": bound},
            {"status": TaskStatus.DONE, "kind": TaskKind.FOLLOW_UP, "contact_id": contacts[0]},
        ]
        assert any(t.due_at == bound for t in tasks)  # the bound itself is included
        with fresh.unit_of_work() as unit:
            for given in filters:
                expected = sorted(
                    (t for t in tasks if _matches(t, given)), key=lambda t: (t.due_at, t.id)
                )
                assert unit.tasks.select(**given) == expected, (  # type: ignore[arg-type]
                    f"contract: tasks.select({given}) keeps the tasks matching every filter "
                    "(due_until inclusive), in this tenant, by due_at then id"
                )
            with _raises(ValidationError, "tasks.select takes a TaskStatus") as wrong:
                unit.tasks.select(status="open")  # type: ignore[arg-type]
            assert wrong.value.field == "status", _c("tasks.select's error names status")

    # ------------------------------------------------------------------ grouped counts

    def test_count_by_counts_per_value_in_the_store(self, fresh: Store) -> None:
        people = [
            attrs.evolve(
                _contact(f"p{n}@example.org", n),
                lifecycle_stage=stage,
                owner=owner,
                do_not_contact=n % 3 == 0,
                country=None if n % 4 == 0 else CountryCode("DE" if n % 2 else "SE"),
            )
            for n, (stage, owner) in enumerate(
                product(
                    (LifecycleStage.LEAD, LifecycleStage.CUSTOMER, LifecycleStage.CUSTOMER),
                    ("ann", "bo", None),
                )
            )
        ]
        with fresh.unit_of_work() as unit:
            unit.contacts.add_many(people)
            unit.commit()
        twin = _other(fresh)
        with twin.unit_of_work() as unit:
            unit.contacts.add_many(people)  # the same contacts in another tenant
            unit.contacts.add(attrs.evolve(people[0], id=uuid4(), email=None, owner="zed"))
            unit.commit()
        customers = contacts_where(field("lifecycle_stage") == "customer")
        with fresh.unit_of_work() as unit:
            for name, rule in product(
                ("lifecycle_stage", "owner", "do_not_contact", "country", "id"),
                (None, customers),
            ):
                chosen = [
                    p for p in people if rule is None or p.lifecycle_stage.value == "customer"
                ]
                expected = dict(Counter(getattr(p, name) for p in chosen))
                assert unit.contacts.count_by(name, rule) == expected, (
                    f"contract: count_by({name!r}, rule) counts the entities the rule selects "
                    "in this tenant per value, None for no value, keys as the model's values"
                )
            with _raises(ValidationError, "count_by groups by groupable_fields only") as wrong:
                unit.contacts.count_by("created_at")
            assert wrong.value.field == "field", _c("count_by's error names field field")
            assert unit.leads.count_by("status") == {}, _c("count_by of no entities is empty")

    # ------------------------------------------------------------------ references

    def test_a_delete_that_would_orphan_is_refused(self, store: Store) -> None:
        for parent in sorted(REFERRERS):
            self._check_refused_delete(_other(store), parent)

    def _check_refused_delete(self, fresh: Store, parent: str) -> None:
        entity = next(e for e in ENTITIES if e.entity_name == parent)
        referred = _sample(parent)
        children = [
            (child, _refer(_sample(child.entity_name), name, referred.id))
            for child, name in REFERRERS[parent]
        ]
        twin = _other(fresh)
        for store in (fresh, twin):
            with store.unit_of_work() as unit:
                store_referents(unit, [referred])
                repository_of(unit, entity).add(referred)
                unit.commit()
        with twin.unit_of_work() as unit:  # children of the same id in another tenant
            for child, item in children:
                store_referents(unit, [item])
                repository_of(unit, child).add(item)
            unit.commit()
        with fresh.unit_of_work() as unit:
            repository_of(unit, entity).delete(referred.id)  # nothing here refers to it
            repository_of(unit, entity).add(referred)
            for child, item in children:
                store_referents(unit, [item])
                repository_of(unit, child).add(item)
            unit.commit()
        refused = f"delete of a {parent} others refer to raises StillReferenced"
        with fresh.unit_of_work() as unit:
            with _raises(StillReferenced, refused) as caught:
                repository_of(unit, entity).delete(referred.id)
            assert caught.value.referrers == tuple(
                (child.entity_name, item.id) for child, item in children
            ), _c(f"StillReferenced names a referrer of every kind that refers to a {parent}")
            with _raises(NotFound, "delete of a missing id raises NotFound"):
                repository_of(unit, entity).delete(uuid4())
            for index, (child, item) in enumerate(children):
                repository_of(unit, child).delete(item.id)
                remaining = tuple((c.entity_name, i.id) for c, i in children[index + 1 :])
                if remaining:
                    with _raises(StillReferenced, refused) as again:
                        repository_of(unit, entity).delete(referred.id)
                    assert again.value.referrers == remaining, _c(
                        "StillReferenced names the referrers that are left"
                    )
            repository_of(unit, entity).delete(referred.id, version=referred.version)
            assert repository_of(unit, entity).get_many([referred.id]) == {}, _c(
                f"delete of a {parent} succeeds once nothing refers to it"
            )

    def test_a_write_that_would_dangle_is_refused(self, store: Store) -> None:
        for entity, references in REFERENCES.items():
            for name, target in references:
                self._check_refused_write(_other(store), entity, name, target)

    def _check_refused_write(
        self, fresh: Store, entity: type[Entity], name: str, target: type[Entity]
    ) -> None:
        referred = _sample(target.entity_name)
        twin = _other(fresh)
        with twin.unit_of_work() as unit:  # the same id in another tenant does not count
            store_referents(unit, [referred])
            repository_of(unit, target).add(referred)
            unit.commit()
        item = _refer(_sample(entity.entity_name), name, referred.id)
        contract = (
            f"a write of a {entity.entity_name} whose {name} names no {target.entity_name} "
            "of the tenant raises DanglingReference naming the field and the id"
        )
        with fresh.unit_of_work() as unit:
            present = _sample(target.entity_name)  # what the item may refer to instead
            store_referents(unit, [present])
            repository_of(unit, target).add(present)
            loose = _refer(item, name, present.id)
            store_referents(unit, [loose])
            repository = repository_of(unit, entity)
            fine = attrs.evolve(loose, id=uuid4())
            for write in (repository.add, lambda one: repository.add_many([fine, one])):
                with _raises(DanglingReference, contract) as caught:
                    write(item)
                assert caught.value.field.endswith(name), _c(
                    f"{contract} (it named {caught.value.field!r})"
                )
                assert caught.value.value == referred.id, _c(contract)
            assert repository.count() == 0, _c("a refused write stores nothing")
            repository.add(loose)
            with _raises(DanglingReference, contract):
                repository.update(item)
            assert repository.get(loose.id) == loose, _c("a refused update changes nothing")
            store_referents(unit, [referred])
            repository_of(unit, target).add(referred)  # in this unit: now it is there
            assert repository.update(item).version == loose.version + 1, _c(
                f"a {entity.entity_name} may refer to a {target.entity_name} added earlier "
                "in the same unit of work"
            )

    # ------------------------------------------------------------------ stage history

    def test_stage_history_of_many_subjects(self, fresh: Store) -> None:
        deals = [uuid4() for _ in range(3)]
        changes = [
            StageChange.new(
                subject=SubjectKind.DEAL,
                subject_id=deal,
                pipeline="sales",
                to_stage=f"s{n}",
                at=_T0 + timedelta(hours=(n * 5) % 7),
            )
            for n, deal in enumerate(deals * 2)
        ]
        lead = attrs.evolve(changes[0], id=uuid4(), subject=SubjectKind.LEAD, pipeline="leads")
        with fresh.unit_of_work() as unit:
            unit.stage_history.add_many([*changes, lead])
            unit.commit()
        twin = _other(fresh)
        with twin.unit_of_work() as unit:
            unit.stage_history.add_many(changes)  # the same ids in another tenant
            unit.commit()
        with fresh.unit_of_work() as unit:
            wanted = [deals[2], deals[0], deals[2]]
            found = unit.stage_history.for_subjects(SubjectKind.DEAL, wanted)
            expected = sorted(
                (c for c in changes if c.subject_id in wanted), key=lambda c: (c.at, c.id)
            )
            assert found == expected, (
                "contract: for_subjects gives each change of these subjects of this kind "
                "once, in this tenant, by at then id"
            )
            assert unit.stage_history.for_subjects(SubjectKind.DEAL, []) == [], _c(
                "for_subjects of no subjects is empty"
            )
            assert unit.stage_history.for_subjects(SubjectKind.LEAD, [deals[0]]) == [lead], _c(
                "for_subjects keeps the subject kind"
            )
            with _raises(ValidationError, "for_subjects takes a collection of ids"):
                unit.stage_history.for_subjects(SubjectKind.DEAL, str(deals[0]))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ KPI replays

    def test_stage_history_replays_for_the_kpis(self, fresh: Store) -> None:
        hour = timedelta(hours=1)
        clock = FixedClock(_T0)
        eur = Money(Decimal("10.50"), "EUR")
        walked = Deal.new(title="A", pipeline="sales", stage="new", owner="ann", clock=clock)
        tied = Deal.new(title="B", pipeline="sales", stage="new", owner="bo", clock=clock)
        imported = Deal.new(title="C", pipeline="sales", stage="offer", clock=clock)
        unborn = Deal.new(
            title="D", pipeline="sales", stage="new", clock=FixedClock(_T0 + 5 * hour)
        )
        first, second = sorted((uuid4(), uuid4()))

        def move(deal: Deal, from_: str | None, to: str, at: datetime, **more: Any) -> StageChange:
            return StageChange.new(
                subject=SubjectKind.DEAL,
                subject_id=deal.id,
                pipeline="sales",
                from_stage=from_,
                to_stage=to,
                at=at,
                clock=clock,
                **more,
            )

        history = [
            move(walked, None, "new", _T0),
            move(walked, "new", "won", _T0 + 2 * hour, amount=eur),
            move(tied, None, "new", _T0),
            attrs.evolve(move(tied, "new", "offer", _T0 + hour), id=first),
            attrs.evolve(move(tied, "offer", "lost", _T0 + hour, reason="too dear"), id=second),
            move(unborn, None, "new", _T0 + 5 * hour),
        ]
        with fresh.unit_of_work() as unit:
            unit.deals.add_many([walked, tied, imported, unborn])
            unit.stage_history.add_many(history)
            unit.commit()
        twin = _other(fresh)
        with twin.unit_of_work() as unit:
            unit.deals.add_many([walked, tied])  # the same ids in another tenant
            unit.stage_history.add(attrs.evolve(history[0], to_stage="won"))
            unit.commit()
        ranks = {"new": 0, "offer": 1, "won": 2}
        deal = SubjectKind.DEAL
        with fresh.unit_of_work() as unit:
            replays = unit.stage_history

            def reach(**options: Any) -> set[tuple[Any, ...]]:
                rows = replays.reach(deal, ranks, **options)
                return {(r.group, r.reached, r.entered, r.count) for r in rows}

            later, exactly = _T0 + 3 * hour, _T0 + 2 * hour
            want: set[tuple[Any, ...]] = {(None, 2, 2, 1), (None, 1, 1, 1), (None, 1, None, 1)}
            assert reach(until=later) == want, (
                "contract: reach counts the highest stage entered or left (skipped stages "
                "pass), a subject without moves at its stage, created before until, one tenant"
            )
            want = {(None, 0, 0, 1), (None, 1, 1, 1), (None, 1, None, 1)}
            assert reach(until=exactly) == want, (
                "contract: reach counts moves before until only (until is exclusive)"
            )
            want = {("ann", 2, 2, 1), ("bo", 1, 1, 1), (None, 1, None, 1)}
            assert reach(until=later, group="owner") == want, (
                "contract: reach groups by the subject's field"
            )

            def standing(**options: Any) -> set[tuple[Any, ...]]:
                rows = replays.standing(deal, **options)
                return {
                    (r.group, r.stage, r.reason, r.currency, r.count, r.amount, r.later)
                    for r in rows
                }

            until = _T0 + 3 * hour
            assert standing(until=until) == {
                (None, "won", None, "EUR", 1, Decimal("10.50"), None),
                (None, "lost", "too dear", None, 1, Decimal(0), None),
            }, "contract: standing takes each subject's last move before until, ties by id"
            assert standing(
                until=until, since=_T0 + 2 * hour, then=until + hour, group="owner"
            ) == {
                ("ann", "won", None, "EUR", 1, Decimal("10.50"), "won"),
            }, "contract: standing keeps last moves at or after since, later is the stage at then"
            assert standing(until=until, stages=["lost", "offer"]) == {
                (None, "lost", "too dear", None, 1, Decimal(0), None),
            }, "contract: standing keeps subjects whose last move went to one of stages"
            (row,) = replays.standing(deal, until=until, since=_T0 + 2 * hour)
            assert abs(row.age_seconds - 7200.0) < 1.0, _c("age_seconds is creation to move")

            def rows_of(found: list[Standing]) -> set[tuple[Any, ...]]:
                return {(r.group, r.stage, r.reason, r.count, r.amount, r.later) for r in found}

            windows = [
                StandingWindow(until, since=_T0 + 2 * hour, then=until + hour),
                StandingWindow(until, stages=frozenset({"lost", "offer"})),
                StandingWindow(_T0 + hour + hour / 2, stages=frozenset({"new", "won"})),
                StandingWindow(exactly),
            ]
            many = replays.standings(deal, windows, group="owner")
            assert [rows_of(found) for found in many] == [
                rows_of(
                    replays.standing(
                        deal,
                        until=w.until,
                        since=w.since,
                        then=w.then,
                        stages=w.stages,
                        group="owner",
                    )
                )
                for w in windows
            ], _c("standings answers each window as standing does, with its own stages")

    def test_customer_spans_follow_the_contact_history(self, fresh: Store) -> None:
        hour = timedelta(hours=1)
        clock = FixedClock(_T0)
        stayed, churned, imported, never, returned = (
            Contact.new(first_name=name, clock=clock)
            for name in ("stayed", "churned", "imported", "never", "returned")
        )
        imported = attrs.evolve(imported, lifecycle_stage=LifecycleStage.CUSTOMER)
        stayed = attrs.evolve(stayed, lifecycle_stage=LifecycleStage.EVANGELIST)
        returned = attrs.evolve(returned, lifecycle_stage=LifecycleStage.CUSTOMER)
        churned = attrs.evolve(churned, lifecycle_stage=LifecycleStage.OTHER)

        def move(contact: Contact, to: str, at: datetime) -> StageChange:
            return StageChange.new(
                subject=SubjectKind.CONTACT, subject_id=contact.id, to_stage=to, at=at, clock=clock
            )

        history = [
            move(stayed, "lead", _T0),
            move(stayed, "customer", _T0 + hour),
            move(stayed, "evangelist", _T0 + 2 * hour),
            move(churned, "customer", _T0 + hour),
            move(churned, "other", _T0 + 3 * hour),
            move(never, "lead", _T0),
            move(returned, "customer", _T0 + hour),
            move(returned, "other", _T0 + 2 * hour),
            move(returned, "customer", _T0 + 4 * hour),
            StageChange.new(
                subject=SubjectKind.DEAL, subject_id=never.id, to_stage="customer", clock=clock
            ),
        ]
        with fresh.unit_of_work() as unit:
            unit.contacts.add_many([stayed, churned, imported, never, returned])
            unit.stage_history.add_many(history)
            unit.commit()
        twin = _other(fresh)
        with twin.unit_of_work() as unit:
            unit.contacts.add(attrs.evolve(never, lifecycle_stage=LifecycleStage.CUSTOMER))
            unit.stage_history.add(move(never, "customer", _T0))
            unit.commit()
        with fresh.unit_of_work() as unit:
            found = {(s.customer, s.start, s.end) for s in unit.stage_history.customer_spans()}
            want = {
                (str(stayed.id), _T0 + hour, None),
                (str(churned.id), _T0 + hour, _T0 + 3 * hour),
                (str(imported.id), imported.created_at, None),
                (str(returned.id), _T0 + hour, None),
            }
            assert found == want, (
                "contract: customer_spans runs from the first move into the stages to the "
                "last move if it left them, imported customers from creation, contact "
                "moves of this tenant only"
            )
            only = unit.stage_history.customer_spans([LifecycleStage.EVANGELIST])
            assert {(s.customer, s.start, s.end) for s in only} == {
                (str(stayed.id), _T0 + 2 * hour, None)
            }, _c("customer_spans counts the stages it is given")
            with _raises(ValidationError, "customer_spans refuses what is no lifecycle stage"):
                unit.stage_history.customer_spans(["vip"])  # type: ignore[list-item]


def _sample(name: str) -> Entity:
    """A valid entity of kind ``name`` (its references name nothing stored yet)."""
    made: dict[str, Callable[[], Entity]] = {
        "contact": lambda: Contact.new(first_name="Kit"),
        "account": lambda: Account.new(name="Kit"),
        "lead": lambda: Lead.new(contact_id=uuid4(), source="kit", channel=LeadChannel.FORM),
        "deal": lambda: Deal.new(title="Kit", pipeline="sales", stage="new"),
        "ticket": lambda: Ticket.new(
            subject="Kit", contact_id=uuid4(), channel=TicketChannel.EMAIL
        ),
        "activity": lambda: Activity.new(contact_id=uuid4(), kind=ActivityKind.CALL),
        "task": lambda: Task.new(title="Kit", due_at=_T0),
        "consent": lambda: Consent.new(
            contact_id=uuid4(),
            channel=ConsentChannel.EMAIL,
            purpose="newsletter",
            status=ConsentStatus.GRANTED,
            source="kit",
        ),
        "do_not_contact": lambda: DoNotContact.new(
            contact_id=uuid4(),
            channel=ConsentChannel.EMAIL,
            reason=DoNotContactReason.BOUNCED,
            source="kit",
        ),
    }
    return made[name]()


def _refer(item: Entity, field: str, to: UUID | None) -> Entity:
    """``item`` with its reference ``field`` set to ``to``."""
    changes: dict[str, Any] = {field: to}
    return attrs.evolve(item, **changes)


def _matches(task: Task, given: dict[str, object]) -> bool:
    due_until = given.get("due_until")
    return all(
        getattr(task, name) == value for name, value in given.items() if name != "due_until"
    ) and (due_until is None or task.due_at <= due_until)  # type: ignore[operator]
