"""Rules are bounded before any store runs them, and large IN lists work everywhere.

Every store answers a rule with the same members as the Python interpreter; these tests
add what random small rules do not reach: rules at their bounds (depth, conditions, IN
values, nested segments), one past them (a typed error naming the limit and the path,
never a RecursionError or a database's parser error), and IN lists of thousands of
values, which every store binds as one parameter.
"""

import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import attrs
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from crmkit.errors import InvalidRule, ValidationError
from crmkit.models import Contact, Segment, Ticket, TicketChannel, TicketStatus
from crmkit.models.rules import (
    FIELDS,
    MAX_IN_VALUES,
    MAX_RULE_CONDITIONS,
    MAX_RULE_DEPTH,
    MAX_SEGMENT_DEPTH,
    And,
    Condition,
    FieldSpec,
    FieldType,
    In,
    Not,
    Or,
    Rule,
    RuleEntity,
    field_spec,
)
from crmkit.segmentation import (
    Context,
    check_segments,
    contacts_where,
    custom,
    evaluate,
    field,
    has_tag,
    in_segment,
    members,
    select,
    tickets_where,
)
from crmkit.segmentation._semantics import field_value
from crmkit.serialization import make_converter
from crmkit.storage import MemoryStore, Store
from crmkit.testing import strategies as cst
from crmkit.testing.storage import repository_of, store_referents
from tests.storage_support import postgres_store, sqlite_store

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
CONVERTER = make_converter()
UNIQUE = (lambda e: e.id, lambda e: str(getattr(e, "email", None) or e.id).casefold())
"""Distinct ids and contacts' e-mail addresses (a store may keep one contact per address)."""


