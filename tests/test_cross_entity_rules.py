"""Lead, deal and ticket rules that name their contact's fields (``contact.country``).

The Python interpreter reads the contact from the context, the compiled predicates do
the same, and every store reads it from its contacts table in the same tenant: all of
them must select the same entities, a missing contact included (every field missing).
"""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmkit.errors import InvalidRule, ValidationError
from crmkit.models import (
    ActivityKind,
    Contact,
    Deal,
    Lead,
    LeadChannel,
    LifecycleStage,
    Ticket,
    TicketChannel,
)
from crmkit.models.rules import (
    And,
    Compare,
    Condition,
    HasTag,
    Not,
    Op,
    Or,
    Rule,
    RuleEntity,
    contact_condition,
)
from crmkit.scoring import Criterion, ScoringModel, score
from crmkit.segmentation import (
    Context,
    activity,
    compile_rule,
    custom,
    deals_where,
    evaluate,
    field,
    has_tag,
    leads_where,
    on_contact,
    select,
    tickets_where,
)
from crmkit.serialization import make_converter
from crmkit.storage import MemoryStore, Store
from crmkit.testing import strategies as cst
from crmkit.testing.storage import repository_of, store_referents
from tests.storage_support import postgres_store, sqlite_store

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
CONVERTER = make_converter()
UNIQUE = (lambda c: c.id, lambda c: str(c.email or c.id).casefold())
"""Contacts with distinct ids and e-mail addresses (a store may keep one per address)."""


@pytest.fixture(scope="module", params=["memory", "sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore(tenant="cross")
    elif request.param == "sqlite":
        yield from sqlite_store(tmp_path_factory.mktemp("cross") / "crm.db", tenant="cross")
    else:
        yield from postgres_store(tenant="cross")


def _fresh(store: Store) -> Store:
    return store.for_tenant(f"x-{uuid4().hex[:12]}")


# ---------------------------------------------------------------------------- building


def test_contact_fields_are_checked_as_the_contact_s() -> None:
    rule = leads_where((field("contact.country") == "de") & on_contact(has_tag("VIP")))
    assert rule.where == And(
        (Compare("contact.country", Op.EQ, "DE"), HasTag("VIP", field="contact.tags"))
    )
    with pytest.raises(InvalidRule, match="not an ISO 3166-1") as caught:
        leads_where(field("contact.country") == "xx")
    assert caught.value.field == "contact.country"
    with pytest.raises(InvalidRule, match="unknown field") as unknown:
        deals_where(field("contact.nope") == 1)
    assert unknown.value.field == "contact.nope"
    with pytest.raises(InvalidRule):  # a contact rule has no contact
        Rule(RuleEntity.CONTACT, Compare("contact.country", Op.EQ, "DE"))
    with pytest.raises(InvalidRule):
        Rule(RuleEntity.CONTACT, HasTag("vip", field="contact.tags"))
    with pytest.raises(InvalidRule, match="only field and tag conditions"):
        on_contact(activity(ActivityKind.PAGE_VIEW).exists())


def test_contact_conditions_are_found_and_taken_apart() -> None:
    theirs = on_contact((field("country") == "DE") | ~has_tag("vip"))
    assert contact_condition(theirs) == Or((Compare("country", Op.EQ, "DE"), Not(HasTag("vip"))))
    mixed = theirs & (field("status") == "new")
    assert contact_condition(mixed) is None
    assert contact_condition(field("status") == "new") is None


def test_contact_rules_round_trip_through_json() -> None:
    rule = tickets_where(
        on_contact(has_tag("vip") & custom("plan").is_in("pro", None))
        | (field("contact.lifecycle_stage") == "customer")
    )
    data = CONVERTER.unstructure(rule)
    assert data["where"]["items"][0]["items"][0] == {
        "node": "has_tag",
        "tag": "vip",
        "field": "contact.tags",
    }
    assert CONVERTER.structure(data, Rule) == rule


# ---------------------------------------------------------------------------- parity

_ENTITIES: dict[RuleEntity, Callable[[], st.SearchStrategy[Any]]] = {
    RuleEntity.LEAD: cst.leads,
    RuleEntity.DEAL: cst.deals,
    RuleEntity.TICKET: cst.tickets,
}


def _mixed(entity: RuleEntity) -> st.SearchStrategy[Condition]:
    """Conditions mixing the entity's own fields with its contact's."""
    own = cst.conditions(entity, max_leaves=2, activities=False)
    theirs = cst.conditions(RuleEntity.CONTACT, max_leaves=3, activities=False).map(on_contact)
    return st.recursive(
        st.one_of(own, theirs, theirs),
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=3).map(lambda xs: And(tuple(xs))),
            st.lists(inner, min_size=1, max_size=3).map(lambda xs: Or(tuple(xs))),
            inner.map(Not),
        ),
        max_leaves=4,
    )


