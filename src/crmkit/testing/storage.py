"""The storage conformance kit: pytest contracts that prove an adapter correct.

An adapter author opts in by subclassing :class:`StoreContract` in a test module and
providing one fixture, ``store``, that returns a store of the adapter::

    import pytest
    from crmkit.testing.storage import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self):
            return MyStore(tenant="kit")

The contract's tests then run against that store. Each test (and each hypothesis
example) works in a fresh tenant of its own, opened with ``store.for_tenant()``, so the
store needs no cleaning between them. The data-driven checks compare the adapter with the
memory reference (:class:`crmkit.storage.MemoryStore`) and with the Python rule
interpreter: ``find(rule)`` must return exactly the entities for which
:func:`crmkit.segmentation.evaluate` says TRUE.

:class:`Capabilities` switches optional checks off for adapters that lack a feature;
override the ``capabilities`` class attribute. Nothing here is a pytest plugin, and no
fixture is registered behind the adapter author's back.
"""

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final, TypeVar, cast
from uuid import UUID, uuid4

import attrs

from crmkit.errors import (
    ConcurrencyConflict,
    Duplicate,
    InvalidRule,
    MissingExtra,
    NotFound,
    StorageError,
    ValidationError,
)
from crmkit.models import (
    Activity,
    ActivityKind,
    Contact,
    Deal,
    Entity,
    Lead,
    Segment,
    StageChange,
    SubjectKind,
    Ticket,
)
from crmkit.models.rules import Rule, RuleEntity
from crmkit.segmentation import (
    Context,
    contacts_where,
    custom,
    deals_where,
    evaluate,
    field,
    in_segment,
)
from crmkit.storage import (
    ENTITIES,
    Cursor,
    MemoryStore,
    Order,
    Repository,
    Store,
    UnitOfWork,
    sortable_fields,
)

try:
    import pytest
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from hypothesis.stateful import (
        Bundle,
        RuleBasedStateMachine,
        consumes,
        invariant,
        rule,
        run_state_machine_as_test,
    )
except ImportError as _exc:  # pragma: no cover - exercised without the extra only
    raise MissingExtra("test", "pytest and hypothesis", "crmkit.testing.storage") from _exc

from crmkit.testing import strategies as cst
from crmkit.testing._queries import QueryContract

__all__ = ["Capabilities", "StoreContract", "repository_of"]

_E = TypeVar("_E", bound=Entity)
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
"""The ``now`` of the kit's rule queries."""

_REPOSITORIES = {
    "contact": "contacts",
    "account": "accounts",
    "lead": "leads",
    "deal": "deals",
    "ticket": "tickets",
    "activity": "activities",
    "task": "tasks",
    "segment": "segments",
    "consent": "consents",
    "stage_change": "stage_history",
}
_RULE_DATA = {
    RuleEntity.LEAD: cst.leads,
    RuleEntity.DEAL: cst.deals,
    RuleEntity.TICKET: cst.tickets,
}
_KIT = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def repository_of(unit: UnitOfWork, entity: type[_E]) -> Repository[_E]:
    """The repository of ``unit`` that stores ``entity``."""
    return cast(Repository[_E], getattr(unit, _REPOSITORIES[entity.entity_name]))


def _email_key(item: Any) -> object:
    """A contact's folded e-mail (its identity), or its id when it has no address."""
    email = getattr(item, "email", None)
    return item.id if email is None else email.casefold()


_UNIQUE: Final = (lambda item: item.id, _email_key)
"""What generated lists keep unique: ids, and contacts' folded e-mail addresses (a
store keeps one contact per address by default)."""


@attrs.frozen
class Capabilities:
    """Which optional checks apply to an adapter (all on by default)."""

    rules: bool = True
    """``find(rule)`` and ``count(rule)`` answer rules. A store that does not raises
    :class:`~crmkit.errors.InvalidRule` for any rule; ``False`` skips every rule check."""
    threads: bool = True
    """The store may be used from several threads at once."""
    examples: int = 25
    """Hypothesis examples per property check (the stateful test runs as many programs)."""