@pytest.fixture(scope="module", params=["memory", "sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore(tenant="bounds")
    elif request.param == "sqlite":
        yield from sqlite_store(tmp_path_factory.mktemp("bounds") / "crm.db", tenant="bounds")
    else:
        yield from postgres_store(tenant="bounds")


def _fresh(store: Store) -> Store:
    return store.for_tenant(f"b-{uuid4().hex[:12]}")


# ---------------------------------------------------------------------------- one rule


def _nested(depth: int, leaf: Condition) -> Condition:
    """``leaf`` under ``depth`` levels of And, Or and Not (a leaf alone is depth 0)."""
    node = leaf
    for level in range(depth):
        match level % 3:
            case 0:
                node = And((node, has_tag("q")))
            case 1:
                node = Or((node, custom("x") == 2))
            case _:
                node = Not(node)
    return node


def test_the_bounds_are_exported_and_documented() -> None:
    page = (Path(__file__).parent.parent / "docs" / "reference" / "rules.md").read_text()
    for name in ("MAX_RULE_DEPTH", "MAX_RULE_CONDITIONS", "MAX_IN_VALUES", "MAX_SEGMENT_DEPTH"):
        assert f"`{name}`" in page


def test_a_rule_at_its_depth_bound_builds_and_one_level_more_is_refused() -> None:
    contacts_where(_nested(MAX_RULE_DEPTH, custom("x") == 1))
    with pytest.raises(InvalidRule, match="MAX_RULE_DEPTH") as caught:
        contacts_where(_nested(MAX_RULE_DEPTH + 1, custom("x") == 1))
    assert caught.value.field.startswith("where.")  # the path of the node too deep
    assert caught.value.field.count("items[0]") > 10


def test_a_rule_holds_a_bounded_number_of_conditions() -> None:
    wide = [custom("x") == i for i in range(MAX_RULE_CONDITIONS - 1)]
    assert len(contacts_where(Or(tuple(wide))).where.items) == MAX_RULE_CONDITIONS - 1  # type: ignore[attr-defined]
    with pytest.raises(InvalidRule, match="MAX_RULE_CONDITIONS") as caught:
        contacts_where(Or((*wide, has_tag("a"), has_tag("b"))))
    assert caught.value.field == f"where.items[{MAX_RULE_CONDITIONS - 1}]"


def test_in_lists_hold_a_bounded_number_of_values() -> None:
    values = tuple(f"v{i}" for i in range(MAX_IN_VALUES))
    assert len(In("first_name", values).values) == MAX_IN_VALUES
    with pytest.raises(InvalidRule, match="MAX_IN_VALUES"):
        In("first_name", (*values, "one more"))
    # Several lists together: the bound is per rule.
    half = In("first_name", values[: MAX_IN_VALUES // 2 + 1])
    with pytest.raises(InvalidRule, match="MAX_IN_VALUES") as caught:
        contacts_where(half | In("last_name", half.values))
    assert caught.value.field == "where.items[1]"


def test_a_million_values_are_refused_before_anything_is_built() -> None:
    # This took 61 s and 3.5 GB before failing; the size is now checked first.
    huge = tuple(range(1_000_000))
    with pytest.raises(InvalidRule, match="MAX_IN_VALUES"):
        In("custom.n", huge)
    data = {"entity": "contact", "where": {"node": "in", "field": "custom.n", "values": huge}}
    with pytest.raises(ValidationError, match="MAX_IN_VALUES"):
        CONVERTER.structure(json.loads(json.dumps(data)), Rule)
    many = {"node": "or", "items": [{"node": "has_tag", "tag": "a"}] * (MAX_RULE_CONDITIONS + 1)}
    with pytest.raises(ValidationError, match="MAX_RULE_CONDITIONS"):
        CONVERTER.structure({"entity": "contact", "where": many}, Rule)


# ---------------------------------------------------------------------------- segments


def _chain(length: int, depth: int = 1) -> list[Segment]:
    """``length`` segments, each "in the one before" (the first selects ``custom.x == 1``),
    each rule ``depth`` levels deep."""
    first = Segment.new(name="s0", rule=contacts_where(_nested(depth, custom("x") == 1)))
    chain = [first]
    for index in range(1, length):
        inner = _nested(depth - 1, in_segment(chain[-1]))
        chain.append(Segment.new(name=f"s{index}", rule=contacts_where(inner)))
    return chain


def _people() -> list[Contact]:
    return [
        Contact.new(first_name="in", custom={"x": 1}, tags=["q"]),
        Contact.new(first_name="out", custom={"x": 3}),
    ]


def _python_members(chain: list[Segment], people: list[Contact]) -> set[UUID]:
    context = Context(now=NOW, segments={s.id: s for s in chain})
    rule = contacts_where(in_segment(chain[-1]))
    found = {p.id for p in select(rule, people, context)}
    assert found == {p.id for p in people if evaluate(rule, p, context) is True}
    return found


def _stored_members(store: Store, chain: list[Segment], people: list[Contact]) -> set[UUID]:
    tenant = _fresh(store)
    with tenant.unit_of_work() as unit:
        unit.contacts.add_many(people)
        unit.segments.add_many(chain)
        unit.commit()
        rule = contacts_where(in_segment(chain[-1]))
        found = set(unit.contacts.ids(rule, now=NOW))
        assert unit.contacts.count(rule, now=NOW) == len(found)
        return found


@pytest.mark.parametrize(
    ("length", "depth"), [(MAX_SEGMENT_DEPTH, 1), (4, MAX_RULE_DEPTH // 4 - 1)]
)
def test_segments_nested_to_the_bound_work_on_every_store(
    store: Store, length: int, depth: int
) -> None:
    # SQLite used to fail at 30 chained segments ("parser stack overflow"), and deep
    # segment rules sooner: every store now answers up to the bounds.
    chain, people = _chain(length, depth), _people()
    check_segments({s.id: s for s in chain})
    expected = _python_members(chain, people)
    assert _stored_members(store, chain, people) == expected


def _refusals(chain: list[Segment], people: list[Contact]) -> list[Callable[[], object]]:
    context = Context(now=NOW, segments={s.id: s for s in chain})
    rule = contacts_where(in_segment(chain[-1]))
    return [
        lambda: select(rule, people, context),
        lambda: evaluate(rule, people[0], context),
        lambda: members(Segment.new(name="top", rule=rule), people, context),
        lambda: check_segments({s.id: s for s in chain}),
    ]


@pytest.mark.parametrize("length", [MAX_SEGMENT_DEPTH + 1, 400])
def test_longer_segment_chains_are_a_typed_error_everywhere(store: Store, length: int) -> None:
    # All stores raised RecursionError from about 340 chained segments.
    chain, people = _chain(length), _people()
    for refuse in _refusals(chain, people):
        with pytest.raises(InvalidRule, match="MAX_SEGMENT_DEPTH"):
            refuse()
    with pytest.raises(InvalidRule, match="MAX_SEGMENT_DEPTH"):
        _stored_members(store, chain, people)


def test_segment_rules_count_towards_the_depth_of_the_rule(store: Store) -> None:
    # Four segments each 20 levels deep nest 80 levels once put in place.
    chain, people = _chain(4, 20), _people()
    for refuse in _refusals(chain, people)[:3]:
        with pytest.raises(InvalidRule, match="MAX_RULE_DEPTH"):
            refuse()
    with pytest.raises(InvalidRule, match="MAX_RULE_DEPTH") as caught:
        _stored_members(store, chain, people)
    assert "counting the rules of segments" in str(caught.value)


# ---------------------------------------------------------------------------- big IN lists


_ENTITY_DATA: dict[RuleEntity, Callable[[], st.SearchStrategy[Any]]] = {
    RuleEntity.CONTACT: cst.rule_contacts,
    RuleEntity.LEAD: cst.leads,
    RuleEntity.DEAL: cst.deals,
    RuleEntity.TICKET: cst.tickets,
}


def _listable(entity: RuleEntity) -> list[str]:
    names = [
        n for n, s in FIELDS[entity].items() if s.kind not in (FieldType.TAGS, FieldType.MONEY)
    ]
    return names + [f"custom.{key}" for key in cst.CUSTOM_KEYS]


def _filler(spec: FieldSpec, count: int) -> list[Any]:
    """``count`` values of the field's type that the drawn entities hardly ever hold."""
    kind, seed = spec.kind, range(count)
    enum_values = [str(m.value) for m in spec.enum] if spec.enum else []
    makers: dict[FieldType, Callable[[int], Any]] = {
        FieldType.TEXT: lambda i: f"filler {i}",
        FieldType.EMAIL: lambda i: f"filler{i}@example.org",
        FieldType.PHONE: lambda i: f"+1555{i:07d}",
        FieldType.COUNTRY: lambda i: ("ZW", "YE", "VU")[i % 3],
        FieldType.LANGUAGE: lambda i: ("zu", "yo", "xh")[i % 3],
        FieldType.ENUM: lambda i: enum_values[i % len(enum_values)],
        FieldType.NUMBER: lambda i: (10_000 + i) if i % 2 else 10_000.5 + i,
        FieldType.DECIMAL: lambda i: Decimal(i) / 7 if i % 3 == 0 else Decimal(10_000 + i),
        FieldType.BOOL: lambda i: i % 2 == 0,
        FieldType.DATETIME: lambda i: datetime(1990, 1, 1, tzinfo=UTC) + timedelta(minutes=i),
        FieldType.DATE: lambda i: date(1900, 1, 1) + timedelta(days=i),
        FieldType.UUID: lambda i: UUID(int=i + 7),
        FieldType.JSON: lambda i: (f"filler {i}", 10_000 + i, 10_000.25 + i, i % 2 == 0)[i % 4],
    }
    return [makers[kind](i) for i in seed]


@pytest.mark.parametrize("entity", list(_ENTITY_DATA), ids=lambda e: e.value)
def test_big_in_lists_select_what_the_interpreter_selects(store: Store, entity: RuleEntity) -> None:
    # SQLite failed at 1,000 values (one parameter and one OR level per value); every
    # store now takes a list of MAX_IN_VALUES as one parameter, with SQL's NULL rules.

    @settings(
        max_examples=12,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.data())
    def check(data: st.DataObject) -> None:
        items = data.draw(
            st.lists(_ENTITY_DATA[entity](), min_size=1, max_size=6, unique_by=UNIQUE)
        )
        spec = field_spec(data.draw(st.sampled_from(_listable(entity))), FIELDS[entity], "custom")
        chosen = data.draw(st.lists(st.sampled_from(items), max_size=3))
        hits = [field_value(spec, item) for item in chosen]
        hits = [h for h in hits if h is not None and not isinstance(h, dict)]
        with_null = data.draw(st.booleans())
        filler = _filler(spec, MAX_IN_VALUES - len(hits) - int(with_null))
        values = (*hits, *filler, *([None] if with_null else []))
        try:
            rule = Rule(entity, In(spec.name, values, data.draw(st.booleans())))
        except InvalidRule:
            assume(False)  # a drawn value the rule language cannot hold (a huge int, say)
            raise
        with _fresh(store).unit_of_work() as unit:
            stand_ins = store_referents(unit, items)
            contacts = {c.id: c for c in stand_ins if isinstance(c, Contact)}
            context = Context(now=NOW, contacts=contacts)
            expected = {i.id for i in items if evaluate(rule, i, context) is True}
            repository = repository_of(unit, type(items[0]))
            repository.add_many(items)
            assert set(repository.ids(rule, now=NOW)) == expected
            assert repository.count(rule, now=NOW) == len(expected)

    check()


def test_a_big_in_list_matches_exactly_its_values(store: Store) -> None:
    people = [Contact.new(first_name=f"n{i}", custom={"n": i}) for i in range(40)]
    wanted = [f"n{i}" for i in range(0, 40, 3)] + [f"x{i}" for i in range(MAX_IN_VALUES - 14)]
    numbers = [*range(1, 40, 4), *(10.5 + i for i in range(MAX_IN_VALUES - 10))]
    with _fresh(store).unit_of_work() as unit:
        unit.contacts.add_many(people)
        by_name = contacts_where(field("first_name").is_in(*wanted))
        assert {c.first_name for c in unit.contacts.find(by_name)} == set(wanted[:14])
        by_number = contacts_where(custom("n").is_in(*numbers))
        assert sorted(c.custom["n"] for c in unit.contacts.find(by_number)) == list(range(1, 40, 4))  # type: ignore[type-var]
        outside = contacts_where(custom("n").not_in(*numbers))
        assert unit.contacts.count(outside) == 30
        unknown = contacts_where(custom("n").not_in(*numbers[:-1], None))
        assert unit.contacts.count(unknown) == 0  # NOT IN with a NULL is never TRUE


def test_wide_rules_are_not_chained_into_deep_sql(store: Store) -> None:
    # SQL parsers chain `a OR b OR c ...` one level per term and SQLite refuses more than
    # 1,000 levels: OR and AND are sent as balanced groups.
    people = [Contact.new(first_name=f"n{i}", custom={"n": i}) for i in range(10)]
    wide = contacts_where(Or(tuple(custom("n") == i for i in range(3, 1503))))
    deep_and = contacts_where(And(tuple(custom("n") != i for i in range(5, 1505))))
    context = Context(now=NOW)
    with _fresh(store).unit_of_work() as unit:
        unit.contacts.add_many(people)
        for rule in (wide, deep_and):
            expected = {p.id for p in people if evaluate(rule, p, context) is True}
            assert set(unit.contacts.ids(rule, now=NOW)) == expected
        assert unit.contacts.count(wide) == 7
        assert unit.contacts.count(deep_and) == 5


def test_in_lists_of_numbers_no_column_can_hold(store: Store) -> None:
    # An integer column holds 64-bit integers: a float like 1e30 is a whole number
    # that equals none of them, and must not reach the database as an integer.
    tickets = [
        attrs.evolve(
            Ticket.new(subject="s", contact_id=uuid4(), channel=TicketChannel.EMAIL),
            status=TicketStatus.SOLVED,
            csat=csat,
        )
        for csat in (3, None, 5)
    ]
    rules = [
        tickets_where(field("csat").is_in(1e30, 3.0, 2**62)),
        tickets_where(field("csat").not_in(1e30, 5)),
        tickets_where(field("csat").is_in(1e30, None)),
    ]
    context = Context(now=NOW)
    with _fresh(store).unit_of_work() as unit:
        store_referents(unit, tickets)
        unit.tickets.add_many(tickets)
        for rule in rules:
            expected = {t.id for t in tickets if evaluate(rule, t, context) is True}
            assert set(unit.tickets.ids(rule, now=NOW)) == expected
        assert unit.tickets.ids(rules[0], now=NOW) == [tickets[0].id]