@st.composite
def _world(draw: st.DrawFn, entity: RuleEntity) -> tuple[list[Contact], list[Any]]:
    people = draw(st.lists(cst.rule_contacts(), min_size=1, max_size=4, unique_by=UNIQUE))
    owners = [p.id for p in people] + [uuid4()]  # a contact that is not stored
    if entity is RuleEntity.DEAL:
        owners.append(None)  # a deal without a contact
    items = draw(st.lists(_ENTITIES[entity](), min_size=1, max_size=5, unique_by=lambda e: e.id))
    items = [attrs.evolve(i, contact_id=draw(st.sampled_from(owners))) for i in items]
    return people, items


@pytest.mark.parametrize("entity", list(_ENTITIES), ids=lambda e: e.value)
def test_contact_rules_select_what_the_interpreter_selects(
    store: Store, entity: RuleEntity
) -> None:
    @settings(
        max_examples=20,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(_world(entity), _mixed(entity))
    def check(world: tuple[list[Contact], list[Any]], where: Condition) -> None:
        people, items = world
        rule = Rule(entity, where)
        assert CONVERTER.structure(CONVERTER.unstructure(rule), Rule) == rule
        context = Context(now=NOW, contacts={p.id: p for p in people})
        expected = {i.id for i in items if evaluate(rule, i, context) is True}
        predicate = compile_rule(rule, context)
        assert {i.id for i in items if predicate(i)} == expected
        assert {i.id for i in select(rule, items, context)} == expected
        with _fresh(store).unit_of_work() as unit:
            store_referents(unit, people)
            unit.contacts.add_many(people)
            # Items that name a contact not among people get a stand-in (a store keeps
            # no dangling reference), which the interpreter then sees too.
            stand_ins = store_referents(unit, items)
            known = context.contacts | {c.id: c for c in stand_ins if isinstance(c, Contact)}
            expected = {
                i.id for i in items if evaluate(rule, i, Context(now=NOW, contacts=known)) is True
            }
            repository = repository_of(unit, type(items[0]))
            repository.add_many(items)
            assert set(repository.ids(rule, now=NOW)) == expected
            assert repository.count(rule, now=NOW) == len(expected)

    check()


def test_the_contact_is_read_in_the_entity_s_tenant_only(store: Store) -> None:
    # The same contact id in another tenant must not lend its fields.
    ada = Contact.new(first_name="Ada", country="DE", tags=["vip"])
    lead = Lead.new(contact_id=ada.id, source="web", channel=LeadChannel.FORM)
    other = _fresh(store)
    with other.unit_of_work() as unit:
        unit.contacts.add(ada)
        unit.commit()
    german = leads_where(field("contact.country") == "DE")
    no_country = leads_where(field("contact.country").is_null() & ~on_contact(has_tag("vip")))
    with _fresh(store).unit_of_work() as unit:
        # Here the same id is a contact without a country or tags.
        unit.contacts.add(attrs.evolve(Contact.new(first_name="Ada"), id=ada.id))
        unit.leads.add(lead)
        assert unit.leads.count(german) == 0
        assert unit.leads.ids(no_country) == [lead.id]
        unit.contacts.update(ada)  # now it has them here too
        assert unit.leads.ids(german) == [lead.id]
        assert unit.leads.count(no_country) == 0


def test_a_missing_contact_has_every_field_missing() -> None:
    lead = Lead.new(contact_id=uuid4(), source="web", channel=LeadChannel.FORM)
    deal = Deal.new(title="T", pipeline="sales", stage="new")
    ticket = Ticket.new(subject="S", contact_id=uuid4(), channel=TicketChannel.EMAIL)
    context = Context(now=NOW)
    for rule_of, entity in ((leads_where, lead), (deals_where, deal), (tickets_where, ticket)):
        assert evaluate(rule_of(field("contact.country") == "DE"), entity, context) is None
        assert evaluate(rule_of(field("contact.email").is_null()), entity, context) is True
        assert evaluate(rule_of(on_contact(has_tag("vip"))), entity, context) is False
        stage = field("contact.lifecycle_stage") == LifecycleStage.CUSTOMER
        assert evaluate(rule_of(stage), entity, context) is None
        assert compile_rule(rule_of(~stage), context)(entity) is False


def test_scoring_reads_the_contact_from_the_context() -> None:
    ada = Contact.new(first_name="Ada", country="DE")
    lead = Lead.new(contact_id=ada.id, source="web", channel=LeadChannel.FORM)
    german = Criterion("german", leads_where(field("contact.country") == "DE"), 10)
    model = ScoringModel(name="m", criteria=(german,))
    assert model.compile(Context(now=NOW, contacts={ada.id: ada})).score(lead).total == 10
    assert model.compile(Context(now=NOW)).score(lead).total == 0
    assert score(model, lead, Context(now=NOW), contact=ada).total == 10  # as rescore_lead


def test_columns_cannot_score_contact_fields() -> None:
    pytest.importorskip("numpy")
    german = Criterion("german", leads_where(field("contact.country") == "DE"), 10)
    compiled = ScoringModel(name="m", criteria=(german,)).compile(Context(now=NOW))
    with pytest.raises(ValidationError, match="contact's fields") as caught:
        compiled.totals_columns({"channel": ["form"]})
    assert caught.value.field == "criteria[0]"
