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
store needs no cleaning between them. The property checks compare the adapter with the
memory reference (:class:`crmkit.storage.MemoryStore`) and with the Python rule
interpreter on random data: ``find(rule)`` must return exactly the entities for which
:func:`crmkit.segmentation.evaluate` says TRUE. Every other check runs fixed data (tables
of three-valued logic, case, relative dates, money, orders, tenants sharing ids), so a
broken adapter fails it on every run, whatever the seed. A failed check's message starts
with ``contract:`` and names the promise of the port that the store broke.

:class:`Capabilities` switches optional checks off for adapters that lack a feature;
override the ``capabilities`` class attribute. Nothing here is a pytest plugin, and no
fixture is registered behind the adapter author's back.
"""

import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import Any, ClassVar, Final, TypeVar, cast
from uuid import UUID, uuid4

import attrs

from crmkit.analytics import transactions_from_activities
from crmkit.clock import FixedClock
from crmkit.errors import (
    ConcurrencyConflict,
    DanglingReference,
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
    ForecastCategory,
    Lead,
    LifecycleStage,
    Money,
    Segment,
    StageChange,
    SubjectKind,
    Ticket,
)
from crmkit.models.rules import Rule, RuleEntity
from crmkit.segmentation import (
    Context,
    activity,
    contacts_where,
    custom,
    deals_where,
    evaluate,
    field,
    has_tag,
    in_segment,
    prop,
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
    validate_tenant,
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
from crmkit.testing._contract import _c, _raises
from crmkit.testing._export import PrivacyContract
from crmkit.testing._merges import MergeContract
from crmkit.testing._outbox import OutboxContract
from crmkit.testing._privacy import ReachabilityContract
from crmkit.testing._queries import QueryContract
from crmkit.testing._referents import repository_of, store_referents
from crmkit.testing._steps import StepContract

__all__ = ["Capabilities", "StoreContract", "repository_of", "store_referents"]

_ANY: Any = object()
_GOOD_TENANTS = ("a", "0", "A-b_c.d:e", "kit-0123456789ab", "x" * 64)
_BAD_TENANTS: tuple[object, ...] = (
    "",
    " ",
    "a b",
    "-a",
    "_a",
    ".a",
    "a/b",
    "a;b",
    "a'b",
    "a\n",
    "a\x00",
    "\u00e9t\u00e9",
    "x" * 65,
    5,
    None,
    b"abc",
)

_E = TypeVar("_E", bound=Entity)
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
"""The ``now`` of the kit's rule queries."""