def _fresh(store: Store) -> Store:
    return store.for_tenant(f"kit-{uuid4().hex[:12]}")


def _ids(items: Any) -> list[UUID]:
    return [item.id for item in items]


class StoreContract(QueryContract):
    """The contract of the storage port. Subclass it and provide a ``store`` fixture."""

    capabilities: ClassVar[Capabilities] = Capabilities()

    @pytest.fixture
    def store(self) -> Store:
        """The adapter's store under test: override this fixture."""
        raise NotImplementedError("provide a `store` fixture returning your adapter's store")

    @pytest.fixture
    def fresh(self, store: Store) -> Store:
        """A tenant of ``store`` that holds nothing yet."""
        return _fresh(store)

    def _settings(self) -> Callable[[Any], Any]:
        return settings(_KIT, max_examples=self.capabilities.examples)

    # ------------------------------------------------------------------ round trips

    @pytest.mark.parametrize("entity", ENTITIES, ids=lambda e: e.entity_name)
    def test_every_entity_round_trips(self, store: Store, entity: type[Entity]) -> None:
        @self._settings()
        @given(st.lists(cst.for_type(entity), min_size=1, max_size=4, unique_by=_UNIQUE))
        def check(items: list[Entity]) -> None:
            tenant = _fresh(store)
            with tenant.unit_of_work() as unit:
                repository = repository_of(unit, entity)
                repository.add(items[0])
                assert repository.add_many(items[1:]) == len(items) - 1
                unit.commit()
            with tenant.unit_of_work() as unit:
                repository = repository_of(unit, entity)
                for item in items:
                    assert repository.get(item.id) == item
                assert repository.get_many([i.id for i in items]) == {i.id: i for i in items}
                assert repository.count() == len(items)

        check()

    def test_get_of_a_missing_id_is_not_found(self, fresh: Store) -> None:
        missing = uuid4()
        with fresh.unit_of_work() as unit:
            with pytest.raises(NotFound) as caught:
                unit.contacts.get(missing)
            assert (caught.value.entity, caught.value.id) == ("contact", missing)
            assert unit.contacts.get_many([missing]) == {}

    def test_add_of_a_taken_id_is_a_duplicate(self, fresh: Store) -> None:
        contact = Contact.new(first_name="Ada")
        with fresh.unit_of_work() as unit:
            unit.contacts.add(contact)
            with pytest.raises(Duplicate):
                unit.contacts.add(attrs.evolve(contact, first_name="Bo"))
            assert unit.contacts.get(contact.id) == contact

    def test_wrong_types_are_refused(self, fresh: Store) -> None:
        deal = Deal.new(title="x", pipeline="sales", stage="new")
        with fresh.unit_of_work() as unit:
            with pytest.raises(ValidationError) as caught:
                unit.contacts.add(deal)  # type: ignore[arg-type]
            assert caught.value.field == "item"
            with pytest.raises(ValidationError):
                unit.contacts.get("not an id")  # type: ignore[arg-type]
            assert unit.contacts.count() == 0

    # ------------------------------------------------------------------ versions

    def test_update_checks_and_increments_the_version(self, fresh: Store) -> None:
        contact = Contact.new(first_name="Ada")
        with fresh.unit_of_work() as unit:
            unit.contacts.add(contact)
            stored = unit.contacts.update(attrs.evolve(contact, first_name="Ada L."))
            assert stored.version == contact.version + 1
            assert unit.contacts.get(contact.id) == stored
            with pytest.raises(ConcurrencyConflict) as caught:
                unit.contacts.update(attrs.evolve(contact, first_name="stale"))
            error = caught.value
            assert (error.expected_version, error.actual_version) == (1, 2)
            assert unit.contacts.get(contact.id) == stored
            with pytest.raises(NotFound):
                unit.contacts.update(Contact.new(first_name="never added"))

    def test_delete_removes_and_checks_the_version(self, fresh: Store) -> None:
        first, second = Contact.new(first_name="a"), Contact.new(first_name="b")
        with fresh.unit_of_work() as unit:
            unit.contacts.add_many([first, second])
            with pytest.raises(ConcurrencyConflict):
                unit.contacts.delete(first.id, version=7)
            unit.contacts.delete(first.id, version=1)
            unit.contacts.delete(second.id)
            with pytest.raises(NotFound):
                unit.contacts.delete(first.id)
            assert unit.contacts.count() == 0

    # ------------------------------------------------------------------ units of work

    def test_nothing_is_kept_without_commit(self, fresh: Store) -> None:
        contact = Contact.new(first_name="Ada")
        with fresh.unit_of_work() as unit:
            unit.contacts.add(contact)
            assert unit.contacts.count() == 1
        with fresh.unit_of_work() as unit:
            assert unit.contacts.count() == 0

    def test_an_exception_rolls_back_and_propagates(self, fresh: Store) -> None:
        contact = Contact.new(first_name="Ada")

        def fail_midway() -> None:
            with fresh.unit_of_work() as unit:
                unit.contacts.add(contact)
                unit.commit()
                unit.contacts.update(attrs.evolve(contact, first_name="changed"))
                raise LookupError("host failure")

        with pytest.raises(LookupError, match="host failure"):
            fail_midway()
        with fresh.unit_of_work() as unit:
            assert unit.contacts.get(contact.id) == contact

    def test_rollback_discards_since_the_last_commit(self, fresh: Store) -> None:
        kept, dropped = Contact.new(first_name="kept"), Contact.new(first_name="dropped")
        with fresh.unit_of_work() as unit:
            unit.contacts.add(kept)
            unit.commit()
            unit.contacts.add(dropped)
            unit.rollback()
            assert _ids(unit.contacts.find()) == [kept.id]
            unit.commit()
        with fresh.unit_of_work() as unit:
            assert _ids(unit.contacts.find()) == [kept.id]

    def test_a_finished_unit_cannot_be_used(self, fresh: Store) -> None:
        with fresh.unit_of_work() as unit:
            pass
        with pytest.raises(StorageError):
            unit.contacts.count()

    # ------------------------------------------------------------------ tenants

    def test_tenants_never_see_each_other(self, fresh: Store) -> None:
        other = _fresh(fresh)
        contact = Contact.new(first_name="Ada")
        with fresh.unit_of_work() as unit:
            unit.contacts.add(contact)
            unit.commit()
        with other.unit_of_work() as unit:
            assert unit.contacts.count() == 0
            assert unit.contacts.find().items == ()
            with pytest.raises(NotFound):
                unit.contacts.get(contact.id)
            with pytest.raises(NotFound):
                unit.contacts.update(contact)
            with pytest.raises(NotFound):
                unit.contacts.delete(contact.id)
            unit.contacts.add(attrs.evolve(contact, first_name="same id, other tenant"))
            unit.commit()
        with fresh.unit_of_work() as unit:
            assert unit.contacts.get(contact.id) == contact

    # ------------------------------------------------------------------ bulk

    def test_add_many_is_all_or_nothing(self, fresh: Store) -> None:
        people = [Contact.new(first_name=f"p{i}") for i in range(30)]
        with fresh.unit_of_work() as unit:
            unit.contacts.add(people[0])
            unit.commit()
            with pytest.raises(Duplicate) as caught:
                unit.contacts.add_many([*people[1:], people[0]])
            assert caught.value.index == 29
            assert unit.contacts.count() == 1
            with pytest.raises(ValidationError) as wrong:
                unit.contacts.add_many([*people[1:5], "not a contact", people[6]])  # type: ignore[list-item]
            assert wrong.value.field == "[4]"
            repeated = [people[1], people[2], people[1]]
            with pytest.raises(Duplicate) as twice:
                unit.contacts.add_many(repeated)
            assert twice.value.index == 2
            assert unit.contacts.count() == 1
            assert unit.contacts.add_many(iter(people[1:])) == 29
            assert unit.contacts.count() == 30

    # ------------------------------------------------------------------ queries

    @pytest.mark.parametrize("descending", [False, True])
    def test_pages_follow_the_order_without_gaps(self, store: Store, descending: bool) -> None:
        @self._settings()
        @given(
            st.lists(cst.leads(), min_size=0, max_size=12, unique_by=_UNIQUE),
            st.sampled_from(sorted(sortable_fields(Lead))),
            st.integers(1, 5),
        )
        def check(leads: list[Lead], field: str, size: int) -> None:
            tenant = _fresh(store)
            order = Order(field, descending)
            reference = MemoryStore()
            for target in (tenant, reference):
                with target.unit_of_work() as unit:
                    unit.leads.add_many(leads)
                    unit.commit()
            with reference.unit_of_work() as unit:
                expected = _ids(unit.leads.find(order=order))
            with tenant.unit_of_work() as unit:
                assert _ids(unit.leads.find(order=order)) == expected
                seen: list[UUID] = []
                after: Cursor | None = None
                while True:
                    page = unit.leads.find(order=order, limit=size, after=after)
                    assert len(page) <= size
                    seen.extend(_ids(page))
                    if page.next is None:
                        break
                    after = Cursor.from_token(page.next.token(), Lead)
                assert seen == expected
                assert _ids(unit.leads.iterate(batch_size=size)) == sorted(expected)

        check()

    def test_orders_and_cursors_are_checked(self, fresh: Store) -> None:
        with fresh.unit_of_work() as unit:
            with pytest.raises(ValidationError) as caught:
                unit.contacts.find(order=Order("tags"))
            assert caught.value.field == "order"
            with pytest.raises(ValidationError):
                unit.contacts.find(limit=0)
            unit.contacts.add_many([Contact.new(first_name=n) for n in "abc"])
            page = unit.contacts.find(order=Order("first_name"), limit=1)
            assert page.next is not None
            with pytest.raises(ValidationError):
                unit.contacts.find(order=Order("created_at"), after=page.next)
            with pytest.raises(ValidationError):
                Cursor.from_token("not a cursor", Contact)

    def test_activities_of_a_contact_in_a_window(self, fresh: Store) -> None:
        contact = Contact.new(first_name="Ada")
        start = datetime(2026, 1, 1, tzinfo=UTC)

        def event(days: int, kind: ActivityKind, contact_id: UUID = contact.id) -> Activity:
            return Activity.new(
                contact_id=contact_id, kind=kind, occurred_at=start + timedelta(days=days)
            )

        mine = [event(d, k) for d, k in [(3, ActivityKind.EMAIL_OPENED), (1, ActivityKind.CALL)]]
        mine += [event(5, ActivityKind.CALL), event(9, ActivityKind.MEETING)]
        others = [event(2, ActivityKind.CALL, uuid4())]
        with fresh.unit_of_work() as unit:
            for activity in mine + others:
                unit.activities.append(activity)
            timeline = unit.activities.for_contact(contact.id)
            assert timeline == sorted(mine, key=lambda a: a.occurred_at)
            calls = unit.activities.for_contact(contact.id, kinds=[ActivityKind.CALL])
            assert [a.occurred_at.day for a in calls] == [2, 6]
            window = unit.activities.for_contact(
                contact.id, since=start + timedelta(days=3), until=start + timedelta(days=9)
            )
            assert [a.occurred_at.day for a in window] == [4, 6]

    def test_stage_history_of_one_subject(self, fresh: Store) -> None:
        deal_id = uuid4()
        at = datetime(2026, 1, 1, tzinfo=UTC)
        changes = [
            StageChange.new(
                subject=SubjectKind.DEAL,
                subject_id=deal_id,
                pipeline="sales",
                from_stage=None if i == 0 else f"s{i - 1}",
                to_stage=f"s{i}",
                at=at + timedelta(hours=5 - i),
            )
            for i in range(3)
        ]
        with fresh.unit_of_work() as unit:
            unit.stage_history.add_many(changes)
            unit.stage_history.add(attrs.evolve(changes[0], id=uuid4(), subject_id=uuid4()))
            found = unit.stage_history.for_subject(SubjectKind.DEAL, deal_id)
            assert found == sorted(changes, key=lambda c: c.at)
            assert unit.stage_history.for_subject(SubjectKind.LEAD, deal_id) == []

    # ------------------------------------------------------------------ rules

    def test_rules_select_what_the_interpreter_selects(self, store: Store) -> None:
        if not self.capabilities.rules:
            pytest.skip("this adapter does not answer rules")

        @self._settings()
        @given(st.data())
        def check(data: st.DataObject) -> None:
            people = data.draw(st.lists(cst.rule_contacts(), max_size=6, unique_by=_UNIQUE))
            index = data.draw(cst.activity_indexes(people, now=NOW))
            listed = Segment.new(
                name="listed", members=[p.id for p in people if data.draw(st.booleans())]
            )
            ruled = Segment.new(name="ruled", rule=data.draw(cst.rules(max_leaves=3)))
            segments = {listed.id: listed, ruled.id: ruled}
            rule = data.draw(cst.rules(RuleEntity.CONTACT, segment_ids=list(segments)))
            context = Context(now=NOW, activities=index, segments=segments)
            expected = {p.id for p in people if evaluate(rule, p, context) is True}
            tenant = _fresh(store)
            with tenant.unit_of_work() as unit:
                unit.contacts.add_many(people)
                unit.activities.add_many(a for found in index.values() for a in found)
                unit.segments.add_many(segments.values())
                unit.commit()
                assert set(_ids(unit.contacts.find(rule, now=NOW))) == expected
                assert unit.contacts.count(rule, now=NOW) == len(expected)
                assert unit.contacts.ids(rule, now=NOW) == sorted(expected)

        check()

    @pytest.mark.parametrize("entity", list(_RULE_DATA), ids=lambda e: e.value)
    def test_rules_over_leads_deals_and_tickets(self, store: Store, entity: RuleEntity) -> None:
        if not self.capabilities.rules:
            pytest.skip("this adapter does not answer rules")

        @self._settings()
        @given(st.data())
        def check(data: st.DataObject) -> None:
            items = data.draw(st.lists(_RULE_DATA[entity](), max_size=5, unique_by=_UNIQUE))
            rule: Rule = data.draw(cst.rules(entity, max_leaves=4))
            context = Context(now=NOW)
            expected = {i.id for i in items if evaluate(rule, i, context) is True}
            tenant = _fresh(store)
            with tenant.unit_of_work() as unit:
                repository = repository_of(unit, type(items[0]) if items else _entity_of(entity))
                repository.add_many(items)
                assert set(_ids(repository.find(rule, now=NOW))) == expected
                assert repository.count(rule, now=NOW) == len(expected)
                assert repository.ids(rule, now=NOW) == sorted(expected)

        check()

    def test_rule_values_are_data_never_sql(self, fresh: Store) -> None:
        if not self.capabilities.rules:
            pytest.skip("this adapter does not answer rules")
        tricky = "x'); DROP TABLE contacts; --"
        people = [Contact.new(first_name=tricky), Contact.new(first_name="plain")]
        with fresh.unit_of_work() as unit:
            unit.contacts.add_many(people)
            found = unit.contacts.find(contacts_where(field("first_name") == tricky))
            assert _ids(found) == [people[0].id]
            assert unit.contacts.count(contacts_where(field("first_name").contains("%"))) == 0
            assert unit.contacts.count(contacts_where(custom("x") == "' OR 1=1 --")) == 0
            assert unit.contacts.count() == 2

    def test_rules_that_cannot_apply_are_refused(self, fresh: Store) -> None:
        if not self.capabilities.rules:
            pytest.skip("this adapter does not answer rules")
        with fresh.unit_of_work() as unit:
            with pytest.raises(InvalidRule):
                unit.contacts.find(deals_where(field("owner") == "x"))
            with pytest.raises(InvalidRule):
                unit.accounts.find(contacts_where(field("owner") == "x"))
            missing = Segment.new(name="never stored", members=[])
            with pytest.raises(InvalidRule):
                unit.contacts.count(contacts_where(in_segment(missing)))

    # ------------------------------------------------------------------ concurrency

    def test_concurrent_updates_lose_nothing(self, fresh: Store) -> None:
        if not self.capabilities.threads:
            pytest.skip("this adapter is not for several threads")
        contact = Contact.new(first_name="counter", custom={"n": 0})
        with fresh.unit_of_work() as unit:
            unit.contacts.add(contact)
            unit.commit()
        done: list[int] = []
        conflicts: list[int] = []
        failures: list[BaseException] = []

        def work() -> None:
            for _ in range(10):
                try:
                    with fresh.unit_of_work() as unit:
                        current = unit.contacts.get(contact.id)
                        n = cast(int, current.custom["n"])
                        unit.contacts.update(attrs.evolve(current, custom={"n": n + 1}))
                        unit.commit()
                        done.append(1)
                except ConcurrencyConflict:
                    conflicts.append(1)
                except BaseException as error:
                    failures.append(error)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        with fresh.unit_of_work() as unit:
            final = unit.contacts.get(contact.id)
        assert final.custom["n"] == len(done) == final.version - 1
        assert len(done) + len(conflicts) == 40

    # ------------------------------------------------------------------ state machine

    def test_random_operations_match_the_reference(self, store: Store) -> None:
        run_state_machine_as_test(
            cast(type[RuleBasedStateMachine], lambda: _AgainstReference(_fresh(store))),
            settings=settings(
                _KIT, stateful_step_count=25, max_examples=self.capabilities.examples
            ),
        )