_RULE_DATA = {
    RuleEntity.LEAD: cst.leads,
    RuleEntity.DEAL: cst.deals,
    RuleEntity.TICKET: cst.tickets,
}
_KIT = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


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
    :class:`~crmkit.errors.InvalidRule` for any rule; ``False`` skips every rule check
    (parity, the fixed rule tables, refusals)."""
    threads: bool = True
    """The store may be used from several threads at once; ``False`` skips the checks
    that use threads (concurrent updates, isolation of uncommitted writes)."""
    examples: int = 25
    """Hypothesis examples per property check (the stateful test runs as many programs)."""


def _fresh(store: Store) -> Store:
    return store.for_tenant(f"kit-{uuid4().hex[:12]}")


def _ids(items: Any) -> list[UUID]:
    return [item.id for item in items]


def _bounded(items: Iterable[_E], most: int, contract: str) -> list[_E]:
    """The first ``most + 1`` items, so that an endless iterator fails instead of hanging."""
    found = list(islice(items, most + 1))
    assert len(found) <= most, _c(
        f"{contract}: it yields more than the {most} items the query selects"
    )
    return found


def _pages(
    repository: Repository[_E],
    rule: Rule | None,
    *,
    order: Order,
    size: int,
    most: int,
    now: datetime | None = None,
    tokens: bool = False,
) -> list[UUID]:
    """The ids of every page of ``find``, following ``next``; at most ``most`` items.

    Fails, naming the contract, on a page larger than ``size``, a page with a ``next``
    cursor that is not full or that nothing follows, and paging that never ends.
    """
    seen: list[UUID] = []
    after: Cursor | None = None
    for _ in range(most + 2):
        page = repository.find(rule, order=order, limit=size, after=after, now=now)
        assert len(page) <= size, _c("find(limit=n) returns at most n items")
        if after is not None:
            assert len(page) > 0, _c(
                "a page has a next cursor only when more items follow (None on the last page)"
            )
        seen.extend(_ids(page))
        if page.next is None:
            return seen
        assert len(page) == size, _c("a page with a next cursor holds exactly limit items")
        assert len(seen) <= most, _c(
            "find(rule, after=cursor) keeps the rule on every page and paging ends: the "
            f"pages hold more than the {most} items the query selects (a rule dropped "
            "after the first page, or a next cursor that does not move past its page)"
        )
        after = Cursor.from_token(page.next.token(), repository.entity) if tokens else page.next
    pytest.fail(_c("paging ends: each next cursor moves past the last item of its page"))


class StoreContract(
    QueryContract,
    MergeContract,
    ReachabilityContract,
    PrivacyContract,
    OutboxContract,
    StepContract,
):
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
                store_referents(unit, items)
                repository = repository_of(unit, entity)
                repository.add(items[0])
                assert repository.add_many(items[1:]) == len(items) - 1, _c(
                    "add_many returns how many it stored"
                )
                unit.commit()
            with tenant.unit_of_work() as unit:
                repository = repository_of(unit, entity)
                for item in items:
                    assert repository.get(item.id) == item, _c(
                        f"a {entity.entity_name} survives add and get unchanged"
                    )
                assert repository.get_many([i.id for i in items]) == {i.id: i for i in items}, _c(
                    f"{entity.entity_name}s survive add_many and get_many unchanged"
                )
                assert repository.count() == len(items), _c("count() counts what was stored")

        check()

    def test_a_deal_s_forecast_category_round_trips(self, fresh: Store) -> None:
        """The per-deal forecast category: stored, changed, cleared, counted and matched
        by rules as the deal field ``forecast_category``."""
        deal = Deal.new(
            title="x", pipeline="sales", stage="new", forecast_category=ForecastCategory.COMMIT
        )
        plain = Deal.new(title="y", pipeline="sales", stage="new")
        with fresh.unit_of_work() as unit:
            unit.deals.add_many([deal, plain])
            assert unit.deals.get(deal.id).forecast_category is ForecastCategory.COMMIT, _c(
                "a deal's forecast category survives add and get"
            )
            commit = deals_where(field("forecast_category") == "commit")
            assert unit.deals.ids(commit) == [deal.id], _c(
                "a rule on forecast_category finds the deals set to it"
            )
            omitted = unit.deals.update(
                attrs.evolve(deal, forecast_category=ForecastCategory.OMITTED)
            )
            assert unit.deals.get(deal.id) == omitted, _c("update stores a changed category")
            counted = unit.deals.count_by("forecast_category")
            assert counted == {ForecastCategory.OMITTED: 1, None: 1}, _c(
                "count_by groups deals by forecast category (None: the stage decides)"
            )
            assert all(k is None or type(k) is ForecastCategory for k in counted), _c(
                "count_by gives forecast categories as ForecastCategory members"
            )
            cleared = unit.deals.update(attrs.evolve(omitted, forecast_category=None))
            assert unit.deals.get(deal.id) == cleared, _c("update clears the category")
            unit.commit()
        with fresh.unit_of_work() as unit:
            assert unit.deals.get(deal.id).forecast_category is None, _c(
                "a cleared category stays cleared after commit"
            )

    def test_get_of_a_missing_id_is_not_found(self, fresh: Store) -> None:
        missing = uuid4()
        with fresh.unit_of_work() as unit:
            with _raises(NotFound, "get of a missing id raises NotFound") as caught:
                unit.contacts.get(missing)
            assert (caught.value.entity, caught.value.id) == ("contact", missing), _c(
                "NotFound names the entity (its entity_name) and the id"
            )
            assert unit.contacts.get_many([missing]) == {}, _c("get_many leaves missing ids out")

    def test_add_of_a_taken_id_is_a_duplicate(self, fresh: Store) -> None:
        contact = Contact.new(first_name="Ada")
        with fresh.unit_of_work() as unit:
            assert unit.contacts.add(contact) == contact, _c("add returns the entity it stored")
            with _raises(Duplicate, "add of a taken id raises Duplicate") as caught:
                unit.contacts.add(attrs.evolve(contact, first_name="Bo"))
            assert (caught.value.entity, caught.value.id) == ("contact", contact.id), _c(
                "Duplicate names the entity and the id"
            )
            assert unit.contacts.get(contact.id) == contact, _c("a refused add changes nothing")

    def test_wrong_types_are_refused(self, fresh: Store) -> None:
        deal = Deal.new(title="x", pipeline="sales", stage="new")
        with fresh.unit_of_work() as unit:
            with _raises(ValidationError, "add refuses an entity of another kind") as caught:
                unit.contacts.add(deal)  # type: ignore[arg-type]
            assert caught.value.field == "item", _c("add's ValidationError names 'item'")
            with _raises(ValidationError, "get refuses an id that is not a UUID"):
                unit.contacts.get("not an id")  # type: ignore[arg-type]
            assert unit.contacts.count() == 0, _c("a refused call changes nothing")

    # ------------------------------------------------------------------ versions

    def test_update_checks_and_increments_the_version(self, fresh: Store) -> None:
        contact = Contact.new(first_name="Ada")
        with fresh.unit_of_work() as unit:
            unit.contacts.add(contact)
            stored = unit.contacts.update(attrs.evolve(contact, first_name="Ada L."))
            assert stored.version == contact.version + 1, _c("update returns version + 1")
            assert unit.contacts.get(contact.id) == stored, _c("update stores what it returns")
            with _raises(ConcurrencyConflict, "update of a stale version is a conflict") as caught:
                unit.contacts.update(attrs.evolve(contact, first_name="stale"))
            error = caught.value
            assert (error.expected_version, error.actual_version) == (1, 2), _c(
                "update's conflict: expected_version is the item's, actual_version the stored"
            )
            assert unit.contacts.get(contact.id) == stored, _c("a refused update changes nothing")
            with _raises(NotFound, "update of a missing id is NotFound"):
                unit.contacts.update(Contact.new(first_name="never added"))

    def test_delete_removes_and_checks_the_version(self, fresh: Store) -> None:
        first, second = Contact.new(first_name="a"), Contact.new(first_name="b")
        with fresh.unit_of_work() as unit:
            unit.contacts.add_many([first, second])
            with _raises(ConcurrencyConflict, "delete(version=other) is a conflict"):
                unit.contacts.delete(first.id, version=7)
            unit.contacts.delete(first.id, version=1)
            unit.contacts.delete(second.id)
            with _raises(NotFound, "delete of a missing id is NotFound"):
                unit.contacts.delete(first.id)
            assert unit.contacts.count() == 0, _c("delete removes the entity")

    # ------------------------------------------------------------------ units of work

    def test_nothing_is_kept_without_commit(self, fresh: Store) -> None:
        contact = Contact.new(first_name="Ada")
        with fresh.unit_of_work() as unit:
            unit.contacts.add(contact)
            assert unit.contacts.count() == 1, _c("a unit of work reads its own writes")
        with fresh.unit_of_work() as unit:
            assert unit.contacts.count() == 0, _c(
                "leaving a unit of work rolls back what was not committed"
            )

    def test_an_exception_rolls_back_and_propagates(self, fresh: Store) -> None:
        contact = Contact.new(first_name="Ada")

        def fail_midway() -> None:
            with fresh.unit_of_work() as unit:
                unit.contacts.add(contact)
                unit.commit()
                unit.contacts.update(attrs.evolve(contact, first_name="changed"))
                raise LookupError("host failure")

        with _raises(LookupError, "an exception in a unit of work propagates unchanged"):
            fail_midway()
        with fresh.unit_of_work() as unit:
            assert unit.contacts.get(contact.id) == contact, _c(
                "an exception rolls back what was not committed, and keeps what was"
            )

    def test_rollback_discards_since_the_last_commit(self, fresh: Store) -> None:
        kept, dropped = Contact.new(first_name="kept"), Contact.new(first_name="dropped")
        contract = "rollback() discards what came after the last commit(); the unit stays open"
        with fresh.unit_of_work() as unit:
            unit.contacts.add(kept)
            unit.commit()
            try:
                unit.contacts.add(dropped)
            except StorageError as error:
                pytest.fail(_c(f"commit() keeps the unit of work open for more work ({error})"))
            unit.rollback()
            try:
                found = _ids(unit.contacts.find())
                unit.commit()
            except StorageError as error:
                pytest.fail(_c(f"rollback() keeps the unit of work open for more work ({error})"))
            assert found == [kept.id], _c(contract)
        with fresh.unit_of_work() as unit:
            assert _ids(unit.contacts.find()) == [kept.id], _c(contract)

    def test_a_finished_unit_cannot_be_used(self, fresh: Store) -> None:
        with fresh.unit_of_work() as unit:
            pass
        with _raises(StorageError, "a unit of work that has ended refuses count()"):
            unit.contacts.count()

    # ------------------------------------------------------------------ tenants

    def test_tenants_never_see_each_other(self, fresh: Store) -> None:
        other = _fresh(fresh)
        contact = Contact.new(first_name="Ada")
        with fresh.unit_of_work() as unit:
            unit.contacts.add(contact)
            unit.commit()
        with other.unit_of_work() as unit:
            assert unit.contacts.count() == 0, _c("count() reads the store's own tenant only")
            assert unit.contacts.find().items == (), _c("find() reads the store's own tenant only")
            with _raises(NotFound, "get reads the store's own tenant only"):
                unit.contacts.get(contact.id)
            with _raises(NotFound, "update writes the store's own tenant only"):
                unit.contacts.update(contact)
            with _raises(NotFound, "delete writes the store's own tenant only"):
                unit.contacts.delete(contact.id)
            unit.contacts.add(attrs.evolve(contact, first_name="same id, other tenant"))
            unit.commit()
        with fresh.unit_of_work() as unit:
            assert unit.contacts.get(contact.id) == contact, _c(
                "the same id in another tenant is another entity"
            )

    # ------------------------------------------------------------------ bulk

    def test_add_many_is_all_or_nothing(self, fresh: Store) -> None:
        people = [Contact.new(first_name=f"p{i}") for i in range(30)]
        none_kept = "add_many is all or none: a failure keeps nothing of the call"
        with fresh.unit_of_work() as unit:
            unit.contacts.add(people[0])
            unit.commit()
            with _raises(Duplicate, "add_many of a taken id raises Duplicate") as caught:
                unit.contacts.add_many([*people[1:], people[0]])
            assert caught.value.index == 29, _c("add_many's Duplicate.index is the item's index")
            assert unit.contacts.count() == 1, _c(none_kept)
            with _raises(ValidationError, "add_many of a wrong item raises ValidationError") as c:
                unit.contacts.add_many([*people[1:5], "not a contact", people[6]])  # type: ignore[list-item]
            assert c.value.field == "[4]", _c("add_many's ValidationError names '[index]'")
            assert unit.contacts.count() == 1, _c(none_kept)
            repeated = [people[1], people[2], people[1]]
            with _raises(Duplicate, "add_many of an id given twice raises Duplicate") as twice:
                unit.contacts.add_many(repeated)
            assert twice.value.index == 2, _c("add_many's Duplicate.index is the second one's")
            assert unit.contacts.count() == 1, _c(none_kept)
            assert unit.contacts.add_many(iter(people[1:])) == 29, _c(
                "add_many reads an iterator once and returns how many it stored"
            )
            assert unit.contacts.count() == 30, _c("add_many stores every item")

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
                    store_referents(unit, leads)
                    unit.leads.add_many(leads)
                    unit.commit()
            with reference.unit_of_work() as unit:
                expected = _ids(unit.leads.find(order=order))
            contract = f"find(order={order}) follows the order of the memory store"
            with tenant.unit_of_work() as unit:
                assert _ids(unit.leads.find(order=order)) == expected, _c(contract)
                most = len(leads)
                seen = _pages(unit.leads, None, order=order, size=size, most=most, tokens=True)
                assert seen == expected, _c(f"{contract}, page by page (limit {size})")
                iterated = _bounded(unit.leads.iterate(batch_size=size), most, "iterate() ends")
                assert _ids(iterated) == sorted(expected), _c("iterate() yields all, by id")

        check()

    def test_orders_and_cursors_are_checked(self, fresh: Store) -> None:
        with fresh.unit_of_work() as unit:
            with _raises(
                ValidationError, "an order by a field that cannot order is refused"
            ) as caught:
                unit.contacts.find(order=Order("tags"))
            assert caught.value.field == "order", _c("a refused order names the field 'order'")
            with _raises(ValidationError, "a limit below 1 is refused"):
                unit.contacts.find(limit=0)
            unit.contacts.add_many([Contact.new(first_name=n) for n in "abc"])
            page = unit.contacts.find(order=Order("first_name"), limit=1)
            assert page.next is not None, _c("a page with more items after it has a next cursor")
            with _raises(ValidationError, "a cursor of another order is refused"):
                unit.contacts.find(order=Order("created_at"), after=page.next)
            with _raises(ValidationError, "Cursor.from_token refuses what is not a token"):
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
            unit.contacts.add(contact)
            store_referents(unit, others)
            for activity in mine + others:
                unit.activities.append(activity)
            timeline = unit.activities.for_contact(contact.id)
            assert timeline == sorted(mine, key=lambda a: a.occurred_at), _c(
                "for_contact lists one contact's activities, oldest first"
            )
            calls = unit.activities.for_contact(contact.id, kinds=[ActivityKind.CALL])
            assert [a.occurred_at.day for a in calls] == [2, 6], _c(
                "for_contact(kinds=...) lists those kinds only"
            )
            window = unit.activities.for_contact(
                contact.id, since=start + timedelta(days=3), until=start + timedelta(days=9)
            )
            assert [a.occurred_at.day for a in window] == [4, 6], _c(
                "for_contact: since is inclusive, until exclusive"
            )

    def test_activities_of_kinds_across_contacts(self, fresh: Store) -> None:
        start = datetime(2026, 1, 1, tzinfo=UTC)
        ada, bob = Contact.new(first_name="Ada"), Contact.new(first_name="Bob")

        def event(days: int, kind: ActivityKind, who: Contact) -> Activity:
            return Activity.new(
                contact_id=who.id, kind=kind, occurred_at=start + timedelta(days=days)
            )

        bought = [
            event(4, ActivityKind.PURCHASE, bob),
            event(1, ActivityKind.PURCHASE, ada),
            event(9, ActivityKind.PURCHASE, ada),
        ]
        rest = [event(2, ActivityKind.CALL, ada), event(3, ActivityKind.NOTE, bob)]
        with fresh.unit_of_work() as unit:
            unit.contacts.add_many([ada, bob])
            unit.activities.add_many(bought + rest)
            purchases = unit.activities.of_kinds([ActivityKind.PURCHASE])
            assert purchases == sorted(bought, key=lambda a: a.occurred_at), _c(
                "of_kinds lists the activities of those kinds of every contact, oldest first"
            )
            both = unit.activities.of_kinds([ActivityKind.PURCHASE, ActivityKind.CALL])
            assert [a.occurred_at.day for a in both] == [2, 3, 5, 10], _c(
                "of_kinds lists every kind asked for"
            )
            assert unit.activities.of_kinds([]) == [], _c("of_kinds([]) lists nothing")
            window = unit.activities.of_kinds(
                [ActivityKind.PURCHASE],
                since=start + timedelta(days=1),
                until=start + timedelta(days=9),
            )
            assert [a.occurred_at.day for a in window] == [2, 5], _c(
                "of_kinds: since is inclusive, until exclusive"
            )

    def test_activities_of_many_contacts(self, fresh: Store) -> None:
        start = datetime(2026, 1, 1, tzinfo=UTC)
        ada, bob, cy = (Contact.new(first_name=n) for n in ("Ada", "Bob", "Cy"))

        def event(days: int, kind: ActivityKind, who: Contact) -> Activity:
            return Activity.new(
                contact_id=who.id, kind=kind, occurred_at=start + timedelta(days=days)
            )

        tied = start + timedelta(days=5)
        ties = sorted(
            [
                Activity.new(contact_id=bob.id, kind=ActivityKind.NOTE, occurred_at=tied),
                Activity.new(contact_id=ada.id, kind=ActivityKind.CALL, occurred_at=tied),
            ],
            key=lambda a: a.id,
        )
        stored = [
            event(7, ActivityKind.CALL, bob),
            event(1, ActivityKind.PURCHASE, ada),
            ties[1],
            event(3, ActivityKind.NOTE, cy),
            event(9, ActivityKind.NOTE, ada),
            ties[0],
            event(2, ActivityKind.CALL, bob),
        ]
        with fresh.unit_of_work() as unit:
            unit.contacts.add_many([ada, bob, cy])
            unit.activities.add_many(stored)
            both = unit.activities.for_contacts([bob.id, ada.id, bob.id])
            expected = sorted(
                [a for a in stored if a.contact_id != cy.id], key=lambda a: (a.occurred_at, a.id)
            )
            assert both == expected, _c(
                "for_contacts lists the activities of those contacts only, oldest first, ties by id"
            )
            assert both == sorted(
                unit.activities.for_contact(ada.id) + unit.activities.for_contact(bob.id),
                key=lambda a: (a.occurred_at, a.id),
            ), _c("for_contacts lists what for_contact lists of each")
            assert unit.activities.for_contacts([]) == [], _c("for_contacts([]) lists nothing")
            calls = unit.activities.for_contacts([ada.id, bob.id], kinds=[ActivityKind.CALL])
            assert [a.occurred_at.day for a in calls] == [3, 6, 8], _c(
                "for_contacts(kinds=...) lists those kinds only"
            )
            assert unit.activities.for_contacts([ada.id], kinds=[]) == [], _c(
                "for_contacts(kinds=[]) lists nothing"
            )
            window = unit.activities.for_contacts(
                [ada.id, bob.id, cy.id],
                since=start + timedelta(days=3),
                until=start + timedelta(days=9),
            )
            assert [a.occurred_at.day for a in window] == [4, 6, 6, 8], _c(
                "for_contacts: since is inclusive, until exclusive"
            )

    def test_purchases_as_transactions(self, fresh: Store) -> None:
        start = datetime(2026, 1, 1, tzinfo=UTC)
        ada, bob = Contact.new(first_name="Ada"), Contact.new(first_name="Bob")

        def event(days: int, who: Contact, amount: Money | None = None) -> Activity:
            kind = ActivityKind.NOTE if amount is None else ActivityKind.PURCHASE
            return Activity.new(
                contact_id=who.id,
                kind=kind,
                occurred_at=start + timedelta(days=days),
                amount=amount,
            )

        stored = [
            event(4, bob, Money("19.99", "EUR")),
            event(1, ada, Money("0.01", "EUR")),
            event(4, ada, Money("1234567.891", "USD")),
            event(9, ada, Money("0", "EUR")),
            event(2, bob),
        ]
        with fresh.unit_of_work() as unit:
            unit.contacts.add_many([ada, bob])
            unit.activities.add_many(stored)
            bought = unit.activities.of_kinds([ActivityKind.PURCHASE])
            assert unit.activities.purchases() == transactions_from_activities(bought), _c(
                "purchases lists the purchase activities as transactions (contact, time, "
                "amount), oldest first, ties by id"
            )
            since, until = start + timedelta(days=1), start + timedelta(days=9)
            window = unit.activities.purchases(since=since, until=until)
            every = transactions_from_activities(bought)
            assert window == [t for t in every if since <= t.at < until], _c(
                "purchases: since is inclusive, until exclusive"
            )
            assert [t.at.day for t in window] == [2, 5, 5], _c(
                "purchases: since is inclusive, until exclusive"
            )
            unit.activities.add(
                Activity.new(contact_id=bob.id, kind=ActivityKind.PURCHASE, occurred_at=start)
            )
            with _raises(ValidationError, "a purchase without an amount is refused") as c:
                unit.activities.purchases()
            assert c.value.field == "activities[0].amount", _c(
                "a purchase without an amount is refused naming activities[i].amount"
            )

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
            assert found == sorted(changes, key=lambda c: c.at), _c(
                "for_subject lists one subject's changes, oldest first"
            )
            assert unit.stage_history.for_subject(SubjectKind.LEAD, deal_id) == [], _c(
                "for_subject lists changes of that kind of subject only"
            )

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
                store_referents(unit, people)
                unit.contacts.add_many(people)
                unit.activities.add_many(a for found in index.values() for a in found)
                unit.segments.add_many(segments.values())
                unit.commit()
                assert set(_ids(unit.contacts.find(rule, now=NOW))) == expected, _c(
                    "rule parity: find, count and ids select what evaluate() says is TRUE"
                )
                assert unit.contacts.count(rule, now=NOW) == len(expected), _c(
                    "rule parity: find, count and ids select what evaluate() says is TRUE"
                )
                assert unit.contacts.ids(rule, now=NOW) == sorted(expected), _c(
                    "rule parity: find, count and ids select what evaluate() says is TRUE"
                )

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
            tenant = _fresh(store)
            with tenant.unit_of_work() as unit:
                stand_ins = store_referents(unit, items)
                contacts = {c.id: c for c in stand_ins if isinstance(c, Contact)}
                context = Context(now=NOW, contacts=contacts)
                expected = {i.id for i in items if evaluate(rule, i, context) is True}
                repository = repository_of(unit, type(items[0]) if items else _entity_of(entity))
                repository.add_many(items)
                assert set(_ids(repository.find(rule, now=NOW))) == expected, _c(
                    "rule parity: find, count and ids select what evaluate() says is TRUE"
                )
                assert repository.count(rule, now=NOW) == len(expected), _c(
                    "rule parity: find, count and ids select what evaluate() says is TRUE"
                )
                assert repository.ids(rule, now=NOW) == sorted(expected), _c(
                    "rule parity: find, count and ids select what evaluate() says is TRUE"
                )

        check()

    def test_rule_values_are_data_never_sql(self, fresh: Store) -> None:
        if not self.capabilities.rules:
            pytest.skip("this adapter does not answer rules")
        tricky = "x'); DROP TABLE contacts; --"
        people = [Contact.new(first_name=tricky), Contact.new(first_name="plain")]
        with fresh.unit_of_work() as unit:
            unit.contacts.add_many(people)
            found = unit.contacts.find(contacts_where(field("first_name") == tricky))
            assert _ids(found) == [people[0].id], _c(
                "rule values are data: quotes, % and SQL in values match literally"
            )
            percent = contacts_where(field("first_name").contains("%"))
            assert unit.contacts.count(percent) == 0, _c(
                "rule values are data: quotes, % and SQL in values match literally"
            )
            injection = contacts_where(custom("x") == "' OR 1=1 --")
            assert unit.contacts.count(injection) == 0, _c(
                "rule values are data: quotes, % and SQL in values match literally"
            )
            assert unit.contacts.count() == 2, _c(
                "rule values are data: quotes, % and SQL in values match literally"
            )

    def test_rules_that_cannot_apply_are_refused(self, fresh: Store) -> None:
        if not self.capabilities.rules:
            pytest.skip("this adapter does not answer rules")
        with fresh.unit_of_work() as unit:
            with _raises(InvalidRule, "a rule over another entity is refused"):
                unit.contacts.find(deals_where(field("owner") == "x"))
            with _raises(InvalidRule, "accounts take no rule"):
                unit.accounts.find(contacts_where(field("owner") == "x"))
            missing = Segment.new(name="never stored", members=[])
            with _raises(InvalidRule, "in_segment of a segment the tenant lacks is refused"):
                unit.contacts.count(contacts_where(in_segment(missing)))

    # ------------------------------------------------------------------ fixed tables
    # Deterministic checks: each fails on a broken adapter whatever hypothesis draws.

    def test_an_ended_unit_refuses_every_call(self, fresh: Store) -> None:
        stored = Contact.new(first_name="stored")
        with fresh.unit_of_work() as unit:
            unit.contacts.add(stored)
            unit.commit()
        late = Contact.new(first_name="late")
        calls: list[tuple[str, Callable[[], object]]] = [
            ("add", lambda: unit.contacts.add(late)),
            ("add_many", lambda: unit.contacts.add_many([late])),
            ("update", lambda: unit.contacts.update(attrs.evolve(stored, first_name="x"))),
            ("delete", lambda: unit.contacts.delete(stored.id)),
            ("get", lambda: unit.contacts.get(stored.id)),
            ("get_many", lambda: unit.contacts.get_many([stored.id])),
            ("find", unit.contacts.find),
            ("count", unit.contacts.count),
            ("ids", unit.contacts.ids),
            ("iterate", lambda: list(islice(unit.contacts.iterate(), 3))),
            ("activities.for_contact", lambda: unit.activities.for_contact(stored.id)),
            ("activities.of_kinds", lambda: unit.activities.of_kinds([ActivityKind.NOTE])),
            ("activities.for_contacts", lambda: unit.activities.for_contacts([stored.id])),
            ("activities.purchases", unit.activities.purchases),
            (
                "stage_history.for_subject",
                lambda: unit.stage_history.for_subject(SubjectKind.DEAL, stored.id),
            ),
            ("commit", unit.commit),
        ]
        for name, call in calls:
            with _raises(StorageError, f"a unit of work that has ended refuses {name}()"):
                call()
        with fresh.unit_of_work() as unit:
            assert _ids(unit.contacts.find()) == [stored.id], _c(
                "nothing is written through a unit of work that has ended"
            )
            assert unit.contacts.get(stored.id) == stored, _c(
                "nothing is written through a unit of work that has ended"
            )

    def test_uncommitted_writes_stay_invisible_to_other_units(self, fresh: Store) -> None:
        if not self.capabilities.threads:
            pytest.skip("this adapter is not for several threads")
        contact = Contact.new(first_name="uncommitted")
        written, reading = threading.Event(), threading.Event()
        seen: list[object] = []
        failures: list[BaseException] = []

        def read() -> None:
            written.wait(30)
            reading.set()
            try:
                with fresh.unit_of_work() as unit:
                    seen.append((unit.contacts.count(), dict(unit.contacts.get_many([contact.id]))))
            except BaseException as error:
                failures.append(error)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        with fresh.unit_of_work() as unit:
            unit.contacts.add(contact)
            written.set()
            reading.wait(30)
            reader.join(timeout=1.0)  # a store may make the reader wait for this unit
        reader.join(timeout=60)
        assert not reader.is_alive(), _c("a unit of work waiting for another ends when it ends")
        assert failures == [], _c("a unit of work waiting for another does not fail")
        assert seen == [(0, {})], _c(
            "isolation: a unit of work never sees another unit's uncommitted writes"
        )
        with fresh.unit_of_work() as unit:
            unit.contacts.add(contact)
            unit.commit()
        with fresh.unit_of_work() as unit:
            assert unit.contacts.get_many([contact.id]) == {contact.id: contact}, _c(
                "a unit of work sees what other units committed before it began"
            )

    def test_tenant_keys_follow_one_rule(self, store: Store) -> None:
        for key in _GOOD_TENANTS:
            assert validate_tenant(key) == key  # the kit's table agrees with crmkit's rule
            other = store.for_tenant(key)
            assert other.tenant == key, _c("for_tenant(key).tenant is key")
            with other.unit_of_work() as unit:
                unit.contacts.count()
        for bad in _BAD_TENANTS:
            with _raises(ValidationError, f"for_tenant({bad!r}) is refused: not a tenant key"):
                validate_tenant(bad)
            with _raises(ValidationError, f"for_tenant({bad!r}) is refused: not a tenant key") as c:
                store.for_tenant(bad)  # type: ignore[arg-type]
            assert c.value.field == "tenant", _c("a refused tenant key names the field 'tenant'")

    def test_close_ends_this_store_alone(self, store: Store) -> None:
        closing, sibling = _fresh(store), _fresh(store)
        kept = Contact.new(first_name="kept")
        with closing.unit_of_work() as unit:
            unit.contacts.add(kept)
            unit.commit()
        closing.close()
        with (
            _raises(StorageError, "close(): a closed store refuses unit_of_work()"),
            closing.unit_of_work(),
        ):
            pass
        closing.close()  # closing twice is harmless
        for name, other in [
            ("a sibling", sibling),
            ("the store it came from", store),
            ("a new store of its tenant", store.for_tenant(closing.tenant)),
        ]:
            try:
                with other.unit_of_work() as unit:
                    found = unit.contacts.get_many([kept.id])
            except StorageError as error:
                pytest.fail(_c(f"close() closes this store alone, not {name} ({error})"))
            if other.tenant == closing.tenant:
                assert found == {kept.id: kept}, _c("close() keeps the data of its tenant")

    def test_update_and_delete_name_entity_id_and_versions(self, fresh: Store) -> None:
        contact = Contact.new(first_name="Ada")
        missing = Contact.new(first_name="never stored")
        with fresh.unit_of_work() as unit:
            unit.contacts.add(contact)
            stored = unit.contacts.update(attrs.evolve(contact, first_name="Ada L."))
            assert stored.version == contact.version + 1, _c("update returns version + 1")
            assert unit.contacts.get(contact.id) == stored, _c("update stores what it returns")
            with _raises(ConcurrencyConflict, "delete(version=stale) is a conflict") as c:
                unit.contacts.delete(contact.id, version=contact.version)
            error = c.value
            assert (error.entity, error.id) == ("contact", contact.id), _c(
                "a conflict names the entity and its id"
            )
            assert (error.expected_version, error.actual_version) == (1, 2), _c(
                "delete's conflict: expected_version is the caller's, actual_version the stored"
            )
            with _raises(NotFound, "update of a missing id is NotFound") as c:
                unit.contacts.update(missing)
            assert (c.value.entity, c.value.id) == ("contact", missing.id), _c(
                "NotFound names the entity and the id"
            )
            with _raises(NotFound, "delete(id, version=n) of a missing id is NotFound") as c:
                unit.contacts.delete(missing.id, version=1)
            assert (c.value.entity, c.value.id) == ("contact", missing.id), _c(
                "NotFound names the entity and the id"
            )
            with _raises(NotFound, "delete of a missing id is NotFound"):
                unit.contacts.delete(missing.id)
            unit.contacts.delete(contact.id, version=2)
            assert unit.contacts.get_many([contact.id]) == {}, _c("delete removes the entity")

    def test_update_refuses_an_entity_of_another_kind(self, fresh: Store) -> None:
        contact = Contact.new(first_name="Ada")
        impostor = attrs.evolve(Deal.new(title="x", pipeline="sales", stage="new"), id=contact.id)
        with fresh.unit_of_work() as unit:
            unit.contacts.add(contact)
            calls: list[tuple[str, Callable[[], object]]] = [
                ("update", lambda: unit.contacts.update(impostor)),  # type: ignore[arg-type]
                ("add", lambda: unit.contacts.add(impostor)),  # type: ignore[arg-type]
            ]
            for name, call in calls:
                with _raises(ValidationError, f"{name} refuses an entity of another kind") as c:
                    call()
                assert c.value.field == "item", _c(f"{name}'s ValidationError names 'item'")
            assert unit.contacts.get(contact.id) == contact, _c("a refused update changes nothing")

    def test_errors_name_the_field(self, fresh: Store) -> None:
        contact = Contact.new(first_name="Ada")
        naive = datetime(2026, 1, 1)  # the wrong input under test
        with fresh.unit_of_work() as unit:
            unit.contacts.add_many([contact, Contact.new(first_name="Bo")])
            page = unit.contacts.find(order=Order("first_name"), limit=1)
            assert page.next is not None, _c("a page with more items after it has a next cursor")
            for entity in ENTITIES:
                assert repository_of(unit, entity).entity is entity, _c(
                    f"repository.entity is the entity class it stores ({entity.__name__})"
                )
            a, b = contact.id, "not an id"
            cases: list[tuple[str, object, Callable[[], object]]] = [
                ("id", b, lambda: unit.contacts.get(b)),  # type: ignore[arg-type]
                ("id", b, lambda: unit.contacts.delete(b)),  # type: ignore[arg-type]
                ("ids[1]", b, lambda: unit.contacts.get_many([a, b])),  # type: ignore[list-item]
                ("item", b, lambda: unit.contacts.add(b)),  # type: ignore[arg-type]
                ("[1]", b, lambda: unit.contacts.add_many([Contact.new(), b])),  # type: ignore[list-item]
                ("limit", 0, lambda: unit.contacts.find(limit=0)),
                ("limit", True, lambda: unit.contacts.find(limit=True)),
                ("order", _ANY, lambda: unit.contacts.find(order=Order("tags"))),
                ("after", b, lambda: unit.contacts.find(after=b)),  # type: ignore[arg-type]
                ("after", page.next, lambda: unit.contacts.find(after=page.next)),
                ("now", naive, lambda: unit.contacts.count(now=naive)),
                ("batch_size", 0, lambda: list(islice(unit.contacts.iterate(batch_size=0), 1))),
                ("contact_id", b, lambda: unit.activities.for_contact(b)),  # type: ignore[arg-type]
                ("kinds", "call", lambda: unit.activities.for_contact(a, kinds="call")),  # type: ignore[arg-type]
                ("kinds", "call", lambda: unit.activities.for_contact(a, kinds=["call"])),  # type: ignore[list-item]
                ("since", naive, lambda: unit.activities.for_contact(a, since=naive)),
                ("until", naive, lambda: unit.activities.for_contact(a, until=naive)),
                ("kinds", None, lambda: unit.activities.of_kinds(None)),  # type: ignore[arg-type]
                ("kinds", "call", lambda: unit.activities.of_kinds(["call"])),  # type: ignore[list-item]
                ("until", naive, lambda: unit.activities.of_kinds([], until=naive)),
                ("contact_ids[1]", b, lambda: unit.activities.for_contacts([a, b])),  # type: ignore[list-item]
                ("kinds", "call", lambda: unit.activities.for_contacts([a], kinds=["call"])),  # type: ignore[list-item]
                ("since", naive, lambda: unit.activities.for_contacts([a], since=naive)),
                ("until", naive, lambda: unit.activities.purchases(until=naive)),
                ("subject", "deal", lambda: unit.stage_history.for_subject("deal", a)),  # type: ignore[arg-type]
                (
                    "subject_id",
                    b,
                    lambda: unit.stage_history.for_subject(SubjectKind.DEAL, b),  # type: ignore[arg-type]
                ),
            ]
            for name, value, call in cases:
                contract = f"a wrong argument raises ValidationError naming the field {name!r}"
                with _raises(ValidationError, contract) as c:
                    call()
                assert c.value.field == name, _c(f"{contract} (it named {c.value.field!r})")
                if value is not _ANY:
                    assert c.value.value == value, _c(f"{contract} and its value {value!r}")
            assert unit.contacts.count() == 2, _c("a refused call changes nothing")

    def test_timelines_are_exact(self, fresh: Store) -> None:
        contact, other = uuid4(), uuid4()
        start = datetime(2026, 1, 1, tzinfo=UTC)

        def event(hours: int, kind: ActivityKind, who: UUID = contact) -> Activity:
            at = start + timedelta(hours=hours)
            return Activity.new(contact_id=who, kind=kind, occurred_at=at)

        ids = sorted((uuid4() for _ in range(3)), reverse=True)  # stored against id order
        tied = [attrs.evolve(event(5, ActivityKind.CALL), id=i) for i in ids]
        mine = [event(9, ActivityKind.MEETING), *tied, event(1, ActivityKind.NOTE)]
        with fresh.unit_of_work() as unit:
            store_referents(unit, [*mine, event(5, ActivityKind.CALL, other)])
            unit.activities.add_many(mine[1:])
            assert unit.activities.append(mine[0]) == mine[0], _c("append returns the activity")
            with _raises(Duplicate, "append of a taken id raises Duplicate (append is add)"):
                unit.activities.append(attrs.evolve(mine[0], kind=ActivityKind.NOTE))
            unit.activities.add(event(5, ActivityKind.CALL, other))
            timeline = unit.activities.for_contact(contact)
            expected = sorted(mine, key=lambda a: (a.occurred_at, a.id))
            assert timeline == expected, _c(
                "for_contact lists one contact's activities oldest first, ties by id"
            )
            for kinds, wanted in [
                ([], []),
                ([ActivityKind.CALL], tied),
                ({ActivityKind.NOTE, ActivityKind.MEETING}, [mine[4], mine[0]]),
            ]:
                found = unit.activities.for_contact(contact, kinds=kinds)
                assert found == sorted(wanted, key=lambda a: (a.occurred_at, a.id)), _c(
                    f"for_contact(kinds={kinds!r}) lists those kinds only (none for an empty set)"
                )
            for since, until, wanted in [
                (5, None, [*tied, mine[0]]),
                (None, 5, [mine[4]]),
                (5, 9, tied),
                (5, 5, []),
                (1, 2, [mine[4]]),
            ]:
                low = None if since is None else start + timedelta(hours=since)
                high = None if until is None else start + timedelta(hours=until)
                found = unit.activities.for_contact(contact, since=low, until=high)
                assert found == sorted(wanted, key=lambda a: (a.occurred_at, a.id)), _c(
                    f"for_contact(since=hour {since}, until=hour {until}): "
                    "since inclusive, until exclusive"
                )
            subject = uuid4()
            at = datetime(2026, 2, 1, tzinfo=UTC)
            change_ids = sorted((uuid4() for _ in range(3)), reverse=True)
            changes = [
                StageChange.new(
                    subject=SubjectKind.DEAL, subject_id=subject, to_stage=f"s{i}", at=at
                )
                for i in range(3)
            ]
            changes = [attrs.evolve(c, id=i) for c, i in zip(changes, change_ids, strict=True)]
            later = StageChange.new(
                subject=SubjectKind.DEAL, subject_id=subject, to_stage="s9", at=at + timedelta(1)
            )
            unit.stage_history.add_many([later, *changes])
            unit.stage_history.add(attrs.evolve(changes[0], id=uuid4(), subject=SubjectKind.LEAD))
            found_changes = unit.stage_history.for_subject(SubjectKind.DEAL, subject)
            assert found_changes == [*sorted(changes, key=lambda c: c.id), later], _c(
                "for_subject lists one subject's changes oldest first, ties by id"
            )

    def test_the_same_ids_in_two_tenants_stay_apart(self, store: Store) -> None:
        # Every id exists in both tenants with different data, or in one tenant only.
        first, second = _fresh(store), _fresh(store)
        two = _TwoTenants(first.tenant, second.tenant)
        for tenant in (first, second):
            with tenant.unit_of_work() as unit:
                two.fill(unit, tenant.tenant)
                unit.commit()
        for tenant in (first, second):
            me = tenant.tenant
            people = {p.id: p for p in two.people[me]}
            events = sorted(two.events[me], key=lambda a: (a.occurred_at, a.id))
            with tenant.unit_of_work() as unit:
                contacts = unit.contacts
                own = "reads the store's own tenant only"
                assert contacts.get(two.shared) == people[two.shared], _c(f"get {own}")
                everyone = [two.shared, *two.only.values()]
                assert contacts.get_many(everyone) == people, _c(f"get_many {own}")
                assert contacts.ids() == sorted(people), _c(f"ids() {own}")
                assert contacts.count() == 2, _c(f"count() {own}")
                assert sorted(_ids(contacts.find())) == sorted(people), _c(f"find() {own}")
                iterated = _bounded(contacts.iterate(), 4, "iterate() ends")
                assert _ids(iterated) == sorted(people), _c(f"iterate() {own}")
                timeline = unit.activities.for_contact(two.shared)
                assert timeline == events, _c(f"activities.for_contact {own}")
                assert unit.activities.get(two.activity_id) == two.events[me][0], _c(f"get {own}")
                history = unit.stage_history.for_subject(SubjectKind.DEAL, two.deal_id)
                assert history == [two.changes[me]], _c(f"stage_history.for_subject {own}")
                if self.capabilities.rules:
                    self._check_rules_of_one_tenant(unit, two, me)

    def _check_rules_of_one_tenant(self, unit: UnitOfWork, two: "_TwoTenants", me: str) -> None:
        is_first = me == two.first
        theirs = two.kinds[two.second if is_first else two.first]
        own_activities = "activity conditions count the tenant's own activities only"
        own_segments = "in_segment reads the tenant's own segment of that id"
        rules = [
            (contacts_where(activity(two.kinds[me]).exists()), [two.shared], own_activities),
            (contacts_where(activity(theirs).exists()), [], own_activities),
            (
                contacts_where(in_segment(two.listed_id)),
                [two.only[me]] if is_first else [two.shared],
                own_segments,
            ),
            (
                contacts_where(in_segment(two.ruled_id)),
                [] if is_first else [two.shared, two.only[me]],
                own_segments,
            ),
        ]
        for rule, expected, contract in rules:
            wanted = sorted(expected)
            assert unit.contacts.ids(rule, now=NOW) == wanted, _c(f"{contract} (ids)")
            assert unit.contacts.count(rule, now=NOW) == len(wanted), _c(f"{contract} (count)")
            found = sorted(_ids(unit.contacts.find(rule, now=NOW)))
            assert found == wanted, _c(f"{contract} (find)")
        if is_first:
            solo = contacts_where(in_segment(two.solo_id))
            with _raises(InvalidRule, "in_segment of a segment only another tenant has is refused"):
                unit.contacts.count(solo, now=NOW)

    def test_three_valued_logic_table(self, fresh: Store) -> None:
        if not self.capabilities.rules:
            pytest.skip("this adapter does not answer rules")
        people = {
            "ada": Contact.new(first_name="Ada", tags={"vip"}, custom={"n": 1}),
            "anon": Contact.new(last_name="Lovelace"),
            "bo": Contact.new(first_name="Bo", last_name="Diddley", tags={"vip"}, custom={"n": 5}),
        }
        name, last = field("first_name"), field("last_name")
        table: list[tuple[Any, set[str]]] = [
            (name == "Ada", {"ada"}),
            (~(name == "Ada"), {"bo"}),
            (name != "Ada", {"bo"}),
            (~(name != "Ada"), {"ada"}),
            (~~(name == "Ada"), {"ada"}),
            (~(name == "Ada") & has_tag("vip"), {"bo"}),
            (~(name == "Ada") | has_tag("vip"), {"ada", "bo"}),
            (~((name == "Ada") | has_tag("vip")), set()),
            (~((name == "Ada") & has_tag("vip")), {"anon", "bo"}),
            (~((last == "Lovelace") & (name == "Ada")), {"bo"}),
            (~(custom("n") > 2), {"ada"}),
            (name.is_in("Ada", None), {"ada"}),
            (name.not_in("Ada"), {"bo"}),
            (name.not_in("Ada", None), set()),
            (~name.is_in("Ada", None), set()),
            (~name.is_null(), {"ada", "bo"}),
            (~name.contains("d"), {"bo"}),
            (~has_tag("vip"), {"anon"}),
        ]
        self._check_table(fresh, people, table, "three-valued logic: {rule} selects {expected}")

    def test_text_case_table(self, fresh: Store) -> None:
        if not self.capabilities.rules:
            pytest.skip("this adapter does not answer rules")
        names = {"Ada": "Ada", "ada": "ada", "ADA": "ADA", "Adam": "Adam"}
        people = {
            key: Contact.new(first_name=value, custom={"plan": value}, tags={value})
            for key, value in names.items()
        }
        people["none"] = Contact.new()
        name = field("first_name")
        table: list[tuple[Any, set[str]]] = [
            (name == "Ada", {"Ada"}),
            (name == "ada", {"ada"}),
            (name != "Ada", {"ada", "ADA", "Adam"}),
            (name.is_in("ada", "Adam"), {"ada", "Adam"}),
            (name.not_in("Ada", "ADA"), {"ada", "Adam"}),
            (custom("plan") == "ADA", {"ADA"}),
            (name.contains("DA"), {"Ada", "ada", "ADA", "Adam"}),
            (name.startswith("adam"), {"Adam"}),
            (name.endswith("A"), {"Ada", "ada", "ADA"}),
            (custom("plan").contains("dA"), {"Ada", "ada", "ADA", "Adam"}),
            (has_tag("ADAM"), {"Adam"}),
        ]
        self._check_table(
            fresh,
            people,
            table,
            "case: equality is exact, text matches and tags ignore case: {rule} selects {expected}",
        )

    def test_money_and_activity_measures_table(self, fresh: Store) -> None:
        if not self.capabilities.rules:
            pytest.skip("this adapter does not answer rules")
        deals = {
            "eur": Deal.new(
                title="eur", pipeline="p", stage="s", amount=Money("100", "EUR"), probability="0.6"
            ),
            "usd": Deal.new(
                title="usd", pipeline="p", stage="s", amount=Money("100", "USD"), probability="0.2"
            ),
            "none": Deal.new(title="none", pipeline="p", stage="s"),
        }
        amount = field("amount")
        deal_table: list[tuple[Any, set[str]]] = [
            (amount > Money("50", "EUR"), {"eur"}),
            (~(amount > Money("50", "EUR")), set()),
            (amount.between(Money("50", "USD"), Money("150", "USD")), {"usd"}),
            (amount.is_null(), {"none"}),
            (field("probability") >= Decimal("0.5"), {"eur"}),
        ]
        people = {key: Contact.new(first_name=key) for key in ("a", "b", "c")}

        def event(who: str, kind: ActivityKind, days: int, **data: Any) -> Activity:
            at = NOW - timedelta(days=days)
            return Activity.new(contact_id=people[who].id, kind=kind, occurred_at=at, **data)

        buy, view = ActivityKind.PURCHASE, ActivityKind.PAGE_VIEW
        events = [
            event("a", buy, 1, amount=Money("30", "EUR")),
            event("a", buy, 2, amount=Money("50", "USD")),
            event("b", buy, 1, amount=Money("45", "EUR")),
            *(event("a", view, 3, properties={"url": url}) for url in ["/pricing"] * 2),
            event("a", view, 3, properties={"url": "/blog"}),
            *(event("b", view, 3, properties={"url": "/blog"}) for _ in range(2)),
        ]
        bought, viewed = activity(buy), activity(view)
        pricing = activity(view, where=prop("url") == "/pricing")
        contact_table: list[tuple[Any, set[str]]] = [
            (bought.total() >= Money("40", "EUR"), {"b"}),
            (bought.total() >= Money("40", "USD"), {"a"}),
            (bought.total() < Money("10", "EUR"), {"c"}),
            (pricing.count() >= 2, {"a"}),
            (activity(view, where=prop("url").contains("BLOG")).count() == 2, {"b"}),
            (viewed.count() >= 2, {"a", "b"}),
            (~(bought.count() >= 1), {"c"}),
        ]
        with fresh.unit_of_work() as unit:
            unit.deals.add_many(deals.values())
            unit.contacts.add_many(people.values())
            unit.activities.add_many(events)
            unit.commit()
            for condition, expected in deal_table:
                wanted = sorted(deals[k].id for k in expected)
                what = _c(
                    "money compares within one currency (another is UNKNOWN), decimals "
                    f"exactly: {condition!r} selects {sorted(expected)}"
                )
                assert unit.deals.ids(deals_where(condition), now=NOW) == wanted, what
        self._check_table(
            fresh,
            people,
            contact_table,
            "activity measures: counts apply the filter, sums add one currency: "
            "{rule} selects {expected}",
        )

    def test_relative_dates_follow_now(self, fresh: Store) -> None:
        if not self.capabilities.rules:
            pytest.skip("this adapter does not answer rules")

        def born(days: int) -> Contact:
            return Contact.new(clock=FixedClock(NOW - timedelta(days=days)))

        people = {"recent": born(10), "old": born(100), "ancient": born(400)}
        events = [
            Activity.new(
                contact_id=people["recent"].id,
                kind=ActivityKind.CALL,
                occurred_at=NOW - timedelta(days=5),
            ),
            Activity.new(
                contact_id=people["old"].id,
                kind=ActivityKind.CALL,
                occurred_at=NOW - timedelta(days=90),
            ),
        ]
        created = field("created_at")
        later, earlier = NOW + timedelta(days=150), NOW - timedelta(days=95)
        calls = activity(ActivityKind.CALL, within_days=30).exists()
        table: list[tuple[Any, datetime, set[str]]] = [
            (created.within_last(30), NOW, {"recent"}),
            (created.within_last(30), later, set()),
            (created.within_last(30), earlier, {"old"}),
            (created.more_than_days_ago(200), NOW, {"ancient"}),
            (created.more_than_days_ago(200), later, {"old", "ancient"}),
            (created.this_month(), NOW, {"recent"}),
            (created.this_month(), later, set()),
            (created.this_month(), earlier, {"old"}),
            (calls, NOW, {"recent"}),
            (calls, later, set()),
            (calls, NOW - timedelta(days=70), {"old"}),
        ]
        with fresh.unit_of_work() as unit:
            unit.contacts.add_many(people.values())
            unit.activities.add_many(events)
            for condition, now, expected in table:
                rule = contacts_where(condition)
                wanted = sorted(people[k].id for k in expected)
                contract = f"now= fixes relative dates: {condition!r} at {now:%Y-%m-%d}"
                assert unit.contacts.ids(rule, now=now) == wanted, _c(f"{contract} (ids)")
                assert unit.contacts.count(rule, now=now) == len(wanted), _c(f"{contract} (count)")
                found = sorted(_ids(unit.contacts.find(rule, now=now)))
                assert found == wanted, _c(f"{contract} (find)")
                iterated = _bounded(unit.contacts.iterate(rule, batch_size=1, now=now), 3, contract)
                assert _ids(iterated) == wanted, _c(f"{contract} (iterate)")

    def test_without_now_a_query_uses_the_store_clock(self, fresh: Store) -> None:
        if not self.capabilities.rules:
            pytest.skip("this adapter does not answer rules")
        now = fresh.clock.now()
        recent = Contact.new(clock=FixedClock(now - timedelta(days=3)))
        old = Contact.new(clock=FixedClock(now - timedelta(days=300)))
        rule = contacts_where(field("created_at").within_last(30))
        with fresh.unit_of_work() as unit:
            unit.contacts.add_many([recent, old])
            contract = "without now=, a query uses the store's clock"
            assert unit.contacts.ids(rule) == [recent.id], _c(f"{contract} (ids)")
            assert unit.contacts.count(rule) == 1, _c(f"{contract} (count)")
            assert _ids(unit.contacts.find(rule)) == [recent.id], _c(f"{contract} (find)")
            iterated = _bounded(unit.contacts.iterate(rule), 2, contract)
            assert _ids(iterated) == [recent.id], _c(f"{contract} (iterate)")

    def test_every_page_keeps_the_rule_and_the_order(self, fresh: Store) -> None:
        start = datetime(2026, 1, 1, tzinfo=UTC)
        ids = sorted((uuid4() for _ in range(12)), reverse=True)  # ids against creation
        people = [
            attrs.evolve(
                Contact.new(
                    first_name=f"p{i:02d}",
                    custom={"n": i},
                    clock=FixedClock(start + timedelta(minutes=i)),
                ),
                id=ids[i],
            )
            for i in range(12)
        ]
        chosen = [people[i] for i in (1, 4, 5, 8, 10, 11)]
        rule = contacts_where(custom("n").is_in(1, 4, 5, 8, 10, 11))
        by_id = sorted(p.id for p in people)
        with fresh.unit_of_work() as unit:
            unit.contacts.add_many(sorted(people, key=lambda p: p.id, reverse=True))
            assert unit.contacts.ids() == by_id, _c("ids() lists ids in id order")
            iterated = _bounded(unit.contacts.iterate(batch_size=5), 12, "iterate() ends")
            assert _ids(iterated) == by_id, _c("iterate() yields every entity in id order")
            whole = unit.contacts.find(order=Order("first_name"), limit=12)
            assert whole.next is None, _c(
                "a page has a next cursor only when more items follow (None on the last page)"
            )
            assert _ids(unit.contacts.find(limit=None)) == _ids(people), _c(
                "find() without a limit returns everything, by created_at"
            )
            rules: list[Rule | None] = [rule, None] if self.capabilities.rules else [None]
            for selected, items in [(rule, chosen), (None, people)]:
                if selected not in rules:
                    continue
                for order in [
                    Order("first_name"),
                    Order("first_name", descending=True),
                    Order("created_at"),
                    Order("id", descending=True),
                ]:
                    key = order.field
                    expected = [
                        p.id
                        for p in sorted(
                            items, key=lambda p: getattr(p, key), reverse=order.descending
                        )
                    ]
                    for size in (1, 2, 3, len(items), len(items) + 1):
                        seen = _pages(
                            unit.contacts,
                            selected,
                            order=order,
                            size=size,
                            most=len(items),
                            now=NOW,
                            tokens=size % 2 == 0,
                        )
                        what = "keeps the rule on every page" if selected else "pages"
                        assert seen == expected, _c(
                            f"find(rule, after=cursor) {what}: {order}, limit {size}"
                        )
                if selected is not None:
                    for size in (1, 2, 6):
                        iterated = _bounded(
                            unit.contacts.iterate(selected, batch_size=size, now=NOW),
                            len(items),
                            "iterate(rule) applies the rule and ends",
                        )
                        assert _ids(iterated) == sorted(p.id for p in items), _c(
                            f"iterate(rule, batch_size={size}) yields what the rule selects, "
                            "in id order"
                        )

    def test_pages_stay_right_when_entities_are_added_between_them(self, fresh: Store) -> None:
        people = [Contact.new(first_name=f"p{i}0") for i in range(1, 7)]
        early, late = Contact.new(first_name="p00"), Contact.new(first_name="p35")
        order = Order("first_name")
        with fresh.unit_of_work() as unit:
            unit.contacts.add_many(people)
            unit.commit()
            first = unit.contacts.find(order=order, limit=2)
            assert _ids(first) == _ids(people[:2]), _c(f"find follows {order}")
            assert first.next is not None, _c("a page with more items after it has a next cursor")
        with fresh.unit_of_work() as unit:  # a later request, after others added entities
            unit.contacts.add_many([early, late])
            unit.commit()
        with fresh.unit_of_work() as unit:
            seen: list[UUID] = []
            after: Cursor | None = Cursor.from_token(first.next.token(), Contact)
            for _ in range(8):
                page = unit.contacts.find(order=order, limit=2, after=after)
                seen.extend(_ids(page))
                if page.next is None:
                    break
                after = page.next
        expected = _ids([*people[2:3], late, *people[3:]])
        assert seen == expected, _c(
            "keyset cursors: the next page starts after the cursor's (value, id), also when "
            "entities were added meanwhile (no repeats, no gaps)"
        )

    def test_ties_break_by_id_and_missing_values_sort_last(self, fresh: Store) -> None:
        names = ["b", "a", None, "b", "B", None, "b", "c", "a", "C"]
        stages = [LifecycleStage.SUBSCRIBER, LifecycleStage.LEAD, LifecycleStage.CUSTOMER]
        ids = sorted((uuid4() for _ in names), reverse=True)  # ties stored against id order
        people = [
            attrs.evolve(
                Contact.new(
                    first_name=name,
                    lifecycle_stage=stages[n % 3],
                    do_not_contact=n % 4 == 0,
                ),
                id=ids[n],
            )
            for n, name in enumerate(names)
        ]
        rules = {
            "first_name": "text by code point",
            "lifecycle_stage": "enumerations by value",
            "do_not_contact": "False before True",
        }
        with fresh.unit_of_work() as unit:
            unit.contacts.add_many(people)
            for name, rule in rules.items():

                def ascending(p: Contact, name: str = name) -> tuple[bool, Any, UUID]:
                    value = getattr(p, name)
                    return (value is None, "" if value is None else value, p.id)

                for descending in (False, True):
                    order = Order(name, descending)
                    expected = _ids(sorted(people, key=ascending, reverse=descending))
                    contract = (
                        f"order: {rule}, missing values last, ties by id; "
                        f"descending reverses it all ({order})"
                    )
                    assert _ids(unit.contacts.find(order=order)) == expected, _c(contract)
                    for size in (1, 3):
                        pages = _pages(unit.contacts, None, order=order, size=size, most=10)
                        assert pages == expected, _c(f"{contract}, limit {size}")

    def _check_table(
        self,
        fresh: Store,
        people: dict[str, Contact],
        table: list[tuple[Any, set[str]]],
        contract: str,
    ) -> None:
        with fresh.unit_of_work() as unit:
            stored = unit.contacts.get_many(p.id for p in people.values())
            unit.contacts.add_many(p for p in people.values() if p.id not in stored)
            for condition, expected in table:
                rule = contacts_where(condition)
                wanted = sorted(people[k].id for k in expected)
                what = _c(contract.format(rule=condition, expected=sorted(expected)))
                found = unit.contacts.ids(rule, now=NOW)
                names = sorted(k for k, p in people.items() if p.id in found)
                assert found == wanted, f"{what}; it selected {names}"
                assert unit.contacts.count(rule, now=NOW) == len(wanted), f"{what} (count)"
                assert sorted(_ids(unit.contacts.find(rule, now=NOW))) == wanted, f"{what} (find)"

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

        threads = [threading.Thread(target=work, daemon=True) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in threads), _c(
            "units of work in several threads end (no deadlock)"
        )
        assert failures == [], _c(
            "concurrent writers: a unit that waits succeeds; a lost race is ConcurrencyConflict"
        )
        with fresh.unit_of_work() as unit:
            final = unit.contacts.get(contact.id)
        assert final.custom["n"] == len(done) == final.version - 1, _c(
            "concurrent units of work lose no committed update"
        )
        assert len(done) + len(conflicts) == 40, _c("every unit commits or has a conflict")

    # ------------------------------------------------------------------ state machine

    def test_random_operations_match_the_reference(self, store: Store) -> None:
        run_state_machine_as_test(
            cast(type[RuleBasedStateMachine], lambda: _AgainstReference(_fresh(store))),
            settings=settings(
                _KIT, stateful_step_count=25, max_examples=self.capabilities.examples
            ),
        )


class _TwoTenants:
    """Data for two tenants that share ids on purpose (contacts, activities, segments)."""

    def __init__(self, first: str, second: str) -> None:
        self.first, self.second = first, second
        self.shared = uuid4()
        self.only = {first: uuid4(), second: uuid4()}
        self.listed_id, self.ruled_id, self.solo_id = uuid4(), uuid4(), uuid4()
        self.activity_id, self.change_id, self.deal_id = uuid4(), uuid4(), uuid4()
        self.kinds = {first: ActivityKind.CALL, second: ActivityKind.PAGE_VIEW}
        self.people: dict[str, list[Contact]] = {}
        self.events: dict[str, list[Activity]] = {}
        self.changes: dict[str, StageChange] = {}

    def fill(self, unit: UnitOfWork, me: str) -> None:
        """Store tenant ``me``'s data through ``unit``."""
        at = datetime(2026, 1, 1, tzinfo=UTC)
        is_first = me == self.first
        people = [
            attrs.evolve(Contact.new(first_name=f"shared-{me}"), id=self.shared),
            attrs.evolve(Contact.new(first_name=f"only-{me}"), id=self.only[me]),
        ]
        listed = [self.only[me]] if is_first else [self.shared]
        ruled = has_tag("never") if is_first else field("first_name").is_not_null()
        segments = [
            attrs.evolve(Segment.new(name="listed", members=listed), id=self.listed_id),
            attrs.evolve(Segment.new(name="ruled", rule=contacts_where(ruled)), id=self.ruled_id),
        ]
        if not is_first:
            solo = Segment.new(name="solo", members=[self.only[me]])
            segments.append(attrs.evolve(solo, id=self.solo_id))
        kind = self.kinds[me]
        events = [
            attrs.evolve(
                Activity.new(contact_id=self.shared, kind=kind, occurred_at=at),
                id=self.activity_id,
            ),
            Activity.new(contact_id=self.shared, kind=kind, occurred_at=at),
        ]
        change = StageChange.new(
            subject=SubjectKind.DEAL, subject_id=self.deal_id, to_stage=f"to-{me}", at=at
        )
        change = attrs.evolve(change, id=self.change_id)
        unit.contacts.add_many(people)
        unit.segments.add_many(segments)
        unit.activities.add_many(events)
        unit.stage_history.add(change)
        self.people[me], self.events[me], self.changes[me] = people, events, change


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
                except (NotFound, Duplicate, ConcurrencyConflict, DanglingReference) as error:
                    outcome = ("error", type(error))
                if commit:
                    unit.commit()
            outcomes.append(outcome)
        assert outcomes[0] == outcomes[1], _c(
            f"every operation ends as on the memory store (store, reference): {outcomes}"
        )
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
        assert found[0] == found[1], _c("the store holds what the memory store holds")