def _entity_of(entity: RuleEntity) -> type[Entity]:
    return {RuleEntity.LEAD: Lead, RuleEntity.DEAL: Deal, RuleEntity.TICKET: Ticket}[entity]


class _AgainstReference(RuleBasedStateMachine):
    """Random operations on contacts, applied to the adapter and the memory reference.

    Each step runs in a unit of work on both; the step commits or rolls back at random.
    After every step both must hold the same contacts, and every operation must end the
    same way (the same result, or the same error type).
    """

    contacts = Bundle("contacts")

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store
        self.reference: Store = MemoryStore()

    def both(self, operation: Callable[[UnitOfWork], Any], *, commit: bool) -> Any:
        outcomes = []
        for target in (self.store, self.reference):
            with target.unit_of_work() as unit:
                try:
                    outcome: Any = ("ok", operation(unit))
                except (NotFound, Duplicate, ConcurrencyConflict) as error:
                    outcome = ("error", type(error))
                if commit:
                    unit.commit()
            outcomes.append(outcome)
        assert outcomes[0] == outcomes[1], outcomes
        return outcomes[0]

    @rule(target=contacts, contact=cst.contacts(), commit=st.booleans())
    def add(self, contact: Contact, commit: bool) -> Contact:
        self.both(lambda unit: unit.contacts.add(contact), commit=commit)
        return contact

    @rule(
        contact=contacts,
        first_name=st.sampled_from(["Ada", "Bo", None]),
        stale=st.booleans(),
        commit=st.booleans(),
    )
    def update(self, contact: Contact, first_name: str | None, stale: bool, commit: bool) -> None:
        def operation(unit: UnitOfWork) -> Contact:
            current = unit.contacts.get(contact.id)
            base = attrs.evolve(current, version=current.version + 1) if stale else current
            return unit.contacts.update(attrs.evolve(base, first_name=first_name))

        self.both(operation, commit=commit)

    @rule(contact=consumes(contacts), commit=st.booleans())
    def delete(self, contact: Contact, commit: bool) -> None:
        self.both(lambda unit: unit.contacts.delete(contact.id), commit=commit)

    @rule(contact=contacts)
    def get(self, contact: Contact) -> None:
        self.both(lambda unit: unit.contacts.get(contact.id), commit=False)

    @rule(people=st.lists(cst.contacts(), max_size=3), commit=st.booleans())
    def add_many(self, people: list[Contact], commit: bool) -> None:
        self.both(lambda unit: unit.contacts.add_many(people), commit=commit)

    @invariant()
    def same_contacts(self) -> None:
        found = []
        for target in (self.store, self.reference):
            with target.unit_of_work() as unit:
                found.append(list(unit.contacts.find(order=Order("id"))))
        assert found[0] == found[1]
